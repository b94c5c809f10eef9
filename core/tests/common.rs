//! Helpers shared by the integration tests: replicas in a temporary folder and state hashes.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
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

/// A hash of every table in the file, user data and sync metadata alike (site-local
/// bookkeeping excluded: peers, conflicts log, site ordinals are mapped to ids).
pub fn state_hash(e: &SyncEngine) -> String {
    let mut h = Sha256::new();
    let tables = rows(e, "SELECT name FROM _syncline_tables ORDER BY name");
    for t in tables {
        let Value::Text(name) = &t[0] else { panic!() };
        for r in rows(e, &format!("SELECT * FROM \"{name}\" ORDER BY 1")) {
            h.update(format!("{r:?}"));
        }
        let id = rows(e, &format!("SELECT id FROM _syncline_tables WHERE name = '{name}'"))[0][0].clone();
        let Value::Integer(id) = id else { panic!() };
        // Shadow rows with site ordinals replaced by site ids.
        let q = e.query(&format!("SELECT * FROM _syncline_shadow_{id} ORDER BY pk0"), &[]).unwrap();
        for r in q.rows {
            let mapped: Vec<String> = q
                .columns
                .iter()
                .zip(r.iter())
                .map(|(c, v)| {
                    if c == "rs" || (c.starts_with('s') && c[1..].parse::<u32>().is_ok()) {
                        match v {
                            Value::Integer(o) => format!("{:?}", rows(e, &format!("SELECT hex(site) FROM _syncline_sites WHERE ord = {o}"))[0][0]),
                            other => format!("{other:?}"),
                        }
                    } else if c == "mh" {
                        String::new()
                    } else {
                        format!("{v:?}")
                    }
                })
                .collect();
            h.update(mapped.join(","));
        }
    }
    hex::encode(h.finalize())
}
