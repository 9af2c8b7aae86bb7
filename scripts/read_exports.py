#!/usr/bin/env python3
"""Reads `strata export` files with the engines users hand them to, and compares every row.

    pip install duckdb polars pyarrow
    python3 scripts/read_exports.py target/release/strata

Builds a small database with the `strata` binary (text and non-UTF-8 content, records with
and without an embedding, a TTL), exports it as Parquet, Arrow IPC and JSON Lines, then reads
the Parquet file with DuckDB, Polars and pyarrow and the Arrow file with pyarrow and Polars,
and checks that each reader sees exactly the rows of the JSON Lines export (key and content
bytes, embedding bits, seq, expires_at_ms). Exits 1 on the first difference. Not part of CI
(it needs PyPI packages); TESTING.md has the versions it last ran with.
"""

import base64
import json
import os
import struct
import subprocess
import sys
import tempfile


def run(strata, *args):
    subprocess.run([strata, *args], check=True, stdout=subprocess.DEVNULL)


def f32_bits(values):
    return None if values is None else [struct.unpack("<I", struct.pack("<f", v))[0] for v in values]


def from_jsonl(path):
    rows = []
    with open(path) as lines:
        for line in lines:
            obj = json.loads(line)
            key = base64.b64decode(obj["key_b64"]) if "key_b64" in obj else obj["key"].encode()
            content = base64.b64decode(obj["content_b64"]) if "content_b64" in obj else obj["content"].encode()
            rows.append((key, content, f32_bits(obj["embedding"]), obj["seq"], obj["expires_at_ms"]))
    return rows


def from_columns(keys, contents, embeddings, seqs, expires):
    return [
        (bytes(k), bytes(c), f32_bits(None if e is None else list(e)), int(s), int(x))
        for k, c, e, s, x in zip(keys, contents, embeddings, seqs, expires)
    ]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: read_exports.py PATH/TO/strata")
    strata = os.path.abspath(sys.argv[1])
    import duckdb
    import polars as pl
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as temp:
        db = os.path.join(temp, "db")
        raw = os.path.join(temp, "raw.bin")
        with open(raw, "wb") as f:
            f.write(bytes([0xFF, 0x00, 0xC3, 0x28]) + bytes(range(256)))
        run(strata, "put", db, "note/1", "--content", "The user prefers tea.", "--embedding", "[0.9, 0.1, -0.0]", "--dim", "3")
        run(strata, "put", db, "note/2", "--content-file", raw, "--embedding", "[1e-38, 3.4e38, 0.5]")
        run(strata, "put", db, "note/3", "--content", "no embedding, a TTL", "--ttl", "86400")
        run(strata, "compact", db)
        run(strata, "put", db, "note/4", "--content", "hot after the compaction", "--embedding", "[0, 0, 1]")
        paths = {fmt: os.path.join(temp, "out." + fmt) for fmt in ("parquet", "arrow", "jsonl")}
        for fmt, path in paths.items():
            run(strata, "export", db, path, "--format", fmt)
        expected = from_jsonl(paths["jsonl"])
        assert len(expected) == 4, expected

        seen = {}
        rel = duckdb.sql(f"SELECT key, content, embedding, seq, expires_at_ms FROM '{paths['parquet']}' ORDER BY key")
        seen["duckdb parquet"] = from_columns(*zip(*rel.fetchall()))
        frame = pl.read_parquet(paths["parquet"])
        seen["polars parquet"] = from_columns(*(frame[c].to_list() for c in frame.columns))
        table = pq.read_table(paths["parquet"])
        seen["pyarrow parquet"] = from_columns(*(table[c].to_pylist() for c in table.column_names))
        table = ipc.open_file(pa.memory_map(paths["arrow"])).read_all()
        seen["pyarrow arrow"] = from_columns(*(table[c].to_pylist() for c in table.column_names))
        frame = pl.read_ipc(paths["arrow"])
        seen["polars arrow"] = from_columns(*(frame[c].to_list() for c in frame.columns))

        failed = False
        for reader, rows in seen.items():
            same = rows == expected
            failed |= not same
            print(f"{reader}: {len(rows)} rows, {'identical' if same else 'DIFFERENT'}")
            if not same:
                print(f"  expected {expected}\n  read     {rows}")
        versions = f"duckdb {duckdb.__version__}, polars {pl.__version__}, pyarrow {pa.__version__}"
        print(("FAILED" if failed else "ok") + f" ({versions})")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
