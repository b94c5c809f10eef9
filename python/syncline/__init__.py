"""Syncline: offline-first sync for SQLite.

Any write to an enabled table is captured by SQL triggers (whichever connection makes it) and
stamped with a hybrid logical clock; replicas exchange bundles and converge by column-level
last-writer-wins, with manual, prefer-local/remote and custom (Python callable) strategies.

    from syncline import SyncEngine

    with SyncEngine("a.db") as a, SyncEngine("b.db") as b:
        for e in (a, b):
            e.execute_batch("CREATE TABLE IF NOT EXISTS todos(id TEXT PRIMARY KEY, title TEXT)")
            e.enable_sync("todos")
        a.execute("INSERT INTO todos VALUES (?, ?)", (syncline.uuid7(), "milk"))
        report = b.import_bundle(a.generate_bundle(peer=b.site_id))
"""

from __future__ import annotations

from typing import Tuple

from . import _sqlite
from ._engine import (
    BundleSource,
    MigrationPolicy,
    Progress,
    Resolver,
    Rows,
    SiteIdLike,
    SqlParam,
    SqlValue,
    Strategy,
    StrPath,
    SyncEngine,
    SyncHandle,
    clone,
)
from ._native import (
    AuthError,
    BundleStats,
    CellVersion,
    ClockDriftError,
    ClosedError,
    CompactReport,
    Conflict,
    CorruptError,
    Event,
    ImportReport,
    InvalidArgumentError,
    InvalidBundleError,
    NeedsSnapshotError,
    NetworkError,
    NotFoundError,
    PeerStatus,
    ReentrantError,
    Resolution,
    ResolverError,
    SchemaChange,
    SchemaMismatchError,
    SiteIdClashError,
    SqliteError,
    SqliteLibraryError,
    Status,
    Subscription,
    SyncReport,
    SyncStatus,
    SynclineError,
    SynclineIOError,
    TableStatus,
    UnknownColumnError,
    UnknownTableError,
    default_options,
    uuid7,
)


def sqlite_library() -> Tuple[str, str]:
    """The SQLite library the engine runs on, as (file, version): the one Python's ``sqlite3``
    module uses. Binds it if no engine opened yet, and proves that both share one library;
    raises `SqliteLibraryError` if they cannot (see the README, "One SQLite per process")."""
    return _sqlite.ensure_shared()


__all__ = [
    "AuthError",
    "BundleSource",
    "BundleStats",
    "CellVersion",
    "ClockDriftError",
    "ClosedError",
    "CompactReport",
    "Conflict",
    "CorruptError",
    "Event",
    "ImportReport",
    "InvalidArgumentError",
    "InvalidBundleError",
    "MigrationPolicy",
    "NeedsSnapshotError",
    "NetworkError",
    "NotFoundError",
    "PeerStatus",
    "Progress",
    "ReentrantError",
    "Resolution",
    "Resolver",
    "ResolverError",
    "Rows",
    "SchemaChange",
    "SchemaMismatchError",
    "SiteIdClashError",
    "SiteIdLike",
    "SqlParam",
    "SqlValue",
    "SqliteError",
    "SqliteLibraryError",
    "Status",
    "StrPath",
    "Strategy",
    "Subscription",
    "SyncEngine",
    "SyncHandle",
    "SyncReport",
    "SyncStatus",
    "SynclineError",
    "SynclineIOError",
    "TableStatus",
    "UnknownColumnError",
    "UnknownTableError",
    "clone",
    "default_options",
    "sqlite_library",
    "uuid7",
]
