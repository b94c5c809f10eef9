//! `syncline hub ...`: the admin commands of a hub (namespaces and their tokens), in a
//! directory (`--dir`) or PostgreSQL (`--postgres`), served with `syncline serve --hub DIR` or
//! `--postgres URL`. They may run while servers serve it.

use crate::output::Out;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use syncline::net::{Backend, HubDir};
use syncline::{Error, ErrorKind, Options, SiteId, Strategy};

/// Where a hub keeps its namespaces: a directory, or PostgreSQL.
#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
pub struct At {
    /// A hub directory: one SQLite file per namespace (created if missing).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A PostgreSQL database shared by several server nodes, e.g.
    /// postgresql://syncline@127.0.0.1/syncline or "host=/run/postgresql user=syncline".
    #[cfg(feature = "postgres")]
    #[arg(long)]
    pub postgres: Option<String>,
}

impl At {
    /// Open the backend named, with `options` for its replicas.
    pub fn open(&self, options: Options) -> Result<Backend, Error> {
        #[cfg(feature = "postgres")]
        if let Some(url) = &self.postgres {
            return Ok(syncline::net::PgHub::connect(url, options)?.into());
        }
        match &self.dir {
            Some(dir) => Ok(HubDir::open(dir, options)?.into()),
            None => Err(Error::new(ErrorKind::InvalidArgument, "say --dir DIR or --postgres URL")),
        }
    }
}

#[derive(Subcommand)]
pub enum Hub {
    /// Create a namespace: a new data set with its own schema, replica state and devices.
    Create {
        #[command(flatten)]
        at: At,
        /// The namespace: 1-63 characters of a-z, 0-9, '-' and '_'.
        name: String,
        /// A SQL file creating the namespace's tables.
        #[arg(long)]
        schema: PathBuf,
        /// A table to sync (repeatable).
        #[arg(long = "table", short = 't', required = true)]
        tables: Vec<String>,
        /// Conflict strategy: lww, manual, prefer_local, prefer_remote.
        #[arg(long, default_value = "lww")]
        strategy: String,
    },
    /// Delete a namespace, its tokens and its data.
    Delete {
        #[command(flatten)]
        at: At,
        name: String,
    },
    /// List the namespaces.
    List {
        #[command(flatten)]
        at: At,
    },
    /// Issue a token for a namespace (printed once; the hub keeps its hash).
    Token {
        #[command(flatten)]
        at: At,
        name: String,
        /// Only these devices (site ids, 32 hex digits; repeatable). Default: any device.
        #[arg(long = "device")]
        devices: Vec<String>,
    },
    /// Revoke a token.
    Revoke {
        #[command(flatten)]
        at: At,
        token: String,
    },
    /// Compact a namespace's log on PostgreSQL now: its merged state becomes the snapshot
    /// nodes start from, and the entries it stands for are deleted (nodes also do it every
    /// 10,000 entries). Refused while the namespace has open conflicts.
    #[cfg(feature = "postgres")]
    CompactLog {
        /// The PostgreSQL database of the hub.
        #[arg(long)]
        postgres: String,
        name: String,
    },
}

pub fn run(command: Hub, out: &Out) -> Result<(), Error> {
    let open = |at: &At| at.open(Options::default());
    match command {
        Hub::Create { at, name, schema, tables, strategy } => {
            let strategy: Strategy = strategy.parse()?;
            let sql = std::fs::read_to_string(&schema)
                .map_err(|e| Error::new(ErrorKind::Io, format!("cannot read {}: {e}", schema.display())))?;
            open(&at)?.catalog().create_namespace(&name, &sql, &tables, strategy)?;
            out.emit(json!({ "created": name, "tables": tables }), || format!("created namespace {name} ({})", tables.join(", ")))
        }
        Hub::Delete { at, name } => {
            open(&at)?.catalog().delete_namespace(&name)?;
            out.emit(json!({ "deleted": name }), || format!("deleted namespace {name}"))
        }
        Hub::List { at } => {
            let all = open(&at)?.catalog().namespaces()?;
            let doc: Vec<_> =
                all.iter().map(|n| json!({ "name": n.name, "created_ms": n.created_ms, "credentials": n.credentials })).collect();
            out.emit(json!({ "namespaces": doc }), || {
                all.iter().map(|n| format!("{}\t{} tokens", n.name, n.credentials)).collect::<Vec<_>>().join("\n")
            })
        }
        Hub::Token { at, name, devices } => {
            let devices = devices.iter().map(|d| d.parse::<SiteId>()).collect::<Result<Vec<_>, _>>()?;
            let token = open(&at)?.catalog().issue_token(&name, &devices)?;
            out.emit(json!({ "namespace": name, "token": token }), || token.clone())
        }
        Hub::Revoke { at, token } => {
            if !open(&at)?.catalog().revoke_token(&token)? {
                return Err(Error::new(ErrorKind::NotFound, "no such token"));
            }
            out.emit(json!({ "revoked": true }), || "revoked".into())
        }
        #[cfg(feature = "postgres")]
        Hub::CompactLog { postgres, name } => {
            let seq = syncline::net::PgHub::connect(&postgres, Options::default())?.compact_log(&name)?;
            out.emit(json!({ "namespace": name, "snapshot_seq": seq }), || format!("compacted the log of {name} up to entry {seq}"))
        }
    }
}
