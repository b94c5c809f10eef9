"""Schema evolution (add_column, migration policy, held migrations) and compaction through the
binding (spec/schema-evolution.md, spec/merge-rules.md section 8a)."""

from __future__ import annotations

import pytest

import syncline

from conftest import MakeReplica, sync


def prio(engine: syncline.SyncEngine) -> list[tuple[syncline.SqlValue, ...]]:
    return list(engine.query("SELECT id, prio FROM todos ORDER BY id"))


def columns(engine: syncline.SyncEngine) -> list[str]:
    return [str(r[1]) for r in engine.query("PRAGMA table_info(todos)")]


def test_add_column_reaches_another_replica_with_its_values(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'old')")
    sync(a, b)
    a.add_column("todos", "prio", "INTEGER", 7)
    a.execute("INSERT INTO todos(id, title, prio) VALUES (2, 'new', 5)")
    assert "prio" not in columns(b)
    report = sync(a, b)
    assert (report.migrated, report.held) == (1, 0)
    assert "migrated=1" in repr(report)
    assert "prio" in columns(b)
    assert prio(b) == [(1, 7), (2, 5)]  # the default for the old row, the value for the new one
    change = a.status().schema_changes
    assert [(c.table, c.column, c.decl_type, c.source, c.state) for c in change] == [
        ("todos", "prio", "INTEGER", "local", "applied")
    ]
    got = b.status().schema_changes
    assert [(c.column, c.source, c.state) for c in got] == [("prio", "remote", "applied")]
    assert got[0].hlc == change[0].hlc > 0
    assert "SchemaChange(" in repr(got[0])
    # the column syncs both ways afterwards
    b.execute("UPDATE todos SET prio = 9 WHERE id = 1")
    sync(b, a)
    assert prio(a) == [(1, 9), (2, 5)]
    assert a.state_hash() == b.state_hash()


def test_add_column_errors_are_mapped(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    with pytest.raises(syncline.UnknownTableError):
        a.add_column("nope", "x", "TEXT")
    a.add_column("todos", "note", "TEXT")  # default None
    with pytest.raises(syncline.SynclineError):
        a.add_column("todos", "note", "TEXT")  # exists already
    assert a.status().schema_changes[0].column == "note"


def test_hold_policy_then_apply_held_migrations(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    assert b.migration_policy() == "apply"
    b.set_migration_policy("hold")
    assert b.migration_policy() == "hold"
    with pytest.raises(syncline.InvalidArgumentError):
        b.set_migration_policy("later")  # type: ignore[arg-type]
    assert b.migration_policy() == "hold"
    a.add_column("todos", "prio", "INTEGER", 0)
    a.execute("INSERT INTO todos(id, title, prio) VALUES (1, 'milk', 5)")
    report = sync(a, b)
    assert report.migrated == 0 and report.held > 0
    assert "prio" not in columns(b)
    s = b.status()
    assert [(c.column, c.source, c.state) for c in s.schema_changes] == [("prio", "remote", "held")]
    assert s.held_cells > 0
    assert b.apply_held_migrations() == 1
    assert prio(b) == [(1, 5)]  # the held cell was applied with the column
    s = b.status()
    assert [c.state for c in s.schema_changes] == ["applied"]
    assert s.held_cells == 0
    assert b.apply_held_migrations() == 0
    assert a.state_hash() == b.state_hash()


def test_rows_of_a_table_not_enabled_are_held(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.execute_batch("CREATE TABLE tags(id TEXT PRIMARY KEY, name TEXT)")
    a.enable_sync("tags")
    a.execute("INSERT INTO tags(id, name) VALUES ('t1', 'home')")
    report = sync(a, b)
    assert report.held > 0 and report.migrated == 0
    assert b.status().held_rows == 1
    b.execute_batch("CREATE TABLE tags(id TEXT PRIMARY KEY, name TEXT)")
    b.enable_sync("tags")
    assert b.status().held_rows == 0
    assert list(b.query("SELECT id, name FROM tags")) == [("t1", "home")]


def test_compact_purges_acknowledged_deletes(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    c = make_replica("c")
    a.execute_batch("BEGIN")
    for i in range(50):
        a.execute("INSERT INTO todos(id, title, body) VALUES (?, 't', ?)", (i, "x" * 200))
    a.execute_batch("COMMIT")
    sync(a, b)
    sync(a, c)  # c holds the rows but never hears from a again
    a.execute_batch("DELETE FROM todos WHERE id < 40")
    s = a.status()
    assert (s.tombstones, s.purgeable) == (40, 0)
    assert a.compact().purged == 0  # b has not acknowledged
    sync(a, b)
    sync(b, a)  # b's answer acknowledges the deletes
    assert a.status().purgeable == 40
    assert a.compact(retain=3600).purged == 0  # too young
    report = a.compact(0)
    assert report.purged == 40
    assert report.bytes_before > 0 and report.bytes_after > 0
    assert report.bytes_after <= report.bytes_before
    assert "CompactReport(purged=40" in repr(report)
    s = a.status()
    assert (s.tombstones, s.purgeable) == (0, 0)
    assert list(s.purge_horizon) == [a.site_id]
    with pytest.raises(syncline.InvalidArgumentError):
        a.compact(-1)
    # c missed the purged deletes: its bundle is refused rather than bringing rows back.
    with pytest.raises(syncline.NeedsSnapshotError):
        a.import_bundle(c.generate_bundle())
    assert list(a.query("SELECT count(*) FROM todos")) == [(10,)]
