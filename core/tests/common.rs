//! Helpers shared by the integration tests: replicas in a temporary folder and state hashes.
#![allow(dead_code)]

use syncline::bundle::{self, Contents};
use syncline::{EnableOptions, Options, Strategy, SyncEngine, Value};
use tempfile::TempDir;

pub const TODOS: &str = "CREATE TABLE IF NOT EXISTS todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0, body TEXT)";

pub fn open(dir: &TempDir, name: &str) -> SyncEngine {
    SyncEngine::open(dir.path().join(format!("{name}.db")), Options::default()).unwrap()
}

pub fn replica(dir: &TempDir, name: &str, strategy: Strategy) -> SyncEngine {
    let e = open(dir, name);
    e.execute_batch(TODOS).unwrap();
    e.enable_sync("todos", EnableOptions { strategy, ..Default::default() }).unwrap();
    e
}

pub fn rows(e: &SyncEngine, sql: &str) -> Vec<Vec<Value>> {
    e.query(sql, &[]).unwrap().rows
}

pub fn todos(e: &SyncEngine) -> Vec<Vec<Value>> {
    rows(e, "SELECT id, title, done, body FROM todos ORDER BY id")
}

/// Send everything `from` has that `to` lacks (per what `from` knows of `to`).
pub fn sync(from: &SyncEngine, to: &SyncEngine) -> syncline::ImportReport {
    let peer = to.site_id().unwrap();
    let b = from.generate_bundle(Some(&peer)).unwrap();
    to.import_bundle(&b).unwrap()
}

/// The engine's hash of synced data and sync state (equal on converged replicas).
pub fn state_hash(e: &SyncEngine) -> String {
    e.state_hash().unwrap()
}

/// Rows of a query over the sync state tables, read after the engine has stamped the writes
/// the capture triggers queued (any call that reads sync state, here `status`, does that).
pub fn stamped_rows(e: &SyncEngine, sql: &str) -> Vec<Vec<Value>> {
    e.status().unwrap();
    rows(e, sql)
}

/// A replica whose schema is `ddl`, with `table` enabled (default strategy).
pub fn replica_with(dir: &TempDir, name: &str, ddl: &str, table: &str) -> SyncEngine {
    let e = open(dir, name);
    e.execute_batch(ddl).unwrap();
    e.enable_sync(table, EnableOptions::default()).unwrap();
    e
}

/// Every row of every table in the file (Syncline's own included), table by table: equal
/// dumps mean the database is exactly as it was.
pub fn full_dump(e: &SyncEngine) -> Vec<(String, Vec<Vec<Value>>)> {
    let names = rows(e, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name");
    names
        .into_iter()
        .map(|n| {
            let Value::Text(name) = &n[0] else { unreachable!() };
            (name.clone(), rows(e, &format!("SELECT * FROM \"{name}\" ORDER BY 1, 2")))
        })
        .collect()
}

/// A real bundle decoded into its parts.
pub fn contents(bytes: &[u8]) -> Contents {
    let mut d = bundle::decode(bytes).unwrap();
    let rows = d.rows().collect::<Result<Vec<_>, _>>().unwrap();
    Contents { header: d.header.clone(), tables: d.tables.clone(), sites: d.sites.clone(), rows }
}

/// A bundle re-encoded after `edit` (a forgery with a valid frame and checksum): rows put back
/// in canonical order, the header's counts, stamp range and fingerprint made to match.
pub fn forge(bytes: &[u8], edit: impl FnOnce(&mut Contents)) -> Vec<u8> {
    let mut c = contents(bytes);
    edit(&mut c);
    c.rows.sort_by_key(bundle::canonical_key);
    let stamps: Vec<u64> = c.rows.iter().flat_map(|r| std::iter::once(r.hlc).chain(r.cells.iter().map(|c| c.hlc))).collect();
    c.header.rows = c.rows.len() as u64;
    c.header.changes = c.rows.iter().map(|r| 1 + r.cells.len() as u64).sum();
    c.header.min_hlc = stamps.iter().copied().min().unwrap_or(0);
    c.header.max_hlc = stamps.iter().copied().max().unwrap_or(0);
    c.header.schema = bundle::schema_fingerprint(&c.tables);
    bundle::encode(&c, false)
}
