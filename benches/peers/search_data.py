"""The peers runner's search data, shared by the Python peer scripts (faiss_search.py,
vector_stores_search.py).

The matrix is the runner's own (`data.rs`: `embedding_of(i, 768)`, rebuilt here bit for bit
with the same SplitMix64 mixing), the queries are its `embedding_of(1_000_000 + q)`. Rows and
queries are normalised, so inner product is cosine. The reference answer is an exact float64
scan; ties are broken by the lower record index.
"""

import numpy as np

DIM = 768
QUERIES = 10
BATCH = 64
K = 10
CHUNK = 65536  # rows per step when building the matrix or scanning it in float64


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


def normalised_rows_and_queries(n):
    """The runner's first n records and its BATCH queries, each row scaled to unit length
    (float32, shapes (n, DIM) and (BATCH, DIM))."""
    matrix = np.concatenate([embeddings(s, min(CHUNK, n - s)) for s in range(0, n, CHUNK)])
    queries = embeddings(1_000_000, BATCH)
    rows = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    qs = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return rows, qs


def exact_top_k(rows, qs):
    """Each query's top-K record indices by cosine, scanned in float64, one list per query."""
    n = len(rows)
    exact = []
    for q in qs.astype(np.float64):
        scores = np.concatenate([rows[s : s + CHUNK].astype(np.float64) @ q for s in range(0, n, CHUNK)])
        exact.append([int(i) for i in np.lexsort((np.arange(n), -scores))[:K]])
    return exact
