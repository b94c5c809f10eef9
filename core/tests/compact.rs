//! Tombstone garbage collection (spec/merge-rules.md §8): deletes every known peer has
//! acknowledged are purged and the file shrinks; nothing unacknowledged goes; a stale peer
//! cannot bring a purged row back (NeedsSnapshot) and gets back in through a replica that has
//! not purged.

mod common;
use common::*;
use std::time::Duration;
use syncline::{ErrorKind, Strategy, SyncEngine, Value};
use tempfile::TempDir;

fn count(e: &SyncEngine) -> i64 {
    match rows(e, "SELECT count(*) FROM todos")[0][0] {
        Value::Integer(n) => n,
        _ => unreachable!(),
    }
}

fn fill(e: &SyncEngine, n: i64) {
    e.execute_batch(&format!(
        "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < {n}) \
         INSERT INTO todos(id, title, body) SELECT x, 'todo ' || x, hex(randomblob(50)) FROM i"
    ))
    .unwrap();
}

fn file_size(dir: &TempDir, name: &str) -> u64 {
    std::fs::metadata(dir.path().join(format!("{name}.db"))).unwrap().len()
}

#[test]
fn acknowledged_deletes_are_purged_and_the_file_shrinks() {
    let dir = TempDir::new().unwrap();
    let (a, b) = (replica(&dir, "a", Strategy::Lww), replica(&dir, "b", Strategy::Lww));
    sync(&a, &b);
    sync(&b, &a);
    a.compact(Duration::ZERO).unwrap();
    let empty = file_size(&dir, "a");
    fill(&a, 20_000);
    sync(&a, &b);
    a.execute_batch("DELETE FROM todos").unwrap();
    let s = a.status().unwrap();
    assert_eq!((s.tombstones, s.purgeable), (20_000, 0), "b has not seen the deletes yet");
    assert_eq!(a.compact(Duration::ZERO).unwrap().purged, 0);
    sync(&a, &b);
    sync(&b, &a); // b's answer tells a what b holds: the deletes
    assert_eq!(count(&b), 0);
    // Retention keeps them while they are young.
    assert_eq!(a.compact(Duration::from_secs(3600)).unwrap().purged, 0);
    assert_eq!(a.status().unwrap().purgeable, 20_000);
    let report = a.compact(Duration::ZERO).unwrap();
    assert_eq!(report.purged, 20_000);
    let s = a.status().unwrap();
    assert_eq!((s.tombstones, s.purgeable), (0, 0));
    assert_eq!(s.purge_horizon.len(), 1);
    let after = file_size(&dir, "a");
    assert!(after as f64 <= 1.5 * empty as f64, "{after} bytes after compaction, {empty} before the rows");
    assert_eq!(report.bytes_after, after);
    // The peers still converge, and b (which saw every purged delete) keeps syncing. The state
    // hash covers tombstones: equal again once b compacted the same deletes.
    b.execute("INSERT INTO todos(id, title) VALUES (1, 'again')", &[]).unwrap();
    sync(&b, &a);
    sync(&a, &b);
    assert_eq!(b.compact(Duration::ZERO).unwrap().purged, 19_999, "row 1 lives again");
    assert_eq!(state_hash(&a), state_hash(&b));
    assert_eq!(count(&a), 1);
}

#[test]
fn with_no_peer_known_nothing_is_purged() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    fill(&a, 100);
    a.execute_batch("DELETE FROM todos").unwrap();
    assert_eq!(a.compact(Duration::ZERO).unwrap().purged, 0);
    assert_eq!(a.status().unwrap().tombstones, 100);
}

#[test]
fn a_stale_peer_cannot_resurrect_a_purged_row_and_gets_back_in_through_a_peer_that_kept_it() {
    let dir = TempDir::new().unwrap();
    let (a, b, c) = (replica(&dir, "a", Strategy::Lww), replica(&dir, "b", Strategy::Lww), replica(&dir, "c", Strategy::Lww));
    fill(&a, 10);
    sync(&a, &b);
    sync(&b, &c); // c holds the rows,
    sync(&c, &b); // b knows c, then c goes offline
    c.execute("UPDATE todos SET title = 'edited offline' WHERE id = 3", &[]).unwrap();
    a.execute_batch("DELETE FROM todos WHERE id <= 5").unwrap();
    sync(&a, &b);
    sync(&b, &a);
    // a knows only b, which acknowledged: a purges. b knows c, which did not: b keeps them.
    assert_eq!(a.compact(Duration::ZERO).unwrap().purged, 5);
    assert_eq!(b.compact(Duration::ZERO).unwrap().purged, 0);
    let before = full_dump(&a);
    let err = a.import_bundle(&c.generate_bundle(None).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NeedsSnapshot, "{err}");
    assert_eq!(full_dump(&a), before, "nothing changed, nothing came back");
    // The way back in: c syncs with b (which still holds the deletes), then with a.
    sync(&b, &c);
    sync(&c, &b);
    sync(&c, &a);
    sync(&a, &c);
    for e in [&a, &b, &c] {
        assert_eq!(count(e), 5);
        assert!(rows(e, "SELECT id FROM todos WHERE id <= 5").is_empty());
    }
    sync(&b, &a);
    sync(&a, &b);
    sync(&c, &b);
    sync(&b, &c);
    // The state hash covers tombstones: equal once every replica purged the same deletes.
    for e in [&b, &c] {
        e.compact(Duration::ZERO).unwrap();
    }
    assert_eq!(state_hash(&a), state_hash(&b));
    assert_eq!(state_hash(&b), state_hash(&c));
}

#[test]
fn a_key_inserted_again_after_its_tombstone_was_purged_reaches_every_peer() {
    // b deletes a row; a learns it and purges the tombstone; a then inserts the same key again.
    // b still holds the tombstone (causal length 2): a's new row must outrank it, or b would
    // drop the insert as older history (found by the convergence property, seeded case).
    let dir = TempDir::new().unwrap();
    let (a, b) = (replica(&dir, "a", Strategy::Lww), replica(&dir, "b", Strategy::Lww));
    b.execute("INSERT INTO todos(id, title) VALUES (1, 'old')", &[]).unwrap();
    b.execute("DELETE FROM todos WHERE id = 1", &[]).unwrap();
    sync(&b, &a);
    assert_eq!(a.compact(Duration::ZERO).unwrap().purged, 1);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'new')", &[]).unwrap();
    sync(&a, &b);
    assert_eq!(rows(&b, "SELECT title FROM todos"), vec![vec![Value::Text("new".into())]]);
    assert_eq!(state_hash(&a), state_hash(&b));
}
