//! [`SyncEngine`]: the one public entry point. It owns a connection to the database file,
//! guards it for use from many threads, and ties capture, export, import, conflicts and events
//! together. Every binding wraps this type and nothing else.

use crate::apply::{self, ImportContext, ImportReport};
use crate::capture;
use crate::conflict::{self, Conflict};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Hub, Observer, Subscription};
use crate::evolve;
use crate::export::{self, BundleStats};
use crate::fold;
use crate::meta::{self, SyncedTable};
use crate::schema::{self, quote_ident};
use crate::shadow;
use crate::site::SiteId;
use crate::status::{self, Status};
use crate::strategy::{Resolution, Resolver, Strategy};
use crate::value::Value;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

/// Engine options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How far (ms) a remote stamp may lie ahead of the local wall clock before its bundle is
    /// quarantined. Default 5 minutes.
    pub max_drift_ms: u64,
    /// How long (ms) to wait for another connection's write lock. Default 10 s.
    pub busy_timeout_ms: u64,
    /// How often (ms) the watcher looks for local writes while someone is subscribed. Default 100.
    pub watch_interval_ms: u64,
    /// Create the database file if it does not exist. Default `true`; with `false`, opening a
    /// missing file fails with `NotFound` (naming the path) and creates nothing.
    pub create: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_drift_ms: 5 * 60 * 1000, busy_timeout_ms: 10_000, watch_interval_ms: 100, create: true }
    }
}

/// How a table is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnableOptions {
    pub strategy: Strategy,
    /// Enable a table with an AUTOINCREMENT key anyway (ids may collide across replicas).
    pub allow_autoincrement: bool,
}

/// How a bundle is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportOptions<'a> {
    /// The peer it is for; `None` (or an unknown peer) gets everything.
    pub peer: Option<&'a SiteId>,
    /// Compress the body with zlib.
    pub compress: bool,
}

/// Rows returned by [`SyncEngine::query`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Progress callback: (done, total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

thread_local! {
    static THREAD_TAG: Cell<u64> = const { Cell::new(0) };
}
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

fn thread_tag() -> u64 {
    THREAD_TAG.with(|t| {
        if t.get() == 0 {
            t.set(NEXT_TAG.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

/// The sync engine for one SQLite database file. `Send + Sync`: share it between threads.
pub struct SyncEngine {
    path: PathBuf,
    options: Options,
    conn: Mutex<Option<Connection>>,
    owner: AtomicU64,
    resolvers: RwLock<HashMap<String, Arc<dyn Resolver>>>,
    hub: Arc<Hub>,
    /// Background work to stop on [`close`](Self::close) (the sync loops).
    stoppers: Mutex<Vec<Weak<dyn Stop>>>,
    /// The `schema_version` at which synced tables last had their recorded shape.
    checked_schema: AtomicI64,
}

/// Background work tied to an engine, stopped when it closes.
pub(crate) trait Stop: Send + Sync {
    fn stop(&self);
}

/// Exclusive use of the connection; knows its thread so a re-entrant call fails cleanly.
struct Held<'a> {
    guard: MutexGuard<'a, Option<Connection>>,
    owner: &'a AtomicU64,
}

impl Held<'_> {
    fn conn(&mut self) -> Result<&mut Connection> {
        self.guard.as_mut().ok_or_else(|| Error::new(ErrorKind::Closed, "the engine is closed"))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::SeqCst);
    }
}

/// Open a connection configured for sharing the file with other writers; the file is
/// created only when `options.create` says so.
fn connect(path: &Path, options: &Options) -> Result<Connection> {
    #[cfg(feature = "host-sqlite")]
    crate::host::ensure_bound()?;
    #[cfg(not(feature = "host-sqlite"))]
    quiet_memory_statistics();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if options.create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        if !options.create && !path.exists() {
            Error::new(ErrorKind::NotFound, format!("no database at {} (only `init`, or opening with create, makes one)", path.display()))
        } else {
            Error::from(e)
        }
    })?;
    conn.busy_timeout(Duration::from_millis(options.busy_timeout_ms))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(256);
    // Plans that never depend on bound values: otherwise SQLite may compile a cached statement
    // again each time a parameter compared with an indexed column changes (most of ours).
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "cache_size", -8192)?; // 8 MiB page cache
                                                    // A big export's rows wait in a temporary table (spill): on disk, not in memory.
    conn.pragma_update(None, "temp_store", "FILE")?;
    // The same on every SQLite library the engine may run on (better-sqlite3 compiles foreign
    // keys on by default): merges apply rows in bundle order, not parents first.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    crate::export::register_lacks(&conn)?;
    Ok(conn)
}

