//! Capture: every writer's changes are recorded by the triggers (second connection, the
//! sqlite3 shell, another process), only real changes count, keys may change, identifiers
//! may be hostile, and the table rules are enforced at enable time.

mod common;
use common::*;
use rusqlite::Connection;
use syncline::{EnableOptions, ErrorKind, Strategy, Value};
use tempfile::TempDir;

fn shadow_rows(e: &syncline::SyncEngine) -> usize {
    match &stamped_rows(e, "SELECT count(*) FROM _syncline_shadow_1")[0][0] {
        Value::Integer(n) => *n as usize,
        _ => unreachable!(),
    }
}

#[test]
fn a_second_connection_is_captured() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let other = Connection::open(dir.path().join("a.db")).unwrap();
    other.execute("INSERT INTO todos(id, title) VALUES (7, 'from another connection')", []).unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    sync(&a, &b);
    assert_eq!(todos(&b)[0][1], Value::Text("from another connection".into()));
}

#[test]
fn the_sqlite3_shell_is_captured() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let status = std::process::Command::new("sqlite3")
        .arg(dir.path().join("a.db"))
        .arg("INSERT INTO todos(id, title) VALUES (8, 'from the shell'); UPDATE todos SET done = 1 WHERE id = 8;")
        .status()
        .expect("the sqlite3 command-line shell must be installed (scripts/test-all.sh installs it)");
    assert!(status.success());
    let b = replica(&dir, "b", Strategy::Lww);
    let r = sync(&a, &b);
    assert_eq!(r.applied, 4);
    assert_eq!(todos(&b), vec![vec![Value::Integer(8), Value::Text("from the shell".into()), Value::Integer(1), Value::Null]]);
}

#[test]
fn unchanged_updates_are_not_captured_and_type_changes_are() {
    let dir = TempDir::new().unwrap();
    let a = open(&dir, "a");
    a.execute_batch("CREATE TABLE kv(k TEXT PRIMARY KEY, v)").unwrap();
    a.enable_sync("kv", EnableOptions::default()).unwrap();
    a.execute("INSERT INTO kv VALUES ('x', 1)", &[]).unwrap();
    let before = a.status().unwrap().version_vector;
    a.execute("UPDATE kv SET v = 1 WHERE k = 'x'", &[]).unwrap();
    assert_eq!(a.status().unwrap().version_vector, before, "a no-op update issues no stamp");
    a.execute("UPDATE kv SET v = 1.0 WHERE k = 'x'", &[]).unwrap();
    assert_ne!(a.status().unwrap().version_vector, before, "1 -> 1.0 changes the stored type");
}

#[test]
fn primary_key_change_is_a_delete_and_an_insert() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    sync(&a, &b);
    a.execute("UPDATE todos SET id = 2 WHERE id = 1", &[]).unwrap();
    sync(&a, &b);
    assert_eq!(todos(&b), vec![vec![Value::Integer(2), Value::Text("x".into()), Value::Integer(0), Value::Null]]);
    assert_eq!(shadow_rows(&b), 2, "the old key stays as a deleted row");
}

#[test]
fn insert_or_replace_and_upsert_are_captured() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    sync(&a, &b);
    a.execute("INSERT OR REPLACE INTO todos(id, title, done) VALUES (1, 'replaced', 1)", &[]).unwrap();
    a.execute("INSERT INTO todos(id, title) VALUES (2, 'y') ON CONFLICT(id) DO UPDATE SET title = excluded.title", &[]).unwrap();
    a.execute("INSERT INTO todos(id, title) VALUES (2, 'upserted') ON CONFLICT(id) DO UPDATE SET title = excluded.title", &[]).unwrap();
    sync(&a, &b);
    assert_eq!(todos(&a), todos(&b));
    assert_eq!(todos(&b)[1][1], Value::Text("upserted".into()));
}

