"""Conflicts: manual records and resolve(), automatic strategies, custom Python resolvers."""

from __future__ import annotations

from typing import List

import pytest

import syncline
from syncline import Conflict, Resolution, SyncEngine

from conftest import MakeReplica, conflict_pair, sync, todos


def settle(a: SyncEngine, b: SyncEngine) -> None:
    for _ in range(3):
        sync(a, b)
        sync(b, a)


def test_resolution_objects() -> None:
    assert Resolution.LOCAL.kind == "local" and Resolution.LOCAL.value is None
    assert Resolution.REMOTE.kind == "remote"
    v = Resolution.with_value(b"\x01")
    assert (v.kind, v.value) == ("value", b"\x01")
    assert v == Resolution.with_value(b"\x01") and v != Resolution.with_value(2) and v != "value"
    assert Resolution.LOCAL == Resolution.LOCAL and Resolution.LOCAL != Resolution.REMOTE
    assert len({Resolution.LOCAL, Resolution.LOCAL, Resolution.REMOTE}) == 2
    assert repr(Resolution.LOCAL) == "Resolution.LOCAL"
    assert repr(Resolution.with_value("x")) == "Resolution.with_value('x')"
    assert Resolution.with_value(None).value is None
    with pytest.raises(TypeError):
        Resolution.with_value([1])  # type: ignore[arg-type]


def test_manual_conflict_is_recorded_and_resolved_with_a_value(make_replica: MakeReplica) -> None:
    a, b = conflict_pair(make_replica, "manual")
    report = sync(b, a)
    assert report.conflicts == 1
    assert todos(a)[0][1] == "from a"  # manual keeps local
    (c,) = a.conflicts()
    assert isinstance(c, Conflict)
    assert c.id is not None and c.table == "todos" and c.pk == (1,) and c.column == "title"
    assert (c.local.value, c.remote.value) == ("from a", "from b")
    assert (c.local.site, c.remote.site) == (a.site_id, b.site_id)
    assert c.local.hlc > 0 and c.remote.hlc > 0
    assert (c.strategy, c.resolution) == ("manual", None)
    assert "Conflict(" in repr(c) and "CellVersion(" in repr(c.local)
    assert a.status().unresolved_conflicts == 1
    a.resolve(c, value="merged")
    assert a.conflicts() == [] and a.status().unresolved_conflicts == 0
    (done,) = a.all_conflicts()
    assert done.resolution == "value"
    settle(a, b)
    assert todos(a) == todos(b) and todos(b)[0][1] == "merged"
    assert b.conflicts() == []
    with pytest.raises(syncline.NotFoundError) as info:
        a.resolve(c, local=True)
    assert info.value.code == "NotFound"
    with pytest.raises(syncline.NotFoundError):
        a.resolve(12345, remote=True)


@pytest.mark.parametrize(("how", "want"), [("local", "from a"), ("remote", "from b")])
def test_manual_resolve_local_or_remote(make_replica: MakeReplica, how: str, want: str) -> None:
    a, b = conflict_pair(make_replica, "manual")
    sync(b, a)
    (c,) = a.conflicts()
    assert c.id is not None
    if how == "local":
        a.resolve(c.id, local=True)
    else:
        a.resolve(c.id, Resolution.REMOTE)
    assert todos(a)[0][1] == want
    assert a.all_conflicts()[0].resolution == how
    settle(a, b)
    assert todos(b)[0][1] == want


def test_resolve_takes_exactly_one_decision(make_replica: MakeReplica) -> None:
    a, b = conflict_pair(make_replica, "manual")
    sync(b, a)
    (c,) = a.conflicts()
    for kwargs in ({}, {"local": True, "remote": True}, {"local": True, "value": 1}):
        with pytest.raises(TypeError, match="exactly one"):
            a.resolve(c, **kwargs)
    with pytest.raises(TypeError, match="exactly one"):
        a.resolve(c, Resolution.LOCAL, remote=True)
    a.resolve(c, value=None)  # None is a value
    assert todos(a)[0][1] is None


@pytest.mark.parametrize("strategy", ["lww", "prefer_local", "prefer_remote"])
def test_automatic_strategies_converge(make_replica: MakeReplica, strategy: syncline.Strategy) -> None:
    a, b = conflict_pair(make_replica, strategy)
    assert sync(b, a).conflicts == 1
    settle(a, b)
    assert todos(a) == todos(b)
    assert a.conflicts() == []


