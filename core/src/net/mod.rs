//! Network sync over HTTP (cargo feature `net`; normative text: spec/sync-protocol.md).
//!
//! - [`server`]: the sync server as a library function (axum handlers on hyper and tokio):
//!   `POST /v1/sync`, `GET /v1/info`, `GET /v1/live` (WebSocket change notices),
//!   `GET /v1/snapshot` (a new device's starting file), bearer tokens
//!   bound to devices, limits; `listen`: its accept loop, connection cap and timeouts.
//! - [`client`]: [`SyncClient`] and [`SyncEngine::sync`](crate::SyncEngine::sync), one sync
//!   pass of paged round trips; blocking, on a runtime the client owns.
//! - [`background`]: [`SyncEngine::start_sync`](crate::SyncEngine::start_sync), a loop with
//!   exponential backoff and jitter, status and a stop handle, optionally live over WebSocket.
//! - [`HubDir`] (`hub`): namespaces, one SQLite file each, and their credentials, behind the
//!   storage interface the server asks.
//! - `admin`: the admin page and its JSON API (namespaces, devices, conflicts, resolving).
//! - [`PgHub`] (`pg`, feature `postgres`): the hub over PostgreSQL, for several server nodes.
//! - `observe`: `/metrics` (Prometheus), `/healthz`, `/readyz`, request ids and log lines.
//! - `fetch`: [`clone_snapshot`], a new device's download of the server's snapshot.

mod admin;
mod auth;
mod background;
mod client;
mod dataset;
mod fetch;
mod http_error;
mod hub;
mod listen;
mod observe;
mod paging;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
mod pg_mirror;
mod run;
mod server;

pub use auth::Tokens;
pub use background::{SyncHandle, SyncStatus};
pub use client::{SyncClient, SyncOptions, SyncReport};
pub use fetch::clone_snapshot;
pub use hub::{check_namespace, Backend, Catalog, HubDir, NamespaceInfo, DEFAULT_NAMESPACE};
pub use observe::REQUEST_ID_HEADER;
#[cfg(feature = "postgres")]
pub use pg::PgHub;
pub use run::{run_hub, run_server, shutdown_signal, wait_for_shutdown_signal, ServerHandle};
pub use server::{serve, serve_hub, ServerConfig};

/// The protocol version, the first segment of every path.
pub const PROTOCOL_VERSION: u32 = 1;
/// Content type of request and response bodies of `POST /v1/sync`.
pub const BUNDLE_CONTENT_TYPE: &str = "application/vnd.syncline.bundle";
/// Content type of `GET /v1/snapshot` answers: a SQLite file (spec/sync-protocol.md, "Snapshots").
pub const SNAPSHOT_CONTENT_TYPE: &str = "application/vnd.syncline.snapshot+sqlite";
/// Request and response header carrying the opaque pull cursor of a paged pass.
pub const CURSOR_HEADER: &str = "syncline-cursor";
/// Request header: the most rows the client wants in one response page.
pub const PAGE_ROWS_HEADER: &str = "syncline-page-rows";
/// Response header: changes of the request's bundle that altered the server.
pub const APPLIED_HEADER: &str = "syncline-applied";

/// The error for a transport failure.
fn network(message: impl std::fmt::Display) -> crate::Error {
    crate::Error::new(crate::ErrorKind::Network, message.to_string())
}
