//! The engine is shared between threads and works while the app keeps writing through its own
//! connection: no SQLITE_BUSY, no lost write. Events reach subscribers.

mod common;
use common::*;
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use syncline::{Event, Strategy, SyncEngine, Value};
use tempfile::TempDir;

#[test]
fn imports_and_exports_run_while_another_connection_writes() {
    let dir = TempDir::new().unwrap();
    // A loaded machine can keep a waiter off the write lock for a while: wait up to a minute.
    let options = syncline::Options { busy_timeout_ms: 60_000, ..Default::default() };
    let a = SyncEngine::open(dir.path().join("a.db"), options).unwrap();
    a.execute_batch(TODOS).unwrap();
    a.enable_sync("todos", syncline::EnableOptions::default()).unwrap();
    let a = Arc::new(a);
    let src = replica(&dir, "src", Strategy::Lww);
    src.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO todos(id, title) SELECT 100000 + i, 'remote' FROM n",
        &[],
    )
    .unwrap();
    let bundle = src.generate_bundle(None).unwrap();
    let path = dir.path().join("a.db");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let conn = Connection::open(&path).unwrap();
            conn.busy_timeout(Duration::from_secs(60)).unwrap();
            // the app's keys are negative, so however far the writer runs ahead of the
            // importers it can never reach the remote rows' keys (100001 and up)
            let mut n: i64 = 0;
            while !stop.load(Ordering::SeqCst) || n < 200 {
                conn.execute("INSERT INTO todos(id, title) VALUES (?1, 'app')", [-1 - n]).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(1)); // an app's pace, not a lock-hogging loop
            }
            n
        })
    };
    let workers: Vec<_> = (0..3)
        .map(|k| {
            let a = a.clone();
            let bundle = bundle.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    if k == 0 {
                        a.import_bundle(&bundle).unwrap();
                    } else {
                        a.generate_bundle(None).unwrap();
                        a.status().unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    let count = |sql: &str| match stamped_rows(&a, sql)[0][0] {
        Value::Integer(n) => n,
        _ => unreachable!(),
    };
    assert_eq!(count("SELECT count(*) FROM todos WHERE title = 'app'"), written);
    assert_eq!(count("SELECT count(*) FROM todos WHERE title = 'remote'"), 2000);
    // every app write was captured (none discarded with what the imports queued)
    assert_eq!(count("SELECT count(*) FROM _syncline_shadow_1 WHERE pk0 < 0 AND h0 IS NOT NULL"), written);
}

fn wait_for(events: &Mutex<Vec<Event>>, pred: impl Fn(&Event) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if events.lock().unwrap().iter().any(&pred) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn subscribers_see_local_remote_and_conflict_events_until_they_unsubscribe() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Manual);
    let b = replica(&dir, "b", Strategy::Manual);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let sub = a.subscribe(Arc::new(move |e: &Event| sink.lock().unwrap().push(e.clone()))).unwrap();
    // a write by another connection is a local change
    Connection::open(dir.path().join("a.db")).unwrap().execute("INSERT INTO todos(id, title) VALUES (1, 'x')", []).unwrap();
    assert!(wait_for(
        &events,
        |e| matches!(e, Event::LocalChange(c) if c.pk == vec![Value::Integer(1)] && c.columns.contains(&"title".to_string()))
    ));
    b.execute("INSERT INTO todos(id, title) VALUES (2, 'y')", &[]).unwrap();
    sync(&b, &a);
    assert!(wait_for(&events, |e| matches!(e, Event::RemoteChange(c) if c.pk == vec![Value::Integer(2)])));
    sync(&a, &b);
    a.execute("UPDATE todos SET title = 'a' WHERE id = 2", &[]).unwrap();
    b.execute("UPDATE todos SET title = 'b' WHERE id = 2", &[]).unwrap();
    sync(&b, &a);
    assert!(wait_for(&events, |e| matches!(e, Event::Conflict(c) if c.id.is_some())));
    sub.close();
    std::thread::sleep(Duration::from_millis(50));
    let n = events.lock().unwrap().len();
    a.execute("INSERT INTO todos(id, title) VALUES (3, 'z')", &[]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(events.lock().unwrap().len(), n, "no events after close");
}

#[test]
fn a_resolver_calling_back_into_the_engine_gets_a_clean_error() {
    let dir = TempDir::new().unwrap();
    let a = Arc::new(replica(&dir, "a", Strategy::Custom));
    let b = replica(&dir, "b", Strategy::Custom);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    sync(&a, &b);
    a.execute("UPDATE todos SET title = 'a' WHERE id = 1", &[]).unwrap();
    b.execute("UPDATE todos SET title = 'b' WHERE id = 1", &[]).unwrap();
    let weak = Arc::downgrade(&a);
    a.set_resolver(
        "todos",
        Arc::new(move |_: &syncline::ConflictInput| -> Result<syncline::Resolution, String> {
            let e = weak.upgrade().unwrap().status().unwrap_err();
            Err(e.to_string())
        }),
    );
    let err = a.import_bundle(&b.generate_bundle(None).unwrap()).unwrap_err();
    assert_eq!(err.kind(), syncline::ErrorKind::Resolver);
    assert!(err.message().contains("Reentrant"), "{err}");
}

#[test]
fn a_closed_engine_says_so() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.close().unwrap();
    assert_eq!(a.status().unwrap_err().kind(), syncline::ErrorKind::Closed);
}
