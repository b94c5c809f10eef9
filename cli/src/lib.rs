//! The `syncline` command line, as a library so every packaging of the engine (the Rust binary,
//! the Python console script) runs the very same code: `run(args) -> exit code`.

mod bench_sync;
mod demo;
mod duration;
mod hub;
mod output;
mod progress;
mod serve;

use clap::{Args, Parser, Subcommand};
use output::Out;
use std::path::PathBuf;
use syncline::{EnableOptions, Error, ErrorKind, ExportOptions, Options, Resolution, SiteId, Strategy, SyncEngine, Value};

#[derive(Parser)]
#[command(name = "syncline", version, about = "Offline-first sync for SQLite: capture, bundle, merge")]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Db {
    /// The SQLite database file.
    db: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Install sync metadata and enable sync on tables (they must exist).
    Init {
        #[command(flatten)]
        db: Db,
        /// A table to enable (repeatable).
        #[arg(long = "table", short = 't')]
        tables: Vec<String>,
        /// Conflict strategy: lww, manual, prefer_local, prefer_remote.
        #[arg(long, default_value = "lww")]
        strategy: String,
        /// Enable tables with AUTOINCREMENT keys anyway.
        #[arg(long)]
        allow_autoincrement: bool,
    },
    /// Write a bundle of what a peer lacks (everything without --peer).
    Export {
        #[command(flatten)]
        db: Db,
        /// The peer's site id (32 hex digits).
        #[arg(long)]
        peer: Option<String>,
        /// Output file.
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// Compress the bundle body.
        #[arg(long)]
        compress: bool,
    },
    /// Write a snapshot for a new device: a compact copy without this replica's site id,
    /// re-keyed when first opened; its first sync carries only what changed since.
    Snapshot {
        #[command(flatten)]
        db: Db,
        /// The new file.
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Import a bundle file.
    Import {
        #[command(flatten)]
        db: Db,
        /// The bundle file.
        file: PathBuf,
        /// How far a remote stamp may run ahead of the local clock (500ms, 30s, 5m; bare
        /// number: seconds). Default 5m.
        #[arg(long, value_parser = duration::parse)]
        max_drift: Option<std::time::Duration>,
    },
    /// Purge the tombstones of deleted rows every known peer has acknowledged, then vacuum
    /// the file (spec/merge-rules.md §8a).
    Compact {
        #[command(flatten)]
        db: Db,
        /// Keep tombstones younger than this (500ms, 30s, 5m, 7d...; bare number: seconds);
        /// `0s` purges everything every known peer has acknowledged. Default 7d.
        #[arg(long, value_parser = duration::parse, default_value = "7d")]
        retain: std::time::Duration,
    },
    /// Change a synced table through Syncline, so the change travels to every replica:
    /// `--add-column NAME --type TYPE [--default VALUE]` (spec/schema-evolution.md).
    Migrate {
        #[command(flatten)]
        db: Db,
        /// The synced table.
        #[arg(long, short = 't')]
        table: String,
        /// The column to add.
        #[arg(long)]
        add_column: String,
        /// Its SQLite type (INTEGER, REAL, TEXT, BLOB, VARCHAR(20), ...).
        #[arg(long = "type")]
        decl_type: String,
        /// Its default: a JSON scalar (42, 1.5, "text", null) or plain text. Default NULL.
        #[arg(long)]
        default: Option<String>,
    },
    /// Show site id, tables, peers, pending changes and conflicts.
    Status {
        #[command(flatten)]
        db: Db,
    },
    /// List unresolved conflicts.
    Conflicts {
        #[command(flatten)]
        db: Db,
    },
    /// Resolve a conflict; the outcome is written as a new change that every replica adopts.
    Resolve {
        #[command(flatten)]
        db: Db,
        /// The conflict id.
        id: i64,
        #[arg(long, conflicts_with_all = ["remote", "value"])]
        local: bool,
        #[arg(long, conflicts_with_all = ["local", "value"])]
        remote: bool,
        /// A value: JSON scalar (42, 1.5, "text", null) or plain text.
        #[arg(long, conflicts_with_all = ["local", "remote"])]
        value: Option<String>,
    },
    /// Show or reset this database's site id (reset after copying the file to another device).
    SiteId {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        reset: bool,
    },
    /// Run the three-replica demo in a temporary folder.
    Demo,
    /// Serve a database to sync clients over HTTP (bound to 127.0.0.1 unless --bind says otherwise).
    Serve(serve::Serve),
    /// Sync a database with a server once, or keep syncing with --daemon.
    Sync(serve::Sync),
    /// Start a new device from a server's snapshot: download it to a new file, open it, and
    /// sync what changed since.
    Clone(serve::Clone),
    /// Manage a hub directory: namespaces and their tokens (served with `serve --hub DIR`).
    #[command(subcommand)]
    Hub(hub::Hub),
    /// Load benchmark of network sync: a local server and many concurrent clients.
    #[command(hide = true)]
    BenchSync(bench_sync::BenchSync),
}

