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

/// The app's own connection, as the `sqlite3` shell or an ORM would write.
fn app(e: &SyncEngine) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(e.path()).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}

#[test]
fn a_column_added_by_another_writer_is_detected_captured_and_its_values_kept() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    for i in 1..=3 {
        a.execute("INSERT INTO todos(id, title) VALUES (?1, 'x')", &[Value::Integer(i)]).unwrap();
    }
    sync(&a, &b);
    // Version 2 of the app, on both replicas, behind the engine's back.
    for e in [&a, &b] {
        app(e).execute_batch("ALTER TABLE todos ADD COLUMN prio INTEGER DEFAULT 0").unwrap();
    }
    // Written before any engine call could notice the new column.
    app(&a).execute_batch("UPDATE todos SET prio = 5 WHERE id = 1; UPDATE todos SET prio = NULL WHERE id = 2").unwrap();
    let status = a.status().unwrap();
    assert_eq!(status.schema_changes.len(), 1, "{:?}", status.schema_changes);
    let change = &status.schema_changes[0];
    assert_eq!((change.table.as_str(), change.column.as_str(), change.decl_type.as_str()), ("todos", "prio", "INTEGER"));
    assert_eq!((change.source.as_str(), change.state.as_str()), ("detected", "applied"));
    // From now on the column is captured.
    app(&a).execute_batch("UPDATE todos SET prio = 7 WHERE id = 3").unwrap();
    let report = sync(&a, &b);
    // Row 1 (5), row 2 (NULL, not the default 0) and row 3 (7) travel.
    assert_eq!(report.applied, 3, "{report:?}");
    let want =
        vec![vec![Value::Integer(1), Value::Integer(5)], vec![Value::Integer(2), Value::Null], vec![Value::Integer(3), Value::Integer(7)]];
    assert_eq!(rows(&b, "SELECT id, prio FROM todos ORDER BY id"), want);
    // A column added on both sides converges both ways.
    b.execute("UPDATE todos SET prio = 9 WHERE id = 2", &[]).unwrap();
    sync(&b, &a);
    sync(&a, &b);
    assert_eq!(rows(&a, "SELECT id, prio FROM todos ORDER BY id"), rows(&b, "SELECT id, prio FROM todos ORDER BY id"));
    assert_eq!(state_hash(&a), state_hash(&b));
}

#[test]
fn init_again_after_an_alter_registers_the_column() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    app(&a).execute_batch("ALTER TABLE todos ADD COLUMN tag TEXT; UPDATE todos SET tag = 'red'").unwrap();
    a.enable_sync("todos", EnableOptions::default()).unwrap();
    let cols = rows(&a, "SELECT name FROM _syncline_columns WHERE is_pk = 0 ORDER BY ord");
    assert_eq!(cols.last(), Some(&vec![Value::Text("tag".into())]));
    let fresh = replica(&dir, "fresh", Strategy::Lww);
    fresh.execute_batch("ALTER TABLE todos ADD COLUMN tag TEXT").unwrap();
    fresh.import_bundle(&a.generate_bundle(None).unwrap()).unwrap();
    assert_eq!(rows(&fresh, "SELECT tag FROM todos"), vec![vec![Value::Text("red".into())]]);
}

#[test]
fn unsupported_changes_are_typed_errors_naming_the_change_and_the_way_out() {
    let dir = TempDir::new().unwrap();
    let cases: [(&str, &str); 3] = [
        ("ALTER TABLE todos RENAME TO tasks", "renamed to \"tasks\""),
        ("ALTER TABLE todos RENAME COLUMN body TO text", "\"body\""),
        (
            "CREATE TABLE t2(id INTEGER PRIMARY KEY, title TEXT, done TEXT NOT NULL DEFAULT 0, body TEXT); \
             INSERT INTO t2 SELECT * FROM todos; DROP TABLE todos; ALTER TABLE t2 RENAME TO todos",
            "changed its type from \"INTEGER\" to \"TEXT\"",
        ),
    ];
    for (i, (sql, says)) in cases.iter().enumerate() {
        let a = replica(&dir, &format!("a{i}"), Strategy::Lww);
        a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
        a.status().unwrap();
        let peer = replica(&dir, &format!("p{i}"), Strategy::Lww);
        peer.execute("INSERT INTO todos(id, title) VALUES (2, 'y')", &[]).unwrap();
        let from_peer = peer.generate_bundle(None).unwrap();
        app(&a).execute_batch(sql).unwrap();
        let mut errors = vec![a.status().err()];
        let before = full_dump(&a);
        errors.extend([a.generate_bundle(None).err(), a.import_bundle(&from_peer).err(), a.status().err()]);
        if i == 2 {
            errors.push(a.enable_sync("todos", EnableOptions::default()).err());
        }
        for err in errors {
            let err = err.expect("refused");
            assert_eq!(err.kind(), ErrorKind::SchemaMismatch, "{sql}: {err}");
            assert!(err.message().contains(says) && err.message().contains("reseed"), "{sql}: {err}");
            assert!(!err.message().to_lowercase().contains("no such"), "raw SQL error: {err}");
        }
        assert_eq!(full_dump(&a), before, "{sql}");
    }
}

#[test]
fn a_recreated_table_with_a_new_column_exports_no_stale_row() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let peer = replica(&dir, "peer", Strategy::Lww);
    peer.execute_batch("ALTER TABLE todos ADD COLUMN prio INTEGER").unwrap();
    for i in 1..=2 {
        a.execute("INSERT INTO todos(id, title) VALUES (?1, 'old')", &[Value::Integer(i)]).unwrap();
    }
    sync(&a, &peer);
    app(&a)
        .execute_batch(&format!("DROP TABLE todos; {TODOS}; ALTER TABLE todos ADD COLUMN prio INTEGER; INSERT INTO todos(id, title, prio) VALUES (2, 'kept', 3)"))
        .unwrap();
    a.enable_sync("todos", EnableOptions::default()).unwrap();
    let triggers = rows(&a, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'todos'");
    assert_eq!(triggers, vec![vec![Value::Integer(3 + 4)]]);
    sync(&a, &peer);
    assert_eq!(
        rows(&peer, "SELECT id, title, prio FROM todos"),
        vec![vec![Value::Integer(2), Value::Text("kept".into()), Value::Integer(3)]]
    );
    // What a new peer is sent: row 1 only as deleted.
    let fresh = replica(&dir, "fresh", Strategy::Lww);
    fresh.execute_batch("ALTER TABLE todos ADD COLUMN prio INTEGER").unwrap();
    fresh.import_bundle(&a.generate_bundle(None).unwrap()).unwrap();
    assert_eq!(rows(&fresh, "SELECT id FROM todos"), vec![vec![Value::Integer(2)]]);
    assert_eq!(state_hash(&fresh), state_hash(&a));
}
