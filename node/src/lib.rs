//! Node bindings for Syncline (napi-rs 3, N-API 8).
//!
//! This crate only converts types, maps errors (in [`js_error`], the one place), adapts
//! callbacks (resolvers, observers) and runs the long calls (bundle export and import, network
//! sync) off the JavaScript thread. Every behaviour lives in the `syncline` core crate.
//!
//! Value rule (identical for parameters and results): SQLite integers are JS `number`s when
//! they lie within ±(2^53 - 1) (`Number.isSafeInteger`) and `bigint`s otherwise; a `bigint`
//! parameter is always an integer (it must fit in 64 signed bits); a `number` parameter that is
//! a safe integer binds as an INTEGER, any other number as a REAL. Text is `string`, blobs are
//! `Buffer` (any `Uint8Array` is accepted), NULL is `null` (`undefined` binds as NULL).
//! Stamps (HLCs) are always `bigint`.

#![deny(clippy::all)]

use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi_derive::napi;
use std::ptr;
use std::result::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use syncline::{ErrorKind, SiteId, Strategy, Value};

// ---------------------------------------------------------------------------------------------
// Errors: exactly one conversion from the core error to a JS error.
// ---------------------------------------------------------------------------------------------

/// The JS `err.code` of a failed call: a core `ErrorKind::code()`.
type Code = &'static str;

/// THE conversion of a core error into a JS `Error` (`err.code` = the core kind's code,
/// `err.message` = the core message).
fn js_error(e: syncline::Error) -> napi::Error<&'static str> {
    napi::Error::new(e.kind().code(), e.message())
}

/// An argument the binding could not convert (reported with the core's `InvalidArgument` kind).
fn invalid(message: impl Into<String>) -> syncline::Error {
    syncline::Error::new(ErrorKind::InvalidArgument, message)
}

/// Lift a core result into a synchronous export's result.
fn sync<T>(r: syncline::Result<T>) -> napi::Result<T, Code> {
    r.map_err(js_error)
}

/// Settle an async task: the core error becomes the same JS `Error` as in sync calls.
fn settle<T>(env: &Env, r: syncline::Result<T>) -> napi::Result<T> {
    r.map_err(|e| {
        let value = JsError::from(js_error(e)).into_unknown(*env);
        napi::Error::from(value)
    })
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// A Rust type that converts JS values itself: its TypeScript name, and no up-front type check
/// (a wrong value is reported by the conversion, with a clear message).
macro_rules! js_type {
    ($t:ty, $name:literal) => {
        impl TypeName for $t {
            fn type_name() -> &'static str {
                $name
            }
            fn value_type() -> ValueType {
                ValueType::Unknown
            }
        }
        impl ValidateNapiValue for $t {
            unsafe fn validate(_env: sys::napi_env, _v: sys::napi_value) -> napi::Result<sys::napi_value> {
                Ok(ptr::null_mut())
            }
        }
    };
}

const MAX_SAFE: i64 = (1i64 << 53) - 1;

/// A SQLite value going to JS (results, events, conflicts).
pub struct SqlValue(Value);

js_type!(SqlValue, "SqlValue");

impl ToNapiValue for SqlValue {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        match val.0 {
            Value::Null => Null::to_napi_value(env, Null),
            Value::Integer(i) if (-MAX_SAFE..=MAX_SAFE).contains(&i) => f64::to_napi_value(env, i as f64),
            Value::Integer(i) => BigInt::to_napi_value(env, BigInt::from(i)),
            Value::Real(f) => f64::to_napi_value(env, f),
            Value::Text(s) => String::to_napi_value(env, s),
            Value::Blob(b) => Buffer::to_napi_value(env, Buffer::from(b)),
        }
    }
}

impl FromNapiValue for SqlValue {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        value_from_js(env, v).map(SqlValue).map_err(|m| napi::Error::new(Status::InvalidArg, m))
    }
}

/// A SQLite value coming from JS (statement parameters). Conversion never fails here: a bad
/// value is reported by the call that uses it, with the core's `InvalidArgument` code.
pub struct Param(Result<Value, String>);

js_type!(Param, "SqlValue");

impl FromNapiValue for Param {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        Ok(Param(value_from_js(env, v)))
    }
}

fn params(p: Option<Vec<Param>>) -> syncline::Result<Vec<Value>> {
    p.unwrap_or_default().into_iter().enumerate().map(|(i, p)| p.0.map_err(|m| invalid(format!("parameter {}: {m}", i + 1)))).collect()
}

fn js_type(env: sys::napi_env, v: sys::napi_value) -> i32 {
    let mut t = -1;
    unsafe { sys::napi_typeof(env, v, &mut t) };
    t
}

/// The bytes of a `Uint8Array` (a `Buffer` is one), or `None` for anything else.
unsafe fn bytes_from_js(env: sys::napi_env, v: sys::napi_value) -> Option<Vec<u8>> {
    let mut is_typed = false;
    if unsafe { sys::napi_is_typedarray(env, v, &mut is_typed) } != sys::Status::napi_ok || !is_typed {
        return None;
    }
    let mut kind = 0;
    let mut len = 0usize;
    let mut data = ptr::null_mut();
    let mut ab = ptr::null_mut();
    let mut offset = 0usize;
    if unsafe { sys::napi_get_typedarray_info(env, v, &mut kind, &mut len, &mut data, &mut ab, &mut offset) } != sys::Status::napi_ok
        || kind != sys::TypedarrayType::uint8_array
    {
        return None;
    }
    if len == 0 || data.is_null() {
        return Some(Vec::new());
    }
    Some(unsafe { std::slice::from_raw_parts(data as *const u8, len) }.to_vec())
}

/// JS value to SQLite value (see the value rule at the top of this file).
unsafe fn value_from_js(env: sys::napi_env, v: sys::napi_value) -> Result<Value, String> {
    let t = js_type(env, v);
    match t {
        sys::ValueType::napi_null | sys::ValueType::napi_undefined => Ok(Value::Null),
        sys::ValueType::napi_number => {
            let f = unsafe { f64::from_napi_value(env, v) }.map_err(|e| e.reason.clone())?;
            let safe_int = f.fract() == 0.0 && f.abs() <= MAX_SAFE as f64 && !(f == 0.0 && f.is_sign_negative());
            Ok(if safe_int { Value::Integer(f as i64) } else { Value::Real(f) })
        }
        sys::ValueType::napi_bigint => {
            let b = unsafe { BigInt::from_napi_value(env, v) }.map_err(|e| e.reason.clone())?;
            match b.get_i64() {
                (i, true) => Ok(Value::Integer(i)),
                _ => Err("a bigint beyond the signed 64-bit range is not a SQLite integer".into()),
            }
        }
        sys::ValueType::napi_string => unsafe { String::from_napi_value(env, v) }.map(Value::Text).map_err(|e| e.reason.clone()),
        sys::ValueType::napi_object => unsafe { bytes_from_js(env, v) }
            .map(Value::Blob)
            .ok_or_else(|| "objects are not SQLite values (use a Buffer or Uint8Array for a blob)".into()),
        sys::ValueType::napi_boolean => Err("booleans are not SQLite values (use 1/0)".into()),
        _ => Err(format!("a JavaScript {} is not a SQLite value", type_name_of(t))),
    }
}

fn type_name_of(t: i32) -> &'static str {
    match t {
        sys::ValueType::napi_symbol => "symbol",
        sys::ValueType::napi_function => "function",
        sys::ValueType::napi_external => "external",
        _ => "value of this type",
    }
}

fn values_out(v: Vec<Value>) -> Vec<SqlValue> {
    v.into_iter().map(SqlValue).collect()
}

fn site(hex: &str) -> syncline::Result<SiteId> {
    hex.parse()
}

fn count(n: u64) -> i64 {
    n as i64
}

fn non_negative(name: &str, v: i64) -> syncline::Result<u64> {
    u64::try_from(v).map_err(|_| invalid(format!("{name} must be a non-negative integer, got {v}")))
}

// ---------------------------------------------------------------------------------------------
// Plain objects
// ---------------------------------------------------------------------------------------------

/// Engine options (all optional; `defaultOptions()` gives the core's defaults).
#[napi(object)]
pub struct EngineOptions {
    /// How far (ms) a remote stamp may lie ahead of the local clock before its rows are
    /// quarantined (default 300000).
    pub max_drift_ms: Option<i64>,
    /// How long (ms) to wait for another connection's write lock (default 10000).
    pub busy_timeout_ms: Option<i64>,
    /// How often (ms) the watcher looks for local writes while someone is subscribed (default 100).
    pub watch_interval_ms: Option<i64>,
}

fn options(o: Option<EngineOptions>) -> syncline::Result<syncline::Options> {
    let mut out = syncline::Options::default();
    if let Some(o) = o {
        if let Some(v) = o.max_drift_ms {
            out.max_drift_ms = non_negative("maxDriftMs", v)?;
        }
        if let Some(v) = o.busy_timeout_ms {
            out.busy_timeout_ms = non_negative("busyTimeoutMs", v)?;
        }
        if let Some(v) = o.watch_interval_ms {
            out.watch_interval_ms = non_negative("watchIntervalMs", v)?;
        }
    }
    Ok(out)
}

/// How a table is enabled.
#[napi(object)]
pub struct EnableOptions {
    /// Conflict strategy (default `'lww'`).
    #[napi(ts_type = "Strategy")]
    pub strategy: Option<String>,
    /// Enable a table with an AUTOINCREMENT key anyway (ids may collide across replicas).
    pub allow_autoincrement: Option<bool>,
}

