//! `syncline serve` and `syncline sync` as processes: a sync through the binary, a wrong
//! token, a server killed with SIGKILL mid-sync and restarted (nothing acknowledged is lost,
//! background loops catch up by themselves), and a graceful stop on SIGTERM.

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use syncline::net::SyncOptions;
use syncline::{Options, SyncEngine, Value};

/// Start `syncline serve` and return it with its URL (read from its first line).
fn serve(db: &Path, port: u16, extra: &[&str]) -> (Child, String) {
    let db = db.to_str().filter(|d| !d.is_empty());
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(db)
        .args(["--port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = listening(&mut child);
    (child, url)
}

fn syncline(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn serve_and_sync_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (server_db, a_db, b_db) = (dir.path().join("s.db"), dir.path().join("a.db"), dir.path().join("b.db"));
    drop(replica(&server_db));
    let a = replica(&a_db);
    a.execute("INSERT INTO todos VALUES ('1', 'via the CLI')", &[]).unwrap();
    drop(replica(&b_db));
    let (mut server, url) = serve(&server_db, 0, &["--token", "t1", "--token", "t2"]);
    let out = syncline(&["sync", a_db.to_str().unwrap(), &url, "--token", "t1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["server_applied"], 2, "{report}"); // the row state and one cell
    let out = Command::new(BIN).args(["sync", b_db.to_str().unwrap(), &url]).env("SYNCLINE_TOKEN", "t2").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 applied"), "{}", String::from_utf8_lossy(&out.stdout));
    // A new device from the server's snapshot, caught up in the same command.
    let c_db = dir.path().join("c.db");
    let out = syncline(&["clone", &url, c_db.to_str().unwrap(), "--token", "t1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cloned: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(cloned["bytes"].as_u64().unwrap() > 0, "{cloned}");
    assert_eq!(ids(&SyncEngine::open(&c_db, Options::default()).unwrap()), vec!["1"]);
    let out = syncline(&["clone", &url, c_db.to_str().unwrap(), "--token", "t1"]);
    assert_eq!(out.status.code(), Some(1), "an existing file is never overwritten");
    let out = syncline(&["sync", b_db.to_str().unwrap(), &url, "--token", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: Auth: server answered 401"), "{}", String::from_utf8_lossy(&out.stderr));
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(ids(&SyncEngine::open(&b_db, Options::default()).unwrap()), vec!["1"]);
}

#[test]
fn a_server_killed_mid_sync_loses_nothing_acknowledged_and_clients_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let server_db = dir.path().join("server.db");
    drop(replica(&server_db));
    let (mut server, url) = serve(&server_db, 0, &["--token", "t"]);
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    // Three writers: insert a row, sync once; a row counts as acknowledged when a sync that
    // began after it was written returned success.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let engines: Vec<Arc<SyncEngine>> = (0..3).map(|n| Arc::new(replica(&dir.path().join(format!("c{n}.db"))))).collect();
    let writers: Vec<_> = engines
        .iter()
        .enumerate()
        .map(|(n, e)| {
            let (e, url, stop, acked) = (e.clone(), url.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut written = Vec::new();
                let mut k = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("{n}-{k}");
                    e.execute("INSERT INTO todos VALUES (?1, 'x')", &[Value::Text(id.clone())]).unwrap();
                    written.push(id);
                    k += 1;
                    if e.sync(&url, Some("t")).is_ok() {
                        acked.lock().unwrap().append(&mut written);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    wait_for("some acknowledged syncs", Duration::from_secs(20), || acked.lock().unwrap().len() >= 30);
    server.kill().unwrap(); // SIGKILL, whatever it was doing
    server.wait().unwrap();
    let acknowledged = acked.lock().unwrap().clone();
    std::thread::sleep(Duration::from_millis(300)); // the writers keep writing, their syncs fail
    {
        let on_server = ids(&SyncEngine::open(&server_db, Options::default()).unwrap());
        let missing: Vec<_> = acknowledged.iter().filter(|id| !on_server.contains(id)).collect();
        assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    }
    // Background loops start while the server is down, back off, and catch up after the restart.
    let options = SyncOptions { interval: Duration::from_millis(200), max_backoff: Duration::from_secs(1), ..Default::default() };
    let loops: Vec<_> = engines.iter().map(|e| e.start_sync(&url, Some("t"), options.clone()).unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    wait_for("failures while down", Duration::from_secs(10), || loops.iter().all(|l| l.status().unwrap().failures >= 1));
    let (mut server, _) = serve(&server_db, port, &["--token", "t"]);
    let total = engines.iter().flat_map(|e| ids(e)).collect::<std::collections::BTreeSet<_>>().len();
    wait_for("convergence", Duration::from_secs(30), || engines.iter().all(|e| ids(e).len() == total));
    let want = ids(&engines[0]);
    for e in &engines {
        assert_eq!(ids(e), want);
    }
    assert_eq!(ids(&SyncEngine::open(&server_db, Options::default()).unwrap()), want);
    for l in &loops {
        l.stop();
        assert_eq!(l.status().unwrap().pending, 0);
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    drop(replica(&db));
    let (mut server, url) = serve(&db, 0, &[]);
    let c = replica(&dir.path().join("c.db"));
    c.execute("INSERT INTO todos VALUES ('1', 'x')", &[]).unwrap();
    c.sync(&url, None).unwrap();
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(ids(&SyncEngine::open(&db, Options::default()).unwrap()), vec!["1"]);
}

#[test]
fn hub_commands_and_serve_hub() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub");
    let schema = dir.path().join("schema.sql");
    std::fs::write(&schema, "CREATE TABLE todos(id TEXT PRIMARY KEY, title TEXT);").unwrap();
    let (hub_s, schema_s) = (hub.to_str().unwrap(), schema.to_str().unwrap());
    for ns in ["acme", "globex"] {
        let out = syncline(&["hub", "create", "--dir", hub_s, ns, "--schema", schema_s, "--table", "todos"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = syncline(&["hub", "create", "--dir", hub_s, "../evil", "--schema", schema_s, "--table", "todos"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidArgument"), "{}", String::from_utf8_lossy(&out.stderr));
    let token = |ns: &str| {
        let out = syncline(&["hub", "token", "--dir", hub_s, ns, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["token"].as_str().unwrap().to_owned()
    };
    let (ta, tb) = (token("acme"), token("globex"));
    let (mut server, url) = serve(Path::new(""), 0, &["--hub", hub_s]);
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    replica(&a).execute("INSERT INTO todos VALUES ('a1', 'acme')", &[]).unwrap();
    drop(replica(&b));
    for (db, t) in [(&a, &ta), (&b, &tb)] {
        let out = syncline(&["sync", db.to_str().unwrap(), &url, "--token", t]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(ids(&SyncEngine::open(&b, Options::default()).unwrap()).is_empty(), "globex sees nothing of acme");
    let out = syncline(&["clone", &format!("{url}/ns/acme"), dir.path().join("c.db").to_str().unwrap(), "--token", &ta]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ids(&SyncEngine::open(dir.path().join("c.db"), Options::default()).unwrap()), vec!["a1"]);
    let out = syncline(&["hub", "list", "--dir", hub_s, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["namespaces"].as_array().unwrap().len(), 2, "{list}");
    assert!(syncline(&["hub", "revoke", "--dir", hub_s, &tb]).status.success());
    let out = syncline(&["sync", b.to_str().unwrap(), &url, "--token", &tb]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Auth"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(syncline(&["hub", "delete", "--dir", hub_s, "globex"]).status.success());
    server.kill().unwrap();
    server.wait().unwrap();
}
