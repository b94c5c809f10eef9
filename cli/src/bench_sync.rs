//! `syncline bench-sync` (hidden): a load benchmark of network sync on 127.0.0.1 only: one
//! in-process server and N concurrent clients (threads), each writing `changes` rows in
//! batches and syncing after each batch, then a last pass each to pull everything; with
//! `--namespaces N`, a hub with the clients spread over N namespaces.
//! Reports syncs/s and latency percentiles, and checks that every replica converged.

use crate::output::Out;
use clap::Args;
use serde_json::json;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};
use syncline::net::{Backend, HubDir, ServerConfig, ServerHandle, SyncClient, SyncOptions, Tokens};
use syncline::{EnableOptions, Error, ErrorKind, Options, Strategy, SyncEngine, Value};

#[derive(Args)]
pub struct BenchSync {
    /// Concurrent clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Rows each client writes (and pushes).
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Rows written between two syncs of a client.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Spread the clients over this many namespaces of a hub (client n in namespace n mod N,
    /// each with its own token); 0: one shared data set on a single-database server.
    #[arg(long, default_value_t = 0)]
    namespaces: usize,
    /// Keep the hub in this PostgreSQL database instead of a directory (its namespaces
    /// `ns0`... are created, and deleted afterwards); the shared case is one namespace.
    #[cfg(feature = "postgres")]
    #[arg(long)]
    postgres: Option<String>,
    /// Pace each client: one sync every this many milliseconds, the clients spread evenly
    /// over the interval (an open load of clients/interval syncs per second). A latency is
    /// then counted from when the sync was due, so a server that falls behind shows it.
    /// 0: each client syncs again as soon as its last sync returns (a closed loop).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Sync each client once before the clock starts (its namespace open on the server, the
    /// server's site id known): the figures are then those of a warm hub.
    #[arg(long)]
    warm: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS todos(id TEXT PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0)";

fn replica(path: std::path::PathBuf) -> Result<SyncEngine, Error> {
    let e = SyncEngine::open(path, Options::default())?;
    e.execute_batch(SCHEMA)?;
    e.enable_sync("todos", EnableOptions::default())?;
    Ok(e)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// One client's part: write, sync after each batch, wait for the others, pull the rest.
fn client(
    engine: &SyncEngine,
    sync: &SyncClient,
    n: usize,
    a: &BenchSync,
    all_pushed: &Barrier,
    began: Instant,
    deadline: Instant,
) -> Result<Vec<Duration>, Error> {
    let mut latencies = Vec::new();
    let interval = Duration::from_millis(a.interval_ms);
    let mut due = began + interval.mul_f64(n as f64 / a.clients.max(1) as f64);
    // `realign`: the first due time from now on (after waiting for the other clients, whose
    // wait is no sync's latency).
    let mut timed = |engine: &SyncEngine, realign: bool| -> Result<(), Error> {
        if Instant::now() > deadline {
            return Err(Error::new(ErrorKind::Network, "the benchmark ran out of time"));
        }
        let t = if interval.is_zero() {
            Instant::now()
        } else {
            while realign && due < Instant::now() {
                due += interval;
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            due += interval;
            due - interval
        };
        sync.sync(engine)?;
        latencies.push(t.elapsed());
        Ok(())
    };
    let mut result = Ok(());
    for start in (0..a.changes).step_by(a.batch.max(1)) {
        for k in start..(start + a.batch.max(1)).min(a.changes) {
            engine.execute(
                "INSERT INTO todos(id, title) VALUES (?1, ?2)",
                &[Value::Text(format!("{n}-{k}")), Value::Text(format!("row {k} of client {n}"))],
            )?;
        }
        result = timed(engine, false);
        if result.is_err() {
            break;
        }
    }
    all_pushed.wait();
    result?;
    timed(engine, true)?;
    Ok(latencies)
}

pub fn run(a: BenchSync, out: &Out) -> Result<(), Error> {
    // The server's warnings and errors on stderr (RUST_LOG overrides the level).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let dir = tempfile::tempdir().map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
    let addr = "127.0.0.1:0".parse().expect("address");
    // The token of each client, and the rows every client of its data set ends with.
    #[cfg(feature = "postgres")]
    let postgres = a.postgres.clone();
    #[cfg(not(feature = "postgres"))]
    let postgres: Option<String> = None;
    let (handle, tokens, per_set) = if a.namespaces == 0 && postgres.is_none() {
        let server = Arc::new(replica(dir.path().join("server.db"))?);
        let mut tokens = Tokens::default();
        tokens.add("bench");
        let handle = ServerHandle::start(server, addr, ServerConfig { tokens, max_connections: a.clients + 16, ..Default::default() })?;
        (handle, vec!["bench".to_owned(); a.clients], vec![a.clients])
    } else {
        let namespaces = a.namespaces.max(1);
        let hub: Backend = match &postgres {
            #[cfg(feature = "postgres")]
            Some(url) => syncline::net::PgHub::connect(url, Options::default())?.into(),
            _ => HubDir::open(dir.path().join("hub"), Options::default())?.into(),
        };
        let mut per_namespace = Vec::new();
        for i in 0..namespaces {
            let _ = hub.catalog().delete_namespace(&format!("ns{i}")); // a previous run's
            hub.catalog().create_namespace(&format!("ns{i}"), SCHEMA, &["todos".to_owned()], Strategy::Lww)?;
            per_namespace.push(hub.catalog().issue_token(&format!("ns{i}"), &[])?);
        }
        let tokens = (0..a.clients).map(|n| per_namespace[n % namespaces].clone()).collect();
        let per_set = (0..namespaces).map(|i| (0..a.clients).filter(|n| n % namespaces == i).count()).collect();
        let config = ServerConfig { max_open_namespaces: namespaces, readers: 1, max_connections: a.clients + 16, ..Default::default() };
        (ServerHandle::start_hub(hub, addr, config)?, tokens, per_set)
    };
    let url = handle.url();
    let start_line = Arc::new(Barrier::new(a.clients + 1));
    let all_pushed = Arc::new(Barrier::new(a.clients));
    let all_done = Arc::new(Barrier::new(a.clients + 1));
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let results = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::new(a);
    let mut threads = Vec::new();
    for (n, token) in tokens.into_iter().enumerate() {
        let (path, url, a) = (dir.path().join(format!("client{n}.db")), url.clone(), a.clone());
        let (start_line, all_pushed, all_done, results) = (start_line.clone(), all_pushed.clone(), all_done.clone(), results.clone());
        threads.push(std::thread::spawn(move || {
            let setup = replica(path).and_then(|e| {
                let sync = SyncClient::new(&url, Some(&token), SyncOptions::default())?;
                if a.warm {
                    // One row, so the server has compiled what an import needs, too.
                    e.execute("INSERT INTO todos(id, title) VALUES (?1, 'warm')", &[Value::Text(format!("{n}-warm"))])?;
                    sync.sync(&e)?;
                }
                Ok((e, sync))
            });
            start_line.wait();
            let outcome = setup.and_then(|(engine, sync)| {
                let latencies = client(&engine, &sync, n, &a, &all_pushed, Instant::now(), deadline)?;
                let rows = engine.query("SELECT count(*) FROM todos", &[])?.rows[0][0].clone();
                Ok((engine, latencies, rows))
            });
            // Every replica stays open until all are done: closing one checkpoints its file,
            // work that would otherwise land on the syncs still running.
            all_done.wait();
            results.lock().unwrap().push((n, outcome.map(|(_, l, rows)| (l, rows))));
        }));
    }
    start_line.wait();
    let began = Instant::now();
    all_done.wait();
    let elapsed = began.elapsed().as_secs_f64();
    for t in threads {
        t.join().map_err(|_| Error::new(ErrorKind::Io, "a benchmark client panicked"))?;
    }
    handle.stop()?;
    let (mut latencies, mut converged, mut first_error) = (Vec::new(), 0usize, None);
    for (n, r) in results.lock().unwrap().drain(..) {
        let want = Value::Integer((per_set[n % per_set.len()] * (a.changes + usize::from(a.warm))) as i64);
        match r {
            Ok((l, rows)) => {
                latencies.extend(l);
                converged += usize::from(rows == want);
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    latencies.sort();
    let syncs = latencies.len();
    let doc = json!({
        "clients": a.clients, "namespaces": a.namespaces, "postgres": postgres.is_some(), "changes_per_client": a.changes, "interval_ms": a.interval_ms, "warm": a.warm, "syncs": syncs, "seconds": elapsed,
        "syncs_per_second": syncs as f64 / elapsed, "p50_ms": percentile(&latencies, 0.5), "p99_ms": percentile(&latencies, 0.99),
        "max_ms": percentile(&latencies, 1.0), "converged_clients": converged,
    });
    out.emit(doc.clone(), || {
        format!(
            "{} clients in {}{} x {} changes{}: {syncs} syncs in {elapsed:.1} s = {:.0} syncs/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {converged}/{} clients converged",
            a.clients,
            if a.namespaces == 0 { "one data set".to_owned() } else { format!("{} namespaces", a.namespaces) },
            if postgres.is_some() { " (PostgreSQL)" } else { "" },
            a.changes,
            if a.interval_ms == 0 { String::new() } else { format!(", a sync every {} ms each", a.interval_ms) } + if a.warm { ", warm" } else { "" },
            doc["syncs_per_second"].as_f64().unwrap_or(0.0), doc["p50_ms"].as_f64().unwrap_or(0.0),
            doc["p99_ms"].as_f64().unwrap_or(0.0), doc["max_ms"].as_f64().unwrap_or(0.0), a.clients
        )
    })?;
    if converged != a.clients {
        return Err(Error::new(ErrorKind::Network, format!("only {converged} of {} clients converged", a.clients)));
    }
    Ok(())
}