#[test]
fn composite_keys_and_hostile_identifiers_sync() {
    let dir = TempDir::new().unwrap();
    let ddl = r#"CREATE TABLE "we""ird; DROP TABLE x; --"("a b" TEXT, "c""d" INTEGER, "v;--" TEXT, PRIMARY KEY("a b", "c""d"))"#;
    let name = "we\"ird; DROP TABLE x; --";
    let mk = |n: &str| {
        let e = open(&dir, n);
        e.execute_batch(ddl).unwrap();
        e.execute_batch("CREATE TABLE x(id INTEGER PRIMARY KEY)").unwrap();
        e.enable_sync(name, EnableOptions::default()).unwrap();
        e
    };
    let a = mk("a");
    let b = mk("b");
    a.execute(r#"INSERT INTO "we""ird; DROP TABLE x; --" VALUES ('k', 1, 'v1'), ('k', 2, 'v2')"#, &[]).unwrap();
    a.execute(r#"UPDATE "we""ird; DROP TABLE x; --" SET "v;--" = 'changed' WHERE "c""d" = 2"#, &[]).unwrap();
    sync(&a, &b);
    let got = rows(&b, r#"SELECT * FROM "we""ird; DROP TABLE x; --" ORDER BY 2"#);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1][2], Value::Text("changed".into()));
    assert_eq!(rows(&b, "SELECT count(*) FROM x")[0][0], Value::Integer(0), "table x still exists");
}

#[test]
fn table_rules_are_enforced_with_clear_errors() {
    let dir = TempDir::new().unwrap();
    let e = open(&dir, "a");
    e.execute_batch(
        "CREATE TABLE nopk(a, b);
         CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, t TEXT);
         CREATE TABLE strictnn(id TEXT PRIMARY KEY, n INTEGER NOT NULL);
         CREATE TABLE okdefault(id TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);",
    )
    .unwrap();
    let err = e.enable_sync("nopk", EnableOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaMismatch);
    assert!(err.message().contains("nopk") && err.message().contains("primary key"), "{err}");
    let err = e.enable_sync("auto", EnableOptions::default()).unwrap_err();
    assert!(err.message().contains("AUTOINCREMENT"), "{err}");
    e.enable_sync("auto", EnableOptions { allow_autoincrement: true, ..Default::default() }).unwrap();
    let err = e.enable_sync("strictnn", EnableOptions::default()).unwrap_err();
    assert!(err.message().contains("\"n\"") && err.message().contains("strictnn"), "{err}");
    e.enable_sync("okdefault", EnableOptions::default()).unwrap();
    assert_eq!(e.enable_sync("missing", EnableOptions::default()).unwrap_err().kind(), ErrorKind::UnknownTable);
    assert_eq!(e.disable_sync("missing").unwrap_err().kind(), ErrorKind::UnknownTable);
    assert_eq!(e.enable_sync("_syncline_clock", EnableOptions::default()).unwrap_err().kind(), ErrorKind::SchemaMismatch);
}

#[test]
fn existing_rows_are_backfilled_and_disable_keeps_data() {
    let dir = TempDir::new().unwrap();
    let a = open(&dir, "a");
    a.execute_batch(TODOS).unwrap();
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'old'), (2, 'older')", &[]).unwrap();
    a.enable_sync("todos", EnableOptions::default()).unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    sync(&a, &b);
    assert_eq!(todos(&b).len(), 2);
    a.disable_sync("todos").unwrap();
    assert_eq!(todos(&a).len(), 2);
    a.execute("INSERT INTO todos(id, title) VALUES (3, 'not captured')", &[]).unwrap();
    assert!(a.status().unwrap().tables.is_empty());
}

#[test]
fn a_copied_database_takes_a_new_site_id_and_both_converge() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    drop(a);
    std::fs::copy(dir.path().join("a.db"), dir.path().join("copy.db")).unwrap();
    let a = open(&dir, "a");
    let copy = open(&dir, "copy");
    assert_eq!(a.site_id().unwrap(), copy.site_id().unwrap());
    let new = copy.reset_site_id().unwrap();
    assert_ne!(new, a.site_id().unwrap());
    a.execute("UPDATE todos SET title = 'a' WHERE id = 1", &[]).unwrap();
    copy.execute("UPDATE todos SET done = 1 WHERE id = 1", &[]).unwrap();
    sync(&a, &copy);
    sync(&copy, &a);
    assert_eq!(todos(&a), todos(&copy));
    assert_eq!(todos(&a)[0][1..3], [Value::Text("a".into()), Value::Integer(1)]);
    assert_eq!(state_hash(&a), state_hash(&copy));
}

