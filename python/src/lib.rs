//! `syncline._native`: the private native module under the pure-Python package `syncline`.
//!
//! This crate only converts types, maps errors, adapts callbacks and releases the GIL; every
//! behaviour lives in the `syncline` core crate. Rules kept throughout:
//! - every call into the engine runs with the GIL released (`py.detach`), so a second Python
//!   thread keeps running and a callback on another thread can always take the GIL;
//! - callbacks (resolver, subscriber) take the GIL only around the Python call (`Python::attach`);
//! - core errors become Python exceptions in exactly one place: [`to_py_err`].

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple, PyType};
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use syncline as sl;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

create_exception!(syncline, SynclineError, PyException, "Base class of every Syncline error; `code` is the stable core error code.");

/// One exception class per core error kind, in the order of `ErrorKind::ALL`, made at import
/// from the core's list (name, `code`, docstring): no kind is listed again here.
static ERROR_TYPES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

/// The Python name of a kind's class: `<code>Error`, except `Io`: `SynclineIOError` (the
/// builtin `IOError` is `OSError`).
fn class_name(kind: sl::ErrorKind) -> String {
    match kind {
        sl::ErrorKind::Io => "SynclineIOError".to_owned(),
        k => format!("{}Error", k.code()),
    }
}

fn error_types(py: Python<'_>) -> PyResult<&Vec<Py<PyType>>> {
    ERROR_TYPES.get_or_try_init(py, || {
        let base = py.get_type::<SynclineError>();
        sl::ErrorKind::ALL
            .into_iter()
            .map(|kind| {
                let name = CString::new(format!("syncline.{}", class_name(kind)))?;
                let doc = CString::new(kind.description())?;
                // No class dict through new_type: pyo3 0.30 drops it before Python reads it.
                let ty = PyErr::new_type(py, &name, Some(&doc), Some(&base), None)?;
                ty.bind(py).setattr("code", kind.code())?;
                Ok(ty)
            })
            .collect()
    })
}

/// The exception class of a core error kind (the one mapping of kinds to classes).
fn exception_type(py: Python<'_>, kind: sl::ErrorKind) -> Bound<'_, PyType> {
    let index = sl::ErrorKind::ALL.iter().position(|k| *k == kind);
    match (error_types(py), index) {
        (Ok(types), Some(i)) => types[i].bind(py).clone(),
        // A kind the core adds later still reaches Python, as the base class.
        _ => py.get_type::<SynclineError>(),
    }
}

/// THE conversion of a core error into a Python exception (the orphan rule forbids `From`).
/// The message is the core's; the class carries the stable `code`.
fn to_py_err(e: sl::Error) -> PyErr {
    Python::attach(|py| PyErr::from_type(exception_type(py, e.kind()), e.message().to_owned()))
}

/// `Result<T, sl::Error>` to `PyResult<T>`.
trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}
impl<T> IntoPy<T> for sl::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// A Python value bound as an SQLite value: None, int (64-bit), float, str, bytes-like.
struct PyValue(sl::Value);

impl<'a, 'py> FromPyObject<'a, 'py> for PyValue {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let v = if obj.is_none() {
            sl::Value::Null
        } else if obj.is_instance_of::<PyInt>() {
            // bool is an int subclass: True binds as 1, as in the sqlite3 module.
            sl::Value::Integer(
                obj.extract::<i64>()
                    .map_err(|_| PyOverflowError::new_err(format!("integer {} does not fit in SQLite's signed 64-bit range", &*obj)))?,
            )
        } else if obj.is_instance_of::<PyFloat>() {
            sl::Value::Real(obj.extract::<f64>()?)
        } else if let Ok(s) = obj.cast::<PyString>() {
            sl::Value::Text(s.to_cow()?.into_owned())
        } else if let Ok(b) = obj.cast::<PyBytes>() {
            sl::Value::Blob(b.as_bytes().to_vec())
        } else if let Ok(b) = obj.cast::<PyByteArray>() {
            sl::Value::Blob(b.to_vec())
        } else if obj.is_instance_of::<PyMemoryView>() {
            sl::Value::Blob(obj.call_method0("tobytes")?.cast::<PyBytes>()?.as_bytes().to_vec())
        } else {
            return Err(PyTypeError::new_err(format!(
                "cannot bind a value of type {}: expected int, float, str, bytes or None",
                obj.get_type().name()?
            )));
        };
        Ok(PyValue(v))
    }
}

fn value_to_py(py: Python<'_>, v: &sl::Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        sl::Value::Null => py.None(),
        sl::Value::Integer(i) => i.into_pyobject(py)?.into_any().unbind(),
        sl::Value::Real(f) => f.into_pyobject(py)?.into_any().unbind(),
        sl::Value::Text(s) => PyString::new(py, s).into_any().unbind(),
        sl::Value::Blob(b) => PyBytes::new(py, b).into_any().unbind(),
    })
}

fn values_to_tuple(py: Python<'_>, vs: &[sl::Value]) -> PyResult<Py<PyTuple>> {
    let items = vs.iter().map(|v| value_to_py(py, v)).collect::<PyResult<Vec<_>>>()?;
    Ok(PyTuple::new(py, items)?.unbind())
}

fn core_values(params: Vec<PyValue>) -> Vec<sl::Value> {
    params.into_iter().map(|p| p.0).collect()
}

/// A site id given as 32 hex digits (str) or 16 raw bytes; parsing is the core's.
fn parse_site(obj: &Bound<'_, PyAny>) -> PyResult<sl::SiteId> {
    if let Ok(s) = obj.cast::<PyString>() {
        s.to_cow()?.parse::<sl::SiteId>().py_err()
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        sl::SiteId::from_slice(b.as_bytes()).py_err()
    } else {
        Err(PyTypeError::new_err(format!("a site id is a hex str or 16 bytes, not {}", obj.get_type().name()?)))
    }
}

