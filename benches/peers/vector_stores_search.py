#!/usr/bin/env python3
"""sqlite-vec and LanceDB exact top-10 cosine on the peers runner's matrix, the figures to put
beside faiss_search.py's and the runner's strata ones (`cargo run --release -- --records N
--engines strata`).

    pip install sqlite-vec lancedb numpy
    python3 benches/peers/vector_stores_search.py --records 100000
    python3 benches/peers/vector_stores_search.py --records 100000 --stores lancedb

The data is search_data.py's (the runner's own matrix and queries, rows and queries normalised).
Both stores hold it in one temporary directory and scan it whole (no ANN index):
  - sqlite-vec: a vec0 table `embedding float[768] distance_metric=cosine` in a database file,
    queried with `WHERE embedding MATCH ? AND k = 10`. One query per statement (sqlite-vec has
    no multi-query KNN), on the calling thread. Python's own sqlite3 is used when it can load
    extensions; builds without that (pyenv's default) need `pip install pysqlite3-binary`.
  - LanceDB: a local table with no vector index, `search(q).distance_type("cosine")
    .bypass_vector_index().limit(10)`; the batch is one search given all 64 query vectors.
    LanceDB runs queries on its own thread pools, sized once per process from environment
    variables: LANCE_CPU_THREADS (compute pool; by default the core count less
    LANCE_IO_CORE_RESERVATION = 2, at least 1), LANCE_IO_THREADS, and TOKIO_WORKER_THREADS
    (the lancedb runtime's workers). To compare settings, run the script again with them set,
    e.g. `LANCE_CPU_THREADS=1 LANCE_IO_THREADS=1 TOKIO_WORKER_THREADS=1 python3 ...`.
Loading is not timed. Timed, after one untimed warm-up query: 10 single queries (and for
LanceDB one batch of 64). Each timed block also prints CPU time / wall time, which shows how
many cores it kept busy. Every result list is checked against the exact float64 scan
(search_data.exact_top_k); a mismatch can come from float32 distances reordering near-ties.
"""

import argparse
import os
import tempfile
import time

from search_data import BATCH, DIM, K, QUERIES, exact_top_k, normalised_rows_and_queries

STORES = ("sqlite-vec", "lancedb")


def timed(warm_up, run):
    """warm_up() untimed, then run() timed; returns (run's result, wall s, CPU s of the whole
    process, all its threads)."""
    warm_up()
    cpu, start = time.process_time(), time.perf_counter()
    result = run()
    return result, time.perf_counter() - start, time.process_time() - cpu


def report_singles(found, wall, cpu, exact):
    same = sum(a == b for a, b in zip(found, exact))
    return (f"1 query {QUERIES / wall:.1f} q/s, {wall / QUERIES * 1e3:.1f} ms/query "
            f"(CPU/wall {cpu / wall:.2f}), lists identical to the exact scan: {same} of {QUERIES}")


def sqlite_connect(path):
    """A connection that can load extensions: Python's sqlite3 when its build allows it,
    else pysqlite3 (same DB-API, its own SQLite)."""
    import sqlite3

    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        try:
            from pysqlite3 import dbapi2 as sqlite3
        except ImportError:
            raise SystemExit("this Python's sqlite3 cannot load extensions: pip install pysqlite3-binary")
    return sqlite3.connect(path), sqlite3


def sqlite_vec_search(rows, qs, exact, directory):
    import sqlite_vec

    db, module = sqlite_connect(os.path.join(directory, "vectors.db"))
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.enable_load_extension(False)
    (version,) = db.execute("SELECT vec_version()").fetchone()
    db.execute(f"CREATE VIRTUAL TABLE vectors USING vec0(embedding float[{DIM}] distance_metric=cosine)")
    with db:  # one transaction
        db.executemany("INSERT INTO vectors(rowid, embedding) VALUES (?, ?)",
                       ((i, rows[i].tobytes()) for i in range(len(rows))))

    def search(q):
        cursor = db.execute("SELECT rowid FROM vectors WHERE embedding MATCH ? AND k = ? ORDER BY distance",
                            (q.tobytes(), K))
        return [rowid for (rowid,) in cursor]

    found, wall, cpu = timed(lambda: search(qs[0]), lambda: [search(q) for q in qs[:QUERIES]])
    print(f"sqlite-vec {version} (SQLite {module.sqlite_version} through {module.__name__}), "
          f"vec0 float[{DIM}] distance_metric=cosine, database file, full KNN scan")
    print(f"  1 thread (sqlite-vec runs on the calling thread): {report_singles(found, wall, cpu, exact)}")
    print(f"  batch of {BATCH}: not measured, sqlite-vec has no multi-query KNN (one MATCH per query)")
    db.close()


