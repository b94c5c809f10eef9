//! `syncline serve` (the sync server over HTTP), `syncline sync` (one sync pass with a
//! server, or a daemon that keeps syncing until ctrl-c/SIGTERM) and `syncline clone` (a new
//! device from the server's snapshot).

use crate::duration;
use crate::output::Out;
use clap::Args;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use syncline::net::{self, ServerConfig, SyncOptions, SyncReport, Tokens};
use syncline::{Error, ErrorKind, SyncEngine};

#[derive(Args)]
pub struct Serve {
    /// The SQLite database served (its synced tables must be enabled with `init`).
    #[arg(required_unless_present = "hub", conflicts_with = "hub")]
    db: Option<PathBuf>,
    /// Serve every namespace of this hub directory instead (see `syncline hub`); clients reach
    /// one at /ns/NAME/v1/... or through /v1/... with a token of that namespace.
    #[arg(long, conflicts_with_all = ["tokens", "tokens_file"])]
    hub: Option<PathBuf>,
    /// TCP port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8740)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Admit clients presenting this bearer token (repeatable).
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// A file of tokens: one per line, optionally followed by the device (site) ids it may
    /// speak for; `#` starts a comment.
    #[arg(long = "tokens")]
    tokens_file: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    max_body: usize,
    /// Most changes in one request.
    #[arg(long, default_value_t = 200_000)]
    max_ops: u64,
    /// Most rows in one response page.
    #[arg(long, default_value_t = 5_000)]
    page_rows: u64,
    /// Requests decoded and imported at the same time (others wait).
    #[arg(long, default_value_t = 2)]
    max_concurrent: usize,
    /// Open connections at most (beyond it the oldest idle one is closed).
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// A request head must arrive within this time of its first byte.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    header_timeout: Duration,
    /// A request body must arrive within this time of its head (else 408).
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    body_timeout: Duration,
    /// A connection silent with no request in flight for this long is closed.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    idle_timeout: Duration,
    /// Deadline from a request's head to the start of its import (else 408 or 503).
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    request_timeout: Duration,
    /// How far a pushed stamp may run ahead of the server's clock (500ms, 30s, 5m; bare
    /// number: seconds). Default 5m.
    #[arg(long, value_parser = duration::parse)]
    max_drift: Option<Duration>,
}

#[derive(Args)]
pub struct Sync {
    /// The SQLite database to sync.
    db: PathBuf,
    /// The server, e.g. http://127.0.0.1:8740
    url: String,
    /// Bearer token (default: the SYNCLINE_TOKEN environment variable).
    #[arg(long)]
    token: Option<String>,
    /// Keep syncing in the background until ctrl-c or SIGTERM.
    #[arg(long)]
    daemon: bool,
    /// Seconds between syncs in daemon mode.
    #[arg(long, default_value_t = 30.0, requires = "daemon")]
    interval: f64,
    /// Daemon mode: also sync as soon as the server announces a change (WebSocket) or a local
    /// write happens.
    #[arg(long, requires = "daemon")]
    live: bool,
    /// How far a pulled stamp may run ahead of the local clock (500ms, 30s, 5m; bare number:
    /// seconds). Default 5m.
    #[arg(long, value_parser = duration::parse)]
    max_drift: Option<Duration>,
}

#[derive(Args)]
pub struct Clone {
    /// The server, e.g. http://127.0.0.1:8740
    url: String,
    /// The new database file (must not exist).
    db: PathBuf,
    /// Bearer token (default: the SYNCLINE_TOKEN environment variable).
    #[arg(long)]
    token: Option<String>,
}

/// Open an existing database (never create one) with the `--max-drift` given.
fn open(db: &PathBuf, max_drift: Option<Duration>) -> Result<Arc<SyncEngine>, Error> {
    Ok(Arc::new(SyncEngine::open(db, crate::existing(max_drift))?))
}