// ---------------------------------------------------------------------------------------------
// Result objects
// ---------------------------------------------------------------------------------------------

/// One side of a conflict: a value, the stamp that wrote it and the replica that made it.
#[pyclass(frozen, get_all, module = "syncline")]
struct CellVersion {
    value: Py<PyAny>,
    hlc: u64,
    site: String,
}

#[pymethods]
impl CellVersion {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("CellVersion(value={}, hlc={}, site='{}')", self.value.bind(py).repr()?, self.hlc, self.site))
    }
}

fn cell_to_py(py: Python<'_>, c: &sl::CellVersion) -> PyResult<Py<CellVersion>> {
    Py::new(py, CellVersion { value: value_to_py(py, &c.value)?, hlc: c.hlc, site: c.site.to_hex() })
}

/// A conflict: the same cell changed on two replicas since they last synced.
#[pyclass(frozen, get_all, module = "syncline")]
struct Conflict {
    id: Option<i64>,
    table: String,
    pk: Py<PyTuple>,
    column: String,
    local: Py<CellVersion>,
    remote: Py<CellVersion>,
    strategy: String,
    resolution: Option<String>,
}

#[pymethods]
impl Conflict {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Conflict(id={}, table='{}', pk={}, column='{}', local={}, remote={}, strategy='{}', resolution={})",
            self.id.map_or("None".to_owned(), |i| i.to_string()),
            self.table,
            self.pk.bind(py).repr()?,
            self.column,
            self.local.bind(py).repr()?,
            self.remote.bind(py).repr()?,
            self.strategy,
            self.resolution.as_ref().map_or("None".to_owned(), |r| format!("'{r}'")),
        ))
    }
}

fn conflict_to_py(py: Python<'_>, c: &sl::Conflict) -> PyResult<Py<Conflict>> {
    Py::new(
        py,
        Conflict {
            id: c.id,
            table: c.table.clone(),
            pk: values_to_tuple(py, &c.pk)?,
            column: c.column.clone(),
            local: cell_to_py(py, &c.local)?,
            remote: cell_to_py(py, &c.remote)?,
            strategy: c.strategy.as_str().to_owned(),
            resolution: c.resolution.clone(),
        },
    )
}

/// What a custom resolver is shown: a conflict with no id yet, strategy "custom".
fn conflict_input_to_py(py: Python<'_>, c: &sl::ConflictInput) -> PyResult<Py<Conflict>> {
    Py::new(
        py,
        Conflict {
            id: None,
            table: c.table.clone(),
            pk: values_to_tuple(py, &c.pk)?,
            column: c.column.clone(),
            local: cell_to_py(py, &c.local)?,
            remote: cell_to_py(py, &c.remote)?,
            strategy: sl::Strategy::Custom.as_str().to_owned(),
            resolution: None,
        },
    )
}

fn conflicts_to_py(py: Python<'_>, cs: &[sl::Conflict]) -> PyResult<Vec<Py<Conflict>>> {
    cs.iter().map(|c| conflict_to_py(py, c)).collect()
}

/// A decision on a conflict: keep the local value, take the remote one, or write a new value.
#[pyclass(frozen, module = "syncline")]
struct Resolution {
    inner: sl::Resolution,
}

#[pymethods]
impl Resolution {
    /// Keep the local value.
    #[classattr]
    #[allow(non_snake_case)]
    fn LOCAL() -> Resolution {
        Resolution { inner: sl::Resolution::Local }
    }
    /// Take the remote value.
    #[classattr]
    #[allow(non_snake_case)]
    fn REMOTE() -> Resolution {
        Resolution { inner: sl::Resolution::Remote }
    }
    /// Write this value (int, float, str, bytes or None).
    #[staticmethod]
    fn with_value(value: PyValue) -> Resolution {
        Resolution { inner: sl::Resolution::Value(value.0) }
    }
    /// "local", "remote" or "value".
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner {
            sl::Resolution::Local => "local",
            sl::Resolution::Remote => "remote",
            sl::Resolution::Value(_) => "value",
        }
    }
    /// The value to write (None unless `kind == "value"`).
    #[getter]
    fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.inner {
            sl::Resolution::Value(v) => value_to_py(py, v),
            _ => Ok(py.None()),
        }
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Resolution>().is_ok_and(|o| o.get().inner == self.inner)
    }
    fn __hash__(&self) -> u64 {
        match self.inner {
            sl::Resolution::Local => 1,
            sl::Resolution::Remote => 2,
            sl::Resolution::Value(_) => 3,
        }
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(match &self.inner {
            sl::Resolution::Local => "Resolution.LOCAL".to_owned(),
            sl::Resolution::Remote => "Resolution.REMOTE".to_owned(),
            sl::Resolution::Value(v) => format!("Resolution.with_value({})", value_to_py(py, v)?.bind(py).repr()?),
        })
    }
}

/// What an import did, counted in changes (one per cell and one per row state).
#[pyclass(frozen, get_all, module = "syncline")]
struct ImportReport {
    sender: Option<String>,
    rows: u64,
    applied: u64,
    already_known: u64,
    conflicts: u64,
    /// Changes stamped too far ahead of the local clock, kept in `_syncline_quarantine` until
    /// an import after the clock caught up.
    quarantined: u64,
    /// Changes quarantined by earlier imports and applied by this one.
    released: u64,
    rejected: u64,
    /// Migrations the bundle carried that changed a local table.
    migrated: u64,
    /// Changes for a column or table this replica's schema lacks (kept, relayed, applied later).
    held: u64,
}

