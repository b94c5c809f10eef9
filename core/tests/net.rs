//! Network sync against a real server on 127.0.0.1 (ephemeral port): convergence through one
//! server, tokens (401), device binding (403), body limit (413), paging, live WebSocket.
//! Run with `cargo test -p syncline --features net`.

mod common;
use common::*;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncline::net::{ServerConfig, ServerHandle, SyncClient, SyncOptions, Tokens};
use syncline::{ErrorKind, Strategy, SyncEngine, Value};
use tempfile::TempDir;

fn config(tokens: &[&str]) -> ServerConfig {
    let mut t = Tokens::default();
    for token in tokens {
        t.add(token);
    }
    ServerConfig { tokens: t, ..Default::default() }
}

fn start(dir: &TempDir, config: ServerConfig) -> (Arc<SyncEngine>, ServerHandle) {
    let engine = Arc::new(replica(dir, "server", Strategy::Lww));
    let handle = ServerHandle::start(engine.clone(), "127.0.0.1:0".parse().unwrap(), config).unwrap();
    (engine, handle)
}

fn count(e: &SyncEngine) -> i64 {
    match rows(e, "SELECT count(*) FROM todos")[0][0] {
        Value::Integer(n) => n,
        _ => unreachable!(),
    }
}

/// Send raw bytes over HTTP/1.1 and return the status line.
fn raw_post(url: &str, token: &str, body: &[u8]) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/sync HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/vnd.syncline.bundle\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or("").to_owned()
}

#[test]
fn three_clients_converge_through_one_server() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, config(&["secret"]));
    let clients: Vec<SyncEngine> = ["a", "b", "c"].iter().map(|n| replica(&dir, n, Strategy::Lww)).collect();
    for (i, c) in clients.iter().enumerate() {
        c.execute("INSERT INTO todos(id, title) VALUES (?1, ?2)", &[Value::Integer(i as i64), Value::Text(format!("from {i}"))]).unwrap();
    }
    for c in &clients {
        c.sync(&handle.url(), Some("secret")).unwrap();
    }
    // Concurrent edits of different columns of one row, then a delete elsewhere.
    for c in &clients {
        c.sync(&handle.url(), Some("secret")).unwrap();
    }
    clients[0].execute("UPDATE todos SET title = 'edited by a' WHERE id = 1", &[]).unwrap();
    clients[1].execute("UPDATE todos SET done = 1 WHERE id = 1", &[]).unwrap();
    clients[2].execute("DELETE FROM todos WHERE id = 2", &[]).unwrap();
    for _ in 0..2 {
        for c in &clients {
            c.sync(&handle.url(), Some("secret")).unwrap();
        }
    }
    let want = vec![
        vec![Value::Integer(0), Value::Text("from 0".into()), Value::Integer(0), Value::Null],
        vec![Value::Integer(1), Value::Text("edited by a".into()), Value::Integer(1), Value::Null],
    ];
    assert_eq!(todos(&server), want);
    for c in &clients {
        assert_eq!(todos(c), want);
        assert_eq!(state_hash(c), state_hash(&server));
    }
    // Nothing left to send either way.
    let quiet = clients[0].sync(&handle.url(), Some("secret")).unwrap();
    assert_eq!((quiet.pushed, quiet.pulled), (0, 0), "{quiet:?}");
}

#[test]
fn wrong_token_gets_401_and_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, config(&["secret"]));
    let before = state_hash(&server);
    let peers_before = rows(&server, "SELECT count(*) FROM _syncline_peers");
    let c = replica(&dir, "c", Strategy::Lww);
    c.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    for token in [Some("wrong"), None] {
        let err = c.sync(&handle.url(), token).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
        assert!(err.message().contains("401"), "{err}");
    }
    assert!(raw_post(&handle.url(), "wrong", &c.generate_bundle(None).unwrap()).contains(" 401 "));
    assert_eq!(state_hash(&server), before);
    assert_eq!(rows(&server, "SELECT count(*) FROM _syncline_peers"), peers_before);
    assert_eq!(count(&c), 1);
}

