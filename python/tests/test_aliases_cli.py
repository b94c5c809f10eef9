"""sqlite-sync-core migration aliases and the `syncline` console script."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import syncline
from syncline import SyncEngine
from syncline.__main__ import main

from conftest import TODOS


def test_sqlite_sync_core_migration_path(tmp_path: pathlib.Path) -> None:
    with SyncEngine(str(tmp_path / "a.db")) as a, SyncEngine(str(tmp_path / "b.db")) as b:
        device = a.initialize()
        assert isinstance(device, bytes) and len(device) == 16
        assert device == a.device_id == bytes.fromhex(a.site_id)
        for engine in (a, b):
            engine.initialize()
            engine.connection.execute(TODOS)
            engine.enable_sync_for_table("todos")
        # autocommit, as in sqlite-sync-core: no commit() needed
        a.connection.execute("INSERT INTO todos(id, title) VALUES (1, 'via connection')")
        bundle_path = a.generate_bundle(peer_device_id=b.device_id, output_path=str(tmp_path / "bundle.db"))
        assert bundle_path == str(tmp_path / "bundle.db") and os.path.getsize(bundle_path) > 0
        result = b.import_bundle(bundle_path)
        assert result.applied_count == 4 and result.conflict_count == 0 and result.duplicate_count == 0
        again = b.import_bundle(bundle_path)
        assert again.applied_count == 0 and again.duplicate_count == 4 == again.already_known
        # nothing to send: None and no file, as in sqlite-sync-core
        # (b learnt from a's bundle that a holds the row)
        assert b.generate_bundle(peer_device_id=a.device_id, output_path=str(tmp_path / "empty.db")) is None
        assert not (tmp_path / "empty.db").exists()
        assert isinstance(b.generate_bundle(peer=a.site_id, path=tmp_path / "ours.bundle"), syncline.BundleStats)
        assert b.connection.execute("SELECT title FROM todos").fetchall() == [("via connection",)]
        assert b.get_unresolved_conflicts() == []
        conn = a.connection
        assert conn is a.connection
    with pytest.raises(Exception):
        conn.execute("SELECT 1")  # closed with the engine
    with pytest.raises(TypeError):
        a.generate_bundle(peer="00" * 16, peer_device_id=b"\x00" * 16)


# sqlite-sync-core 0.1.0, README.md, "Syncing Between Devices", both blocks as printed there
# (only the import line changed); `device_b_id` is defined by the README's context.
SEED_DEVICE_A = """
from syncline import SyncEngine

engine_a = SyncEngine("device_a.db")
engine_a.initialize()

# Generate bundle for Device B
bundle_path = engine_a.generate_bundle(
    peer_device_id=device_b_id,  # 16-byte UUID
    output_path="sync_bundle.db"
)
# Send bundle_path to Device B (USB, email, cloud, etc.)
"""
SEED_DEVICE_B = """
engine_b = SyncEngine("device_b.db")
engine_b.initialize()

# Import received bundle
result = engine_b.import_bundle(bundle_path)

print(f"Applied: {result.applied_count}")
print(f"Conflicts: {result.conflict_count}")
print(f"Duplicates: {result.duplicate_count}")
"""


def test_the_sqlite_sync_core_readme_flow_verbatim(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    # The README's context: two databases with a synced table, a row written on device A
    # through `engine.connection` (its Quick Start), and device B's id.
    with SyncEngine("device_b.db") as b:
        device_b_id = b.initialize()
        b.connection.execute("CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', done INTEGER DEFAULT 0)")
        b.enable_sync_for_table("todos")
    with SyncEngine("device_a.db") as a:
        a.initialize()
        a.connection.execute("CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', done INTEGER DEFAULT 0)")
        a.enable_sync_for_table("todos")
        a.connection.execute("INSERT INTO todos (title) VALUES ('Buy milk')")
    scope: dict[str, object] = {"device_b_id": device_b_id}
    try:
        exec(SEED_DEVICE_A, scope)
        assert scope["bundle_path"] == "sync_bundle.db" and (tmp_path / "sync_bundle.db").exists()
        exec(SEED_DEVICE_B, scope)
        assert capsys.readouterr().out.splitlines() == ["Applied: 3", "Conflicts: 0", "Duplicates: 0"]
        engine_a, engine_b = scope["engine_a"], scope["engine_b"]
        assert isinstance(engine_a, SyncEngine) and isinstance(engine_b, SyncEngine)
        assert engine_b.connection.execute("SELECT id, title, done FROM todos").fetchall() == [(1, "Buy milk", 0)]
        assert engine_a.state_hash() == engine_b.state_hash()
    finally:
        for name in ("engine_a", "engine_b"):
            engine = scope.get(name)
            if isinstance(engine, SyncEngine):
                engine.close()


def test_cli_main_in_process(tmp_path: pathlib.Path, capfd: pytest.CaptureFixture[str]) -> None:
    with SyncEngine(tmp_path / "a.db") as a:
        a.execute_batch(TODOS)
        a.enable_sync("todos")
        site = a.site_id
    assert main(["status", str(tmp_path / "a.db")]) == 0
    assert site in capfd.readouterr().out
    assert main(["no-such-command"]) == 2
    assert main(["--version"]) == 0
    assert syncline._native.cli_main(["syncline", "--help"]) == 0


def test_console_script(tmp_path: pathlib.Path) -> None:
    script = pathlib.Path(sys.executable).with_name("syncline")
    if not script.exists():
        pytest.skip("the console script is installed with the wheel")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "Usage" in out.stdout
    db = tmp_path / "a.db"
    with SyncEngine(db) as a:
        a.execute_batch(TODOS)
        a.enable_sync("todos")
        a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')")
    out = subprocess.run(
        [str(script), "export", str(db), "-o", str(tmp_path / "x.bundle")],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "NO_COLOR": "1"},
    )
    assert out.returncode == 0, out.stderr
    with SyncEngine(tmp_path / "b.db") as b:
        b.execute_batch(TODOS)
        b.enable_sync("todos")
        assert b.import_bundle(tmp_path / "x.bundle").applied == 4
    out = subprocess.run([sys.executable, "-m", "syncline", "status", str(db)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