#[pymethods]
impl ImportReport {
    /// sqlite-sync-core name of `applied`.
    #[getter]
    fn applied_count(&self) -> u64 {
        self.applied
    }
    /// sqlite-sync-core name of `conflicts`.
    #[getter]
    fn conflict_count(&self) -> u64 {
        self.conflicts
    }
    /// sqlite-sync-core name of `already_known`.
    #[getter]
    fn duplicate_count(&self) -> u64 {
        self.already_known
    }
    fn __repr__(&self) -> String {
        format!(
            "ImportReport(sender={}, rows={}, applied={}, already_known={}, conflicts={}, quarantined={}, released={}, rejected={}, migrated={}, held={})",
            self.sender.as_ref().map_or("None".to_owned(), |s| format!("'{s}'")),
            self.rows,
            self.applied,
            self.already_known,
            self.conflicts,
            self.quarantined,
            self.released,
            self.rejected,
            self.migrated,
            self.held
        )
    }
}

impl From<sl::ImportReport> for ImportReport {
    fn from(r: sl::ImportReport) -> Self {
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

/// What a written bundle holds.
#[pyclass(frozen, get_all, module = "syncline")]
struct BundleStats {
    rows: u64,
    changes: u64,
    bytes: u64,
}

#[pymethods]
impl BundleStats {
    fn __repr__(&self) -> String {
        format!("BundleStats(rows={}, changes={}, bytes={})", self.rows, self.changes, self.bytes)
    }
}

/// What a compaction did.
#[pyclass(frozen, get_all, module = "syncline")]
struct CompactReport {
    /// Tombstones purged.
    purged: u64,
    /// The database file's size (with its WAL) before and after.
    bytes_before: u64,
    bytes_after: u64,
}

#[pymethods]
impl CompactReport {
    fn __repr__(&self) -> String {
        format!("CompactReport(purged={}, bytes_before={}, bytes_after={})", self.purged, self.bytes_before, self.bytes_after)
    }
}

/// One entry of the schema log: a column registered after its table was enabled.
#[pyclass(frozen, get_all, module = "syncline")]
struct SchemaChange {
    table: String,
    column: String,
    /// The declared type, upper-cased.
    decl_type: String,
    /// "detected", "local" or "remote".
    source: String,
    /// "applied" or "held".
    state: String,
    hlc: u64,
}

#[pymethods]
impl SchemaChange {
    fn __repr__(&self) -> String {
        format!(
            "SchemaChange(table='{}', column='{}', decl_type='{}', source='{}', state='{}', hlc={})",
            self.table, self.column, self.decl_type, self.source, self.state, self.hlc
        )
    }
}

/// One synced table.
#[pyclass(frozen, get_all, module = "syncline")]
struct TableStatus {
    name: String,
    strategy: String,
    rows: u64,
}

#[pymethods]
impl TableStatus {
    fn __repr__(&self) -> String {
        format!("TableStatus(name='{}', strategy='{}', rows={})", self.name, self.strategy, self.rows)
    }
}

/// One peer this replica has received a bundle from.
#[pyclass(frozen, get_all, module = "syncline")]
struct PeerStatus {
    site_id: String,
    version_vector: Py<PyDict>,
    pending: u64,
}

#[pymethods]
impl PeerStatus {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "PeerStatus(site_id='{}', version_vector={}, pending={})",
            self.site_id,
            self.version_vector.bind(py).repr()?,
            self.pending
        ))
    }
}

/// A snapshot of the engine's state.
#[pyclass(frozen, get_all, module = "syncline")]
struct Status {
    site_id: String,
    hlc: u64,
    tables: Py<PyList>,
    peers: Py<PyList>,
    version_vector: Py<PyDict>,
    unresolved_conflicts: u64,
    rejected: u64,
    /// Rows waiting in `_syncline_quarantine` for the local clock to catch up.
    quarantined: u64,
    /// Tombstones, and how many every known peer acknowledged (what `compact(0)` would purge).
    tombstones: u64,
    purgeable: u64,
    /// Per origin site, the newest delete stamp purged by compaction.
    purge_horizon: Py<PyDict>,
    /// Columns registered after their table was enabled (list of SchemaChange), oldest first.
    schema_changes: Py<PyList>,
    /// Cells held for columns this replica lacks.
    held_cells: u64,
    /// Rows held for tables not enabled here.
    held_rows: u64,
}

#[pymethods]
impl Status {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Status(site_id='{}', hlc={}, tables={}, peers={}, version_vector={}, unresolved_conflicts={}, rejected={}, quarantined={}, \
             tombstones={}, purgeable={}, purge_horizon={}, schema_changes={}, held_cells={}, held_rows={})",
            self.site_id,
            self.hlc,
            self.tables.bind(py).repr()?,
            self.peers.bind(py).repr()?,
            self.version_vector.bind(py).repr()?,
            self.unresolved_conflicts,
            self.rejected,
            self.quarantined,
            self.tombstones,
            self.purgeable,
            self.purge_horizon.bind(py).repr()?,
            self.schema_changes.bind(py).repr()?,
            self.held_cells,
            self.held_rows
        ))
    }
}

fn vv_to_py(py: Python<'_>, vv: &[(sl::SiteId, u64)]) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    for (s, h) in vv {
        d.set_item(s.to_hex(), *h)?;
    }
    Ok(d.unbind())
}