#[test]
fn a_copy_that_was_not_rekeyed_is_detected() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    drop(a);
    std::fs::copy(dir.path().join("a.db"), dir.path().join("copy.db")).unwrap();
    let a = open(&dir, "a");
    let copy = open(&dir, "copy");
    copy.execute("UPDATE todos SET title = 'diverged' WHERE id = 1", &[]).unwrap();
    let err = a.import_bundle(&copy.generate_bundle(None).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SiteIdClash, "{err}");
}

#[test]
fn an_apps_own_triggers_run_on_imported_rows_and_capture_resumes_after_an_import() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.execute_batch("INSERT INTO todos(id, title) VALUES (1, 'one'), (2, 'two')").unwrap();

    // b keeps an audit log with its own trigger on the synced table: imports must fire it.
    let b = replica(&dir, "b", Strategy::Lww);
    b.execute_batch(
        "CREATE TABLE audit(todo INTEGER, title TEXT);
         CREATE TRIGGER Audit_Insert AFTER INSERT ON TODOS BEGIN INSERT INTO audit VALUES (NEW.id, NEW.title); END;",
    )
    .unwrap();
    sync(&a, &b);
    assert_eq!(rows(&b, "SELECT todo, title FROM audit ORDER BY todo").len(), 2);
    // The capture triggers ran too (triggers stay on), but what they queued was discarded:
    // b stamped nothing as its own.
    let own = "SELECT count(*) FROM _syncline_shadow_1 WHERE rs = (SELECT site FROM _syncline_clock) \
               OR h0 IS NOT NULL AND s0 = (SELECT site FROM _syncline_clock)";
    assert_eq!(stamped_rows(&b, own)[0][0], Value::Integer(0));

    // c has no trigger of its own: after the import, its local writes are captured again.
    let c = replica(&dir, "c", Strategy::Lww);
    sync(&a, &c);
    c.execute_batch("INSERT INTO todos(id, title) VALUES (3, 'written on c after an import')").unwrap();
    let d = replica(&dir, "d", Strategy::Lww);
    sync(&c, &d);
    assert_eq!(todos(&d).len(), 3);
    assert_eq!(todos(&d)[2][1], Value::Text("written on c after an import".into()));
}

#[test]
fn an_apps_trigger_on_a_table_an_import_reaches_by_cascade_still_runs() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.execute_batch("INSERT INTO todos(id, title) VALUES (1, 'one')").unwrap();
    let e = replica(&dir, "e", Strategy::Lww);
    sync(&a, &e);
    // Local, unsynced tables on e: tags cascade from todos, and a trigger logs removed tags.
    e.execute_batch(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE tags(todo INTEGER REFERENCES todos(id) ON DELETE CASCADE, tag TEXT);
         CREATE TABLE removed(tag TEXT);
         CREATE TRIGGER log_removed AFTER DELETE ON tags BEGIN INSERT INTO removed VALUES (OLD.tag); END;
         INSERT INTO tags VALUES (1, 'home');",
    )
    .unwrap();
    a.execute_batch("DELETE FROM todos WHERE id = 1").unwrap();
    sync(&a, &e);
    assert!(todos(&e).is_empty());
    assert_eq!(rows(&e, "SELECT tag FROM removed"), vec![vec![Value::Text("home".into())]]);
}

