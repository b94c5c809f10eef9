//! Snapshots for new devices: a copy without the source's site id, re-keyed on first open,
//! that catches up with only the changes since and ends in the state of a full initial sync.

mod common;
use common::*;
use syncline::{ErrorKind, Options, Strategy, SyncEngine, Value};
use tempfile::TempDir;

fn fill(e: &SyncEngine, from: i64, to: i64) {
    e.execute_batch(&format!(
        "WITH RECURSIVE i(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM i WHERE x < {to}) \
         INSERT INTO todos(id, title, body) SELECT x, 'todo ' || x, hex(randomblob(20)) FROM i"
    ))
    .unwrap();
}

#[test]
fn a_snapshot_opens_with_its_own_site_and_catches_up_with_the_delta_only() {
    let dir = TempDir::new().unwrap();
    let (a, b) = (replica(&dir, "a", Strategy::Lww), replica(&dir, "b", Strategy::Lww));
    fill(&a, 1, 3000);
    b.execute("INSERT INTO todos(id, title) VALUES (-1, 'from b')", &[]).unwrap();
    sync(&b, &a);
    a.execute_batch("DELETE FROM todos WHERE id <= 100").unwrap();
    let file = dir.path().join("snap.db");
    a.snapshot(&file).unwrap();
    assert_eq!(a.snapshot(&file).unwrap_err().kind(), ErrorKind::InvalidArgument, "never over an existing file");
    // Two devices start from copies of one snapshot; each gets a site id of its own.
    std::fs::copy(&file, dir.path().join("d2.db")).unwrap();
    let d = SyncEngine::open(&file, Options::default()).unwrap();
    let d2 = SyncEngine::open(dir.path().join("d2.db"), Options::default()).unwrap();
    let ids = [a.site_id().unwrap(), b.site_id().unwrap(), d.site_id().unwrap(), d2.site_id().unwrap()];
    assert!(ids.iter().enumerate().all(|(i, x)| ids[i + 1..].iter().all(|y| y != x)), "{ids:?}");
    assert_eq!(d.site_id().unwrap(), d.site_id().unwrap(), "re-keyed once");
    assert_eq!(todos(&d), todos(&a));
    assert!(d.status().unwrap().peers.iter().any(|p| p.site_id == ids[0]), "the source is a known peer");
    // The source moves on; the device's first exchange carries only that. The device speaks
    // first (as an HTTP sync does: push, then pull): its bundle tells the source what it holds.
    fill(&a, 5000, 5009);
    a.execute("UPDATE todos SET title = 'changed' WHERE id = 200", &[]).unwrap();
    let hello = d.generate_bundle(Some(&ids[0])).unwrap();
    assert_eq!(syncline::bundle::decode(&hello).unwrap().row_count(), 0, "the device has nothing new");
    a.import_bundle(&hello).unwrap();
    let (delta, stats) = a.generate_bundle_with(syncline::ExportOptions { peer: Some(&ids[2]), compress: false }, &mut |_, _| {}).unwrap();
    assert_eq!(stats.rows, 11, "10 new rows and one change since the snapshot");
    d.import_bundle(&delta).unwrap();
    // The same state as a device that received everything.
    let full = replica(&dir, "full", Strategy::Lww);
    full.import_bundle(&a.generate_bundle(None).unwrap()).unwrap();
    assert_eq!(state_hash(&d), state_hash(&a));
    assert_eq!(state_hash(&d), state_hash(&full));
    // The device writes, and it reaches the others.
    d.execute("INSERT INTO todos(id, title) VALUES (9999, 'from the device')", &[]).unwrap();
    sync(&d, &a);
    sync(&a, &b);
    assert_eq!(rows(&b, "SELECT title FROM todos WHERE id = 9999")[0][0], Value::Text("from the device".into()));
    sync(&b, &a);
    sync(&a, &d);
    sync(&a, &d2);
    assert_eq!(state_hash(&a), state_hash(&b));
    assert_eq!(state_hash(&a), state_hash(&d));
    assert_eq!(state_hash(&a), state_hash(&d2));
}
