//! The one error taxonomy of Syncline: a stable [`ErrorKind`] plus a human message.
//!
//! Every binding converts [`Error`] in exactly one place, keyed on [`ErrorKind::code`], so the
//! kinds and their codes are part of the public contract (see `spec/errors.md`).

use std::fmt;

/// Stable error kinds. Codes never change once released; new kinds may be added. What each
/// means is [`ErrorKind::description`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    InvalidBundle,
    SchemaMismatch,
    UnknownTable,
    UnknownColumn,
    ClockDrift,
    SiteIdClash,
    Resolver,
    NotFound,
    InvalidArgument,
    Reentrant,
    Closed,
    Io,
    Sqlite,
    Network,
    Auth,
    SqliteLibrary,
    Corrupt,
    NeedsSnapshot,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::InvalidBundle,
        ErrorKind::SchemaMismatch,
        ErrorKind::UnknownTable,
        ErrorKind::UnknownColumn,
        ErrorKind::ClockDrift,
        ErrorKind::SiteIdClash,
        ErrorKind::Resolver,
        ErrorKind::NotFound,
        ErrorKind::InvalidArgument,
        ErrorKind::Reentrant,
        ErrorKind::Closed,
        ErrorKind::Io,
        ErrorKind::Sqlite,
        ErrorKind::Network,
        ErrorKind::Auth,
        ErrorKind::SqliteLibrary,
        ErrorKind::Corrupt,
        ErrorKind::NeedsSnapshot,
    ];

    /// The stable code used by every binding (`err.code` in JS, exception class in Python, ...).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidBundle => "InvalidBundle",
            ErrorKind::SchemaMismatch => "SchemaMismatch",
            ErrorKind::UnknownTable => "UnknownTable",
            ErrorKind::UnknownColumn => "UnknownColumn",
            ErrorKind::ClockDrift => "ClockDrift",
            ErrorKind::SiteIdClash => "SiteIdClash",
            ErrorKind::Resolver => "Resolver",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::Reentrant => "Reentrant",
            ErrorKind::Closed => "Closed",
            ErrorKind::Io => "Io",
            ErrorKind::Sqlite => "Sqlite",
            ErrorKind::Network => "Network",
            ErrorKind::Auth => "Auth",
            ErrorKind::SqliteLibrary => "SqliteLibrary",
            ErrorKind::Corrupt => "Corrupt",
            ErrorKind::NeedsSnapshot => "NeedsSnapshot",
        }
    }
    /// The kind with this code, if any.
    pub fn from_code(code: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// What the kind means, one sentence for documentation (exception docstrings, `spec/errors.md`).
    pub fn description(self) -> &'static str {
        match self {
            ErrorKind::InvalidBundle => "The bundle is corrupt, truncated, has a wrong magic, unknown version or a bad checksum.",
            ErrorKind::SchemaMismatch => "A table does not meet the rules for sync, or a bundle's schema does not match the local one.",
            ErrorKind::UnknownTable => "A table named by a call or a bundle is not enabled for sync here.",
            ErrorKind::UnknownColumn => "A column named by a bundle does not exist in the local table.",
            ErrorKind::ClockDrift => "A remote stamp lies further in the future than the allowed drift; the bundle was refused.",
            ErrorKind::SiteIdClash => "Two databases share one site id (a copied file); call `reset_site_id` on one of them.",
            ErrorKind::Resolver => "A custom conflict resolver failed or none is registered for a `custom` table.",
            ErrorKind::NotFound => "A conflict, peer or row named by a call does not exist.",
            ErrorKind::InvalidArgument => "A call's argument is malformed (bad site id, bad strategy name, ...).",
            ErrorKind::Reentrant => "The engine was re-entered from a callback running inside one of its own calls.",
            ErrorKind::Closed => "The engine has been closed.",
            ErrorKind::Io => "Reading or writing a file failed.",
            ErrorKind::Sqlite => "SQLite reported an error.",
            ErrorKind::Network => "A network transport failed.",
            ErrorKind::Auth => "A token was refused.",
            ErrorKind::SqliteLibrary => "The SQLite library the engine runs on is missing, too old, or not the one the application's driver uses (two SQLite copies in one process).",
            ErrorKind::Corrupt => "The sync state contradicts itself: a captured write stayed unstamped after a stamping pass (another SQLite copy wrote the file under the engine). Nothing was exported or changed; see the message for the way out.",
            ErrorKind::NeedsSnapshot => "The receiver purged deletes (compaction) that the sender has not seen; the sender must sync with a replica that still holds them, or start again from a snapshot.",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A Syncline error: a stable kind and a message that names what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub(crate) fn invalid_bundle(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidBundle, message)
    }
    pub(crate) fn schema(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::SchemaMismatch, message)
    }
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::new(ErrorKind::Sqlite, e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, e.to_string())
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
