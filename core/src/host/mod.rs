//! The SQLite library the engine runs on when it lives inside the application's own SQLite
//! (feature `host-sqlite`, used by every language binding).
//!
//! Two SQLite copies in one process do not see each other's POSIX locks: when one closes a file
//! descriptor it drops the other's locks, and it may checkpoint or delete the WAL under it. So
//! this build compiles no SQLite in and links none. It is *bound* once per process to the
//! library the app's driver already uses, and every SQLite call of the engine goes through that
//! library's API table:
//! - [`entry`]: the app's driver loads this library as a SQLite extension
//!   (`sqlite3_syncline_init`); the table SQLite hands over is bound, and the SQL functions of
//!   `spec/sql-functions.md` are registered on the loading connection;
//! - [`bind_library`]: a SQLite shared library already in the process (the one Python's
//!   `sqlite3` module links, the system SQLite of Apple platforms or Linux) is bound by its
//!   exported symbols.
//!
//! A second, different library is refused with `SqliteLibrary`, and [`check_shared`] proves
//! that the app's driver and the engine share one library.

mod entry;
mod symbols;

pub use entry::sqlite3_syncline_init;

use crate::error::{Error, ErrorKind, Result};
use rusqlite::ffi;
use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Mutex;

/// The SQLite shared library the operating system ships for applications, the one its usual
/// drivers run on (GRDB, SQLite.swift and Core Data on Apple platforms; the distribution's
/// `libsqlite3` on Linux): what a binding binds by default when the app bound nothing else.
/// `None` where the system SQLite is not for applications (Android: it is not public API;
/// Windows). A runtime that brings its own SQLite (the JVM with sqlite-jdbc, Node, Room's bundled
/// driver) must not use it: there the driver loads Syncline as an extension instead.
pub const PLATFORM_SQLITE: Option<&str> =
    if cfg!(any(target_os = "macos", target_os = "ios", target_os = "tvos", target_os = "watchos", target_os = "visionos")) {
        Some("/usr/lib/libsqlite3.dylib")
    } else if cfg!(all(target_os = "linux", not(target_os = "android"))) {
        Some("libsqlite3.so.0")
    } else {
        None
    };

/// The oldest SQLite the engine runs on.
pub const MIN_VERSION_NUMBER: i32 = 3_037_000;

/// The library bound in this process.
struct Bound {
    /// Identity of the library: the address of its `sqlite3_open_v2`.
    open_v2: usize,
    /// Where it was found (a file, or what loaded the extension), for error messages.
    origin: String,
    version: String,
}

static BOUND: Mutex<Option<Bound>> = Mutex::new(None);

fn bound() -> std::sync::MutexGuard<'static, Option<Bound>> {
    BOUND.lock().unwrap_or_else(|p| p.into_inner())
}

fn library_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::SqliteLibrary, message)
}

/// `Ok` once a library is bound; `SqliteLibrary` (with the way out) before.
pub fn ensure_bound() -> Result<()> {
    if bound().is_some() {
        return Ok(());
    }
    Err(library_error(
        "no SQLite library is bound: this build of Syncline runs inside the application's own SQLite. Load it into \
         your driver as a SQLite extension (entry point sqlite3_syncline_init) or bind the SQLite library your driver \
         uses before opening an engine (see the README of your language)",
    ))
}

/// Where the bound library came from and its version, if one is bound.
pub fn bound_library() -> Option<(String, String)> {
    bound().as_ref().map(|b| (b.origin.clone(), b.version.clone()))
}

/// The same library again is fine; another one is a second SQLite copy in this process.
fn same_or_refuse(b: &Bound, open_v2: usize, origin: &str) -> Result<()> {
    if b.open_v2 == open_v2 {
        return Ok(());
    }
    Err(library_error(format!(
        "a second SQLite library in this process: Syncline already runs on the SQLite of {} ({}), and {origin} brings \
         another copy. Two SQLite copies in one process do not share file locks and can corrupt the database; open \
         every connection to a synced database through one SQLite library",
        b.origin, b.version
    )))
}