def thread_counts(prefixes):
    """Live threads of this process whose names start with one of prefixes (Linux only)."""
    counts = {}
    if os.path.isdir("/proc/self/task"):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/comm") as f:
                name = f.read().strip()
            if name.startswith(prefixes):
                counts[name] = counts.get(name, 0) + 1
    return counts


def lancedb_search(rows, qs, exact, directory):
    import lancedb
    import pyarrow as pa

    n = len(rows)
    table = lancedb.connect(os.path.join(directory, "lancedb")).create_table("vectors", pa.table({
        "id": pa.array(range(n), pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), DIM),
    }))
    assert not table.list_indices(), "the table must have no vector index"

    def query(vectors):
        # `_distance` is selected so that LanceDB does not warn about adding it itself.
        return (table.search(vectors).distance_type("cosine").bypass_vector_index()
                .limit(K).select(["id", "_distance"]).to_arrow())

    def search(q):
        return query(q).column("id").to_pylist()

    def batch():
        result = query(qs)
        lists = [[] for _ in range(BATCH)]
        for q, i in zip(result.column("query_index").to_pylist(), result.column("id").to_pylist()):
            lists[q].append(i)  # rows come in distance order within each query_index
        return lists

    found, wall, cpu = timed(lambda: search(qs[0]), lambda: [search(q) for q in qs[:QUERIES]])
    batch_found, batch_wall, batch_cpu = timed(lambda: search(qs[0]), batch)
    settings = ", ".join(f"{v}={os.environ.get(v, 'unset')}"
                         for v in ("LANCE_CPU_THREADS", "LANCE_IO_THREADS", "TOKIO_WORKER_THREADS"))
    threads = ", ".join(f"{name} x{count}" for name, count in sorted(thread_counts(("lance", "tokio")).items()))
    batch_same = sum(a == b for a, b in zip(batch_found, exact))
    print(f"LanceDB {lancedb.__version__}, local table in a temp directory, no vector index "
          f"(bypass_vector_index: flat scan), distance_type cosine, {len(os.sched_getaffinity(0))} cores")
    print(f"  {settings}; LanceDB threads alive after the queries: {threads or 'none found'}")
    print(f"  {report_singles(found, wall, cpu, exact)}")
    print(f"  batch of {BATCH} (one search given all {BATCH} vectors): {BATCH / batch_wall:.1f} q/s "
          f"(CPU/wall {batch_cpu / batch_wall:.2f}), lists identical to the exact scan: {batch_same} of {BATCH}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated, of: " + ", ".join(STORES))
    args = parser.parse_args()
    stores = args.stores.split(",")
    unknown = set(stores) - set(STORES)
    if unknown:
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")

    rows, qs = normalised_rows_and_queries(args.records)
    # The batch is checked too, so the reference covers every query the batch sends.
    exact = exact_top_k(rows, qs if "lancedb" in stores else qs[:QUERIES])
    print(f"N = {args.records}, {DIM}-dim, top-{K} cosine, exact search in each store")
    print(f"  query 0's top-{K} by the exact float64 scan (record indices = row ids): {exact[0]}")
    with tempfile.TemporaryDirectory() as directory:
        if "sqlite-vec" in stores:
            sqlite_vec_search(rows, qs, exact, directory)
        if "lancedb" in stores:
            lancedb_search(rows, qs, exact, directory)


if __name__ == "__main__":
    main()
