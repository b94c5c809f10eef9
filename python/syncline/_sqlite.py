"""One SQLite per process: the engine runs on the SQLite library of Python's `sqlite3` module.

The native module links no SQLite (the core's feature ``host-sqlite``): two SQLite copies in one
process do not see each other's POSIX locks, so a `sqlite3` connection closing the database
could drop the engine's locks, or checkpoint and delete the WAL under it. Before the first
engine opens, the engine is bound to the library the `sqlite3` module runs on, the first way
that works:

1. ``_sqlite3`` exports SQLite's functions (it links a shared ``libsqlite3``, the usual case):
   the core binds that library by its symbols (``bind_library(_sqlite3.__file__)``);
2. else, if ``sqlite3`` can load extensions (``Connection.enable_load_extension``), the native
   module is loaded into it as a SQLite extension (entry point ``sqlite3_syncline_init``), which
   hands the engine the very API table of the module's SQLite;
3. else `SqliteLibraryError`, saying why and what to do.

Then, at every open, the core proves through a `sqlite3` connection that both run on one
library (``PRAGMA soft_heap_limit``, a setting global to one SQLite library): never a second
copy, silently. Nothing here runs at ``import syncline``, so importing works on a Python
whose `sqlite3` is unusable; the error comes when an engine opens.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Optional, Tuple

from . import _native

_lock = threading.Lock()

WAY_OUT = (
    "Use a Python whose sqlite3 module links SQLite as a shared library (Debian/Ubuntu, Fedora, Homebrew, "
    "conda and pyenv builds do), or one built with loadable extensions "
    "(./configure --enable-loadable-sqlite-extensions), and open every connection to a synced "
    "database through that sqlite3 module or through this engine."
)


def _error(message: str) -> _native.SynclineError:
    error: _native.SynclineError = _native.ERROR_CLASSES["SqliteLibrary"](message)
    return error


def sqlite3_module_file() -> Optional[str]:
    """The file of the ``_sqlite3`` extension module (None if it is built into Python)."""
    import _sqlite3

    path: Optional[str] = getattr(_sqlite3, "__file__", None)
    return path


def exports_sqlite(path: str) -> bool:
    """Whether the module at `path` (with the libraries it links) exports SQLite's functions."""
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return False
    return hasattr(library, "sqlite3_open_v2")


def can_load_extensions() -> bool:
    """Whether this Python's sqlite3 module can load SQLite extensions."""
    import sqlite3

    return hasattr(sqlite3.Connection, "enable_load_extension")


def load_as_extension() -> None:
    """Load the native module into a `sqlite3` connection as a SQLite extension: the engine is
    bound to the API table of the sqlite3 module's own SQLite."""
    import sqlite3

    conn = sqlite3.connect(":memory:")
    try:
        conn.enable_load_extension(True)
        conn.execute("SELECT load_extension(?, 'sqlite3_syncline_init')", (_native.__file__,))
    except sqlite3.Error as e:
        raise _error(f"the sqlite3 module could not load Syncline as a SQLite extension: {e}. {WAY_OUT}") from e
    finally:
        conn.close()


def set_soft_heap_limit(n: int) -> None:
    """The check's driver: run ``PRAGMA soft_heap_limit = n`` through the sqlite3 module."""
    import sqlite3

    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA soft_heap_limit = {int(n)}").fetchall()
    finally:
        conn.close()


def _bind() -> None:
    try:
        import sqlite3  # noqa: F401

        path = sqlite3_module_file()
    except ImportError as e:
        raise _error(
            f"Python's sqlite3 module cannot be imported ({e}), and Syncline runs on the SQLite library of that "
            f"module. {WAY_OUT}"
        ) from e
    if path is not None and exports_sqlite(path):
        _native.bind_sqlite_library(path)
        return
    if can_load_extensions():
        load_as_extension()
        return
    where = f"{path} links SQLite privately" if path is not None else "the sqlite3 module is built into this Python"
    raise _error(
        f"Syncline cannot share the SQLite of Python's sqlite3 module: {where} (it exports no SQLite functions), "
        f"and this sqlite3 module cannot load extensions (no Connection.enable_load_extension). Running on a second "
        f"SQLite copy beside it could corrupt the database, so nothing was opened. {WAY_OUT}"
    )


def ensure_shared() -> Tuple[str, str]:
    """Bind the engine to the sqlite3 module's SQLite if nothing is bound yet, then prove that
    both run on one library. Returns the bound library's (origin, version); raises
    `SqliteLibraryError` (nothing opened) otherwise."""
    with _lock:
        if _native.bound_sqlite_library() is None:
            _bind()
        # Serialised: the check sets and reads back a process-wide SQLite setting.
        _native.check_shared_sqlite(lambda n: set_soft_heap_limit(n))
        bound = _native.bound_sqlite_library()
    assert bound is not None
    return bound
