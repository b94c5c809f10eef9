"""Syncline from Python: the todos workload of `cargo bench -p syncline --bench todos`, run the
same way (same rows and 100-byte bodies, median of 5 runs), so the figures compare directly.

- 10,000 inserts through sqlite3.executemany into an enabled table vs a plain one (ratio),
  and the engine's later stamping of the queued writes (the first status() after them);
- 10,000 single-row updates in one transaction, enabled vs plain (ratio), and their stamping;
- export of a bundle for a new peer (ms, bytes/row);
- import into a fresh replica (rows/s).

Run it in the virtualenv `test.sh` makes: `python -P bench.py [rows]`.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from syncline import SyncEngine

SCHEMA = "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER, body TEXT)"
RUNS = 5
MASK = (1 << 64) - 1


def body(i: int) -> str:
    """100 letters, the same xorshift sequence as `body()` in core/benches/todos.rs."""
    x = (i * 6364136223846793005 + 1442695040888963407) & MASK
    out = []
    for _ in range(100):
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
        out.append(chr(ord("a") + x % 26))
    return "".join(out)


def fresh(path: Path, enabled: bool) -> Path:
    with SyncEngine(path) as e:  # WAL and synchronous=NORMAL, as the Rust bench's connections
        e.execute_batch(SCHEMA)
        if enabled:
            e.enable_sync("todos")
    return path


def timed_batch(path: Path, sql: str, rows: Sequence[tuple[object, ...]]) -> float:
    """One transaction of `executemany` through Python's own sqlite3 connection, timed."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = NORMAL")
    start = time.perf_counter()
    with conn:
        conn.executemany(sql, rows)
    took = time.perf_counter() - start
    conn.close()
    return took


def insert(path: Path, data: list[tuple[int, str, str]]) -> float:
    return timed_batch(path, "INSERT INTO todos(id, title, done, body) VALUES (?, ?, 0, ?)", data)


def update(path: Path, n: int, round_: int) -> float:
    data = [(f"task {i} v{round_}", i) for i in range(n)]
    return timed_batch(path, "UPDATE todos SET title = ? WHERE id = ?", data)


def stamp(e: SyncEngine) -> float:
    """Time the first status() after app writes: it stamps everything the triggers queued.

    The WAL is checkpointed first, so the figure is the stamping alone (as in the Rust bench).
    """
    e.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
    start = time.perf_counter()
    e.status()
    return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    data = [(i, f"task {i}", body(i)) for i in range(n)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plain_t, synced_t = [], []
        engines = []  # an engine stays open on each synced database, as in an app
        for r in range(RUNS):
            plain_t.append(insert(fresh(tmp / f"plain{r}.db", False), data))
            engines.append(SyncEngine(fresh(tmp / f"sync{r}.db", True)))
            synced_t.append(insert(tmp / f"sync{r}.db", data))
        t_plain, t_synced = statistics.median(plain_t), statistics.median(synced_t)
        s_ins = statistics.median(stamp(e) for e in engines)
        plain_u, synced_u = [], []
        for r in range(RUNS):
            plain_u.append(update(tmp / f"plain{r}.db", n, r))
            synced_u.append(update(tmp / f"sync{r}.db", n, r))
        u_plain, u_synced = statistics.median(plain_u), statistics.median(synced_u)
        s_upd = statistics.median(stamp(e) for e in engines)
        for e in engines:
            e.close()

        with SyncEngine(tmp / "sync0.db") as a:
            export_t = []
            bundle = b""
            for _ in range(RUNS):
                start = time.perf_counter()
                bundle = a.generate_bundle()
                export_t.append(time.perf_counter() - start)
            packed = a.generate_bundle(compress=True)
        t_export = statistics.median(export_t)

        import_t = []
        for r in range(RUNS):
            with SyncEngine(fresh(tmp / f"dst{r}.db", True)) as b:
                start = time.perf_counter()
                report = b.import_bundle(bundle)
                import_t.append(time.perf_counter() - start)
                assert report.rows == n
                assert b.query("SELECT count(*) FROM todos")[0][0] == n
        t_import = statistics.median(import_t)

    print(f"rows: {n} (100-byte bodies), sqlite3.executemany in one transaction, median of {RUNS} runs")
    print(f"SQLite: {sqlite3.sqlite_version} (the library this interpreter's sqlite3 module and Syncline share)")
    print(f"insert plain table:   {t_plain * 1000:8.2f} ms  ({n / t_plain:,.0f} rows/s)")
    print(f"insert synced table:  {t_synced * 1000:8.2f} ms  ({n / t_synced:,.0f} rows/s)")
    print(f"capture overhead:     {t_synced / t_plain:8.2f} x")
    print(f"stamping them later:  {s_ins * 1000:8.2f} ms  (first status() after the writes)")
    print(f"update plain table:   {u_plain * 1000:8.2f} ms")
    print(f"update synced table:  {u_synced * 1000:8.2f} ms")
    print(f"update overhead:      {u_synced / u_plain:8.2f} x")
    print(f"stamping them later:  {s_upd * 1000:8.2f} ms")
    print(f"export for new peer:  {t_export * 1000:8.2f} ms  {len(bundle):,} bytes = {len(bundle) / n:.1f} bytes/row"
          f" (compressed {len(packed) / n:.1f} bytes/row)")
    print(f"import fresh replica: {t_import * 1000:8.2f} ms  ({n / t_import:,.0f} rows/s)")


if __name__ == "__main__":
    main()