/// Bind the API table SQLite passed to the extension entry point.
///
/// # Safety
/// `api` must be the table SQLite passes to an extension's entry point.
pub(crate) unsafe fn bind_api(api: *mut ffi::sqlite3_api_routines) -> Result<()> {
    let table = unsafe { &*api };
    let open_v2 = table.open_v2.ok_or_else(|| library_error("the SQLite that loaded Syncline has no sqlite3_open_v2"))? as usize;
    let origin = file_of(open_v2 as *const c_void).unwrap_or_else(|| "the program that loaded the extension".into());
    let mut slot = bound();
    if let Some(b) = &*slot {
        return same_or_refuse(b, open_v2, &origin);
    }
    let version = table.libversion_number.map(|f| unsafe { f() }).unwrap_or(0);
    if version >= ffi::SQLITE_VERSION_NUMBER {
        *slot = Some(unsafe { init(api, origin) }?);
        return Ok(());
    }
    // An older SQLite's table is shorter than the one rusqlite reads: build a full one by name
    // from the library that holds these functions.
    let handle = handle_of(open_v2 as *const c_void).ok_or_else(|| {
        library_error(format!(
            "{origin} holds SQLite {} and does not export its functions; Syncline needs SQLite >= 3.45.3 there, or \
             exported symbols",
            version_text(version)
        ))
    })?;
    *slot = Some(unsafe { bind_handle(handle, origin) }?);
    Ok(())
}

/// Bind the SQLite shared library at `path` (a file name `dlopen` resolves, such as
/// `libsqlite3.so.0`, or a loaded module that links SQLite, such as Python's `_sqlite3`).
/// Binding the library already bound is a no-op; another one is refused with `SqliteLibrary`.
pub fn bind_library(path: &str) -> Result<()> {
    let c_path = CString::new(path).map_err(|_| Error::invalid_argument("a library path cannot contain NUL"))?;
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        let why = unsafe { CStr::from_ptr(libc::dlerror()) }.to_string_lossy().into_owned();
        return Err(library_error(format!("cannot load the SQLite library {path}: {why}")));
    }
    let open_v2 = unsafe { libc::dlsym(handle, c"sqlite3_open_v2".as_ptr()) } as usize;
    if open_v2 == 0 {
        return Err(library_error(format!(
            "{path} exports no SQLite functions (its SQLite is linked in privately), so Syncline cannot share it; use a \
             build whose SQLite is a shared library, or load Syncline into it as an extension"
        )));
    }
    let origin = file_of(open_v2 as *const c_void).unwrap_or_else(|| path.to_owned());
    let mut slot = bound();
    if let Some(b) = &*slot {
        return same_or_refuse(b, open_v2, &origin);
    }
    *slot = Some(unsafe { bind_handle(handle, origin) }?);
    Ok(())
}

/// The real `sqlite3_libversion_number` of an older library, while rusqlite's init runs.
static REAL_VERSION: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// rusqlite's init refuses a library older than its API table, to avoid reading past a short
/// table; a table built by name is never short, so during that init this reports at least the
/// table's version, and the library's own version ever after.
unsafe extern "C" fn version_number() -> c_int {
    let real: unsafe extern "C" fn() -> c_int = unsafe { std::mem::transmute(REAL_VERSION.load(Ordering::Acquire)) };
    let v = unsafe { real() };
    if INITIALISED.load(Ordering::Acquire) {
        v
    } else {
        v.max(ffi::SQLITE_VERSION_NUMBER)
    }
}

/// SQLite before 3.44 lacks `sqlite3_set_clientdata`, which rusqlite calls to clear its slots
/// (Syncline stores nothing there): clearing succeeds, storing is refused after freeing.
unsafe extern "C" fn set_clientdata(
    _db: *mut ffi::sqlite3,
    _name: *const std::ffi::c_char,
    data: *mut c_void,
    destructor: Option<unsafe extern "C" fn(*mut c_void)>,
) -> c_int {
    if data.is_null() {
        return ffi::SQLITE_OK;
    }
    if let Some(free) = destructor {
        unsafe { free(data) };
    }
    ffi::SQLITE_MISUSE
}

