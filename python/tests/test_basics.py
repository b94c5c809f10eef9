"""Engine lifecycle, identity, options, SQL, value conversion, errors and status."""

from __future__ import annotations

import os
import pathlib
import re
import sqlite3
from typing import List

import pytest

import syncline
from syncline import SyncEngine

from conftest import TODOS, MakeReplica, sync


def test_package_is_the_installed_wheel() -> None:
    if os.environ.get("SYNCLINE_REQUIRE_INSTALLED") == "1":
        assert "site-packages" in syncline.__file__
    assert pathlib.Path(syncline.__file__).with_name("py.typed").exists()
    assert pathlib.Path(syncline.__file__).with_name("_native.pyi").exists()


def test_uuid7_is_a_time_ordered_uuid() -> None:
    ids = [syncline.uuid7() for _ in range(50)]
    for u in ids:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u)
    assert len(set(ids)) == 50
    assert [u[:13] for u in ids] == sorted(u[:13] for u in ids)


def test_context_manager_closes_and_later_calls_fail(tmp_path: pathlib.Path) -> None:
    with SyncEngine(tmp_path / "a.db") as engine:
        assert not engine.closed
        assert "open" in repr(engine)
        engine.execute_batch(TODOS)
    assert engine.closed
    assert "closed" in repr(engine)
    with pytest.raises(syncline.ClosedError) as info:
        engine.query("SELECT 1")
    assert info.value.code == "Closed"
    with pytest.raises(syncline.ClosedError):
        _ = engine.connection
    engine.close()  # idempotent


def test_options_have_core_defaults_and_can_be_set(tmp_path: pathlib.Path) -> None:
    with SyncEngine(str(tmp_path / "a.db")) as a:
        assert a.max_drift_ms == 5 * 60 * 1000
        assert a.busy_timeout_ms == 10_000
        assert a.watch_interval_ms == 100
        assert a.path == tmp_path / "a.db"
    with SyncEngine(tmp_path / "b.db", max_drift_ms=1, busy_timeout_ms=2, watch_interval_ms=3) as b:
        assert (b.max_drift_ms, b.busy_timeout_ms, b.watch_interval_ms) == (1, 2, 3)
    with pytest.raises(OverflowError):
        SyncEngine(tmp_path / "c.db", max_drift_ms=-1)


