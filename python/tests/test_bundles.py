"""Bundles: bytes and files, compression, idempotence, corrupt and refused bundles."""

from __future__ import annotations

import pathlib
import shutil
import time

import pytest

import syncline
from syncline import SyncEngine

from conftest import MakeReplica, sync, todos


def fill(engine: SyncEngine, n: int) -> None:
    engine.execute_batch("BEGIN")
    for i in range(n):
        engine.execute("INSERT INTO todos(id, title, body) VALUES (?, ?, ?)", (i, f"title {i}", "x" * 100))
    engine.execute_batch("COMMIT")


def test_bundle_bytes_round_trip_and_reimport_is_harmless(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.execute("INSERT INTO todos(id, title, body) VALUES (1, 'milk', 'x')")
    bundle = a.generate_bundle()
    assert isinstance(bundle, bytes) and bundle.startswith(b"SYNCLINE")
    report = b.import_bundle(bundle)
    assert report.sender == a.site_id
    assert (report.rows, report.applied, report.already_known, report.conflicts, report.rejected) == (1, 4, 0, 0, 0)
    assert "ImportReport(" in repr(report)
    assert todos(b) == [(1, "milk", 0, "x")]
    again = b.import_bundle(bytearray(bundle))
    assert (again.applied, again.already_known) == (0, 4)
    assert b.import_bundle(memoryview(bundle)).applied == 0
    assert sync(b, a).applied == 0  # imports are not re-captured


def test_bundle_for_a_known_peer_is_a_delta(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    fill(a, 20)
    sync(a, b)
    sync(b, a)  # a now knows what b holds
    a.execute("UPDATE todos SET done = 1 WHERE id = 3")
    delta = a.generate_bundle(b.site_id)
    assert len(delta) < len(a.generate_bundle()) / 5
    assert b.import_bundle(delta).applied == 1
    # the peer may be given as the raw 16 bytes too
    assert len(a.generate_bundle(bytes.fromhex(b.site_id))) == len(delta)
    with pytest.raises(syncline.InvalidArgumentError):
        a.generate_bundle("zz")


def test_compressed_bundles(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    b = make_replica("b")
    fill(a, 200)
    plain = a.generate_bundle()
    packed = a.generate_bundle(compress=True)
    assert len(packed) < len(plain) / 2
    assert b.import_bundle(packed).applied == 200 * 4
    stats = a.generate_bundle(path=tmp_path / "packed.bundle", compress=True)
    assert stats.rows == 200 and stats.bytes == len(packed)
    c = make_replica("c")
    assert c.import_bundle(tmp_path / "packed.bundle").applied == 200 * 4


def test_bundle_files(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    b = make_replica("b")
    fill(a, 10)
    stats = a.generate_bundle(None, tmp_path / "out.bundle")
    assert (stats.rows, stats.changes) == (10, 40)
    assert stats.bytes == (tmp_path / "out.bundle").stat().st_size
    assert "BundleStats(" in repr(stats)
    assert b.import_bundle(str(tmp_path / "out.bundle")).applied == 40
    with pytest.raises(syncline.SynclineIOError) as info:
        b.import_bundle(tmp_path / "missing.bundle")
    assert info.value.code == "Io"
    with pytest.raises(syncline.SynclineIOError):
        a.generate_bundle(path=tmp_path / "no" / "such" / "dir.bundle")
    with pytest.raises(TypeError):
        a.generate_bundle(path=tmp_path / "x", output_path=tmp_path / "y")  # type: ignore[call-overload]


def test_corrupt_bundles_raise_and_change_nothing(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'a')")
    b.execute("INSERT INTO todos(id, title) VALUES (2, 'b')")
    bundle = a.generate_bundle()
    before = (todos(b), b.status().hlc, b.status().peers)
    broken = [b"", b"garbage", bundle[: len(bundle) // 2], bundle[:-1], bundle + b"\x00"]
    for i in range(8, len(bundle), max(1, len(bundle) // 25)):
        flipped = bytearray(bundle)
        flipped[i] ^= 0x40
        broken.append(bytes(flipped))
    for data in broken:
        with pytest.raises(syncline.InvalidBundleError) as info:
            b.import_bundle(data)
        assert info.value.code == "InvalidBundle"
        assert str(info.value)
    status = b.status()
    assert (todos(b), status.hlc, status.peers) == before


def test_bundle_naming_a_table_not_synced_here_is_held(make_replica: MakeReplica) -> None:
    # spec/schema-evolution.md section 5: rows of a table not enabled here are kept, not refused.
    a = make_replica("a")
    b = make_replica("b", enable=False)
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'a')")
    report = sync(a, b)
    assert report.held > 0
    assert b.status().held_rows == 1
    assert b.query("SELECT count(*) FROM todos") == [(0,)]
    b.enable_sync("todos")
    assert b.status().held_rows == 0
    assert todos(b) == [(1, "a", 0, None)]


def test_bundle_naming_an_unknown_column_is_held(make_replica: MakeReplica) -> None:
    a = make_replica("a", enable=False)
    a.execute_batch("ALTER TABLE todos ADD COLUMN extra TEXT")
    a.enable_sync("todos")
    a.execute("INSERT INTO todos(id, extra) VALUES (1, 'e')")
    b = make_replica("b")
    report = sync(a, b)
    assert report.held > 0
    assert b.status().held_cells > 0
    b.add_column("todos", "extra", "TEXT")  # b gets the column: the held cell applies
    assert list(b.query("SELECT id, extra FROM todos")) == [(1, "e")]
    assert b.status().held_cells == 0


def test_far_future_bundles_are_quarantined(make_replica: MakeReplica) -> None:
    now = int(time.time() * 1000)  # stamps never go back: start from the real clock
    a = make_replica("a")
    b = make_replica("b", max_drift_ms=1000)
    b.set_manual_clock(now)
    a.set_manual_clock(now + 60_000)  # a minute ahead: beyond b's drift, inside the 24 h horizon
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'from the future')")
    hlc = b.status().hlc
    report = sync(a, b)  # no ClockDriftError any more: the row waits
    assert report.quarantined > 0 and (report.quarantined, report.applied, report.released) == (4, 0, 0)
    assert "quarantined=4" in repr(report)
    status = b.status()
    assert status.quarantined == 1 and "quarantined=1" in repr(status)
    assert status.hlc == hlc and todos(b) == []
    # The clock catches up: the next import applies the held row first.
    b.set_manual_clock(now + 120_000)
    report = sync(a, b)
    assert report.released > 0 and (report.released, report.quarantined) == (4, 0)
    assert b.status().quarantined == 0
    assert todos(b) == todos(a) == [(1, "from the future", 0, None)]


def test_bundles_years_ahead_are_rejected_not_quarantined(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b", max_drift_ms=1000)
    a.set_manual_clock(4_000_000_000_000)
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'from 2096')")
    hlc = b.status().hlc
    report = sync(a, b)
    assert (report.applied, report.quarantined, report.rejected) == (0, 0, 4)
    status = b.status()
    assert (status.quarantined, status.rejected, status.hlc) == (0, 1, hlc) and todos(b) == []


def test_a_copied_database_clashes_unless_reset(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'a')")
    a.close()
    shutil.copy(tmp_path / "a.db", tmp_path / "copy.db")
    shutil.copy(tmp_path / "a.db", tmp_path / "rekeyed.db")
    a = SyncEngine(tmp_path / "a.db")
    with SyncEngine(tmp_path / "copy.db") as copy:
        copy.execute("INSERT INTO todos(id, title) VALUES (2, 'copy')")
        with pytest.raises(syncline.SiteIdClashError, match="reset_site_id") as info:
            a.import_bundle(copy.generate_bundle())
        assert info.value.code == "SiteIdClash"
    with SyncEngine(tmp_path / "rekeyed.db") as rekeyed:
        rekeyed.reset_site_id()
        rekeyed.execute("INSERT INTO todos(id, title) VALUES (3, 'rekeyed')")
        a.import_bundle(rekeyed.generate_bundle())
    assert [r[0] for r in todos(a)] == [1, 3]
    a.close()