/// Fill an API table from the exported symbols of `handle` and bind it.
unsafe fn bind_handle(handle: *mut c_void, origin: String) -> Result<Bound> {
    // Every field is an optional function pointer: all-zero is a table of absent functions.
    let table: &'static mut ffi::sqlite3_api_routines = Box::leak(Box::new(unsafe { std::mem::zeroed() }));
    macro_rules! fill {
        ($field:ident, $symbol:literal) => {
            table.$field = unsafe { lookup(handle, $symbol) };
        };
    }
    symbols::for_each_api_symbol!(fill);
    let real = table.libversion_number.ok_or_else(|| library_error(format!("{origin} has no sqlite3_libversion_number")))?;
    let version = unsafe { real() };
    if version < MIN_VERSION_NUMBER {
        return Err(library_error(format!(
            "{origin} is SQLite {}; Syncline needs SQLite >= {}",
            version_text(version),
            version_text(MIN_VERSION_NUMBER)
        )));
    }
    if version < ffi::SQLITE_VERSION_NUMBER {
        REAL_VERSION.store(real as *mut c_void, Ordering::Release);
        table.libversion_number = Some(version_number);
    }
    if table.set_clientdata.is_none() {
        table.set_clientdata = Some(set_clientdata);
    }
    unsafe { init(table, origin) }
}

/// The function `name` that `handle` exports, as the table's optional function pointer type
/// (`None` when it exports none).
unsafe fn lookup<F: Copy>(handle: *mut c_void, name: &CStr) -> F {
    let address = unsafe { libc::dlsym(handle, name.as_ptr()) };
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    unsafe { std::mem::transmute_copy(&address) }
}

/// Hand the table to rusqlite (every later SQLite call goes through it).
unsafe fn init(api: *mut ffi::sqlite3_api_routines, origin: String) -> Result<Bound> {
    let open_v2 = unsafe { (*api).open_v2 }.map(|f| f as usize).unwrap_or(0);
    unsafe { ffi::rusqlite_extension_init2(api) }.map_err(|e| library_error(format!("cannot bind the SQLite of {origin}: {e}")))?;
    INITIALISED.store(true, Ordering::Release);
    let version = unsafe { CStr::from_ptr(ffi::sqlite3_libversion()) }.to_string_lossy().into_owned();
    Ok(Bound { open_v2, origin, version })
}

fn version_text(n: i32) -> String {
    format!("{}.{}.{}", n / 1_000_000, n / 1000 % 1000, n % 1000)
}

/// The file (shared library or program) that holds the code at `addr`.
fn file_of(addr: *const c_void) -> Option<String> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    Some(unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned())
}

/// A handle on the already loaded library that holds the code at `addr`.
fn handle_of(addr: *const c_void) -> Option<*mut c_void> {
    let file = CString::new(file_of(addr)?).ok()?;
    let handle = unsafe { libc::dlopen(file.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    let found = !handle.is_null() && !unsafe { libc::dlsym(handle, c"sqlite3_open_v2".as_ptr()) }.is_null();
    found.then_some(handle)
}

/// Prove that the application's driver and the engine run on one SQLite library.
///
/// `set_soft_heap_limit` must run `PRAGMA soft_heap_limit = N` through the app's driver. The
/// soft heap limit is global to one SQLite library, so the engine sees the value the driver set
/// only if both use the same copy. The previous limit is restored. Fails with `SqliteLibrary`
/// when they do not share one.
pub fn check_shared(set_soft_heap_limit: &mut dyn FnMut(i64) -> Result<()>) -> Result<()> {
    ensure_bound()?;
    let before = unsafe { ffi::sqlite3_soft_heap_limit64(-1) };
    // A limit of over a terabyte changes nothing, and is unlikely to be set by anyone else.
    let token = (1i64 << 40) + (uuid::Uuid::new_v4().as_u64_pair().0 >> 28) as i64;
    set_soft_heap_limit(token)?;
    let seen = unsafe { ffi::sqlite3_soft_heap_limit64(-1) };
    unsafe { ffi::sqlite3_soft_heap_limit64(before) };
    if seen == token {
        return Ok(());
    }
    let _ = set_soft_heap_limit(before);
    let (origin, version) = bound_library().unwrap_or_default();
    Err(library_error(format!(
        "the application's SQLite driver runs on another SQLite library than Syncline (SQLite {version} of {origin}): \
         two SQLite copies in one process do not share file locks and can corrupt the database. Load Syncline into the \
         driver as an extension, or make both use one shared SQLite library"
    )))
}