#[test]
fn oversized_body_gets_413_and_the_client_cuts_its_pages() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, ServerConfig { max_body: 16 * 1024, ..config(&["t"]) });
    assert!(raw_post(&handle.url(), "t", &vec![0u8; 40 * 1024]).contains(" 413 "));
    // 40 rows of 2 KB do not fit one request; the client halves its pages until they do.
    let c = replica(&dir, "c", Strategy::Lww);
    for i in 0..40 {
        c.execute("INSERT INTO todos(id, body) VALUES (?1, ?2)", &[Value::Integer(i), Value::Text("x".repeat(2048))]).unwrap();
    }
    let report = c.sync(&handle.url(), Some("t")).unwrap();
    assert!(report.round_trips > 4, "{report:?}");
    assert_eq!(count(&server), 40);
    // A single row beyond the limit cannot be cut: the error says why.
    c.execute("INSERT INTO todos(id, body) VALUES (100, ?1)", &[Value::Text("y".repeat(20 * 1024))]).unwrap();
    let err = c.sync(&handle.url(), Some("t")).unwrap_err();
    assert!(err.message().contains("413"), "{err}");
    assert_eq!(count(&server), 40);
}

#[test]
fn too_many_ops_get_413() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, ServerConfig { max_ops: 10, ..config(&["t"]) });
    let c = replica(&dir, "c", Strategy::Lww);
    for i in 0..5 {
        c.execute("INSERT INTO todos(id, title) VALUES (?1, 'x')", &[Value::Integer(i)]).unwrap();
    }
    assert!(raw_post(&handle.url(), "t", &c.generate_bundle(None).unwrap()).contains(" 413 "));
    assert_eq!(count(&server), 0);
    // Pages of 2 rows (6 changes each) pass.
    let client = SyncClient::new(&handle.url(), Some("t"), SyncOptions { page_rows: 2, ..Default::default() }).unwrap();
    client.sync(&c).unwrap();
    assert_eq!(count(&server), 5);
}

#[test]
fn a_device_bound_to_one_token_is_refused_under_another() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    let pinned = replica(&dir, "pinned", Strategy::Lww);
    let mut tokens = Tokens::default();
    tokens.parse(&format!("# comment\nta\ntb\ntc {}\n", pinned.site_id().unwrap())).unwrap();
    let (server, handle) = start(&dir, ServerConfig { tokens, ..Default::default() });
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'a')", &[]).unwrap();
    a.sync(&handle.url(), Some("ta")).unwrap();
    // Another database claiming a's site id under another token.
    let thief = replica(&dir, "thief", Strategy::Lww);
    thief.set_site_id(a.site_id().unwrap()).unwrap();
    thief.execute("INSERT INTO todos(id, title) VALUES (2, 'stolen')", &[]).unwrap();
    let err = thief.sync(&handle.url(), Some("tb")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.message().contains("403"), "{err}");
    // A token pinned to one device admits only that device.
    let err = a.sync(&handle.url(), Some("tc")).unwrap_err();
    assert!(err.message().contains("403"), "{err}");
    pinned.sync(&handle.url(), Some("tc")).unwrap();
    a.sync(&handle.url(), Some("ta")).unwrap();
    assert_eq!(rows(&server, "SELECT id FROM todos ORDER BY id"), vec![vec![Value::Integer(1)]]);
    // The binding survives a restart of the server.
    drop(handle);
    let mut tokens = Tokens::default();
    tokens.parse("ta\ntb\n").unwrap();
    let handle =
        ServerHandle::start(server.clone(), "127.0.0.1:0".parse().unwrap(), ServerConfig { tokens, ..Default::default() }).unwrap();
    assert!(thief.sync(&handle.url(), Some("tb")).unwrap_err().message().contains("403"));
}

