//! Syncline as a SQLite loadable extension: `.load ./libsyncline` in the sqlite3 shell, or
//! `load_extension('libsyncline')` from any driver. Everything lives in the core
//! (`syncline::host`); this crate only names the library and exports its entry point.

pub use syncline::host::sqlite3_syncline_init;