fn status_to_py(py: Python<'_>, s: &sl::Status) -> PyResult<Status> {
    let tables = s
        .tables
        .iter()
        .map(|t| Py::new(py, TableStatus { name: t.name.clone(), strategy: t.strategy.as_str().to_owned(), rows: t.rows }))
        .collect::<PyResult<Vec<_>>>()?;
    let peers = s
        .peers
        .iter()
        .map(|p| {
            Py::new(py, PeerStatus { site_id: p.site_id.to_hex(), version_vector: vv_to_py(py, &p.version_vector)?, pending: p.pending })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let changes = s
        .schema_changes
        .iter()
        .map(|c| {
            Py::new(
                py,
                SchemaChange {
                    table: c.table.clone(),
                    column: c.column.clone(),
                    decl_type: c.decl_type.clone(),
                    source: c.source.clone(),
                    state: c.state.clone(),
                    hlc: c.hlc,
                },
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Status {
        site_id: s.site_id.to_hex(),
        hlc: s.hlc,
        tables: PyList::new(py, tables)?.unbind(),
        peers: PyList::new(py, peers)?.unbind(),
        version_vector: vv_to_py(py, &s.version_vector)?,
        unresolved_conflicts: s.unresolved_conflicts,
        rejected: s.rejected,
        quarantined: s.quarantined,
        tombstones: s.tombstones,
        purgeable: s.purgeable,
        purge_horizon: vv_to_py(py, &s.purge_horizon)?,
        schema_changes: PyList::new(py, changes)?.unbind(),
        held_cells: s.held_cells,
        held_rows: s.held_rows,
    })
}

/// A change event: kind "local" (a local write by any connection), "remote" (an import) or
/// "conflict" (with `conflict` set).
#[pyclass(frozen, get_all, module = "syncline")]
struct Event {
    kind: &'static str,
    table: String,
    pk: Py<PyTuple>,
    columns: Py<PyTuple>,
    deleted: bool,
    conflict: Option<Py<Conflict>>,
}

#[pymethods]
impl Event {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Event(kind='{}', table='{}', pk={}, columns={}, deleted={}, conflict={})",
            self.kind,
            self.table,
            self.pk.bind(py).repr()?,
            self.columns.bind(py).repr()?,
            if self.deleted { "True" } else { "False" },
            match &self.conflict {
                Some(c) => c.bind(py).repr()?.to_string(),
                None => "None".to_owned(),
            }
        ))
    }
}

fn event_to_py(py: Python<'_>, e: &sl::Event) -> PyResult<Py<Event>> {
    // What each field is for each kind of event is the core's decision (sl::Event's accessors).
    let ev = Event {
        kind: e.kind(),
        table: e.table().to_owned(),
        pk: values_to_tuple(py, e.pk())?,
        columns: PyTuple::new(py, e.columns())?.unbind(),
        deleted: e.deleted(),
        conflict: e.conflict().map(|c| conflict_to_py(py, c)).transpose()?,
    };
    Py::new(py, ev)
}

// ---------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------

/// The last exception a Python resolver raised, kept to chain it as `__cause__`.
type LastError = Arc<Mutex<Option<PyErr>>>;

/// A Python callable `(Conflict) -> Resolution` as a core resolver.
struct PyResolver {
    callback: Py<PyAny>,
    last_error: LastError,
}

impl sl::Resolver for PyResolver {
    fn resolve(&self, input: &sl::ConflictInput) -> Result<sl::Resolution, String> {
        Python::try_attach(|py| {
            let outcome = conflict_input_to_py(py, input).and_then(|c| self.callback.call1(py, (c,)));
            match outcome {
                Ok(obj) => match obj.bind(py).cast::<Resolution>() {
                    Ok(r) => Ok(r.get().inner.clone()),
                    Err(_) => {
                        let ty = obj.bind(py).get_type().name().map(|n| n.to_string()).unwrap_or_default();
                        Err(format!("it returned a {ty}, not a syncline.Resolution (Resolution.LOCAL, Resolution.REMOTE or Resolution.with_value(v))"))
                    }
                },
                Err(err) => {
                    let ty = err.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "exception".into());
                    let msg = format!("{ty}: {}", err.value(py));
                    *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                    Err(msg)
                }
            }
        })
        .unwrap_or_else(|| Err("the Python interpreter is shutting down".into()))
    }
}

/// A Python callable `progress(done, total)` as the core's progress closure (rows done, rows
/// total), called with the GIL taken. The core's progress cannot stop a call, so after the
/// first exception the callable raises it is not called again, and that exception is raised
/// when the core call returns (an import has then been applied in full).
struct PyProgress {
    callback: Option<Py<PyAny>>,
    raised: Option<PyErr>,
}

impl PyProgress {
    fn new(callback: Option<Bound<'_, PyAny>>) -> PyResult<PyProgress> {
        let callback = callback.filter(|c| !c.is_none());
        if let Some(c) = &callback {
            if !c.is_callable() {
                let ty = c.get_type().name()?;
                return Err(PyTypeError::new_err(format!("progress must be callable: (done: int, total: int) -> None, not {ty}")));
            }
        }
        Ok(PyProgress { callback: callback.map(Bound::unbind), raised: None })
    }

    fn call(&mut self, done: u64, total: u64) {
        let (Some(callback), None) = (&self.callback, &self.raised) else { return };
        let raised = Python::try_attach(|py| callback.call1(py, (done, total)).err()).flatten();
        self.raised = raised;
    }

    /// The call's result, unless the callable raised: then its exception.
    fn finish<T>(self, result: PyResult<T>) -> PyResult<T> {
        match self.raised {
            Some(err) => Err(err),
            None => result,
        }
    }
}

/// A Python callable `(Event) -> None` as a core observer. An exception it raises goes to
/// `sys.unraisablehook` (the event source is a background thread or a finished call).
struct PyObserver {
    callback: Py<PyAny>,
}