#[test]
fn a_wide_table_syncs_every_column() {
    let dir = TempDir::new().unwrap();
    let cols: Vec<String> = (0..40).map(|i| format!("c{i} INTEGER")).collect();
    let ddl = format!("CREATE TABLE wide(id INTEGER PRIMARY KEY, {})", cols.join(", "));
    let open = |name: &str| {
        let e = syncline::SyncEngine::open(dir.path().join(format!("{name}.db")), syncline::Options::default()).unwrap();
        e.execute_batch(&ddl).unwrap();
        e.enable_sync("wide", EnableOptions::default()).unwrap();
        e
    };
    let (a, b) = (open("a"), open("b"));
    let values: Vec<String> = (0..40).map(|i| (i * 3).to_string()).collect();
    a.execute_batch(&format!("INSERT INTO wide VALUES (1, {})", values.join(", "))).unwrap();
    sync(&a, &b);
    a.execute_batch("UPDATE wide SET c39 = -1, c0 = -2 WHERE id = 1").unwrap();
    sync(&a, &b);
    let q = "SELECT * FROM wide";
    assert_eq!(rows(&a, q), rows(&b, q));
    assert_eq!(rows(&b, "SELECT c0, c20, c39 FROM wide"), vec![vec![Value::Integer(-2), Value::Integer(60), Value::Integer(-1)]]);
    assert_eq!(state_hash(&a), state_hash(&b));
}

#[test]
fn queued_writes_are_stamped_with_the_time_they_were_made() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let other = Connection::open(dir.path().join("a.db")).unwrap();
    let before = syncline::hlc::system_now_ms();
    other.execute("INSERT INTO todos(id, title) VALUES (1, 'early')", []).unwrap();
    let after = syncline::hlc::system_now_ms();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let h = match stamped_rows(&a, "SELECT h0 FROM _syncline_shadow_1")[0][0] {
        Value::Integer(h) => syncline::hlc::millis(h as u64),
        ref v => panic!("no stamp: {v:?}"),
    };
    assert!(h + 1 >= before && h <= after + 1, "stamped at {h}, written between {before} and {after}");

    // A manual clock set later applies to later writes only.
    a.set_manual_clock(Some(1_800_000_000_000)).unwrap();
    other.execute("UPDATE todos SET title = 'later' WHERE id = 1", []).unwrap();
    a.set_manual_clock(Some(1_900_000_000_000)).unwrap();
    other.execute("INSERT INTO todos(id, title) VALUES (2, 'latest')", []).unwrap();
    let ms: Vec<u64> = stamped_rows(&a, "SELECT h0 FROM _syncline_shadow_1 ORDER BY pk0")
        .iter()
        .map(|r| match r[0] {
            Value::Integer(h) => syncline::hlc::millis(h as u64),
            ref v => panic!("no stamp: {v:?}"),
        })
        .collect();
    assert_eq!(ms, vec![1_800_000_000_000, 1_900_000_000_000]);
}

#[test]
fn a_write_queued_before_an_import_is_stamped_before_it() {
    // a edits a cell at t, b edits it at t + 1 s; a imports b's change before a's own write was
    // stamped. a's write happened first, so last-writer-wins must keep b's value everywhere.
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'original')", &[]).unwrap();
    sync(&a, &b);
    sync(&b, &a);
    let t = syncline::hlc::system_now_ms();
    a.set_manual_clock(Some(t)).unwrap();
    b.set_manual_clock(Some(t + 1_000)).unwrap();
    let other = Connection::open(dir.path().join("a.db")).unwrap();
    other.execute("UPDATE todos SET title = 'a, first' WHERE id = 1", []).unwrap();
    b.execute("UPDATE todos SET title = 'b, second' WHERE id = 1", &[]).unwrap();
    let report = sync(&b, &a);
    assert_eq!(report.conflicts, 1, "both replicas changed the cell since they last synced");
    sync(&a, &b);
    assert_eq!(todos(&a)[0][1], Value::Text("b, second".into()));
    assert_eq!(todos(&b)[0][1], Value::Text("b, second".into()));
    assert_eq!(state_hash(&a), state_hash(&b));
}

