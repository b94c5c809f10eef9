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
        a.connection.execute("INSERT INTO todos(id, title) VALUES (1, 'via connection')")
        a.connection.commit()
        stats = a.generate_bundle(peer_device_id=b.device_id, output_path=str(tmp_path / "bundle.db"))
        assert stats.rows == 1
        result = b.import_bundle(str(tmp_path / "bundle.db"))
        assert result.applied_count == 4 and result.conflict_count == 0
        assert b.connection.execute("SELECT title FROM todos").fetchall() == [("via connection",)]
        assert b.get_unresolved_conflicts() == []
        conn = a.connection
        assert conn is a.connection
    with pytest.raises(Exception):
        conn.execute("SELECT 1")  # closed with the engine
    with pytest.raises(TypeError):
        a.generate_bundle(peer="00" * 16, peer_device_id=b"\x00" * 16)


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
