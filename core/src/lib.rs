//! Syncline: an offline-first sync engine for SQLite.
//!
//! Any writer's INSERT/UPDATE/DELETE on an enabled table is captured by SQL triggers and stamped
//! with a hybrid logical clock; replicas exchange self-describing bundles and converge by
//! column-level last-writer-wins, with manual, prefer-local/remote and custom strategies.
//!
//! ```no_run
//! use syncline::{SyncEngine, Options, EnableOptions};
//! let a = SyncEngine::open("a.db", Options::default())?;
//! a.execute_batch("CREATE TABLE IF NOT EXISTS todos(id TEXT PRIMARY KEY, title TEXT)")?;
//! a.enable_sync("todos", EnableOptions::default())?;
//! a.execute("INSERT INTO todos VALUES (?, ?)", &[syncline::uuid7().into(), "milk".into()])?;
//! let bundle = a.generate_bundle(None)?;
//! let b = SyncEngine::open("b.db", Options::default())?;
//! b.execute_batch("CREATE TABLE IF NOT EXISTS todos(id TEXT PRIMARY KEY, title TEXT)")?;
//! b.enable_sync("todos", EnableOptions::default())?;
//! let report = b.import_bundle(&bundle)?;
//! assert_eq!(report.applied, 2);
//! # Ok::<(), syncline::Error>(())
//! ```

mod apply;
pub mod bundle;
mod capture;
mod compact;
mod conflict;
mod digest;
mod engine;
mod error;
mod events;
mod evolve;
mod export;
mod fold;
mod held;
pub mod hlc;
#[cfg(feature = "host-sqlite")]
pub mod host;
#[cfg(feature = "json")]
pub mod json;
mod meta;
#[cfg(feature = "net")]
pub mod net;
mod quarantine;
mod recover;
mod schema;
mod shadow;
mod site;
mod snapshot;
mod spill;
#[cfg(feature = "host-sqlite")]
mod sql;
mod status;
mod strategy;
#[cfg(not(any(feature = "bundled-sqlite", feature = "host-sqlite")))]
mod system_sqlite;
mod value;

pub use apply::ImportReport;
pub use compact::CompactReport;
pub use conflict::Conflict;
pub use engine::{EnableOptions, ExportOptions, Options, Progress, QueryRows, SyncEngine};
pub use error::{Error, ErrorKind, Result};
pub use events::{Change, Event, Observer, Subscription};
pub use evolve::{MigrationPolicy, SchemaChange};
pub use export::BundleStats;
pub use site::{uuid7, SiteId};
pub use status::{PeerStatus, Status, TableStatus};
pub use strategy::{CellVersion, ConflictInput, Resolution, Resolver, Strategy};
pub use value::Value;

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn engine_is_send_and_sync() {
        assert_send_sync::<super::SyncEngine>();
        assert_send_sync::<super::Subscription>();
    }
}