/// How a bundle is generated.
#[napi(object, object_to_js = false)]
pub struct BundleOptions {
    /// The peer's site id (32 hex digits); omitted or unknown: everything.
    pub peer: Option<String>,
    /// Compress the body with zlib.
    pub compress: Option<bool>,
    /// Called with (rows done, rows total) every few thousand rows and once at the end
    /// (`done === total`), on the JS thread; every call comes before the promise settles.
    /// If it throws, no further calls are queued (one already queued may still run) and the
    /// promise rejects with what it threw once the export is done.
    #[napi(ts_type = "(done: number, total: number) => void")]
    pub on_progress: Option<ProgressArg>,
}

/// How a bundle is imported.
#[napi(object, object_to_js = false)]
pub struct ImportOptions {
    /// As in `BundleOptions.onProgress`. An import cannot be stopped midway: if it throws, the
    /// promise rejects with what it threw once the import is done (and applied; importing the
    /// bundle again is harmless).
    #[napi(ts_type = "(done: number, total: number) => void")]
    pub on_progress: Option<ProgressArg>,
}

/// What an import did, counted in changes (one per cell and one per row state).
#[napi(object, object_from_js = false)]
pub struct ImportReport {
    /// Site id of the replica that made the bundle.
    pub sender: Option<String>,
    /// Row entries in the bundle.
    pub rows: i64,
    /// Changes that altered this replica.
    pub applied: i64,
    /// Changes this replica already had, or that newer local state supersedes.
    pub already_known: i64,
    /// Cells changed concurrently here and at the sender (whatever the strategy decided).
    pub conflicts: i64,
    /// Changes stamped too far ahead of the local clock, kept in `_syncline_quarantine` and
    /// applied by the first import after the clock has caught up.
    pub quarantined: i64,
    /// Changes quarantined by earlier imports and applied by this one.
    pub released: i64,
    /// Changes refused by a local constraint or stamped beyond the quarantine horizon (kept
    /// in `_syncline_rejected`).
    pub rejected: i64,
    /// Migrations the bundle carried that changed a local table.
    pub migrated: i64,
    /// Changes for a column or table this replica's schema lacks: kept with their stamps,
    /// relayed to peers, applied once the schema has them.
    pub held: i64,
}

impl From<syncline::ImportReport> for ImportReport {
    fn from(r: syncline::ImportReport) -> Self {
        ImportReport {
            sender: r.sender.map(|s| s.to_hex()),
            rows: count(r.rows),
            applied: count(r.applied),
            already_known: count(r.already_known),
            conflicts: count(r.conflicts),
            quarantined: count(r.quarantined),
            released: count(r.released),
            rejected: count(r.rejected),
            migrated: count(r.migrated),
            held: count(r.held),
        }
    }
}

/// What a compaction did.
#[napi(object, object_from_js = false)]
pub struct CompactReport {
    /// Tombstones purged.
    pub purged: i64,
    /// The database file's size (with its WAL) before and after.
    pub bytes_before: i64,
    pub bytes_after: i64,
}

/// A column registered after its table was enabled (the schema log).
#[napi(object, object_from_js = false)]
pub struct SchemaChange {
    pub table: String,
    pub column: String,
    /// The declared type, upper-cased.
    pub decl_type: String,
    /// How it came: an ALTER by another writer, a migration made here, or one received.
    #[napi(ts_type = "'detected' | 'local' | 'remote'")]
    pub source: String,
    /// `'held'`: received while the policy holds migrations, not applied yet.
    #[napi(ts_type = "'applied' | 'held'")]
    pub state: String,
    pub hlc: u64,
}

/// What a written bundle holds.
#[napi(object, object_from_js = false)]
pub struct BundleStats {
    pub rows: i64,
    pub changes: i64,
    pub bytes: i64,
}

/// Rows returned by `query`.
#[napi(object, object_from_js = false)]
pub struct QueryResult {
    pub columns: Vec<String>,
    #[napi(ts_type = "SqlValue[][]")]
    pub rows: Vec<Vec<SqlValue>>,
}

/// One side of a conflict: a value and the stamp that wrote it.
#[napi(object, object_from_js = false)]
pub struct CellVersion {
    #[napi(ts_type = "SqlValue")]
    pub value: SqlValue,
    pub hlc: u64,
    /// Site id (32 hex digits).
    pub site: String,
}

fn cell(c: syncline::CellVersion) -> CellVersion {
    CellVersion { value: SqlValue(c.value), hlc: c.hlc, site: c.site.to_hex() }
}

/// A stored (or settled) conflict.
#[napi(object, object_from_js = false)]
pub struct Conflict {
    /// Id to pass to `resolve` (absent for conflicts settled automatically).
    pub id: Option<i64>,
    pub table: String,
    #[napi(ts_type = "SqlValue[]")]
    pub pk: Vec<SqlValue>,
    pub column: String,
    pub local: CellVersion,
    pub remote: CellVersion,
    #[napi(ts_type = "Strategy")]
    pub strategy: String,
    /// `'local'`, `'remote'`, `'value'` once resolved, else absent.
    #[napi(ts_type = "'local' | 'remote' | 'value'")]
    pub resolution: Option<String>,
}

fn conflict(c: syncline::Conflict) -> Conflict {
    Conflict {
        id: c.id,
        table: c.table,
        pk: values_out(c.pk),
        column: c.column,
        local: cell(c.local),
        remote: cell(c.remote),
        strategy: c.strategy.as_str().to_owned(),
        resolution: c.resolution,
    }
}

/// What a custom resolver is shown.
#[napi(object, object_from_js = false)]
pub struct ConflictInput {
    pub table: String,
    #[napi(ts_type = "SqlValue[]")]
    pub pk: Vec<SqlValue>,
    pub column: String,
    pub local: CellVersion,
    pub remote: CellVersion,
}

/// A change event. `kind` is `'local'` (a write by any connection or process), `'remote'`
/// (an imported change) or `'conflict'` (with `conflict` set).
#[napi(object, object_from_js = false)]
pub struct ChangeEvent {
    #[napi(ts_type = "'local' | 'remote' | 'conflict'")]
    pub kind: String,
    pub table: String,
    #[napi(ts_type = "SqlValue[]")]
    pub pk: Vec<SqlValue>,
    /// Columns whose value changed (empty for a delete; the conflicting column for a conflict).
    pub columns: Vec<String>,
    pub deleted: bool,
    pub conflict: Option<Conflict>,
}

/// The event's fields are the core's (`Event::kind/table/pk/columns/deleted/conflict`).
fn event(e: &syncline::Event) -> ChangeEvent {
    ChangeEvent {
        kind: e.kind().to_owned(),
        table: e.table().to_owned(),
        pk: values_out(e.pk().to_vec()),
        columns: e.columns().to_vec(),
        deleted: e.deleted(),
        conflict: e.conflict().cloned().map(conflict),
    }
}

#[napi(object, object_from_js = false)]
pub struct VersionEntry {
    /// Site id (32 hex digits).
    pub site: String,
    pub hlc: u64,
}

fn vv(v: Vec<(SiteId, u64)>) -> Vec<VersionEntry> {
    v.into_iter().map(|(s, h)| VersionEntry { site: s.to_hex(), hlc: h }).collect()
}

#[napi(object, object_from_js = false)]
pub struct TableStatus {
    pub name: String,
    #[napi(ts_type = "Strategy")]
    pub strategy: String,
    /// Live rows known to sync.
    pub rows: i64,
}

#[napi(object, object_from_js = false)]
pub struct PeerStatus {
    pub site_id: String,
    /// What the peer is known to hold (from its last bundle).
    pub version_vector: Vec<VersionEntry>,
    /// Changes the next bundle for this peer would carry.
    pub pending: i64,
}

#[napi(object, object_from_js = false, js_name = "EngineStatus")]
pub struct EngineStatus {
    pub site_id: String,
    /// The last stamp issued or received.
    pub hlc: u64,
    pub tables: Vec<TableStatus>,
    pub peers: Vec<PeerStatus>,
    pub version_vector: Vec<VersionEntry>,
    pub unresolved_conflicts: i64,
    /// Rows refused by a local constraint on import.
    pub rejected: i64,
    /// Remote rows stamped too far ahead of the local clock, waiting in
    /// `_syncline_quarantine` until the clock catches up.
    pub quarantined: i64,
    /// Shadow rows of deleted rows.
    pub tombstones: i64,
    /// Tombstones every known peer acknowledged (what `compact()` with no retention purges).
    pub purgeable: i64,
    /// Per origin site, the newest delete stamp purged by compaction.
    pub purge_horizon: Vec<VersionEntry>,
    /// Columns registered after their table was enabled, oldest first.
    pub schema_changes: Vec<SchemaChange>,
    /// Cells held for columns this replica lacks.
    pub held_cells: i64,
    /// Rows held for tables not enabled here.
    pub held_rows: i64,
}

