//! End-to-end merge scenarios between replicas: insert sync, column-level merge, deletes,
//! re-inserts, every conflict strategy, idempotence and relays.

mod common;
use common::*;
use std::sync::Arc;
use syncline::{ConflictInput, Resolution, Strategy, Value};
use tempfile::TempDir;

fn t(s: &str) -> Value {
    Value::Text(s.into())
}
fn i(v: i64) -> Value {
    Value::Integer(v)
}

#[test]
fn insert_reaches_a_new_peer_and_reimport_is_harmless() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title, body) VALUES (1, 'milk', 'x')", &[]).unwrap();
    let bundle = a.generate_bundle(None).unwrap();
    let r = b.import_bundle(&bundle).unwrap();
    assert_eq!(r.applied, 4, "{r:?}"); // row state + 3 cells
    assert_eq!(todos(&b), vec![vec![i(1), t("milk"), i(0), t("x")]]);
    let again = b.import_bundle(&bundle).unwrap();
    assert_eq!(again.applied, 0);
    assert_eq!(again.already_known, 4);
    assert_eq!(state_hash(&a), state_hash(&b));
    // b does not re-capture the import as its own change
    let back = sync(&b, &a);
    assert_eq!(back.applied, 0, "{back:?}");
}

#[test]
fn concurrent_edits_to_different_columns_all_survive() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    let c = replica(&dir, "c", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title, body) VALUES (1, 'milk', 'x')", &[]).unwrap();
    sync(&a, &b);
    sync(&a, &c);
    a.execute("UPDATE todos SET title = 'oat milk' WHERE id = 1", &[]).unwrap();
    b.execute("UPDATE todos SET done = 1 WHERE id = 1", &[]).unwrap();
    c.execute("UPDATE todos SET body = 'from c' WHERE id = 1", &[]).unwrap();
    for _ in 0..2 {
        for (x, y) in [(&a, &b), (&b, &c), (&c, &a), (&b, &a), (&c, &b), (&a, &c)] {
            sync(x, y);
        }
    }
    let want = vec![vec![i(1), t("oat milk"), i(1), t("from c")]];
    assert_eq!(todos(&a), want);
    assert_eq!(todos(&b), want);
    assert_eq!(todos(&c), want);
    assert_eq!(state_hash(&a), state_hash(&b));
    assert_eq!(state_hash(&b), state_hash(&c));
}

#[test]
fn delete_beats_concurrent_update_and_reinsert_beats_delete() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title, body) VALUES (1, 'milk', 'x')", &[]).unwrap();
    sync(&a, &b);
    a.execute("DELETE FROM todos WHERE id = 1", &[]).unwrap();
    b.execute("UPDATE todos SET title = 'late edit' WHERE id = 1", &[]).unwrap();
    sync(&a, &b);
    sync(&b, &a);
    assert!(todos(&a).is_empty());
    assert!(todos(&b).is_empty());
    // re-insert after delete: no stale values come back
    b.execute("INSERT INTO todos(id, title) VALUES (1, 'fresh')", &[]).unwrap();
    sync(&b, &a);
    assert_eq!(todos(&a), vec![vec![i(1), t("fresh"), i(0), Value::Null]]);
    assert_eq!(state_hash(&a), state_hash(&b));
}

#[test]
fn stale_update_arriving_after_delete_is_ignored() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'milk')", &[]).unwrap();
    let insert = a.generate_bundle(None).unwrap();
    a.execute("UPDATE todos SET title = 'edit' WHERE id = 1", &[]).unwrap();
    let update = a.generate_bundle(None).unwrap();
    a.execute("DELETE FROM todos WHERE id = 1", &[]).unwrap();
    let delete = a.generate_bundle(None).unwrap();
    b.import_bundle(&delete).unwrap();
    b.import_bundle(&update).unwrap();
    b.import_bundle(&insert).unwrap();
    assert!(todos(&b).is_empty());
    assert_eq!(state_hash(&a), state_hash(&b));
}

