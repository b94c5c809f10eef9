//! Clock faults: more than 65,536 stamps in one millisecond, the wall clock set back, restarts;
//! local stamps always strictly increase.

mod common;
use common::*;
use syncline::{hlc, Strategy, Value};
use tempfile::TempDir;

fn stamps(e: &syncline::SyncEngine) -> Vec<i64> {
    stamped_rows(e, "SELECT h0 FROM _syncline_shadow_1 ORDER BY h0")
        .into_iter()
        .map(|r| match r[0] {
            Value::Integer(i) => i,
            _ => panic!("missing stamp"),
        })
        .collect()
}

#[test]
fn more_than_65536_writes_in_one_millisecond_stay_ordered() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.set_manual_clock(Some(1_700_000_000_000)).unwrap();
    a.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 70000) \
         INSERT INTO todos(id, title) SELECT i, 't' || i FROM n",
        &[],
    )
    .unwrap();
    let s = stamps(&a);
    assert_eq!(s.len(), 70_000);
    let mut sorted = s.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 70_000, "every stamp is unique");
    assert!(hlc::millis(*s.last().unwrap() as u64) > 1_700_000_000_000, "the counter carried into the ms field");
}

#[test]
fn clock_set_back_and_restart_never_issue_a_smaller_stamp() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.set_manual_clock(Some(2_000_000_000_000)).unwrap();
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'future')", &[]).unwrap();
    let high = stamps(&a)[0];
    drop(a);
    let a = open(&dir, "a");
    a.set_manual_clock(Some(1_000_000_000_000)).unwrap(); // clock set back a long way
    a.execute("INSERT INTO todos(id, title) VALUES (2, 'after restart')", &[]).unwrap();
    a.set_manual_clock(None).unwrap(); // back to the (earlier) system clock
    a.execute("INSERT INTO todos(id, title) VALUES (3, 'system clock')", &[]).unwrap();
    let s = stamps(&a);
    assert_eq!(s.len(), 3);
    assert_eq!(s[0], high);
    assert!(s[1] > high && s[2] > s[1]);
}

#[test]
fn the_system_clock_drives_stamps_by_default() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let before = hlc::system_now_ms();
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'now')", &[]).unwrap();
    let after = hlc::system_now_ms();
    let ms = hlc::millis(stamps(&a)[0] as u64);
    assert!(ms + 1 >= before && ms <= after + 1, "{before} <= {ms} <= {after}");
}
