//! UniFFI bindings of Syncline for Swift and Kotlin.
//!
//! This crate only converts types, maps errors and adapts callbacks: every behaviour lives in
//! the `syncline` core. Site ids cross the boundary as 32 hexadecimal digits (parsed by the
//! core), values as the [`Value`] enum, errors as the one [`SynclineError`] enum (one variant per
//! core [`syncline::ErrorKind`], converted in exactly one `From` impl below).
//!
//! SQLite (core feature `host-sqlite`): this library holds no SQLite. It runs inside the SQLite
//! library the application's own driver uses, bound once per process ([`bind_sqlite_library`],
//! or the driver loads this very file as a SQLite extension, entry point `sqlite3_syncline_init`,
//! re-exported below). [`SyncEngine::open_bound`] fails with `SqliteLibrary` before any binding;
//! the Swift and Kotlin layers apply their platform's default first (`SyncEngine.open`).
//!
//! Network sync (core feature `net`, spec/sync-protocol.md): `SyncEngine::sync` is exported as an
//! async method (Swift `async`, Kotlin `suspend`) that runs the core's blocking pass on a thread of
//! its own and completes when it ends ([`offload`]: no async runtime in this crate, and the core's
//! own tokio runtime is never entered from another one). `start_sync` returns at once with a
//! [`SyncHandle`] whose background loop runs on the core's thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

uniffi::setup_scaffolding!();

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Every Syncline error: one variant per stable core error kind, each with the core's message.
/// Kotlin: `SynclineException.<Kind>` (the text is the field `reason`, because Kotlin's
/// `Throwable` already owns `message`); Swift: `SynclineError.<kind>(message:)`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Error)]
pub enum SynclineError {
    InvalidBundle {
        message: String,
    },
    SchemaMismatch {
        message: String,
    },
    UnknownTable {
        message: String,
    },
    UnknownColumn {
        message: String,
    },
    ClockDrift {
        message: String,
    },
    SiteIdClash {
        message: String,
    },
    Resolver {
        message: String,
    },
    NotFound {
        message: String,
    },
    InvalidArgument {
        message: String,
    },
    Reentrant {
        message: String,
    },
    Closed {
        message: String,
    },
    Io {
        message: String,
    },
    Sqlite {
        message: String,
    },
    Network {
        message: String,
    },
    Auth {
        message: String,
    },
    SqliteLibrary {
        message: String,
    },
    Corrupt {
        message: String,
    },
    NeedsSnapshot {
        message: String,
    },
    /// A kind added to the core after this binding was built (the core's kinds are
    /// `#[non_exhaustive]`); `message` starts with the kind's stable code.
    Other {
        message: String,
    },
}

impl SynclineError {
    /// The stable code of the kind (the core's `ErrorKind::code()`, e.g. `"InvalidBundle"`).
    pub fn code(&self) -> &'static str {
        match self {
            SynclineError::InvalidBundle { .. } => "InvalidBundle",
            SynclineError::SchemaMismatch { .. } => "SchemaMismatch",
            SynclineError::UnknownTable { .. } => "UnknownTable",
            SynclineError::UnknownColumn { .. } => "UnknownColumn",
            SynclineError::ClockDrift { .. } => "ClockDrift",
            SynclineError::SiteIdClash { .. } => "SiteIdClash",
            SynclineError::Resolver { .. } => "Resolver",
            SynclineError::NotFound { .. } => "NotFound",
            SynclineError::InvalidArgument { .. } => "InvalidArgument",
            SynclineError::Reentrant { .. } => "Reentrant",
            SynclineError::Closed { .. } => "Closed",
            SynclineError::Io { .. } => "Io",
            SynclineError::Sqlite { .. } => "Sqlite",
            SynclineError::Network { .. } => "Network",
            SynclineError::Auth { .. } => "Auth",
            SynclineError::SqliteLibrary { .. } => "SqliteLibrary",
            SynclineError::Corrupt { .. } => "Corrupt",
            SynclineError::NeedsSnapshot { .. } => "NeedsSnapshot",
            SynclineError::Other { .. } => "Other",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            SynclineError::InvalidBundle { message }
            | SynclineError::SchemaMismatch { message }
            | SynclineError::UnknownTable { message }
            | SynclineError::UnknownColumn { message }
            | SynclineError::ClockDrift { message }
            | SynclineError::SiteIdClash { message }
            | SynclineError::Resolver { message }
            | SynclineError::NotFound { message }
            | SynclineError::InvalidArgument { message }
            | SynclineError::Reentrant { message }
            | SynclineError::Closed { message }
            | SynclineError::Io { message }
            | SynclineError::Sqlite { message }
            | SynclineError::Network { message }
            | SynclineError::Auth { message }
            | SynclineError::SqliteLibrary { message }
            | SynclineError::Corrupt { message }
            | SynclineError::NeedsSnapshot { message }
            | SynclineError::Other { message } => message,
        }
    }
}

impl std::fmt::Display for SynclineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for SynclineError {}

/// The one conversion from the core's error.
impl From<syncline::Error> for SynclineError {
    fn from(e: syncline::Error) -> Self {
        use syncline::ErrorKind as K;
        let message = e.message().to_owned();
        match e.kind() {
            K::InvalidBundle => SynclineError::InvalidBundle { message },
            K::SchemaMismatch => SynclineError::SchemaMismatch { message },
            K::UnknownTable => SynclineError::UnknownTable { message },
            K::UnknownColumn => SynclineError::UnknownColumn { message },
            K::ClockDrift => SynclineError::ClockDrift { message },
            K::SiteIdClash => SynclineError::SiteIdClash { message },
            K::Resolver => SynclineError::Resolver { message },
            K::NotFound => SynclineError::NotFound { message },
            K::InvalidArgument => SynclineError::InvalidArgument { message },
            K::Reentrant => SynclineError::Reentrant { message },
            K::Closed => SynclineError::Closed { message },
            K::Io => SynclineError::Io { message },
            K::Sqlite => SynclineError::Sqlite { message },
            K::Network => SynclineError::Network { message },
            K::Auth => SynclineError::Auth { message },
            K::SqliteLibrary => SynclineError::SqliteLibrary { message },
            K::Corrupt => SynclineError::Corrupt { message },
            K::NeedsSnapshot => SynclineError::NeedsSnapshot { message },
            other => SynclineError::Other { message: format!("{}: {message}", other.code()) },
        }
    }
}

