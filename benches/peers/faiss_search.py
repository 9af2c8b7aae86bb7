#!/usr/bin/env python3
"""faiss IndexFlatIP on the peers runner's matrix: exact top-10 cosine, the figures the
runner prints for strata (`cargo run --release -- --records N --engines strata`).

    pip install faiss-cpu numpy
    python3 benches/peers/faiss_search.py --records 100000

The matrix is the runner's own (`data.rs`: `embedding_of(i, 768)`, rebuilt here bit for bit
with the same SplitMix64 mixing), the queries are its `embedding_of(1_000_000 + q)`. Rows and
queries are normalised, so inner product is cosine. Timed: 10 single queries and one batch of
64, with 1 thread and with every core (faiss's OpenMP). The 10 single queries' top-10 lists
are checked against an exact float64 NumPy scan; a mismatch is printed (ties can reorder).
"""

import argparse
import time

import faiss
import numpy as np

DIM = 768
QUERIES = 10
BATCH = 64
K = 10


def mix(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def embeddings(first, count):
    """`data::embedding_of(i, DIM)` for i in first..first+count, as float32 rows."""
    i = np.arange(first, first + count, dtype=np.uint64)[:, None]
    j = np.arange(DIM, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        bits = mix((i << np.uint64(16)) ^ j) >> np.uint64(40)
    return bits.astype(np.float32) / np.float32(1 << 23) - np.float32(1.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    n = parser.parse_args().records
    matrix = np.concatenate([embeddings(s, min(65536, n - s)) for s in range(0, n, 65536)])
    queries = embeddings(1_000_000, BATCH)
    rows = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    qs = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(DIM)
    index.add(rows)

    del matrix
    exact = []
    for q in qs[:QUERIES].astype(np.float64):
        scores = np.concatenate([rows[s : s + 65536].astype(np.float64) @ q for s in range(0, n, 65536)])
        exact.append([int(i) for i in np.lexsort((np.arange(n), -scores))[:K]])

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