fn status(s: syncline::Status) -> EngineStatus {
    EngineStatus {
        site_id: s.site_id.to_hex(),
        hlc: s.hlc,
        tables: s
            .tables
            .into_iter()
            .map(|t| TableStatus { name: t.name, strategy: t.strategy.as_str().to_owned(), rows: count(t.rows) })
            .collect(),
        peers: s
            .peers
            .into_iter()
            .map(|p| PeerStatus { site_id: p.site_id.to_hex(), version_vector: vv(p.version_vector), pending: count(p.pending) })
            .collect(),
        version_vector: vv(s.version_vector),
        unresolved_conflicts: count(s.unresolved_conflicts),
        rejected: count(s.rejected),
        quarantined: count(s.quarantined),
        tombstones: count(s.tombstones),
        purgeable: count(s.purgeable),
        purge_horizon: vv(s.purge_horizon),
        schema_changes: s
            .schema_changes
            .into_iter()
            .map(|c| SchemaChange {
                table: c.table,
                column: c.column,
                decl_type: c.decl_type,
                source: c.source,
                state: c.state,
                hlc: c.hlc,
            })
            .collect(),
        held_cells: count(s.held_cells),
        held_rows: count(s.held_rows),
    }
}

/// A resolution from JS: `'local'`, `'remote'`, `{ local: true }`, `{ remote: true }` or
/// `{ value: v }`. Conversion never fails here; a malformed one is reported by its user.
pub struct ResolutionArg(Result<syncline::Resolution, String>);

js_type!(ResolutionArg, "Resolution");

const RESOLUTION_SHAPE: &str = "expected 'local', 'remote', { local: true }, { remote: true } or { value }";

unsafe fn get_prop(env: sys::napi_env, obj: sys::napi_value, name: &std::ffi::CStr) -> Option<sys::napi_value> {
    let mut has = false;
    if unsafe { sys::napi_has_named_property(env, obj, name.as_ptr(), &mut has) } != sys::Status::napi_ok || !has {
        return None;
    }
    let mut out = ptr::null_mut();
    (unsafe { sys::napi_get_named_property(env, obj, name.as_ptr(), &mut out) } == sys::Status::napi_ok).then_some(out)
}

fn truthy(env: sys::napi_env, v: sys::napi_value) -> bool {
    let mut b = ptr::null_mut();
    let mut out = false;
    let ok = unsafe { sys::napi_coerce_to_bool(env, v, &mut b) } == sys::Status::napi_ok;
    ok && unsafe { sys::napi_get_value_bool(env, b, &mut out) } == sys::Status::napi_ok && out
}

impl FromNapiValue for ResolutionArg {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        use syncline::Resolution as Res;
        let r = match js_type(env, v) {
            sys::ValueType::napi_string => match unsafe { String::from_napi_value(env, v) }?.as_str() {
                "local" => Ok(Res::Local),
                "remote" => Ok(Res::Remote),
                other => Err(format!("unknown resolution {other:?}; {RESOLUTION_SHAPE}")),
            },
            sys::ValueType::napi_object => {
                if let Some(x) = unsafe { get_prop(env, v, c"value") } {
                    unsafe { value_from_js(env, x) }.map(Res::Value)
                } else if unsafe { get_prop(env, v, c"local") }.is_some_and(|x| truthy(env, x)) {
                    Ok(Res::Local)
                } else if unsafe { get_prop(env, v, c"remote") }.is_some_and(|x| truthy(env, x)) {
                    Ok(Res::Remote)
                } else {
                    Err(RESOLUTION_SHAPE.to_owned())
                }
            }
            _ => Err(RESOLUTION_SHAPE.to_owned()),
        };
        Ok(ResolutionArg(r))
    }
}

/// A bundle to import: bytes or a file path.
pub struct BundleSource(Result<Source, String>);

enum Source {
    Bytes(Vec<u8>),
    Path(String),
}

js_type!(BundleSource, "BundleSource");

impl FromNapiValue for BundleSource {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        let s = if js_type(env, v) == sys::ValueType::napi_string {
            Ok(Source::Path(unsafe { String::from_napi_value(env, v) }?))
        } else {
            unsafe { bytes_from_js(env, v) }
                .map(Source::Bytes)
                .ok_or_else(|| "importBundle expects a Buffer/Uint8Array or a file path".to_owned())
        };
        Ok(BundleSource(s))
    }
}

// ---------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------

type ResolverFn = ThreadsafeFunction<ConflictInput, ResolutionArg, ConflictInput, Status, false, true>;
type ObserverFn = ThreadsafeFunction<ChangeEvent, UnknownReturnValue, ChangeEvent, Status, false, true>;

/// A JS function as the core's `Resolver`. The core calls it on the worker thread running the
/// import (inside the import transaction); the JS thread is free (it awaits the import's
/// Promise), so the call is queued to it and the worker waits for the answer.
struct JsResolver(ResolverFn);

impl syncline::Resolver for JsResolver {
    fn resolve(&self, c: &syncline::ConflictInput) -> Result<syncline::Resolution, String> {
        let input = ConflictInput {
            table: c.table.clone(),
            pk: values_out(c.pk.clone()),
            column: c.column.clone(),
            local: cell(c.local.clone()),
            remote: cell(c.remote.clone()),
        };
        let (tx, rx) = std::sync::mpsc::channel::<Result<syncline::Resolution, String>>();
        let status = self.0.call_with_return_value(input, ThreadsafeFunctionCallMode::Blocking, move |ret, _env| {
            let answer = match ret {
                Ok(ResolutionArg(r)) => r.map_err(|m| format!("the resolver returned a bad value: {m}")),
                Err(e) => Err(format!("the resolver threw: {}", e.reason)),
            };
            let _ = tx.send(answer);
            Ok(())
        });
        if status != Status::Ok {
            return Err(format!("the resolver could not be called ({status})"));
        }
        rx.recv().unwrap_or_else(|_| Err("the resolver was not called (the JavaScript environment is shutting down)".into()))
    }
}

/// A JS function as the core's `Observer` (events are queued to the JS thread, never awaited).
struct JsObserver(ObserverFn);

impl syncline::Observer for JsObserver {
    fn on_event(&self, e: &syncline::Event) {
        self.0.call(event(e), ThreadsafeFunctionCallMode::NonBlocking);
    }
}

type ProgressFn = ThreadsafeFunction<FnArgs<(i64, i64)>, UnknownReturnValue, FnArgs<(i64, i64)>, Status, false, true>;

/// An `onProgress` option: a function, none (`null`), or the message of the `InvalidArgument`
/// error the call rejects with (conversion errors surface in the promise, as for `peer`).
pub struct ProgressArg(Result<Option<ProgressFn>, String>);

js_type!(ProgressArg, "ProgressArg");

impl FromNapiValue for ProgressArg {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        match js_type(env, v) {
            sys::ValueType::napi_function => Ok(ProgressArg(Ok(Some(unsafe { ProgressFn::from_napi_value(env, v) }?)))),
            sys::ValueType::napi_null | sys::ValueType::napi_undefined => Ok(ProgressArg(Ok(None))),
            _ => Ok(ProgressArg(Err("onProgress must be a function (done: number, total: number) => void".into()))),
        }
    }
}

/// A JS `onProgress` as the core's progress closure. The core calls it on the worker thread;
/// each call is queued to the JS thread without waiting (the core never waits for JS), and
/// [`JsProgress::finish`] waits until every queued call ran, so all of them come before the
/// promise settles. The first exception it throws is kept (and no further call is queued): the
/// task then rejects with it.
struct JsProgress {
    tsfn: Option<ProgressFn>,
    /// Calls queued and not yet run (or dropped by a closing environment).
    queued: Arc<(std::sync::Mutex<usize>, std::sync::Condvar)>,
    thrown: Arc<std::sync::Mutex<Option<napi::Error>>>,
}

/// Counts one queued call until its completion callback ran or was dropped.
struct Queued(Arc<(std::sync::Mutex<usize>, std::sync::Condvar)>);

impl Drop for Queued {
    fn drop(&mut self) {
        let (count, changed) = &*self.0;
        *count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        changed.notify_all();
    }
}

impl JsProgress {
    /// From the option: none, a function, or the `InvalidArgument` error for anything else.
    fn new(arg: Option<ProgressArg>) -> syncline::Result<JsProgress> {
        let tsfn = arg.map(|a| a.0.map_err(invalid)).transpose()?.flatten();
        Ok(JsProgress { tsfn, queued: Default::default(), thrown: Default::default() })
    }