#[test]
fn paging_with_small_pages_converges() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, ServerConfig { page_rows: 7, ..config(&["t"]) });
    let options = SyncOptions { page_rows: 5, ..Default::default() };
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    for i in 0..100 {
        a.execute("INSERT INTO todos(id, title) VALUES (?1, 'a')", &[Value::Integer(i)]).unwrap();
    }
    for i in 50..130 {
        b.execute("INSERT OR REPLACE INTO todos(id, title) VALUES (?1, 'b')", &[Value::Integer(i)]).unwrap();
    }
    let ca = SyncClient::new(&handle.url(), Some("t"), options.clone()).unwrap();
    let cb = SyncClient::new(&handle.url(), Some("t"), options).unwrap();
    let ra = ca.sync(&a).unwrap();
    assert_eq!(count(&server), 100);
    assert!(ra.round_trips >= 20, "{ra:?}"); // 100 rows pushed 5 at a time
    let rb = cb.sync(&b).unwrap();
    assert!(rb.round_trips >= 16, "{rb:?}"); // 80 rows pushed 5 at a time, 100 pulled 7 at a time
    ca.sync(&a).unwrap();
    assert_eq!(count(&a), 130);
    assert_eq!(todos(&a), todos(&b));
    assert_eq!(state_hash(&a), state_hash(&server));
    assert_eq!(state_hash(&b), state_hash(&server));
    let quiet = cb.sync(&b).unwrap();
    assert_eq!((quiet.pushed, quiet.pulled, quiet.round_trips), (0, 0, 1), "{quiet:?}");
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn a_live_client_sees_another_clients_change_without_polling() {
    let dir = TempDir::new().unwrap();
    let (_server, handle) = start(&dir, config(&["t"]));
    let watcher = Arc::new(replica(&dir, "watcher", Strategy::Lww));
    // The interval is far beyond the test: only the WebSocket notice can trigger the pull.
    let options = SyncOptions { live: true, interval: Duration::from_secs(3600), ..Default::default() };
    let live = watcher.start_sync(&handle.url(), Some("t"), options).unwrap();
    // The loop syncs once at start and once more when its WebSocket connects (nothing else
    // wakes it here), so a second pass means the live socket is open.
    wait_for("the WebSocket", Duration::from_secs(30), || live.status().unwrap().syncs >= 2);
    let writer = replica(&dir, "writer", Strategy::Lww);
    writer.execute("INSERT INTO todos(id, title) VALUES (7, 'news')", &[]).unwrap();
    writer.sync(&handle.url(), Some("t")).unwrap();
    wait_for("the live pull", Duration::from_secs(30), || count(&watcher) == 1);
    // And a local write of the live client is pushed without waiting for the interval.
    watcher.execute("INSERT INTO todos(id, title) VALUES (8, 'reply')", &[]).unwrap();
    wait_for("the live push", Duration::from_secs(30), || {
        writer.sync(&handle.url(), Some("t")).unwrap();
        count(&writer) == 2
    });
    live.stop();
    assert!(!live.status().unwrap().running);
}

#[test]
fn the_background_loop_backs_off_while_the_server_is_down_and_catches_up() {
    let dir = TempDir::new().unwrap();
    let server = Arc::new(replica(&dir, "server", Strategy::Lww));
    // Reserve a port, then free it: the client starts while nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let client = Arc::new(replica(&dir, "client", Strategy::Lww));
    client.execute("INSERT INTO todos(id, title) VALUES (1, 'offline')", &[]).unwrap();
    let options = SyncOptions { interval: Duration::from_millis(200), max_backoff: Duration::from_secs(1), ..Default::default() };
    let bg = client.start_sync(&format!("http://{addr}"), None, options).unwrap();
    wait_for("failures", Duration::from_secs(10), || bg.status().unwrap().failures >= 2);
    let status = bg.status().unwrap();
    assert_eq!(status.last_error.as_ref().map(|e| e.kind()), Some(ErrorKind::Network), "{status:?}");
    assert_eq!(status.pending, 4);
    let handle = ServerHandle::start(server.clone(), addr, ServerConfig::default()).unwrap();
    wait_for("the catch-up", Duration::from_secs(10), || count(&server) == 1);
    wait_for("a clean status", Duration::from_secs(10), || {
        let s = bg.status().unwrap();
        s.failures == 0 && s.last_error.is_none() && s.pending == 0
    });
    bg.stop();
    handle.stop().unwrap();
}