/// Run the command line with `args` (the first is the program name); returns the exit code.
pub fn run<I, S>(args: I) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let out = Out { json: cli.json };
    match execute(cli.command, &out) {
        Ok(()) => 0,
        Err(e) => {
            out.error(&e);
            1
        }
    }
}

/// Open an existing database (every command but `init` refuses to create one).
fn open(db: &Db) -> Result<SyncEngine, Error> {
    SyncEngine::open(&db.db, Options { create: false, ..Options::default() })
}

/// The engine options of a command that opens an existing database, with `--max-drift`.
pub(crate) fn existing(max_drift: Option<std::time::Duration>) -> Options {
    let d = Options::default();
    Options { create: false, max_drift_ms: max_drift.map_or(d.max_drift_ms, duration::millis), ..d }
}

fn parse_value(text: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Null) => Value::Null,
        Ok(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Ok(serde_json::Value::String(s)) => Value::Text(s),
        _ => Value::Text(text.to_owned()),
    }
}

fn execute(command: Command, out: &Out) -> Result<(), Error> {
    match command {
        Command::Init { db, tables, strategy, allow_autoincrement } => {
            let strategy: Strategy = strategy.parse()?;
            let engine = SyncEngine::open(&db.db, Options::default())?;
            for t in &tables {
                engine.enable_sync(t, EnableOptions { strategy, allow_autoincrement })?;
            }
            out.init(&engine.site_id()?, &tables)
        }
        Command::Export { db, peer, output, compress } => {
            let peer: Option<SiteId> = peer.as_deref().map(str::parse).transpose()?;
            let engine = open(&db)?;
            let bar = progress::rows("export", None);
            let stats = engine.write_bundle_with(ExportOptions { peer: peer.as_ref(), compress }, &output, &mut progress::follow(&bar))?;
            bar.finish_and_clear();
            out.export(&output, &stats)
        }
        Command::Import { db, file, max_drift } => {
            let engine = SyncEngine::open(&db.db, existing(max_drift))?;
            let bar = progress::rows("import", std::fs::metadata(&file).ok().map(|m| m.len()));
            let report = engine.import_bundle_file_with(&file, &mut progress::follow(&bar))?;
            bar.finish_and_clear();
            out.import(&report)
        }
        Command::Snapshot { db, output } => {
            let engine = open(&db)?;
            let bar = indicatif::ProgressBar::new_spinner().with_message("writing the snapshot");
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            engine.snapshot(&output)?;
            bar.finish_and_clear();
            out.snapshot(&output)
        }
        Command::Compact { db, retain } => out.compact(&open(&db)?.compact(retain)?),
        Command::Migrate { db, table, add_column, decl_type, default } => {
            let e = open(&db)?;
            e.add_column(&table, &add_column, &decl_type, default.as_deref().map_or(Value::Null, parse_value))?;
            out.migrated(&table, &add_column, &decl_type)
        }
        Command::Status { db } => out.status(&open(&db)?.status()?),
        Command::Conflicts { db } => out.conflicts(&open(&db)?.conflicts()?),
        Command::Resolve { db, id, local, remote, value } => {
            let resolution = match (local, remote, value) {
                (true, _, _) => Resolution::Local,
                (_, true, _) => Resolution::Remote,
                (_, _, Some(v)) => Resolution::Value(parse_value(&v)),
                _ => return Err(Error::new(ErrorKind::InvalidArgument, "say --local, --remote or --value V")),
            };
            open(&db)?.resolve(id, resolution)?;
            out.resolved(id)
        }
        Command::SiteId { db, reset } => {
            let engine = open(&db)?;
            let site = if reset { engine.reset_site_id()? } else { engine.site_id()? };
            out.site(&site)
        }
        Command::Demo => demo::run(out),
        Command::Serve(args) => serve::serve(args, out),
        Command::Sync(args) => serve::sync(args, out),
        Command::Clone(args) => serve::clone(args, out),
        Command::Hub(command) => hub::run(command, out),
        Command::BenchSync(args) => bench_sync::run(args, out),
    }
}