pub fn serve(args: Serve, out: &Out) -> Result<(), Error> {
    let mut tokens = Tokens::default();
    for t in &args.tokens {
        tokens.add(t);
    }
    if let Some(file) = &args.tokens_file {
        let text = std::fs::read_to_string(file).map_err(|e| Error::new(ErrorKind::Io, format!("cannot read {}: {e}", file.display())))?;
        tokens.parse(&text)?;
    }
    let config = ServerConfig {
        tokens,
        max_body: args.max_body,
        max_ops: args.max_ops,
        page_rows: args.page_rows,
        max_concurrent: args.max_concurrent,
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        idle_timeout: args.idle_timeout,
        request_timeout: args.request_timeout,
        ..Default::default()
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let listening = |addr| {
        let _ = out.emit(json!({ "listening": format!("http://{addr}") }), || format!("listening on http://{addr}"));
    };
    match (&args.hub, &args.db) {
        (Some(dir), _) => {
            let d = syncline::Options::default();
            let options = syncline::Options { max_drift_ms: args.max_drift.map_or(d.max_drift_ms, duration::millis), ..d };
            net::run_hub(net::HubDir::open(dir, options)?, addr, config, listening)?
        }
        (None, db) => {
            let db = db.as_ref().ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "say which database to serve, or --hub DIR"))?;
            let engine = open(db, args.max_drift)?;
            if config.tokens.is_open() {
                eprintln!("warning: no --token or --tokens given: every client is admitted");
            }
            net::run_server(engine, addr, config, listening)?
        }
    }
    out.emit(json!({ "stopped": true }), || "stopped".into())
}

fn report_text(r: &SyncReport) -> String {
    format!(
        "pushed {} changes ({} new to the server), pulled {} ({} applied, {} conflicts, {} rejected) in {} round trips",
        r.pushed, r.server_applied, r.pulled, r.applied, r.conflicts, r.rejected, r.round_trips
    )
}

pub fn sync(args: Sync, out: &Out) -> Result<(), Error> {
    let token = args.token.or_else(|| std::env::var("SYNCLINE_TOKEN").ok());
    let engine = open(&args.db, args.max_drift)?;
    if !args.daemon {
        let bar = crate::progress::rows_open("sync");
        let report = engine.sync_with(&args.url, token.as_deref(), &mut crate::progress::follow(&bar))?;
        bar.finish_and_clear();
        return out.emit(syncline::json::sync_report(&report), || report_text(&report));
    }
    if !(args.interval.is_finite() && args.interval > 0.0) {
        return Err(Error::new(ErrorKind::InvalidArgument, "--interval must be a positive number of seconds"));
    }
    let options = SyncOptions { interval: Duration::from_secs_f64(args.interval), live: args.live, ..Default::default() };
    let handle = engine.start_sync(&args.url, token.as_deref(), options)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let _ = net::wait_for_shutdown_signal();
        flag.store(true, Ordering::SeqCst);
    });
    // Print each completed pass and each new error until told to stop.
    let (mut syncs, mut last_error) = (0u64, None::<Error>);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        let s = handle.status()?;
        if s.syncs != syncs {
            syncs = s.syncs;
            if let Some(r) = &s.last_report {
                out.emit(syncline::json::sync_report(r), || report_text(r))?;
            }
        }
        if s.last_error != last_error {
            if let Some(e) = &s.last_error {
                out.error(e);
                eprintln!("retrying after {} failures", s.failures);
            }
            last_error = s.last_error;
        }
    }
    handle.stop();
    Ok(())
}

pub fn clone(args: Clone, out: &Out) -> Result<(), Error> {
    let token = args.token.or_else(|| std::env::var("SYNCLINE_TOKEN").ok());
    let bar = crate::progress::bytes("snapshot");
    let bytes = net::clone_snapshot(&args.url, token.as_deref(), &args.db, &mut crate::progress::follow(&bar))?;
    bar.finish_and_clear();
    let engine = open(&args.db, None)?;
    let bar = crate::progress::rows_open("catch up");
    let report = engine.sync_with(&args.url, token.as_deref(), &mut crate::progress::follow(&bar))?;
    bar.finish_and_clear();
    let site = engine.site_id()?;
    out.emit(
        json!({ "cloned": args.db.display().to_string(), "bytes": bytes, "site_id": site.to_hex(), "sync": syncline::json::sync_report(&report) }),
        || format!("cloned {} ({bytes} bytes) as site {site}; then {}", args.db.display(), report_text(&report)),
    )
}