/// A foreign callback threw something other than a `SynclineError` (Swift: any other `Error`;
/// Kotlin: any other `Throwable`). It is reported as a callback failure, kind `Resolver` (the
/// foreign callbacks are resolvers, observers, whose failures are ignored, and progress
/// listeners).
impl From<uniffi::UnexpectedUniFFICallbackError> for SynclineError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        SynclineError::Resolver { message: format!("the callback threw: {}", e.reason) }
    }
}

type Result<T, E = SynclineError> = std::result::Result<T, E>;

fn site(hex: &str) -> Result<syncline::SiteId> {
    Ok(hex.parse::<syncline::SiteId>()?)
}

// ---------------------------------------------------------------------------------------------
// Values and records
// ---------------------------------------------------------------------------------------------

/// One SQLite value (64-bit integers stay exact).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<syncline::Value> for Value {
    fn from(v: syncline::Value) -> Self {
        match v {
            syncline::Value::Null => Value::Null,
            syncline::Value::Integer(i) => Value::Integer(i),
            syncline::Value::Real(r) => Value::Real(r),
            syncline::Value::Text(t) => Value::Text(t),
            syncline::Value::Blob(b) => Value::Blob(b),
        }
    }
}

impl From<Value> for syncline::Value {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => syncline::Value::Null,
            Value::Integer(i) => syncline::Value::Integer(i),
            Value::Real(r) => syncline::Value::Real(r),
            Value::Text(t) => syncline::Value::Text(t),
            Value::Blob(b) => syncline::Value::Blob(b),
        }
    }
}

fn values_in(v: Vec<Value>) -> Vec<syncline::Value> {
    v.into_iter().map(Into::into).collect()
}

fn values_out(v: Vec<syncline::Value>) -> Vec<Value> {
    v.into_iter().map(Into::into).collect()
}

/// How a table's conflicts are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Strategy {
    Lww,
    Manual,
    PreferLocal,
    PreferRemote,
    Custom,
}

impl From<syncline::Strategy> for Strategy {
    fn from(s: syncline::Strategy) -> Self {
        match s {
            syncline::Strategy::Lww => Strategy::Lww,
            syncline::Strategy::Manual => Strategy::Manual,
            syncline::Strategy::PreferLocal => Strategy::PreferLocal,
            syncline::Strategy::PreferRemote => Strategy::PreferRemote,
            syncline::Strategy::Custom => Strategy::Custom,
        }
    }
}

impl From<Strategy> for syncline::Strategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::Lww => syncline::Strategy::Lww,
            Strategy::Manual => syncline::Strategy::Manual,
            Strategy::PreferLocal => syncline::Strategy::PreferLocal,
            Strategy::PreferRemote => syncline::Strategy::PreferRemote,
            Strategy::Custom => syncline::Strategy::Custom,
        }
    }
}

/// Engine options. The defaults are the core's: [`default_engine_options`] (Swift
/// `defaultEngineOptions()`, Kotlin `defaultEngineOptions().copy(...)`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EngineOptions {
    /// How far (ms) a remote stamp may lie ahead of the local clock before its bundle is refused.
    pub max_drift_ms: u64,
    /// How long (ms) to wait for another connection's write lock.
    pub busy_timeout_ms: u64,
    /// How often (ms) the watcher looks for local writes while someone is subscribed.
    pub watch_interval_ms: u64,
    /// Create the database file if it does not exist; with false, opening a missing file fails
    /// with `NotFound` and creates nothing.
    pub create: bool,
}

impl From<EngineOptions> for syncline::Options {
    fn from(o: EngineOptions) -> Self {
        syncline::Options {
            max_drift_ms: o.max_drift_ms,
            busy_timeout_ms: o.busy_timeout_ms,
            watch_interval_ms: o.watch_interval_ms,
            create: o.create,
        }
    }
}

impl From<syncline::Options> for EngineOptions {
    fn from(o: syncline::Options) -> Self {
        EngineOptions {
            max_drift_ms: o.max_drift_ms,
            busy_timeout_ms: o.busy_timeout_ms,
            watch_interval_ms: o.watch_interval_ms,
            create: o.create,
        }
    }
}

/// The core's default engine options.
#[uniffi::export]
pub fn default_engine_options() -> EngineOptions {
    syncline::Options::default().into()
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ImportReport {
    /// The sender's site id (hex), if the bundle names one.
    pub sender: Option<String>,
    pub rows: u64,
    pub applied: u64,
    pub already_known: u64,
    pub conflicts: u64,
    /// Changes stamped too far ahead of the local clock, kept in `_syncline_quarantine` and
    /// applied by the first import after the clock has caught up.
    pub quarantined: u64,
    /// Changes quarantined by earlier imports and applied by this one.
    pub released: u64,
    pub rejected: u64,
    /// Migrations the bundle carried that changed a local table (spec/schema-evolution.md).
    pub migrated: u64,
    /// Changes for a column or table this replica's schema lacks: kept with their stamps,
    /// relayed to peers, and applied once the schema has them.
    pub held: u64,
}

impl From<syncline::ImportReport> for ImportReport {
    fn from(r: syncline::ImportReport) -> Self {
        ImportReport {
            sender: r.sender.map(|s| s.to_hex()),
            rows: r.rows,
            applied: r.applied,
            already_known: r.already_known,
            conflicts: r.conflicts,
            quarantined: r.quarantined,
            released: r.released,
            rejected: r.rejected,
            migrated: r.migrated,
            held: r.held,
        }
    }
}

/// What imports do with the migrations they receive (spec/schema-evolution.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum MigrationPolicy {
    /// Apply additive migrations to the local table as they arrive (the default).
    Apply,
    /// Keep them (listed in `status` as held, relayed to peers) until the app applies them,
    /// by running the ALTER itself or calling `apply_held_migrations`.
    Hold,
}

impl From<syncline::MigrationPolicy> for MigrationPolicy {
    fn from(p: syncline::MigrationPolicy) -> Self {
        match p {
            syncline::MigrationPolicy::Apply => MigrationPolicy::Apply,
            syncline::MigrationPolicy::Hold => MigrationPolicy::Hold,
        }
    }
}

impl From<MigrationPolicy> for syncline::MigrationPolicy {
    fn from(p: MigrationPolicy) -> Self {
        match p {
            MigrationPolicy::Apply => syncline::MigrationPolicy::Apply,
            MigrationPolicy::Hold => syncline::MigrationPolicy::Hold,
        }
    }
}

