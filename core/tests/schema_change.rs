//! Schema changes a synced table can go through behind the engine's back: a renamed column
//! is a typed `SchemaMismatch` that changes nothing; a table dropped and created again is
//! brought back to sync by `enable_sync` (triggers reinstalled, the rows it lost recorded as
//! deletes). Also `Options::create`: opening a missing file without it creates nothing.

mod common;
use common::*;
use syncline::{EnableOptions, ErrorKind, Options, Strategy, SyncEngine, Value};
use tempfile::TempDir;

#[test]
fn opening_a_missing_file_without_create_is_not_found_and_creates_nothing() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nope.db");
    let err = SyncEngine::open(&path, Options { create: false, ..Default::default() }).err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("nope.db"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // An existing file opens without create; the default still creates.
    drop(SyncEngine::open(&path, Options::default()).unwrap());
    SyncEngine::open(&path, Options { create: false, ..Default::default() }).unwrap();
}

#[test]
fn a_renamed_column_is_a_schema_mismatch_and_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    b.execute("INSERT INTO todos(id, title) VALUES (1, 'from b')", &[]).unwrap();
    let from_b = b.generate_bundle(None).unwrap();
    a.execute("INSERT INTO todos(id, title) VALUES (2, 'a')", &[]).unwrap();
    a.status().unwrap();
    a.execute_batch("ALTER TABLE todos RENAME COLUMN title TO name").unwrap();
    let before = rows(&a, "SELECT * FROM todos");
    let shadow = rows(&a, "SELECT * FROM _syncline_shadow_1");
    let errors = [a.generate_bundle(None).err(), a.import_bundle(&from_b).err(), a.status().err()];
    for err in errors {
        let err = err.expect("refused");
        assert_eq!(err.kind(), ErrorKind::SchemaMismatch, "{err}");
        assert!(err.message().contains("\"title\"") && err.message().contains("renamed"), "{err}");
    }
    assert_eq!(rows(&a, "SELECT * FROM todos"), before);
    assert_eq!(rows(&a, "SELECT * FROM _syncline_shadow_1"), shadow);
    // Renaming it back makes everything work again.
    a.execute_batch("ALTER TABLE todos RENAME COLUMN name TO title").unwrap();
    a.import_bundle(&from_b).unwrap();
    assert_eq!(rows(&a, "SELECT title FROM todos ORDER BY id"), vec![vec![Value::Text("from b".into())], vec![Value::Text("a".into())]]);
}

#[test]
fn a_dropped_and_recreated_table_syncs_again_after_enable() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let peer = replica(&dir, "peer", Strategy::Lww);
    for i in 1..=3 {
        a.execute("INSERT INTO todos(id, title) VALUES (?1, 'old')", &[Value::Integer(i)]).unwrap();
    }
    sync(&a, &peer);
    assert_eq!(rows(&peer, "SELECT count(*) FROM todos"), vec![vec![Value::Integer(3)]]);
    // Drop and create again; row 3 comes back with new content, rows 1 and 2 do not.
    a.execute_batch(&format!("DROP TABLE todos; {TODOS}; INSERT INTO todos(id, title) VALUES (3, 'kept')")).unwrap();
    a.enable_sync("todos", EnableOptions::default()).unwrap();
    a.execute("INSERT INTO todos(id, title) VALUES (4, 'new')", &[]).unwrap();
    a.execute("UPDATE todos SET done = 1 WHERE id = 3", &[]).unwrap();
    let triggers = rows(&a, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'todos'");
    assert_ne!(triggers, vec![vec![Value::Integer(0)]]);
    // The peer that had the old rows and a fresh one both end with exactly the new table.
    let fresh = replica(&dir, "fresh", Strategy::Lww);
    sync(&a, &peer);
    a.generate_bundle(None).map(|b| fresh.import_bundle(&b).unwrap()).unwrap();
    let want = vec![
        vec![Value::Integer(3), Value::Text("kept".into()), Value::Integer(1), Value::Null],
        vec![Value::Integer(4), Value::Text("new".into()), Value::Integer(0), Value::Null],
    ];
    assert_eq!(todos(&a), want);
    assert_eq!(todos(&peer), want);
    assert_eq!(todos(&fresh), want);
    assert_eq!(state_hash(&peer), state_hash(&a));
    // A recreated table whose columns differ is refused with a clear error.
    a.execute_batch("DROP TABLE todos; CREATE TABLE todos(id INTEGER PRIMARY KEY, other TEXT)").unwrap();
    let err = a.enable_sync("todos", EnableOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaMismatch, "{err}");
}
