#!/usr/bin/env python3
"""faiss IndexFlatIP on the peers runner's matrix: exact top-10 cosine, the figures the
runner prints for strata (`cargo run --release -- --records N --engines strata`).

    pip install faiss-cpu numpy
    python3 benches/peers/faiss_search.py --records 100000

The matrix is the runner's own (`data.rs`: `embedding_of(i, 768)`, rebuilt bit for bit by
search_data.py with the same SplitMix64 mixing), the queries are its
`embedding_of(1_000_000 + q)`. Rows and queries are normalised, so inner product is cosine.
Timed: 10 single queries and one batch of 64, with 1 thread and with every core (faiss's
OpenMP). The 10 single queries' top-10 lists are checked against an exact float64 NumPy scan;
a mismatch is printed (ties can reorder).
"""

import argparse
import time

import faiss

from search_data import BATCH, DIM, K, QUERIES, exact_top_k, normalised_rows_and_queries


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    n = parser.parse_args().records
    rows, qs = normalised_rows_and_queries(n)
    index = faiss.IndexFlatIP(DIM)
    index.add(rows)
    exact = exact_top_k(rows, qs[:QUERIES])

    cores = faiss.omp_get_max_threads()
    print(f"faiss {faiss.__version__}, N = {n}, {DIM}-dim, top-{K} cosine (IndexFlatIP on normalised rows)")
    print(f"  query 0's top-{K} (record indices; the runner's strata JSON has them as compacted_top): {exact[0]}")
    for threads in sorted({1, cores}):
        faiss.omp_set_num_threads(threads)
        index.search(qs[:1], K)  # untimed warm-up
        start = time.perf_counter()
        found = [index.search(qs[i : i + 1], K)[1][0].tolist() for i in range(QUERIES)]
        single = QUERIES / (time.perf_counter() - start)
        start = time.perf_counter()
        index.search(qs, K)
        batch = BATCH / (time.perf_counter() - start)
        same = sum(a == b for a, b in zip(found, exact))
        print(f"  {threads} thread(s): 1 query {single:.1f} q/s, batch of {BATCH} {batch:.1f} q/s, "
              f"lists identical to the exact scan: {same} of {QUERIES}")


if __name__ == "__main__":
    main()