/// One entry of the schema log, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SchemaChange {
    pub table: String,
    pub column: String,
    /// The declared type, upper-cased.
    pub decl_type: String,
    /// `detected`, `local` or `remote`.
    pub source: String,
    /// `applied` or `held`.
    pub state: String,
    /// The stamp the change was recorded with.
    pub hlc: u64,
}

impl From<syncline::SchemaChange> for SchemaChange {
    fn from(c: syncline::SchemaChange) -> Self {
        SchemaChange { table: c.table, column: c.column, decl_type: c.decl_type, source: c.source, state: c.state, hlc: c.hlc }
    }
}

/// What `compact` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct CompactReport {
    /// Tombstones purged.
    pub purged: u64,
    /// File plus WAL size before and after, in bytes.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl From<syncline::CompactReport> for CompactReport {
    fn from(r: syncline::CompactReport) -> Self {
        CompactReport { purged: r.purged, bytes_before: r.bytes_before, bytes_after: r.bytes_after }
    }
}

/// Sizes of a written bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct BundleStats {
    pub rows: u64,
    pub changes: u64,
    pub bytes: u64,
}

impl From<syncline::BundleStats> for BundleStats {
    fn from(s: syncline::BundleStats) -> Self {
        BundleStats { rows: s.rows, changes: s.changes, bytes: s.bytes }
    }
}

/// One side of a conflict.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CellVersion {
    pub value: Value,
    pub hlc: u64,
    /// Site id (hex) of the replica that wrote it.
    pub site: String,
}

impl From<syncline::CellVersion> for CellVersion {
    fn from(c: syncline::CellVersion) -> Self {
        CellVersion { value: c.value.into(), hlc: c.hlc, site: c.site.to_hex() }
    }
}

/// A conflict (the same cell changed on two replicas since they last synced).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Conflict {
    /// Id of the stored record (`manual` tables); none for conflicts a strategy settled at once.
    pub id: Option<i64>,
    pub table: String,
    pub pk: Vec<Value>,
    pub column: String,
    pub local: CellVersion,
    pub remote: CellVersion,
    pub strategy: Strategy,
    /// How it ended: none while open; `local`, `remote`, `value`, `superseded` or a strategy name.
    pub resolution: Option<String>,
}

impl From<syncline::Conflict> for Conflict {
    fn from(c: syncline::Conflict) -> Self {
        Conflict {
            id: c.id,
            table: c.table,
            pk: values_out(c.pk),
            column: c.column,
            local: c.local.into(),
            remote: c.remote.into(),
            strategy: c.strategy.into(),
            resolution: c.resolution,
        }
    }
}

/// What a custom resolver is shown.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConflictInput {
    pub table: String,
    pub pk: Vec<Value>,
    pub column: String,
    pub local: CellVersion,
    pub remote: CellVersion,
}

impl From<&syncline::ConflictInput> for ConflictInput {
    fn from(c: &syncline::ConflictInput) -> Self {
        ConflictInput {
            table: c.table.clone(),
            pk: values_out(c.pk.clone()),
            column: c.column.clone(),
            local: c.local.clone().into(),
            remote: c.remote.clone().into(),
        }
    }
}

/// A decision on a conflict (Kotlin: `Resolution.UseValue` for `Value`).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum Resolution {
    Local,
    Remote,
    Value(Value),
}

impl From<Resolution> for syncline::Resolution {
    fn from(r: Resolution) -> Self {
        match r {
            Resolution::Local => syncline::Resolution::Local,
            Resolution::Remote => syncline::Resolution::Remote,
            Resolution::Value(v) => syncline::Resolution::Value(v.into()),
        }
    }
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum EventKind {
    /// A row changed by a local write (any connection, any process).
    Local,
    /// A row changed by an imported bundle.
    Remote,
    /// A conflict was detected (recorded for `manual` tables, settled otherwise).
    Conflict,
}

/// What subscribers are told. Every field is the core's decision (`syncline::Event::kind`,
/// `table`, `pk`, `columns`, `deleted`, `conflict`), the same in every language.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Event {
    pub kind: EventKind,
    /// The table of the changed row or conflicting cell.
    pub table: String,
    /// The primary key of the changed row or conflicting cell.
    pub pk: Vec<Value>,
    /// The columns whose value changed (none for a delete), or the one conflicting column.
    pub columns: Vec<String>,
    /// Whether the row was deleted (never for a conflict).
    pub deleted: bool,
    /// The conflict, for a conflict event.
    pub conflict: Option<Conflict>,
}

impl From<syncline::Event> for Event {
    fn from(e: syncline::Event) -> Self {
        let kind = match &e {
            syncline::Event::LocalChange(_) => EventKind::Local,
            syncline::Event::RemoteChange(_) => EventKind::Remote,
            syncline::Event::Conflict(_) => EventKind::Conflict,
        };
        Event {
            kind,
            table: e.table().to_owned(),
            pk: values_out(e.pk().to_vec()),
            columns: e.columns().to_vec(),
            deleted: e.deleted(),
            conflict: e.conflict().cloned().map(Into::into),
        }
    }
}

/// One synced table.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TableStatus {
    pub name: String,
    pub strategy: Strategy,
    pub rows: u64,
}

/// One version vector entry: what is known of a site, up to which stamp.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VersionEntry {
    pub site_id: String,
    pub hlc: u64,
}

fn vv(v: Vec<(syncline::SiteId, u64)>) -> Vec<VersionEntry> {
    v.into_iter().map(|(s, h)| VersionEntry { site_id: s.to_hex(), hlc: h }).collect()
}

/// One peer this replica has received a bundle from.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PeerStatus {
    pub site_id: String,
    pub version_vector: Vec<VersionEntry>,
    pub pending: u64,
}

/// A snapshot of the engine's state.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Status {
    pub site_id: String,
    pub hlc: u64,
    pub tables: Vec<TableStatus>,
    pub peers: Vec<PeerStatus>,
    pub version_vector: Vec<VersionEntry>,
    pub unresolved_conflicts: u64,
    pub rejected: u64,
    /// Remote rows stamped too far ahead of the local clock, waiting in quarantine.
    pub quarantined: u64,
    /// Tombstones (deleted rows' sync state) kept, and how many of them every known peer has
    /// acknowledged (what `compact` with no retention would purge).
    pub tombstones: u64,
    pub purgeable: u64,
    /// Per origin site, the newest delete stamp compaction purged: a sender whose version
    /// vector does not cover it is refused with `NeedsSnapshot`.
    pub purge_horizon: Vec<VersionEntry>,
    /// The schema log: columns added through Syncline, detected, or received.
    pub schema_changes: Vec<SchemaChange>,
    /// Cells and rows kept for a column or table this replica's schema lacks.
    pub held_cells: u64,
    pub held_rows: u64,
}

