"""One SQLite per process: the engine runs on the very SQLite library Python's sqlite3 module
uses (syncline/_sqlite.py). Two copies in one process do not see each other's POSIX locks;
one closing the file drops the other's locks, or checkpoints and deletes the WAL under it.

The ways of binding are process-wide and happen once, so each is exercised in a child process,
under this interpreter and under any other CPython found here whose sqlite3 can load extensions
(Debian's /usr/bin/python3.11 can; pyenv's 3.11.7, the default python3 here, cannot)."""

from __future__ import annotations

import ctypes
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from typing import Iterator, List

import pytest

import syncline
from syncline import SqliteLibraryError, SyncEngine, _native, _sqlite

from conftest import TODOS, sync, todos


def test_the_engine_and_sqlite3_share_one_sqlite_library(tmp_path: pathlib.Path) -> None:
    origin, version = syncline.sqlite_library()
    assert version == sqlite3.sqlite_version
    assert os.path.exists(origin) and "sqlite" in os.path.basename(origin)
    with SyncEngine(tmp_path / "one.db") as e:
        ((v,),) = list(e.query("SELECT sqlite_version()"))
        assert v == sqlite3.sqlite_version


def test_the_native_module_links_no_sqlite_of_its_own() -> None:
    maps = pathlib.Path("/proc/self/maps").read_text()
    native = pathlib.Path(_native.__file__).resolve()
    assert str(native) in maps
    libraries = {line.split()[-1] for line in maps.splitlines() if "sqlite" in line and line.split()[-1].startswith("/")}
    sqlite_libraries = {p for p in libraries if "libsqlite3" in os.path.basename(p)}
    # the one libsqlite3 of the process is the sqlite3 module's, and the engine is bound to it
    assert len(sqlite_libraries) <= 1, sqlite_libraries
    origin, _ = syncline.sqlite_library()
    if sqlite_libraries:
        assert os.path.realpath(origin) == os.path.realpath(next(iter(sqlite_libraries)))