#[test]
fn a_key_change_is_one_stamp_for_the_delete_and_the_insert() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    a.execute("UPDATE todos SET id = 2 WHERE id = 1", &[]).unwrap();
    let r = stamped_rows(&a, "SELECT pk0, cl, rh FROM _syncline_shadow_1 ORDER BY pk0");
    assert_eq!((r[0][0].clone(), r[0][1].clone()), (Value::Integer(1), Value::Integer(2)));
    assert_eq!((r[1][0].clone(), r[1][1].clone()), (Value::Integer(2), Value::Integer(1)));
    assert_eq!(r[0][2], r[1][2], "the delete of the old key and the insert of the new one share a stamp");
    assert_eq!(rows(&a, "SELECT count(*) FROM _syncline_queue")[0][0], Value::Integer(0));
}

#[test]
fn writes_made_while_no_engine_was_open_are_stamped_when_one_opens() {
    let dir = TempDir::new().unwrap();
    drop(replica(&dir, "a", Strategy::Lww));
    let app = Connection::open(dir.path().join("a.db")).unwrap();
    app.execute_batch("INSERT INTO todos(id, title) VALUES (1, 'offline'), (2, 'offline too')").unwrap();
    let queued = |c: &Connection| c.query_row("SELECT count(*) FROM _syncline_queue", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(queued(&app), 2);
    let a = open(&dir, "a");
    assert_eq!(queued(&app), 0);
    assert_eq!(rows(&a, "SELECT count(*) FROM _syncline_shadow_1 WHERE h0 IS NOT NULL")[0][0], Value::Integer(2));
}

#[test]
fn a_null_primary_key_is_refused_at_write_time_and_sync_goes_on() {
    let dir = TempDir::new().unwrap();
    let a = replica_with(&dir, "a", "CREATE TABLE notes(id TEXT PRIMARY KEY, body TEXT)", "notes");
    let app = Connection::open(dir.path().join("a.db")).unwrap();
    // SQLite lets a TEXT PRIMARY KEY hold NULL; a synced table must not.
    let err = app.execute("INSERT INTO notes(id, body) VALUES (NULL, 'x')", []).unwrap_err();
    assert!(err.to_string().contains("primary key cannot be NULL"), "{err}");
    app.execute("INSERT INTO notes(id, body) VALUES ('n1', 'kept')", []).unwrap();
    let err = app.execute("UPDATE notes SET id = NULL WHERE id = 'n1'", []).unwrap_err();
    assert!(err.to_string().contains("primary key cannot be NULL"), "{err}");
    assert_eq!(a.status().unwrap().tables[0].rows, 1);
}

/// A write queued while the engine stamps can only come from a second SQLite copy that does not
/// see the engine's write lock (two copies in one process): the pass is refused with `Corrupt`
/// and every queued write stays queued, instead of being dropped unstamped.
#[test]
fn a_write_queued_during_stamping_is_refused_as_corrupt_and_kept() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let app = Connection::open(dir.path().join("a.db")).unwrap();
    // Stand-in for the foreign writer: a write queued after the pass read the queue, when the
    // engine records its clock.
    app.execute_batch(
        "CREATE TRIGGER foreign_writer AFTER UPDATE ON _syncline_clock BEGIN \
           INSERT INTO _syncline_queue(t, tbl, op, pk0) VALUES (julianday('now'), 1, 0, 1000); END;
         INSERT INTO todos(id, title) VALUES (1, 'one');",
    )
    .unwrap();
    let queued = |c: &Connection| c.query_row("SELECT count(*) FROM _syncline_queue", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(queued(&app), 1);
    let err = a.generate_bundle(None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("one SQLite library"), "{err}");
    assert_eq!(a.status().unwrap_err().kind(), ErrorKind::Corrupt);
    assert_eq!(queued(&app), 1, "the queued write is kept");
    assert_eq!(app.query_row("SELECT count(*) FROM _syncline_shadow_1", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    // Once the foreign writer is gone, the kept write is stamped and exported.
    app.execute_batch("DROP TRIGGER foreign_writer").unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    sync(&a, &b);
    assert_eq!(todos(&b)[0][1], Value::Text("one".into()));
}