    fn call(&self, done: u64, total: u64) {
        let Some(tsfn) = &self.tsfn else { return };
        if self.thrown.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return;
        }
        *self.queued.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let (queued, thrown) = (Queued(self.queued.clone()), self.thrown.clone());
        tsfn.call_with_return_value((count(done), count(total)).into(), ThreadsafeFunctionCallMode::NonBlocking, move |ret, _env| {
            let _queued = queued;
            if let Err(e) = ret {
                thrown.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
            }
            Ok(())
        });
    }

    /// Wait (on the worker thread) until every queued call ran; then the task's outcome, or
    /// what the callback threw.
    fn finish<T>(self, outcome: syncline::Result<T>) -> Progressed<T> {
        if let Some(tsfn) = &self.tsfn {
            let (count, changed) = &*self.queued;
            let mut left = count.lock().unwrap_or_else(|p| p.into_inner());
            // A closing environment drops its queue without running it: stop waiting then.
            while *left > 0 && !tsfn.aborted() {
                left = changed.wait_timeout(left, std::time::Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        let thrown = self.thrown.lock().unwrap_or_else(|p| p.into_inner()).take();
        match thrown {
            Some(e) => Progressed::Threw(e),
            None => Progressed::Done(outcome),
        }
    }
}

/// The outcome of a task with an `onProgress`.
pub enum Progressed<T> {
    Done(syncline::Result<T>),
    /// What `onProgress` threw (rejected with as it is).
    Threw(napi::Error),
}

impl<T> Progressed<T> {
    fn settle(self, env: &Env) -> napi::Result<T> {
        match self {
            Progressed::Done(r) => settle(env, r),
            Progressed::Threw(e) => Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One SQLite per process (spec/sql-functions.md §1). The addon holds no SQLite: it is itself
// the SQLite extension that the app's driver (better-sqlite3, node:sqlite) loads, and the
// engine then runs on that driver's own library. All the rules are the core's (`syncline::host`);
// this part only calls the driver's JavaScript methods.
// ---------------------------------------------------------------------------------------------

pub use syncline::host::sqlite3_syncline_init;

/// The extension's entry point (what SQLite would derive from the file name `syncline.*`).
const ENTRY_POINT: &str = "sqlite3_syncline_init";

fn library_error(message: impl Into<String>) -> syncline::Error {
    syncline::Error::new(ErrorKind::SqliteLibrary, message)
}

/// The file this addon was loaded from: the path to give a driver's `loadExtension`.
fn addon_file() -> syncline::Result<String> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = addon_file as *const std::ffi::c_void;
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return Err(library_error("cannot find the file the syncline addon was loaded from"));
    }
    let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    Ok(std::fs::canonicalize(&file).map(|p| p.to_string_lossy().into_owned()).unwrap_or(file))
}

/// A JavaScript value handed to the binding as is (a database handle, a callback).
pub struct JsRef {
    env: sys::napi_env,
    value: sys::napi_value,
}

js_type!(JsRef, "unknown");

impl FromNapiValue for JsRef {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        Ok(JsRef { env, value })
    }
}

unsafe fn js_string(env: sys::napi_env, s: &str) -> sys::napi_value {
    let mut out = ptr::null_mut();
    unsafe { sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut out) };
    out
}

unsafe fn js_bool(env: sys::napi_env, b: bool) -> sys::napi_value {
    let mut out = ptr::null_mut();
    unsafe { sys::napi_get_boolean(env, b, &mut out) };
    out
}

/// The text of a string value, or `String(v)` for anything else.
unsafe fn text_of(env: sys::napi_env, v: sys::napi_value) -> String {
    let mut s = v;
    if js_type(env, v) != sys::ValueType::napi_string {
        s = ptr::null_mut();
        if unsafe { sys::napi_coerce_to_string(env, v, &mut s) } != sys::Status::napi_ok {
            return "a value that is not text".into();
        }
    }
    unsafe { String::from_napi_value(env, s) }.unwrap_or_default()
}

/// The pending JavaScript exception (cleared) as text: its `message`, or `String(e)`.
unsafe fn take_exception(env: sys::napi_env) -> String {
    let mut pending = false;
    unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    if !pending {
        return "the JavaScript call failed".into();
    }
    let mut e = ptr::null_mut();
    unsafe { sys::napi_get_and_clear_last_exception(env, &mut e) };
    if js_type(env, e) == sys::ValueType::napi_object {
        if let Some(m) = unsafe { get_prop(env, e, c"message") } {
            return unsafe { text_of(env, m) };
        }
    }
    unsafe { text_of(env, e) }
}

/// `this.name`, when it is a function.
unsafe fn method_of(env: sys::napi_env, this: sys::napi_value, name: &std::ffi::CStr) -> Option<sys::napi_value> {
    if js_type(env, this) != sys::ValueType::napi_object && js_type(env, this) != sys::ValueType::napi_function {
        return None;
    }
    unsafe { get_prop(env, this, name) }.filter(|f| js_type(env, *f) == sys::ValueType::napi_function)
}

/// `f.apply(this, args)`; a thrown exception comes back as its message.
unsafe fn call(env: sys::napi_env, this: sys::napi_value, f: sys::napi_value, args: &[sys::napi_value]) -> Result<sys::napi_value, String> {
    let mut out = ptr::null_mut();
    match unsafe { sys::napi_call_function(env, this, f, args.len(), args.as_ptr(), &mut out) } {
        sys::Status::napi_ok => Ok(out),
        _ => Err(unsafe { take_exception(env) }),
    }
}

/// A SQLite database handle of the app's driver: better-sqlite3's `Database` or node:sqlite's
/// `DatabaseSync` (anything with `loadExtension`, `prepare(sql).get()` and `exec` or `pragma`).
struct Driver<'a>(&'a JsRef);

impl Driver<'_> {
    fn method(&self, name: &std::ffi::CStr) -> syncline::Result<sys::napi_value> {
        unsafe { method_of(self.0.env, self.0.value, name) }.ok_or_else(|| {
            invalid(format!(
                "expected a SQLite database handle of better-sqlite3 (Database) or node:sqlite (DatabaseSync): it has no \
                 {}() method",
                name.to_string_lossy()
            ))
        })
    }

    fn call(&self, name: &std::ffi::CStr, args: &[sys::napi_value]) -> Result<sys::napi_value, String> {
        let f = self.method(name).map_err(|e| e.message().to_owned())?;
        unsafe { call(self.0.env, self.0.value, f, args) }
    }

    /// Load this addon into the connection as a SQLite extension: that binds the engine to the
    /// driver's SQLite (or refuses a second library, with the core's `SqliteLibrary` error).
    fn load_syncline(&self) -> syncline::Result<()> {
        let env = self.0.env;
        self.method(c"loadExtension")?;
        let file = addon_file()?;
        // node:sqlite allows extensions per connection, and only if opened with allowExtension.
        let toggle = unsafe { method_of(env, self.0.value, c"enableLoadExtension") };
        if let Some(t) = toggle {
            unsafe { call(env, self.0.value, t, &[js_bool(env, true)]) }.map_err(|m| {
                invalid(format!(
                    "this database does not allow loading extensions ({m}); open it with new DatabaseSync(path, {{ \
                     allowExtension: true }})"
                ))
            })?;
        }
        let loaded = self.call(c"loadExtension", &unsafe { [js_string(env, &file), js_string(env, ENTRY_POINT)] });
        if let Some(t) = toggle {
            let _ = unsafe { call(env, self.0.value, t, &[js_bool(env, false)]) };
        }
        loaded.map(drop).map_err(|m| {
            // The entry point reports the core's error as "<Code>: <message>".
            let typed = ErrorKind::ALL.into_iter().find_map(|k| {
                let rest = m.split_once(&format!("{}: ", k.code()))?.1;
                Some(syncline::Error::new(k, rest))
            });
            typed.unwrap_or_else(|| {
                library_error(format!(
                    "the database's driver could not load Syncline ({file}) as a SQLite extension: {m}. Its SQLite must allow \
                     extensions (better-sqlite3 and node:sqlite with allowExtension do)"
                ))
            })
        })
    }

    /// `PRAGMA soft_heap_limit = n` through the driver (for `host::check_shared`).
    fn set_soft_heap_limit(&self, n: i64) -> syncline::Result<()> {
        let env = self.0.env;
        let run = if unsafe { method_of(env, self.0.value, c"pragma") }.is_some() {
            self.call(c"pragma", &unsafe { [js_string(env, &format!("soft_heap_limit = {n}"))] })
        } else {
            self.call(c"exec", &unsafe { [js_string(env, &format!("PRAGMA soft_heap_limit = {n}"))] })
        };
        run.map(drop).map_err(|m| library_error(format!("the database's driver could not set the soft heap limit: {m}")))
    }

    /// The connection's main database file ("" for an in-memory database).
    fn main_file(&self) -> syncline::Result<String> {
        let env = self.0.env;
        let asked = (|| unsafe {
            let stmt = self.call(c"prepare", &[js_string(env, "SELECT file FROM pragma_database_list WHERE name = 'main'")])?;
            let get = method_of(env, stmt, c"get").ok_or("the prepared statement has no get()")?;
            let row = call(env, stmt, get, &[])?;
            let file = (js_type(env, row) == sys::ValueType::napi_object).then(|| get_prop(env, row, c"file")).flatten();
            Ok::<_, String>(file.map(|f| text_of(env, f)).unwrap_or_default())
        })();
        asked.map_err(|m| invalid(format!("cannot read the database's file name through its driver: {m}")))
    }

    fn close(&self) {
        let _ = self.call(c"close", &[]);
    }
}

/// Bind the engine to the driver's SQLite and prove that they share it.
fn bind_to(driver: &Driver) -> syncline::Result<()> {
    driver.load_syncline()?;
    syncline::host::check_shared(&mut |n| driver.set_soft_heap_limit(n))
}

