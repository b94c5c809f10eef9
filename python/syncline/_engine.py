"""The Pythonic `SyncEngine` over the native engine.

Everything here is argument conversion and Python conveniences (context managers, aliases for
users of sqlite-sync-core); every behaviour is the Rust core's.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import io
import os
import pathlib
import tempfile
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator, List, Literal, Optional, Sequence, Tuple, Union, overload

from . import _native, _sqlite
from ._native import (
    BundleStats,
    CompactReport,
    Conflict,
    Event,
    ImportReport,
    Resolution,
    Status,
    Subscription,
    SyncReport,
    SyncStatus,
)

if TYPE_CHECKING:
    # Only for annotations: `import syncline` must work on a Python whose sqlite3 is unusable
    # (the error comes when an engine opens, see _sqlite.py).
    import sqlite3

    from typing_extensions import Self, TypeAlias

SqlValue: TypeAlias = Union[int, float, str, bytes, None]
"""A value read from SQLite: INTEGER (64-bit int), REAL, TEXT, BLOB or NULL."""
SqlParam: TypeAlias = Union[int, float, str, bytes, bytearray, memoryview, None]
"""A value bound to SQLite (bool binds as 0/1, as in the sqlite3 module)."""
SiteIdLike: TypeAlias = Union[str, bytes]
"""A site id: 32 hex digits, or the 16 raw bytes (sqlite-sync-core's device id)."""
StrPath: TypeAlias = Union[str, "os.PathLike[str]"]
BundleSource: TypeAlias = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]
Strategy: TypeAlias = Literal["lww", "manual", "prefer_local", "prefer_remote", "custom"]
"""Conflict strategies, chosen per table."""
MigrationPolicy: TypeAlias = Literal["apply", "hold"]
"""What imports do with the migrations they receive (spec/schema-evolution.md)."""
Resolver: TypeAlias = Callable[[Conflict], Resolution]
"""A custom resolver: shown the conflict, returns Resolution.LOCAL / REMOTE / with_value(v)."""
Progress: TypeAlias = Callable[[int, int], object]
"""A progress callback: ``progress(done, total)``, rows done and rows total (the core calls it
every few thousand rows and once at the end with ``done == total``)."""

_CHUNK = 1 << 20
"""Bytes copied at a time between a file object and the temporary bundle file."""


class _Missing(enum.Enum):
    MISSING = 0


_MISSING = _Missing.MISSING


class Rows(List[Tuple[SqlValue, ...]]):
    """The rows of a query (a list of tuples) with the column names in `columns`."""

    columns: Tuple[str, ...]

    def __init__(self, columns: Sequence[str], rows: Sequence[Tuple[SqlValue, ...]]) -> None:
        super().__init__(rows)
        self.columns = tuple(columns)


# Engines still open at interpreter exit are closed first, so no watcher thread outlives Python.
_open_engines: weakref.WeakSet[SyncEngine] = weakref.WeakSet()


@atexit.register
def _close_open_engines() -> None:
    for engine in list(_open_engines):
        try:
            engine.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


class SyncHandle:
    """A background sync started by `SyncEngine.start_sync`.

    The loop runs on its own thread (never holding the GIL while it works) until `stop()`,
    the end of a ``with`` / ``async with`` block, or the engine's `close()` (the core stops
    every loop started on an engine when it closes).
    """

    def __init__(self, native: _native.SyncHandle) -> None:
        self._native = native

    def status(self) -> SyncStatus:
        """A snapshot: `running`, `syncs` (completed passes), `failures` (since the last
        success), `last_success` (Unix time in seconds, or None), `last_error` (the exception
        of the last pass if it failed, e.g. a `NetworkError` or `AuthError`), `last_report`
        (the `SyncReport` of the last successful pass) and `pending` (local changes the server
        is not yet known to hold)."""
        return self._native.status()

    def sync_now(self) -> None:
        """Sync now instead of at the end of the current wait (returns at once)."""
        self._native.sync_now()

    def stop(self) -> None:
        """Stop the loop and wait for it (a pass in progress is finished first). Idempotent."""
        self._native.stop()

    async def stop_async(self) -> None:
        """`stop()` without blocking the event loop (runs in a worker thread)."""
        await asyncio.to_thread(self._native.stop)

    @property
    def running(self) -> bool:
        return self._native.status().running

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.stop_async()

    def __repr__(self) -> str:
        return f"<syncline.SyncHandle {self._native.status()!r}>"


