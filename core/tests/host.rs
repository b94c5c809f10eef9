//! The `host-sqlite` build: the engine bound at run time to a SQLite shared library already in
//! the process, sharing it with the application's own connections; a second SQLite copy is
//! refused. One test function: the binding is per process and its order matters.

use rusqlite::ffi;
use std::ffi::{c_void, CString};
use syncline::{host, ErrorKind, Options, SyncEngine};

const SYSTEM_SQLITE: &str = "libsqlite3.so.0";

/// The path of the system SQLite that `dlopen` finds.
fn system_sqlite_path() -> std::path::PathBuf {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.contains("libsqlite3.so")).expect("libsqlite3 is loaded");
    line.split_whitespace().last().unwrap().into()
}

/// `sqlite3_soft_heap_limit64` of the library at `path` (loaded under its own name).
fn soft_heap_limit_of(path: &std::path::Path) -> unsafe extern "C" fn(i64) -> i64 {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    unsafe {
        let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!h.is_null());
        let f = libc::dlsym(h, c"sqlite3_soft_heap_limit64".as_ptr());
        assert!(!f.is_null());
        std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i64) -> i64>(f)
    }
}

#[test]
fn the_engine_runs_on_the_bound_library_and_refuses_a_second_one() {
    let dir = tempfile::tempdir().unwrap();
    // Before any binding, opening says what to do.
    let err = SyncEngine::open(dir.path().join("early.db"), Options::default()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::SqliteLibrary, "{err}");
    assert!(err.message().contains("extension"), "{err}");
    assert!(!dir.path().join("early.db").exists());

    assert_eq!(host::PLATFORM_SQLITE, Some(SYSTEM_SQLITE));
    host::bind_library(SYSTEM_SQLITE).unwrap();
    host::bind_library(SYSTEM_SQLITE).unwrap(); // the same library again is fine
    let (origin, version) = host::bound_library().unwrap();
    assert!(origin.contains("libsqlite3"), "{origin}");
    let real = unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_libversion()) }.to_str().unwrap().to_owned();
    assert_eq!(version, real);

    // Two replicas; the app writes through its own connections on the same library, opening
    // and closing them between syncs.
    let paths = [dir.path().join("a.db"), dir.path().join("b.db")];
    let engines: Vec<SyncEngine> = paths
        .iter()
        .map(|p| {
            let e = SyncEngine::open(p, Options::default()).unwrap();
            e.execute_batch("CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT)").unwrap();
            e.enable_sync("todos", Default::default()).unwrap();
            e
        })
        .collect();
    for round in 0..4 {
        for (i, p) in paths.iter().enumerate() {
            let app = rusqlite::Connection::open(p).unwrap();
            app.execute("INSERT INTO todos VALUES (?1, 'x')", [round * 10 + i as i64]).unwrap();
            drop(app);
        }
        let ab = engines[0].generate_bundle(Some(&engines[1].site_id().unwrap())).unwrap();
        let ba = engines[1].generate_bundle(Some(&engines[0].site_id().unwrap())).unwrap();
        engines[1].import_bundle(&ab).unwrap();
        engines[0].import_bundle(&ba).unwrap();
    }
    for e in &engines {
        let rows = e.query("SELECT count(*) FROM todos", &[]).unwrap();
        assert_eq!(rows.rows[0][0], syncline::Value::Integer(8));
    }
    assert_eq!(engines[0].state_hash().unwrap(), engines[1].state_hash().unwrap());
    let rows = engines[0].query("SELECT sqlite_version()", &[]).unwrap();
    assert_eq!(rows.rows[0][0], syncline::Value::Text(real));

    // The app's driver on the same library passes the check.
    let probe = rusqlite::Connection::open_in_memory().unwrap();
    host::check_shared(&mut |n| Ok(probe.pragma_update(None, "soft_heap_limit", n)?)).unwrap();

    // A second copy of SQLite (the same file under another name is another library).
    let copy = dir.path().join("libsqlite3-copy.so");
    std::fs::copy(system_sqlite_path(), &copy).unwrap();
    let err = host::bind_library(copy.to_str().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SqliteLibrary);
    assert!(err.message().contains("second SQLite library"), "{err}");
    // A driver on that copy fails the check, whatever it sets.
    let other = soft_heap_limit_of(&copy);
    let err = host::check_shared(&mut |n| {
        unsafe { other(n) };
        Ok(())
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SqliteLibrary);
    assert!(err.message().contains("another SQLite library"), "{err}");
    // The engines still work on the bound library.
    assert_eq!(engines[0].state_hash().unwrap(), engines[1].state_hash().unwrap());
}
