#!/usr/bin/env python3
"""Tombstone compaction, measured (issue 15): insert N rows, delete them all, sync every peer,
compact. Prints the file size before the rows were inserted, after the deletes, and after
`syncline compact --retain 0s`, with the ratio the target names (after compaction / before
insertion, target <= 1.5).

Usage: python3 scripts/bench-compact.py [--cli target/release/syncline] [N] (default 100000)"""
from __future__ import annotations

import argparse
import pathlib
import subprocess
import tempfile

DDL = "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER, body TEXT);"


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def size(path: pathlib.Path) -> int:
    return path.stat().st_size


def exchange(cli: str, a: pathlib.Path, b: pathlib.Path, tmp: pathlib.Path) -> None:
    """Bundles both ways, twice, so each side also learns what the other acknowledged."""
    for _ in range(2):
        for src, dst in ((a, b), (b, a)):
            bundle = tmp / "x.bundle"
            run(cli, "export", str(src), "-o", str(bundle))
            run(cli, "import", str(dst), str(bundle))
            bundle.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default="target/release/syncline")
    ap.add_argument("rows", nargs="?", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        hub, peer = tmp / "hub.db", tmp / "peer.db"
        for db in (hub, peer):
            run("sqlite3", str(db), DDL)
            run(a.cli, "init", str(db), "--table", "todos")
        exchange(a.cli, hub, peer, tmp)
        before = size(hub)
        run("sqlite3", str(hub),
            "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < %d) "
            "INSERT INTO todos SELECT x, 'todo ' || x, x %% 2, substr(hex(randomblob(50)), 1, 100) FROM i;" % a.rows)
        exchange(a.cli, hub, peer, tmp)
        run("sqlite3", str(hub), "DELETE FROM todos;")
        exchange(a.cli, hub, peer, tmp)
        deleted = size(hub)
        run(a.cli, "compact", str(hub), "--retain", "0s")
        after = size(hub)
        print(f"{a.rows:,} rows inserted, deleted, synced with one peer, compacted:")
        print(f"  before the inserts {before:>12,} bytes")
        print(f"  after the deletes  {deleted:>12,} bytes")
        print(f"  after compact      {after:>12,} bytes   ratio {after / before:.2f}x of before (target <= 1.5)")


if __name__ == "__main__":
    main()
