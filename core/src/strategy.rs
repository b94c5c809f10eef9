//! Conflict strategies (chosen per table) and the custom [`Resolver`] trait.
//!
//! A conflict is the same cell changed on two replicas since they last synced. What each
//! strategy does is normative: spec/merge-rules.md §Conflicts.

use crate::error::{Error, Result};
use crate::site::SiteId;
use crate::value::Value;
use std::fmt;
use std::str::FromStr;

/// How a table's conflicts are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Column-level last writer wins by (hlc, site id). The default.
    #[default]
    Lww,
    /// Keep the local value and record the conflict for a person to resolve.
    Manual,
    /// Keep the local value (written as a new change so every replica converges).
    PreferLocal,
    /// Take the remote value.
    PreferRemote,
    /// Ask the [`Resolver`] registered for the table.
    Custom,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [Strategy::Lww, Strategy::Manual, Strategy::PreferLocal, Strategy::PreferRemote, Strategy::Custom];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Lww => "lww",
            Strategy::Manual => "manual",
            Strategy::PreferLocal => "prefer_local",
            Strategy::PreferRemote => "prefer_remote",
            Strategy::Custom => "custom",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Strategy> {
        Strategy::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            Error::invalid_argument(format!("unknown strategy {s:?}; expected one of lww, manual, prefer_local, prefer_remote, custom"))
        })
    }
}

/// One side of a conflict: a value and the stamp that wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct CellVersion {
    pub value: Value,
    pub hlc: u64,
    pub site: SiteId,
}

/// What a resolver is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictInput {
    pub table: String,
    pub pk: Vec<Value>,
    pub column: String,
    pub local: CellVersion,
    pub remote: CellVersion,
}

/// A resolver's (or a person's) decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Local,
    Remote,
    Value(Value),
}

/// A conflict resolver written by the application.
///
/// It must be deterministic and symmetric in (local, remote): every replica that sees the
/// conflict calls it with the two sides swapped, and must reach the same value, or replicas
/// diverge. It runs inside the import transaction and must not call back into the engine
/// (doing so returns a `Reentrant` error). An `Err` aborts the import with nothing applied.
pub trait Resolver: Send + Sync {
    fn resolve(&self, conflict: &ConflictInput) -> std::result::Result<Resolution, String>;
}

impl<F> Resolver for F
where
    F: Fn(&ConflictInput) -> std::result::Result<Resolution, String> + Send + Sync,
{
    fn resolve(&self, conflict: &ConflictInput) -> std::result::Result<Resolution, String> {
        self(conflict)
    }
}
