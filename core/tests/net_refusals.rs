//! What a hostile or careless client can do to a server, and what it must not: refused
//! requests change nothing (no device binding either), op limits count what is decoded, error
//! bodies hold no SQL, slow or stalled clients are timed out, and imports queue for a slot.
//! Run with `cargo test -p syncline --features net --test net_refusals`.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncline::bundle::{self, Contents};
use syncline::net::{ServerConfig, ServerHandle, Tokens};
use syncline::{ErrorKind, Strategy, SyncEngine, Value};
use tempfile::TempDir;

fn tokens(list: &[&str]) -> Tokens {
    let mut t = Tokens::default();
    for token in list {
        t.add(token);
    }
    t
}

fn start(dir: &TempDir, config: ServerConfig) -> (Arc<SyncEngine>, ServerHandle) {
    let engine = Arc::new(replica(dir, "server", Strategy::Lww));
    let handle = ServerHandle::start(engine.clone(), "127.0.0.1:0".parse().unwrap(), config).unwrap();
    (engine, handle)
}

/// A raw HTTP/1.1 exchange: the whole answer (status line, headers, body) as text, read
/// until the server closes or `limit` passes.
fn raw(url: &str, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn post(url: &str, token: &str, body: &[u8]) -> String {
    let head = format!(
        "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/vnd.syncline.bundle\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    raw(url, &request, Duration::from_secs(30))
}

fn status_of(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

fn body_of(answer: &str) -> serde_json::Value {
    serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or(serde_json::Value::Null)
}

fn devices(server: &SyncEngine) -> Vec<Vec<Value>> {
    rows(server, "SELECT count(*) FROM _syncline_net_devices")
}

#[test]
fn a_refused_push_binds_no_device() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, ServerConfig { tokens: tokens(&["ta", "tb"]), ..Default::default() });
    let before = state_hash(&server);
    let device = replica(&dir, "device", Strategy::Lww);
    device.execute("INSERT INTO todos(id, title) VALUES (1, 'mine')", &[]).unwrap();
    // A forger takes the device's id and pushes, under its own token, a table whose key
    // differs from the server's: refused (422), and the refusal must not bind the device.
    let forger = replica_with(&dir, "forger", "CREATE TABLE todos(k TEXT PRIMARY KEY, title TEXT)", "todos");
    forger.set_site_id(device.site_id().unwrap()).unwrap();
    forger.execute("INSERT INTO todos(k, title) VALUES ('1', 'x')", &[]).unwrap();
    let answer = post(&handle.url(), "tb", &forger.generate_bundle(Some(&server.site_id().unwrap())).unwrap());
    assert!(status_of(&answer).contains(" 422 "), "{answer}");
    assert_eq!(body_of(&answer)["error"], "SchemaMismatch", "{answer}");
    assert_eq!(devices(&server), vec![vec![Value::Integer(0)]]);
    assert_eq!(state_hash(&server), before);
    // The real device, under its own token, is not locked out.
    device.sync(&handle.url(), Some("ta")).unwrap();
    assert_eq!(rows(&server, "SELECT id, title FROM todos"), vec![vec![Value::Integer(1), Value::Text("mine".into())]]);
    // Now it is bound: the forger's token is refused for it.
    let err = forger.sync(&handle.url(), Some("tb")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
}

#[test]
fn max_ops_counts_the_decoded_rows_not_the_header() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, ServerConfig { max_ops: 10, tokens: tokens(&["t"]), ..Default::default() });
    let c = replica(&dir, "c", Strategy::Lww);
    for i in 0..20 {
        c.execute("INSERT INTO todos(id, title) VALUES (?1, 'x')", &[Value::Integer(i)]).unwrap();
    }
    let real = c.generate_bundle(None).unwrap();
    let mut d = bundle::decode(&real).unwrap();
    let all = d.rows().collect::<Result<_, _>>().unwrap();
    let mut header = d.header.clone();
    assert_eq!(header.rows, 20);
    header.changes = 0; // the lie
    let forged = bundle::encode(&Contents { header, tables: d.tables.clone(), sites: d.sites.clone(), rows: all }, false);
    let before = state_hash(&server);
    let answer = post(&handle.url(), "t", &forged);
    // counted as decoded: the limit is reached before the decoder finds the header's lie
    assert!(status_of(&answer).contains(" 413 "), "{answer}");
    assert_eq!(state_hash(&server), before);
    assert_eq!(rows(&server, "SELECT count(*) FROM todos"), vec![vec![Value::Integer(0)]]);
}

#[test]
fn internal_errors_answer_a_generic_message_without_sql() {
    let dir = TempDir::new().unwrap();
    let (server, handle) = start(&dir, ServerConfig { tokens: tokens(&["t"]), ..Default::default() });
    // Break the server's sync state behind its back, so the import fails inside SQLite.
    server.execute_batch("DROP TABLE _syncline_shadow_1").unwrap();
    let c = replica(&dir, "c", Strategy::Lww);
    c.execute("INSERT INTO todos(id, title) VALUES (1, 'x')", &[]).unwrap();
    let answer = post(&handle.url(), "t", &c.generate_bundle(None).unwrap());
    assert!(status_of(&answer).contains(" 500 "), "{answer}");
    let body = body_of(&answer);
    assert!(["Sqlite", "Io"].contains(&body["error"].as_str().unwrap_or("")), "{answer}");
    let message = body["message"].as_str().unwrap_or("").to_ascii_lowercase();
    assert!(!message.is_empty(), "{answer}");
    for leak in ["_syncline", "no such table", "select ", "insert ", "update ", "shadow"] {
        assert!(!message.contains(leak), "the error body leaks {leak:?}: {answer}");
    }
    // The client sees the kind and the generic message.
    let err = c.sync(&handle.url(), Some("t")).unwrap_err();
    assert!(!err.message().contains("_syncline"), "{err}");
}

