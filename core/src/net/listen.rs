//! The server's accept loop: hyper's HTTP/1.1 connections (with upgrades, for `/v1/live`)
//! under the connection cap and the header and idle timeouts of [`ServerConfig`]. A connection
//! beyond the cap closes the oldest one that has no request in flight (or is closed itself
//! when every one is busy), so idle or trickling clients cannot exhaust file descriptors.
//! Stopping finishes the requests in flight, then returns.
//!
//! [`ServerConfig`]: super::ServerConfig

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tower_service::Service;

/// The connection limits of a server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the accept loop knows of one open connection.
struct Conn {
    /// Requests in flight (until their response body is sent).
    busy: AtomicUsize,
    /// When the connection last had no request in flight and nothing received since.
    quiet_since: Mutex<Instant>,
    /// The first byte received while no request was in flight (a request head under way).
    first_byte: Mutex<Option<Instant>>,
    /// Told to close (the cap was reached and this one was the oldest idle connection).
    evicted: AtomicBool,
    wake: Notify,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            busy: AtomicUsize::new(0),
            quiet_since: Mutex::new(Instant::now()),
            first_byte: Mutex::new(None),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// When this connection must be closed if nothing changes (`None` while a request runs).
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if !self.idle() {
            return None;
        }
        Some(match *lock(&self.first_byte) {
            Some(t) => t + limits.header_timeout,
            None => *lock(&self.quiet_since) + limits.idle_timeout,
        })
    }
}

/// A request in flight on a connection; dropped when its response body is done.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: &Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        *lock(&conn.first_byte) = None;
        conn.wake.notify_one();
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            *lock(&self.0.quiet_since) = Instant::now();
            *lock(&self.0.first_byte) = None;
        }
        self.0.wake.notify_one();
    }
}

/// A response body that keeps its request counted as in flight until it is sent.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, noting the first byte of a request head that arrives on a quiet connection.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before && self.conn.idle() {
            let mut first = lock(&self.conn.first_byte);
            if first.is_none() {
                *first = Some(Instant::now());
                self.conn.wake.notify_one();
            }
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The open connections, oldest first.
struct Registry {
    max: usize,
    open: Mutex<Vec<(u64, Arc<Conn>)>>,
    next: AtomicU64,
}

/// A connection's place in the registry, given back when the connection ends.
struct Slot {
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.registry.open).retain(|(id, _)| *id != self.id);
    }
}

impl Registry {
    /// A slot for a new connection: at the cap, the oldest idle connection is told to close;
    /// `None` (close the new one) when every connection is busy, or while too many evicted
    /// ones are still closing.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = lock(&self.open);
        if open.len() >= self.max {
            if open.len() > self.max + self.max / 4 {
                return None;
            }
            let (_, victim) = open.iter().find(|(_, c)| c.idle() && !c.evicted.load(Ordering::SeqCst))?;
            victim.evicted.store(true, Ordering::SeqCst);
            victim.wake.notify_one();
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new());
        open.push((id, conn.clone()));
        Some(Slot { id, conn, registry: self.clone() })
    }
}

/// Serve one connection until it ends, times out, is evicted, or the server stops.
async fn drive(stream: TcpStream, slot: Slot, router: Router, limits: Limits, mut stopping: watch::Receiver<bool>) {
    let conn = slot.conn.clone();
    let svc_conn = conn.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let busy = Busy::start(&svc_conn);
        let response = router.clone().call(Request::from(request.map(Body::new)));
        async move {
            let response = response.await?;
            Ok::<_, Infallible>(response.map(|inner| Body::new(Tracked { inner, _busy: busy })))
        }
    });
    let io = TokioIo::new(Watched { stream, conn: conn.clone() });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own head timeout runs from when it starts waiting; ours from the first byte.
    builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout + limits.header_timeout);
    let served = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(served);
    let mut closing = *stopping.borrow();
    if closing {
        served.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = conn.deadline(&limits);
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = served.as_mut() => break,
            _ = expired => {
                // Nothing in flight and nothing sent in time: drop the connection.
                if conn.deadline(&limits).is_some_and(|at| at <= Instant::now()) {
                    break;
                }
            }
            _ = conn.wake.notified() => {
                if conn.evicted.load(Ordering::SeqCst) && conn.idle() {
                    break;
                }
            }
            _ = stopping.changed(), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
    drop(slot);
}

/// Accept connections on `listener` until `shutdown` completes; then tell everyone through
/// `stop` and wait for the connections to finish their requests.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    stop: watch::Sender<bool>,
) {
    let registry = Arc::new(Registry { max: limits.max_connections.max(1), open: Mutex::new(Vec::new()), next: AtomicU64::new(0) });
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Some(slot) = registry.admit() else { continue };
                    let _ = stream.set_nodelay(true);
                    let (router, stopping, done) = (router.clone(), stop.subscribe(), done_tx.clone());
                    tokio::spawn(async move {
                        drive(stream, slot, router, limits, stopping).await;
                        drop(done);
                    });
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // (and say so at most once a minute).
                    if !matches!(warned, Some(at) if at.elapsed() < Duration::from_secs(60)) {
                        eprintln!("syncline serve: cannot accept a connection: {e}");
                        warned = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    let _ = stop.send(true);
    drop(done_tx);
    let _ = done_rx.recv().await;
}
