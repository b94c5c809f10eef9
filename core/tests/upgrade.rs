//! Opening a database written by an older build: `fixtures/meta-v1.db` was made by the build
//! whose triggers stamped writes themselves (metadata version 1): `todos` enabled with one row
//! back-filled, then a row inserted and a column updated with the `sqlite3` shell.

mod common;
use common::*;
use rusqlite::Connection;
use syncline::{Options, SyncEngine, Value};
use tempfile::TempDir;

fn shadow(path: &std::path::Path) -> Vec<Vec<i64>> {
    let c = Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT pk0, cl, rh, rs, mh, h0, s0, h1, s1 FROM _syncline_shadow_1 ORDER BY pk0").unwrap();
    st.query_map([], |r| (0..9).map(|i| r.get::<_, Option<i64>>(i).map(|v| v.unwrap_or(-1))).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn a_version_1_database_keeps_its_sync_state_and_captures_with_the_new_triggers() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("old.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/meta-v1.db"), &path).unwrap();
    let before = shadow(&path);
    assert_eq!(before.len(), 2);

    let e = SyncEngine::open(&path, Options::default()).unwrap();
    assert_eq!(rows(&e, "SELECT value FROM _syncline_meta WHERE key = 'version'")[0][0], Value::Integer(2));
    let old_style = rows(&e, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%applying%'");
    assert_eq!(old_style[0][0], Value::Integer(0));
    assert_eq!(shadow(&path), before, "the upgrade leaves the recorded sync state alone");

    // A write from another connection is captured, stamped after everything recorded before.
    let newest = before.iter().map(|r| r[4]).max().unwrap();
    Connection::open(&path).unwrap().execute("UPDATE todos SET title = 'after upgrade' WHERE id = 2", []).unwrap();
    e.status().unwrap();
    let after = shadow(&path);
    assert!(after[1][5] > newest, "new stamp {} > {newest}", after[1][5]);

    let fresh = replica_with(&dir, "fresh", "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 0)", "todos");
    sync(&e, &fresh);
    let all = "SELECT id, title, done FROM todos ORDER BY id";
    assert_eq!(rows(&fresh, all), rows(&e, all));
    assert_eq!(rows(&fresh, all)[1][1], Value::Text("after upgrade".into()));
    assert_eq!(rows(&fresh, all)[0][2], Value::Integer(1), "the update made under the old triggers travels");
    assert_eq!(state_hash(&fresh), state_hash(&e));
    drop(e);
    // Opening again changes nothing more.
    let e = SyncEngine::open(&path, Options::default()).unwrap();
    assert_eq!(shadow(&path), after);
    assert_eq!(e.status().unwrap().tables.len(), 1);
}
