//! Support for linking the system's libsqlite3 instead of the bundled copy (the crate built
//! without its default `bundled-sqlite` feature): the Python wheel does, so that it shares the one
//! SQLite that Python's `sqlite3` module loads (two SQLite copies in one process do not share
//! POSIX locks), and so can a Rust program (`cargo bench --no-default-features`).

/// SQLite before 3.44 lacks `sqlite3_set_clientdata`, which rusqlite
/// references to store Rust busy handlers, hooks and tracers; Syncline installs none, so
/// rusqlite only ever clears a slot (NULL data). This definition keeps a program linked against
/// such a SQLite loadable: it accepts clearing and refuses storing (after freeing the data).
/// (With a SQLite that has the function, this definition takes its place for Syncline alone.)
#[no_mangle]
pub unsafe extern "C" fn sqlite3_set_clientdata(
    _db: *mut std::ffi::c_void,
    _name: *const std::ffi::c_char,
    data: *mut std::ffi::c_void,
    destructor: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
) -> std::ffi::c_int {
    const SQLITE_OK: std::ffi::c_int = 0;
    const SQLITE_MISUSE: std::ffi::c_int = 21;
    if data.is_null() {
        return SQLITE_OK;
    }
    if let Some(free) = destructor {
        free(data);
    }
    SQLITE_MISUSE
}
