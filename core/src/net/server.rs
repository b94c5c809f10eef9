//! The sync server (axum handlers on hyper, accept loop in `listen`): `GET /v1/info`,
//! `POST /v1/sync` (import the client's bundle, acknowledge only after its transaction
//! committed, answer with a page of what the client lacks), `GET /v1/live` (WebSocket
//! notices after each push that changed something) and `GET /v1/snapshot` (a new device's
//! starting file). Bearer tokens, device binding (only after
//! an import succeeded), body and op limits (ops counted as decoded), body timeout, request
//! deadline, a bounded number of concurrent imports, error bodies without internals.

use super::auth::{Devices, TokenHash, Tokens};
use super::listen::{self, Limits};
use super::paging::{decode_token, encode_token, export_page};
use super::{APPLIED_HEADER, BUNDLE_CONTENT_TYPE, CURSOR_HEADER, PAGE_ROWS_HEADER, PROTOCOL_VERSION, SNAPSHOT_CONTENT_TYPE};
use crate::error::{Error, ErrorKind, Result};
use crate::export::PageCursor;
use crate::meta::VersionVector;
use crate::site::SiteId;
use crate::{bundle, SyncEngine};
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch, Semaphore};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Admitted tokens (none: no authentication).
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
        }
    }
}

/// How long an unfinished pull pass is remembered, and how many at most.
const PASS_TTL: Duration = Duration::from_secs(600);
const MAX_PASSES: usize = 10_000;

/// Unfinished pull passes: the snapshot each claims, by pass id.
#[derive(Default)]
struct Passes {
    open: HashMap<u64, (SiteId, VersionVector, Instant)>,
}

impl Passes {
    /// The pass a cursor continues, or a new pass (unknown, expired or another device's).
    fn resume(&mut self, token: Option<(u64, PageCursor)>, site: &SiteId) -> (u64, Option<PageCursor>, Option<VersionVector>) {
        if let Some((id, cursor)) = token {
            if let Some((owner, snapshot, _)) = self.open.get(&id) {
                if owner == site {
                    return (id, Some(cursor), Some(snapshot.clone()));
                }
            }
        }
        (uuid::Uuid::new_v4().as_u64_pair().0, None, None)
    }

    fn keep(&mut self, id: u64, site: SiteId, snapshot: VersionVector) {
        let now = Instant::now();
        self.open.retain(|_, (_, _, at)| now.duration_since(*at) < PASS_TTL);
        if self.open.len() >= MAX_PASSES {
            if let Some(oldest) = self.open.iter().min_by_key(|(_, (_, _, at))| *at).map(|(k, _)| *k) {
                self.open.remove(&oldest);
            }
        }
        self.open.insert(id, (site, snapshot, now));
    }
}

struct Shared {
    writer: Arc<SyncEngine>,
    readers: Vec<SyncEngine>,
    next_reader: AtomicUsize,
    config: ServerConfig,
    devices: Devices,
    passes: Mutex<Passes>,
    notices: broadcast::Sender<SiteId>,
    site: SiteId,
    stopping: watch::Receiver<bool>,
    /// Slots for decoding and importing (`max_concurrent`).
    slots: Arc<Semaphore>,
    /// Slots for upgraded `/v1/live` connections (`max_connections` more).
    live_slots: Arc<Semaphore>,
    /// One snapshot is written at a time.
    snapshot_slot: Arc<Semaphore>,
}

/// An error answered to the client: a status and a JSON body `{"error": kind, "message"}`.
struct HttpError(StatusCode, Error);

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
    )
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let kind = self.1.kind();
        // Belt and braces: a message naming metadata tables is never the client's business.
        let message = if for_the_client(kind) && !self.1.message().to_ascii_lowercase().contains("_syncline_") {
            self.1.message().to_owned()
        } else {
            eprintln!("syncline serve: {} answered {}: {}", kind.code(), self.0.as_u16(), self.1.message());
            format!("the server failed ({}); its log has the details", kind.code())
        };
        let body = serde_json::json!({ "error": kind.code(), "message": message });
        (self.0, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
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
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        HttpError(status_of(e.kind()), e)
    }
}

fn too_large(message: String) -> HttpError {
    HttpError(StatusCode::PAYLOAD_TOO_LARGE, Error::new(ErrorKind::InvalidArgument, message))
}

impl Shared {
    fn admit(&self, headers: &HeaderMap) -> Result<Option<TokenHash>, HttpError> {
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        self.config.tokens.admit(auth).map_err(|e| HttpError(StatusCode::UNAUTHORIZED, e))
    }

