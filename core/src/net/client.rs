//! The sync client: one sync pass against a server (`GET /v1/info` once, then paged
//! `POST /v1/sync` round trips until both directions are complete), blocking on a
//! current-thread tokio runtime the client owns.

use super::paging::export_page;
use super::{network, APPLIED_HEADER, BUNDLE_CONTENT_TYPE, CURSOR_HEADER, PAGE_ROWS_HEADER, PROTOCOL_VERSION};
use crate::error::{Error, ErrorKind, Result};
use crate::site::SiteId;
use crate::{Progress, SyncEngine};
use reqwest::StatusCode;
use std::sync::Mutex;
use std::time::Duration;

/// How a client syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// Background loop: time between syncs when all is well. Default 30 s.
    pub interval: Duration,
    /// Background loop: the longest wait after repeated failures. Default 60 s.
    pub max_backoff: Duration,
    /// Background loop: keep a WebSocket to `/v1/live` open and sync as soon as another
    /// client's push is announced or a local write happens. Default false.
    pub live: bool,
    /// Most rows per page in each direction (the server may cut pages smaller). Default 5,000.
    pub page_rows: u64,
    /// Longest wait for one HTTP request. Default 60 s.
    pub timeout: Duration,
}

impl SyncOptions {
    /// `InvalidArgument` for a zero interval, backoff, timeout or page size (a background loop
    /// would spin, every request would time out at once).
    pub fn validate(&self) -> Result<()> {
        for (name, zero) in [
            ("interval", self.interval.is_zero()),
            ("max_backoff", self.max_backoff.is_zero()),
            ("timeout", self.timeout.is_zero()),
            ("page_rows", self.page_rows == 0),
        ] {
            if zero {
                return Err(Error::invalid_argument(format!("sync option {name} must be greater than zero")));
            }
        }
        Ok(())
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            interval: Duration::from_secs(30),
            max_backoff: Duration::from_secs(60),
            live: false,
            page_rows: 5_000,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What one sync pass did, counted in changes (row states and cells).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// Changes sent to the server.
    pub pushed: u64,
    /// Of those, changes that altered the server.
    pub server_applied: u64,
    /// Changes received from the server.
    pub pulled: u64,
    /// Of those, changes that altered this replica.
    pub applied: u64,
    /// Cells changed concurrently here and at the server.
    pub conflicts: u64,
    /// Received changes refused by a local constraint.
    pub rejected: u64,
    /// Pulled changes stamped too far ahead of the local clock, waiting in quarantine.
    pub quarantined: u64,
    /// HTTP requests made (`/v1/info` included).
    pub round_trips: u32,
}

/// A client of one sync server; reuse it for repeated syncs (it keeps its connections).
pub struct SyncClient {
    base: String,
    token: Option<String>,
    options: SyncOptions,
    http: reqwest::Client,
    pub(crate) runtime: tokio::runtime::Runtime,
    /// The server's site id, learnt from `/v1/info` (forgotten after a failed pass).
    server: Mutex<Option<SiteId>>,
}

/// The error a refusing server answered, kind taken from its JSON body.
fn refused(status: StatusCode, body: &str) -> Error {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |k: &str| parsed.as_ref().and_then(|j| j.get(k)).and_then(|v| v.as_str()).map(str::to_owned);
    let kind = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Auth,
        _ => field("error").and_then(|c| ErrorKind::from_code(&c)).unwrap_or(ErrorKind::Network),
    };
    let message = field("message").unwrap_or_else(|| body.chars().take(200).collect());
    Error::new(kind, format!("server answered {status}: {message}"))
}