#[test]
fn manual_conflict_is_recorded_survives_restart_and_resolution_propagates() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Manual);
    let b = replica(&dir, "b", Strategy::Manual);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'milk')", &[]).unwrap();
    sync(&a, &b);
    a.execute("UPDATE todos SET title = 'from a' WHERE id = 1", &[]).unwrap();
    b.execute("UPDATE todos SET title = 'from b' WHERE id = 1", &[]).unwrap();
    let r = sync(&b, &a);
    assert_eq!(r.conflicts, 1);
    assert_eq!(todos(&a)[0][1], t("from a"), "manual keeps local");
    drop(a);
    let a = open(&dir, "a");
    let cs = a.conflicts().unwrap();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].local.value, t("from a"));
    assert_eq!(cs[0].remote.value, t("from b"));
    // a duplicate of the same bundle does not override the held value
    sync(&b, &a);
    assert_eq!(todos(&a)[0][1], t("from a"));
    a.resolve(cs[0].id.unwrap(), Resolution::Value(t("merged"))).unwrap();
    assert!(a.conflicts().unwrap().is_empty());
    sync(&a, &b);
    sync(&b, &a);
    assert_eq!(todos(&b)[0][1], t("merged"));
    assert!(b.conflicts().unwrap().is_empty(), "b's own record is superseded: {:?}", b.conflicts());
    assert_eq!(state_hash(&a), state_hash(&b));
}

fn conflict_pair(strategy: Strategy) -> (TempDir, syncline::SyncEngine, syncline::SyncEngine) {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", strategy);
    let b = replica(&dir, "b", strategy);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'milk')", &[]).unwrap();
    sync(&a, &b);
    a.execute("UPDATE todos SET title = 'from a' WHERE id = 1", &[]).unwrap();
    b.execute("UPDATE todos SET title = 'from b' WHERE id = 1", &[]).unwrap();
    (dir, a, b)
}

fn settle(a: &syncline::SyncEngine, b: &syncline::SyncEngine) {
    for _ in 0..3 {
        sync(a, b);
        sync(b, a);
    }
}

#[test]
fn every_automatic_strategy_converges() {
    for strategy in [Strategy::Lww, Strategy::PreferLocal, Strategy::PreferRemote] {
        let (_d, a, b) = conflict_pair(strategy);
        let r = sync(&b, &a);
        assert_eq!(r.conflicts, 1, "{strategy}");
        settle(&a, &b);
        assert_eq!(todos(&a), todos(&b), "{strategy}");
        assert_eq!(state_hash(&a), state_hash(&b), "{strategy}");
    }
}

#[test]
fn custom_resolver_decides_and_its_failure_applies_nothing() {
    let (_d, a, b) = conflict_pair(Strategy::Custom);
    let longest = Arc::new(|c: &ConflictInput| -> Result<Resolution, String> {
        let (Value::Text(l), Value::Text(r)) = (&c.local.value, &c.remote.value) else { return Ok(Resolution::Local) };
        let mut both = [l.clone(), r.clone()];
        both.sort();
        Ok(Resolution::Value(Value::Text(both.join(" + "))))
    });
    let failing = Arc::new(|_: &ConflictInput| -> Result<Resolution, String> { Err("boom".into()) });
    a.set_resolver("todos", failing);
    let before = state_hash(&a);
    let bundle = b.generate_bundle(None).unwrap();
    let err = a.import_bundle(&bundle).unwrap_err();
    assert_eq!(err.kind(), syncline::ErrorKind::Resolver);
    assert!(err.message().contains("boom"));
    assert_eq!(state_hash(&a), before);
    // The failed import left capture on: this write reaches b.
    a.execute("INSERT INTO todos(id, title) VALUES (99, 'after a failed import')", &[]).unwrap();
    a.set_resolver("todos", longest.clone());
    b.set_resolver("todos", longest);
    settle(&a, &b);
    assert_eq!(todos(&a)[0][1], t("from a + from b"));
    assert_eq!(todos(&b).last().unwrap()[1], t("after a failed import"));
    assert_eq!(todos(&a), todos(&b));
    assert_eq!(state_hash(&a), state_hash(&b));
}

