//! A hub serving many namespaces (`serve --hub DIR`): each namespace is its own data set, a
//! token reaches exactly one, and a client of one learns nothing about another, over HTTP and
//! WebSocket. Run with `cargo test -p syncline --features net --test hub`.

mod common;
use common::*;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncline::net::{HubDir, ServerConfig, ServerHandle, SyncOptions};
use syncline::{ErrorKind, Options, Strategy, Value};
use tempfile::TempDir;

fn hub(dir: &TempDir, names: &[&str]) -> HubDir {
    let hub = HubDir::open(dir.path().join("hub"), Options::default()).unwrap();
    for n in names {
        hub.create_namespace(n, TODOS, &["todos".to_owned()], Strategy::Lww).unwrap();
    }
    hub
}

fn count(e: &syncline::SyncEngine) -> i64 {
    match rows(e, "SELECT count(*) FROM todos")[0][0] {
        Value::Integer(n) => n,
        _ => unreachable!(),
    }
}

/// One raw HTTP/1.1 request; the status code and the body.
fn raw(url: &str, method: &str, path: &str, token: &str, extra: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    // Read to the end, except after a 101 head: an upgraded connection stays open.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        answer.extend_from_slice(&buf[..n]);
        if answer.starts_with(b"HTTP/1.1 101") && answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (code, body)
}