    fn reader(&self) -> &SyncEngine {
        &self.readers[self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len()]
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
    fn exchange(&self, token: Option<TokenHash>, body: &[u8], cursor: Option<(u64, PageCursor)>, rows: u64) -> Result<Response, HttpError> {
        let site = self.check_ops(body)?;
        let claim = self.devices.check(&self.config.tokens, token.as_ref(), &site)?;
        let report = self.writer.import_bundle(body)?;
        claim.bind(&self.writer);
        if report.applied > 0 {
            let _ = self.notices.send(site);
        }
        let (pass, after, snapshot) = self.passes.lock().unwrap_or_else(|p| p.into_inner()).resume(cursor, &site);
        let page = export_page(self.reader(), Some(&site), after.as_ref(), rows, snapshot.as_ref())?;
        let mut response = Response::new(Body::from(page.bytes));
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(BUNDLE_CONTENT_TYPE));
        h.insert(APPLIED_HEADER, HeaderValue::from(report.applied));
        let mut passes = self.passes.lock().unwrap_or_else(|p| p.into_inner());
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

fn timed_out(status: StatusCode, message: String) -> HttpError {
    HttpError(status, super::network(message))
}

async fn sync(State(st): State<Arc<Shared>>, request: Request) -> Response {
    async fn inner(st: Arc<Shared>, request: Request) -> Result<Response, HttpError> {
        let deadline = tokio::time::Instant::now() + st.config.request_timeout;
        let (parts, body) = request.into_parts();
        let token = st.admit(&parts.headers)?;
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
            worker.exchange(token, &body, cursor, rows)
        })
        .await
        .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, Error::new(ErrorKind::Io, e.to_string())))?
    }
    inner(st, request).await.unwrap_or_else(IntoResponse::into_response)
}

async fn info(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = st.admit(&headers) {
        return e.into_response();
    }
    let body = serde_json::json!({
        "protocol": PROTOCOL_VERSION, "site_id": st.site.to_hex(),
        "max_body": st.config.max_body, "max_ops": st.config.max_ops, "page_rows": st.config.page_rows,
        "snapshot": true,
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn live(State(st): State<Arc<Shared>>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    if let Err(e) = st.admit(&headers) {
        return e.into_response();
    }
    // An upgraded connection leaves the accept loop's cap: it holds a live slot instead.
    let Ok(slot) = st.live_slots.clone().try_acquire_owned() else {
        return HttpError(StatusCode::SERVICE_UNAVAILABLE, super::network("too many live connections; try again later")).into_response();
    };
    let notices = st.notices.subscribe();
    let stopping = st.stopping.clone();
    ws.on_upgrade(move |socket| async move {
        notify(socket, notices, stopping).await;
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
async fn snapshot(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    async fn inner(st: Arc<Shared>, headers: HeaderMap) -> Result<Response, HttpError> {
        st.admit(&headers)?;
        let deadline = tokio::time::Instant::now() + st.config.request_timeout;
        let slot = tokio::time::timeout_at(deadline, st.snapshot_slot.clone().acquire_owned())
            .await
            .map_err(|_| timed_out(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; try again later".into()))?
            .map_err(|_| timed_out(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping".into()))?;
        let worker = st.clone();
        let written = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let served = worker.writer.path();
            let file = SnapshotFile(served.with_extension(format!("snapshot-{}", uuid::Uuid::new_v4().simple())));
            worker.reader().snapshot(&file.0)?;
            let len = std::fs::metadata(&file.0)?.len();
            Ok::<_, Error>((file, len))
        })
        .await
        .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, Error::new(ErrorKind::Io, e.to_string())))?;
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
    inner(st, headers).await.unwrap_or_else(IntoResponse::into_response)
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
    let readers =
        (0..config.readers.max(1)).map(|_| SyncEngine::open(engine.path(), engine.options().clone())).collect::<Result<Vec<_>>>()?;
    let (stop_tx, stopping) = watch::channel(false);
    let limits =
        Limits { max_connections: config.max_connections, header_timeout: config.header_timeout, idle_timeout: config.idle_timeout };
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        live_slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
        snapshot_slot: Arc::new(Semaphore::new(1)),
        devices: Devices::load(&engine)?,
        site: engine.site_id()?,
        writer: engine,
        readers,
        next_reader: AtomicUsize::new(0),
        config,
        passes: Mutex::new(Passes::default()),
        notices: broadcast::channel(256).0,
        stopping,
    });
    let app = Router::new()
        .route("/v1/info", get(info))
        .route("/v1/sync", post(sync))
        .route("/v1/live", get(live))
        .route("/v1/snapshot", get(snapshot))
        .with_state(shared);
    listen::run(listener, app, limits, shutdown, stop_tx).await;
    Ok(())
}

/// Completes on ctrl-c or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Block the calling thread until ctrl-c or (on Unix) SIGTERM.
pub fn wait_for_shutdown_signal() -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start a runtime: {e}")))?
        .block_on(shutdown_signal());
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("syncline-server")
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the server runtime: {e}")))
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| Error::new(ErrorKind::Io, format!("cannot listen on {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serve until ctrl-c or SIGTERM (blocking); `on_listening` gets the bound address first.
pub fn run_server(engine: Arc<SyncEngine>, addr: SocketAddr, config: ServerConfig, on_listening: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = bind(addr)?;
    on_listening(listener.local_addr()?);
    runtime()?.block_on(async move { serve(engine, tokio::net::TcpListener::from_std(listener)?, config, shutdown_signal()).await })
}

/// A server running on its own threads (tests, benchmarks, embedding); stops on
/// [`stop`](ServerHandle::stop) or drop.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl ServerHandle {
    /// Bind `addr` (port 0: any free port) and start serving `engine`.
    pub fn start(engine: Arc<SyncEngine>, addr: SocketAddr, config: ServerConfig) -> Result<ServerHandle> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let rt = runtime()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("syncline-serve".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    serve(engine, listener, config, async move {
                        let _ = stopped.await;
                    })
                    .await
                })
            })
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the server thread: {e}")))?;
        Ok(ServerHandle { addr, stop: Some(stop), thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the URL clients sync with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop gracefully: finish requests in flight, then return.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::new(ErrorKind::Io, "the server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
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
