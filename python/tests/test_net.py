"""Network sync against a real `syncline serve` (the Rust CLI from $SYNCLINE_CLI) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import BinaryIO, Callable, Iterator, List, Optional

import pytest

import syncline
from syncline import AuthError, NetworkError, SyncEngine, SyncHandle, SyncReport, SyncStatus

from conftest import TODOS, MakeReplica, todos

TOKEN = "s3cret-token"


def cli_path() -> str:
    cli = os.environ.get("SYNCLINE_CLI")
    if not cli:
        pytest.fail(
            "SYNCLINE_CLI is not set: point it at the `syncline` command that has `serve` "
            "(python/test.sh sets it; e.g. target/release/syncline after `cargo build --release -p syncline-cli`)"
        )
    if not os.path.exists(cli):
        pytest.fail(f"SYNCLINE_CLI={cli} does not exist")
    return cli


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """`syncline serve DB --port P --token T` as a child process."""

    def __init__(self, db: pathlib.Path, token: str) -> None:
        self.db = db
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log: Optional[BinaryIO] = None

    def start(self) -> None:
        self.log = self.db.with_suffix(".log").open("wb")
        self.proc = subprocess.Popen(
            [cli_path(), "serve", str(self.db), "--port", str(self.port), "--token", self.token],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # a file, not a pipe: the server logs a line per request, and a full pipe nobody
            # reads would stop it
            stderr=self.log,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                err = self.db.with_suffix(".log").read_text(errors="replace")
                pytest.fail(f"syncline serve exited with {self.proc.returncode}: {err}")
            try:
                request = urllib.request.Request(f"{self.url}/v1/info", headers={"Authorization": f"Bearer {self.token}"})
                with urllib.request.urlopen(request, timeout=2) as answer:
                    info = json.loads(answer.read())
                    assert info["protocol"] == 1
                    self.site_id: str = info["site_id"]
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"syncline serve did not answer GET {self.url}/v1/info within 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.log is not None:
            self.log.close()


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[Server]:
    db = tmp_path / "server.db"
    with SyncEngine(db) as e:
        e.execute_batch(TODOS)
        e.enable_sync("todos")
    srv = Server(db, TOKEN)
    srv.start()
    yield srv
    srv.stop()


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def server_rows(server: Server) -> List[tuple[syncline.SqlValue, ...]]:
    with SyncEngine(server.db) as s:
        return todos(s)


def test_two_engines_converge_through_the_server(make_replica: MakeReplica, server: Server) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'from a'), (2, 'also a')")
    b.execute("INSERT INTO todos(id, title, done) VALUES (3, 'from b', 1)")
    first = a.sync(server.url, TOKEN)
    assert isinstance(first, SyncReport)
    assert first.pushed > 0 and first.server_applied > 0 and first.round_trips >= 2
    assert "SyncReport(pushed=" in repr(first)
    rb = b.sync(server.url, token=TOKEN)
    assert rb.applied > 0  # a's rows came down
    ra = a.sync(server.url, TOKEN)
    assert ra.applied > 0 and ra.pushed == 0
    assert todos(a) == todos(b) == [(1, "from a", 0, None), (2, "also a", 0, None), (3, "from b", 1, None)]
    assert a.state_hash() == b.state_hash()
    # an edit on both sides of the same cell converges (column-level LWW) through the server
    a.execute("UPDATE todos SET title = 'a wins?' WHERE id = 3")
    b.execute("UPDATE todos SET done = 0 WHERE id = 3")
    for e in (a, b, a):
        e.sync(server.url, TOKEN)
    assert todos(a) == todos(b)
    assert todos(a)[2] == (3, "a wins?", 0, None)
    assert a.state_hash() == b.state_hash()
    # nothing left to do: one round trip, nothing moved
    again = b.sync(server.url, TOKEN)
    assert (again.pushed, again.applied, again.round_trips) == (0, 0, 2)


def test_sync_async(make_replica: MakeReplica, server: Server) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'async')")

    async def main() -> tuple[SyncReport, SyncReport]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.ensure_future(ticker())
        ra = await a.sync_async(server.url, TOKEN)
        rb = await b.sync_async(server.url, token=TOKEN)
        t.cancel()
        assert ticks > 0  # the event loop kept running
        with pytest.raises(AuthError):
            await b.sync_async(server.url, "wrong")
        return ra, rb

    ra, rb = asyncio.run(main())
    assert ra.pushed > 0 and rb.applied > 0
    assert todos(b) == [(1, "async", 0, None)]


def test_wrong_token_is_refused_and_changes_nothing(make_replica: MakeReplica, server: Server) -> None:
    a = make_replica("a")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'secret')")
    before = a.state_hash()
    with pytest.raises(AuthError) as caught:
        a.sync(server.url, "not-the-token")
    assert caught.value.code == "Auth"
    assert isinstance(caught.value, syncline.SynclineError)
    with pytest.raises(AuthError):
        a.sync(server.url)  # no token at all
    assert a.state_hash() == before
    assert server_rows(server) == []
    # the server is untouched: a client with the right token gets nothing
    c = make_replica("c")
    report = c.sync(server.url, TOKEN)
    assert report.applied == 0 and todos(c) == []


def test_unreachable_server_is_a_network_error(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'offline')")
    before = a.state_hash()
    with pytest.raises(NetworkError) as caught:
        a.sync(f"http://127.0.0.1:{free_port()}", TOKEN)
    assert caught.value.code == "Network"
    assert a.state_hash() == before
    with pytest.raises(syncline.InvalidArgumentError):
        a.sync("ftp://example.invalid", TOKEN)
    with pytest.raises(syncline.InvalidArgumentError):
        a.start_sync("http://127.0.0.1:1", TOKEN, interval=-1)


def test_background_loop_converges_and_reports(make_replica: MakeReplica, server: Server) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'loop a')")
    with a.start_sync(server.url, TOKEN, interval=0.2) as handle:
        assert isinstance(handle, SyncHandle)
        wait_until(lambda: handle.status().syncs >= 1, "a first background pass")
        b.execute("INSERT INTO todos(id, title) VALUES (2, 'from b')")
        b.sync(server.url, TOKEN)
        wait_until(lambda: len(todos(a)) == 2, "b's row to reach a by the loop")
        a.execute("INSERT INTO todos(id, title) VALUES (3, 'later a')")
        handle.sync_now()
        wait_until(lambda: handle.status().pending == 0 and len(server_rows(server)) == 3, "a's new row to reach the server")
        st = handle.status()
        assert isinstance(st, SyncStatus)
        assert st.running and st.syncs >= 2 and st.failures == 0
        assert st.last_error is None
        assert st.last_success is not None and abs(st.last_success - time.time()) < 60
        assert st.last_report is not None and isinstance(st.last_report, SyncReport)
        assert "SyncStatus(running=True" in repr(st)
        assert handle.running
    assert not handle.status().running
    handle.stop()  # idempotent
    b.sync(server.url, TOKEN)
    assert a.state_hash() == b.state_hash()


def test_background_loop_reports_failures(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'waiting')")
    port = free_port()
    handle = a.start_sync(f"http://127.0.0.1:{port}", TOKEN, interval=0.2, max_backoff=0.3)
    try:
        wait_until(lambda: handle.status().failures >= 2, "two failed passes")
        st = handle.status()
        assert isinstance(st.last_error, NetworkError) and st.last_error.code == "Network"
        assert st.last_success is None and st.syncs == 0 and st.running
        assert st.pending > 0
        # the server appears: the loop recovers on its own (backoff <= 0.3 s)
        db = tmp_path / "late.db"
        with SyncEngine(db) as e:
            e.execute_batch(TODOS)
            e.enable_sync("todos")
        srv = Server(db, TOKEN)
        srv.port, srv.url = port, f"http://127.0.0.1:{port}"
        srv.start()
        try:
            wait_until(lambda: handle.status().syncs >= 1, "a pass after the server started")
            st = handle.status()
            assert st.last_error is None and st.failures == 0 and st.last_success is not None
            wait_until(lambda: handle.status().pending == 0, "nothing pending")
        finally:
            handle.stop()
            srv.stop()
        assert server_rows(srv) == [(1, "waiting", 0, None)]
    finally:
        handle.stop()


def test_background_loop_auth_failure(make_replica: MakeReplica, server: Server) -> None:
    a = make_replica("a")
    with a.start_sync(server.url, "wrong", interval=0.2, max_backoff=0.3) as handle:
        wait_until(lambda: handle.status().failures >= 1, "a failed pass")
        assert isinstance(handle.status().last_error, AuthError)


def test_live_mode_sees_another_clients_change_without_polling(make_replica: MakeReplica, server: Server) -> None:
    a = make_replica("a")
    b = make_replica("b")
    # interval of an hour: only the live notice can bring the change in time
    with b.start_sync(server.url, TOKEN, interval=3600, live=True) as handle:
        wait_until(lambda: handle.status().syncs >= 1, "b's first pass")
        time.sleep(0.5)  # let the WebSocket connect (a change before that is caught up by its reconnect sync)
        syncs = handle.status().syncs
        a.execute("INSERT INTO todos(id, title) VALUES (1, 'live!')")
        a.sync(server.url, TOKEN)
        wait_until(lambda: todos(b) == [(1, "live!", 0, None)], "the live notice to bring a's row to b", timeout=10)
        # the pass that imported the row is counted just after its commit
        wait_until(lambda: handle.status().syncs > syncs, "the live pass to be counted")
        # and b's own local write is pushed at once in live mode
        b.execute("INSERT INTO todos(id, title) VALUES (2, 'pushed live')")
        wait_until(lambda: len(server_rows(server)) == 2, "b's write to reach the server", timeout=10)
    a.sync(server.url, TOKEN)
    assert a.state_hash() == b.state_hash()


def test_async_context_manager_and_close_stops_loops(make_replica: MakeReplica, server: Server) -> None:
    a = make_replica("a")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'async loop')")

    async def main() -> SyncHandle:
        async with a.start_sync(server.url, TOKEN, interval=0.1) as h:
            while h.status().syncs < 1:
                await asyncio.sleep(0.05)
        return h

    h = asyncio.run(main())
    assert not h.status().running
    assert server_rows(server) == [(1, "async loop", 0, None)]
    # close() stops the loops started from the engine
    h2 = a.start_sync(server.url, TOKEN, interval=0.1)
    wait_until(lambda: h2.status().syncs >= 1, "a pass")
    a.close()
    with pytest.raises(syncline.ClosedError):
        h2.status()  # the stopped loop's status counts pending changes, which needs the engine
    h2.stop()  # idempotent
    with pytest.raises(syncline.ClosedError):
        a.sync(server.url, TOKEN)


def sync_threads() -> int:
    """Threads of this process named by the core's background sync loop."""
    tasks = pathlib.Path("/proc/self/task")
    return sum(1 for t in tasks.iterdir() if (t / "comm").read_text().strip() == "syncline-sync")