def test_sqlite3_connections_coming_and_going_beside_the_engine(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "busy.db"
    events: list[object] = []
    with SyncEngine(path, watch_interval_ms=1) as e:
        e.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        e.enable_sync("t")
        with e.subscribe(events.append):
            stop = threading.Event()

            def engine_reads() -> None:
                while not stop.is_set():
                    e.status()

            reader = threading.Thread(target=engine_reads)
            reader.start()
            try:
                for i in range(300):
                    conn = sqlite3.connect(path)
                    conn.execute("INSERT INTO t(id, v) VALUES (?, 'x')", (i,))
                    conn.commit()
                    conn.close()
            finally:
                stop.set()
                reader.join()
        ((n,),) = list(e.query("SELECT count(*) FROM t"))
        assert n == 300
        assert e.status().tables[0].rows == 300


def _write(conn: sqlite3.Connection, i: int) -> None:
    """Replica i % 2 writes row i, marks its own row i - 2 done and deletes its own row i - 4
    every third time: every row has one writer, so the end state is known."""
    with conn:
        conn.execute("INSERT INTO todos(id, title) VALUES (?, ?)", (i, f"row {i}"))
        conn.execute("UPDATE todos SET done = 1, body = ? WHERE id = ?", (f"done by {i}", i - 2))
        if i % 3 == 0:
            conn.execute("DELETE FROM todos WHERE id = ?", (i - 4,))


def test_sqlite3_writes_during_and_between_syncs_converge(tmp_path: pathlib.Path) -> None:
    """sqlite3 connections opened and closed freely on two replicas, while a thread exchanges
    bundles and between exchanges: every write is captured, the replicas converge."""
    a, b = SyncEngine(tmp_path / "a.db"), SyncEngine(tmp_path / "b.db")
    reference = sqlite3.connect(":memory:")
    reference.execute(TODOS)
    try:
        for e in (a, b):
            e.execute_batch(TODOS)
            e.enable_sync("todos")
        kept_open = sqlite3.connect(a.path, timeout=10)  # one handle open the whole time
        stop, errors = threading.Event(), []

        def exchange() -> None:
            while not stop.is_set():
                try:
                    sync(a, b)
                    sync(b, a)
                except Exception as ex:  # pragma: no cover - reported below
                    errors.append(ex)
                    return

        syncer = threading.Thread(target=exchange)
        syncer.start()
        try:
            for i in range(80):  # during syncs
                if i % 4 == 0:
                    _write(kept_open, i)
                else:
                    conn = sqlite3.connect((a if i % 2 == 0 else b).path, timeout=10)
                    _write(conn, i)
                    conn.close()
                _write(reference, i)
        finally:
            stop.set()
            syncer.join()
        assert errors == []
        for i in range(80, 100):  # between syncs: write, close, exchange, reopen
            conn = sqlite3.connect((a if i % 2 == 0 else b).path, timeout=10)
            _write(conn, i)
            conn.close()
            _write(reference, i)
            sync(a, b)
            sync(b, a)
        kept_open.close()
        sync(a, b)
        sync(b, a)
        expected = reference.execute("SELECT id, title, done, body FROM todos ORDER BY id").fetchall()
        assert len(expected) > 50
        assert todos(a) == todos(b) == expected
        assert a.state_hash() == b.state_hash()
        for e in (a, b):
            assert e.query("SELECT count(*) FROM _syncline_queue") == [(0,)]
            assert e.status().tables[0].rows == len(expected)
    finally:
        a.close()
        b.close()
        reference.close()


# -- the error path: a driver on a second SQLite copy --------------------------------------


@pytest.fixture
def second_copy(tmp_path: pathlib.Path) -> Iterator[ctypes.CDLL]:
    """A second copy of the SQLite library the engine runs on, loaded from another path."""
    origin, _ = syncline.sqlite_library()
    copy = tmp_path / "copy" / "libsqlite3-second-copy.so"
    copy.parent.mkdir()
    shutil.copy(origin, copy)
    library = ctypes.CDLL(str(copy))
    library.sqlite3_soft_heap_limit64.restype = ctypes.c_int64
    library.sqlite3_soft_heap_limit64.argtypes = [ctypes.c_int64]
    library.sqlite3_libversion.restype = ctypes.c_char_p
    assert library.sqlite3_libversion().decode() == sqlite3.sqlite_version
    yield library


def test_a_driver_on_a_second_sqlite_copy_is_refused_and_nothing_opens(
    tmp_path: pathlib.Path, second_copy: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    def on_the_copy(n: int) -> None:  # the check's driver, as if sqlite3 ran on the copy
        second_copy.sqlite3_soft_heap_limit64(n)

    monkeypatch.setattr(_sqlite, "set_soft_heap_limit", on_the_copy)
    db = tmp_path / "never.db"
    with pytest.raises(SqliteLibraryError) as caught:
        SyncEngine(db)
    assert caught.value.code == "SqliteLibrary"
    assert "another SQLite library" in str(caught.value)
    assert not db.exists()
    with pytest.raises(SqliteLibraryError):
        syncline.sqlite_library()
    monkeypatch.undo()
    with SyncEngine(db):  # the real driver shares the engine's library
        pass


def test_a_failing_check_driver_is_a_sqlite_library_error(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(n: int) -> None:
        raise sqlite3.OperationalError("no such pragma")

    monkeypatch.setattr(_sqlite, "set_soft_heap_limit", broken)
    with pytest.raises(SqliteLibraryError) as caught:
        SyncEngine(tmp_path / "x.db")
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert not (tmp_path / "x.db").exists()


def test_binding_another_library_is_refused(second_copy: ctypes.CDLL, tmp_path: pathlib.Path) -> None:
    with pytest.raises(SqliteLibraryError) as caught:
        _native.bind_sqlite_library(str(tmp_path / "copy" / "libsqlite3-second-copy.so"))
    assert "second SQLite library" in str(caught.value)
    origin, _ = syncline.sqlite_library()
    _native.bind_sqlite_library(origin)  # the same one again is fine


# -- each way of binding, in a fresh process -----------------------------------------------

SCENARIO = r"""
import pathlib, sqlite3, sys
import syncline
from syncline import _native, _sqlite

mode, folder = sys.argv[1], pathlib.Path(sys.argv[2])
if mode in ("extension", "refused"):
    _sqlite.exports_sqlite = lambda path: False  # as if _sqlite3 linked SQLite privately
if mode == "refused":
    _sqlite.can_load_extensions = lambda: False  # ... and could not load extensions
if mode == "second-copy":
    _native.bind_sqlite_library(sys.argv[3])  # something bound another copy first
try:
    origin, version = syncline.sqlite_library()
except syncline.SqliteLibraryError as e:
    try:
        syncline.SyncEngine(folder / "a.db")
    except syncline.SqliteLibraryError:
        pass
    else:
        raise SystemExit("an engine opened on a second SQLite copy")
    assert not (folder / "a.db").exists(), "the refused open created the file"
    print("refused:", e)
    raise SystemExit(3)
assert version == sqlite3.sqlite_version, (version, sqlite3.sqlite_version)
TODOS = "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT)"
with syncline.SyncEngine(folder / "a.db") as a, syncline.SyncEngine(folder / "b.db") as b:
    for e in (a, b):
        e.execute_batch(TODOS)
        e.enable_sync("todos")
    for i in range(20):
        conn = sqlite3.connect(folder / ("a.db" if i % 2 else "b.db"))
        with conn:
            conn.execute("INSERT INTO todos VALUES (?, ?)", (i, "x"))
        conn.close()
        b.import_bundle(a.generate_bundle(b.site_id))
        a.import_bundle(b.generate_bundle(a.site_id))
    assert a.query("SELECT count(*) FROM todos") == [(20,)] == b.query("SELECT count(*) FROM todos")
    assert a.state_hash() == b.state_hash()
print("ok", mode, origin)
"""


def _interpreters() -> List[str]:
    """This interpreter and other CPythons >= 3.9 on this machine (the wheel is abi3)."""
    found = [sys.executable]
    for name in ("/usr/bin/python3", "/usr/bin/python3.11", "/usr/bin/python3.12", "/usr/bin/python3.13"):
        if os.path.exists(name) and os.path.realpath(name) not in {os.path.realpath(p) for p in found}:
            ok = subprocess.run([name, "-c", "import sys, sqlite3; assert sys.version_info >= (3, 9)"], capture_output=True, check=False)
            if ok.returncode == 0:
                found.append(name)
    return found


def _loads_extensions(python: str) -> bool:
    probe = "import sqlite3; print(hasattr(sqlite3.Connection, 'enable_load_extension'))"
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "True"


def _run(python: str, mode: str, folder: pathlib.Path, *extra: str) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True, exist_ok=True)
    site = str(pathlib.Path(syncline.__file__).resolve().parent.parent)  # the installed package
    env = {**os.environ, "PYTHONPATH": site, "PYTHONNOUSERSITE": "1"}
    return subprocess.run(
        [python, "-c", SCENARIO, mode, str(folder), *extra], capture_output=True, text=True, timeout=120, check=False, env=env
    )


@pytest.mark.parametrize("python", _interpreters())
def test_bound_by_the_sqlite3_modules_exported_symbols(python: str, tmp_path: pathlib.Path) -> None:
    out = _run(python, "library", tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok library" in out.stdout


@pytest.mark.parametrize("python", _interpreters())
def test_loaded_into_sqlite3_as_an_extension_or_refused(python: str, tmp_path: pathlib.Path) -> None:
    """When _sqlite3 exports no SQLite: loaded as an extension if sqlite3 can, else refused."""
    out = _run(python, "extension", tmp_path)
    if _loads_extensions(python):
        assert out.returncode == 0, out.stdout + out.stderr
        assert "ok extension" in out.stdout
    else:
        assert out.returncode == 3, out.stdout + out.stderr
        assert "cannot load extensions" in out.stdout and "nothing was opened" in out.stdout


@pytest.mark.parametrize("python", _interpreters())
def test_refused_when_sqlite3_can_neither_share_nor_load(python: str, tmp_path: pathlib.Path) -> None:
    out = _run(python, "refused", tmp_path)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "SQLite copy" in out.stdout and "enable-loadable-sqlite-extensions" in out.stdout


@pytest.mark.parametrize("python", _interpreters())
def test_refused_when_another_copy_was_bound_first(python: str, tmp_path: pathlib.Path) -> None:
    origin, _ = syncline.sqlite_library()
    copy = tmp_path / "libsqlite3-second-copy.so"
    shutil.copy(origin, copy)
    out = _run(python, "second-copy", tmp_path / "run", str(copy))
    assert out.returncode == 3, out.stdout + out.stderr
    assert "another SQLite library" in out.stdout



NO_SQLITE3 = r"""
import pathlib, sys
sys.modules["sqlite3"] = None  # a Python built without a usable sqlite3 module
sys.modules["_sqlite3"] = None
import syncline  # importing never touches sqlite3
folder = pathlib.Path(sys.argv[1])
try:
    syncline.SyncEngine(folder / "a.db")
except syncline.SqliteLibraryError as e:
    assert not (folder / "a.db").exists()
    print("refused:", e)
    raise SystemExit(3)
raise SystemExit("opened without sqlite3")
"""


def test_import_works_without_sqlite3_and_open_says_why(tmp_path: pathlib.Path) -> None:
    site = str(pathlib.Path(syncline.__file__).resolve().parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", NO_SQLITE3, str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": site},
    )
    assert out.returncode == 3, out.stdout + out.stderr
    assert "sqlite3 module cannot be imported" in out.stdout


def test_the_command_line_refuses_the_same_way(tmp_path: pathlib.Path) -> None:
    site = str(pathlib.Path(syncline.__file__).resolve().parent.parent)
    script = (
        "import sys, runpy; sys.modules['sqlite3'] = None; sys.modules['_sqlite3'] = None; "
        "sys.argv = ['syncline', 'status', sys.argv[1]]; runpy.run_module('syncline', run_name='__main__')"
    )
    db = tmp_path / "a.db"
    out = subprocess.run(
        [sys.executable, "-c", script, str(db)],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": site},
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "syncline: error:" in out.stderr and "sqlite3 module cannot be imported" in out.stderr
    assert not db.exists()
