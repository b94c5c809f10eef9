#!/usr/bin/env python3
"""Initial sync of a big data set, timed (issue 15's measurement), with the release CLI.

For each size N: a server database with N todos rows (100-byte bodies) written by the sqlite3
shell, then `syncline init`; the baseline is a local `export` plus `import` into a fresh
replica; then a fresh client runs `syncline sync` against `syncline serve` on 127.0.0.1, and a
new device runs `syncline clone` (the server's snapshot, then a catch-up sync). Prints
each time, and the two ratios the target names: sync / (export + import) at the largest size
(target <= 2), and sync(largest) / sync(smallest) against the size ratio (target <= 4.5 for
1,000,000 vs 250,000 rows).

Usage: python3 scripts/bench-initial-sync.py [--cli target/release/syncline] [N ...]
       (default sizes 250000 1000000)"""
from __future__ import annotations

import argparse
import pathlib
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request

TOKEN = "bench-token"


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def timed(*cmd: str) -> float:
    t0 = time.perf_counter()
    run(*cmd)
    return time.perf_counter() - t0


def make_db(path: pathlib.Path, n: int, cli: str) -> None:
    sql = (
        "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER, body TEXT);"
        "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < %d) "
        "INSERT INTO todos SELECT x, 'todo ' || x, x %% 2, substr(hex(randomblob(50)), 1, 100) FROM i;" % n
    )
    run("sqlite3", str(path), sql)
    run(cli, "init", str(path), "--table", "todos")


def empty_replica(path: pathlib.Path, cli: str) -> None:
    run("sqlite3", str(path), "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER, body TEXT);")
    run(cli, "init", str(path), "--table", "todos")


def rows(path: pathlib.Path) -> int:
    with sqlite3.connect(path) as c:
        return int(c.execute("SELECT count(*) FROM todos").fetchone()[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(n: int, cli: str, tmp: pathlib.Path) -> tuple[float, float]:
    server_db = tmp / f"server{n}.db"
    make_db(server_db, n, cli)
    bundle, local = tmp / f"all{n}.bundle", tmp / f"local{n}.db"
    empty_replica(local, cli)
    baseline = timed(cli, "export", str(server_db), "-o", str(bundle)) + timed(cli, "import", str(local), str(bundle))
    assert rows(local) == n
    port = free_port()
    server = subprocess.Popen([cli, "serve", str(server_db), "--port", str(port), "--token", TOKEN],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                req = urllib.request.Request(f"{url}/v1/info", headers={"Authorization": f"Bearer {TOKEN}"})
                urllib.request.urlopen(req, timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        client = tmp / f"client{n}.db"
        empty_replica(client, cli)
        sync = timed(cli, "sync", str(client), url, "--token", TOKEN)
        assert rows(client) == n, f"the client has {rows(client)} of {n} rows"
        cloned = tmp / f"clone{n}.db"
        clone = timed(cli, "clone", url, str(cloned), "--token", TOKEN)
        assert rows(cloned) == n, f"the clone has {rows(cloned)} of {n} rows"
    finally:
        server.terminate()
        server.wait(30)
    print(f"{n:>10,} rows: export + import {baseline:7.2f} s   initial sync {sync:7.2f} s   ratio {sync / baseline:.2f}x"
          f"   clone (server snapshot + catch-up) {clone:7.2f} s, {sync / clone:.1f}x faster than the sync", flush=True)
    return baseline, sync


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default="target/release/syncline")
    ap.add_argument("sizes", nargs="*", type=int, default=[250_000, 1_000_000])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        results = {n: measure(n, a.cli, pathlib.Path(d)) for n in sorted(a.sizes)}
    small, large = min(results), max(results)
    print(f"initial sync vs export + import at {large:,} rows: {results[large][1] / results[large][0]:.2f}x (target <= 2)")
    if large != small:
        print(f"initial sync {large:,} vs {small:,} rows: {results[large][1] / results[small][1]:.2f}x "
              f"for {large / small:.1f}x the rows (target <= 4.5 for 4x)")


if __name__ == "__main__":
    main()
