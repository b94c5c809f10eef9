#!/usr/bin/env python3
"""Network sync across languages: one `syncline serve` and three clients in different
languages syncing through it.

    SYNCLINE_CLI=target/release/syncline python3 scripts/net-interop.py

- the server: `$SYNCLINE_CLI serve server.db --port P --token T` on a free port of 127.0.0.1;
- a Python client (python/.venv-test/bin/python, the wheel python/test.sh installs),
  a Node client (node/net-client.js on the addon node/test.sh builds in node/) and the Rust CLI
  (`syncline sync DB URL --token T`; its database is written with Python's sqlite3, whose writes
  the triggers capture like any other);
- round 1: each client writes its rows; they sync until all three hold every row;
- then the Python client writes and syncs more rows (acknowledged by the server), the server is
  killed with SIGKILL at once, the Node and CLI clients write while it is down (their syncs must
  fail with Network), the server is restarted on the same port and database: it must still hold
  every acknowledged row, and the clients must catch up;
- finally the state hashes of the three clients (Python `state_hash()`, Node `stateHash()`, the
  CLI's database opened from Python) and of the server's database must be equal.

Exits non-zero on any failure; the last line is `net-interop: N passed, M failed`.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import BinaryIO, Callable, List, Optional, Set

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV_PY = ROOT / "python" / ".venv-test" / "bin" / "python"
NODE_CLIENT = ROOT / "node" / "net-client.js"
TOKEN = "net-interop-token"
ROWS = 5  # rows per client per round
ITEMS = "CREATE TABLE IF NOT EXISTS items(id TEXT PRIMARY KEY, origin TEXT, n INTEGER)"

# The Python client, run with the test virtualenv's interpreter (the installed wheel).
PY_CLIENT = r"""
import json, sys
import syncline
command, db, *args = sys.argv[1:]
with syncline.SyncEngine(db) as e:
    if command == "init":
        e.execute_batch(ITEMS)
        e.enable_sync("items")
    elif command == "write":
        prefix, n = args
        for i in range(1, int(n) + 1):
            e.execute("INSERT INTO items(id, origin, n) VALUES (?, ?, ?)", (f"{prefix}-{i}", "python", i))
    elif command == "sync":
        url, token = args
        try:
            r = e.sync(url, token)
        except syncline.SynclineError as err:
            print(json.dumps({"code": err.code, "message": str(err)}))
            sys.exit(3)
        print(json.dumps({k: getattr(r, k) for k in ("pushed", "server_applied", "pulled", "applied", "conflicts", "rejected", "round_trips")}))
    elif command == "ids":
        print(json.dumps([row[0] for row in e.query("SELECT id FROM items ORDER BY id")]))
    elif command == "hash":
        print(e.state_hash())
    else:
        sys.exit(f"unknown command {command}")
