//! The sync server's handlers (axum on hyper; accept loop in `listen`, running it in `run`),
//! each under `/v1/` and `/ns/{namespace}/v1/`: `GET info`, `POST sync` (import the client's
//! bundle, acknowledge only after it is durable, answer with a page of what the client lacks),
//! `GET live` (WebSocket notices after each push that changed something) and `GET snapshot`
//! (a new device's starting file); admitting a request to one namespace of the store, bearer
//! tokens, device binding (only after an import succeeded), body and op limits (ops counted as
//! decoded), body timeout, request deadline, a bounded number of concurrent imports.

use super::auth::{bearer, Grant, TokenHash, Tokens};
use super::dataset::Dataset;
use super::http_error::{joined, timed_out, too_large, HttpError};
use super::hub::{Backend, SharedStore, Single};
use super::listen::{self, Limits};
use super::observe::{self, Metrics};
use super::paging::{decode_token, encode_token, export_page};
use super::{APPLIED_HEADER, BUNDLE_CONTENT_TYPE, CURSOR_HEADER, PAGE_ROWS_HEADER, PROTOCOL_VERSION, SNAPSHOT_CONTENT_TYPE};
use crate::error::{Error, ErrorKind, Result};
use crate::export::PageCursor;
use crate::site::SiteId;
use crate::{bundle, SyncEngine};
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch, Semaphore};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Admitted tokens of a single-database server (none: no authentication). A hub's
    /// credentials live in its catalog instead ([`HubDir::issue_token`]).
    pub tokens: Tokens,
    /// Largest request body in bytes (larger: 413). Default 32 MiB.
    pub max_body: usize,
    /// Most changes in one request's bundle (more: 413). Default 200,000.
    pub max_ops: u64,
    /// Most rows in one response page. Default 5,000.
    pub page_rows: u64,
    /// Read connections used to build responses. Default 2.
    pub readers: usize,
    /// Requests decoded and imported at the same time; others wait for a slot (within
    /// `request_timeout`, else 503). Bounds the memory that inflating bodies takes. Default 2.
    pub max_concurrent: usize,
    /// Open connections at most. A connection beyond it closes the oldest connection that has
    /// no request in flight, or is closed at once if every one is busy. Upgraded `/v1/live`
    /// connections are capped apart at as many again (beyond: 503). Default 256.
    pub max_connections: usize,
    /// A request head must be complete within this time of its first byte (and, as a
    /// backstop, of `idle_timeout + header_timeout` after the server began waiting). Default 10 s.
    pub header_timeout: Duration,
    /// A request body must be complete within this time of its head (else 408). Default 30 s.
    pub body_timeout: Duration,
    /// A connection that sends nothing and has no request in flight for this long is closed.
    /// Default 60 s.
    pub idle_timeout: Duration,
    /// The credential of the operator's endpoints (`/metrics`); without one they answer 404.
    pub admin_token: Option<String>,
    /// Namespaces kept open at most (a hub); beyond it the least recently used one that no
    /// request or live connection holds is closed. Default 256.
    pub max_open_namespaces: usize,
    /// Deadline for a request from its head to the start of its import (reading the body,
    /// waiting for a slot; else 408 or 503). An import that started is finished and answered:
    /// a 200 acknowledges it. Default 60 s.
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tokens: Tokens::default(),
            max_body: 32 << 20,
            max_ops: 200_000,
            page_rows: 5_000,
            readers: 2,
            max_concurrent: 2,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            max_open_namespaces: 256,
            admin_token: None,
        }
    }
}

/// A request's admission: the namespace it reaches and the token it presented (none on an
/// open server).
struct Admitted {
    dataset: Arc<Dataset>,
    token: Option<(TokenHash, Grant)>,
}