impl sl::Observer for PyObserver {
    fn on_event(&self, event: &sl::Event) {
        Python::try_attach(|py| {
            if let Err(err) = event_to_py(py, event).and_then(|e| self.callback.call1(py, (e,))) {
                err.write_unraisable(py, Some(self.callback.bind(py)));
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Engine and subscription
// ---------------------------------------------------------------------------------------------

/// A live subscription; `close()` (or leaving a `with` block) unsubscribes.
#[pyclass(frozen, module = "syncline")]
struct Subscription {
    inner: Mutex<Option<sl::Subscription>>,
}

impl Subscription {
    fn take(&self) -> Option<sl::Subscription> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[pymethods]
impl Subscription {
    /// Stop receiving events (idempotent). Waits for the watcher thread, GIL released.
    fn close(&self, py: Python<'_>) {
        if let Some(s) = self.take() {
            py.detach(move || s.close());
        }
    }
    #[getter]
    fn closed(&self) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_none_or(|s| s.is_closed())
    }
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Stopping joins the watcher thread, which may be waiting for the GIL: release it.
        if let Some(s) = self.take() {
            let _ = Python::try_attach(|py| py.detach(|| drop(s)));
        }
    }
}

/// The native engine; `syncline.SyncEngine` wraps it with the Pythonic API.
#[pyclass(frozen, module = "syncline._native")]
struct Engine {
    /// Shared with the background sync loops started from this engine.
    inner: Option<Arc<sl::SyncEngine>>,
    last_error: LastError,
}

impl Engine {
    fn eng(&self) -> &Arc<sl::SyncEngine> {
        self.inner.as_ref().expect("engine present until dropped")
    }

    /// Run a core call with the GIL released, mapping its error.
    fn run<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&sl::SyncEngine) -> sl::Result<T> + Send) -> PyResult<T> {
        let e: &sl::SyncEngine = self.eng();
        py.detach(|| f(e)).py_err()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Dropping the core engine stops its watcher thread, which may be waiting for the GIL.
        if let Some(e) = self.inner.take() {
            let _ = Python::try_attach(|py| py.detach(|| drop(e)));
        }
    }
}

fn parse_strategy(s: &str) -> PyResult<sl::Strategy> {
    s.parse::<sl::Strategy>().py_err()
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (path, max_drift_ms=None, busy_timeout_ms=None, watch_interval_ms=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        max_drift_ms: Option<u64>,
        busy_timeout_ms: Option<u64>,
        watch_interval_ms: Option<u64>,
    ) -> PyResult<Self> {
        let d = sl::Options::default();
        let options = sl::Options {
            max_drift_ms: max_drift_ms.unwrap_or(d.max_drift_ms),
            busy_timeout_ms: busy_timeout_ms.unwrap_or(d.busy_timeout_ms),
            watch_interval_ms: watch_interval_ms.unwrap_or(d.watch_interval_ms),
            ..d
        };
        let engine = py.detach(|| sl::SyncEngine::open(&path, options)).py_err()?;
        Ok(Engine { inner: Some(Arc::new(engine)), last_error: Arc::default() })
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.eng().path().to_owned()
    }
    #[getter]
    fn max_drift_ms(&self) -> u64 {
        self.eng().options().max_drift_ms
    }
    #[getter]
    fn busy_timeout_ms(&self) -> u64 {
        self.eng().options().busy_timeout_ms
    }
    #[getter]
    fn watch_interval_ms(&self) -> u64 {
        self.eng().options().watch_interval_ms
    }

    fn site_id(&self, py: Python<'_>) -> PyResult<String> {
        self.run(py, |e| e.site_id()).map(|s| s.to_hex())
    }
    fn reset_site_id(&self, py: Python<'_>) -> PyResult<String> {
        self.run(py, |e| e.reset_site_id()).map(|s| s.to_hex())
    }
    fn set_site_id(&self, py: Python<'_>, site: &Bound<'_, PyAny>) -> PyResult<String> {
        let site = parse_site(site)?;
        self.run(py, |e| e.set_site_id(site)).map(|s| s.to_hex())
    }
    #[pyo3(signature = (ms))]
    fn set_manual_clock(&self, py: Python<'_>, ms: Option<u64>) -> PyResult<()> {
        self.run(py, |e| e.set_manual_clock(ms))
    }

    #[pyo3(signature = (table, strategy="lww", allow_autoincrement=false))]
    fn enable_sync(&self, py: Python<'_>, table: &str, strategy: &str, allow_autoincrement: bool) -> PyResult<()> {
        let opts = sl::EnableOptions { strategy: parse_strategy(strategy)?, allow_autoincrement };
        self.run(py, |e| e.enable_sync(table, opts))
    }
    fn disable_sync(&self, py: Python<'_>, table: &str) -> PyResult<()> {
        self.run(py, |e| e.disable_sync(table))
    }
    fn set_strategy(&self, py: Python<'_>, table: &str, strategy: &str) -> PyResult<()> {
        let strategy = parse_strategy(strategy)?;
        self.run(py, |e| e.set_strategy(table, strategy))
    }
    #[pyo3(signature = (table, resolver))]
    fn set_resolver(&self, table: &str, resolver: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        match resolver {
            None => self.eng().clear_resolver(table),
            Some(cb) => {
                if !cb.is_callable() {
                    return Err(PyTypeError::new_err("a resolver must be callable: (Conflict) -> Resolution"));
                }
                let r = PyResolver { callback: cb.unbind(), last_error: self.last_error.clone() };
                self.eng().set_resolver(table, Arc::new(r));
            }
        }
        Ok(())
    }

    /// `progress(done, total)`: rows done and rows total, as the core counts them.
    #[pyo3(signature = (peer=None, compress=false, progress=None))]
    fn generate_bundle<'py>(
        &self,
        py: Python<'py>,
        peer: Option<&Bound<'py, PyAny>>,
        compress: bool,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyBytes>, BundleStats)> {
        let peer = peer.map(parse_site).transpose()?;
        let mut progress = PyProgress::new(progress)?;
        let out =
            self.run(py, |e| e.generate_bundle_with(sl::ExportOptions { peer: peer.as_ref(), compress }, &mut |d, t| progress.call(d, t)));
        let (bytes, s) = progress.finish(out)?;
        Ok((PyBytes::new(py, &bytes), BundleStats { rows: s.rows, changes: s.changes, bytes: s.bytes }))
    }
    #[pyo3(signature = (path, peer=None, compress=false, progress=None))]
    fn write_bundle(
        &self,
        py: Python<'_>,
        path: PathBuf,
        peer: Option<&Bound<'_, PyAny>>,
        compress: bool,
        progress: Option<Bound<'_, PyAny>>,
    ) -> PyResult<BundleStats> {
        let peer = peer.map(parse_site).transpose()?;
        let mut progress = PyProgress::new(progress)?;
        let out = self
            .run(py, |e| e.write_bundle_with(sl::ExportOptions { peer: peer.as_ref(), compress }, &path, &mut |d, t| progress.call(d, t)));
        let s = progress.finish(out)?;
        Ok(BundleStats { rows: s.rows, changes: s.changes, bytes: s.bytes })
    }

    #[pyo3(signature = (data, progress=None))]
    fn import_bundle(&self, py: Python<'_>, data: PyBackedBytes, progress: Option<Bound<'_, PyAny>>) -> PyResult<ImportReport> {
        let mut progress = PyProgress::new(progress)?;
        let out = self.import(py, |e| e.import_bundle_with(&data, &mut |d, t| progress.call(d, t)));
        progress.finish(out)
    }
    #[pyo3(signature = (path, progress=None))]
    fn import_bundle_file(&self, py: Python<'_>, path: PathBuf, progress: Option<Bound<'_, PyAny>>) -> PyResult<ImportReport> {
        let mut progress = PyProgress::new(progress)?;
        let out = self.import(py, |e| e.import_bundle_file_with(&path, &mut |d, t| progress.call(d, t)));
        progress.finish(out)
    }

    fn conflicts(&self, py: Python<'_>) -> PyResult<Vec<Py<Conflict>>> {
        let cs = self.run(py, |e| e.conflicts())?;
        conflicts_to_py(py, &cs)
    }
    fn all_conflicts(&self, py: Python<'_>) -> PyResult<Vec<Py<Conflict>>> {
        let cs = self.run(py, |e| e.all_conflicts())?;
        conflicts_to_py(py, &cs)
    }
    fn resolve(&self, py: Python<'_>, conflict_id: i64, resolution: &Bound<'_, Resolution>) -> PyResult<()> {
        let r = resolution.get().inner.clone();
        self.run(py, |e| e.resolve(conflict_id, r))
    }

    fn status(&self, py: Python<'_>) -> PyResult<Status> {
        let s = self.run(py, |e| e.status())?;
        status_to_py(py, &s)
    }

    /// Add a column to a synced table through Syncline (ALTER, capture and a migration that
    /// travels in bundles, in one transaction).
    #[pyo3(signature = (table, column, decl_type, default=None))]
    fn add_column(&self, py: Python<'_>, table: &str, column: &str, decl_type: &str, default: Option<PyValue>) -> PyResult<()> {
        let default = default.map_or(sl::Value::Null, |v| v.0);
        self.run(py, |e| e.add_column(table, column, decl_type, default))
    }
    /// "apply" (default) or "hold": what imports do with the migrations they receive.
    fn set_migration_policy(&self, py: Python<'_>, policy: &str) -> PyResult<()> {
        let policy: sl::MigrationPolicy = policy.parse().py_err()?;
        self.run(py, |e| e.set_migration_policy(policy))
    }
    fn migration_policy(&self, py: Python<'_>) -> PyResult<String> {
        self.run(py, |e| e.migration_policy()).map(|p| p.as_str().to_owned())
    }
    /// Apply every held migration now; returns how many changed a table.
    fn apply_held_migrations(&self, py: Python<'_>) -> PyResult<u64> {
        self.run(py, |e| e.apply_held_migrations())
    }
    /// Purge acknowledged tombstones older than `retain` seconds, then vacuum.
    #[pyo3(signature = (retain=0.0))]
    fn compact(&self, py: Python<'_>, retain: f64) -> PyResult<CompactReport> {
        let retain = seconds("retain", retain)?;
        let r = self.run(py, |e| e.compact(retain))?;
        Ok(CompactReport { purged: r.purged, bytes_before: r.bytes_before, bytes_after: r.bytes_after })
    }

    /// Write a snapshot for a new device to `path` (a new file).
    fn snapshot(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.run(py, |e| e.snapshot(&path))
    }

    fn state_hash(&self, py: Python<'_>) -> PyResult<String> {
        self.run(py, |e| e.state_hash())
    }

    fn subscribe(&self, py: Python<'_>, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err("a subscriber must be callable: (Event) -> None"));
        }
        let observer: Arc<dyn sl::Observer> = Arc::new(PyObserver { callback: callback.unbind() });
        let sub = self.run(py, |e| e.subscribe(observer))?;
        Ok(Subscription { inner: Mutex::new(Some(sub)) })
    }

