//! The SQLite extension entry point: a driver that loads a library built with `host-sqlite`
//! (`db.loadExtension(path)`, `.load path` in the sqlite3 shell, `load_extension(path)` in SQL)
//! binds the engine to its own SQLite and gets the SQL functions of `spec/sql-functions.md`.

use rusqlite::{ffi, Connection};
use std::ffi::{c_char, c_int, CString};

/// Entry point SQLite calls when it loads this library as an extension (the default name for a
/// file called `libsyncline.so` / `syncline.*`; other files name it explicitly).
///
/// Binds the loading SQLite library (a second, different one is refused), registers the
/// `syncline_*` SQL functions on the loading connection, and asks SQLite to keep the library
/// loaded for the life of the process.
///
/// # Safety
/// Called by SQLite only, with the arguments of an extension entry point.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_syncline_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    if p_api.is_null() || db.is_null() {
        return ffi::SQLITE_ERROR;
    }
    let loaded = std::panic::catch_unwind(|| -> crate::Result<()> {
        unsafe { super::bind_api(p_api) }?;
        let conn = unsafe { Connection::from_handle(db) }?;
        crate::sql::register(&conn)
    });
    let message = match loaded {
        Ok(Ok(())) => return ffi::SQLITE_OK_LOAD_PERMANENTLY,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "Syncline panicked while loading".to_owned(),
    };
    // The message must be allocated by the loading SQLite, which frees it.
    if let (false, Some(mprintf)) = (pz_err_msg.is_null(), unsafe { (*p_api).mprintf }) {
        let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
        unsafe { *pz_err_msg = mprintf(c"%s".as_ptr(), text.as_ptr()) };
    }
    ffi::SQLITE_ERROR
}
