//! Errors as the server answers them: a status and a JSON body `{"error": kind, "message"}`
//! whose message never carries the server's internals, and the status of each error kind.

use crate::error::{Error, ErrorKind};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The kind of a refused request's error, left on its response for the metrics.
#[derive(Clone, Copy)]
pub(crate) struct Refused(pub &'static str);

/// An error answered to the client: a status and a JSON body `{"error": kind, "message"}`.
pub(crate) struct HttpError(pub StatusCode, pub Error);

/// Whether an error's message is meant for the client. Others (SQLite, files, the engine's
/// own state) may name SQL or metadata tables: the client gets the kind and a generic message,
/// the server's standard error the details.
fn for_the_client(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidBundle
            | ErrorKind::SchemaMismatch
            | ErrorKind::UnknownTable
            | ErrorKind::UnknownColumn
            | ErrorKind::ClockDrift
            | ErrorKind::SiteIdClash
            | ErrorKind::InvalidArgument
            | ErrorKind::Auth
            | ErrorKind::Network
            | ErrorKind::NeedsSnapshot
            | ErrorKind::NotFound
    )
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let kind = self.1.kind();
        // Belt and braces: a message naming metadata tables is never the client's business.
        let message = if for_the_client(kind) && !self.1.message().to_ascii_lowercase().contains("_syncline_") {
            self.1.message().to_owned()
        } else {
            tracing::error!(kind = kind.code(), status = self.0.as_u16(), "{}", self.1.message());
            format!("the server failed ({}); its log has the details", kind.code())
        };
        let body = serde_json::json!({ "error": kind.code(), "message": message });
        let mut response = (self.0, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        response.extensions_mut().insert(Refused(kind.code()));
        response
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidBundle | ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::SchemaMismatch | ErrorKind::UnknownTable | ErrorKind::UnknownColumn | ErrorKind::ClockDrift => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ErrorKind::SiteIdClash | ErrorKind::NeedsSnapshot => StatusCode::CONFLICT,
        ErrorKind::Auth => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        HttpError(status_of(e.kind()), e)
    }
}

pub(crate) fn too_large(message: String) -> HttpError {
    HttpError(StatusCode::PAYLOAD_TOO_LARGE, Error::new(ErrorKind::InvalidArgument, message))
}

pub(crate) fn timed_out(status: StatusCode, message: String) -> HttpError {
    HttpError(status, super::network(message))
}

pub(crate) fn joined(e: tokio::task::JoinError) -> HttpError {
    HttpError(StatusCode::INTERNAL_SERVER_ERROR, Error::new(ErrorKind::Io, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: HttpError) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt.block_on(axum::body::to_bytes(e.into_response().into_body(), 1 << 16)).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn error_bodies_carry_the_kind_and_no_internals() {
        let sql = "no such table: _syncline_shadow_1 in SELECT s.pk0 FROM \"_syncline_shadow_1\" s";
        let b = body(HttpError(StatusCode::INTERNAL_SERVER_ERROR, Error::new(ErrorKind::Sqlite, sql)));
        assert_eq!(b["error"], "Sqlite");
        let message = b["message"].as_str().unwrap();
        assert!(!message.contains("SELECT") && !message.contains("_syncline_"), "{message}");
        let b = body(HttpError(StatusCode::BAD_REQUEST, Error::new(ErrorKind::InvalidBundle, "row names _syncline_x")));
        assert_eq!(b["error"], "InvalidBundle");
        assert!(!b["message"].as_str().unwrap().contains("_syncline_"), "{b}");
        let b = body(HttpError(StatusCode::BAD_REQUEST, Error::new(ErrorKind::InvalidBundle, "checksum mismatch")));
        assert_eq!(b["message"], "checksum mismatch");
    }
}