pub(crate) struct Shared {
    pub store: SharedStore,
    /// Namespaces open now, by name.
    open: Mutex<HashMap<String, Arc<Dataset>>>,
    /// Per namespace being opened, the lock its opening holds (other namespaces open meanwhile).
    opening: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    pub config: ServerConfig,
    stopping: watch::Receiver<bool>,
    /// Slots for decoding and importing (`max_concurrent`).
    slots: Arc<Semaphore>,
    /// Slots for upgraded `/v1/live` connections (`max_connections` more).
    live_slots: Arc<Semaphore>,
    /// One snapshot is written at a time.
    snapshot_slot: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Shared {
    /// Admit a request (401 without an admitted token) and find the namespace it reaches: the
    /// one the URL names, else the token's. A namespace the token does not grant is answered
    /// exactly like one that does not exist (404), so a client learns nothing about others.
    fn admit(&self, headers: &HeaderMap, named: Option<&str>) -> Result<Admitted, HttpError> {
        let unauthorized = |e| HttpError(StatusCode::UNAUTHORIZED, e);
        let token = if self.store.is_open() {
            None
        } else {
            let h = bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())).map_err(unauthorized)?;
            let grant = self.store.grant(&h)?.ok_or_else(|| unauthorized(Error::new(ErrorKind::Auth, "unknown token")))?;
            Some((h, grant))
        };
        let granted = token.as_ref().map_or(super::hub::DEFAULT_NAMESPACE, |(_, g)| g.namespace.as_str());
        let name = named.unwrap_or(granted);
        let missing = || HttpError::from(Error::new(ErrorKind::NotFound, format!("no namespace {name} for this token")));
        if name != granted {
            return Err(missing());
        }
        Ok(Admitted { dataset: self.dataset(name)?.ok_or_else(missing)?, token })
    }

    /// Close namespace `name` here (requests in flight keep it until they finish).
    pub(crate) fn forget(&self, name: &str) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// The open namespace `name`, opening it if needed (and closing the least recently used
    /// idle one beyond `max_open_namespaces`).
    pub(crate) fn dataset(&self, name: &str) -> Result<Option<Arc<Dataset>>> {
        if let Some(d) = self.open.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            *d.used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            return Ok(Some(d.clone()));
        }
        // One opening of a namespace at a time: a store may build its replica afresh
        // (PostgreSQL rebuilds a node's cache file), which two openings would collide on.
        let lock = self.opening.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_owned()).or_default().clone();
        let opened = self.open_under(name, &lock);
        let mut opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&lock) == 2 {
            opening.remove(name); // nobody else waits to open it
        }
        opened
    }

    /// [`dataset`](Self::dataset) once the opening `lock` of `name` is taken: open it unless
    /// another request did meanwhile, and keep it among the open namespaces.
    fn open_under(&self, name: &str, lock: &Mutex<()>) -> Result<Option<Arc<Dataset>>> {
        let _opening = lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = self.open.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(Some(d.clone())); // another request opened it meanwhile
        }
        let Some(writer) = self.store.open(name)? else { return Ok(None) };
        let fresh = Arc::new(Dataset::open(name, writer, self.config.readers, self.store.clone())?);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while open.len() >= self.config.max_open_namespaces.max(1) {
            let idle = open
                .values()
                .filter(|d| Arc::strong_count(d) == 1 && d.notices.receiver_count() == 0)
                .min_by_key(|d| *d.used.lock().unwrap_or_else(|p| p.into_inner()))
                .map(|d| d.name.clone());
            match idle {
                Some(n) => open.remove(&n),
                None => break,
            };
        }
        open.insert(name.to_owned(), fresh.clone());
        self.metrics.open_namespaces.set(open.len() as i64);
        Ok(Some(fresh))
    }

    /// The sender of a bundle whose changes, counted as decoded (a row and each of its
    /// cells), stay within `max_ops`.
    fn check_ops(&self, body: &[u8]) -> Result<SiteId, HttpError> {
        let max = self.config.max_ops;
        let mut decoded = bundle::decode(body)?;
        if decoded.header.changes > max {
            return Err(too_large(format!("the bundle holds {} changes, the limit is {max}", decoded.header.changes)));
        }
        let mut ops = 0u64;
        for row in decoded.rows() {
            ops = ops.saturating_add(1 + row?.cells.len() as u64);
            if ops > max {
                return Err(too_large(format!("the bundle holds more than {max} changes, the limit")));
            }
        }
        Ok(decoded.header.sender()?)
    }

    /// Import the client's bundle, then build the page of what it lacks. Nothing is written
    /// before the import succeeded: a new device is bound to its token only after it.
    fn exchange(&self, admitted: &Admitted, body: &[u8], cursor: Option<(u64, PageCursor)>, rows: u64) -> Result<Response, HttpError> {
        let d = &admitted.dataset;
        let site = self.check_ops(body)?;
        let claim = d.devices.check(admitted.token.as_ref(), &site, |s| self.store.device_owner(&d.name, s))?;
        d.catch_up(&self.store)?;
        let report = d.writer.import_bundle(body)?;
        if report.rows > 0 {
            self.store.accepted(&d.name, &site, body)?; // durable for every node before the 200
        }
        claim.bind(|s, t| self.store.bind_device(&d.name, &d.writer, s, t));
        d.saw(&site);
        if report.applied > 0 {
            let _ = d.notices.send(site);
        }
        let (pass, after, snapshot) = d.passes.lock().unwrap_or_else(|p| p.into_inner()).resume(cursor, &site);
        let page = export_page(d.reader(), Some(&site), after.as_ref(), rows, snapshot.as_ref())?;
        self.metrics.synced(&d.name, report.rows, body.len(), page.stats.rows, page.bytes.len(), report.conflicts);
        let mut response = Response::new(Body::from(page.bytes));
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(BUNDLE_CONTENT_TYPE));
        h.insert(APPLIED_HEADER, HeaderValue::from(report.applied));
        let mut passes = d.passes.lock().unwrap_or_else(|p| p.into_inner());
        match page.next {
            Some(next) => {
                passes.keep(pass, site, page.snapshot);
                h.insert(CURSOR_HEADER, HeaderValue::from_str(&encode_token(pass, &next)).expect("hex is a header value"));
            }
            None => {
                passes.open.remove(&pass);
            }
        }
        Ok(response)
    }
}