""".replace("ITEMS", repr(ITEMS))

passed = 0
failed = 0


def check(name: str, ok: bool, detail: str = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}" + (f": {detail}" if detail else ""))
    sys.stdout.flush()
    return ok


def run(cmd: List[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Failure(Exception):
    pass


class Client:
    name: str
    db: pathlib.Path

    def _cmd(self, *args: str) -> List[str]:
        raise NotImplementedError

    def call(self, *args: str) -> str:
        out = run(self._cmd(*args))
        if out.returncode != 0:
            raise Failure(f"{self.name} {args[0]} failed ({out.returncode}): {(out.stdout + out.stderr).strip()[-600:]}")
        return out.stdout.strip()

    def init(self) -> None:
        self.call("init", str(self.db))

    def write(self, prefix: str, n: int) -> None:
        self.call("write", str(self.db), prefix, str(n))

    def sync(self, url: str) -> subprocess.CompletedProcess[str]:
        """One sync pass; the completed process (exit 0 on success)."""
        return run(self._cmd("sync", str(self.db), url, TOKEN))

    def ids(self) -> Set[str]:
        return set(json.loads(self.call("ids", str(self.db))))

    def hash(self) -> str:
        return self.call("hash", str(self.db)).splitlines()[-1]


class PythonClient(Client):
    name = "python"

    def __init__(self, db: pathlib.Path) -> None:
        self.db = db

    def _cmd(self, *args: str) -> List[str]:
        return [str(VENV_PY), "-c", PY_CLIENT, *args]


class NodeClient(Client):
    name = "node"

    def __init__(self, db: pathlib.Path) -> None:
        self.db = db

    def _cmd(self, *args: str) -> List[str]:
        return ["node", str(NODE_CLIENT), *args]


class CliClient(Client):
    """The Rust CLI syncs; its database is set up and written with sqlite3, and read for the
    state hash by the Python engine."""

    name = "cli"

    def __init__(self, db: pathlib.Path, cli: str) -> None:
        self.db = db
        self.cli = cli
        self.py = PythonClient(db)

    def init(self) -> None:
        with sqlite3.connect(self.db) as conn:
            conn.execute(ITEMS)
        conn.close()
        out = run([self.cli, "init", str(self.db), "--table", "items"])
        if out.returncode != 0:
            raise Failure(f"syncline init failed: {out.stderr.strip()}")

    def write(self, prefix: str, n: int) -> None:
        conn = sqlite3.connect(self.db, timeout=10)
        with conn:
            conn.executemany(
                "INSERT INTO items(id, origin, n) VALUES (?, ?, ?)", [(f"{prefix}-{i}", "cli", i) for i in range(1, n + 1)]
            )
        conn.close()

    def sync(self, url: str) -> subprocess.CompletedProcess[str]:
        return run([self.cli, "--json", "sync", str(self.db), url, "--token", TOKEN])

    def ids(self) -> Set[str]:
        conn = sqlite3.connect(self.db, timeout=10)
        try:
            return {r[0] for r in conn.execute("SELECT id FROM items")}
        finally:
            conn.close()

    def hash(self) -> str:
        return self.py.hash()


class Server:
    def __init__(self, cli: str, db: pathlib.Path, port: int) -> None:
        self.cli, self.db, self.port = cli, db, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log: Optional[BinaryIO] = None

    def start(self) -> None:
        self.log = self.db.with_suffix(".log").open("wb")
        self.proc = subprocess.Popen(
            [self.cli, "serve", str(self.db), "--port", str(self.port), "--token", TOKEN],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # a file, not a pipe: the server logs a line per request, and a full pipe nobody
            # reads would stop it
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                err = self.db.with_suffix(".log").read_text(errors="replace")
                raise Failure(f"syncline serve exited with {self.proc.returncode}: {err.strip()}")
            try:
                req = urllib.request.Request(f"{self.url}/v1/info", headers={"Authorization": f"Bearer {TOKEN}"})
                with urllib.request.urlopen(req, timeout=2) as answer:
                    if json.loads(answer.read()).get("protocol") == 1:
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise Failure(f"syncline serve did not answer GET {self.url}/v1/info within 30 s")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            self.log.close()


def server_ids(db: pathlib.Path) -> Set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM items")}
    finally:
        conn.close()


def converge(clients: List[Client], url: str, want: Set[str], what: str, rounds: int = 4) -> None:
    """Sync every client in turn until all hold `want` (at most `rounds` rounds)."""
    held = {}
    for r in range(1, rounds + 1):
        for c in clients:
            out = c.sync(url)
            check(f"{what}: {c.name} sync (round {r})", out.returncode == 0, (out.stdout + out.stderr).strip()[-400:])
        held = {c.name: c.ids() for c in clients}
        if all(h == want for h in held.values()):
            check(f"{what}: all three hold all {len(want)} rows after {r} round(s)", True)
            return
    missing = {n: sorted(want - h)[:5] for n, h in held.items() if h != want}
    check(f"{what}: all three hold all {len(want)} rows", False, f"missing: {missing}")


def main() -> int:
    cli = os.environ.get("SYNCLINE_CLI")
    if not cli:
        print("net-interop: SYNCLINE_CLI is not set (the Rust CLI with `serve`, e.g. target/release/syncline after "
              "`cargo build --release -p syncline-cli`)", file=sys.stderr)
        check("SYNCLINE_CLI is set", False)
        return 1
    problems = []
    if not os.access(cli, os.X_OK):
        problems.append(f"SYNCLINE_CLI={cli} is not an executable")
    if not VENV_PY.exists():
        problems.append(f"{VENV_PY} is missing: run python/test.sh first (it installs the wheel there)")
    if not (ROOT / "node" / "index.js").exists() or not list((ROOT / "node").glob("syncline.*.node")):
        problems.append("node/index.js or node/syncline.*.node is missing: run node/test.sh first (it builds the addon)")
    for p in problems:
        check("prerequisites", False, p)
    if problems:
        print(f"net-interop: {passed} passed, {failed} failed")
        return 1

    with tempfile.TemporaryDirectory(prefix="syncline-net-interop-") as tmp:
        d = pathlib.Path(tmp)
        server_db = d / "server.db"
        clients: List[Client] = [PythonClient(d / "python.db"), NodeClient(d / "node.db"), CliClient(d / "cli.db", cli)]
        port = free_port()
        server = Server(cli, server_db, port)
        try:
            CliClient(server_db, cli).init()  # the served database: `items` enabled by `syncline init`
            for c in clients:
                c.init()
            server.start()
            check(f"server up on {server.url}", True)

            # Round 1: everybody writes, everybody syncs until converged.
            want: Set[str] = set()
            for c in clients:
                c.write(f"{c.name}-r1", ROWS)
                want |= {f"{c.name}-r1-{i}" for i in range(1, ROWS + 1)}
            converge(clients, server.url, want, "round 1")
            acknowledged = set(want)

            # The Python client pushes more rows (acknowledged by a 200), then SIGKILL at once.
            py, others = clients[0], clients[1:]
            py.write("python-r2", ROWS)
            new_py = {f"python-r2-{i}" for i in range(1, ROWS + 1)}
            out = py.sync(server.url)
            if check("round 2: python pushes before the kill", out.returncode == 0, out.stdout + out.stderr):
                acknowledged |= new_py
            want |= new_py
            server.kill(signal.SIGKILL)
            check("server killed with SIGKILL", server.proc is not None and server.proc.returncode == -signal.SIGKILL,
                  f"returncode {server.proc.returncode if server.proc else None}")

            # While it is down: the others write, and their syncs fail with Network.
            for c in others:
                c.write(f"{c.name}-r2", ROWS)
                want |= {f"{c.name}-r2-{i}" for i in range(1, ROWS + 1)}
                out = c.sync(server.url)
                text = out.stdout + out.stderr
                check(f"server down: {c.name} sync fails with Network", out.returncode != 0 and "Network" in text,
                      f"exit {out.returncode}: {text.strip()[-300:]}")

            # Restart on the same port and database: nothing acknowledged is lost.
            server = Server(cli, server_db, port)
            server.start()
            check(f"server restarted on {server.url}", True)
            held = server_ids(server_db)
            check(f"restarted server holds all {len(acknowledged)} acknowledged rows", acknowledged <= held,
                  f"lost: {sorted(acknowledged - held)[:10]}")
            converge(clients, server.url, want, "after the restart")
            server.kill(signal.SIGTERM)

            hashes = {c.name: c.hash() for c in clients}
            hashes["server"] = PythonClient(server_db).hash()
            for name, h in hashes.items():
                print(f"     state hash {name:7s} {h}")
            check("state hashes equal (python, node, cli, server)", len(set(hashes.values())) == 1, json.dumps(hashes))
            check("server database holds every row", server_ids(server_db) == want)
        except (Failure, subprocess.TimeoutExpired) as e:
            check("run", False, str(e))
        finally:
            server.kill()
    print(f"net-interop: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