#[test]
fn a_migration_travels_through_the_server_in_pages() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, config(&["t"]));
    let a = replica(&dir, "a", Strategy::Lww);
    let b = replica(&dir, "b", Strategy::Lww);
    for i in 0..5 {
        a.execute("INSERT INTO todos(id, title) VALUES (?1, 'x')", &[Value::Integer(i)]).unwrap();
    }
    a.add_column("todos", "prio", "INTEGER", Value::Integer(0)).unwrap();
    a.execute("UPDATE todos SET prio = id * 10", &[]).unwrap();
    // Pages of 2 rows: every page may carry the migration; it applies once.
    let client =
        |e: &SyncEngine| SyncClient::new(&handle.url(), Some("t"), SyncOptions { page_rows: 2, ..Default::default() }).unwrap().sync(e);
    client(&a).unwrap();
    client(&b).unwrap();
    let want: Vec<Vec<Value>> = (0..5).map(|i| vec![Value::Integer(i), Value::Integer(i * 10)]).collect();
    for e in [&server as &SyncEngine, &b] {
        assert_eq!(rows(e, "SELECT id, prio FROM todos ORDER BY id"), want);
        assert_eq!(state_hash(e), state_hash(&a));
    }
}

#[test]
fn a_new_device_starts_from_the_servers_snapshot_and_catches_up() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, config(&["t"]));
    let a = replica(&dir, "a", Strategy::Lww);
    for i in 0..300 {
        a.execute("INSERT INTO todos(id, title, done) VALUES (?1, 'first', 0)", &[Value::Integer(i)]).unwrap();
    }
    a.sync(&handle.url(), Some("t")).unwrap();
    let path = dir.path().join("new-device.db");
    let mut calls = Vec::new();
    let bytes = syncline::net::clone_snapshot(&handle.url(), Some("t"), &path, &mut |done, total| calls.push((done, total))).unwrap();
    assert_eq!(calls.last(), Some(&(bytes, bytes)), "progress ends at the file's size");
    // A change made after the snapshot reaches the device in its first (small) pass.
    a.execute("UPDATE todos SET done = 1 WHERE id = 7", &[]).unwrap();
    a.sync(&handle.url(), Some("t")).unwrap();
    let device = SyncEngine::open(&path, Default::default()).unwrap();
    assert_ne!(device.site_id().unwrap(), server.site_id().unwrap(), "the device has a site id of its own");
    assert_eq!(count(&device), 300);
    let report = device.sync(&handle.url(), Some("t")).unwrap();
    assert!(report.pulled < 10, "only the change since the snapshot travels: {report:?}");
    assert_eq!(state_hash(&device), state_hash(&server));
    // Its writes are captured by the triggers installed on this device and reach the others.
    device.execute("INSERT INTO todos(id, title, done) VALUES (1000, 'from the device', 0)", &[]).unwrap();
    device.sync(&handle.url(), Some("t")).unwrap();
    a.sync(&handle.url(), Some("t")).unwrap();
    assert_eq!(count(&a), 301);
    assert_eq!(state_hash(&a), state_hash(&device));
    // Refusals leave nothing behind: an existing target, a wrong token.
    let err = syncline::net::clone_snapshot(&handle.url(), Some("t"), &path, &mut |_, _| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let other = dir.path().join("other.db");
    let err = syncline::net::clone_snapshot(&handle.url(), Some("wrong"), &other, &mut |_, _| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("download")));
    assert!(!other.exists());
    // The server leaves no snapshot file behind either.
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("snapshot-")));
}

#[test]
fn a_snapshot_with_foreign_triggers_runs_only_synclines_own() {
    // A server's file may carry triggers (the server's own, or planted): the device drops them.
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, config(&[]));
    server
        .execute_batch("CREATE TABLE spy(v); CREATE TRIGGER planted AFTER INSERT ON todos BEGIN INSERT INTO spy VALUES (NEW.title); END;")
        .unwrap();
    let path = dir.path().join("device.db");
    syncline::net::clone_snapshot(&handle.url(), None, &path, &mut |_, _| {}).unwrap();
    let device = SyncEngine::open(&path, Default::default()).unwrap();
    device.execute("INSERT INTO todos(id, title, done) VALUES (1, 'secret', 0)", &[]).unwrap();
    assert_eq!(rows(&device, "SELECT count(*) FROM spy")[0][0], Value::Integer(0));
    device.sync(&handle.url(), None).unwrap();
    assert_eq!(count(&server), 1, "Syncline's own capture triggers were installed");
}