class SyncEngine:
    """The sync engine for one SQLite database file.

    Open (or create) the file and install the sync metadata::

        with SyncEngine("app.db") as engine:
            engine.execute_batch("CREATE TABLE IF NOT EXISTS todos(id TEXT PRIMARY KEY, title TEXT)")
            engine.enable_sync("todos")

    Every write to an enabled table is captured, whichever connection makes it (this engine,
    Python's ``sqlite3``, another process). All methods release the GIL while the engine works.

    The engine runs on the SQLite library of Python's ``sqlite3`` module (one SQLite per
    process); if it cannot share that library, opening raises `SqliteLibraryError` and opens
    nothing (see `syncline.sqlite_library`).
    """

    def __init__(
        self,
        path: StrPath,
        *,
        max_drift_ms: Optional[int] = None,
        busy_timeout_ms: Optional[int] = None,
        watch_interval_ms: Optional[int] = None,
    ) -> None:
        self._closed = True  # until it is open (close() and __del__ of a failed open do nothing)
        self._connection: Optional[sqlite3.Connection] = None
        _sqlite.ensure_shared()
        self._engine = _native.Engine(
            path,
            max_drift_ms=max_drift_ms,
            busy_timeout_ms=busy_timeout_ms,
            watch_interval_ms=watch_interval_ms,
        )
        self._closed = False
        _open_engines.add(self)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the engine (and `connection`, if it was opened); the core stops the
        background syncs started from it first. Idempotent."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if not self._closed:
            self._closed = True
            _open_engines.discard(self)
            self._engine.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<syncline.SyncEngine {str(self.path)!r} ({state})>"

    # -- identity and options --------------------------------------------------------------

    @property
    def path(self) -> pathlib.Path:
        """The database file."""
        return self._engine.path

    @property
    def max_drift_ms(self) -> int:
        return self._engine.max_drift_ms

    @property
    def busy_timeout_ms(self) -> int:
        return self._engine.busy_timeout_ms

    @property
    def watch_interval_ms(self) -> int:
        return self._engine.watch_interval_ms

    @property
    def site_id(self) -> str:
        """This replica's site id (32 hex digits)."""
        return self._engine.site_id()

    def reset_site_id(self) -> str:
        """Give this database a new random site id (after copying the file); returns it."""
        return self._engine.reset_site_id()

    def set_site_id(self, site_id: SiteIdLike) -> str:
        """Give this database a chosen site id (tests, golden vectors); returns it."""
        return self._engine.set_site_id(site_id)

    def set_manual_clock(self, ms: Optional[int]) -> None:
        """Fix the wall clock (Unix ms) used for new stamps; None returns to the system clock."""
        self._engine.set_manual_clock(ms)

    # -- tables and strategies -------------------------------------------------------------

    def enable_sync(self, table: str, strategy: Strategy = "lww", *, allow_autoincrement: bool = False) -> None:
        """Start syncing an existing table (validated; existing rows are back-filled)."""
        self._engine.enable_sync(table, strategy, allow_autoincrement)

    def disable_sync(self, table: str) -> None:
        """Stop syncing a table; its data stays."""
        self._engine.disable_sync(table)

    def set_strategy(self, table: str, strategy: Strategy) -> None:
        """Change a synced table's conflict strategy."""
        self._engine.set_strategy(table, strategy)

    def set_resolver(self, table: str, resolver: Optional[Resolver]) -> None:
        """Register the resolver of a table using the "custom" strategy (None removes it).

        The resolver must be deterministic and symmetric in (local, remote), or replicas
        diverge. An exception it raises aborts the import with nothing applied and surfaces
        as `ResolverError` (the original exception is its ``__cause__``).
        """
        self._engine.set_resolver(table, resolver)

    # -- bundles ---------------------------------------------------------------------------

    @overload
    def generate_bundle(
        self,
        peer: Optional[SiteIdLike] = None,
        path: None = None,
        compress: bool = False,
        *,
        peer_device_id: Optional[SiteIdLike] = None,
        output_path: None = None,
        progress: Optional[Progress] = None,
    ) -> bytes: ...
    @overload
    def generate_bundle(
        self,
        peer: Optional[SiteIdLike],
        path: StrPath,
        compress: bool = False,
        *,
        peer_device_id: Optional[SiteIdLike] = None,
        output_path: None = None,
        progress: Optional[Progress] = None,
    ) -> BundleStats: ...
    @overload
    def generate_bundle(
        self,
        peer: Optional[SiteIdLike] = None,
        *,
        path: StrPath,
        compress: bool = False,
        peer_device_id: Optional[SiteIdLike] = None,
        output_path: None = None,
        progress: Optional[Progress] = None,
    ) -> BundleStats: ...
    @overload
    def generate_bundle(
        self,
        peer: Optional[SiteIdLike] = None,
        path: None = None,
        compress: bool = False,
        *,
        peer_device_id: Optional[SiteIdLike] = None,
        output_path: StrPath,
        progress: Optional[Progress] = None,
    ) -> Optional[StrPath]: ...
    def generate_bundle(
        self,
        peer: Optional[SiteIdLike] = None,
        path: Optional[StrPath] = None,
        compress: bool = False,
        *,
        peer_device_id: Optional[SiteIdLike] = None,
        output_path: Optional[StrPath] = None,
        progress: Optional[Progress] = None,
    ) -> Union[bytes, BundleStats, StrPath, None]:
        """A bundle of what `peer` lacks (everything for None or an unknown peer).

        Returns the bytes, or writes them to `path` and returns the `BundleStats`.
        `peer_device_id` and `output_path` are the sqlite-sync-core spellings, and behave as
        there: with `output_path` the bundle is written there and `output_path` is returned,
        or None (and no file is written) when the peer lacks nothing.

        `progress(done, total)` is called with the rows done and the rows total (GIL taken,
        on the calling thread). An exception it raises is raised once the call returns (the
        core cannot stop a call midway); it is not called again after it.
        """
        if peer is not None and peer_device_id is not None:
            raise TypeError("give peer or peer_device_id, not both")
        if path is not None and output_path is not None:
            raise TypeError("give path or output_path, not both")
        peer = peer if peer is not None else peer_device_id
        if output_path is not None:
            data, stats = self._engine.generate_bundle(peer, compress, progress)
            if stats.rows == 0:
                return None
            _write_atomically(output_path, data)
            return output_path
        if path is None:
            data, _ = self._engine.generate_bundle(peer, compress, progress)
            return data
        return self._engine.write_bundle(path, peer, compress, progress)

    def import_bundle(self, source: BundleSource, *, progress: Optional[Progress] = None) -> ImportReport:
        """Import a bundle given as bytes or as a file path: one transaction, idempotent;
        on any error nothing changes. A file is never held in memory.

        `progress(done, total)` as in `generate_bundle`. An exception it raises is raised
        once the call returns: the import has been applied by then (it cannot be stopped
        midway); importing the same bundle again is harmless.
        """
        if isinstance(source, (bytes, bytearray)):
            return self._engine.import_bundle(source, progress)
        if isinstance(source, memoryview):
            return self._engine.import_bundle(source.tobytes(), progress)
        return self._engine.import_bundle_file(source, progress)

    def write_bundle_to(
        self,
        fileobj: BinaryIO,
        peer: Optional[SiteIdLike] = None,
        compress: bool = False,
        *,
        progress: Optional[Progress] = None,
    ) -> BundleStats:
        """Write the bundle for `peer` (everything for None) to a binary file object (anything
        with ``write(bytes)``: an open file, a socket's ``makefile("wb")``, `io.BytesIO`).

        The core writes the bundle to a private temporary file beside the database (its rows
        never all in memory), which is then copied to `fileobj` 1 MiB at a time and deleted;
        `fileobj` is neither flushed nor closed. A text file is refused with `TypeError`
        before any work. `progress` as in `generate_bundle`.
        """
        write = getattr(fileobj, "write", None)
        if not callable(write) or isinstance(fileobj, io.TextIOBase):
            raise TypeError(f"write_bundle_to needs a binary file object open for writing, not {type(fileobj).__name__}")
        with self._temporary_bundle() as tmp:
            stats = self._engine.write_bundle(tmp, peer, compress, progress)
            with open(tmp, "rb") as f:
                while True:
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        break
                    write(chunk)
        return stats

    def import_bundle_from(self, fileobj: BinaryIO, *, progress: Optional[Progress] = None) -> ImportReport:
        """Import a bundle read from a binary file object (anything whose ``read(n)`` returns
        bytes: an open file, a response body, `io.BytesIO`), read to its end.

        The bundle is copied 1 MiB at a time into a private temporary file beside the
        database, imported from there (never held in memory) and deleted. An object that is
        not a binary file (no ``read``, a text file, ``read`` returning str) raises
        `TypeError` with nothing imported. `progress` as in `import_bundle`.
        """
        read = getattr(fileobj, "read", None)
        if not callable(read) or isinstance(fileobj, io.TextIOBase):
            raise TypeError(f"import_bundle_from needs a binary file object open for reading, not {type(fileobj).__name__}")
        with self._temporary_bundle() as tmp:
            with open(tmp, "wb") as f:
                while True:
                    chunk = read(_CHUNK)
                    if not isinstance(chunk, (bytes, bytearray, memoryview)):
                        raise TypeError(
                            f"import_bundle_from needs a binary file object: read() returned {type(chunk).__name__}, not bytes"
                        )
                    if not chunk:
                        break
                    f.write(chunk)
            return self._engine.import_bundle_file(tmp, progress)

    @contextlib.contextmanager
    def _temporary_bundle(self) -> Iterator[str]:
        """A private (mode 0600) temporary file beside the database, deleted afterwards: on the
        database's disk, not in the system temp folder, which may live in memory."""
        fd, tmp = tempfile.mkstemp(prefix=".syncline-", suffix=".bundle", dir=os.path.dirname(os.path.abspath(self.path)))
        os.close(fd)
        try:
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- conflicts -------------------------------------------------------------------------

    def conflicts(self) -> list[Conflict]:
        """Open conflicts (manual tables), oldest first."""
        return self._engine.conflicts()

    def all_conflicts(self) -> list[Conflict]:
        """Every stored conflict, resolved ones included."""
        return self._engine.all_conflicts()

    def resolve(
        self,
        conflict: Union[int, Conflict],
        resolution: Optional[Resolution] = None,
        *,
        local: bool = False,
        remote: bool = False,
        value: Union[SqlParam, _Missing] = _MISSING,
    ) -> None:
        """Resolve a stored conflict: give exactly one of `resolution`, ``local=True``,
        ``remote=True`` or ``value=v``. The outcome is written as a new local change, so
        every replica converges on it after the next exchange."""
        chosen = [r for r in (resolution, Resolution.LOCAL if local else None, Resolution.REMOTE if remote else None) if r is not None]
        if not isinstance(value, _Missing):
            chosen.append(Resolution.with_value(value))
        if len(chosen) != 1:
            raise TypeError("resolve() takes exactly one of: a Resolution, local=True, remote=True, value=...")
        conflict_id = conflict if isinstance(conflict, int) else conflict.id
        if conflict_id is None:
            raise TypeError("this conflict was settled by its strategy and has no stored record to resolve")
        self._engine.resolve(conflict_id, chosen[0])

    # -- status and events -----------------------------------------------------------------

    def status(self) -> Status:
        """Site, tables, peers with pending changes, version vector, open conflicts."""
        return self._engine.status()

    def state_hash(self) -> str:
        """SHA-256 (hex) of every synced row and its sync state; equal on converged replicas
        (spec/merge-rules.md section 9)."""
        return self._engine.state_hash()

    # -- schema evolution and compaction ---------------------------------------------------

    def add_column(self, table: str, column: str, decl_type: str, default: SqlParam = None) -> None:
        """Add a column to a synced table through Syncline: the ALTER, its capture and a
        migration stamped with the clock, in one transaction. The migration travels in bundles;
        peers apply it (or hold it, see `set_migration_policy`) before the rows that use it.
        `decl_type` is a plain SQLite type name, `default` the value of rows that never set it
        (spec/schema-evolution.md)."""
        self._engine.add_column(table, column, decl_type, default)

    def set_migration_policy(self, policy: MigrationPolicy) -> None:
        """What imports do with received migrations: "apply" (the default) or "hold" (listed in
        `status().schema_changes` as held, for the app to apply). Stored in the file."""
        self._engine.set_migration_policy(policy)

    def migration_policy(self) -> MigrationPolicy:
        """The migration policy in force: "apply" or "hold"."""
        return self._engine.migration_policy()

    def apply_held_migrations(self) -> int:
        """Apply every held migration now, whatever the policy; returns how many changed a table."""
        return self._engine.apply_held_migrations()

    def compact(self, retain: float = 0.0) -> CompactReport:
        """Purge the tombstones every known peer acknowledged that are older than `retain`
        seconds, then vacuum the file (spec/merge-rules.md section 8a). With no peer known nothing
        is purged; afterwards a sender that missed a purged delete gets `NeedsSnapshotError`."""
        return self._engine.compact(retain)

    def snapshot(self, path: StrPath) -> None:
        """Write a snapshot for a new device to `path` (a new file): the synced tables and sync
        state without this replica's site id. The device copies it into place and opens it
        (it gets a site id of its own); its first sync carries only what changed since."""
        self._engine.snapshot(os.fspath(path))

    def subscribe(self, callback: Callable[[Event], object]) -> Subscription:
        """Call `callback(event)` for every change: local writes by any connection (noticed
        by a watcher thread within `watch_interval_ms`), imports and conflicts. The callback
        runs on an engine thread; an exception it raises goes to ``sys.unraisablehook``.
        Close the returned subscription (or use it in a ``with`` block) to stop."""
        return self._engine.subscribe(callback)

    # -- network sync (spec/sync-protocol.md) ----------------------------------------------

    def sync(self, url: str, token: Optional[str] = None, *, progress: Optional[Progress] = None) -> SyncReport:
        """Sync once with the server at `url` (``http://host:port``, e.g. ``syncline serve``):
        push what it lacks, pull what this replica lacks, in pages. Blocks until the pass is
        done; the GIL is released meanwhile. A failed transport raises `NetworkError`, a
        refused token `AuthError`; an interrupted pass can simply be repeated.

        `progress(pulled, 0)` is called after each page with the changes pulled so far (the
        total is not known in advance: 0), as in `generate_bundle` otherwise: an exception it
        raises is raised once the pass is done."""
        return self._engine.sync(url, token, progress)

    async def sync_async(self, url: str, token: Optional[str] = None, *, progress: Optional[Progress] = None) -> SyncReport:
        """`sync()` for asyncio: the blocking pass runs in a worker thread
        (``asyncio.to_thread``), so the event loop keeps running (`progress` is called on that
        thread). Cancelling the awaiting task does not interrupt the pass already under way
        (it finishes in its thread)."""
        return await asyncio.to_thread(self._engine.sync, url, token, progress)

    def start_sync(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        interval: Optional[float] = None,
        max_backoff: Optional[float] = None,
        live: Optional[bool] = None,
        page_rows: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> SyncHandle:
        """Sync with the server at `url` in the background until the handle is stopped.

        Syncs at once, then every `interval` seconds (default 30) while all is well, backing
        off exponentially with jitter after failures up to `max_backoff` seconds (default 60).
        With ``live=True`` it also keeps a WebSocket to the server open and syncs as soon as
        another client's push is announced or a local write happens. `page_rows` (default
        5000) caps the rows per page, `timeout` (default 60 s) each HTTP request. An option
        left at None takes the core's default (`syncline.default_options()`); zero is refused
        by the core with `InvalidArgumentError`. Returns a `SyncHandle` (a context manager,
        sync or async)."""
        native = self._engine.start_sync(
            url,
            token,
            interval=interval,
            max_backoff=max_backoff,
            live=live,
            page_rows=page_rows,
            timeout=timeout,
        )
        return SyncHandle(native)

    # -- SQL -------------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[SqlParam] = ()) -> int:
        """Run one statement on the engine's connection; returns the changed row count."""
        return self._engine.execute(sql, params)

    def execute_batch(self, sql: str) -> None:
        """Run several statements (no parameters), e.g. a schema."""
        self._engine.execute_batch(sql)

    def query(self, sql: str, params: Sequence[SqlParam] = ()) -> Rows:
        """Run a query; returns every row as a tuple (`Rows.columns` has the names)."""
        columns, rows = self._engine.query(sql, params)
        return Rows(columns, rows)

    # -- sqlite-sync-core migration aliases ------------------------------------------------

    def initialize(self) -> bytes:
        """sqlite-sync-core alias: the metadata is installed on open; returns `device_id`."""
        return self.device_id

    @property
    def device_id(self) -> bytes:
        """sqlite-sync-core alias: the site id as its 16 raw bytes."""
        return bytes.fromhex(self.site_id)

    @property
    def connection(self) -> sqlite3.Connection:
        """sqlite-sync-core alias: a `sqlite3.Connection` on the same file (opened on first
        use, closed with the engine), in autocommit mode and usable from any thread as in
        that package. Its writes are captured like any other."""
        import sqlite3

        if self._closed:
            raise _native.ClosedError("the engine is closed")
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
        return self._connection

    def enable_sync_for_table(self, table_name: str) -> None:
        """sqlite-sync-core alias of `enable_sync(table_name)`."""
        self.enable_sync(table_name)

    def get_unresolved_conflicts(self) -> list[Conflict]:
        """sqlite-sync-core alias of `conflicts()`."""
        return self.conflicts()

    def resolve_conflict(self, conflict_id: int, resolution: Literal["local", "remote"]) -> None:
        """sqlite-sync-core alias: ``resolve(conflict_id, local=True)`` or ``remote=True``."""
        if resolution not in ("local", "remote"):
            raise ValueError("resolution must be 'local' or 'remote'")
        self.resolve(conflict_id, Resolution.LOCAL if resolution == "local" else Resolution.REMOTE)


def clone(url: str, path: StrPath, token: Optional[str] = None, *, progress: Optional[Progress] = None) -> int:
    """Start a new device from the snapshot of the server at `url` (``GET /v1/snapshot``):
    download it to `path`, a new file, and return its size in bytes. Open it with
    ``SyncEngine(path)`` (it gets a site id of its own) and `sync` it: the first pass carries
    only what changed since the snapshot.

    `progress(bytes, total)` is called as the file arrives (`total` 0 if the server did not
    say). `InvalidArgumentError` if `path` exists, `InvalidBundleError` if the server's file
    is not a snapshot of that server, `AuthError` / `NetworkError` as in `sync`; nothing is
    left at `path` after an error. Blocks, with the GIL released."""
    _sqlite.ensure_shared()  # the download is checked on the SQLite engines run on
    return _native.clone_snapshot(url, path, token, progress)


def _write_atomically(path: StrPath, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, so a reader never
    sees half a bundle."""
    target = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
