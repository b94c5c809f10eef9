//! The hub over PostgreSQL: two `syncline serve --postgres` nodes over one cluster started for
//! the test (initdb and pg_ctl in a temporary folder, Unix socket only). Clients of different
//! nodes converge, live updates cross nodes, an operator's resolution on one node reaches the
//! clients of the other, last-seen times cross nodes, a fresh node rebuilds from the log, killing
//! a node mid-sync loses nothing acknowledged, appends commit in log order, and the app's
//! backend reads the merged rows from `syncline_rows`. Needs PostgreSQL's server binaries (pg_config --bindir).

mod common;
use common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use syncline::net::{Catalog, PgHub, SyncOptions};
use syncline::{Options, Strategy, SyncEngine, Value};

/// A PostgreSQL cluster in a temporary folder, stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn start() -> Cluster {
        let out = Command::new("pg_config").arg("--bindir").output();
        let bin = match out {
            Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
            _ => PathBuf::from("/usr/lib/postgresql/15/bin"),
        };
        let bin = if bin.join("initdb").exists() { bin } else { PathBuf::from("/usr/lib/postgresql/15/bin") };
        assert!(bin.join("initdb").exists(), "PostgreSQL server binaries are needed (initdb in {})", bin.display());
        let dir = tempfile::tempdir().unwrap();
        // initdb refuses to run as root: the cluster then belongs to the postgres user.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            assert!(Command::new("chown").args(["postgres:", dir.path().to_str().unwrap()]).status().unwrap().success());
        }
        let cluster = Cluster { dir, bin, as_postgres };
        let data = cluster.dir.path().join("data");
        let ok = cluster
            .command("initdb")
            .args(["-D", data.to_str().unwrap(), "-U", "syncline", "--auth=trust", "-E", "UTF8"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb failed");
        let options = format!("-k {} -c listen_addresses='' -p 5432", cluster.dir.path().display());
        let log = cluster.dir.path().join("log");
        let ok = cluster
            .command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "pg_ctl start failed: {}", std::fs::read_to_string(&log).unwrap_or_default());
        cluster
    }

    /// psql on the cluster, reading statements from its standard input (`-At`: bare values).
    fn psql(&self) -> Child {
        self.command("psql")
            .args(["-At", "-v", "ON_ERROR_STOP=1", "-h", self.dir.path().to_str().unwrap(), "-U", "syncline", "-d", "postgres"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The result of one query, as psql prints it (`-At`).
    fn query(&self, sql: &str) -> String {
        use std::io::Write;
        let mut p = self.psql();
        p.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "psql failed on {sql}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn url(&self) -> String {
        format!("host={} port=5432 user=syncline dbname=postgres", self.dir.path().display())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.command("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).stdout(Stdio::null()).status();
    }
}

/// A cluster, a hub client on it, namespace "team" (last writer wins) and a token for it.
fn team() -> (Cluster, PgHub, String) {
    let cluster = Cluster::start();
    let admin = PgHub::connect(&cluster.url(), Options::default()).unwrap();
    admin.create_namespace("team", SCHEMA, &["todos".to_owned()], Strategy::Lww).unwrap();
    let t = admin.issue_token("team", &[]).unwrap();
    (cluster, admin, t)
}

/// A server node, killed on drop (so a failing test leaves no process behind).
struct Node(Child);

impl std::ops::Deref for Node {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `syncline serve --postgres URL --port 0 --admin-token root`, and its URL.
fn node(url: &str) -> (Node, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--postgres", url, "--port", "0", "--admin-token", "root"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let at = listening(&mut child);
    (Node(child), at)
}

fn http(url: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let code = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned())
}

#[test]
fn two_nodes_over_one_postgres_converge_live_and_resolve_across_nodes() {
    let cluster = Cluster::start();
    let admin = PgHub::connect(&cluster.url(), Options::default()).unwrap();
    admin.create_namespace("team", SCHEMA, &["todos".to_owned()], Strategy::Manual).unwrap();
    admin.create_namespace("other", SCHEMA, &["todos".to_owned()], Strategy::Lww).unwrap();
    let t = admin.issue_token("team", &[]).unwrap();
    let other = admin.issue_token("other", &[]).unwrap();
    let (_n1, u1) = node(&cluster.url());
    let (_n2, u2) = node(&cluster.url());
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (replica(&dir.path().join("a.db")), replica(&dir.path().join("b.db")));
    a.execute("INSERT INTO todos VALUES ('1', 'first')", &[]).unwrap();
    a.sync(&u1, Some(&t)).unwrap();
    b.sync(&u2, Some(&t)).unwrap();
    assert_eq!(ids(&b), vec!["1"], "a push to node 1 is pulled from node 2");
    // A device bound to one token on node 1 is refused under another token on node 2, which
    // had the namespace open before the binding was made.
    let t2 = admin.issue_token("team", &[]).unwrap();
    let d = replica(&dir.path().join("d.db"));
    d.sync(&u1, Some(&t)).unwrap();
    assert_eq!(d.sync(&u2, Some(&t2)).unwrap_err().kind(), syncline::ErrorKind::Auth);
    // Namespaces stay apart on PostgreSQL too.
    let o = replica(&dir.path().join("o.db"));
    o.sync(&u2, Some(&other)).unwrap();
    assert!(ids(&o).is_empty());
    assert_eq!(http(&u1, "GET", "/ns/team/v1/info", &other, "").0, 404);

    // Live: a watcher on node 2 sees a push to node 1 without polling.
    let watcher = Arc::new(replica(&dir.path().join("w.db")));
    let options = SyncOptions { live: true, interval: Duration::from_secs(3600), ..Default::default() };
    let live = watcher.start_sync(&u2, Some(&t), options).unwrap();
    wait_for("the WebSocket", Duration::from_secs(30), || live.status().unwrap().syncs >= 2);
    a.execute("INSERT INTO todos VALUES ('2', 'news')", &[]).unwrap();
    a.sync(&u1, Some(&t)).unwrap();
    wait_for("the live pull across nodes", Duration::from_secs(30), || ids(&watcher).len() == 2);
    live.stop();

    // A conflict held on the servers, resolved by the operator on node 2, reaches node 1's clients.
    b.sync(&u2, Some(&t)).unwrap();
    a.execute("UPDATE todos SET title = 'from a' WHERE id = '1'", &[]).unwrap();
    b.execute("UPDATE todos SET title = 'from b' WHERE id = '1'", &[]).unwrap();
    a.sync(&u1, Some(&t)).unwrap();
    b.sync(&u2, Some(&t)).unwrap();
    let (code, body) = http(&u2, "GET", "/admin/api/ns/team", "root", "");
    assert_eq!(code, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let conflict = doc["conflicts"].as_array().unwrap().first().unwrap_or_else(|| panic!("no conflict in {doc}")).clone();
    let devices = doc["devices"].as_array().unwrap().len();
    // a, b and the watcher (d pushed no rows, so node 2 never heard of it); the log's own site
    // is not a device
    assert_eq!(devices, 3, "{doc}");
    // Node 2 knows when a, which only ever synced with node 1, last synced.
    let a_site = a.site_id().unwrap().to_hex();
    let a_seen = doc["devices"].as_array().unwrap().iter().find(|d| d["site_id"] == a_site.as_str()).unwrap()["last_seen_ms"].clone();
    assert!(a_seen.is_u64(), "a's last sync, seen from node 2: {a_seen} in {doc}");
    let (code, body) = http(&u2, "POST", &format!("/admin/api/ns/team/conflicts/{}", conflict["id"]), "root", "{\"keep\": \"remote\"}");
    assert_eq!(code, 200, "{body}");
    let want = conflict["remote"]["value"].as_str().unwrap().to_owned();
    for e in [&a, &b] {
        e.sync(&u1, Some(&t)).unwrap();
        let title = e.query("SELECT title FROM todos WHERE id = '1'", &[]).unwrap().rows[0][0].clone();
        assert_eq!(title, Value::Text(want.clone()));
    }
    // A node started now rebuilds every namespace from the log: same state.
    let (_n3, u3) = node(&cluster.url());
    let c = replica(&dir.path().join("c.db"));
    c.sync(&u3, Some(&t)).unwrap();
    assert_eq!(ids(&c), ids(&a));
    assert_eq!(c.query("SELECT title FROM todos WHERE id = '1'", &[]).unwrap().rows[0][0], Value::Text(want));
    let (code, body) = http(&u3, "GET", "/admin/api/ns/team", "root", "");
    assert_eq!((code, serde_json::from_str::<serde_json::Value>(&body).unwrap()["conflicts"].clone()), (200, serde_json::json!([])));
}

#[test]
fn killing_one_node_mid_sync_loses_nothing_acknowledged() {
    let (cluster, _admin, t) = team();
    let (mut n1, u1) = node(&cluster.url());
    let (_n2, u2) = node(&cluster.url());
    let dir = tempfile::tempdir().unwrap();
    // Three writers on node 1: insert a row, sync; a row counts as acknowledged when a sync
    // that began after it was written returned success.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let engines: Vec<Arc<SyncEngine>> = (0..3).map(|n| Arc::new(replica(&dir.path().join(format!("c{n}.db"))))).collect();
    let writers: Vec<_> = engines
        .iter()
        .enumerate()
        .map(|(n, e)| {
            let (e, url, stop, acked, t) = (e.clone(), u1.clone(), stop.clone(), acked.clone(), t.clone());
            std::thread::spawn(move || {
                let (mut written, mut k) = (Vec::new(), 0);
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("{n}-{k}");
                    e.execute("INSERT INTO todos VALUES (?1, 'x')", &[Value::Text(id.clone())]).unwrap();
                    written.push(id);
                    k += 1;
                    if e.sync(&url, Some(&t)).is_ok() {
                        acked.lock().unwrap().append(&mut written);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    wait_for("some acknowledged syncs", Duration::from_secs(30), || acked.lock().unwrap().len() >= 30);
    n1.kill().unwrap(); // SIGKILL, whatever it was doing
    n1.wait().unwrap();
    let acknowledged = acked.lock().unwrap().clone();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    // Everything acknowledged by the killed node is served by the other one.
    let fresh = replica(&dir.path().join("fresh.db"));
    fresh.sync(&u2, Some(&t)).unwrap();
    let on_server = ids(&fresh);
    let missing: Vec<_> = acknowledged.iter().filter(|id| !on_server.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // The writers move to node 2 and everyone converges, unacknowledged rows included.
    for e in &engines {
        e.sync(&u2, Some(&t)).unwrap();
    }
    fresh.sync(&u2, Some(&t)).unwrap();
    for e in &engines {
        e.sync(&u2, Some(&t)).unwrap();
        assert_eq!(ids(e), ids(&fresh));
    }
}

#[test]
fn concurrent_first_requests_on_a_fresh_node_share_one_cache_replica() {
    // A node builds a namespace's cache replica on first use; requests racing for it must not
    // build it twice (the second build would delete the first one's file under it).
    let (cluster, _admin, t) = team();
    let (_n1, u1) = node(&cluster.url());
    let dir = tempfile::tempdir().unwrap();
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let (path, url, t) = (dir.path().join(format!("c{i}.db")), u1.clone(), t.clone());
            std::thread::spawn(move || {
                let e = replica(&path);
                e.execute("INSERT INTO todos VALUES (?1, 'x')", &[Value::Text(format!("r{i}"))]).unwrap();
                e.sync(&url, Some(&t)).map(drop)
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap().unwrap();
    }
    let all = replica(&dir.path().join("all.db"));
    all.sync(&u1, Some(&t)).unwrap();
    assert_eq!(ids(&all).len(), 16);
}

/// `syncline_rows` of namespace `ns`, table todos, as `id=title` by key.
fn copied(cluster: &Cluster, ns: &str) -> String {
    cluster.query(&format!(
        "SELECT string_agg((cols->>'id') || '=' || coalesce(cols->>'title', 'NULL') || coalesce(':' || (cols->>'prio'), ''), ',' ORDER BY pk)
         FROM syncline_rows WHERE namespace = '{ns}' AND tbl = 'todos';"
    ))
}

#[test]
fn the_rows_are_queryable_in_postgresql_whichever_node_took_them() {
    let cluster = Cluster::start();
    let admin = PgHub::connect(&cluster.url(), Options::default()).unwrap();
    admin.create_namespace("team", SCHEMA, &["todos".to_owned()], Strategy::Lww).unwrap();
    admin.create_namespace("other", SCHEMA, &["todos".to_owned()], Strategy::Lww).unwrap();
    let t = admin.issue_token("team", &[]).unwrap();
    let other = admin.issue_token("other", &[]).unwrap();
    // A log entry no replica can read (written behind the servers' backs) stops the copy of
    // its namespace only.
    admin.create_namespace("broken", SCHEMA, &["todos".to_owned()], Strategy::Lww).unwrap();
    cluster.query("INSERT INTO syncline_changes(namespace, sender, bundle, created_ms) VALUES ('broken', '\\x00', '\\xdeadbeef', 0);");
    let (_n1, u1) = node(&cluster.url());
    let (_n2, u2) = node(&cluster.url());
    let dir = tempfile::tempdir().unwrap();
    let (a, b, o) = (replica(&dir.path().join("a.db")), replica(&dir.path().join("b.db")), replica(&dir.path().join("o.db")));
    a.execute("INSERT INTO todos VALUES ('1', 'first'), ('2', 'second'), ('4', NULL)", &[]).unwrap();
    a.sync(&u1, Some(&t)).unwrap();
    b.sync(&u2, Some(&t)).unwrap();
    b.execute("UPDATE todos SET title = 'it''s edited' WHERE id = '1'", &[]).unwrap();
    b.execute("DELETE FROM todos WHERE id = '2'", &[]).unwrap();
    b.execute("INSERT INTO todos VALUES ('3', 'third')", &[]).unwrap();
    b.sync(&u2, Some(&t)).unwrap();
    o.execute("INSERT INTO todos VALUES ('9', 'elsewhere')", &[]).unwrap();
    o.sync(&u1, Some(&other)).unwrap();
    let want = "1=it's edited,3=third,4=NULL";
    wait_for("the row copy", Duration::from_secs(30), || copied(&cluster, "team") == want);
    assert_eq!(copied(&cluster, "other"), "9=elsewhere");
    assert_eq!(cluster.query("SELECT count(*) FROM syncline_rows_seq WHERE namespace = 'broken';"), "0");
    let head = "SELECT (SELECT seq FROM syncline_rows_seq WHERE namespace = 'team') = (SELECT max(seq) FROM syncline_changes WHERE namespace = 'team');";
    assert_eq!(cluster.query(head), "t", "the copy is as of the log's head");
    // A column added on a device (a migration in its bundle) reaches every row of the copy.
    a.sync(&u1, Some(&t)).unwrap();
    a.add_column("todos", "prio", "INTEGER", Value::Integer(5)).unwrap();
    a.execute("UPDATE todos SET prio = 1 WHERE id = '3'", &[]).unwrap();
    a.sync(&u1, Some(&t)).unwrap();
    let want = "1=it's edited:5,3=third:1,4=NULL:5";
    wait_for("the copy of the new column", Duration::from_secs(30), || copied(&cluster, "team") == want);
    // Deleting a namespace deletes its copy.
    admin.delete_namespace("other").unwrap();
    assert_eq!(cluster.query("SELECT count(*) FROM syncline_rows WHERE namespace = 'other';"), "0");
}

#[test]
fn appends_commit_in_log_order_and_an_entry_no_node_copied_is_copied() {
    // Another node appends an entry and has not committed yet when this node appends the next
    // one. A node that read the later entry must still get the earlier one: appends take the
    // namespace's append lock (as the other node here does), so they commit in log order.
    // The other node then dies without copying its entry into syncline_rows (it never
    // notified either): a sweep copies it.
    use std::io::{BufRead, Write};
    let (cluster, _admin, t) = team();
    let (_n1, u1) = node(&cluster.url());
    let (_n2, u2) = node(&cluster.url());
    let dir = tempfile::tempdir().unwrap();
    let (a, b, x) = (replica(&dir.path().join("a.db")), replica(&dir.path().join("b.db")), replica(&dir.path().join("x.db")));
    b.sync(&u2, Some(&t)).unwrap(); // node 2 has the namespace open
    x.execute("INSERT INTO todos VALUES ('early', 'appended first')", &[]).unwrap();
    let (bundle, sender) = (x.generate_bundle(None).unwrap(), x.site_id().unwrap());
    let mut other = cluster.psql();
    let mut input = other.stdin.take().unwrap();
    let mut output = std::io::BufReader::new(other.stdout.take().unwrap()).lines();
    writeln!(
        input,
        "BEGIN; SELECT pg_advisory_xact_lock(7368435, hashtext('team'));
         INSERT INTO syncline_changes(namespace, sender, bundle, created_ms) VALUES ('team', '\\x{}', '\\x{}', 0) RETURNING seq;
         SELECT 'appended';",
        sender.to_hex(),
        hex(&bundle)
    )
    .unwrap();
    while output.next().unwrap().unwrap() != "appended" {}
    a.execute("INSERT INTO todos VALUES ('late', 'appended next')", &[]).unwrap();
    let push = std::thread::spawn({
        let (u1, t) = (u1.clone(), t.clone());
        move || a.sync(&u1, Some(&t)).map(|_| a)
    });
    std::thread::sleep(Duration::from_millis(1500));
    b.sync(&u2, Some(&t)).unwrap(); // node 2 reads the log while the first append is open
    writeln!(input, "COMMIT;").unwrap();
    drop(input);
    assert!(other.wait().unwrap().success());
    let a = push.join().unwrap().unwrap();
    b.sync(&u2, Some(&t)).unwrap();
    assert_eq!(ids(&b), vec!["early", "late"], "node 2 skipped an entry committed after a later one");
    a.sync(&u1, Some(&t)).unwrap();
    assert_eq!(ids(&a), vec!["early", "late"]);
    wait_for("the sweep's copy", Duration::from_secs(30), || copied(&cluster, "team") == "early=appended first,late=appended next");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_compacted_log_still_serves_every_node_and_the_row_copy() {
    let cluster = Cluster::start();
    let admin = PgHub::connect(&cluster.url(), Options::default()).unwrap();
    admin.create_namespace("team", SCHEMA, &["todos".to_owned()], Strategy::Lww).unwrap();
    admin.create_namespace("held", SCHEMA, &["todos".to_owned()], Strategy::Manual).unwrap();
    let t = admin.issue_token("team", &[]).unwrap();
    let (_n1, u1) = node(&cluster.url());
    let dir = tempfile::tempdir().unwrap();
    let (a, d) = (replica(&dir.path().join("a.db")), replica(&dir.path().join("d.db")));
    a.execute("INSERT INTO todos VALUES ('1', 'one'), ('2', 'two')", &[]).unwrap();
    a.sync(&u1, Some(&t)).unwrap();
    d.sync(&u1, Some(&t)).unwrap(); // d holds row 2
    a.execute("DELETE FROM todos WHERE id = '2'", &[]).unwrap();
    a.execute("UPDATE todos SET title = 'uno' WHERE id = '1'", &[]).unwrap();
    a.sync(&u1, Some(&t)).unwrap();
    let seq = admin.compact_log("team").unwrap();
    assert_eq!(cluster.query("SELECT count(*) FROM syncline_changes WHERE namespace = 'team';"), "0");
    assert_eq!(cluster.query("SELECT seq FROM syncline_snapshots WHERE namespace = 'team';"), seq.to_string());
    // A snapshot bigger than a part (1 MiB) is stored in parts.
    admin.create_namespace("big", SCHEMA, &["todos".to_owned()], Strategy::Lww).unwrap();
    let b = admin.issue_token("big", &[]).unwrap();
    let big = replica(&dir.path().join("big.db"));
    big.execute_batch(
        "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 3000) \
         INSERT INTO todos(id, title) SELECT 'b' || x, hex(randomblob(400)) FROM i",
    )
    .unwrap();
    big.sync(&u1, Some(&b)).unwrap();
    admin.compact_log("big").unwrap();
    let parts: i64 = cluster.query("SELECT parts FROM syncline_snapshots WHERE namespace = 'big';").parse().unwrap();
    assert!(parts >= 2, "{parts} parts");
    assert_eq!(cluster.query("SELECT count(*) FROM syncline_snapshot_parts WHERE namespace = 'big';"), parts.to_string());
    // From here on, a mirror that is not at the log's head starts from the snapshot.
    drop(admin);
    a.execute("INSERT INTO todos VALUES ('3', 'three')", &[]).unwrap();
    a.sync(&u1, Some(&t)).unwrap();
    // A node started now begins from the snapshot: the update, the delete and what came after.
    let (_n2, u2) = node(&cluster.url());
    let c = replica(&dir.path().join("c.db"));
    c.sync(&u2, Some(&t)).unwrap();
    assert_eq!(ids(&c), vec!["1", "3"]);
    assert_eq!(c.query("SELECT title FROM todos WHERE id = '1'", &[]).unwrap().rows[0][0], Value::Text("uno".into()));
    d.sync(&u2, Some(&t)).unwrap();
    assert_eq!(ids(&d), vec!["1", "3"], "the delete reaches a device that held the row");
    wait_for("the row copy", Duration::from_secs(30), || copied(&cluster, "team") == "1=uno,3=three");
    let count = |e: &SyncEngine| e.query("SELECT count(*) FROM todos", &[]).unwrap().rows[0][0].clone();
    let fresh = replica(&dir.path().join("fresh.db"));
    fresh.sync(&u2, Some(&b)).unwrap();
    assert_eq!(count(&fresh), Value::Integer(3000), "the whole snapshot, from its parts");
    // A copy lost, or behind the snapshot, is written again whole from it, a page at a time.
    wait_for("the big copy", Duration::from_secs(30), || {
        cluster.query("SELECT count(*) FROM syncline_rows WHERE namespace = 'big';") == "3000"
    });
    cluster.query("DELETE FROM syncline_rows WHERE namespace = 'big'; DELETE FROM syncline_rows_seq WHERE namespace = 'big';");
    wait_for("the big copy, again", Duration::from_secs(30), || {
        cluster.query("SELECT count(DISTINCT cols->>'id') FROM syncline_rows WHERE namespace = 'big';") == "3000"
    });
    assert_eq!(
        cluster.query("SELECT seq FROM syncline_rows_seq WHERE namespace = 'big';"),
        cluster.query("SELECT seq FROM syncline_snapshots WHERE namespace = 'big';")
    );
    // A snapshot missing a part is never imported in part.
    cluster.query("DELETE FROM syncline_snapshot_parts WHERE namespace = 'big' AND part = 1;");
    let (_n3, u3) = node(&cluster.url());
    let broken = replica(&dir.path().join("broken.db"));
    assert!(broken.sync(&u3, Some(&b)).is_err());
    assert_eq!(count(&broken), Value::Integer(0));

    // A log whose namespace has an open conflict keeps it: only the log holds its other side.
    let admin = PgHub::connect(&cluster.url(), Options::default()).unwrap();
    let h = admin.issue_token("held", &[]).unwrap();
    let (x, y) = (replica(&dir.path().join("x.db")), replica(&dir.path().join("y.db")));
    x.execute("INSERT INTO todos VALUES ('1', 'x')", &[]).unwrap();
    y.execute("INSERT INTO todos VALUES ('1', 'y')", &[]).unwrap();
    x.sync(&u1, Some(&h)).unwrap();
    y.sync(&u1, Some(&h)).unwrap();
    let refused = admin.compact_log("held").unwrap_err();
    assert_eq!(refused.kind(), syncline::ErrorKind::InvalidArgument);
    assert!(refused.message().contains("open conflicts"), "{refused}");
    let cli = Command::new(BIN).args(["hub", "compact-log", "--postgres", &cluster.url(), "held"]).output().unwrap();
    assert!(!cli.status.success());
    assert!(String::from_utf8_lossy(&cli.stderr).contains("open conflicts"), "{}", String::from_utf8_lossy(&cli.stderr));
    // The operator's command compacts a namespace whose log may go.
    a.execute("UPDATE todos SET title = 'tres' WHERE id = '3'", &[]).unwrap();
    a.sync(&u2, Some(&t)).unwrap();
    let cli = Command::new(BIN).args(["hub", "compact-log", "--postgres", &cluster.url(), "team", "--json"]).output().unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert!(doc["snapshot_seq"].as_i64().unwrap() > seq, "{doc}");
    assert_eq!(cluster.query("SELECT count(*) FROM syncline_changes WHERE namespace = 'team';"), "0");
    assert_eq!(cluster.query("SELECT count(*) FROM syncline_changes WHERE namespace = 'held';"), "2");
}

#[test]
fn a_snapshot_stored_whole_by_the_earlier_layout_is_still_read() {
    // The layout before parts: no `parts` column, the snapshot whole in `bundle`. A node
    // adds the column, and serves the snapshot.
    let cluster = Cluster::start();
    let admin = PgHub::connect(&cluster.url(), Options::default()).unwrap();
    admin.create_namespace("old", SCHEMA, &["todos".to_owned()], Strategy::Lww).unwrap();
    let t = admin.issue_token("old", &[]).unwrap();
    drop(admin);
    let dir = tempfile::tempdir().unwrap();
    let x = replica(&dir.path().join("x.db"));
    x.execute("INSERT INTO todos VALUES ('1', 'one'), ('2', 'two')", &[]).unwrap();
    cluster.query(&format!(
        "ALTER TABLE syncline_snapshots DROP COLUMN parts;
         INSERT INTO syncline_snapshots(namespace, seq, bundle, created_ms) VALUES ('old', 5, '\\x{}', 0);",
        hex(&x.generate_bundle(None).unwrap())
    ));
    let (_n, u) = node(&cluster.url());
    let c = replica(&dir.path().join("c.db"));
    c.sync(&u, Some(&t)).unwrap();
    assert_eq!(ids(&c), vec!["1", "2"]);
    assert_eq!(cluster.query("SELECT parts FROM syncline_snapshots WHERE namespace = 'old';"), "0");
}

#[test]
fn more_namespaces_than_a_node_keeps_mirrors_for_are_all_copied() {
    // A node keeps 256 mirrors open and closes the least recently used past that; a closed
    // one is built again from the log when its namespace changes.
    let cluster = Cluster::start();
    let hub = PgHub::connect(&cluster.url(), Options::default()).unwrap();
    let n = 270;
    for i in 0..n {
        hub.create_namespace(&format!("ns{i}"), SCHEMA, &["todos".to_owned()], Strategy::Lww).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let x = replica(&dir.path().join("x.db"));
    let append = |title: &str| {
        x.execute("INSERT OR REPLACE INTO todos VALUES ('1', ?1)", &[Value::Text(title.into())]).unwrap();
        let (bundle, sender) = (x.generate_bundle(None).unwrap(), x.site_id().unwrap());
        cluster.query(&format!(
            "INSERT INTO syncline_changes(namespace, sender, bundle, created_ms)
             SELECT name, '\\x{}', '\\x{}', 0 FROM syncline_namespaces;",
            sender.to_hex(),
            hex(&bundle)
        ));
    };
    let copies = |title: &str| cluster.query(&format!("SELECT count(*) FROM syncline_rows WHERE cols->>'title' = '{title}';"));
    append("first");
    wait_for("every namespace's copy", Duration::from_secs(120), || copies("first") == n.to_string());
    append("second");
    wait_for("every namespace's second copy", Duration::from_secs(120), || copies("second") == n.to_string());
    assert_eq!(cluster.query("SELECT count(*) FROM syncline_rows;"), n.to_string());
}
