//! The one error taxonomy of Syncline: a stable [`ErrorKind`] plus a human message.
//!
//! Every binding converts [`Error`] in exactly one place, keyed on [`ErrorKind::code`], so the
//! kinds and their codes are part of the public contract (see `spec/errors.md`).

use std::fmt;

/// Stable error kinds. Codes never change once released; new kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bundle is corrupt, truncated, has a wrong magic, unknown version or a bad checksum.
    InvalidBundle,
    /// A table does not meet the rules for sync, or a bundle's schema does not match the local one.
    SchemaMismatch,
    /// A table named by a call or a bundle is not enabled for sync here.
    UnknownTable,
    /// A column named by a bundle does not exist in the local table.
    UnknownColumn,
    /// A remote stamp lies further in the future than the allowed drift; the bundle was refused.
    ClockDrift,
    /// Two databases share one site id (a copied file); call `reset_site_id` on one of them.
    SiteIdClash,
    /// A custom conflict resolver failed or none is registered for a `custom` table.
    Resolver,
    /// A conflict, peer or row named by a call does not exist.
    NotFound,
    /// A call's argument is malformed (bad site id, bad strategy name, ...).
    InvalidArgument,
    /// The engine was re-entered from a callback running inside one of its own calls.
    Reentrant,
    /// The engine has been closed.
    Closed,
    /// Reading or writing a file failed.
    Io,
    /// SQLite reported an error.
    Sqlite,
    /// A network transport failed.
    Network,
    /// A token was refused.
    Auth,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 15] = [
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