thread_local! {
    /// `() => require('better-sqlite3')`, registered by index.js: the driver that hosts the
    /// SQLite library when an engine is opened before any database was attached.
    static DEFAULT_DRIVER: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

/// Register the default driver (index.js does, once per JavaScript environment).
#[napi(js_name = "__setDefaultDriver", skip_typescript)]
pub fn set_default_driver(load: JsRef) -> napi::Result<(), Code> {
    let mut r = ptr::null_mut();
    if unsafe { sys::napi_create_reference(load.env, load.value, 1, &mut r) } != sys::Status::napi_ok {
        return sync(Err(invalid("__setDefaultDriver expects a function")));
    }
    DEFAULT_DRIVER.with(|d| d.set(Some((load.env as usize, r as usize))));
    Ok(())
}

/// Before an engine opens: if no SQLite library is bound yet, host one in a short-lived
/// in-memory better-sqlite3 connection (the SQLite every later better-sqlite3 connection of
/// the process uses).
fn ensure_host(env: sys::napi_env) -> syncline::Result<()> {
    if syncline::host::bound_library().is_some() {
        return Ok(());
    }
    let Some((denv, r)) = DEFAULT_DRIVER.with(|d| d.get()).filter(|(e, _)| *e == env as usize) else {
        return syncline::host::ensure_bound();
    };
    let _ = denv;
    let made = unsafe {
        let mut load = ptr::null_mut();
        sys::napi_get_reference_value(env, r as sys::napi_ref, &mut load);
        let mut undefined = ptr::null_mut();
        sys::napi_get_undefined(env, &mut undefined);
        call(env, undefined, load, &[]).and_then(|ctor| {
            let arg = js_string(env, ":memory:");
            let mut db = ptr::null_mut();
            match sys::napi_new_instance(env, ctor, 1, &arg, &mut db) {
                sys::Status::napi_ok => Ok(db),
                _ => Err(take_exception(env)),
            }
        })
    };
    let db = made.map_err(|m| {
        library_error(format!(
            "no SQLite library is bound yet and better-sqlite3 (which would host it) cannot be loaded: {m}. Install \
             better-sqlite3 (a dependency of syncline), or attach your own database first with SyncEngine.attach(db)"
        ))
    })?;
    let handle = JsRef { env, value: db };
    let driver = Driver(&handle);
    let bound = bind_to(&driver);
    driver.close();
    bound
}

/// Where the SQLite library the engine runs on was found, and its version.
#[napi(object, object_from_js = false)]
pub struct SqliteLibrary {
    /// The file that holds it (better-sqlite3's addon, node's own binary for node:sqlite, ...).
    pub origin: String,
    /// Its SQLite version (`sqlite_version()`).
    pub version: String,
}

/// The SQLite library the engines of this process run on; absent before the first attach or open.
#[napi]
pub fn sqlite_library() -> Option<SqliteLibrary> {
    syncline::host::bound_library().map(|(origin, version)| SqliteLibrary { origin, version })
}

/// Prove that a database handle of the app's driver runs on the same SQLite library as the
/// engines (through `PRAGMA soft_heap_limit`, restored afterwards). Throws `SqliteLibrary` when
/// it does not (two SQLite copies in one process), or when no library is bound yet.
#[napi(ts_args_type = "db: SqliteDatabase")]
pub fn check_shared(db: JsRef) -> napi::Result<(), Code> {
    let driver = Driver(&db);
    sync(driver.method(c"exec"))?;
    sync(syncline::host::check_shared(&mut |n| driver.set_soft_heap_limit(n)))
}

#[napi(js_name = "__extensionPath", skip_typescript)]
pub fn extension_path() -> napi::Result<String, Code> {
    sync(addon_file())
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

struct Shared {
    /// Shared with the background sync loops started from this engine.
    core: Arc<syncline::SyncEngine>,
    /// JS resolvers registered (per table name; only counted, the core keeps them).
    resolvers: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Imports in flight that may call a JS resolver on the JS thread.
    imports_needing_js: AtomicUsize,
    /// Live subscriptions, kept here so that a JS handle collected by the GC does not end
    /// its subscription: only `close()` (or closing the engine) does.
    subscriptions: std::sync::Mutex<Vec<Arc<syncline::Subscription>>>,
    /// Running background syncs, kept here for the same reason: only `stop()` or closing the
    /// engine ends them.
    sync_handles: std::sync::Mutex<Vec<Arc<syncline::net::SyncHandle>>>,
}

impl Shared {
    /// Synchronous calls run on the JS thread. While an import that may call a JS resolver
    /// is in flight, such a call would wait for the engine's lock held by that import, which
    /// itself waits for the JS thread: refuse instead of deadlocking.
    fn check_js_thread_free(&self) -> syncline::Result<()> {
        if self.imports_needing_js.load(Ordering::SeqCst) > 0 {
            return Err(syncline::Error::new(
                ErrorKind::Reentrant,
                "an importBundle() that may call a JavaScript resolver is in progress; await it before calling the engine \
                 (and never call the engine from inside a resolver)",
            ));
        }
        Ok(())
    }

    /// A JS resolver runs on the JS thread while the import that calls it holds the engine. A
    /// background sync imports at moments JS cannot know, so any synchronous engine call could
    /// then deadlock with it: the two are not combined (one-shot `sync()` is counted like an
    /// import instead).
    fn check_no_background_sync(&self) -> syncline::Result<()> {
        let running = self.sync_handles.lock().unwrap().iter().any(|h| h.status().is_ok_and(|s| s.running));
        if running {
            return Err(invalid(
                "a background sync (startSync) is running on this engine: stop it before registering a JavaScript resolver \
                 (a background pass could call the resolver while the JavaScript thread waits for the engine)",
            ));
        }
        Ok(())
    }

    fn core(&self) -> syncline::Result<&syncline::SyncEngine> {
        self.check_js_thread_free()?;
        Ok(&*self.core)
    }
}

/// The sync engine for one SQLite database file.
#[napi]
pub struct SyncEngine {
    shared: Arc<Shared>,
}

fn open_engine(path: &str, opts: syncline::Options) -> syncline::Result<SyncEngine> {
    let core = Arc::new(syncline::SyncEngine::open(path, opts)?);
    Ok(SyncEngine {
        shared: Arc::new(Shared {
            core,
            resolvers: Default::default(),
            imports_needing_js: AtomicUsize::new(0),
            subscriptions: Default::default(),
            sync_handles: Default::default(),
        }),
    })
}

pub struct OpenTask {
    path: String,
    options: Option<syncline::Result<syncline::Options>>,
}

impl Task for OpenTask {
    type Output = syncline::Result<SyncEngine>;
    type JsValue = SyncEngine;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let opts = self.options.take().unwrap_or_else(|| Ok(Default::default()));
        Ok(opts.and_then(|o| open_engine(&self.path, o)))
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<SyncEngine> {
        settle(&env, output)
    }
}

pub struct GenerateTask {
    shared: Arc<Shared>,
    peer: Option<syncline::Result<SiteId>>,
    compress: bool,
    progress: Option<ProgressArg>,
}

impl Task for GenerateTask {
    type Output = Progressed<Vec<u8>>;
    type JsValue = Buffer;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let progress = match JsProgress::new(self.progress.take()) {
            Ok(p) => p,
            Err(e) => return Ok(Progressed::Done(Err(e))),
        };
        let mut run = || {
            let peer = self.peer.take().transpose()?;
            let opts = syncline::ExportOptions { peer: peer.as_ref(), compress: self.compress };
            Ok(self.shared.core.generate_bundle_with(opts, &mut |d, t| progress.call(d, t))?.0)
        };
        let outcome = run();
        Ok(progress.finish(outcome))
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Buffer> {
        output.settle(&env).map(Buffer::from)
    }
}

pub struct WriteTask {
    shared: Arc<Shared>,
    peer: Option<syncline::Result<SiteId>>,
    compress: bool,
    path: String,
    progress: Option<ProgressArg>,
}

impl Task for WriteTask {
    type Output = Progressed<syncline::BundleStats>;
    type JsValue = BundleStats;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let progress = match JsProgress::new(self.progress.take()) {
            Ok(p) => p,
            Err(e) => return Ok(Progressed::Done(Err(e))),
        };
        let mut run = || {
            let peer = self.peer.take().transpose()?;
            let opts = syncline::ExportOptions { peer: peer.as_ref(), compress: self.compress };
            self.shared.core.write_bundle_with(opts, &self.path, &mut |d, t| progress.call(d, t))
        };
        let outcome = run();
        Ok(progress.finish(outcome))
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<BundleStats> {
        output.settle(&env).map(|s| BundleStats { rows: count(s.rows), changes: count(s.changes), bytes: count(s.bytes) })
    }
}

fn bundle_options(o: Option<BundleOptions>) -> (Option<syncline::Result<SiteId>>, bool, Option<ProgressArg>) {
    match o {
        Some(o) => (o.peer.map(|p| site(&p)), o.compress.unwrap_or(false), o.on_progress),
        None => (None, false, None),
    }
}

/// Marks a task that may call a JS resolver on the JS thread: counted in
/// `imports_needing_js` from its creation until it settles or is dropped.
struct JsResolverGuard {
    shared: Arc<Shared>,
    counted: bool,
}

impl JsResolverGuard {
    fn enter(shared: &Arc<Shared>) -> JsResolverGuard {
        let counted = !shared.resolvers.lock().unwrap().is_empty();
        if counted {
            shared.imports_needing_js.fetch_add(1, Ordering::SeqCst);
        }
        JsResolverGuard { shared: shared.clone(), counted }
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.shared.imports_needing_js.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for JsResolverGuard {
    fn drop(&mut self) {
        self.release();
    }
}

pub struct ImportTask {
    shared: Arc<Shared>,
    source: Option<Result<Source, String>>,
    progress: Option<ProgressArg>,
    guard: JsResolverGuard,
}

impl Task for ImportTask {
    type Output = Progressed<syncline::ImportReport>;
    type JsValue = ImportReport;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let core = &self.shared.core;
        // The core decodes a bundle before it looks at the connection: a closed engine still
        // answers Closed first, as every other call does.
        if core.is_closed() {
            return Ok(Progressed::Done(Err(syncline::Error::new(ErrorKind::Closed, "the engine is closed"))));
        }
        let progress = match JsProgress::new(self.progress.take()) {
            Ok(p) => p,
            Err(e) => return Ok(Progressed::Done(Err(e))),
        };
        let mut report = |d: u64, t: u64| progress.call(d, t);
        let outcome = match self.source.take() {
            Some(Ok(Source::Bytes(b))) => core.import_bundle_with(&b, &mut report),
            Some(Ok(Source::Path(p))) => core.import_bundle_file_with(p, &mut report),
            Some(Err(m)) => Err(invalid(m)),
            None => Err(invalid("importBundle: no bundle")),
        };
        Ok(progress.finish(outcome))
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<ImportReport> {
        self.guard.release();
        output.settle(&env).map(ImportReport::from)
    }
    fn reject(&mut self, _env: Env, err: napi::Error) -> napi::Result<ImportReport> {
        self.guard.release();
        Err(err)
    }
}

#[napi]
impl SyncEngine {
    /// Open (or create) a database file and install the sync metadata if missing. The engine
    /// runs on the SQLite library of the first database attached (`SyncEngine.attach`); before
    /// any, on better-sqlite3's, the one every better-sqlite3 `Database` of the process uses.
    #[napi(constructor)]
    pub fn new(env: Env, path: String, options: Option<EngineOptions>) -> napi::Result<Self, Code> {
        sync(ensure_host(env.raw()).and_then(|_| self::options(options)).and_then(|o| open_engine(&path, o)))
    }

    /// Like the constructor, but opens the file off the JS thread.
    #[napi(ts_return_type = "Promise<SyncEngine>")]
    pub fn open(env: Env, path: String, options: Option<EngineOptions>) -> AsyncTask<OpenTask> {
        let options = ensure_host(env.raw()).and_then(|_| self::options(options));
        AsyncTask::new(OpenTask { path, options: Some(options) })
    }

    /// Open the engine on the database file of the app's own connection, in the same SQLite
    /// library: loads this addon into `db` as a SQLite extension (`db.loadExtension`, which
    /// also gives that connection the `syncline_*` SQL functions), proves with
    /// `PRAGMA soft_heap_limit` that the driver and the engine share one SQLite, and opens the
    /// engine on `db`'s main file. `db` is a better-sqlite3 `Database` or a node:sqlite
    /// `DatabaseSync` opened with `{ allowExtension: true }`; it stays the app's (keep using
    /// it, close it whenever). Throws `SqliteLibrary` if `db` runs on another SQLite library
    /// than the engines already open in this process, `InvalidArgument` for an in-memory
    /// database or something that is not a database handle.
    #[napi(ts_args_type = "db: SqliteDatabase, options?: EngineOptions")]
    pub fn attach(db: JsRef, options: Option<EngineOptions>) -> napi::Result<Self, Code> {
        sync((|| {
            let driver = Driver(&db);
            bind_to(&driver)?;
            let file = driver.main_file()?;
            if file.is_empty() {
                return Err(invalid("SyncEngine.attach needs a database file, not an in-memory or temporary database"));
            }
            open_engine(&file, self::options(options)?)
        })())
    }

    /// This replica's site id (32 hex digits).
    #[napi(getter)]
    pub fn site_id(&self) -> napi::Result<String, Code> {
        sync(self.shared.core().and_then(|c| c.site_id()).map(|s| s.to_hex()))
    }

    /// The database file.
    #[napi(getter)]
    pub fn path(&self) -> String {
        self.shared.core.path().to_string_lossy().into_owned()
    }

    /// Give this database a new random site id (after copying the file); returns it.
    #[napi]
    pub fn reset_site_id(&self) -> napi::Result<String, Code> {
        sync(self.shared.core().and_then(|c| c.reset_site_id()).map(|s| s.to_hex()))
    }

    /// Give this database a chosen site id (32 hex digits); returns it.
    #[napi]
    pub fn set_site_id(&self, hex: String) -> napi::Result<String, Code> {
        sync(self.shared.core().and_then(|c| c.set_site_id(site(&hex)?)).map(|s| s.to_hex()))
    }

    /// Fix the wall clock (Unix ms) used for new stamps; `null` returns to the system clock.
    #[napi]
    pub fn set_manual_clock(&self, ms: Option<i64>) -> napi::Result<(), Code> {
        sync((|| {
            let ms = ms.map(|v| non_negative("ms", v)).transpose()?;
            self.shared.core()?.set_manual_clock(ms)
        })())
    }

    /// Start syncing an existing table (validated; existing rows are back-filled).
    #[napi]
    pub fn enable_sync(&self, table: String, options: Option<EnableOptions>) -> napi::Result<(), Code> {
        sync((|| {
            let mut opts = syncline::EnableOptions::default();
            if let Some(o) = options {
                if let Some(s) = o.strategy {
                    opts.strategy = s.parse::<Strategy>()?;
                }
                opts.allow_autoincrement = o.allow_autoincrement.unwrap_or(false);
            }
            self.shared.core()?.enable_sync(&table, opts)
        })())
    }

    /// Stop syncing a table (its data stays).
    #[napi]
    pub fn disable_sync(&self, table: String) -> napi::Result<(), Code> {
        sync(self.shared.core().and_then(|c| c.disable_sync(&table)))
    }

    /// Change a synced table's conflict strategy.
    #[napi(ts_args_type = "table: string, strategy: Strategy")]
    pub fn set_strategy(&self, table: String, strategy: String) -> napi::Result<(), Code> {
        sync((|| self.shared.core()?.set_strategy(&table, strategy.parse()?))())
    }

    /// Register the resolver of a `custom` table. It is called with a `ConflictInput` and must
    /// return synchronously a `Resolution`; it must be deterministic and symmetric in
    /// (local, remote) or replicas diverge. A throwing resolver aborts the import (code
    /// `Resolver`) with nothing applied. It must not call the engine.
    #[napi(ts_args_type = "table: string, resolver: (conflict: ConflictInput) => Resolution")]
    pub fn set_resolver(&self, table: String, resolver: ResolverFn) -> napi::Result<(), Code> {
        sync(self.shared.check_no_background_sync())?;
        sync(self.shared.core().map(|c| c.set_resolver(&table, Arc::new(JsResolver(resolver)))))?;
        self.shared.resolvers.lock().unwrap().insert(table);
        Ok(())
    }

    /// Remove a table's resolver.
    #[napi]
    pub fn clear_resolver(&self, table: String) -> napi::Result<(), Code> {
        sync(self.shared.core().map(|c| c.clear_resolver(&table)))?;
        self.shared.resolvers.lock().unwrap().remove(&table);
        Ok(())
    }

    /// A bundle of what `peer` lacks (everything when no peer is given). Runs off the JS thread.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn generate_bundle(&self, options: Option<BundleOptions>) -> AsyncTask<GenerateTask> {
        let (peer, compress, progress) = bundle_options(options);
        AsyncTask::new(GenerateTask { shared: self.shared.clone(), peer, compress, progress })
    }

    /// Write the bundle for `peer` to a file (atomically). Runs off the JS thread.
    #[napi(ts_return_type = "Promise<BundleStats>")]
    pub fn write_bundle(&self, path: String, options: Option<BundleOptions>) -> AsyncTask<WriteTask> {
        let (peer, compress, progress) = bundle_options(options);
        AsyncTask::new(WriteTask { shared: self.shared.clone(), peer, compress, path, progress })
    }

    /// Import a bundle (bytes or a file path): one transaction, idempotent; on error nothing
    /// changes. Runs off the JS thread.
    #[napi(ts_args_type = "bundle: Uint8Array | string, options?: ImportOptions", ts_return_type = "Promise<ImportReport>")]
    pub fn import_bundle(&self, bundle: BundleSource, options: Option<ImportOptions>) -> AsyncTask<ImportTask> {
        let guard = JsResolverGuard::enter(&self.shared);
        let progress = options.and_then(|o| o.on_progress);
        AsyncTask::new(ImportTask { shared: self.shared.clone(), source: Some(bundle.0), progress, guard })
    }

    /// Open conflicts (manual tables), oldest first.
    #[napi]
    pub fn conflicts(&self) -> napi::Result<Vec<Conflict>, Code> {
        sync(self.shared.core().and_then(|c| c.conflicts())).map(|v| v.into_iter().map(conflict).collect())
    }

    /// Every stored conflict, resolved ones included.
    #[napi]
    pub fn all_conflicts(&self) -> napi::Result<Vec<Conflict>, Code> {
        sync(self.shared.core().and_then(|c| c.all_conflicts())).map(|v| v.into_iter().map(conflict).collect())
    }

    /// Resolve a stored conflict: `'local'`, `'remote'`, `{ local: true }`, `{ remote: true }`
    /// or `{ value }`. The outcome is a new local change that every replica converges on.
    #[napi(ts_args_type = "id: number, resolution: Resolution")]
    pub fn resolve(&self, id: i64, resolution: ResolutionArg) -> napi::Result<(), Code> {
        sync((|| self.shared.core()?.resolve(id, resolution.0.map_err(invalid)?))())
    }

    /// Site, tables, peers with pending changes, version vector, open conflicts.
    #[napi]
    pub fn status(&self) -> napi::Result<EngineStatus, Code> {
        sync(self.shared.core().and_then(|c| c.status())).map(status)
    }

    /// Add a column to a synced table through Syncline: the ALTER, its capture and a migration
    /// stamped with the clock, in one transaction. The migration travels in bundles; peers
    /// apply it (or hold it, see `setMigrationPolicy`) before the rows that use the column.
    /// `declType` is a plain SQLite type name, `defaultValue` what rows that never set it hold
    /// (default null).
    #[napi(ts_args_type = "table: string, column: string, declType: string, defaultValue?: SqlValue")]
    pub fn add_column(&self, table: String, column: String, decl_type: String, default_value: Option<Param>) -> napi::Result<(), Code> {
        sync((|| {
            let default = match default_value {
                Some(p) => p.0.map_err(|m| invalid(format!("defaultValue: {m}")))?,
                None => Value::Null,
            };
            self.shared.core()?.add_column(&table, &column, &decl_type, default)
        })())
    }

    /// What imports do with received migrations: `'apply'` (the default) or `'hold'` (listed
    /// in `status().schemaChanges` as held, for the app to apply). Stored in the file.
    #[napi(ts_args_type = "policy: MigrationPolicy")]
    pub fn set_migration_policy(&self, policy: String) -> napi::Result<(), Code> {
        sync((|| self.shared.core()?.set_migration_policy(policy.parse()?))())
    }

    /// The migration policy in force.
    #[napi(ts_return_type = "MigrationPolicy")]
    pub fn migration_policy(&self) -> napi::Result<String, Code> {
        sync(self.shared.core().and_then(|c| c.migration_policy())).map(|p| p.as_str().to_owned())
    }

    /// Apply every held migration now, whatever the policy; returns how many changed a table.
    #[napi]
    pub fn apply_held_migrations(&self) -> napi::Result<i64, Code> {
        sync(self.shared.core().and_then(|c| c.apply_held_migrations())).map(count)
    }

    /// Purge the tombstones every known peer acknowledged that are older than `retainMs`
    /// (default 0), then vacuum the file (spec/merge-rules.md §8a). With no peer known nothing
    /// is purged; afterwards a sender that missed a purged delete gets `NeedsSnapshot`.
    #[napi]
    pub fn compact(&self, retain_ms: Option<i64>) -> napi::Result<CompactReport, Code> {
        sync((|| {
            let retain = millis("retainMs", retain_ms.unwrap_or(0))?;
            self.shared.core()?.compact(retain)
        })())
        .map(|r| CompactReport {
            purged: count(r.purged),
            bytes_before: count(r.bytes_before),
            bytes_after: count(r.bytes_after),
        })
    }

    /// A SHA-256 (64 hex digits) over every synced table's rows and their sync state (causal
    /// lengths, row and cell stamps with site ids). Replicas that converged have equal hashes,
    /// whatever their local bookkeeping (peers, conflict log); every binding computes the same.
    #[napi]
    pub fn state_hash(&self) -> napi::Result<String, Code> {
        sync(self.shared.core().and_then(|c| c.state_hash()))
    }

    /// Write a snapshot for a new device to `path` (a new file): the synced tables and sync
    /// state without this replica's site id. The device copies it into place and opens it (it
    /// gets a site id of its own); its first sync carries only what changed since.
    #[napi]
    pub fn snapshot(&self, path: String) -> napi::Result<(), Code> {
        sync(self.shared.core().and_then(|c| c.snapshot(&path)))
    }

    /// Subscribe to change events (local writes by any connection or process, imported
    /// changes, conflicts). Events arrive asynchronously on the JS thread. The subscription
    /// lasts until `close()` on the returned handle or on the engine (dropping the handle does
    /// not end it); it does not keep the process alive.
    #[napi(ts_args_type = "callback: (event: ChangeEvent) => void")]
    pub fn subscribe(&self, callback: ObserverFn) -> napi::Result<Subscription, Code> {
        let sub = Arc::new(sync(self.shared.core().and_then(|c| c.subscribe(Arc::new(JsObserver(callback)))))?);
        self.shared.subscriptions.lock().unwrap().push(sub.clone());
        Ok(Subscription { inner: Some(sub), shared: Arc::downgrade(&self.shared) })
    }

    /// Run one SQL statement; returns the number of rows changed. Writes are captured.
    #[napi(ts_args_type = "sql: string, params?: SqlValue[]")]
    pub fn execute(&self, sql: String, params: Option<Vec<Param>>) -> napi::Result<i64, Code> {
        sync((|| Ok(self.shared.core()?.execute(&sql, &self::params(params)?)? as i64))())
    }

    /// Run several SQL statements (no parameters), e.g. a schema.
    #[napi]
    pub fn execute_batch(&self, sql: String) -> napi::Result<(), Code> {
        sync(self.shared.core().and_then(|c| c.execute_batch(&sql)))
    }

    /// Run a query and return its column names and every row.
    #[napi(ts_args_type = "sql: string, params?: SqlValue[]")]
    pub fn query(&self, sql: String, params: Option<Vec<Param>>) -> napi::Result<QueryResult, Code> {
        sync((|| {
            let q = self.shared.core()?.query(&sql, &self::params(params)?)?;
            Ok(QueryResult { columns: q.columns, rows: q.rows.into_iter().map(values_out).collect() })
        })())
    }

    /// Close the connection, stop the watcher and every background sync started on this
    /// engine. Later calls fail with code `Closed`.
    #[napi]
    pub fn close(&self) -> napi::Result<(), Code> {
        // The core's close() stops the watcher and every background sync of the engine (each
        // finishes a pass in progress).
        sync(self.shared.core().and_then(|c| c.close()))?;
        self.shared.sync_handles.lock().unwrap().clear();
        self.shared.subscriptions.lock().unwrap().clear();
        Ok(())
    }

    /// Sync once with the server at `url` (`http://host:port`, e.g. `syncline serve`): push
    /// what it lacks, pull what this replica lacks, in pages. Runs off the JS thread. Rejects
    /// with code `Network` (transport failed), `Auth` (token refused) or the server's error
    /// code; a failed pass can simply be repeated.
    #[napi(ts_return_type = "Promise<SyncReport>")]
    pub fn sync(&self, url: String, options: Option<SyncOptions>) -> AsyncTask<SyncTask> {
        let guard = JsResolverGuard::enter(&self.shared);
        let (token, progress) = options.map(|o| (o.token, o.on_progress)).unwrap_or((None, None));
        AsyncTask::new(SyncTask { shared: self.shared.clone(), url, token, progress, guard })
    }

    /// Start a new device from the snapshot of the server at `url` (`GET /v1/snapshot`):
    /// download it to `path`, a new file (the core's `net::clone_snapshot`, off the JS thread);
    /// resolves with its size in bytes. Open it (`new SyncEngine(path)`) and `sync()`: the first
    /// pass carries only what changed since the snapshot. Rejects with `InvalidArgument` if
    /// `path` exists, `InvalidBundle` if the file is not a snapshot of that server, `Auth`,
    /// `Network`; nothing is left at `path` after an error.
    #[napi(js_name = "clone", ts_return_type = "Promise<number>")]
    pub fn clone_snapshot(env: Env, url: String, path: String, options: Option<CloneOptions>) -> AsyncTask<CloneTask> {
        let host = ensure_host(env.raw());
        let (token, progress) = options.map(|o| (o.token, o.on_progress)).unwrap_or((None, None));
        AsyncTask::new(CloneTask { host: Some(host), url, path, token, progress })
    }

    /// Sync with the server at `url` in the background until `stop()` (or `close()` of the
    /// engine): at once, then every `intervalMs` while all is well, backing off after
    /// failures; with `live`, also as soon as the server announces another client's push
    /// (WebSocket) or a local write happens. The loop runs on its own thread; it does not keep
    /// the process alive. Not available while a table has a JavaScript resolver.
    #[napi]
    pub fn start_sync(&self, url: String, options: Option<StartSyncOptions>) -> napi::Result<SyncHandle, Code> {
        let handle = sync((|| {
            self.shared.core()?;
            if !self.shared.resolvers.lock().unwrap().is_empty() {
                return Err(invalid(
                    "startSync is not available while a table has a JavaScript resolver (a background pass would call it \
                     while the JavaScript thread may be waiting for the engine); use sync() instead",
                ));
            }
            let (token, o) = start_options(options)?;
            Ok(Arc::new(self.shared.core.start_sync(&url, token.as_deref(), o)?))
        })())?;
        self.shared.sync_handles.lock().unwrap().push(handle.clone());
        Ok(SyncHandle { inner: Some(handle), shared: Arc::downgrade(&self.shared) })
    }
}

/// A live subscription: `close()` stops it.
#[napi]
pub struct Subscription {
    inner: Option<Arc<syncline::Subscription>>,
    shared: std::sync::Weak<Shared>,
}

#[napi]
impl Subscription {
    /// Stop receiving events (idempotent).
    #[napi]
    pub fn close(&mut self) {
        if let Some(s) = self.inner.take() {
            s.close();
            if let Some(shared) = self.shared.upgrade() {
                shared.subscriptions.lock().unwrap().retain(|x| !Arc::ptr_eq(x, &s));
            }
        }
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.as_ref().is_none_or(|s| s.is_closed())
    }
}

// ---------------------------------------------------------------------------------------------
// Network sync (spec/sync-protocol.md)
// ---------------------------------------------------------------------------------------------

/// Options of `sync()`.
#[napi(object, object_to_js = false)]
pub struct SyncOptions {
    /// Bearer token presented to the server.
    pub token: Option<String>,
    /// Called with (changes pulled so far, 0) after each page: the total is not known in
    /// advance. Otherwise as `BundleOptions.onProgress` (the pass cannot be stopped midway).
    #[napi(ts_type = "(pulled: number, total: number) => void")]
    pub on_progress: Option<ProgressArg>,
}

/// Options of `SyncEngine.clone()`.
#[napi(object, object_to_js = false)]
pub struct CloneOptions {
    /// Bearer token presented to the server.
    pub token: Option<String>,
    /// Called with (bytes received, total bytes; 0 if the server did not say) as the snapshot
    /// arrives. Otherwise as `BundleOptions.onProgress`.
    #[napi(ts_type = "(bytes: number, total: number) => void")]
    pub on_progress: Option<ProgressArg>,
}

/// Options of `startSync()` (all optional; `defaultSyncOptions()` gives the core's defaults).
#[napi(object)]
pub struct StartSyncOptions {
    /// Bearer token presented to the server.
    pub token: Option<String>,
    /// Time between syncs while all is well (default 30000).
    pub interval_ms: Option<i64>,
    /// The longest wait after repeated failures (default 60000).
    pub max_backoff_ms: Option<i64>,
    /// Keep a WebSocket open and sync as soon as another client's push is announced or a local
    /// write happens (default false).
    pub live: Option<bool>,
    /// Most rows per page in each direction (default 5000).
    pub page_rows: Option<i64>,
    /// Longest wait for one HTTP request (default 60000).
    pub timeout_ms: Option<i64>,
}

/// A duration in ms (negative is not a duration; whether zero is allowed is the core's
/// `SyncOptions::validate`).
fn millis(name: &str, v: i64) -> syncline::Result<std::time::Duration> {
    non_negative(name, v).map(std::time::Duration::from_millis)
}

fn start_options(o: Option<StartSyncOptions>) -> syncline::Result<(Option<String>, syncline::net::SyncOptions)> {
    let mut out = syncline::net::SyncOptions::default();
    let Some(o) = o else { return Ok((None, out)) };
    if let Some(v) = o.interval_ms {
        out.interval = millis("intervalMs", v)?;
    }
    if let Some(v) = o.max_backoff_ms {
        out.max_backoff = millis("maxBackoffMs", v)?;
    }
    if let Some(v) = o.live {
        out.live = v;
    }
    if let Some(v) = o.page_rows {
        out.page_rows = non_negative("pageRows", v)?;
    }
    if let Some(v) = o.timeout_ms {
        out.timeout = millis("timeoutMs", v)?;
    }
    Ok((o.token, out))
}

/// What one sync pass did, counted in changes (row states and cells).
#[napi(object, object_from_js = false)]
pub struct SyncReport {
    /// Changes sent to the server.
    pub pushed: i64,
    /// Of those, changes that altered the server.
    pub server_applied: i64,
    /// Changes received from the server.
    pub pulled: i64,
    /// Of those, changes that altered this replica.
    pub applied: i64,
    /// Cells changed concurrently here and at the server.
    pub conflicts: i64,
    /// Received changes refused by a local constraint.
    pub rejected: i64,
    /// HTTP requests made (`/v1/info` included).
    pub round_trips: i64,
}

impl From<syncline::net::SyncReport> for SyncReport {
    fn from(r: syncline::net::SyncReport) -> Self {
        SyncReport {
            pushed: count(r.pushed),
            server_applied: count(r.server_applied),
            pulled: count(r.pulled),
            applied: count(r.applied),
            conflicts: count(r.conflicts),
            rejected: count(r.rejected),
            round_trips: i64::from(r.round_trips),
        }
    }
}

/// The error of a failed background pass (`err.code` and `err.message` of the same failure
/// thrown by `sync()`).
#[napi(object, object_from_js = false)]
pub struct SyncError {
    #[napi(ts_type = "ErrorCode")]
    pub code: String,
    pub message: String,
}

/// What a background sync has done so far (a snapshot).
#[napi(object, object_from_js = false)]
pub struct SyncStatus {
    /// False once the loop was stopped.
    pub running: bool,
    /// Completed sync passes.
    pub syncs: i64,
    /// Failures since the last success.
    pub failures: i64,
    /// When the last pass succeeded, in Unix ms (as `Date.now()`); absent before the first.
    pub last_success: Option<f64>,
    /// The error of the last pass, if it failed.
    pub last_error: Option<SyncError>,
    /// What the last successful pass did.
    pub last_report: Option<SyncReport>,
    /// Local changes the server is not yet known to hold.
    pub pending: i64,
}

fn sync_status(s: syncline::net::SyncStatus) -> SyncStatus {
    SyncStatus {
        running: s.running,
        syncs: count(s.syncs),
        failures: i64::from(s.failures),
        last_success: s.last_success.map(|t| t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_millis() as f64)),
        last_error: s.last_error.map(|e| SyncError { code: e.kind().code().to_owned(), message: e.message().to_owned() }),
        last_report: s.last_report.map(SyncReport::from),
        pending: count(s.pending),
    }
}

pub struct SyncTask {
    shared: Arc<Shared>,
    url: String,
    token: Option<String>,
    progress: Option<ProgressArg>,
    guard: JsResolverGuard,
}

impl Task for SyncTask {
    type Output = Progressed<syncline::net::SyncReport>;
    type JsValue = SyncReport;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let progress = match JsProgress::new(self.progress.take()) {
            Ok(p) => p,
            Err(e) => return Ok(Progressed::Done(Err(e))),
        };
        let outcome = self.shared.core.sync_with(&self.url, self.token.as_deref(), &mut |d, t| progress.call(d, t));
        Ok(progress.finish(outcome))
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<SyncReport> {
        self.guard.release();
        output.settle(&env).map(SyncReport::from)
    }
    fn reject(&mut self, _env: Env, err: napi::Error) -> napi::Result<SyncReport> {
        self.guard.release();
        Err(err)
    }
}

pub struct CloneTask {
    /// The SQLite library bound on the JS thread (the download is checked with it).
    host: Option<syncline::Result<()>>,
    url: String,
    path: String,
    token: Option<String>,
    progress: Option<ProgressArg>,
}

impl Task for CloneTask {
    type Output = Progressed<u64>;
    type JsValue = i64;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        if let Some(Err(e)) = self.host.take() {
            return Ok(Progressed::Done(Err(e)));
        }
        let progress = match JsProgress::new(self.progress.take()) {
            Ok(p) => p,
            Err(e) => return Ok(Progressed::Done(Err(e))),
        };
        let path = std::path::Path::new(&self.path);
        let outcome = syncline::net::clone_snapshot(&self.url, self.token.as_deref(), path, &mut |d, t| progress.call(d, t));
        Ok(progress.finish(outcome))
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<i64> {
        output.settle(&env).map(count)
    }
}

pub struct StopTask {
    handle: Option<Arc<syncline::net::SyncHandle>>,
}

impl Task for StopTask {
    type Output = ();
    type JsValue = ();
    fn compute(&mut self) -> napi::Result<()> {
        if let Some(h) = self.handle.take() {
            h.stop();
        }
        Ok(())
    }
    fn resolve(&mut self, _env: Env, _output: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// A background sync started by `startSync()`.
#[napi]
pub struct SyncHandle {
    inner: Option<Arc<syncline::net::SyncHandle>>,
    shared: std::sync::Weak<Shared>,
}

#[napi]
impl SyncHandle {
    /// The loop's progress and the local changes the server still lacks.
    #[napi]
    pub fn status(&self) -> napi::Result<SyncStatus, Code> {
        let h = sync(self.inner.as_ref().ok_or_else(|| syncline::Error::new(ErrorKind::Closed, "the sync handle is gone")))?;
        sync(h.status()).map(sync_status)
    }

    /// Sync now instead of at the end of the current wait (returns at once).
    #[napi]
    pub fn sync_now(&self) {
        if let Some(h) = &self.inner {
            h.sync_now();
        }
    }

    /// Stop the loop (a pass in progress is finished first); resolves once it has stopped.
    /// Idempotent. `status()` keeps answering afterwards (`running: false`).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop(&self) -> AsyncTask<StopTask> {
        if let (Some(h), Some(shared)) = (&self.inner, self.shared.upgrade()) {
            shared.sync_handles.lock().unwrap().retain(|x| !Arc::ptr_eq(x, h));
        }
        AsyncTask::new(StopTask { handle: self.inner.clone() })
    }
}

/// A fresh UUIDv7 (time-ordered) string, the recommended primary key for synced tables.
#[napi]
pub fn uuid7() -> String {
    syncline::uuid7()
}

/// Every error code the engine can throw (`err.code`).
#[napi(ts_return_type = "ErrorCode[]")]
pub fn error_codes() -> Vec<&'static str> {
    ErrorKind::ALL.iter().map(|k| k.code()).collect()
}

/// An error code and what it means.
#[napi(object, object_from_js = false)]
pub struct ErrorKindInfo {
    #[napi(ts_type = "ErrorCode")]
    pub code: String,
    pub description: String,
}

/// Every error code with its meaning: the core's list of kinds (`ErrorKind::ALL`), in order.
#[napi]
pub fn error_kinds() -> Vec<ErrorKindInfo> {
    ErrorKind::ALL.iter().map(|k| ErrorKindInfo { code: k.code().to_owned(), description: k.description().to_owned() }).collect()
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The options an engine opens with when none are given (the core's `Options::default()`).
#[napi]
pub fn default_options() -> EngineOptions {
    let o = syncline::Options::default();
    EngineOptions {
        max_drift_ms: Some(o.max_drift_ms as i64),
        busy_timeout_ms: Some(o.busy_timeout_ms as i64),
        watch_interval_ms: Some(o.watch_interval_ms as i64),
    }
}

/// The options `startSync` runs with when none are given (the core's `SyncOptions::default()`).
#[napi]
pub fn default_sync_options() -> StartSyncOptions {
    let o = syncline::net::SyncOptions::default();
    StartSyncOptions {
        token: None,
        interval_ms: Some(ms(o.interval)),
        max_backoff_ms: Some(ms(o.max_backoff)),
        live: Some(o.live),
        page_rows: Some(o.page_rows as i64),
        timeout_ms: Some(ms(o.timeout)),
    }
}