    #[pyo3(signature = (sql, params=Vec::new()))]
    fn execute(&self, py: Python<'_>, sql: &str, params: Vec<PyValue>) -> PyResult<usize> {
        let params = core_values(params);
        self.run(py, |e| e.execute(sql, &params))
    }
    fn execute_batch(&self, py: Python<'_>, sql: &str) -> PyResult<()> {
        self.run(py, |e| e.execute_batch(sql))
    }
    /// Returns (column names, rows as tuples).
    #[pyo3(signature = (sql, params=Vec::new()))]
    fn query(&self, py: Python<'_>, sql: &str, params: Vec<PyValue>) -> PyResult<(Vec<String>, Vec<Py<PyTuple>>)> {
        let params = core_values(params);
        let q = self.run(py, |e| e.query(sql, &params))?;
        let rows = q.rows.iter().map(|r| values_to_tuple(py, r)).collect::<PyResult<Vec<_>>>()?;
        Ok((q.columns, rows))
    }

    /// One sync pass with the server at `url` (blocking, GIL released); `progress(pulled, 0)`
    /// after each page (changes pulled so far; the total is not known in advance).
    #[pyo3(signature = (url, token=None, progress=None))]
    fn sync(&self, py: Python<'_>, url: &str, token: Option<&str>, progress: Option<Bound<'_, PyAny>>) -> PyResult<SyncReport> {
        let mut progress = PyProgress::new(progress)?;
        let out = self.merging(py, |e| e.sync_with(url, token, &mut |d, t| progress.call(d, t)));
        progress.finish(out).map(SyncReport::from)
    }

