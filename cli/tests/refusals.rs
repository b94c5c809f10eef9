//! The command line refuses what it cannot do without side effects: a missing database is an
//! error (only `init` creates one), stamps too far ahead fail under `--max-drift`, a renamed
//! column of a synced table is a `SchemaMismatch`, and a server run with a few file
//! descriptors keeps serving real clients while idle connections pile up.

mod common;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::BIN;

fn syncline(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run syncline")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sqlite(db: &Path, sql: &str) {
    rusqlite::Connection::open(db).unwrap().execute_batch(sql).unwrap();
}

fn init(db: &Path) {
    sqlite(db, "CREATE TABLE notes(id TEXT PRIMARY KEY, body TEXT)");
    let out = syncline(&["init", db.to_str().unwrap(), "--table", "notes"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn dump(db: &Path) -> Vec<u8> {
    std::fs::read(db).unwrap()
}

#[test]
fn commands_other_than_init_refuse_a_missing_database_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let m = missing.to_str().unwrap();
    let bundle = dir.path().join("b.bundle");
    let real = dir.path().join("real.db");
    init(&real);
    let out = syncline(&["export", real.to_str().unwrap(), "-o", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let b = bundle.to_str().unwrap();
    let out_file = dir.path().join("out.bundle");
    let commands: Vec<Vec<&str>> = vec![
        vec!["status", m],
        vec!["import", m, b],
        vec!["export", m, "-o", out_file.to_str().unwrap()],
        vec!["conflicts", m],
        vec!["resolve", m, "1", "--local"],
        vec!["site-id", m],
        vec!["site-id", m, "--reset"],
        vec!["sync", m, "http://127.0.0.1:9"],
        vec!["serve", m, "--port", "0"],
    ];
    for args in commands {
        let out = syncline(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("error: NotFound:") && err.contains("missing.db"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created the database");
        assert!(!out_file.exists(), "{args:?} wrote a bundle");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("missing"))
            .collect();
        assert!(leftovers.is_empty(), "{args:?} left {leftovers:?}");
    }
    // init still creates one.
    let out = syncline(&["init", m]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(missing.exists());
}

#[test]
fn max_drift_is_settable_on_import_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (ahead, local) = (dir.path().join("ahead.db"), dir.path().join("local.db"));
    init(&ahead);
    init(&local);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    // Stamped two minutes ahead: inside the default 5 minutes, outside a 1-minute limit.
    let e = syncline::SyncEngine::open(&ahead, syncline::Options::default()).unwrap();
    e.set_manual_clock(Some(now + 120_000)).unwrap();
    e.execute("INSERT INTO notes VALUES ('n1', 'early')", &[]).unwrap();
    e.status().unwrap();
    drop(e);
    let bundle = dir.path().join("ahead.bundle");
    let out = syncline(&["export", ahead.to_str().unwrap(), "-o", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Under a 1-minute limit the row waits in quarantine; under 10 minutes it applies.
    let notes = |db: &std::path::Path| {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.query_row("SELECT count(*) FROM notes", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    let out = syncline(&["--json", "import", local.to_str().unwrap(), bundle.to_str().unwrap(), "--max-drift", "60s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["quarantined"], 2, "{report}");
    assert_eq!(notes(&local), 0);
    let out = syncline(&["--json", "status", local.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["quarantined"], 1, "{status}");
    let out = syncline(&["--json", "import", local.to_str().unwrap(), bundle.to_str().unwrap(), "--max-drift", "10m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["released"], 2, "{report}");
    assert_eq!(notes(&local), 1);
    let out = syncline(&["import", local.to_str().unwrap(), bundle.to_str().unwrap(), "--max-drift", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // sync: the server's rows are two minutes ahead.
    let fresh = dir.path().join("fresh.db");
    init(&fresh);
    let (mut server, url) = serve(&ahead, &[]);
    let out = syncline(&["--json", "sync", fresh.to_str().unwrap(), &url, "--max-drift", "1m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["quarantined"], 2, "{report}");
    assert_eq!(notes(&fresh), 0);
    let out = syncline(&["sync", fresh.to_str().unwrap(), &url, "--max-drift", "300000ms"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(notes(&fresh), 1);
    server.kill().unwrap();
    server.wait().unwrap();

    // serve: a push two minutes ahead waits in the quarantine of a server allowing one minute.
    let strict = dir.path().join("strict.db");
    init(&strict);
    let (mut server, url) = serve(&strict, &["--max-drift", "1m"]);
    let out = syncline(&["sync", ahead.to_str().unwrap(), &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(notes(&strict), 0);
    let conn = rusqlite::Connection::open(&strict).unwrap();
    assert_eq!(conn.query_row("SELECT count(*) FROM _syncline_quarantine", [], |r| r.get::<_, i64>(0)).unwrap(), 1);
}

#[test]
fn a_renamed_column_is_a_schema_mismatch_for_export_import_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    init(&a);
    init(&b);
    sqlite(&a, "INSERT INTO notes VALUES ('n1', 'x')");
    sqlite(&b, "INSERT INTO notes VALUES ('n2', 'y')");
    let bundle = dir.path().join("b.bundle");
    assert!(syncline(&["export", b.to_str().unwrap(), "-o", bundle.to_str().unwrap()]).status.success());
    assert!(syncline(&["status", a.to_str().unwrap()]).status.success()); // stamps the insert
    sqlite(&a, "ALTER TABLE notes RENAME COLUMN body TO text");
    let before = dump(&a);
    let out_file = dir.path().join("a.bundle");
    for args in [
        vec!["export", a.to_str().unwrap(), "-o", out_file.to_str().unwrap()],
        vec!["import", a.to_str().unwrap(), bundle.to_str().unwrap()],
        vec!["status", a.to_str().unwrap()],
    ] {
        let out = syncline(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.starts_with("error: SchemaMismatch:"), "{args:?}: {err}");
        assert!(err.contains("\"body\"") && err.contains("renamed"), "{args:?}: {err}");
        assert!(!err.contains("_syncline_"), "{args:?}: {err}");
        assert!(!out_file.exists());
    }
    assert_eq!(dump(&a), before);
}

/// Start `syncline serve` (through `sh`, so a descriptor limit can be set) and return it
/// with its URL.
fn serve(db: &Path, extra: &[&str]) -> (std::process::Child, String) {
    serve_limited(db, None, extra)
}

fn serve_limited(db: &Path, nofile: Option<u32>, extra: &[&str]) -> (std::process::Child, String) {
    let limit = nofile.map(|n| format!("ulimit -n {n} && ")).unwrap_or_default();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{limit}exec \"$0\" serve --port 0 \"$@\""))
        .arg(BIN)
        .arg(db)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = common::listening(&mut child);
    (child, url)
}

#[cfg(unix)]
#[test]
fn idle_connections_cannot_exhaust_the_servers_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let (server_db, client_db) = (dir.path().join("s.db"), dir.path().join("c.db"));
    init(&server_db);
    init(&client_db);
    sqlite(&client_db, "INSERT INTO notes VALUES ('n1', 'through')");
    let (mut server, url) = serve_limited(&server_db, Some(64), &["--token", "t", "--max-connections", "16"]);
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let idle: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()).collect();
    assert!(idle.len() >= 100, "{}", idle.len());
    let mut client = Command::new(BIN)
        .args(["sync", client_db.to_str().unwrap(), &url, "--token", "t"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = client.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(20) {
            client.kill().unwrap();
            client.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    server.kill().unwrap();
    server.wait().unwrap();
    drop(idle);
    assert!(status.is_some_and(|s| s.success()), "the client could not sync while idle connections were open: {status:?}");
    let conn = rusqlite::Connection::open(&server_db).unwrap();
    let body: String = conn.query_row("SELECT body FROM notes WHERE id = 'n1'", [], |r| r.get(0)).unwrap();
    assert_eq!(body, "through");
}
