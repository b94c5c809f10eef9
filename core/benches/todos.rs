//! The `todos` workload benchmark (`cargo bench -p syncline --bench todos`):
//! (a) 10,000 inserts in one transaction, enabled table vs plain table, and the engine's later
//!     stamping of the 10,000 queued writes (the first call that reads sync state pays it);
//! (b) 10,000 single-row updates in one transaction, enabled vs plain, and their stamping;
//! (c) a bundle for a new peer: milliseconds and bytes per row;
//! (d) import into a fresh replica: rows per second;
//! (e) import of 100,000 rows in a fresh process: peak RSS.
//! With `--no-default-features --features host-sqlite` the engine and the app's connections run
//! on a SQLite shared library bound at start (`SYNCLINE_BENCH_SQLITE`, default the system's
//! `libsqlite3.so.0`), as in the language bindings.
//! Each timing is the median of several runs. Targets: (a),(b) <= 3x; (c) <= 140 B/row;
//! (d) >= 200,000 rows/s; (e) < 50 MB.

use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};
use syncline::{EnableOptions, Options, SyncEngine};

const TODOS: &str = "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER, body TEXT)";
const N: i64 = 10_000;

fn body(i: i64) -> String {
    // 100 bytes of varied text, deterministic.
    let mut x = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn app_conn(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c
}

/// A database with the todos table, enabled for sync or not.
fn fresh(dir: &Path, name: &str, enabled: bool) -> std::path::PathBuf {
    let path = dir.join(name);
    let e = SyncEngine::open(&path, Options::default()).unwrap();
    e.execute_batch(TODOS).unwrap();
    if enabled {
        e.enable_sync("todos", EnableOptions::default()).unwrap();
    }
    e.close().unwrap();
    path
}

fn insert_all(c: &mut Connection, from: i64, n: i64) -> Duration {
    let bodies: Vec<String> = (from..from + n).map(body).collect();
    let start = Instant::now();
    let tx = c.transaction().unwrap();
    {
        let mut st = tx.prepare("INSERT INTO todos(id, title, done, body) VALUES (?1, ?2, 0, ?3)").unwrap();
        for (k, i) in (from..from + n).enumerate() {
            st.execute(rusqlite::params![i, format!("task {i}"), bodies[k]]).unwrap();
        }
    }
    tx.commit().unwrap();
    start.elapsed()
}

fn update_all(c: &mut Connection, round: i64) -> Duration {
    let start = Instant::now();
    let tx = c.transaction().unwrap();
    {
        let mut st = tx.prepare("UPDATE todos SET title = ?2 WHERE id = ?1").unwrap();
        for i in 0..N {
            st.execute(rusqlite::params![i, format!("task {i} v{round}")]).unwrap();
        }
    }
    tx.commit().unwrap();
    start.elapsed()
}

/// Time the first `status()` after app writes: it stamps everything the triggers queued. The
/// WAL is checkpointed first, so the figure is the stamping alone: a checkpoint of the app's
/// writes falls due whether or not the table is synced, and would land on this commit.
fn stamp_queued(e: &SyncEngine) -> Duration {
    e.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    let t = Instant::now();
    e.status().unwrap();
    t.elapsed()
}

fn rss_child(bundle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = fresh(dir.path(), "rss.db", true);
    let before = peak_rss_kb();
    let e = SyncEngine::open(&path, Options::default()).unwrap();
    let start = Instant::now();
    let r = e.import_bundle_file(bundle).unwrap();
    let took = start.elapsed();
    println!("{} {} {} {}", r.rows, took.as_micros(), before, peak_rss_kb());
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap()))
        .unwrap_or(0)
}