impl From<syncline::Status> for Status {
    fn from(s: syncline::Status) -> Self {
        Status {
            site_id: s.site_id.to_hex(),
            hlc: s.hlc,
            tables: s.tables.into_iter().map(|t| TableStatus { name: t.name, strategy: t.strategy.into(), rows: t.rows }).collect(),
            peers: s
                .peers
                .into_iter()
                .map(|p| PeerStatus { site_id: p.site_id.to_hex(), version_vector: vv(p.version_vector), pending: p.pending })
                .collect(),
            version_vector: vv(s.version_vector),
            unresolved_conflicts: s.unresolved_conflicts,
            rejected: s.rejected,
            quarantined: s.quarantined,
            tombstones: s.tombstones,
            purgeable: s.purgeable,
            purge_horizon: vv(s.purge_horizon),
            schema_changes: s.schema_changes.into_iter().map(Into::into).collect(),
            held_cells: s.held_cells,
            held_rows: s.held_rows,
        }
    }
}

/// Rows returned by a query.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct QueryRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl From<syncline::QueryRows> for QueryRows {
    fn from(q: syncline::QueryRows) -> Self {
        QueryRows { columns: q.columns, rows: q.rows.into_iter().map(values_out).collect() }
    }
}

/// How the background sync loop runs (`start_sync`). The defaults are the core's:
/// [`default_sync_options`]. Zero durations and page sizes are refused (`InvalidArgument`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncOptions {
    /// Time (ms) between syncs while all is well.
    pub interval_ms: u64,
    /// The longest wait (ms) after repeated failures (exponential backoff with jitter).
    pub max_backoff_ms: u64,
    /// Keep a WebSocket to the server open and sync as soon as another client's push is
    /// announced or a local write happens.
    pub live: bool,
    /// Most rows per page in each direction (the server may cut pages smaller).
    pub page_rows: u64,
    /// Longest wait (ms) for one HTTP request.
    pub timeout_ms: u64,
}

impl From<SyncOptions> for syncline::net::SyncOptions {
    fn from(o: SyncOptions) -> Self {
        syncline::net::SyncOptions {
            interval: Duration::from_millis(o.interval_ms),
            max_backoff: Duration::from_millis(o.max_backoff_ms),
            live: o.live,
            page_rows: o.page_rows,
            timeout: Duration::from_millis(o.timeout_ms),
        }
    }
}

impl From<syncline::net::SyncOptions> for SyncOptions {
    fn from(o: syncline::net::SyncOptions) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        SyncOptions {
            interval_ms: ms(o.interval),
            max_backoff_ms: ms(o.max_backoff),
            live: o.live,
            page_rows: o.page_rows,
            timeout_ms: ms(o.timeout),
        }
    }
}

/// The core's default sync options.
#[uniffi::export]
pub fn default_sync_options() -> SyncOptions {
    syncline::net::SyncOptions::default().into()
}

/// What one sync pass did, counted in changes (row states and cells).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    /// Changes sent to the server.
    pub pushed: u64,
    /// Of those, changes that altered the server.
    pub server_applied: u64,
    /// Changes received from the server.
    pub pulled: u64,
    /// Of those, changes that altered this replica.
    pub applied: u64,
    /// Cells changed concurrently here and at the server.
    pub conflicts: u64,
    /// Received changes refused by a local constraint.
    pub rejected: u64,
    /// HTTP requests made (`/v1/info` included).
    pub round_trips: u32,
}

impl From<syncline::net::SyncReport> for SyncReport {
    fn from(r: syncline::net::SyncReport) -> Self {
        SyncReport {
            pushed: r.pushed,
            server_applied: r.server_applied,
            pulled: r.pulled,
            applied: r.applied,
            conflicts: r.conflicts,
            rejected: r.rejected,
            round_trips: r.round_trips,
        }
    }
}

/// What the background sync loop has done so far.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    /// False once the loop was stopped.
    pub running: bool,
    /// Completed sync passes.
    pub syncs: u64,
    /// Failures since the last success.
    pub failures: u32,
    /// When the last pass succeeded (Swift `Date`, Kotlin `java.time.Instant`).
    pub last_success: Option<SystemTime>,
    /// The error of the last pass, if it failed (e.g. `Network` while the server is down).
    pub last_error: Option<SynclineError>,
    pub last_report: Option<SyncReport>,
    /// Local changes the server is not yet known to hold.
    pub pending: u64,
}