def longest_then_sorted(c: Conflict) -> Resolution:
    """A deterministic, symmetric resolver: both titles joined in sorted order."""
    assert isinstance(c.local.value, str) and isinstance(c.remote.value, str)
    return Resolution.with_value(" + ".join(sorted([c.local.value, c.remote.value])))


def test_custom_resolver_decides(make_replica: MakeReplica) -> None:
    a, b = conflict_pair(make_replica, "custom")
    seen: List[Conflict] = []

    def resolver(c: Conflict) -> Resolution:
        seen.append(c)
        return longest_then_sorted(c)

    a.set_resolver("todos", resolver)
    b.set_resolver("todos", longest_then_sorted)
    sync(b, a)
    settle(a, b)
    assert todos(a)[0][1] == "from a + from b"
    assert todos(a) == todos(b)
    c = seen[0]
    assert (c.id, c.table, c.pk, c.column, c.strategy, c.resolution) == (None, "todos", (1,), "title", "custom", None)
    assert (c.local.value, c.local.site, c.remote.value, c.remote.site) == ("from a", a.site_id, "from b", b.site_id)


def test_resolver_exception_surfaces_as_resolver_error_and_applies_nothing(make_replica: MakeReplica) -> None:
    a, b = conflict_pair(make_replica, "custom")
    b.execute("INSERT INTO todos(id, title) VALUES (2, 'also from b')")

    def failing(c: Conflict) -> Resolution:
        raise ValueError(f"cannot decide {c.column}")

    a.set_resolver("todos", failing)
    before = (todos(a), a.status().hlc, a.status().peers)
    bundle = b.generate_bundle()
    with pytest.raises(syncline.ResolverError) as info:
        a.import_bundle(bundle)
    err = info.value
    assert err.code == "Resolver"
    assert "ValueError: cannot decide title" in str(err) and "nothing was applied" in str(err)
    assert isinstance(err.__cause__, ValueError)
    status = a.status()
    assert (todos(a), status.hlc, status.peers) == before
    # a usable engine afterwards: register a working resolver and import again
    a.set_resolver("todos", longest_then_sorted)
    assert a.import_bundle(bundle).conflicts == 1
    assert todos(a)[1] == (2, "also from b", 0, None)


def test_resolver_misuse(make_replica: MakeReplica) -> None:
    a, b = conflict_pair(make_replica, "custom")
    bundle = b.generate_bundle()
    with pytest.raises(syncline.ResolverError, match="no resolver"):
        a.import_bundle(bundle)
    a.set_resolver("todos", lambda c: "local")  # type: ignore[arg-type,return-value]
    with pytest.raises(syncline.ResolverError, match="not a syncline.Resolution"):
        a.import_bundle(bundle)

    def reentrant(c: Conflict) -> Resolution:
        a.query("SELECT 1")
        return Resolution.LOCAL

    a.set_resolver("todos", reentrant)
    with pytest.raises(syncline.ResolverError) as info:
        a.import_bundle(bundle)
    assert isinstance(info.value.__cause__, syncline.ReentrantError)
    with pytest.raises(TypeError):
        a.set_resolver("todos", 42)  # type: ignore[arg-type]
    a.set_resolver("todos", lambda c: Resolution.REMOTE)
    a.set_resolver("todos", None)  # removes it again
    with pytest.raises(syncline.ResolverError, match="no resolver"):
        a.import_bundle(bundle)
    assert todos(a)[0][1] == "from a"


def test_migration_conflict_aliases(make_replica: MakeReplica) -> None:
    a, b = conflict_pair(make_replica, "manual")
    sync(b, a)
    (c,) = a.get_unresolved_conflicts()
    assert c.id is not None
    a.resolve_conflict(c.id, "remote")
    assert todos(a)[0][1] == "from b"
    with pytest.raises(ValueError):
        a.resolve_conflict(c.id, "both")  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["prefer_local", "custom"])
def test_settled_conflict_stamp_is_newer_than_the_remote_one(make_replica: MakeReplica, strategy: syncline.Strategy) -> None:
    a = make_replica("a", strategy)
    b = make_replica("b", strategy)
    for e in (a, b):
        e.set_resolver("todos", longest_then_sorted)
        e.set_manual_clock(1_800_000_000_000)  # everything in one millisecond
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'milk')")
    sync(a, b)
    for i in range(10):  # b's counter runs ahead of a's
        b.execute("UPDATE todos SET done = ? WHERE id = 1", (i,))
    b.execute("UPDATE todos SET title = 'from b' WHERE id = 1")
    a.execute("UPDATE todos SET title = 'from a' WHERE id = 1")
    settle(b, a)
    assert todos(a) == todos(b)
