#!/usr/bin/env python3
"""The loadable extension (libsyncline.so) from the sqlite3 shell: the SQL functions of
spec/sql-functions.md on the shell's own SQLite (Debian's, 3.40: bound by its exported symbols).

Two replicas written by the shell converge by bundle file and by blob, a manual conflict is
recorded and resolved, a replica syncs with `syncline serve` over HTTP, and bad calls give typed
errors that leave the database as it was. Every scenario ends with equal state hashes.

Usage: python3 ext/test.py LIBSYNCLINE [SYNCLINE_CLI]   (prints `ext: N passed, M failed`)"""
from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Callable, List

LIB = str(pathlib.Path(sys.argv[1]).resolve().with_suffix(""))  # .load takes the name without .so
CLI = sys.argv[2] if len(sys.argv) > 2 else ""
TODOS = "CREATE TABLE IF NOT EXISTS todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER)"
results: List[bool] = []


def shell(db: pathlib.Path, *sql: str, ok: bool = True) -> List[str]:
    """Run statements in one sqlite3 shell process with the extension loaded; stdout lines."""
    script = f".bail on\n.load {LIB}\n" + "\n".join(sql) + "\n"
    out = subprocess.run(["sqlite3", str(db)], input=script, capture_output=True, text=True, timeout=120)
    if ok and out.returncode != 0:
        raise AssertionError(f"sqlite3 failed: {out.stderr.strip()}")
    if not ok:
        assert out.returncode != 0, f"expected an error, got {out.stdout!r}"
        return out.stderr.strip().splitlines()
    return out.stdout.strip().splitlines()


def one(db: pathlib.Path, sql: str) -> str:
    return shell(db, sql)[-1]


def replica(dir: pathlib.Path, name: str, strategy: str = "lww") -> pathlib.Path:
    db = dir / f"{name}.db"
    shell(db, TODOS + ";", f"SELECT syncline_enable('todos', '{strategy}');")
    return db


def exchange(a: pathlib.Path, b: pathlib.Path, tmp: pathlib.Path) -> None:
    """a → b by file, b → a by file, each bundle for the other's site id."""
    for src, dst in ((a, b), (b, a)):
        peer = one(dst, "SELECT syncline_site_id();")
        f = tmp / "x.bundle"
        json.loads(one(src, f"SELECT syncline_export('{f}', '{peer}');"))
        json.loads(one(dst, f"SELECT syncline_import(readfile('{f}'));"))


def same_hash(*dbs: pathlib.Path) -> None:
    hashes = {one(db, "SELECT syncline_state_hash();") for db in dbs}
    assert len(hashes) == 1, f"state hashes differ: {hashes}"


def test(fn: Callable[[pathlib.Path], None]) -> None:
    with tempfile.TemporaryDirectory() as d:
        try:
            fn(pathlib.Path(d))
            print(f"ok - {fn.__name__}")
            results.append(True)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            print(f"not ok - {fn.__name__}: {e}")
            results.append(False)


def two_replicas_written_by_the_shell_converge(tmp: pathlib.Path) -> None:
    a, b = replica(tmp, "a"), replica(tmp, "b")
    shell(a, "INSERT INTO todos VALUES (1, 'milk', 0), (2, 'eggs', 0);")
    shell(b, "INSERT INTO todos VALUES (3, 'tea', 0);")
    exchange(a, b, tmp)
    shell(b, "UPDATE todos SET done = 1 WHERE id = 1;", "DELETE FROM todos WHERE id = 2;")
    exchange(a, b, tmp)
    assert shell(a, "SELECT id, done FROM todos ORDER BY id;") == ["1|1", "3|0"]
    status = json.loads(one(a, "SELECT syncline_status();"))
    assert status["tables"] == [{"name": "todos", "strategy": "lww", "rows": 2}], status
    same_hash(a, b)


def a_bundle_travels_as_a_blob(tmp: pathlib.Path) -> None:
    a, b = replica(tmp, "a"), replica(tmp, "b")
    shell(a, "INSERT INTO todos VALUES (1, 'milk', 0);")
    shell(a, f"ATTACH '{tmp / 'carrier.db'}' AS carrier;", "CREATE TABLE carrier.b(x BLOB);")
    shell(a, f"ATTACH '{tmp / 'carrier.db'}' AS carrier;", "INSERT INTO carrier.b SELECT syncline_bundle();")
    report = json.loads(one(b, f"ATTACH '{tmp / 'carrier.db'}' AS carrier; SELECT syncline_import(x) FROM carrier.b;"))
    assert report["applied"] == 3 and report["rows"] == 1, report
    same_hash(a, b)