const UPGRADE: &str =
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn namespaces_are_separate_data_sets_and_tokens_reach_only_their_own() {
    let dir = TempDir::new().unwrap();
    let hub = hub(&dir, &["acme", "globex"]);
    let (ta, tb) = (hub.issue_token("acme", &[]).unwrap(), hub.issue_token("globex", &[]).unwrap());
    let handle = ServerHandle::start_hub(hub, "127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    let url = handle.url();
    let (a1, a2, b1) = (replica(&dir, "a1", Strategy::Lww), replica(&dir, "a2", Strategy::Lww), replica(&dir, "b1", Strategy::Lww));
    a1.execute("INSERT INTO todos(id, title) VALUES (1, 'acme secret')", &[]).unwrap();
    b1.execute("INSERT INTO todos(id, title) VALUES (2, 'globex secret')", &[]).unwrap();
    // A v1 client (plain /v1 paths) reaches its token's namespace; a client may also name it.
    a1.sync(&url, Some(&ta)).unwrap();
    b1.sync(&format!("{url}/ns/globex"), Some(&tb)).unwrap();
    a2.sync(&format!("{url}/ns/acme"), Some(&ta)).unwrap();
    b1.sync(&url, Some(&tb)).unwrap();
    assert_eq!(todos(&a2), todos(&a1));
    assert_eq!(count(&a2), 1);
    assert_eq!(rows(&b1, "SELECT id FROM todos ORDER BY id"), vec![vec![Value::Integer(2)]]);
    // Each namespace's file holds its own rows only.
    let acme = syncline::SyncEngine::open(dir.path().join("hub/namespaces/acme.db"), Options::default()).unwrap();
    assert_eq!(todos(&acme), todos(&a1));
    drop(acme);

    // A token of acme asking for globex, or for a namespace that does not exist, gets the
    // same answer on every endpoint: nothing tells the two apart.
    for (method, endpoint, extra) in [("GET", "info", ""), ("POST", "sync", ""), ("GET", "snapshot", ""), ("GET", "live", UPGRADE)] {
        let other = raw(&url, method, &format!("/ns/globex/v1/{endpoint}"), &ta, extra);
        let none = raw(&url, method, &format!("/ns/nobody/v1/{endpoint}"), &ta, extra);
        assert_eq!(other.0, 404, "{endpoint}: {other:?}");
        assert_eq!(other.0, none.0, "{endpoint}");
        assert_eq!(other.1.replace("globex", "X"), none.1.replace("nobody", "X"), "{endpoint}");
        // Without a valid token, every namespace is 401 whether it exists or not.
        assert_eq!(raw(&url, method, &format!("/ns/globex/v1/{endpoint}"), "forged", extra).0, 401);
        assert_eq!(raw(&url, method, &format!("/ns/nobody/v1/{endpoint}"), "forged", extra).0, 401);
    }
    let err = a1.sync(&format!("{url}/ns/globex"), Some(&ta)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(count(&a1), 1, "nothing of globex reached the acme client");
    // Its own namespace's live endpoint upgrades.
    assert_eq!(raw(&url, "GET", "/ns/acme/v1/live", &ta, UPGRADE).0, 101);
}

#[test]
fn live_notices_stay_inside_their_namespace() {
    let dir = TempDir::new().unwrap();
    let hub = hub(&dir, &["acme", "globex"]);
    let (ta, tb) = (hub.issue_token("acme", &[]).unwrap(), hub.issue_token("globex", &[]).unwrap());
    let handle = ServerHandle::start_hub(hub, "127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    let url = handle.url();
    let watcher = Arc::new(replica(&dir, "watcher", Strategy::Lww));
    let options = SyncOptions { live: true, interval: Duration::from_secs(3600), ..Default::default() };
    let live = watcher.start_sync(&format!("{url}/ns/acme"), Some(&ta), options).unwrap();
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("the WebSocket", &|| live.status().unwrap().syncs >= 2);
    // A push to globex changes nothing for the acme watcher: no notice, no sync.
    let outsider = replica(&dir, "outsider", Strategy::Lww);
    outsider.execute("INSERT INTO todos(id, title) VALUES (9, 'globex')", &[]).unwrap();
    outsider.sync(&url, Some(&tb)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(live.status().unwrap().syncs, 2, "a globex push woke the acme watcher");
    // A push to acme does.
    let writer = replica(&dir, "writer", Strategy::Lww);
    writer.execute("INSERT INTO todos(id, title) VALUES (7, 'acme news')", &[]).unwrap();
    writer.sync(&url, Some(&ta)).unwrap();
    wait("the live pull", &|| count(&watcher) == 1);
    assert_eq!(rows(&watcher, "SELECT id FROM todos"), vec![vec![Value::Integer(7)]]);
    live.stop();
}

#[test]
fn credentials_are_scoped_to_devices_revocable_and_die_with_their_namespace() {
    let dir = TempDir::new().unwrap();
    let hub_dir = dir.path().join("hub");
    let hub = hub(&dir, &["acme"]);
    let phone = replica(&dir, "phone", Strategy::Lww);
    let laptop = replica(&dir, "laptop", Strategy::Lww);
    let only_phone = hub.issue_token("acme", &[phone.site_id().unwrap()]).unwrap();
    let any = hub.issue_token("acme", &[]).unwrap();
    assert_eq!(hub.issue_token("nobody", &[]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let handle = ServerHandle::start_hub(hub, "127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    let url = handle.url();
    phone.sync(&url, Some(&only_phone)).unwrap();
    assert_eq!(laptop.sync(&url, Some(&only_phone)).unwrap_err().kind(), ErrorKind::Auth);
    laptop.sync(&url, Some(&any)).unwrap();
    // Admin operations from another handle (as `syncline hub` from another process) apply at once.
    let admin = HubDir::open(&hub_dir, Options::default()).unwrap();
    assert!(admin.revoke_token(&any).unwrap());
    assert_eq!(laptop.sync(&url, Some(&any)).unwrap_err().kind(), ErrorKind::Auth);
    let late = admin.issue_token("acme", &[]).unwrap();
    let newcomer = replica(&dir, "newcomer", Strategy::Lww);
    newcomer.sync(&url, Some(&late)).unwrap();
    admin.create_namespace("initech", TODOS, &["todos".to_owned()], Strategy::Lww).unwrap();
    let ti = admin.issue_token("initech", &[]).unwrap();
    replica(&dir, "i1", Strategy::Lww).sync(&url, Some(&ti)).unwrap();
    assert_eq!(admin.namespaces().unwrap().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["acme", "initech"]);
    admin.delete_namespace("initech").unwrap();
    assert_eq!(replica(&dir, "i2", Strategy::Lww).sync(&url, Some(&ti)).unwrap_err().kind(), ErrorKind::Auth);
    assert!(!hub_dir.join("namespaces/initech.db").exists());
    // Hostile names never reach the file system.
    for bad in ["../x", "", "A", "a/b", "a.db", &"x".repeat(64), "-a"] {
        assert_eq!(admin.create_namespace(bad, TODOS, &[], Strategy::Lww).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
    }
    assert_eq!(admin.create_namespace("acme", TODOS, &[], Strategy::Lww).unwrap_err().kind(), ErrorKind::InvalidArgument);
    // A schema that fails leaves no namespace behind.
    assert!(admin.create_namespace("broken", "CREATE TABLE", &[], Strategy::Lww).is_err());
    assert!(!hub_dir.join("namespaces/broken.db").exists());
    assert!(admin.namespaces().unwrap().iter().all(|n| n.name != "broken"));
}

#[test]
fn more_namespaces_than_stay_open_still_converge() {
    let dir = TempDir::new().unwrap();
    let names = ["n0", "n1", "n2", "n3", "n4"];
    let hub = hub(&dir, &names);
    let tokens: Vec<String> = names.iter().map(|n| hub.issue_token(n, &[]).unwrap()).collect();
    let config = ServerConfig { max_open_namespaces: 2, ..Default::default() };
    let handle = ServerHandle::start_hub(hub, "127.0.0.1:0".parse().unwrap(), config).unwrap();
    let clients: Vec<_> = (0..names.len() * 2).map(|i| replica(&dir, &format!("c{i}"), Strategy::Lww)).collect();
    for round in 0..3i64 {
        for (i, c) in clients.iter().enumerate() {
            c.execute("INSERT INTO todos(id, title) VALUES (?1, 'x')", &[Value::Integer(round * 100 + i as i64)]).unwrap();
            c.sync(&handle.url(), Some(&tokens[i % names.len()])).unwrap();
        }
    }
    for (i, c) in clients.iter().enumerate() {
        c.sync(&handle.url(), Some(&tokens[i % names.len()])).unwrap();
        assert_eq!(count(c), 6, "client {i}: its namespace holds its pair's 6 rows");
        assert_eq!(state_hash(c), state_hash(&clients[(i + names.len()) % clients.len()]));
    }
}