    /// Start a background sync loop; unset options take the core's defaults.
    #[pyo3(signature = (url, token=None, interval=None, max_backoff=None, live=None, page_rows=None, timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn start_sync(
        &self,
        py: Python<'_>,
        url: &str,
        token: Option<&str>,
        interval: Option<f64>,
        max_backoff: Option<f64>,
        live: Option<bool>,
        page_rows: Option<u64>,
        timeout: Option<f64>,
    ) -> PyResult<SyncHandle> {
        let mut o = sl::net::SyncOptions::default();
        if let Some(v) = interval {
            o.interval = seconds("interval", v)?;
        }
        if let Some(v) = max_backoff {
            o.max_backoff = seconds("max_backoff", v)?;
        }
        if let Some(v) = live {
            o.live = v;
        }
        if let Some(v) = page_rows {
            o.page_rows = v;
        }
        if let Some(v) = timeout {
            o.timeout = seconds("timeout", v)?;
        }
        let engine = self.eng().clone();
        let h = py.detach(|| engine.start_sync(url, token, o)).py_err()?;
        Ok(SyncHandle { inner: Mutex::new(Some(Arc::new(h))) })
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |e| e.close())
    }
}

impl Engine {
    /// An import, with the resolver's own exception chained as `__cause__` of a ResolverError.
    fn import(&self, py: Python<'_>, f: impl FnOnce(&sl::SyncEngine) -> sl::Result<sl::ImportReport> + Send) -> PyResult<ImportReport> {
        self.merging(py, f).map(ImportReport::from)
    }

    /// A call that may run a custom resolver (an import, a sync pass), GIL released; a
    /// `ResolverError` gets the resolver's own exception as `__cause__`.
    fn merging<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&sl::SyncEngine) -> sl::Result<T> + Send) -> PyResult<T> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        let e: &sl::SyncEngine = self.eng();
        match py.detach(|| f(e)) {
            Ok(r) => Ok(r),
            Err(err) => {
                let cause = if err.kind() == sl::ErrorKind::Resolver {
                    self.last_error.lock().unwrap_or_else(|p| p.into_inner()).take()
                } else {
                    None
                };
                let py_err = to_py_err(err);
                if cause.is_some() {
                    py_err.set_cause(py, cause);
                }
                Err(py_err)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Network sync (spec/sync-protocol.md)
// ---------------------------------------------------------------------------------------------

/// What one sync pass did, counted in changes (row states and cells).
#[pyclass(frozen, get_all, module = "syncline")]
struct SyncReport {
    pushed: u64,
    server_applied: u64,
    pulled: u64,
    applied: u64,
    conflicts: u64,
    rejected: u64,
    round_trips: u32,
}

#[pymethods]
impl SyncReport {
    fn __repr__(&self) -> String {
        format!(
            "SyncReport(pushed={}, server_applied={}, pulled={}, applied={}, conflicts={}, rejected={}, round_trips={})",
            self.pushed, self.server_applied, self.pulled, self.applied, self.conflicts, self.rejected, self.round_trips
        )
    }
}

impl From<sl::net::SyncReport> for SyncReport {
    fn from(r: sl::net::SyncReport) -> Self {
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

/// What a background sync has done so far (a snapshot).
#[pyclass(frozen, get_all, module = "syncline")]
struct SyncStatus {
    running: bool,
    syncs: u64,
    failures: u32,
    /// Unix time (seconds, as `time.time()`) of the last successful pass.
    last_success: Option<f64>,
    /// The exception of the last pass if it failed (a `SynclineError` subclass instance).
    last_error: Option<Py<PyAny>>,
    last_report: Option<Py<SyncReport>>,
    pending: u64,
}

#[pymethods]
impl SyncStatus {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let opt = |o: &Option<Py<PyAny>>| -> PyResult<String> {
            Ok(match o {
                Some(v) => v.bind(py).repr()?.to_string(),
                None => "None".to_owned(),
            })
        };
        Ok(format!(
            "SyncStatus(running={}, syncs={}, failures={}, last_success={}, last_error={}, last_report={}, pending={})",
            if self.running { "True" } else { "False" },
            self.syncs,
            self.failures,
            self.last_success.map_or("None".to_owned(), |t| t.to_string()),
            opt(&self.last_error)?,
            opt(&self.last_report.as_ref().map(|r| r.clone_ref(py).into_any()))?,
            self.pending
        ))
    }
}

fn sync_status_to_py(py: Python<'_>, s: sl::net::SyncStatus) -> PyResult<SyncStatus> {
    Ok(SyncStatus {
        running: s.running,
        syncs: s.syncs,
        failures: s.failures,
        last_success: s.last_success.map(|t| t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())),
        last_error: s.last_error.map(|e| to_py_err(e).into_value(py).into_any()),
        last_report: s.last_report.map(|r| Py::new(py, SyncReport::from(r))).transpose()?,
        pending: s.pending,
    })
}

/// A running background sync (`Engine.start_sync`). `stop()` ends it; so does dropping it.
#[pyclass(frozen, module = "syncline._native")]
struct SyncHandle {
    inner: Mutex<Option<Arc<sl::net::SyncHandle>>>,
}

impl SyncHandle {
    fn handle(&self) -> PyResult<Arc<sl::net::SyncHandle>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| to_py_err(sl::Error::new(sl::ErrorKind::Closed, "the sync handle is gone")))
    }
}

#[pymethods]
impl SyncHandle {
    /// The loop's progress and the local changes the server still lacks (GIL released).
    fn status(&self, py: Python<'_>) -> PyResult<SyncStatus> {
        let h = self.handle()?;
        let s = py.detach(|| h.status()).py_err()?;
        sync_status_to_py(py, s)
    }
    /// Sync now instead of at the end of the current wait.
    fn sync_now(&self) -> PyResult<()> {
        self.handle()?.sync_now();
        Ok(())
    }
    /// Stop the loop (a pass in progress is finished first) and wait for it; idempotent.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let h = self.handle()?;
        py.detach(|| h.stop());
        Ok(())
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        // Stopping joins the loop's thread, which may be waiting for the GIL (a resolver).
        if let Some(h) = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = Python::try_attach(|py| py.detach(|| drop(h)));
        }
    }
}

