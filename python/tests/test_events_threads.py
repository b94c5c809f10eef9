"""Subscriptions (local writes from sqlite3, remote imports, conflicts) and the GIL."""

from __future__ import annotations

import pathlib
import sqlite3
import sys
import threading
import time
from typing import Callable, List

import pytest

import syncline
from syncline import Event, SyncEngine

from conftest import MakeReplica, conflict_pair, sync


class Collector:
    """A thread-safe subscriber that can wait for an event."""

    def __init__(self) -> None:
        self.events: List[Event] = []
        self.cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event; got {self.events!r}")
                self.cond.wait(left)


def test_local_writes_from_sqlite3_are_events(make_replica: MakeReplica) -> None:
    a = make_replica("a", watch_interval_ms=10)
    got = Collector()
    with a.subscribe(got) as sub:
        assert not sub.closed
        conn = sqlite3.connect(a.path)
        with conn:
            conn.execute("INSERT INTO todos(id, title) VALUES (7, 'from sqlite3')")
        e = got.wait_for(lambda e: e.kind == "local" and e.pk == (7,))
        assert e.table == "todos" and "title" in e.columns and not e.deleted and e.conflict is None
        assert "Event(kind='local'" in repr(e)
        with conn:
            conn.execute("DELETE FROM todos WHERE id = 7")
        deleted = got.wait_for(lambda e: e.kind == "local" and e.deleted)
        # the fields of each kind of event are the core's (Event::columns: none for a delete)
        assert deleted.pk == (7,) and deleted.columns == () and deleted.conflict is None
        conn.close()
    assert sub.closed
    n = len(got.events)
    a.execute("INSERT INTO todos(id, title) VALUES (8, 'after close')")
    time.sleep(0.2)
    assert len(got.events) == n


def test_remote_and_conflict_events(make_replica: MakeReplica) -> None:
    a, b = conflict_pair(make_replica, "manual")
    b.execute("INSERT INTO todos(id, title) VALUES (2, 'new from b')")
    got = Collector()
    sub = a.subscribe(got)
    sync(b, a)
    remote = got.wait_for(lambda e: e.kind == "remote" and e.pk == (2,))
    assert remote.table == "todos" and "title" in remote.columns
    conflict = got.wait_for(lambda e: e.kind == "conflict")
    assert conflict.conflict is not None and conflict.conflict.remote.value == "from b"
    assert conflict.columns == ("title",) and conflict.pk == (1,)
    assert conflict.table == conflict.conflict.table and not conflict.deleted
    sub.close()
    sub.close()  # idempotent
    assert sub.closed


def test_a_failing_subscriber_does_not_break_the_engine(make_replica: MakeReplica, monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_replica("a")
    b = make_replica("b")
    calls: List[Event] = []
    reported: List[BaseException] = []

    def bad(e: Event) -> None:
        calls.append(e)
        raise RuntimeError("subscriber bug")

    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value) if u.exc_value else None)
    with b.subscribe(bad):
        a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')")
        assert sync(a, b).applied == 4
    assert calls and b.query("SELECT title FROM todos") == [("x",)]
    assert reported and isinstance(reported[0], RuntimeError)
    with pytest.raises(TypeError):
        b.subscribe(42)  # type: ignore[arg-type]


def test_subscribers_may_call_the_engine(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    titles: List[syncline.SqlValue] = []

    def on_event(e: Event) -> None:
        if e.kind == "remote":
            titles.append(b.query("SELECT title FROM todos WHERE id = ?", e.pk)[0][0])

    with b.subscribe(on_event):
        a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')")
        sync(a, b)
    assert titles == ["x"]


def ticks_during(call: Callable[[], object]) -> tuple[int, float]:
    """How often a second Python thread ran while `call` ran, and how long it took."""
    stop = threading.Event()
    stamps: List[float] = []

    def spin() -> None:
        while not stop.is_set():
            stamps.append(time.monotonic())
            time.sleep(0.0005)

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.05)
    start = time.monotonic()
    call()
    end = time.monotonic()
    stop.set()
    t.join()
    return sum(1 for s in stamps if start < s < end), end - start


def test_long_calls_release_the_gil(make_replica: MakeReplica) -> None:
    a = make_replica("a", enable=False)
    b = make_replica("b")
    conn = sqlite3.connect(a.path)
    with conn:
        conn.executemany(
            "INSERT INTO todos(id, title, body) VALUES (?, ?, ?)",
            ((i, f"title {i}", "x" * 100) for i in range(30_000)),
        )
    conn.close()
    bundle: List[bytes] = []
    for name, call in [
        ("enable_sync", lambda: a.enable_sync("todos")),
        ("generate_bundle", lambda: bundle.append(a.generate_bundle())),
        ("import_bundle", lambda: b.import_bundle(bundle[0])),
    ]:
        ticks, took = ticks_during(call)
        # The other thread sleeps 0.5 ms per tick: it ran throughout the call.
        assert took > 0.02, f"{name} too quick to measure ({took:.3f} s)"
        assert ticks >= min(20, took * 200), f"{name}: the other thread ran {ticks} times in {took:.3f} s"
    assert b.status().tables[0].rows == 30_000


def test_engine_shared_between_threads(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    errors: List[BaseException] = []

    def writer(base: int) -> None:
        try:
            for i in range(100):
                a.execute("INSERT INTO todos(id, title) VALUES (?, ?)", (base + i, "t"))
                a.query("SELECT count(*) FROM todos")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert a.query("SELECT count(*) FROM todos") == [(400,)]


def test_closing_with_a_live_subscription_does_not_hang(tmp_path: pathlib.Path) -> None:
    engine = SyncEngine(tmp_path / "a.db", watch_interval_ms=1)
    engine.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    engine.enable_sync("t")
    got = Collector()
    sub = engine.subscribe(got)
    for i in range(50):
        engine.execute("INSERT INTO t VALUES (?, 'x')", (i,))
    engine.close()  # joins the watcher thread with the GIL released: no deadlock
    sub.close()
    del sub