#[test]
fn relayed_bundles_converge() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    let c = replica(&dir, "c", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'a1'), (2, 'a2')", &[]).unwrap();
    sync(&a, &b);
    b.execute("UPDATE todos SET title = 'b2' WHERE id = 2", &[]).unwrap();
    sync(&b, &c); // c gets a's rows through b
    assert_eq!(todos(&c).len(), 2);
    sync(&c, &a);
    assert_eq!(todos(&a), todos(&c));
    assert_eq!(state_hash(&a), state_hash(&c));
}

#[test]
fn a_strategy_write_is_stamped_after_the_remote_stamp_it_settles() {
    // Same millisecond everywhere, the remote counter far ahead: the value prefer_local writes
    // must still win on the remote side, or the replicas would diverge.
    for strategy in [Strategy::PreferLocal, Strategy::Custom] {
        let (_d, a, b) = conflict_pair(strategy);
        let keep_local = Arc::new(|_: &ConflictInput| -> Result<Resolution, String> { Ok(Resolution::Local) });
        a.set_resolver("todos", keep_local.clone());
        b.set_resolver("todos", keep_local);
        for e in [&a, &b] {
            e.set_manual_clock(Some(4_000_000_000_000)).unwrap();
        }
        for k in 0..50 {
            b.execute(&format!("UPDATE todos SET title = 'from b {k}' WHERE id = 1"), &[]).unwrap();
        }
        a.execute("UPDATE todos SET title = 'from a' WHERE id = 1", &[]).unwrap();
        let r = sync(&b, &a); // the conflict is settled on a, whose counter is behind
        assert_eq!(r.conflicts, 1);
        settle(&a, &b);
        assert_eq!(todos(&a), todos(&b), "{strategy}");
        assert_eq!(state_hash(&a), state_hash(&b), "{strategy}");
    }
}

#[test]
fn every_change_is_counted_once() {
    for strategy in [Strategy::Lww, Strategy::Manual, Strategy::PreferLocal] {
        let (_d, a, b) = conflict_pair(strategy);
        let bundle = b.generate_bundle(None).unwrap();
        let r = a.import_bundle(&bundle).unwrap();
        let decoded = syncline::bundle::decode(&bundle).unwrap();
        assert_eq!(r.applied + r.already_known + r.rejected, decoded.header.changes, "{strategy}: {r:?}");
        assert_eq!(r.conflicts, 1);
    }
}

#[test]
fn a_row_replaced_through_a_unique_column_is_deleted_on_every_replica() {
    let dir = TempDir::new().unwrap();
    let tags =
        |name: &str| replica_with(&dir, name, "CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER DEFAULT 0)", "tags");
    let (a, b) = (tags("a"), tags("b"));
    a.execute_batch("INSERT INTO tags(id, name) VALUES (1, 'x'), (2, 'y'), (5, 'z')").unwrap();
    sync(&a, &b);
    // REPLACE removes rows 1, 2 and 5 to make room; SQLite runs no delete trigger for them.
    // Row 0 sorts before row 1 in the bundle, so b meets the clash before the delete.
    a.execute_batch(
        "INSERT OR REPLACE INTO tags(id, name) VALUES (0, 'x');
         INSERT OR REPLACE INTO tags(id, name) VALUES (3, 'y');
         UPDATE OR REPLACE tags SET name = 'z' WHERE id = 3;",
    )
    .unwrap();
    let report = sync(&a, &b);
    assert_eq!(report.rejected, 0, "{report:?}");
    let all = "SELECT id, name FROM tags ORDER BY id";
    assert_eq!(rows(&a, all), vec![vec![i(0), t("x")], vec![i(3), t("z")]]);
    assert_eq!(rows(&b, all), rows(&a, all));
    assert_eq!(state_hash(&a), state_hash(&b));
}
