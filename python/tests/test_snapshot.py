"""Snapshots for new devices: a copy without the source's site id, re-keyed on first open,
whose first exchange carries only the changes since (spec/sync-protocol.md, Snapshots)."""

from __future__ import annotations

import pathlib

import pytest

import syncline
from syncline import SyncEngine

from conftest import MakeReplica, sync, todos


def test_a_device_starts_from_a_snapshot_and_catches_up_with_the_delta(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    for i in range(200):
        a.execute("INSERT INTO todos(id, title) VALUES (?, ?)", (i, f"todo {i}"))
    file = tmp_path / "device.db"
    a.snapshot(file)
    with pytest.raises(syncline.InvalidArgumentError):
        a.snapshot(file)  # never over an existing file
    with SyncEngine(file) as d:
        assert d.site_id != a.site_id
        assert todos(d) == todos(a)
        a.execute("INSERT INTO todos(id, title) VALUES (1000, 'after the snapshot')")
        sync(d, a)  # the device speaks first: the source learns what it holds
        report = sync(a, d)
        assert report.rows == 1
        assert d.state_hash() == a.state_hash()