#[test]
fn a_stalled_body_gets_408_within_the_body_timeout() {
    let dir = TempDir::new().unwrap();
    let config = ServerConfig { body_timeout: Duration::from_millis(500), tokens: tokens(&["t"]), ..Default::default() };
    let (server, handle) = start(&dir, config);
    let before = state_hash(&server);
    let start = Instant::now();
    let answer = raw(
        &handle.url(),
        b"POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Length: 1000\r\n\r\nSYNCLINE",
        Duration::from_secs(10),
    );
    assert!(status_of(&answer).contains(" 408 "), "after {:?}: {answer:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(state_hash(&server), before);
}

#[test]
fn a_stalled_head_and_an_idle_connection_are_closed() {
    let dir = TempDir::new().unwrap();
    let config = ServerConfig {
        header_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(500),
        tokens: tokens(&["t"]),
        ..Default::default()
    };
    let (_server, handle) = start(&dir, config);
    // Half a head, then nothing: closed (or answered 408) after the header timeout.
    let start = Instant::now();
    let answer = raw(&handle.url(), b"GET /v1/info HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(10));
    assert!(start.elapsed() < Duration::from_secs(5), "held for {:?}", start.elapsed());
    assert!(!answer.contains(" 200 "), "{answer}");
    // A keep-alive connection that goes quiet after its answer is closed after the idle timeout.
    let mut s = TcpStream::connect(handle.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains(" 200 "));
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(start.elapsed() < Duration::from_secs(5), "idle connection held for {:?}", start.elapsed());
}

#[test]
fn idle_connections_beyond_the_cap_do_not_lock_out_a_client() {
    let dir = TempDir::new().unwrap();
    let config = ServerConfig { max_connections: 8, tokens: tokens(&["t"]), ..Default::default() };
    let (server, handle) = start(&dir, config);
    let idle: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(handle.addr()).unwrap()).collect();
    let c = replica(&dir, "c", Strategy::Lww);
    c.execute("INSERT INTO todos(id, title) VALUES (1, 'through')", &[]).unwrap();
    c.sync(&handle.url(), Some("t")).unwrap();
    assert_eq!(rows(&server, "SELECT title FROM todos"), vec![vec![Value::Text("through".into())]]);
    // The server kept at most the cap open: all but a few of the idle ones were closed.
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        match s.read(&mut [0u8; 16]) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    assert!(closed >= 64 - 8, "only {closed} of 64 idle connections were closed");
}

#[test]
fn imports_queue_for_a_slot_and_the_deadline_refuses_the_waiter() {
    let dir = TempDir::new().unwrap();
    let config =
        ServerConfig { max_concurrent: 1, request_timeout: Duration::from_millis(800), tokens: tokens(&["t"]), ..Default::default() };
    let (server, handle) = start(&dir, config);
    // The server is up (its start writes to the database too) before the lock is taken.
    let info = raw(
        &handle.url(),
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(30),
    );
    assert!(status_of(&info).contains(" 200 "), "{info}");
    // Another connection holds the write lock: the first push waits inside its import,
    // holding the only slot; the second waits for the slot and is refused at its deadline.
    let lock = rusqlite::Connection::open(server.path()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title) VALUES (1, 'a')", &[]).unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    b.execute("INSERT INTO todos(id, title) VALUES (2, 'b')", &[]).unwrap();
    let (url, bundle_a) = (handle.url(), a.generate_bundle(None).unwrap());
    let first = std::thread::spawn(move || post(&url, "t", &bundle_a));
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let second = post(&handle.url(), "t", &b.generate_bundle(None).unwrap());
    let waited = start.elapsed();
    lock.execute_batch("COMMIT").unwrap();
    let first = first.join().unwrap();
    assert!(status_of(&first).contains(" 200 "), "first {first:?}, second after {waited:?}: {second:?}");
    assert!(status_of(&second).contains(" 503 "), "after {waited:?}: {second}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(rows(&server, "SELECT id FROM todos"), vec![vec![Value::Integer(1)]]);
}

/// A WebSocket handshake for `/v1/live`; returns the stream (kept open) and the status line.
fn live_handshake(addr: std::net::SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /v1/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned();
    (s, line)
}

#[test]
fn live_connections_are_capped_too() {
    let dir = TempDir::new().unwrap();
    let (_server, handle) = start(&dir, ServerConfig { max_connections: 2, tokens: tokens(&["t"]), ..Default::default() });
    let (_a, first) = live_handshake(handle.addr());
    let (_b, second) = live_handshake(handle.addr());
    assert!(first.contains(" 101 ") && second.contains(" 101 "), "{first} / {second}");
    let (_c, third) = live_handshake(handle.addr());
    assert!(third.contains(" 503 "), "{third}");
    // Plain requests still get through, and a freed live slot is taken again.
    let info = raw(
        &handle.url(),
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(status_of(&info).contains(" 200 "), "{info}");
    drop(_a);
    let start = Instant::now();
    loop {
        let (_d, again) = live_handshake(handle.addr());
        if again.contains(" 101 ") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the live slot was not given back: {again}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