@pytest.mark.skipif(not pathlib.Path("/proc/self/task").exists(), reason="thread names are read from /proc")
def test_close_stops_every_background_sync_through_the_core(make_replica: MakeReplica) -> None:
    """The binding's close() only closes; the core stops the loops started on the engine."""
    a = make_replica("a")
    before = sync_threads()
    url = f"http://127.0.0.1:{free_port()}"
    handles = [a.start_sync(url, TOKEN, interval=0.1, max_backoff=0.2) for _ in range(2)]
    wait_until(lambda: sync_threads() == before + 2, "two loop threads")
    wait_until(lambda: all(h.status().failures >= 1 for h in handles), "a pass of each loop")
    a.close()  # the handles are still referenced and never stopped here
    wait_until(lambda: sync_threads() == before, "the loops to end after close()", timeout=10)
    for h in handles:
        h.stop()  # idempotent after close


def test_zero_and_bad_sync_options_are_refused(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    url = "http://127.0.0.1:9"
    # the zero rule is the core's (SyncOptions::validate), for every duration and page_rows
    for option in ("interval", "max_backoff", "timeout", "page_rows"):
        with pytest.raises(syncline.InvalidArgumentError) as caught:
            a.start_sync(url, TOKEN, **{option: 0})  # type: ignore[arg-type]
        assert str(caught.value) == f"sync option {option} must be greater than zero"
    # a duration below a nanosecond is zero too
    with pytest.raises(syncline.InvalidArgumentError, match="interval must be greater than zero"):
        a.start_sync(url, TOKEN, interval=1e-12)
    # what is no number of seconds at all is the binding's conversion error
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(syncline.InvalidArgumentError, match="must be a number of seconds"):
            a.start_sync(url, TOKEN, timeout=bad)
    with pytest.raises(OverflowError):
        a.start_sync(url, TOKEN, page_rows=-1)


def test_unset_options_are_the_cores_defaults(make_replica: MakeReplica) -> None:
    d = syncline.default_options()
    e = make_replica("a")
    assert (e.max_drift_ms, e.busy_timeout_ms, e.watch_interval_ms) == (d["max_drift_ms"], d["busy_timeout_ms"], d["watch_interval_ms"])
    assert d["live"] is False and d["page_rows"] == 5000
    # the documented defaults are the core's
    doc = " ".join((syncline.SyncEngine.start_sync.__doc__ or "").split())
    assert f"(default {d['interval']:g})" in doc and f"seconds (default {d['max_backoff']:g})" in doc
    assert f"(default {d['page_rows']})" in doc and f"(default {d['timeout']:g} s)" in doc


def test_sqlite3_writes_beside_background_syncs_converge(make_replica: MakeReplica, server: Server) -> None:
    """Short-lived sqlite3 connections write on two replicas while both sync in the background:
    every write is captured and pushed (one SQLite in the process, so nothing stays queued)."""
    import sqlite3

    a = make_replica("a")
    b = make_replica("b")
    with a.start_sync(server.url, TOKEN, interval=0.05, live=True), b.start_sync(server.url, TOKEN, interval=0.05, live=True):
        for i in range(40):
            conn = sqlite3.connect((a if i % 2 == 0 else b).path, timeout=10)
            with conn:
                conn.execute("INSERT INTO todos(id, title) VALUES (?, ?)", (i, f"row {i}"))
                if i >= 2:
                    conn.execute("UPDATE todos SET done = 1 WHERE id = ?", (i - 2,))
            conn.close()
        wait_until(lambda: len(todos(a)) == len(todos(b)) == 40, "every row on both replicas", timeout=30)
    for e in (a, b, a):
        e.sync(server.url, TOKEN)
    assert todos(a) == todos(b) == server_rows(server)
    assert [row[2] for row in todos(a)] == [1] * 38 + [0, 0]
    assert a.state_hash() == b.state_hash()


def fill(engine: SyncEngine, n: int) -> None:
    engine.execute(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
        "INSERT INTO todos(id, title, body) SELECT i, 'title ' || i, 'body ' || i FROM c",
        (n,),
    )


def test_sync_progress_reports_the_changes_pulled(make_replica: MakeReplica, server: Server) -> None:
    a = make_replica("a")
    fill(a, 12_000)  # more than two pages of the default 5000 rows
    a.sync(server.url, TOKEN)
    b = make_replica("b")
    calls: List[tuple[int, int]] = []
    report = b.sync(server.url, TOKEN, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 3, calls
    pulled = [d for d, _ in calls]
    assert pulled == sorted(pulled) and all(t == 0 for _, t in calls), calls
    assert calls[-1][0] == report.pulled > 0
    assert b.state_hash() == a.state_hash()

    async def main() -> SyncReport:
        return await a.sync_async(server.url, TOKEN, progress=lambda d, t: calls.append((d, t)))

    calls.clear()
    assert asyncio.run(main()).pulled == 0 and calls and set(calls) == {(0, 0)}

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        a.sync(server.url, TOKEN, progress=stop)
    with pytest.raises(TypeError, match="progress must be callable"):
        a.sync(server.url, TOKEN, progress=3)  # type: ignore[arg-type]


def test_clone_a_new_device_from_the_servers_snapshot(
    make_replica: MakeReplica, server: Server, tmp_path: pathlib.Path
) -> None:
    a = make_replica("a")
    fill(a, 3000)
    a.sync(server.url, TOKEN)
    target = tmp_path / "new-device.db"
    calls: List[tuple[int, int]] = []
    size = syncline.clone(server.url, target, TOKEN, progress=lambda done, total: calls.append((done, total)))
    assert size == target.stat().st_size > 0
    received = [d for d, _ in calls]
    assert received == sorted(received) and calls[-1][0] == size, calls[-3:]
    assert all(t in (0, size) for _, t in calls)
    with SyncEngine(target) as device:
        assert device.site_id not in (a.site_id, server.site_id)
        assert todos(device) == todos(a)
        # it catches up with only what changed since
        a.execute("UPDATE todos SET title = 'after the snapshot' WHERE id = 1")
        a.sync(server.url, TOKEN)
        report = device.sync(server.url, TOKEN)
        assert 0 < report.pulled < 10, report
        assert device.state_hash() == a.state_hash()
    # refusals: an existing file, a wrong token (nothing left behind), no server, bad progress
    with pytest.raises(syncline.InvalidArgumentError):
        syncline.clone(server.url, target, TOKEN)
    other = tmp_path / "other.db"
    with pytest.raises(AuthError):
        syncline.clone(server.url, other, "wrong")
    with pytest.raises(NetworkError):
        syncline.clone(f"http://127.0.0.1:{free_port()}", other)
    with pytest.raises(TypeError, match="progress must be callable"):
        syncline.clone(server.url, other, TOKEN, progress="no")  # type: ignore[arg-type]
    assert not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "download" in p.name) == []