fn main() {
    #[cfg(feature = "host-sqlite")]
    syncline::host::bind_library(&std::env::var("SYNCLINE_BENCH_SQLITE").unwrap_or_else(|_| "libsqlite3.so.0".into())).unwrap();
    if let Ok(bundle) = std::env::var("SYNCLINE_BENCH_RSS_CHILD") {
        return rss_child(&bundle);
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probing: nothing to list
    }
    let dir = tempfile::tempdir().unwrap();
    let runs = 5;

    // (a) inserts; an engine stays open on each synced database, as in an app
    let (mut plain_ins, mut sync_ins, mut engines) = (vec![], vec![], vec![]);
    for r in 0..runs {
        let mut p = app_conn(&fresh(dir.path(), &format!("plain{r}.db"), false));
        let path = fresh(dir.path(), &format!("sync{r}.db"), true);
        engines.push(SyncEngine::open(&path, Options::default()).unwrap());
        let mut s = app_conn(&path);
        plain_ins.push(insert_all(&mut p, 0, N));
        sync_ins.push(insert_all(&mut s, 0, N));
    }
    let (pi, si) = (median(plain_ins), median(sync_ins));
    println!("(a) 10,000 inserts:  plain {:>7.2} ms   enabled {:>7.2} ms   ratio {:.2}x", ms(pi), ms(si), ratio(si, pi));
    let stamp_ins = median(engines.iter().map(stamp_queued).collect());
    println!("    stamping them later:  {:>7.2} ms (first status() after the writes)", ms(stamp_ins));

    // (b) updates, on the databases of (a)
    let (mut plain_upd, mut sync_upd) = (vec![], vec![]);
    for r in 0..runs {
        let mut p = app_conn(&dir.path().join(format!("plain{r}.db")));
        let mut s = app_conn(&dir.path().join(format!("sync{r}.db")));
        plain_upd.push(update_all(&mut p, r as i64));
        sync_upd.push(update_all(&mut s, r as i64));
    }
    let (pu, su) = (median(plain_upd), median(sync_upd));
    println!("(b) 10,000 updates:  plain {:>7.2} ms   enabled {:>7.2} ms   ratio {:.2}x", ms(pu), ms(su), ratio(su, pu));
    let stamp_upd = median(engines.iter().map(stamp_queued).collect());
    drop(engines);
    println!("    stamping them later:  {:>7.2} ms (first status() after the writes)", ms(stamp_upd));

    // (c) bundle for a new peer
    let src = SyncEngine::open(dir.path().join("sync0.db"), Options::default()).unwrap();
    let mut times = vec![];
    let mut bundle = vec![];
    for _ in 0..runs {
        let t = Instant::now();
        bundle = src.generate_bundle(None).unwrap();
        times.push(t.elapsed());
    }
    let gen = median(times);
    println!("(c) bundle, 10,000 rows: {:>7.2} ms   {} bytes = {:.1} bytes/row", ms(gen), bundle.len(), bundle.len() as f64 / N as f64);
    let (zipped, _) = src.generate_bundle_with(syncline::ExportOptions { peer: None, compress: true }, &mut |_, _| {}).unwrap();
    println!("    compressed:         {} bytes = {:.1} bytes/row", zipped.len(), zipped.len() as f64 / N as f64);

    // (d) import into a fresh replica
    let mut times = vec![];
    for r in 0..runs {
        let e = SyncEngine::open(fresh(dir.path(), &format!("dst{r}.db"), true), Options::default()).unwrap();
        let t = Instant::now();
        let rep = e.import_bundle(&bundle).unwrap();
        times.push(t.elapsed());
        assert_eq!(rep.rows, N as u64);
    }
    let imp = median(times);
    println!("(d) import 10,000 rows: {:>7.2} ms = {:.0} rows/s", ms(imp), N as f64 / imp.as_secs_f64());

    // (e) 100,000 rows: import in a fresh process, peak RSS
    let mut big = app_conn(&fresh(dir.path(), "big.db", true));
    insert_all(&mut big, 0, 100_000);
    drop(big);
    let big = SyncEngine::open(dir.path().join("big.db"), Options::default()).unwrap();
    let bundle_path = dir.path().join("big.bundle");
    big.write_bundle(None, &bundle_path).unwrap();
    let size = std::fs::metadata(&bundle_path).unwrap().len();
    let out = std::process::Command::new(std::env::current_exe().unwrap()).env("SYNCLINE_BENCH_RSS_CHILD", &bundle_path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = text.split_whitespace().map(|x| x.parse().unwrap()).collect();
    println!(
        "(e) import 100,000 rows ({:.1} MB bundle) in a fresh process: {:.0} ms = {:.0} rows/s, peak RSS {:.1} MB (process before import {:.1} MB)",
        size as f64 / 1e6,
        f[1] as f64 / 1000.0,
        f[0] as f64 / (f[1] as f64 / 1e6),
        f[3] as f64 / 1024.0,
        f[2] as f64 / 1024.0
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