def test_site_id_reset_and_set(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    first = a.site_id
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    new = a.reset_site_id()
    assert new != first and a.site_id == new
    assert a.set_site_id("00" * 15 + "01") == "00" * 15 + "01"
    assert a.set_site_id(bytes(range(16))) == bytes(range(16)).hex()
    assert a.device_id == bytes(range(16))
    with pytest.raises(syncline.InvalidArgumentError) as info:
        a.set_site_id("not hex")
    assert info.value.code == "InvalidArgument"
    with pytest.raises(syncline.InvalidArgumentError):
        a.set_site_id(b"short")
    with pytest.raises(TypeError):
        a.set_site_id(42)  # type: ignore[arg-type]


def test_a_known_site_id_is_refused(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')")
    sync(a, b)
    with pytest.raises(syncline.InvalidArgumentError):
        b.set_site_id(a.site_id)


def test_manual_clock_stamps_new_changes(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    future = 4_000_000_000_000  # year 2096
    a.set_manual_clock(future)
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')")
    assert a.status().hlc >> 16 == future
    a.set_manual_clock(None)
    a.execute("INSERT INTO todos(id, title) VALUES (2, 'y')")
    assert a.status().hlc >> 16 == future  # never goes back


def test_execute_query_and_rows(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    assert a.execute("INSERT INTO todos(id, title) VALUES (?, ?), (?, ?)", [1, "a", 2, "b"]) == 2
    rows = a.query("SELECT id, title FROM todos WHERE id >= ? ORDER BY id", (1,))
    assert rows == [(1, "a"), (2, "b")]
    assert rows.columns == ("id", "title")
    assert isinstance(rows, list)
    assert a.execute("UPDATE todos SET done = 1") == 2
    with pytest.raises(syncline.SqliteError) as info:
        a.execute("INSERT INTO nowhere VALUES (1)")
    assert info.value.code == "Sqlite"
    assert "nowhere" in str(info.value)
    with pytest.raises(syncline.SqliteError):
        a.execute_batch("THIS IS NOT SQL")


@pytest.mark.parametrize(
    "value",
    [0, 1, -1, 2**63 - 1, -(2**63), 2**53 + 1, 1.5, -0.0, float("inf"), "", "héllo ✓", b"", b"\x00\xff" * 10, None],
)
def test_values_round_trip_exactly(make_replica: MakeReplica, value: syncline.SqlValue) -> None:
    a = make_replica("a", enable=False)
    b = make_replica("b", enable=False)
    for e in (a, b):
        e.execute_batch("CREATE TABLE vals(id INTEGER PRIMARY KEY, v)")  # no affinity: values kept as given
        e.enable_sync("vals")
    a.execute("INSERT INTO vals(id, v) VALUES (1, ?)", (value,))
    assert a.query("SELECT v FROM vals")[0][0] == value
    sync(a, b)
    got = b.query("SELECT v FROM vals")[0][0]
    assert got == value and type(got) is type(value)


def test_full_64_bit_integers_as_keys_and_params(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    for key in (2**63 - 1, -(2**63), 0):
        a.execute("INSERT INTO todos(id, done) VALUES (?, ?)", (key, key))
    sync(a, b)
    assert [r[0] for r in b.query("SELECT id FROM todos ORDER BY id")] == [-(2**63), 0, 2**63 - 1]
    assert b.query("SELECT done FROM todos WHERE id = ?", (2**63 - 1,))[0][0] == 2**63 - 1
    with pytest.raises(OverflowError):
        a.execute("SELECT ?", (2**63,))
    with pytest.raises(OverflowError):
        a.execute("SELECT ?", (-(2**63) - 1,))


def test_other_parameter_types(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    a.execute("INSERT INTO todos(id, title, body) VALUES (?, ?, ?)", (True, bytearray(b"ab"), memoryview(b"cd")))
    assert a.query("SELECT id, title, body FROM todos")[0] == (1, b"ab", b"cd")
    with pytest.raises(TypeError, match="dict"):
        a.execute("SELECT ?", ({},))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        a.execute("SELECT ?", "x")  # a str is not a parameter sequence


def test_error_classes_carry_their_core_codes() -> None:
    codes = {
        syncline.InvalidBundleError: "InvalidBundle",
        syncline.SchemaMismatchError: "SchemaMismatch",
        syncline.UnknownTableError: "UnknownTable",
        syncline.UnknownColumnError: "UnknownColumn",
        syncline.ClockDriftError: "ClockDrift",
        syncline.SiteIdClashError: "SiteIdClash",
        syncline.ResolverError: "Resolver",
        syncline.NotFoundError: "NotFound",
        syncline.InvalidArgumentError: "InvalidArgument",
        syncline.ReentrantError: "Reentrant",
        syncline.ClosedError: "Closed",
        syncline.SynclineIOError: "Io",
        syncline.SqliteError: "Sqlite",
        syncline.NetworkError: "Network",
        syncline.AuthError: "Auth",
    }
    for cls, code in codes.items():
        assert issubclass(cls, syncline.SynclineError)
        assert issubclass(cls, Exception)
        assert cls.code == code
        assert cls.__module__ == "syncline"
        assert cls.__doc__
        err = cls("boom")
        assert err.code == code and str(err) == "boom"


def test_enable_sync_errors(make_replica: MakeReplica) -> None:
    a = make_replica("a", enable=False)
    with pytest.raises(syncline.UnknownTableError, match="nowhere"):
        a.enable_sync("nowhere")
    with pytest.raises(syncline.InvalidArgumentError, match="strategy"):
        a.enable_sync("todos", "newest_wins")  # type: ignore[arg-type]
    a.execute_batch("CREATE TABLE nokey(a TEXT, b TEXT)")
    with pytest.raises(syncline.SchemaMismatchError):
        a.enable_sync("nokey")
    a.execute_batch("CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT)")
    with pytest.raises(syncline.SchemaMismatchError, match="(?i)autoincrement"):
        a.enable_sync("auto")
    a.enable_sync("auto", allow_autoincrement=True)
    assert [t.name for t in a.status().tables] == ["auto"]


def test_enable_disable_and_strategies(make_replica: MakeReplica) -> None:
    a = make_replica("a", enable=False)
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'existing')")
    a.enable_sync("todos", "manual")
    (table,) = a.status().tables
    assert (table.name, table.strategy, table.rows) == ("todos", "manual", 1)  # back-filled
    for strategy in ("lww", "prefer_local", "prefer_remote", "custom", "manual"):
        a.set_strategy("todos", strategy)
        assert a.status().tables[0].strategy == strategy
    with pytest.raises(syncline.InvalidArgumentError):
        a.set_strategy("todos", "bogus")  # type: ignore[arg-type]
    with pytest.raises(syncline.UnknownTableError):
        a.set_strategy("nowhere", "lww")
    a.disable_sync("todos")
    assert a.status().tables == []
    assert a.query("SELECT title FROM todos") == [("existing",)]
    with pytest.raises(syncline.UnknownTableError):
        a.disable_sync("todos")


def test_status_fields(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x'), (2, 'y')")
    s = a.status()
    assert s.site_id == a.site_id
    assert s.hlc > 0
    assert s.peers == []
    assert s.version_vector == {a.site_id: s.hlc}
    assert s.unresolved_conflicts == 0 and s.rejected == 0
    assert "Status(" in repr(s) and "TableStatus(" in repr(s)
    sync(a, b)
    b.execute("INSERT INTO todos(id, title) VALUES (3, 'z')")
    sb = b.status()
    (peer,) = sb.peers
    assert peer.site_id == a.site_id
    assert peer.version_vector[a.site_id] == s.hlc
    assert peer.pending == 4  # row 3: its row state and three cells
    assert set(sb.version_vector) == {a.site_id, b.site_id}
    assert sb.tables[0].rows == 3
    assert "PeerStatus(" in repr(peer)


def test_sqlite3_module_writes_are_captured(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    conn = sqlite3.connect(a.path)
    with conn:
        conn.executemany("INSERT INTO todos(id, title, body) VALUES (?, ?, ?)", [(i, f"t{i}", b"\x01" * i) for i in range(1, 6)])
        conn.execute("UPDATE todos SET done = 1 WHERE id = 2")
        conn.execute("DELETE FROM todos WHERE id = 5")
    conn.close()
    report = sync(a, b)
    assert report.applied > 0
    rows: List[tuple[syncline.SqlValue, ...]] = list(b.query("SELECT id, title, done, body FROM todos ORDER BY id"))
    assert rows == [(i, f"t{i}", 1 if i == 2 else 0, b"\x01" * i) for i in range(1, 5)]
