//! Crash-atomic import: a child process importing a large bundle is killed with SIGKILL at
//! several moments; after each, the database passes integrity_check, holds either none or all
//! of the bundle, and importing the bundle again reaches the same state as a clean run.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;
use syncline::{Strategy, Value};
use tempfile::TempDir;

/// Runs only as the child of `killed_imports_leave_all_or_nothing`.
#[test]
fn crash_child_import() {
    let (Ok(db), Ok(bundle)) = (std::env::var("SYNCLINE_CRASH_DB"), std::env::var("SYNCLINE_CRASH_BUNDLE")) else {
        return;
    };
    let e = syncline::SyncEngine::open(db, syncline::Options::default()).unwrap();
    e.import_bundle_file(bundle).unwrap();
}

fn count(e: &syncline::SyncEngine) -> i64 {
    match rows(e, "SELECT count(*) FROM todos")[0][0] {
        Value::Integer(n) => n,
        _ => unreachable!(),
    }
}

#[test]
fn killed_imports_leave_all_or_nothing() {
    let dir = TempDir::new().unwrap();
    let src = replica(&dir, "src", Strategy::Lww);
    src.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000) \
         INSERT INTO todos(id, title, body) SELECT i, 'task ' || i, printf('%.100c', 'x') FROM n",
        &[],
    )
    .unwrap();
    let bundle = dir.path().join("big.bundle");
    src.write_bundle(None, &bundle).unwrap();
    let clean = replica(&dir, "clean", Strategy::Lww);
    clean.import_bundle_file(&bundle).unwrap();
    let want = todos(&clean);
    let want_hash = state_hash(&clean);

    let mut saw_partial_run = false;
    for (k, delay_ms) in [5u64, 40, 120, 250, 400].into_iter().enumerate() {
        let name = format!("victim{k}");
        drop(replica(&dir, &name, Strategy::Lww));
        let db = dir.path().join(format!("{name}.db"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_import", "--nocapture"])
            .env("SYNCLINE_CRASH_DB", &db)
            .env("SYNCLINE_CRASH_BUNDLE", &bundle)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        saw_partial_run |= !finished;

        let e = open(&dir, &name);
        assert_eq!(rows(&e, "PRAGMA integrity_check")[0][0], Value::Text("ok".into()));
        let n = count(&e);
        assert!(n == 0 || n == 60_000, "kill after {delay_ms} ms left {n} rows: not atomic");
        e.import_bundle_file(&bundle).unwrap();
        assert_eq!(todos(&e), want);
        assert_eq!(state_hash(&e), want_hash, "re-import reaches the clean run's state");
        assert_eq!(rows(&e, "SELECT count(*) FROM _syncline_shadow_1")[0][0], Value::Integer(60_000));
    }
    assert!(saw_partial_run, "no kill landed during an import; the test proved nothing");
}