/// Turn off the memory statistics of the SQLite compiled into this build, before its first
/// use in the process. Kept on, every allocation SQLite makes takes one process-wide mutex, so
/// threads serving many databases (a hub) wait on each other instead of working. Nothing here
/// reads those statistics; when SQLite is already in use (the call is refused) they stay on.
/// A host's SQLite (feature `host-sqlite`) is the host's to configure.
#[cfg(not(feature = "host-sqlite"))]
fn quiet_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: `sqlite3_config` is called before SQLite initializes (or is refused with
    // SQLITE_MISUSE, harmlessly, when it already has); the option takes one int argument.
    ONCE.call_once(|| unsafe {
        rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int);
    });
}

impl SyncEngine {
    /// Open a database file (creating it if missing, unless `options.create` is false) and
    /// install the sync metadata if missing.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<SyncEngine> {
        let path = path.as_ref().to_owned();
        let mut conn = connect(&path, &options)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        meta::install(&tx)?;
        crate::snapshot::rekey_if_snapshot(&tx)?;
        // Writes made while no engine was open wait in the queue: stamp them now.
        fold::fold(&tx, false)?;
        tx.commit()?;
        Ok(SyncEngine {
            path,
            options,
            conn: Mutex::new(Some(conn)),
            owner: AtomicU64::new(0),
            resolvers: RwLock::new(HashMap::new()),
            hub: Arc::new(Hub::default()),
            stoppers: Mutex::new(Vec::new()),
            checked_schema: AtomicI64::new(i64::MIN),
        })
    }

    fn hold(&self) -> Result<Held<'_>> {
        let me = thread_tag();
        if self.owner.load(Ordering::SeqCst) == me {
            return Err(Error::new(
                ErrorKind::Reentrant,
                "the engine was called from a callback running inside one of its own calls (resolver or progress); \
                 do the work after the call returns",
            ));
        }
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        self.owner.store(me, Ordering::SeqCst);
        Ok(Held { guard, owner: &self.owner })
    }

    /// Run `f` in one immediate (write) transaction, after stamping the queued writes.
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let want_events = self.hub.has_observers();
        let (out, events) = {
            let mut held = self.hold()?;
            let tx = held.conn()?.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let events = fold::fold(&tx, want_events)?;
            let out = f(&tx)?;
            tx.commit()?;
            (out, events)
        };
        self.hub.emit(&events);
        Ok(out)
    }

    /// Stamp the writes queued by the capture triggers, if any (a short write transaction).
    fn settle(&self) -> Result<()> {
        let want_events = self.hub.has_observers();
        let events = {
            let mut held = self.hold()?;
            let conn = held.conn()?;
            if !fold::pending(conn)? {
                return Ok(());
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let events = fold::fold(&tx, want_events)?;
            tx.commit()?;
            events
        };
        self.hub.emit(&events);
        Ok(())
    }

    /// Run `f` in one read transaction (a consistent snapshot), after stamping the queued writes.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        self.settle()?;
        let mut held = self.hold()?;
        let tx = held.conn()?.transaction_with_behavior(TransactionBehavior::Deferred)?;
        f(&tx)
    }

    /// [`read`](Self::read) of the sync state (export, status), after checking that synced
    /// tables still have their recorded shape (`SchemaMismatch` otherwise).
    pub(crate) fn read_synced<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        self.read(|c| {
            self.check_synced(c)?;
            f(c)
        })
    }

    /// [`schema::check_synced`], unless the schema is unchanged since it last passed: only a
    /// schema change (a rename, drop, key or type change, lost triggers) can make it fail.
    fn check_synced(&self, c: &Connection) -> Result<()> {
        let version: i64 = c.prepare_cached("PRAGMA schema_version")?.query_row([], |r| r.get(0))?;
        if self.checked_schema.load(Ordering::SeqCst) != version {
            schema::check_synced(c)?;
            self.checked_schema.store(version, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// This replica's site id.
    pub fn site_id(&self) -> Result<SiteId> {
        self.read(|c| meta::local_site(c))
    }

    /// Give this database a new random site id (after copying the file to another device).
    /// Changes already made keep the old id; new ones carry the new id. It is also the way back
    /// for a replica whose clock once ran ahead (peers quarantine or reject its changes): with
    /// the wall clock corrected, the reset rewinds the HLC and issues every change stamped
    /// beyond the allowed drift again, under the new id, so peers take them (spec/hlc.md §5).
    pub fn reset_site_id(&self) -> Result<SiteId> {
        self.set_site_id(SiteId::random())
    }

    /// Give this database a chosen site id (deterministic tests and golden vectors). The id
    /// must not be one this database has seen from another replica.
    pub fn set_site_id(&self, site: SiteId) -> Result<SiteId> {
        self.write(|c| {
            let current = meta::local_site(c)?;
            if current == site {
                return Ok(site);
            }
            if export::find_site(c, &site)?.is_some() {
                return Err(Error::invalid_argument(format!("site id {site} is already known to this database")));
            }
            meta::adopt_site(c, &site)?;
            // Unless the clock ran far ahead: then it is rewound and the future stamps re-issued.
            crate::recover::rewind_if_ahead(c, self.options.max_drift_ms)?;
            Ok(site)
        })
    }

    /// Fix the wall clock used for new stamps and drift checks (`None`: the system clock).
    /// For tests and reproducible golden vectors; it is stored in the database, so writes from
    /// other connections are stamped with it too. Writes made before the call keep the clock
    /// they were made under.
    pub fn set_manual_clock(&self, ms: Option<u64>) -> Result<()> {
        self.write(|c| meta::set_manual_clock(c, ms))
    }

    /// Start syncing an existing table: validate it, install capture and back-fill its rows.
    pub fn enable_sync(&self, table: &str, opts: EnableOptions) -> Result<()> {
        self.write(|c| {
            let info = schema::introspect(c, table)?;
            info.validate(opts.allow_autoincrement)?;
            let existing = meta::synced_tables(c)?;
            if let Some(t) = existing.get(table) {
                if t.strategy != opts.strategy {
                    c.execute("UPDATE _syncline_tables SET strategy = ?1 WHERE id = ?2", rusqlite::params![opts.strategy.as_str(), t.id])?;
                }
                if !capture::has_triggers(c, t.id)? {
                    // Dropped and created again: capture anew, and record what the table lost.
                    schema::check_columns(c, t.id, table)?;
                    let mut t = t.clone();
                    let stamp = shadow::local_stamp(c)?;
                    for col in evolve::added_columns(c, &t)? {
                        evolve::register_column(c, &mut t, &col)?;
                        evolve::log(c, &evolve::detected(&t, &col, stamp), "detected", "applied")?;
                    }
                    capture::install_triggers(c, &t)?;
                    shadow::reconcile(c, &t, stamp)?;
                    apply::release(c, table)?;
                }
                return Ok(());
            }
            c.execute("INSERT INTO _syncline_tables(name, strategy) VALUES (?1, ?2)", rusqlite::params![table, opts.strategy.as_str()])?;
            let id = c.last_insert_rowid();
            let mut ins =
                c.prepare("INSERT INTO _syncline_columns(tbl, is_pk, ord, name, affinity, decl_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
            for (i, col) in info.pk.iter().enumerate() {
                ins.execute(rusqlite::params![id, 1, i as i64, col.name, col.affinity, col.decl_type])?;
            }
            for (i, col) in info.cols.iter().enumerate() {
                ins.execute(rusqlite::params![id, 0, i as i64, col.name, col.affinity, col.decl_type])?;
            }
            let t = SyncedTable {
                id,
                name: table.to_owned(),
                strategy: opts.strategy,
                pk: info.pk.iter().map(|c| c.name.clone()).collect(),
                cols: info.cols.iter().map(|c| c.name.clone()).collect(),
            };
            let affinities: Vec<&str> = info.pk.iter().map(|c| c.affinity).collect();
            capture::install(c, &t, &affinities)?;
            // Rows already there are inserted now, under one stamp. An empty table takes no
            // stamp: one no row carries would sit in this replica's vector where no peer could
            // ever confirm holding it, and every delta for a peer would start below it.
            if !schema::is_empty(c, table)? {
                shadow::backfill(c, &t, shadow::local_stamp(c)?)?;
            }
            // Migrations received for this table before it was enabled here.
            if evolve::policy(c)? == evolve::MigrationPolicy::Apply {
                evolve::apply_held(c, Some(table))?;
            }
            // Rows received for it while it was not enabled here.
            apply::release(c, table)?;
            Ok(())
        })
    }

    /// Add a column to a synced table through Syncline: the `ALTER TABLE .. ADD COLUMN`, its
    /// capture and a migration record stamped with the clock, in one transaction. The
    /// migration travels in bundles; peers apply it before the rows that use the column (or
    /// hold it, see [`set_migration_policy`](Self::set_migration_policy)). `decl_type` is a
    /// plain SQLite type name (`INTEGER`, `TEXT`, `VARCHAR(20)`), `default` the value rows
    /// that never set the column hold.
    pub fn add_column(&self, table: &str, column: &str, decl_type: &str, default: Value) -> Result<()> {
        self.write(|c| evolve::add_column(c, table, column, decl_type, default).map(|_| ()))
    }

    /// What imports do with the migrations they receive (stored in the file; default `Apply`).
    pub fn set_migration_policy(&self, policy: evolve::MigrationPolicy) -> Result<()> {
        self.write(|c| evolve::set_policy(c, policy))
    }

    /// The migration policy in force.
    pub fn migration_policy(&self) -> Result<evolve::MigrationPolicy> {
        self.read(|c| evolve::policy(c))
    }

    /// Apply every held migration to its (synced) table now, whatever the policy. Returns how
    /// many changed a table.
    pub fn apply_held_migrations(&self) -> Result<u64> {
        self.write(|c| evolve::apply_held(c, None))
    }

    /// Stop syncing a table: capture is removed with its sync state; the data stays.
    pub fn disable_sync(&self, table: &str) -> Result<()> {
        self.write(|c| {
            let t = synced(c, table)?;
            capture::uninstall(c, &t)?;
            c.execute("DELETE FROM _syncline_columns WHERE tbl = ?1", [t.id])?;
            c.execute("DELETE FROM _syncline_tables WHERE id = ?1", [t.id])?;
            Ok(())
        })
    }

    /// Change a synced table's conflict strategy.
    pub fn set_strategy(&self, table: &str, strategy: Strategy) -> Result<()> {
        self.write(|c| {
            let t = synced(c, table)?;
            c.execute("UPDATE _syncline_tables SET strategy = ?1 WHERE id = ?2", rusqlite::params![strategy.as_str(), t.id])?;
            Ok(())
        })
    }

    /// Register the resolver for a table using the `custom` strategy (kept in memory only:
    /// register it again after each open).
    pub fn set_resolver(&self, table: &str, resolver: Arc<dyn Resolver>) {
        self.resolvers.write().unwrap().insert(table.to_owned(), resolver);
    }

    /// Remove a table's resolver.
    pub fn clear_resolver(&self, table: &str) {
        self.resolvers.write().unwrap().remove(table);
    }

    /// A bundle of what `peer` lacks (everything for `None` or an unknown peer).
    pub fn generate_bundle(&self, peer: Option<&SiteId>) -> Result<Vec<u8>> {
        Ok(self.generate_bundle_with(ExportOptions { peer, compress: false }, &mut |_, _| {})?.0)
    }

    /// [`generate_bundle`](Self::generate_bundle) with options and progress.
    pub fn generate_bundle_with(&self, opts: ExportOptions<'_>, progress: Progress<'_>) -> Result<(Vec<u8>, BundleStats)> {
        self.read_synced(|c| export::generate(c, opts.peer, opts.compress, progress))
    }

    /// Write the bundle for `peer` to a file.
    pub fn write_bundle(&self, peer: Option<&SiteId>, path: impl AsRef<Path>) -> Result<BundleStats> {
        self.write_bundle_with(ExportOptions { peer, compress: false }, path, &mut |_, _| {})
    }

    /// Write a bundle to a file (through a temporary sibling and a rename, so no reader ever
    /// sees half a bundle), with options and progress.
    /// The bundle is never held in memory: its rows spill to a temporary table past a few
    /// megabytes and its body is encoded into a temporary file.
    pub fn write_bundle_with(&self, opts: ExportOptions<'_>, path: impl AsRef<Path>, progress: Progress<'_>) -> Result<BundleStats> {
        self.read_synced(|c| export::write_file(c, opts.peer, opts.compress, progress, path.as_ref()))
    }

    /// Import a bundle: one transaction, idempotent; on error nothing changes.
    pub fn import_bundle(&self, bytes: &[u8]) -> Result<ImportReport> {
        self.import_bundle_with(bytes, &mut |_, _| {})
    }

    /// Import a bundle file.
    pub fn import_bundle_file(&self, path: impl AsRef<Path>) -> Result<ImportReport> {
        self.import_bundle_file_with(path, &mut |_, _| {})
    }

    /// [`import_bundle_file`](Self::import_bundle_file) with progress (rows done, rows total).
    /// The file is never held in memory: it is checked in a first pass and streamed in a
    /// second, one row at a time, in one transaction.
    pub fn import_bundle_file_with(&self, path: impl AsRef<Path>, progress: Progress<'_>) -> Result<ImportReport> {
        self.refuse_if_closed()?;
        self.import_decoded(crate::bundle::decode_file(path.as_ref(), crate::bundle::Limits::file())?, progress)
    }

    /// [`import_bundle`](Self::import_bundle) with progress (rows done, rows total).
    pub fn import_bundle_with(&self, bytes: &[u8], progress: Progress<'_>) -> Result<ImportReport> {
        self.refuse_if_closed()?;
        self.import_decoded(crate::bundle::decode(bytes)?, progress)
    }

    /// `Closed` before any work (an import decodes its bundle before it takes the connection).
    fn refuse_if_closed(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::new(ErrorKind::Closed, "the engine is closed"));
        }
        Ok(())
    }

    fn import_decoded(&self, decoded: crate::bundle::Decoded<'_>, progress: Progress<'_>) -> Result<ImportReport> {
        Ok(self.import_events(decoded, progress, self.hub.has_observers())?.0)
    }

    /// [`import_bundle`](Self::import_bundle), also returning the rows it changed (the
    /// PostgreSQL backend's row copy rewrites just those).
    #[cfg(feature = "postgres")]
    pub(crate) fn import_bundle_changes(&self, bytes: &[u8]) -> Result<(ImportReport, Vec<crate::events::Change>)> {
        self.refuse_if_closed()?;
        let (report, events) = self.import_events(crate::bundle::decode(bytes)?, &mut |_, _| {}, true)?;
        let changes = events.into_iter().filter_map(|e| if let Event::RemoteChange(c) = e { Some(c) } else { None });
        Ok((report, changes.collect()))
    }

    /// The import, its report and (if `want_events`) its events, after they were delivered.
    fn import_events(
        &self,
        decoded: crate::bundle::Decoded<'_>,
        progress: Progress<'_>,
        want_events: bool,
    ) -> Result<(ImportReport, Vec<Event>)> {
        let resolvers = self.resolvers.read().unwrap().clone();
        let (report, events) = {
            let mut held = self.hold()?;
            let ctx = ImportContext { max_drift_ms: self.options.max_drift_ms, resolvers: &resolvers, progress, want_events };
            self.check_synced(held.conn()?)?;
            apply::import(held.conn()?, decoded, ctx)?
        };
        self.hub.emit(&events);
        Ok((report, events))
    }

    /// Open conflicts (manual tables), oldest first.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.read(|c| conflict::list(c, false))
    }

    /// Every stored conflict, resolved ones included.
    pub fn all_conflicts(&self) -> Result<Vec<Conflict>> {
        self.read(|c| conflict::list(c, true))
    }

    /// Resolve a stored conflict. The outcome is written as a new local change with a new
    /// stamp, so every replica converges on it after the next exchange.
    pub fn resolve(&self, id: i64, resolution: Resolution) -> Result<()> {
        let event = self.write(|c| {
            let conflict = conflict::get_open(c, id)?;
            let t = synced(c, &conflict.table)?;
            let (value, how) = match resolution {
                Resolution::Local => (conflict.local.value.clone(), "local"),
                Resolution::Remote => (conflict.remote.value.clone(), "remote"),
                Resolution::Value(v) => (v, "value"),
            };
            write_local_cell(c, &t, &conflict.pk, &conflict.column, &value)?;
            conflict::mark_resolved(c, &conflict, how)?;
            Ok(Event::LocalChange(crate::events::Change {
                table: t.name.clone(),
                pk: conflict.pk.clone(),
                columns: vec![conflict.column.clone()],
                deleted: false,
            }))
        })?;
        self.hub.emit(&[event]);
        Ok(())
    }

    /// Subscribe to events; the subscription ends when the handle is dropped or closed.
    pub fn subscribe(&self, observer: Arc<dyn Observer>) -> Result<Subscription> {
        self.hold()?.conn()?;
        let interval = Duration::from_millis(self.options.watch_interval_ms.max(1));
        let busy = Duration::from_millis(self.options.busy_timeout_ms);
        Ok(self.hub.add(observer, &self.path, interval, busy))
    }

    /// Site, tables, peers with pending changes, version vector, open conflicts.
    pub fn status(&self) -> Result<Status> {
        self.read_synced(|c| status::collect(c))
    }

    /// Purge the tombstones every known peer has acknowledged and that are older than `retain`
    /// (spec/merge-rules.md §8), then vacuum the file and truncate its WAL so it shrinks. With
    /// no peer known nothing is purged. Afterwards a sender that has not seen a purged delete is
    /// refused with `NeedsSnapshot`.
    pub fn compact(&self, retain: Duration) -> Result<crate::CompactReport> {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        let bytes_before = size(&self.path) + size(&wal);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let retain_ms = u64::try_from(retain.as_millis()).unwrap_or(u64::MAX);
        let purged = self.write(|tx| crate::compact::purge(tx, retain_ms, now))?;
        {
            let mut held = self.hold()?;
            let conn = held.conn()?;
            conn.execute_batch("VACUUM")?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(crate::CompactReport { purged, bytes_before, bytes_after: size(&self.path) + size(&wal) })
    }

    /// Write a snapshot for a new device to `path` (a new file): the synced tables and sync
    /// state, without this replica's site id. A device copies it into place and opens it;
    /// the first open gives it a site id of its own, and the first exchange with this replica
    /// carries only what changed since the snapshot.
    pub fn snapshot(&self, path: impl AsRef<Path>) -> Result<()> {
        self.settle()?;
        let mut held = self.hold()?;
        crate::snapshot::write(held.conn()?, path.as_ref())
    }

    /// Record that `peer` holds everything this replica holds now, so the next bundle for it
    /// carries only what changes after this call (a server node's shared log, `net::PgHub`).
    #[cfg(feature = "postgres")]
    pub(crate) fn peer_holds_all(&self, peer: &SiteId) -> Result<()> {
        self.write(|tx| {
            let ord = meta::site_ord(tx, peer)?;
            let vv = meta::local_vv(tx)?;
            meta::raise_peer_vv(tx, ord, &vv)
        })
    }

    /// Run one SQL statement on the engine's connection (writes are captured like any other).
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        let mut held = self.hold()?;
        Ok(held.conn()?.execute(sql, rusqlite::params_from_iter(params))?)
    }

    /// Run several SQL statements (no parameters), e.g. a schema.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        let mut held = self.hold()?;
        Ok(held.conn()?.execute_batch(sql)?)
    }

    /// Run a query and return every row.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<QueryRows> {
        let mut held = self.hold()?;
        let conn = held.conn()?;
        let mut stmt = conn.prepare(sql)?;
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let n = columns.len();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push((0..n).map(|i| r.get(i)).collect::<rusqlite::Result<Vec<Value>>>()?);
        }
        Ok(QueryRows { columns, rows: out })
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.conn.lock().map(|c| c.is_none()).unwrap_or(true)
    }

    /// Stop `work` when the engine closes.
    #[cfg_attr(not(feature = "net"), allow(dead_code))]
    pub(crate) fn stop_on_close(&self, work: Weak<dyn Stop>) {
        let mut all = self.stoppers.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(work);
    }

    /// Close the connection, stop the watcher and every background sync started on this
    /// engine. Later calls fail with `Closed`.
    pub fn close(&self) -> Result<()> {
        let stoppers = std::mem::take(&mut *self.stoppers.lock().unwrap_or_else(|p| p.into_inner()));
        for work in stoppers.iter().filter_map(Weak::upgrade) {
            work.stop();
        }
        self.hub.shutdown();
        let mut held = self.hold()?;
        if let Some(conn) = held.guard.take() {
            conn.close().map_err(|(_, e)| Error::from(e))?;
        }
        Ok(())
    }
}