/// Read a body of at most `limit` bytes; a longer one is drained (up to 4 x `limit`, so the
/// client reads the answer instead of a reset) and refused with 413.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, HttpError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| HttpError(StatusCode::BAD_REQUEST, super::network(format!("cannot read the request: {e}"))))?;
        seen += chunk.len();
        if seen > limit.saturating_mul(4) {
            break;
        }
        if seen <= limit {
            out.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large(format!("the request body exceeds the limit of {limit} bytes")));
    }
    Ok(out)
}

async fn sync(st: Arc<Shared>, named: Option<String>, request: Request) -> Response {
    async fn inner(st: Arc<Shared>, named: Option<String>, request: Request) -> Result<Response, HttpError> {
        let deadline = tokio::time::Instant::now() + st.config.request_timeout;
        let (parts, body) = request.into_parts();
        let admitted = admit(&st, &parts.headers, named).await?;
        let text = |name| parts.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        let cursor = text(CURSOR_HEADER).map(decode_token).transpose()?;
        let asked = text(PAGE_ROWS_HEADER).and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
        let rows = asked.min(st.config.page_rows.max(1));
        let body_deadline = deadline.min(tokio::time::Instant::now() + st.config.body_timeout);
        let body = tokio::time::timeout_at(body_deadline, read_body(body, st.config.max_body))
            .await
            .map_err(|_| timed_out(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time".into()))??;
        // One of `max_concurrent` slots for decoding and importing, within the deadline. The
        // import that starts is finished and answered, whatever the deadline says.
        let slot = tokio::time::timeout_at(deadline, st.slots.clone().acquire_owned())
            .await
            .map_err(|_| timed_out(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; try again later".into()))?
            .map_err(|_| timed_out(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping".into()))?;
        let worker = st.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            worker.exchange(&admitted, &body, cursor, rows)
        })
        .await
        .map_err(joined)?
    }
    inner(st, named, request).await.unwrap_or_else(IntoResponse::into_response)
}

/// [`Shared::admit`] off the async threads (it may read the catalog and open a namespace).
async fn admit(st: &Arc<Shared>, headers: &HeaderMap, named: Option<String>) -> Result<Admitted, HttpError> {
    let (st, headers) = (st.clone(), headers.clone());
    tokio::task::spawn_blocking(move || st.admit(&headers, named.as_deref())).await.map_err(joined)?
}

async fn info(st: Arc<Shared>, named: Option<String>, headers: HeaderMap) -> Response {
    let admitted = match admit(&st, &headers, named).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let body = serde_json::json!({
        "protocol": PROTOCOL_VERSION, "site_id": admitted.dataset.site.to_hex(), "namespace": admitted.dataset.name,
        "max_body": st.config.max_body, "max_ops": st.config.max_ops, "page_rows": st.config.page_rows,
        "snapshot": true,
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn live(st: Arc<Shared>, named: Option<String>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let admitted = match admit(&st, &headers, named).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    // An upgraded connection leaves the accept loop's cap: it holds a live slot instead.
    let Ok(slot) = st.live_slots.clone().try_acquire_owned() else {
        return HttpError(StatusCode::SERVICE_UNAVAILABLE, super::network("too many live connections; try again later")).into_response();
    };
    let notices = admitted.dataset.notices.subscribe();
    let stopping = st.stopping.clone();
    let live = st.metrics.live.clone();
    ws.on_upgrade(move |socket| async move {
        live.inc();
        notify(socket, notices, stopping).await;
        live.dec();
        drop(slot);
    })
}

/// A snapshot written for one download, beside the served database; removed when the
/// answer's body is dropped (sent, or the client went away).
struct SnapshotFile(std::path::PathBuf);

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `GET /v1/snapshot`: a fresh snapshot of the served database, streamed from a file.
async fn snapshot(st: Arc<Shared>, named: Option<String>, headers: HeaderMap) -> Response {
    async fn inner(st: Arc<Shared>, named: Option<String>, headers: HeaderMap) -> Result<Response, HttpError> {
        let admitted = admit(&st, &headers, named).await?;
        let deadline = tokio::time::Instant::now() + st.config.request_timeout;
        let slot = tokio::time::timeout_at(deadline, st.snapshot_slot.clone().acquire_owned())
            .await
            .map_err(|_| timed_out(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; try again later".into()))?
            .map_err(|_| timed_out(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping".into()))?;
        let worker = st.clone();
        let written = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let d = &admitted.dataset;
            d.catch_up(&worker.store)?;
            let file = SnapshotFile(d.writer.path().with_extension(format!("snapshot-{}", uuid::Uuid::new_v4().simple())));
            d.reader().snapshot(&file.0)?;
            let len = std::fs::metadata(&file.0)?.len();
            Ok::<_, Error>((file, len))
        })
        .await
        .map_err(joined)?;
        let (file, len) = written?;
        let reader = tokio::fs::File::open(&file.0).await.map_err(|e| HttpError::from(Error::from(e)))?;
        let chunks = futures_util::stream::unfold(Some((reader, file)), |state| async move {
            use tokio::io::AsyncReadExt;
            let (mut reader, file) = state?;
            let mut buf = vec![0u8; 256 << 10];
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(axum::body::Bytes::from(buf)), Some((reader, file))))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        let mut response = Response::new(Body::from_stream(chunks));
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SNAPSHOT_CONTENT_TYPE));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        Ok(response)
    }
    inner(st, named, headers).await.unwrap_or_else(IntoResponse::into_response)
}

/// Tell one live client about every accepted push that changed something.
async fn notify(mut socket: WebSocket, mut notices: broadcast::Receiver<SiteId>, mut stopping: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            notice = notices.recv() => {
                let site = match notice {
                    Ok(site) => serde_json::Value::String(site.to_hex()),
                    Err(broadcast::error::RecvError::Lagged(_)) => serde_json::Value::Null,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let text = serde_json::json!({ "type": "changed", "site": site }).to_string();
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                if matches!(incoming, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                    break;
                }
            }
            _ = stopping.changed() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
        }
    }
}

/// Serve `engine` on `listener` until `shutdown` completes; requests in flight are finished
/// (and acknowledged) before it returns.
pub async fn serve(
    engine: Arc<SyncEngine>,
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_store(single(engine, &config), listener, config, shutdown).await
}

pub(crate) fn single(engine: Arc<SyncEngine>, config: &ServerConfig) -> SharedStore {
    Arc::new(Single { engine, tokens: config.tokens.clone() })
}

/// Serve the namespaces of `hub` on `listener` until `shutdown` completes (see [`serve`]).
pub async fn serve_hub(
    hub: impl Into<Backend>,
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_store(hub.into().into_store(), listener, config, shutdown).await
}

pub(crate) async fn serve_store(
    store: SharedStore,
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (stop_tx, stopping) = watch::channel(false);
    let limits =
        Limits { max_connections: config.max_connections, header_timeout: config.header_timeout, idle_timeout: config.idle_timeout };
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        live_slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
        snapshot_slot: Arc::new(Semaphore::new(1)),
        store,
        open: Mutex::new(HashMap::new()),
        opening: Mutex::new(HashMap::new()),
        config,
        stopping,
        metrics: Arc::new(Metrics::new()),
    });
    if shared.store.eager() {
        shared.dataset(super::hub::DEFAULT_NAMESPACE)?; // a broken database fails the start
    }
    if let Some(remote) = shared.store.remote_changes() {
        tokio::spawn(relay_remote(shared.clone(), remote));
    }
    let metrics = shared.metrics.clone();
    let app = routes().with_state(shared).layer(axum::middleware::from_fn(move |request: Request, next: axum::middleware::Next| {
        observe::around(metrics.clone(), request, next)
    }));
    listen::run(listener, app, limits, shutdown, stop_tx).await;
    Ok(())
}

/// Pushes accepted by other server nodes: an open namespace catches up at once and tells its
/// live clients (namespaces not open here catch up when next opened).
async fn relay_remote(st: Arc<Shared>, mut remote: broadcast::Receiver<(String, SiteId)>) {
    loop {
        let (name, site) = match remote.recv().await {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let open = st.open.lock().unwrap_or_else(|p| p.into_inner()).get(&name).cloned();
        let Some(d) = open else { continue };
        let store = st.store.clone();
        let caught = tokio::task::spawn_blocking(move || d.catch_up(&store).map(|()| d)).await;
        match caught {
            Ok(Ok(d)) => {
                let _ = d.notices.send(site);
            }
            Ok(Err(e)) => tracing::warn!(namespace = %name, "cannot catch up with another node's push: {}", e.message()),
            Err(e) => tracing::warn!(namespace = %name, "cannot catch up with another node's push: {e}"),
        }
    }
}

/// Every endpoint twice: under `/v1/` (the namespace the token grants) and under
/// `/ns/{namespace}/v1/` (that namespace, if the token grants it).
fn routes() -> Router<Arc<Shared>> {
    type St = State<Arc<Shared>>;
    Router::new()
        .route("/v1/info", get(|State(st): St, h: HeaderMap| info(st, None, h)))
        .route("/ns/{ns}/v1/info", get(|State(st): St, Path(ns): Path<String>, h: HeaderMap| info(st, Some(ns), h)))
        .route("/v1/sync", post(|State(st): St, r: Request| sync(st, None, r)))
        .route("/ns/{ns}/v1/sync", post(|State(st): St, Path(ns): Path<String>, r: Request| sync(st, Some(ns), r)))
        .route("/v1/live", get(|State(st): St, h: HeaderMap, ws: WebSocketUpgrade| live(st, None, h, ws)))
        .route(
            "/ns/{ns}/v1/live",
            get(|State(st): St, Path(ns): Path<String>, h: HeaderMap, ws: WebSocketUpgrade| live(st, Some(ns), h, ws)),
        )
        .route("/v1/snapshot", get(|State(st): St, h: HeaderMap| snapshot(st, None, h)))
        .route("/ns/{ns}/v1/snapshot", get(|State(st): St, Path(ns): Path<String>, h: HeaderMap| snapshot(st, Some(ns), h)))
        .merge(super::admin::routes())
        .route("/metrics", get(metrics))
        .route("/healthz", get(observe::healthz))
        .route("/readyz", get(readyz))
}

/// `/metrics`: the Prometheus text format, for the admin token only (namespace names are
/// other clients' business); 404 when no admin token is configured.
async fn metrics(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = super::admin::check_admin(&st, &headers) {
        return e.into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

/// `/readyz`: 200 while the storage answers and the server is not stopping, else 503.
async fn readyz(State(st): State<Arc<Shared>>) -> Response {
    let store = st.store.clone();
    let usable = tokio::task::spawn_blocking(move || store.check()).await.map(|r| r.is_ok()).unwrap_or(false);
    if usable && !*st.stopping.borrow() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}
