//! Running a server: on the calling thread until ctrl-c or SIGTERM ([`run_server`],
//! [`run_hub`]), or on threads of its own ([`ServerHandle`], for tests, benchmarks and
//! embedding).

use super::hub::{Backend, SharedStore};
use super::server::{serve_store, single, ServerConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::SyncEngine;
use std::net::SocketAddr;
use std::sync::Arc;

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
    run_store(single(engine, &config), addr, config, on_listening)
}

/// [`run_server`] for the namespaces of `hub`.
pub fn run_hub(hub: impl Into<Backend>, addr: SocketAddr, config: ServerConfig, on_listening: impl FnOnce(SocketAddr)) -> Result<()> {
    run_store(hub.into().into_store(), addr, config, on_listening)
}

fn run_store(store: SharedStore, addr: SocketAddr, config: ServerConfig, on_listening: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = bind(addr)?;
    on_listening(listener.local_addr()?);
    runtime()?.block_on(async move { serve_store(store, tokio::net::TcpListener::from_std(listener)?, config, shutdown_signal()).await })
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
        let store = single(engine, &config);
        Self::start_store(store, addr, config)
    }

    /// Bind `addr` and start serving the namespaces of `hub`.
    pub fn start_hub(hub: impl Into<Backend>, addr: SocketAddr, config: ServerConfig) -> Result<ServerHandle> {
        Self::start_store(hub.into().into_store(), addr, config)
    }

    fn start_store(store: SharedStore, addr: SocketAddr, config: ServerConfig) -> Result<ServerHandle> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let rt = runtime()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("syncline-serve".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    serve_store(store, listener, config, async move {
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