def a_manual_conflict_is_recorded_and_resolved(tmp: pathlib.Path) -> None:
    a, b = replica(tmp, "a", "manual"), replica(tmp, "b", "manual")
    shell(a, "INSERT INTO todos VALUES (1, 'milk', 0);")
    exchange(a, b, tmp)
    shell(a, "UPDATE todos SET title = 'oat milk' WHERE id = 1;")
    shell(b, "UPDATE todos SET title = 'soy milk' WHERE id = 1;")
    exchange(a, b, tmp)
    # Last writer wins meanwhile; the replica whose own value won records the conflict.
    conflicts = json.loads(one(b, "SELECT syncline_conflicts();"))
    assert len(conflicts) == 1 and conflicts[0]["column"] == "title", conflicts
    c = conflicts[0]
    assert {c["local"]["value"], c["remote"]["value"]} == {"oat milk", "soy milk"}, c
    assert one(b, f"SELECT syncline_resolve({c['id']}, 'value', 'milk');") == str(c["id"])
    assert json.loads(one(b, "SELECT syncline_conflicts();")) == []
    exchange(a, b, tmp)
    for db in (a, b):
        assert shell(db, "SELECT title FROM todos;") == ["milk"], db
    same_hash(a, b)


def bad_calls_are_typed_errors_and_change_nothing(tmp: pathlib.Path) -> None:
    a = replica(tmp, "a")
    shell(a, "INSERT INTO todos VALUES (1, 'milk', 0);")
    before = one(a, "SELECT syncline_state_hash();")
    cases = [
        ("SELECT syncline_import(x'0011223344');", "InvalidBundle:"),
        ("SELECT syncline_import('not a blob');", "InvalidArgument:"),
        ("BEGIN; SELECT syncline_status();", "InvalidArgument: syncline_* functions run outside a transaction"),
        ("SELECT syncline_enable('no_such_table');", "UnknownTable:"),
        ("SELECT syncline_bundle('zz');", "InvalidArgument:"),
        ("SELECT syncline_resolve(42, 'local');", "NotFound:"),
        ("SELECT syncline_set_strategy('todos', 'sometimes');", "InvalidArgument:"),
    ]
    for sql, expected in cases:
        err = "\n".join(shell(a, sql, ok=False))
        assert expected in err, f"{sql}: {err}"
    err = "\n".join(shell(pathlib.Path(":memory:"), "SELECT syncline_status();", ok=False))
    assert "InvalidArgument: syncline_* functions need a database file" in err, err
    assert one(a, "SELECT syncline_state_hash();") == before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def a_replica_syncs_with_a_server_over_http(tmp: pathlib.Path) -> None:
    if not CLI:
        raise AssertionError("no SYNCLINE_CLI given: the network case needs `syncline serve`")
    server_db = tmp / "server.db"
    subprocess.run(["sqlite3", str(server_db), TODOS], check=True)
    subprocess.run([CLI, "init", str(server_db), "--table", "todos"], check=True, capture_output=True)
    port, token = free_port(), "ext-test-token"
    server = subprocess.Popen([CLI, "serve", str(server_db), "--port", str(port), "--token", token],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                req = urllib.request.Request(f"{url}/v1/info", headers={"Authorization": f"Bearer {token}"})
                urllib.request.urlopen(req, timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        a, b = replica(tmp, "a"), replica(tmp, "b")
        shell(a, "INSERT INTO todos VALUES (1, 'from a', 0);")
        shell(b, "INSERT INTO todos VALUES (2, 'from b', 0);")
        for db in (a, b, a):
            json.loads(one(db, f"SELECT syncline_sync('{url}', '{token}');"))
        err = "\n".join(shell(a, f"SELECT syncline_sync('{url}', 'wrong');", ok=False))
        assert "Auth:" in err, err
        for db in (a, b):
            assert shell(db, "SELECT id FROM todos ORDER BY id;") == ["1", "2"], db
        same_hash(a, b)
    finally:
        server.terminate()
        server.wait(30)


for t in (
    two_replicas_written_by_the_shell_converge,
    a_bundle_travels_as_a_blob,
    a_manual_conflict_is_recorded_and_resolved,
    bad_calls_are_typed_errors_and_change_nothing,
    a_replica_syncs_with_a_server_over_http,
):
    test(t)
print(f"ext: {results.count(True)} passed, {results.count(False)} failed")
sys.exit(0 if all(results) else 1)
