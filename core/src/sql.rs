//! The SQL functions a connection gets when it loads Syncline as an extension
//! (`spec/sql-functions.md`): the public interface of Syncline for any language whose SQLite
//! driver can load extensions (the sqlite3 shell, Go, Ruby, PHP, ...).
//!
//! Each connection that loads the extension gets its own engine on the same database file,
//! opened on first use through the same SQLite library, and closed with the connection.

use crate::error::{Error, Result};
use crate::{json, ExportOptions, Options, Resolution, SiteId, Strategy, SyncEngine, Value};
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ffi, Connection};
use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The engine of one loading connection, opened on first use.
struct Slot {
    /// The loading connection (its address: it outlives the functions registered on it).
    db: usize,
    engine: OnceLock<SyncEngine>,
}

impl Slot {
    fn engine(&self) -> Result<&SyncEngine> {
        let db = self.db as *mut ffi::sqlite3;
        // Inside the caller's transaction the engine's own connection would wait for the
        // caller's lock (or read a state missing the caller's writes): refuse instead.
        if unsafe { ffi::sqlite3_get_autocommit(db) } == 0 {
            return Err(Error::invalid_argument(
                "syncline_* functions run outside a transaction: COMMIT or ROLLBACK first (they read and write the database \
                 through their own connection)",
            ));
        }
        if let Some(e) = self.engine.get() {
            return Ok(e);
        }
        let file = unsafe { ffi::sqlite3_db_filename(db, c"main".as_ptr()) };
        let path = if file.is_null() { String::new() } else { unsafe { CStr::from_ptr(file) }.to_string_lossy().into_owned() };
        if path.is_empty() {
            return Err(Error::invalid_argument("syncline_* functions need a database file (not :memory: or a temporary database)"));
        }
        let engine = SyncEngine::open(PathBuf::from(path), Options { create: false, ..Options::default() })?;
        Ok(self.engine.get_or_init(|| engine))
    }
}

/// How one function turns its arguments into a result.
type Body = fn(&SyncEngine, &Args<'_, '_>) -> Result<Out>;

/// A function's result.
enum Out {
    Text(String),
    Blob(Vec<u8>),
    Int(i64),
}

/// Typed access to a call's arguments, naming the function in errors.
struct Args<'a, 'b> {
    name: &'static str,
    ctx: &'a Context<'b>,
}

impl Args<'_, '_> {
    fn len(&self) -> usize {
        self.ctx.len()
    }
    fn text(&self, i: usize, what: &str) -> Result<String> {
        match self.ctx.get_raw(i) {
            ValueRef::Text(t) => {
                String::from_utf8(t.to_vec()).map_err(|_| Error::invalid_argument(format!("{}: {what} is not UTF-8", self.name)))
            }
            _ => Err(Error::invalid_argument(format!("{}: {what} must be text", self.name))),
        }
    }
    fn opt_text(&self, i: usize, what: &str) -> Result<Option<String>> {
        if i >= self.len() || matches!(self.ctx.get_raw(i), ValueRef::Null) {
            return Ok(None);
        }
        self.text(i, what).map(Some)
    }
    fn peer(&self, i: usize) -> Result<Option<SiteId>> {
        self.opt_text(i, "the peer site id")?.map(|s| s.parse::<SiteId>()).transpose()
    }
    fn value(&self, i: usize) -> Value {
        Value::from_ref(self.ctx.get_raw(i))
    }
}

