//! `syncline hub ...`: the admin commands of a hub directory (namespaces and their tokens),
//! served with `syncline serve --hub DIR`. They may run while a server serves the directory.

use crate::output::Out;
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use syncline::net::HubDir;
use syncline::{Error, ErrorKind, Options, SiteId, Strategy};

#[derive(Subcommand)]
pub enum Hub {
    /// Create a namespace: a new data set with its own schema, replica state and devices.
    Create {
        /// The hub directory (created if missing).
        dir: PathBuf,
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
    Delete { dir: PathBuf, name: String },
    /// List the namespaces.
    List { dir: PathBuf },
    /// Issue a token for a namespace (printed once; the hub keeps its hash).
    Token {
        dir: PathBuf,
        name: String,
        /// Only these devices (site ids, 32 hex digits; repeatable). Default: any device.
        #[arg(long = "device")]
        devices: Vec<String>,
    },
    /// Revoke a token.
    Revoke { dir: PathBuf, token: String },
}

pub fn run(command: Hub, out: &Out) -> Result<(), Error> {
    let open = |dir: &PathBuf| HubDir::open(dir, Options::default());
    match command {
        Hub::Create { dir, name, schema, tables, strategy } => {
            let strategy: Strategy = strategy.parse()?;
            let sql = std::fs::read_to_string(&schema)
                .map_err(|e| Error::new(ErrorKind::Io, format!("cannot read {}: {e}", schema.display())))?;
            open(&dir)?.create_namespace(&name, &sql, &tables, strategy)?;
            out.emit(json!({ "created": name, "tables": tables }), || format!("created namespace {name} ({})", tables.join(", ")))
        }
        Hub::Delete { dir, name } => {
            open(&dir)?.delete_namespace(&name)?;
            out.emit(json!({ "deleted": name }), || format!("deleted namespace {name}"))
        }
        Hub::List { dir } => {
            let all = open(&dir)?.namespaces()?;
            let doc: Vec<_> =
                all.iter().map(|n| json!({ "name": n.name, "created_ms": n.created_ms, "credentials": n.credentials })).collect();
            out.emit(json!({ "namespaces": doc }), || {
                all.iter().map(|n| format!("{}\t{} tokens", n.name, n.credentials)).collect::<Vec<_>>().join("\n")
            })
        }
        Hub::Token { dir, name, devices } => {
            let devices = devices.iter().map(|d| d.parse::<SiteId>()).collect::<Result<Vec<_>, _>>()?;
            let token = open(&dir)?.issue_token(&name, &devices)?;
            out.emit(json!({ "namespace": name, "token": token }), || token.clone())
        }
        Hub::Revoke { dir, token } => {
            if !open(&dir)?.revoke_token(&token)? {
                return Err(Error::new(ErrorKind::NotFound, "no such token"));
            }
            out.emit(json!({ "revoked": true }), || "revoked".into())
        }
    }
}
