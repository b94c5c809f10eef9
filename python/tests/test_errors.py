"""The exception classes are the core's list of error kinds (ErrorKind::ALL), made at import:
the stubs, the package's exports and the README must follow that runtime list."""

from __future__ import annotations

import ast
import pathlib
import sqlite3

import pytest

import syncline
from syncline import CorruptError, SqliteLibraryError, SynclineError, _native

from conftest import MakeReplica

STUBS = pathlib.Path(_native.__file__).with_name("_native.pyi")


def stub_error_classes() -> list[str]:
    tree = ast.parse(STUBS.read_text(encoding="utf-8"))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id == "SynclineError" for b in node.bases)
    ]


def test_one_class_per_core_kind_with_its_code_and_description() -> None:
    classes = _native.ERROR_CLASSES
    assert len(classes) >= 17 and "SqliteLibrary" in classes and "Corrupt" in classes
    for code, cls in classes.items():
        assert issubclass(cls, SynclineError) and cls is not SynclineError
        assert cls.code == code
        assert cls.__module__ == "syncline"
        assert cls.__doc__ and cls.__doc__.endswith(".")
        assert getattr(_native, cls.__name__) is cls
    assert classes["Io"].__name__ == "SynclineIOError"
    assert classes["SqliteLibrary"] is SqliteLibraryError and classes["Corrupt"] is CorruptError
    assert len({cls.__name__ for cls in classes.values()}) == len(classes)


def test_stubs_and_exports_follow_the_runtime_list() -> None:
    runtime = [cls.__name__ for cls in _native.ERROR_CLASSES.values()]
    assert stub_error_classes() == runtime, "syncline/_native.pyi lists other error classes than the core"
    exported = {name for name in syncline.__all__ if name.endswith("Error")}
    assert exported == set(runtime) | {"SynclineError"}, "syncline.__all__ lists other error classes than the core"
    for name in runtime:
        assert getattr(syncline, name) is getattr(_native, name)


def test_the_readme_names_every_error_class() -> None:
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("the README is beside the sources, not in the wheel")
    text = readme.read_text(encoding="utf-8")
    missing = [cls.__name__ for cls in _native.ERROR_CLASSES.values() if f"`{cls.__name__}`" not in text]
    assert missing == []


def test_errors_carry_their_code(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    with pytest.raises(syncline.UnknownTableError) as caught:
        a.enable_sync("nope")
    assert caught.value.code == "UnknownTable" and isinstance(caught.value, SynclineError)


def test_a_write_queued_during_stamping_is_a_corrupt_error(make_replica: MakeReplica) -> None:
    """The core's signal of a second SQLite copy writing under the engine (a write queued while
    it stamps): CorruptError, nothing exported, the write stays queued."""
    a = make_replica("a")
    b = make_replica("b")
    app = sqlite3.connect(a.path, isolation_level=None)
    # Stand-in for the foreign writer (as in core/tests/capture.rs): a write queued during
    # the pass, when the engine records its clock.
    app.execute(
        "CREATE TRIGGER foreign_writer AFTER UPDATE ON _syncline_clock BEGIN "
        "INSERT INTO _syncline_queue(t, tbl, op, pk0) VALUES (julianday('now'), 1, 0, 1000); END"
    )
    app.execute("INSERT INTO todos(id, title) VALUES (1, 'one')")
    with pytest.raises(CorruptError) as caught:
        a.generate_bundle()
    assert caught.value.code == "Corrupt" and "one SQLite library" in str(caught.value)
    assert app.execute("SELECT count(*) FROM _syncline_queue").fetchone() == (1,)
    app.execute("DROP TRIGGER foreign_writer")
    app.close()
    b.import_bundle(a.generate_bundle(b.site_id))
    assert b.query("SELECT title FROM todos") == [("one",)]
