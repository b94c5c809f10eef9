"""Syncline from Python: the todos workload (run by hand: `python bench.py [rows]`).

- 10,000 inserts through sqlite3.executemany into an enabled table vs a plain one (ratio);
- export of a bundle for a new peer (ms, bytes/row);
- import into a fresh replica (rows/s).
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from syncline import SyncEngine

SCHEMA = "CREATE TABLE IF NOT EXISTS todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER, body TEXT)"


def rows(n: int) -> list[tuple[int, str, int, str]]:
    return [(i, f"todo number {i}", i % 2, ("x" * 90 + f"{i:010d}")[:100]) for i in range(n)]


def insert(path: Path, n: int) -> float:
    conn = sqlite3.connect(path)
    data = rows(n)
    start = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO todos VALUES (?, ?, ?, ?)", data)
    took = time.perf_counter() - start
    conn.close()
    return took


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plain = tmp / "plain.db"
        with SyncEngine(plain) as e:  # same pragmas (WAL, synchronous=NORMAL), table not enabled
            e.execute_batch(SCHEMA)
        t_plain = insert(plain, n)

        synced = tmp / "synced.db"
        with SyncEngine(synced) as a:
            a.execute_batch(SCHEMA)
            a.enable_sync("todos")
            t_synced = insert(synced, n)

            start = time.perf_counter()
            bundle = a.generate_bundle()
            t_export = time.perf_counter() - start

            with SyncEngine(tmp / "replica.db") as b:
                b.execute_batch(SCHEMA)
                b.enable_sync("todos")
                start = time.perf_counter()
                report = b.import_bundle(bundle)
                t_import = time.perf_counter() - start
                assert b.query("SELECT count(*) FROM todos")[0][0] == n

            packed = a.generate_bundle(compress=True)

    print(f"rows: {n} (100-byte bodies), sqlite3.executemany in one transaction")
    print(f"insert plain table:   {t_plain * 1000:8.1f} ms  ({n / t_plain:,.0f} rows/s)")
    print(f"insert synced table:  {t_synced * 1000:8.1f} ms  ({n / t_synced:,.0f} rows/s)")
    print(f"capture overhead:     {t_synced / t_plain:8.2f} x")
    print(f"export for new peer:  {t_export * 1000:8.1f} ms  {len(bundle):,} bytes = {len(bundle) / n:.1f} bytes/row"
          f" (compressed {len(packed) / n:.1f} bytes/row)")
    print(f"import fresh replica: {t_import * 1000:8.1f} ms  ({n / t_import:,.0f} rows/s, {report.applied:,} changes applied)")


if __name__ == "__main__":
    main()