impl SyncClient {
    /// A client for the server at `url` (`http://host:port`), presenting `token` if given.
    pub fn new(url: &str, token: Option<&str>, options: SyncOptions) -> Result<SyncClient> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("sync URL {url:?} must start with http:// or https://")));
        }
        options.validate()?;
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(10).min(options.timeout))
            .build()
            .map_err(network)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the client runtime: {e}")))?;
        Ok(SyncClient { base, token: token.map(str::to_owned), options, http, runtime, server: Mutex::new(None) })
    }

    pub fn options(&self) -> &SyncOptions {
        &self.options
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The WebSocket URL of `/v1/live`.
    pub(crate) fn live_url(&self) -> String {
        format!("{}/v1/live", self.base.replacen("http", "ws", 1))
    }

    /// The site id of the server last synced with.
    pub(crate) fn server(&self) -> Option<SiteId> {
        *self.server.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One sync pass (blocking): push what the server lacks, pull what this replica lacks.
    pub fn sync(&self, engine: &SyncEngine) -> Result<SyncReport> {
        self.sync_with(engine, &mut |_, _| {})
    }

    /// [`sync`](Self::sync), calling `progress(pulled, 0)` after each page with the changes
    /// pulled so far (the total is not known in advance: 0).
    pub fn sync_with(&self, engine: &SyncEngine, progress: Progress<'_>) -> Result<SyncReport> {
        self.runtime.block_on(self.pass(engine, progress))
    }

    /// [`sync_with`](Self::sync_with) for callers already on this client's runtime.
    pub(crate) async fn pass(&self, engine: &SyncEngine, progress: Progress<'_>) -> Result<SyncReport> {
        let result = self.pass_inner(engine, progress).await;
        if result.is_err() {
            *self.server.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        result
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    /// `GET {base}{path}` with the token; a refusal becomes the error its body names.
    pub(crate) async fn get(&self, path: &str) -> Result<reqwest::Response> {
        let response = self.request(self.http.get(format!("{}{path}", self.base))).send().await.map_err(network)?;
        let status = response.status();
        if !status.is_success() {
            return Err(refused(status, &response.text().await.unwrap_or_default()));
        }
        Ok(response)
    }

    pub(crate) async fn server_site(&self, report: &mut SyncReport) -> Result<SiteId> {
        if let Some(site) = self.server() {
            return Ok(site);
        }
        report.round_trips += 1;
        let text = self.get("/v1/info").await?.text().await.map_err(network)?;
        let info: serde_json::Value = serde_json::from_str(&text).map_err(|e| network(format!("malformed /v1/info answer: {e}")))?;
        if info.get("protocol").and_then(|p| p.as_u64()) != Some(u64::from(PROTOCOL_VERSION)) {
            return Err(network(format!(
                "the server speaks another protocol version: {}",
                info.get("protocol").unwrap_or(&serde_json::Value::Null)
            )));
        }
        let site: SiteId = info.get("site_id").and_then(|s| s.as_str()).unwrap_or("").parse()?;
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(site);
        Ok(site)
    }

    async fn pass_inner(&self, engine: &SyncEngine, progress: Progress<'_>) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let server = self.server_site(&mut report).await?;
        let mut rows = self.options.page_rows.max(1);
        // Push pass state: the snapshot every page claims and where the next page starts.
        let (mut snapshot, mut push_after, mut push_done) = (None, None, false);
        let mut pull_cursor: Option<String> = None;
        loop {
            let page = if push_done {
                export_page(engine, Some(&server), None, 0, None)?
            } else {
                export_page(engine, Some(&server), push_after.as_ref(), rows, snapshot.as_ref())?
            };
            let mut request = self
                .http
                .post(format!("{}/v1/sync", self.base))
                .header(reqwest::header::CONTENT_TYPE, BUNDLE_CONTENT_TYPE)
                // While the push is unfinished, ask for no rows: the pull pass starts once the
                // server holds (and claims) everything this replica sent.
                .header(PAGE_ROWS_HEADER, if page.next.is_some() { 0 } else { self.options.page_rows.max(1) })
                .body(page.bytes);
            if let Some(c) = &pull_cursor {
                request = request.header(CURSOR_HEADER, c);
            }
            report.round_trips += 1;
            let response = self.request(request).send().await.map_err(network)?;
            let status = response.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE && !push_done && rows > 1 {
                rows /= 2; // the same page again, cut smaller
                continue;
            }
            if !status.is_success() {
                return Err(refused(status, &response.text().await.unwrap_or_default()));
            }
            let header =
                |name| response.headers().get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(str::to_owned);
            let next_pull = header(CURSOR_HEADER);
            report.server_applied += header(APPLIED_HEADER).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let body = response.bytes().await.map_err(network)?;
            let imported = engine.import_bundle(&body)?;
            report.pushed += page.stats.changes;
            report.pulled += imported.applied + imported.already_known + imported.rejected + imported.quarantined;
            report.applied += imported.applied;
            report.conflicts += imported.conflicts;
            report.rejected += imported.rejected;
            report.quarantined += imported.quarantined;
            progress(report.pulled, 0);
            if !push_done {
                push_done = page.next.is_none();
                push_after = page.next;
                snapshot = Some(page.snapshot);
            }
            if push_done && next_pull.is_some() && (imported.rows == 0 || next_pull == pull_cursor) {
                // A page that promises more must carry rows and move on: otherwise a broken
                // or hostile server could keep this client paging forever.
                return Err(network(format!(
                    "the server's paging makes no progress (a page with {} rows and {} cursor); the pass was stopped",
                    imported.rows,
                    if next_pull == pull_cursor { "the same" } else { "a new" }
                )));
            }
            pull_cursor = next_pull;
            if push_done && pull_cursor.is_none() {
                return Ok(report);
            }
        }
    }
}

impl SyncEngine {
    /// Sync once with the server at `url` (blocking): see [`SyncClient::sync`].
    pub fn sync(&self, url: &str, token: Option<&str>) -> Result<SyncReport> {
        self.sync_with(url, token, &mut |_, _| {})
    }

    /// [`sync`](Self::sync) with progress: see [`SyncClient::sync_with`].
    pub fn sync_with(&self, url: &str, token: Option<&str>, progress: Progress<'_>) -> Result<SyncReport> {
        SyncClient::new(url, token, SyncOptions::default())?.sync_with(self, progress)
    }
}