/// Seconds (a Python float) as a `Duration`: only the conversion (a negative, NaN or huge
/// number is no duration); which durations are allowed (not zero) is the core's
/// `SyncOptions::validate`.
fn seconds(name: &str, v: f64) -> PyResult<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(v)
        .map_err(|_| to_py_err(sl::Error::new(sl::ErrorKind::InvalidArgument, format!("{name} must be a number of seconds, got {v}"))))
}

// ---------------------------------------------------------------------------------------------
// The SQLite library the engine runs on (one per process; syncline/_sqlite.py picks the way)
// ---------------------------------------------------------------------------------------------

/// Bind the engine to the SQLite shared library at `path` (the core's `host::bind_library`):
/// a no-op for the library already bound, `SqliteLibraryError` for another one. Returns the
/// bound library's (origin, version).
#[pyfunction]
fn bind_sqlite_library(py: Python<'_>, path: &str) -> PyResult<(String, String)> {
    py.detach(|| sl::host::bind_library(path)).py_err()?;
    Ok(sl::host::bound_library().unwrap_or_default())
}

/// The (origin, version) of the SQLite library bound in this process, or None.
#[pyfunction]
fn bound_sqlite_library() -> Option<(String, String)> {
    sl::host::bound_library()
}

/// The core's `host::check_shared`: `set_soft_heap_limit(n)` must run
/// `PRAGMA soft_heap_limit = n` through the application's driver; `SqliteLibraryError` unless
/// the driver and the engine run on one SQLite library. An exception the callable raises
/// becomes a `SqliteLibraryError` with that exception as `__cause__`.
#[pyfunction]
fn check_shared_sqlite(py: Python<'_>, set_soft_heap_limit: Bound<'_, PyAny>) -> PyResult<()> {
    let mut raised: Option<PyErr> = None;
    let outcome = sl::host::check_shared(&mut |n| match set_soft_heap_limit.call1((n,)) {
        Ok(_) => Ok(()),
        Err(err) => {
            let message = format!("the sqlite3 module could not run PRAGMA soft_heap_limit: {}", err.value(py));
            raised = Some(err);
            Err(sl::Error::new(sl::ErrorKind::SqliteLibrary, message))
        }
    });
    outcome.map_err(|e| {
        let err = to_py_err(e);
        if raised.is_some() {
            err.set_cause(py, raised);
        }
        err
    })
}

/// The core's default options (`Options::default()`, `SyncOptions::default()`), durations in
/// seconds: what an option left at None means.
#[pyfunction]
fn default_options(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let (o, s) = (sl::Options::default(), sl::net::SyncOptions::default());
    let d = PyDict::new(py);
    d.set_item("max_drift_ms", o.max_drift_ms)?;
    d.set_item("busy_timeout_ms", o.busy_timeout_ms)?;
    d.set_item("watch_interval_ms", o.watch_interval_ms)?;
    d.set_item("interval", s.interval.as_secs_f64())?;
    d.set_item("max_backoff", s.max_backoff.as_secs_f64())?;
    d.set_item("live", s.live)?;
    d.set_item("page_rows", s.page_rows)?;
    d.set_item("timeout", s.timeout.as_secs_f64())?;
    Ok(d)
}

/// The core's `net::clone_snapshot`: download the snapshot of the server at `url` to `path` (a
/// new file) for a new device, GIL released; `progress(bytes, total bytes)` as it arrives (total
/// 0 if the server did not say). Returns the file's size.
#[pyfunction]
#[pyo3(signature = (url, path, token=None, progress=None))]
fn clone_snapshot(py: Python<'_>, url: &str, path: PathBuf, token: Option<&str>, progress: Option<Bound<'_, PyAny>>) -> PyResult<u64> {
    let mut progress = PyProgress::new(progress)?;
    let out = py.detach(|| sl::net::clone_snapshot(url, token, &path, &mut |d, t| progress.call(d, t))).py_err();
    progress.finish(out)
}

/// Run the `syncline` command line (argv[0] is the program name); returns the exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| syncline_cli::run(argv))
}

/// A fresh UUIDv7 string (time-ordered), the recommended primary key for synced tables.
#[pyfunction]
fn uuid7() -> String {
    sl::uuid7()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SynclineError", py.get_type::<SynclineError>())?;
    let classes = PyDict::new(py);
    for (kind, ty) in sl::ErrorKind::ALL.into_iter().zip(error_types(py)?) {
        m.add(class_name(kind), ty.bind(py))?;
        classes.set_item(kind.code(), ty.bind(py))?;
    }
    // code -> class, in the core's order: the list the package's exports are tested against.
    m.add("ERROR_CLASSES", classes)?;
    m.add_class::<Engine>()?;
    m.add_class::<Subscription>()?;
    m.add_class::<Conflict>()?;
    m.add_class::<CellVersion>()?;
    m.add_class::<Resolution>()?;
    m.add_class::<ImportReport>()?;
    m.add_class::<BundleStats>()?;
    m.add_class::<Status>()?;
    m.add_class::<CompactReport>()?;
    m.add_class::<SchemaChange>()?;
    m.add_class::<TableStatus>()?;
    m.add_class::<PeerStatus>()?;
    m.add_class::<Event>()?;
    m.add_class::<SyncReport>()?;
    m.add_class::<SyncStatus>()?;
    m.add_class::<SyncHandle>()?;
    m.add_function(wrap_pyfunction!(uuid7, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(clone_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(bind_sqlite_library, m)?)?;
    m.add_function(wrap_pyfunction!(bound_sqlite_library, m)?)?;
    m.add_function(wrap_pyfunction!(check_shared_sqlite, m)?)?;
    m.add_function(wrap_pyfunction!(default_options, m)?)?;
    Ok(())
}
