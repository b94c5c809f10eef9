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

/// Engine options (all optional; defaults: maxDriftMs 300000, busyTimeoutMs 10000,
/// watchIntervalMs 100).
#[napi(object)]
pub struct EngineOptions {
    /// How far (ms) a remote stamp may lie ahead of the local clock before its bundle is refused.
    pub max_drift_ms: Option<i64>,
    /// How long (ms) to wait for another connection's write lock.
    pub busy_timeout_ms: Option<i64>,
    /// How often (ms) the watcher looks for local writes while someone is subscribed.
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
#[napi(object)]
pub struct BundleOptions {
    /// The peer's site id (32 hex digits); omitted or unknown: everything.
    pub peer: Option<String>,
    /// Compress the body with zlib.
    pub compress: Option<bool>,
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
        }
    }
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

fn event(e: &syncline::Event) -> ChangeEvent {
    use syncline::Event as E;
    match e {
        E::LocalChange(c) | E::RemoteChange(c) => ChangeEvent {
            kind: if matches!(e, E::LocalChange(_)) { "local" } else { "remote" }.to_owned(),
            table: c.table.clone(),
            pk: values_out(c.pk.clone()),
            columns: c.columns.clone(),
            deleted: c.deleted,
            conflict: None,
        },
        E::Conflict(c) => ChangeEvent {
            kind: "conflict".to_owned(),
            table: c.table.clone(),
            pk: values_out(c.pk.clone()),
            columns: vec![c.column.clone()],
            deleted: false,
            conflict: Some(conflict(c.clone())),
        },
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
        if !self.sync_handles.lock().unwrap().is_empty() {
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
}

impl Task for GenerateTask {
    type Output = syncline::Result<Vec<u8>>;
    type JsValue = Buffer;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let mut run = || {
            let peer = self.peer.take().transpose()?;
            let opts = syncline::ExportOptions { peer: peer.as_ref(), compress: self.compress };
            Ok(self.shared.core.generate_bundle_with(opts, &mut |_, _| {})?.0)
        };
        Ok(run())
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Buffer> {
        settle(&env, output).map(Buffer::from)
    }
}

pub struct WriteTask {
    shared: Arc<Shared>,
    peer: Option<syncline::Result<SiteId>>,
    compress: bool,
    path: String,
}

impl Task for WriteTask {
    type Output = syncline::Result<syncline::BundleStats>;
    type JsValue = BundleStats;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let mut run = || {
            let peer = self.peer.take().transpose()?;
            let opts = syncline::ExportOptions { peer: peer.as_ref(), compress: self.compress };
            self.shared.core.write_bundle_with(opts, &self.path, &mut |_, _| {})
        };
        Ok(run())
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<BundleStats> {
        settle(&env, output).map(|s| BundleStats { rows: count(s.rows), changes: count(s.changes), bytes: count(s.bytes) })
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
    guard: JsResolverGuard,
}

impl Task for ImportTask {
    type Output = syncline::Result<syncline::ImportReport>;
    type JsValue = ImportReport;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let core = &self.shared.core;
        Ok(match self.source.take() {
            Some(Ok(Source::Bytes(b))) => core.import_bundle(&b),
            Some(Ok(Source::Path(p))) => core.import_bundle_file(p),
            Some(Err(m)) => Err(invalid(m)),
            None => Err(invalid("importBundle: no bundle")),
        })
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<ImportReport> {
        self.guard.release();
        settle(&env, output).map(ImportReport::from)
    }
    fn reject(&mut self, _env: Env, err: napi::Error) -> napi::Result<ImportReport> {
        self.guard.release();
        Err(err)
    }
}

#[napi]
impl SyncEngine {
    /// Open (or create) a database file and install the sync metadata if missing.
    #[napi(constructor)]
    pub fn new(path: String, options: Option<EngineOptions>) -> napi::Result<Self, Code> {
        sync(self::options(options).and_then(|o| open_engine(&path, o)))
    }

    /// Like the constructor, but opens the file off the JS thread.
    #[napi(ts_return_type = "Promise<SyncEngine>")]
    pub fn open(path: String, options: Option<EngineOptions>) -> AsyncTask<OpenTask> {
        AsyncTask::new(OpenTask { path, options: Some(self::options(options)) })
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
        let (peer, compress) = options.map(|o| (o.peer, o.compress.unwrap_or(false))).unwrap_or((None, false));
        AsyncTask::new(GenerateTask { shared: self.shared.clone(), peer: peer.map(|p| site(&p)), compress })
    }

    /// Write the bundle for `peer` to a file (atomically). Runs off the JS thread.
    #[napi(ts_return_type = "Promise<BundleStats>")]
    pub fn write_bundle(&self, path: String, options: Option<BundleOptions>) -> AsyncTask<WriteTask> {
        let (peer, compress) = options.map(|o| (o.peer, o.compress.unwrap_or(false))).unwrap_or((None, false));
        let peer = peer.map(|p| site(&p));
        AsyncTask::new(WriteTask { shared: self.shared.clone(), peer, compress, path })
    }

    /// Import a bundle (bytes or a file path): one transaction, idempotent; on error nothing
    /// changes. Runs off the JS thread.
    #[napi(ts_args_type = "bundle: Uint8Array | string", ts_return_type = "Promise<ImportReport>")]
    pub fn import_bundle(&self, bundle: BundleSource) -> AsyncTask<ImportTask> {
        let guard = JsResolverGuard::enter(&self.shared);
        AsyncTask::new(ImportTask { shared: self.shared.clone(), source: Some(bundle.0), guard })
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

    /// A SHA-256 (64 hex digits) over every synced table's rows and their sync state (causal
    /// lengths, row and cell stamps with site ids). Replicas that converged have equal hashes,
    /// whatever their local bookkeeping (peers, conflict log); every binding computes the same.
    #[napi]
    pub fn state_hash(&self) -> napi::Result<String, Code> {
        sync(self.shared.core().and_then(|c| c.state_hash()))
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

    /// Close the connection and stop the watcher. Later calls fail with code `Closed`.
    #[napi]
    pub fn close(&self) -> napi::Result<(), Code> {
        sync(self.shared.check_js_thread_free())?;
        // Stop the background syncs first (each finishes a pass in progress).
        let handles = std::mem::take(&mut *self.shared.sync_handles.lock().unwrap());
        for h in handles {
            h.stop();
        }
        sync(self.shared.core().and_then(|c| c.close()))?;
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
        let token = options.and_then(|o| o.token);
        AsyncTask::new(SyncTask { shared: self.shared.clone(), url, token, guard })
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
#[napi(object)]
pub struct SyncOptions {
    /// Bearer token presented to the server.
    pub token: Option<String>,
}

/// Options of `startSync()` (all optional).
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

fn millis(name: &str, v: i64) -> syncline::Result<std::time::Duration> {
    match non_negative(name, v)? {
        0 => Err(invalid(format!("{name} must be a positive number of milliseconds, got 0"))),
        ms => Ok(std::time::Duration::from_millis(ms)),
    }
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
    guard: JsResolverGuard,
}

impl Task for SyncTask {
    type Output = syncline::Result<syncline::net::SyncReport>;
    type JsValue = SyncReport;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(self.shared.core.sync(&self.url, self.token.as_deref()))
    }
    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<SyncReport> {
        self.guard.release();
        settle(&env, output).map(SyncReport::from)
    }
    fn reject(&mut self, _env: Env, err: napi::Error) -> napi::Result<SyncReport> {
        self.guard.release();
        Err(err)
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