impl From<syncline::net::SyncStatus> for SyncStatus {
    fn from(s: syncline::net::SyncStatus) -> Self {
        SyncStatus {
            running: s.running,
            syncs: s.syncs,
            failures: s.failures,
            last_success: s.last_success,
            last_error: s.last_error.map(Into::into),
            last_report: s.last_report.map(Into::into),
            pending: s.pending,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Callbacks implemented in Swift / Kotlin
// ---------------------------------------------------------------------------------------------

/// A custom conflict resolver (tables with the `Custom` strategy). It must be deterministic and
/// symmetric in (local, remote), or replicas diverge. It runs inside the import transaction and
/// must not call the engine. Throwing aborts the import with nothing applied (`Resolver` error).
#[uniffi::export(with_foreign)]
pub trait ConflictResolver: Send + Sync {
    fn resolve(&self, conflict: ConflictInput) -> Result<Resolution>;
}

/// Receives events, on the engine's threads. Errors it throws are ignored.
#[uniffi::export(with_foreign)]
pub trait EventObserver: Send + Sync {
    fn on_event(&self, event: Event) -> Result<()>;
}

/// Receives the progress of an export or import: `done` rows of `total`, on the thread that
/// called the engine, every few thousand rows and once at the end (`done == total`); of a sync
/// pass (`sync`: changes pulled, total 0) or a snapshot download (`cloneSnapshot`: bytes). The core
/// cannot stop a call midway: once it throws it is not called again, and the call throws that
/// error when it is done (an import is applied by then; importing the bundle again is
/// harmless). It must not call the engine.
#[uniffi::export(with_foreign)]
pub trait ProgressListener: Send + Sync {
    fn on_progress(&self, done: u64, total: u64) -> Result<()>;
}

/// A listener (or none) as the core's progress closure; keeps the first error it throws.
struct ProgressAdapter {
    listener: Option<Arc<dyn ProgressListener>>,
    thrown: Option<SynclineError>,
}

impl ProgressAdapter {
    fn new(listener: Option<Arc<dyn ProgressListener>>) -> ProgressAdapter {
        ProgressAdapter { listener, thrown: None }
    }

    fn call(&mut self, done: u64, total: u64) {
        if let (Some(l), None) = (&self.listener, &self.thrown) {
            self.thrown = l.on_progress(done, total).err();
        }
    }

    /// The call's result, unless the listener threw: then its error.
    fn finish<T>(self, result: syncline::Result<T>) -> Result<T> {
        match self.thrown {
            Some(e) => Err(e),
            None => Ok(result?),
        }
    }
}

struct ResolverAdapter(Arc<dyn ConflictResolver>);

impl syncline::Resolver for ResolverAdapter {
    fn resolve(&self, conflict: &syncline::ConflictInput) -> std::result::Result<syncline::Resolution, String> {
        self.0.resolve(conflict.into()).map(Into::into).map_err(|e| e.to_string())
    }
}

struct ObserverAdapter(Arc<dyn EventObserver>);

impl syncline::Observer for ObserverAdapter {
    fn on_event(&self, event: &syncline::Event) {
        let _ = self.0.on_event(event.clone().into());
    }
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

/// A live subscription; `close()` (Kotlin: `cancel()`, or `close()`/`use {}` which also frees
/// it) or dropping it unsubscribes.
#[derive(uniffi::Object)]
pub struct Subscription {
    inner: syncline::Subscription,
}

#[uniffi::export]
impl Subscription {
    pub fn close(&self) {
        self.inner.close()
    }

    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

/// A running background sync (`start_sync`). `stop()` (or freeing the handle: Kotlin
/// `close()`/`use {}`, Swift releasing it) finishes the pass in progress, then ends the loop.
#[derive(uniffi::Object)]
pub struct SyncHandle {
    inner: syncline::net::SyncHandle,
}

#[uniffi::export]
impl SyncHandle {
    /// The loop's progress and the number of local changes the server still lacks.
    pub fn status(&self) -> Result<SyncStatus> {
        Ok(self.inner.status()?.into())
    }

    /// Whether the loop still runs: false once it was stopped or its engine was closed (then
    /// `status()` fails with `Closed`).
    pub fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    /// Sync now instead of at the end of the current wait.
    pub fn sync_now(&self) {
        self.inner.sync_now()
    }

    /// Stop the loop and wait for it (blocking: a pass in progress is finished first, at most
    /// one request timeout). Idempotent.
    pub fn stop(&self) {
        self.inner.stop()
    }
}

/// The result slot shared by an [`Offloaded`] future and its thread.
struct Slot<T> {
    result: Option<T>,
    waker: Option<Waker>,
}

/// A future completed by a thread of its own: see [`offload`].
pub struct Offloaded<T> {
    slot: Arc<Mutex<Slot<Result<T>>>>,
}

impl<T> Future for Offloaded<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match slot.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Run a blocking core call on a new thread; the future completes with its result. This is how
/// async exports adapt the core's blocking network calls without an async runtime here (the
/// foreign side polls: Swift `async`, Kotlin `suspend`). If the foreign task is cancelled, the
/// call still runs to its end and its result is dropped. A panic becomes an `Other` error.
fn offload<T: Send + 'static>(name: &str, call: impl FnOnce() -> Result<T> + Send + 'static) -> Offloaded<T> {
    let slot = Arc::new(Mutex::new(Slot { result: None, waker: None }));
    let theirs = slot.clone();
    let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
            .unwrap_or_else(|_| Err(SynclineError::Other { message: "Other: the call panicked".into() }));
        let waker = {
            let mut slot = theirs.lock().unwrap_or_else(|p| p.into_inner());
            slot.result = Some(result);
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
    if let Err(e) = spawned {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        s.result = Some(Err(SynclineError::Io { message: format!("cannot start a thread: {e}") }));
    }
    Offloaded { slot }
}

/// The sync engine for one SQLite database file. Thread-safe.
#[derive(uniffi::Object)]
pub struct SyncEngine {
    inner: Arc<syncline::SyncEngine>,
}

#[uniffi::export]
impl SyncEngine {
    /// Open (or create) a database file and install the sync metadata if missing, on the SQLite
    /// library already bound in this process; `SqliteLibrary` if none is. Apps call
    /// `SyncEngine.open` of the Swift or Kotlin layer, which first applies the platform's
    /// default wiring (see their READMEs). Options: none for the core's defaults.
    #[uniffi::constructor(default(options = None))]
    pub fn open_bound(path: String, options: Option<EngineOptions>) -> Result<Arc<Self>> {
        let options = options.map(Into::into).unwrap_or_default();
        Ok(Arc::new(SyncEngine { inner: Arc::new(syncline::SyncEngine::open(path, options)?) }))
    }

    /// The database file.
    pub fn path(&self) -> String {
        self.inner.path().display().to_string()
    }

    /// This replica's site id (32 hex digits).
    pub fn site_id(&self) -> Result<String> {
        Ok(self.inner.site_id()?.to_hex())
    }

    /// Give this database a new random site id (after copying the file to another device).
    pub fn reset_site_id(&self) -> Result<String> {
        Ok(self.inner.reset_site_id()?.to_hex())
    }

    /// Give this database a chosen site id (32 hex digits; tests and golden vectors).
    pub fn set_site_id(&self, site_id: String) -> Result<String> {
        Ok(self.inner.set_site_id(site(&site_id)?)?.to_hex())
    }

    /// Fix the wall clock (Unix ms) used for new stamps and drift checks; none: the system clock.
    pub fn set_manual_clock(&self, ms: Option<u64>) -> Result<()> {
        Ok(self.inner.set_manual_clock(ms)?)
    }

    /// Start syncing an existing table.
    #[uniffi::method(default(strategy = None, allow_autoincrement = false))]
    pub fn enable_sync(&self, table: String, strategy: Option<Strategy>, allow_autoincrement: bool) -> Result<()> {
        let opts = syncline::EnableOptions { strategy: strategy.map(Into::into).unwrap_or_default(), allow_autoincrement };
        Ok(self.inner.enable_sync(&table, opts)?)
    }

    /// Stop syncing a table (its data stays).
    pub fn disable_sync(&self, table: String) -> Result<()> {
        Ok(self.inner.disable_sync(&table)?)
    }

    /// Change a synced table's conflict strategy.
    pub fn set_strategy(&self, table: String, strategy: Strategy) -> Result<()> {
        Ok(self.inner.set_strategy(&table, strategy.into())?)
    }

    /// Register the resolver of a `Custom` table (in memory: register again after each open).
    pub fn set_resolver(&self, table: String, resolver: Arc<dyn ConflictResolver>) {
        self.inner.set_resolver(&table, Arc::new(ResolverAdapter(resolver)))
    }

    /// Remove a table's resolver.
    pub fn clear_resolver(&self, table: String) {
        self.inner.clear_resolver(&table)
    }

    /// A bundle of what `peer` (site id hex) lacks; everything for none or an unknown peer.
    /// `progress`: see [`ProgressListener`].
    #[uniffi::method(default(peer = None, compress = false, progress = None))]
    pub fn generate_bundle(&self, peer: Option<String>, compress: bool, progress: Option<Arc<dyn ProgressListener>>) -> Result<Vec<u8>> {
        let peer = peer.as_deref().map(site).transpose()?;
        let opts = syncline::ExportOptions { peer: peer.as_ref(), compress };
        let mut progress = ProgressAdapter::new(progress);
        let out = self.inner.generate_bundle_with(opts, &mut |d, t| progress.call(d, t));
        Ok(progress.finish(out)?.0)
    }

    /// Write the bundle for `peer` (everything for none) to a file, atomically; the bundle is
    /// never whole in memory.
    #[uniffi::method(default(peer = None, compress = false, progress = None))]
    pub fn write_bundle(
        &self,
        path: String,
        peer: Option<String>,
        compress: bool,
        progress: Option<Arc<dyn ProgressListener>>,
    ) -> Result<BundleStats> {
        let peer = peer.as_deref().map(site).transpose()?;
        let opts = syncline::ExportOptions { peer: peer.as_ref(), compress };
        let mut progress = ProgressAdapter::new(progress);
        let out = self.inner.write_bundle_with(opts, path, &mut |d, t| progress.call(d, t));
        Ok(progress.finish(out)?.into())
    }

    /// Import a bundle: one transaction, idempotent; on error nothing changes.
    #[uniffi::method(default(progress = None))]
    pub fn import_bundle(&self, bundle: Vec<u8>, progress: Option<Arc<dyn ProgressListener>>) -> Result<ImportReport> {
        let mut progress = ProgressAdapter::new(progress);
        let out = self.inner.import_bundle_with(&bundle, &mut |d, t| progress.call(d, t));
        Ok(progress.finish(out)?.into())
    }

    /// Import a bundle file (streamed: never whole in memory).
    #[uniffi::method(default(progress = None))]
    pub fn import_bundle_file(&self, path: String, progress: Option<Arc<dyn ProgressListener>>) -> Result<ImportReport> {
        let mut progress = ProgressAdapter::new(progress);
        let out = self.inner.import_bundle_file_with(path, &mut |d, t| progress.call(d, t));
        Ok(progress.finish(out)?.into())
    }

    /// Open conflicts (manual tables), oldest first.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        Ok(self.inner.conflicts()?.into_iter().map(Into::into).collect())
    }

    /// Every stored conflict, resolved ones included.
    pub fn all_conflicts(&self) -> Result<Vec<Conflict>> {
        Ok(self.inner.all_conflicts()?.into_iter().map(Into::into).collect())
    }

    /// Resolve a stored conflict; the outcome is written as a new local change.
    pub fn resolve(&self, id: i64, resolution: Resolution) -> Result<()> {
        Ok(self.inner.resolve(id, resolution.into())?)
    }

    /// Subscribe to events; ends when the handle is closed or dropped.
    pub fn subscribe(&self, observer: Arc<dyn EventObserver>) -> Result<Arc<Subscription>> {
        let inner = self.inner.subscribe(Arc::new(ObserverAdapter(observer)))?;
        Ok(Arc::new(Subscription { inner }))
    }

    /// Site, tables, peers with pending changes, version vector, open conflicts.
    pub fn status(&self) -> Result<Status> {
        Ok(self.inner.status()?.into())
    }

    /// Add a column to a synced table through Syncline (ALTER TABLE, capture and a migration
    /// record, one transaction); the migration travels in bundles to the peers. `decl_type`: a
    /// plain SQLite type name; `default_value`: the value rows that never set the column hold.
    #[uniffi::method(default(default_value = None))]
    pub fn add_column(&self, table: String, column: String, decl_type: String, default_value: Option<Value>) -> Result<()> {
        Ok(self.inner.add_column(&table, &column, &decl_type, default_value.map(Into::into).unwrap_or(syncline::Value::Null))?)
    }

    /// What imports do with the migrations they receive (stored in the file; default `Apply`).
    pub fn set_migration_policy(&self, policy: MigrationPolicy) -> Result<()> {
        Ok(self.inner.set_migration_policy(policy.into())?)
    }

    /// The migration policy in force.
    pub fn migration_policy(&self) -> Result<MigrationPolicy> {
        Ok(self.inner.migration_policy()?.into())
    }

    /// Apply every held migration now, whatever the policy; returns how many changed a table.
    pub fn apply_held_migrations(&self) -> Result<u64> {
        Ok(self.inner.apply_held_migrations()?)
    }

    /// Purge the tombstones every known peer has acknowledged and older than `retain_ms`, then
    /// vacuum the file (spec/merge-rules.md §8a). Afterwards a sender that has not seen a
    /// purged delete is refused with `NeedsSnapshot`.
    pub fn compact(&self, retain_ms: u64) -> Result<CompactReport> {
        Ok(self.inner.compact(std::time::Duration::from_millis(retain_ms))?.into())
    }

    /// Write a snapshot for a new device to `path` (a new file): the synced tables and sync
    /// state without this replica's site id. The device copies it into place and opens it (it
    /// gets a site id of its own); its first sync carries only what changed since.
    pub fn snapshot(&self, path: String) -> Result<()> {
        Ok(self.inner.snapshot(path)?)
    }

    /// A SHA-256 (64 hex digits) over every synced table's rows and their sync state (causal
    /// length, row and cell stamps with site ids): replicas that converged have equal hashes.
    pub fn state_hash(&self) -> Result<String> {
        Ok(self.inner.state_hash()?)
    }

    /// Run one SQL statement (writes are captured like any other); returns the changed rows.
    #[uniffi::method(default(params = []))]
    pub fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64> {
        Ok(self.inner.execute(&sql, &values_in(params))? as u64)
    }

    /// Run several SQL statements without parameters (e.g. a schema).
    pub fn execute_batch(&self, sql: String) -> Result<()> {
        Ok(self.inner.execute_batch(&sql)?)
    }

    /// Run a query and return every row.
    #[uniffi::method(default(params = []))]
    pub fn query(&self, sql: String, params: Vec<Value>) -> Result<QueryRows> {
        Ok(self.inner.query(&sql, &values_in(params))?.into())
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Close the connection, stop the watcher and every background sync started on this engine
    /// (the core's `close`); later calls fail with `Closed`.
    /// (Kotlin: `closeEngine()`; `close()`/`use {}` there frees the object, which closes too.)
    pub fn close(&self) -> Result<()> {
        Ok(self.inner.close()?)
    }

    /// Sync with the server at `url` in the background (first pass at once, then every
    /// `interval_ms`, backing off after failures) until the handle is stopped or freed.
    /// Returns at once; errors of the passes go to the handle's `status()`. Options: none for the
    /// core's defaults; a zero interval, backoff, timeout or page size is `InvalidArgument`.
    /// `close()` on the engine stops the loop too.
    #[uniffi::method(default(token = None, options = None))]
    pub fn start_sync(&self, url: String, token: Option<String>, options: Option<SyncOptions>) -> Result<Arc<SyncHandle>> {
        let options = options.map(Into::into).unwrap_or_default();
        let inner = self.inner.start_sync(&url, token.as_deref(), options)?;
        Ok(Arc::new(SyncHandle { inner }))
    }
}

/// Async exports (Swift `async`, Kotlin `suspend`): the core call runs on its own thread.
#[uniffi::export]
impl SyncEngine {
    /// Sync once with the server at `url` (`http://host:port`), presenting the bearer `token`:
    /// push what the server lacks, pull what this replica lacks. Errors: `Auth` (token refused;
    /// nothing changed), `Network` (transport failed), `InvalidArgument` (bad URL), and the
    /// import's own kinds.
    /// `progress`: `(pulled, 0)` after each page, the changes pulled so far (the total is not
    /// known in advance), on the pass's thread; see [`ProgressListener`] for a throwing one.
    #[uniffi::method(default(token = None, progress = None))]
    pub async fn sync(&self, url: String, token: Option<String>, progress: Option<Arc<dyn ProgressListener>>) -> Result<SyncReport> {
        let engine = self.inner.clone();
        offload("syncline-ffi-sync", move || {
            let mut progress = ProgressAdapter::new(progress);
            let out = engine.sync_with(&url, token.as_deref(), &mut |d, t| progress.call(d, t));
            Ok(progress.finish(out)?.into())
        })
        .await
    }
}

/// The core's `net::clone_snapshot` on the SQLite library already bound (`SqliteLibrary` if
/// none is; apps call `cloneSnapshot` of the Swift or Kotlin layer, which applies the platform's
/// default wiring first): download the snapshot of the server at `url` to `path` (a new file)
/// for a new device; returns its size in bytes. `progress`: `(bytes, total bytes)` as it
/// arrives (total 0 if the server did not say), on the download's thread. Open the file with
/// `SyncEngine.open` and sync: the first pass carries only what changed since. Errors:
/// `InvalidArgument` if `path` exists, `InvalidBundle` if the file is not a snapshot of that
/// server, `Auth`, `Network`; nothing is left at `path` after an error.
#[uniffi::export(default(token = None, progress = None))]
pub async fn clone_snapshot_bound(
    url: String,
    path: String,
    token: Option<String>,
    progress: Option<Arc<dyn ProgressListener>>,
) -> Result<u64> {
    offload("syncline-ffi-clone", move || {
        let mut progress = ProgressAdapter::new(progress);
        let out = syncline::net::clone_snapshot(&url, token.as_deref(), std::path::Path::new(&path), &mut |d, t| progress.call(d, t));
        progress.finish(out)
    })
    .await
}

/// A fresh UUIDv7 string, the recommended primary key for synced tables.
#[uniffi::export]
pub fn uuid7() -> String {
    syncline::uuid7()
}

/// The stable code of every error kind the core knows, in declaration order.
#[uniffi::export]
pub fn error_codes() -> Vec<String> {
    syncline::ErrorKind::ALL.iter().map(|k| k.code().to_owned()).collect()
}

/// One error kind of the core: its stable code and what it means.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ErrorKindInfo {
    pub code: String,
    pub description: String,
}

/// Every error kind of the core (`ErrorKind::ALL`), with its description.
#[uniffi::export]
pub fn error_kinds() -> Vec<ErrorKindInfo> {
    syncline::ErrorKind::ALL.iter().map(|k| ErrorKindInfo { code: k.code().to_owned(), description: k.description().to_owned() }).collect()
}

/// The error this binding raises for the core kind `code` with `message` (none for a code the
/// core does not know): how tests check that every kind has its own error case.
#[uniffi::export]
pub fn error_of_kind(code: String, message: String) -> Option<SynclineError> {
    syncline::ErrorKind::from_code(&code).map(|k| syncline::Error::new(k, message).into())
}

// ---------------------------------------------------------------------------------------------
// The SQLite library the engine runs on (core `syncline::host`)
// ---------------------------------------------------------------------------------------------

/// The extension entry point: a SQLite driver that loads this library
/// (`load_extension('/abs/libsyncline_ffi.so', 'sqlite3_syncline_init')`) binds the engine to its
/// own SQLite.
pub use syncline::host::sqlite3_syncline_init;

/// The SQLite library bound in this process.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SqliteLibraryInfo {
    /// Where it was found: the shared library file, or what loaded the extension.
    pub origin: String,
    /// Its `sqlite_version()`.
    pub version: String,
}

/// Bind the SQLite shared library at `path` (a name `dlopen` resolves, such as
/// `libsqlite3.so.0`, or an absolute path) for every engine of this process. The library bound
/// already is a no-op; another one fails with `SqliteLibrary` (two SQLite copies in one process).
#[uniffi::export]
pub fn bind_sqlite_library(path: String) -> Result<()> {
    Ok(syncline::host::bind_library(&path)?)
}

/// The SQLite library bound in this process, if any.
#[uniffi::export]
pub fn bound_sqlite_library() -> Option<SqliteLibraryInfo> {
    syncline::host::bound_library().map(|(origin, version)| SqliteLibraryInfo { origin, version })
}

/// The system SQLite of this platform (the core's `host::PLATFORM_SQLITE`:
/// `/usr/lib/libsqlite3.dylib` on Apple platforms, `libsqlite3.so.0` on Linux), if it has one
/// for applications.
#[uniffi::export]
pub fn platform_sqlite() -> Option<String> {
    syncline::host::PLATFORM_SQLITE.map(str::to_owned)
}

/// The absolute path of this library as the process loaded it: what a driver passes to
/// `load_extension` so that the extension is this very copy (same file, same handle).
#[uniffi::export]
pub fn ffi_library_path() -> Option<String> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = ffi_library_path as *const std::ffi::c_void;
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    Some(std::fs::canonicalize(&name).map(|p| p.display().to_string()).unwrap_or(name))
}

/// Runs SQL through the application's own SQLite driver, for [`check_shared_sqlite`].
#[uniffi::export(with_foreign)]
pub trait SqliteDriverProbe: Send + Sync {
    /// Run `PRAGMA soft_heap_limit = <limit>` on a connection of the app's driver.
    fn set_soft_heap_limit(&self, limit: i64) -> Result<()>;
}

/// Prove that the application's driver (`probe`) and the engine run on one SQLite library: the
/// soft heap limit is global to one library, so the engine sees the value the driver set only if
/// both share it (the previous limit is restored). `SqliteLibrary` if they do not, or if nothing
/// is bound yet; the probe's own error if it fails.
#[uniffi::export]
pub fn check_shared_sqlite(probe: Arc<dyn SqliteDriverProbe>) -> Result<()> {
    let mut failure = None;
    let checked = syncline::host::check_shared(&mut |n| {
        probe.set_soft_heap_limit(n).map_err(|e| {
            // a foreign exception that is no SynclineError arrives as Resolver: it is the driver's
            let e = match e {
                SynclineError::Resolver { message } => {
                    SynclineError::Sqlite { message: format!("the SQLite driver probe failed: {message}") }
                }
                other => other,
            };
            let core = syncline::Error::new(syncline::ErrorKind::Sqlite, e.to_string());
            failure = Some(e);
            core
        })
    });
    match (checked, failure) {
        (Ok(()), _) => Ok(()),
        // the probe failed to set the limit: its own error (a mismatch is SqliteLibrary)
        (Err(e), Some(probe_error)) if e.kind() == syncline::ErrorKind::Sqlite => Err(probe_error),
        (Err(e), _) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_kind_has_its_own_variant() {
        for kind in syncline::ErrorKind::ALL {
            let e: SynclineError = syncline::Error::new(kind, "boom").into();
            assert_eq!(e.code(), kind.code());
            assert_eq!(e.message(), "boom");
        }
    }

    #[test]
    fn offload_completes_with_the_result_and_turns_panics_into_errors() {
        struct Flag(std::sync::atomic::AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        fn block_on<T>(mut f: Offloaded<T>) -> Result<T> {
            let flag = Arc::new(Flag(Default::default()));
            let waker = Waker::from(flag.clone());
            let mut cx = Context::from_waker(&waker);
            loop {
                if let Poll::Ready(r) = Pin::new(&mut f).poll(&mut cx) {
                    return r;
                }
                while !flag.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        assert_eq!(block_on(offload("t", || Ok(7))).unwrap(), 7);
        let e = block_on(offload("t", || -> Result<()> { Err(SynclineError::Auth { message: "no".into() }) })).unwrap_err();
        assert_eq!(e.code(), "Auth");
        let e = block_on(offload("t", || -> Result<()> { panic!("boom") })).unwrap_err();
        assert_eq!(e.code(), "Other");
    }

    #[test]
    fn default_options_are_the_cores() {
        assert_eq!(syncline::net::SyncOptions::from(default_sync_options()), syncline::net::SyncOptions::default());
        assert_eq!(syncline::Options::from(default_engine_options()), syncline::Options::default());
    }

    #[test]
    fn every_core_kind_is_listed_with_its_description_and_error() {
        let kinds = error_kinds();
        assert_eq!(kinds.len(), syncline::ErrorKind::ALL.len());
        for (info, kind) in kinds.iter().zip(syncline::ErrorKind::ALL) {
            assert_eq!(info.code, kind.code());
            assert_eq!(info.description, kind.description());
            let e = error_of_kind(info.code.clone(), "m".into()).unwrap();
            assert_eq!((e.code(), e.message()), (kind.code(), "m"));
        }
        assert_eq!(error_of_kind("Nope".into(), "m".into()), None);
    }

    #[test]
    fn event_fields_are_the_cores() {
        let change = syncline::Change { table: "t".into(), pk: vec![syncline::Value::Integer(1)], columns: vec![], deleted: true };
        let core = syncline::Event::RemoteChange(change);
        let e = Event::from(core.clone());
        assert_eq!(format!("{:?}", e.kind).to_lowercase(), core.kind());
        assert_eq!((e.table.as_str(), e.deleted, e.columns.len(), e.conflict.is_none()), ("t", true, 0, true));
    }

    /// The error table of swift/README.md and kotlin/README.md, generated from the core's kinds
    /// (`SYNCLINE_BLESS=1 cargo test -p syncline-ffi --lib` rewrites it).
    #[test]
    fn the_readmes_list_every_core_error_kind() {
        const BEGIN: &str = "<!-- error kinds: generated from syncline::ErrorKind by bindings/src/lib.rs -->\n";
        const END: &str = "<!-- end of error kinds -->";
        let mut table = String::from("| kind | meaning |\n|---|---|\n");
        for k in syncline::ErrorKind::ALL {
            table += &format!("| `{}` | {} |\n", k.code(), k.description().replace('|', "\\|"));
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for readme in ["swift/README.md", "kotlin/README.md"] {
            let path = root.join(readme);
            let text = std::fs::read_to_string(&path).unwrap();
            let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else { panic!("{readme} lacks the error kinds markers") };
            let current = &text[a + BEGIN.len()..b];
            if current != table {
                if std::env::var_os("SYNCLINE_BLESS").is_some() {
                    std::fs::write(&path, format!("{}{BEGIN}{table}{}", &text[..a], &text[b..])).unwrap();
                } else {
                    panic!("{readme}: the error kinds table is stale; run SYNCLINE_BLESS=1 cargo test -p syncline-ffi --lib");
                }
            }
        }
    }

    #[test]
    fn this_library_knows_its_own_path() {
        let p = ffi_library_path().unwrap();
        assert!(std::path::Path::new(&p).is_absolute(), "{p}");
    }

    #[test]
    fn values_round_trip() {
        for v in [
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Real(-0.0),
            Value::Text("é".into()),
            Value::Blob(vec![0, 255]),
        ] {
            let back: Value = syncline::Value::from(v.clone()).into();
            assert_eq!(format!("{back:?}"), format!("{v:?}"));
        }
    }
}