impl Drop for SyncEngine {
    fn drop(&mut self) {
        self.hub.shutdown();
    }
}

/// A synced table by name, or `UnknownTable`.
fn synced(c: &Connection, table: &str) -> Result<SyncedTable> {
    meta::synced_tables(c)?
        .remove(table)
        .ok_or_else(|| Error::new(ErrorKind::UnknownTable, format!("table {table:?} is not enabled for sync")))
}

/// Write one cell as a new local change with a fresh stamp (even if the value is unchanged).
/// Runs in a write transaction whose queued writes were already stamped, so what the capture
/// triggers queue here is this write alone, and it is stamped directly instead.
fn write_local_cell(c: &Connection, t: &SyncedTable, pk: &[Value], column: &str, value: &Value) -> Result<()> {
    let col =
        t.col_index(column).ok_or_else(|| Error::new(ErrorKind::UnknownColumn, format!("table {:?} has no column {column:?}", t.name)))?;
    let sql = format!("UPDATE {} SET {} = ? WHERE {}", quote_ident(&t.name), quote_ident(column), apply::user_pk_where(t));
    let params = std::iter::once(value).chain(pk.iter());
    let n = c.execute(&sql, rusqlite::params_from_iter(params))?;
    if n == 0 {
        return Err(Error::new(ErrorKind::NotFound, format!("the row {pk:?} of table {:?} no longer exists", t.name)));
    }
    shadow::Statements::new(t).stamp(c, t, shadow::LocalOp::Update(col), pk, shadow::local_stamp(c)?, None)?;
    fold::discard(c)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cached statements stay compiled across syncs: binding a new value never recompiles one
    /// (the query planner stability guarantee), nor does an import (small imports leave the
    /// trigger switch alone). Without both, every sync compiled most of its SQL again.
    #[test]
    fn syncs_do_not_recompile_cached_statements() {
        let dir = tempfile::TempDir::new().unwrap();
        let open = |name: &str| {
            let e = SyncEngine::open(dir.path().join(name), Options::default()).unwrap();
            e.execute_batch("CREATE TABLE t(id TEXT PRIMARY KEY, v TEXT)").unwrap();
            e.enable_sync("t", EnableOptions::default()).unwrap();
            e
        };
        let (a, b) = (open("a.db"), open("b.db"));
        let (sa, sb) = (a.site_id().unwrap(), b.site_id().unwrap());
        let recompiled = |e: &SyncEngine| {
            let mut held = e.hold().unwrap();
            let stmt = held.conn().unwrap().prepare_cached(crate::meta::COLUMNS_OF_TABLE).unwrap();
            stmt.get_status(rusqlite::StatementStatus::RePrepare)
        };
        let mut counts = Vec::new();
        for i in 0..4 {
            a.execute("INSERT INTO t VALUES (?1, 'x')", &[Value::Text(format!("k{i}"))]).unwrap();
            b.import_bundle(&a.generate_bundle(Some(&sb)).unwrap()).unwrap();
            a.import_bundle(&b.generate_bundle(Some(&sa)).unwrap()).unwrap();
            counts.push((recompiled(&a), recompiled(&b)));
        }
        assert!(counts.windows(2).all(|w| w[0] == w[1]), "recompiled at each sync: {counts:?}");
    }
}
