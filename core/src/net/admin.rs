//! The hub's admin page (`GET /admin`, static HTML, CSS and JavaScript compiled in) and the
//! JSON API it calls, all behind the admin token: the namespaces, a namespace's devices (last
//! seen, pending changes) and open conflicts, and resolving a conflict (a new change that
//! every replica adopts; live clients are told at once). Without an admin token, 404.

use super::auth::{bearer, hash};
use super::http_error::{joined, HttpError};
use super::server::Shared;
use crate::error::{Error, ErrorKind};
use crate::Resolution;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

const PAGE: &str = include_str!("admin/index.html");
const SCRIPT: &str = include_str!("admin/app.js");
const STYLE: &str = include_str!("admin/style.css");

/// The page may load only its own script and style, and never be framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'none'";

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin", get(|| asset(PAGE, "text/html; charset=utf-8")))
        .route("/admin/app.js", get(|| asset(SCRIPT, "text/javascript; charset=utf-8")))
        .route("/admin/style.css", get(|| asset(STYLE, "text/css; charset=utf-8")))
        .route("/admin/api/namespaces", get(namespaces))
        .route("/admin/api/ns/{ns}", get(namespace))
        .route("/admin/api/ns/{ns}/conflicts/{id}", post(resolve))
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `Ok` for the admin token; 404 when none is configured, 401 otherwise.
pub(crate) fn check_admin(st: &Shared, headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(admin) = &st.config.admin_token else {
        return Err(HttpError(StatusCode::NOT_FOUND, Error::new(ErrorKind::NotFound, "no admin token is configured")));
    };
    match bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())) {
        Ok(h) if h == hash(admin) => Ok(()),
        _ => Err(HttpError(StatusCode::UNAUTHORIZED, Error::new(ErrorKind::Auth, "the admin token is required"))),
    }
}

/// Run `f` off the async threads after the admin check; its JSON or its error answers.
async fn admin_call(st: Arc<Shared>, headers: HeaderMap, f: impl FnOnce(&Shared) -> Result<Json, HttpError> + Send + 'static) -> Response {
    let answer = async {
        check_admin(&st, &headers)?;
        tokio::task::spawn_blocking(move || f(&st)).await.map_err(joined)?
    };
    match answer.await {
        Ok(doc) => ([(header::CONTENT_TYPE, "application/json")], doc.to_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

fn no_namespace(name: &str) -> HttpError {
    HttpError::from(Error::new(ErrorKind::NotFound, format!("no namespace {name}")))
}

async fn namespaces(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    admin_call(st, headers, |st| Ok(json!({ "namespaces": st.store.names()? }))).await
}

/// A namespace: its devices (every peer it knows, with what it still lacks, and when each
/// last synced here) and its open conflicts.
async fn namespace(State(st): State<Arc<Shared>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    admin_call(st, headers, move |st| {
        let d = st.dataset(&name)?.ok_or_else(|| no_namespace(&name))?;
        d.catch_up(&st.store)?;
        let status = d.writer.status()?;
        let seen = d.last_seen()?;
        let internal = st.store.internal_site(&d.name);
        let mut devices: BTreeMap<String, Json> = BTreeMap::new();
        for p in status.peers.iter().filter(|p| Some(p.site_id) != internal) {
            devices.insert(p.site_id.to_hex(), json!({ "site_id": p.site_id.to_hex(), "pending": p.pending, "last_seen_ms": seen.get(&p.site_id) }));
        }
        let conflicts: Vec<Json> = d.writer.conflicts()?.iter().map(crate::json::conflict).collect();
        Ok(json!({ "name": d.name, "site_id": d.site.to_hex(), "devices": devices.into_values().collect::<Vec<_>>(), "conflicts": conflicts }))
    })
    .await
}

/// `POST /admin/api/ns/{ns}/conflicts/{id}` with `{"keep": "local" | "remote"}` (local: the
/// server's value) or `{"value": <JSON scalar>}`.
async fn resolve(State(st): State<Arc<Shared>>, Path((name, id)): Path<(String, i64)>, headers: HeaderMap, body: String) -> Response {
    admin_call(st, headers, move |st| {
        let bad = |m: &str| HttpError::from(Error::invalid_argument(m.to_owned()));
        let doc: Json = serde_json::from_str(&body).map_err(|_| bad("the body must be JSON"))?;
        let resolution = match (doc.get("keep").and_then(Json::as_str), doc.get("value")) {
            (Some("local"), None) => Resolution::Local,
            (Some("remote"), None) => Resolution::Remote,
            (None, Some(v)) => Resolution::Value(
                crate::json::value_from(v)
                    .ok_or_else(|| bad("value must be a JSON scalar, {\"blob\": hex} or {\"real\": \"Infinity\"}"))?,
            ),
            _ => return Err(bad("say {\"keep\": \"local\"}, {\"keep\": \"remote\"} or {\"value\": ...}")),
        };
        let d = st.dataset(&name)?.ok_or_else(|| no_namespace(&name))?;
        d.catch_up(&st.store)?;
        let mut resolution = Some(resolution);
        let made = st.store.originate(&d.name, &d.writer, &mut || d.writer.resolve(id, resolution.take().expect("called once")));
        if made.is_err() {
            st.forget(&d.name); // rebuilt from the store when next used: the conflict is open again
        }
        made?;
        let _ = d.notices.send(d.site); // live clients pull the resolution now
        Ok(json!({ "resolved": id }))
    })
    .await
}
