//! The background sync loop: [`SyncEngine::start_sync`] syncs every `interval`, backs off
//! exponentially with jitter after failures, and in live mode also syncs as soon as the
//! server announces another client's push over WebSocket or a local write happens.

use super::client::{SyncClient, SyncOptions, SyncReport};
use super::paging::pending_for;
use crate::engine::Stop;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Subscription};
use crate::site::SiteId;
use crate::SyncEngine;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What the background loop has done so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncStatus {
    /// False once the loop was stopped.
    pub running: bool,
    /// Completed sync passes.
    pub syncs: u64,
    /// Failures since the last success.
    pub failures: u32,
    pub last_success: Option<SystemTime>,
    /// The error of the last pass, if it failed.
    pub last_error: Option<Error>,
    pub last_report: Option<SyncReport>,
    /// Local changes the server is not yet known to hold.
    pub pending: u64,
}

struct Shared {
    stop: AtomicBool,
    wake: Notify,
    status: Mutex<SyncStatus>,
    client: SyncClient,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, SyncStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running background sync; stops on [`stop`](SyncHandle::stop) or drop.
pub struct SyncHandle {
    shared: Arc<Shared>,
    engine: Arc<SyncEngine>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The wait after `failures` consecutive failures: 0.5 s doubling up to `max`, times a
/// random factor in [0.5, 1) so clients that failed together do not retry together.
fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = Duration::from_millis(500).saturating_mul(1u32 << failures.saturating_sub(1).min(20)).min(max);
    let jitter = 0.5 + (uuid::Uuid::new_v4().as_u64_pair().0 >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
    exp.mul_f64(jitter)
}

impl SyncEngine {
    /// Sync with the server at `url` in the background until the handle is stopped or dropped.
    pub fn start_sync(self: &Arc<Self>, url: &str, token: Option<&str>, options: SyncOptions) -> Result<SyncHandle> {
        let client = SyncClient::new(url, token, options)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            wake: Notify::new(),
            status: Mutex::new(SyncStatus { running: true, ..Default::default() }),
            client,
        });
        let subscription = if shared.client.options().live {
            let waker = shared.clone();
            Some(self.subscribe(Arc::new(move |e: &Event| {
                if matches!(e, Event::LocalChange(_)) {
                    waker.wake.notify_one();
                }
            }))?)
        } else {
            None
        };
        let own = self.site_id()?;
        let stopper: Arc<dyn Stop> = shared.clone();
        self.stop_on_close(Arc::downgrade(&stopper));
        let (engine, state) = (self.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("syncline-sync".into())
            .spawn(move || run(engine, state, own, subscription))
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the sync thread: {e}")))?;
        Ok(SyncHandle { shared, engine: self.clone(), thread: Mutex::new(Some(thread)) })
    }
}

fn run(engine: Arc<SyncEngine>, state: Arc<Shared>, own: SiteId, subscription: Option<Subscription>) {
    let client = &state.client;
    client.runtime.block_on(async {
        let live = client.options().live.then(|| tokio::spawn(listen(state.clone(), own)));
        let mut failures = 0u32;
        while !state.stop.load(Ordering::SeqCst) {
            let result = client.pass(&engine, &mut |_, _| {}).await;
            let delay = {
                let mut s = state.status();
                match result {
                    Ok(report) => {
                        failures = 0;
                        s.syncs += 1;
                        s.last_success = Some(SystemTime::now());
                        s.last_error = None;
                        s.last_report = Some(report);
                    }
                    Err(e) => {
                        failures += 1;
                        s.last_error = Some(e);
                    }
                }
                s.failures = failures;
                if failures == 0 {
                    client.options().interval
                } else {
                    backoff(failures, client.options().max_backoff)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = state.wake.notified() => {}
            }
        }
        if let Some(task) = live {
            task.abort();
        }
    });
    drop(subscription);
    state.status().running = false;
}

/// Keep a WebSocket to `/v1/live` open (reconnecting with backoff) and wake the loop on
/// every notice of another device's push, and once after each (re)connection.
async fn listen(state: Arc<Shared>, own: SiteId) {
    let own = own.to_hex();
    let mut failures = 0u32;
    loop {
        if let Ok(mut request) = state.client.live_url().into_client_request() {
            if let Some(Ok(value)) = state.client.token().map(|t| format!("Bearer {t}").parse()) {
                request.headers_mut().insert("authorization", value);
            }
            if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(request).await {
                failures = 0;
                state.wake.notify_one();
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message {
                        let notice: Option<serde_json::Value> = serde_json::from_str(text.as_str()).ok();
                        if notice.as_ref().and_then(|n| n.get("site")).and_then(|s| s.as_str()) != Some(own.as_str()) {
                            state.wake.notify_one();
                        }
                    }
                }
            }
        }
        failures += 1;
        tokio::time::sleep(backoff(failures, state.client.options().max_backoff)).await;
    }
}

impl Stop for Shared {
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

impl SyncHandle {
    /// The loop's progress and the number of local changes the server still lacks.
    pub fn status(&self) -> Result<SyncStatus> {
        let pending = pending_for(&self.engine, self.shared.client.server().as_ref())?;
        let mut s = self.shared.status().clone();
        s.pending = pending;
        Ok(s)
    }

    /// Whether the loop still runs: false once it ended, after [`stop`](Self::stop) or after the
    /// engine was closed (when [`status`](Self::status) fails with `Closed`).
    pub fn is_running(&self) -> bool {
        self.shared.status().running
    }

    /// Sync now instead of at the end of the current wait.
    pub fn sync_now(&self) {
        self.shared.wake.notify_one();
    }

    /// Stop the loop (a pass in progress is finished first) and wait for it.
    pub fn stop(&self) {
        Stop::stop(&*self.shared);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