/// Every function: name, accepted argument counts, body.
const FUNCTIONS: &[(&str, &[i32], Body)] = &[
    ("syncline_version", &[0], |_, _| Ok(Out::Text(env!("CARGO_PKG_VERSION").to_owned()))),
    ("syncline_site_id", &[0], |e, _| Ok(Out::Text(e.site_id()?.to_hex()))),
    ("syncline_enable", &[1, 2], |e, a| {
        let table = a.text(0, "the table")?;
        let strategy = a.opt_text(1, "the strategy")?.map(|s| s.parse::<Strategy>()).transpose()?.unwrap_or_default();
        e.enable_sync(&table, crate::EnableOptions { strategy, ..Default::default() })?;
        Ok(Out::Text(table))
    }),
    ("syncline_disable", &[1], |e, a| {
        let table = a.text(0, "the table")?;
        e.disable_sync(&table)?;
        Ok(Out::Text(table))
    }),
    ("syncline_set_strategy", &[2], |e, a| {
        let table = a.text(0, "the table")?;
        e.set_strategy(&table, a.text(1, "the strategy")?.parse()?)?;
        Ok(Out::Text(table))
    }),
    ("syncline_bundle", &[0, 1], |e, a| Ok(Out::Blob(e.generate_bundle(a.peer(0)?.as_ref())?))),
    ("syncline_export", &[1, 2], |e, a| {
        let path = a.text(0, "the file")?;
        let peer = a.peer(1)?;
        let stats = e.write_bundle_with(ExportOptions { peer: peer.as_ref(), compress: false }, &path, &mut |_, _| {})?;
        Ok(Out::Text(json::bundle_stats(&stats).to_string()))
    }),
    ("syncline_import", &[1], |e, a| match a.ctx.get_raw(0) {
        ValueRef::Blob(b) => Ok(Out::Text(json::import_report(&e.import_bundle(b)?).to_string())),
        _ => Err(Error::invalid_argument("syncline_import: the bundle must be a blob (readfile('x.bundle') in the shell)")),
    }),
    ("syncline_import_file", &[1], |e, a| Ok(Out::Text(json::import_report(&e.import_bundle_file(a.text(0, "the file")?)?).to_string()))),
    ("syncline_compact", &[0, 1], |e, a| {
        let retain = match (a.len(), a.ctx.get_raw(0)) {
            (0, _) => 7 * 86_400,
            (_, ValueRef::Integer(s)) if s >= 0 => s as u64,
            _ => return Err(Error::invalid_argument("syncline_compact: the retention is a number of seconds >= 0")),
        };
        Ok(Out::Text(json::compact_report(&e.compact(std::time::Duration::from_secs(retain))?).to_string()))
    }),
    ("syncline_status", &[0], |e, _| Ok(Out::Text(json::status(&e.status()?).to_string()))),
    ("syncline_state_hash", &[0], |e, _| Ok(Out::Text(e.state_hash()?))),
    ("syncline_conflicts", &[0], |e, _| {
        Ok(Out::Text(serde_json::Value::Array(e.conflicts()?.iter().map(json::conflict).collect()).to_string()))
    }),
    ("syncline_resolve", &[2, 3], |e, a| {
        let id = match a.ctx.get_raw(0) {
            ValueRef::Integer(i) => i,
            _ => return Err(Error::invalid_argument("syncline_resolve: the conflict id must be an integer")),
        };
        let resolution = match (a.text(1, "the choice")?.as_str(), a.len()) {
            ("local", 2) => Resolution::Local,
            ("remote", 2) => Resolution::Remote,
            ("value", 3) => Resolution::Value(a.value(2)),
            _ => return Err(Error::invalid_argument("syncline_resolve(id, 'local' | 'remote') or syncline_resolve(id, 'value', v)")),
        };
        e.resolve(id, resolution)?;
        Ok(Out::Int(id))
    }),
    #[cfg(feature = "net")]
    ("syncline_sync", &[1, 2], |e, a| {
        let client = crate::net::SyncClient::new(&a.text(0, "the URL")?, a.opt_text(1, "the token")?.as_deref(), Default::default())?;
        Ok(Out::Text(json::sync_report(&client.sync(e)?).to_string()))
    }),
];

/// Register every `syncline_*` function on `conn`.
pub(crate) fn register(conn: &Connection) -> Result<()> {
    let slot = Arc::new(Slot { db: unsafe { conn.handle() } as usize, engine: OnceLock::new() });
    for &(name, arities, body) in FUNCTIONS {
        for &n in arities {
            let slot = slot.clone();
            let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
            conn.create_scalar_function(name, n, flags, move |ctx| {
                let args = Args { name, ctx };
                let out = slot.engine().and_then(|e| body(e, &args)).map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?;
                Ok(match out {
                    Out::Text(t) => ToSqlOutput::from(t),
                    Out::Blob(b) => ToSqlOutput::from(b),
                    Out::Int(i) => ToSqlOutput::from(i),
                })
            })?;
        }
    }
    Ok(())
}
