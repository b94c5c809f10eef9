"""Shared fixtures: replicas of a `todos` table in a temporary folder."""

from __future__ import annotations

import pathlib
from typing import Callable, Iterator, List

import pytest

import syncline
from syncline import SyncEngine

TODOS = (
    "CREATE TABLE IF NOT EXISTS todos("
    "id INTEGER PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0, body TEXT)"
)

MakeReplica = Callable[..., SyncEngine]


@pytest.fixture
def make_replica(tmp_path: pathlib.Path) -> Iterator[MakeReplica]:
    """`make_replica(name, strategy="lww", **options)`: an engine with `todos` enabled."""
    opened: List[SyncEngine] = []

    def make(name: str, strategy: syncline.Strategy = "lww", *, enable: bool = True, **options: int) -> SyncEngine:
        engine = SyncEngine(tmp_path / f"{name}.db", **options)
        opened.append(engine)
        engine.execute_batch(TODOS)
        if enable:
            engine.enable_sync("todos", strategy)
        return engine

    yield make
    for engine in opened:
        engine.close()


def sync(source: SyncEngine, target: SyncEngine) -> syncline.ImportReport:
    """Send `target` what `source` knows it lacks."""
    return target.import_bundle(source.generate_bundle(target.site_id))


def todos(engine: SyncEngine) -> List[tuple[syncline.SqlValue, ...]]:
    return list(engine.query("SELECT id, title, done, body FROM todos ORDER BY id"))


def conflict_pair(make_replica: MakeReplica, strategy: syncline.Strategy) -> tuple[SyncEngine, SyncEngine]:
    """Two replicas whose row 1 title was edited concurrently ('from a' / 'from b')."""
    a = make_replica("a", strategy)
    b = make_replica("b", strategy)
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'milk')")
    sync(a, b)
    a.execute("UPDATE todos SET title = 'from a' WHERE id = 1")
    b.execute("UPDATE todos SET title = 'from b' WHERE id = 1")
    return a, b
