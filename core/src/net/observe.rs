//! What the server tells its operator: Prometheus metrics (`GET /metrics`, behind the admin
//! token), `GET /healthz` and `GET /readyz`, and one structured log line (`tracing`) per
//! request with its request id, also sent back as `x-request-id`.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

/// Namespaces with a label of their own in per-namespace series; the others count as `_other`.
const NAMESPACE_LABELS: usize = 100;

/// The response header carrying a request's id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    syncs: IntCounterVec,
    rows: IntCounterVec,
    bytes: IntCounterVec,
    conflicts: IntCounterVec,
    rejections: IntCounterVec,
    pub live: IntGauge,
    pub open_namespaces: IntGauge,
    labelled: Mutex<HashSet<String>>,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let latency = HistogramVec::new(
            HistogramOpts::new("syncline_request_duration_seconds", "Request latency by endpoint")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["endpoint"],
        )
        .expect("valid metric");
        registry.register(Box::new(latency.clone())).expect("unique metric");
        Metrics {
            requests: counter(&registry, "syncline_requests_total", "Requests by endpoint and status", &["endpoint", "status"]),
            syncs: counter(&registry, "syncline_syncs_total", "Accepted sync round trips by namespace", &["namespace"]),
            rows: counter(&registry, "syncline_rows_total", "Rows received (in) and sent (out) by namespace", &["namespace", "direction"]),
            bytes: counter(
                &registry,
                "syncline_bytes_total",
                "Bundle bytes received (in) and sent (out) by namespace",
                &["namespace", "direction"],
            ),
            conflicts: counter(&registry, "syncline_conflicts_total", "Conflicting cells met by imports, by namespace", &["namespace"]),
            rejections: counter(&registry, "syncline_rejections_total", "Refused requests by error kind", &["kind"]),
            live: gauge(&registry, "syncline_live_connections", "Open /v1/live WebSocket connections"),
            open_namespaces: gauge(&registry, "syncline_open_namespaces", "Namespaces open in this server"),
            latency,
            registry,
            labelled: Mutex::new(HashSet::new()),
        }
    }

    /// The label of namespace `name`: itself for the first [`NAMESPACE_LABELS`] seen, then
    /// `_other`, so the number of series stays bounded.
    fn namespace<'a>(&self, name: &'a str) -> &'a str {
        let mut seen = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(name) || (seen.len() < NAMESPACE_LABELS && seen.insert(name.to_owned())) {
            name
        } else {
            "_other"
        }
    }

    /// One accepted round trip of namespace `ns`.
    pub fn synced(&self, ns: &str, rows_in: u64, bytes_in: usize, rows_out: u64, bytes_out: usize, conflicts: u64) {
        let ns = self.namespace(ns);
        self.syncs.with_label_values(&[ns]).inc();
        self.rows.with_label_values(&[ns, "in"]).inc_by(rows_in);
        self.rows.with_label_values(&[ns, "out"]).inc_by(rows_out);
        self.bytes.with_label_values(&[ns, "in"]).inc_by(bytes_in as u64);
        self.bytes.with_label_values(&[ns, "out"]).inc_by(bytes_out as u64);
        self.conflicts.with_label_values(&[ns]).inc_by(conflicts);
    }

    /// A refused request, by the kind of its error.
    pub fn rejected(&self, kind: &str) {
        self.rejections.with_label_values(&[kind]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The endpoint a matched route serves (`/ns/{ns}/v1/sync` and `/v1/sync` are both `sync`).
fn endpoint(request: &Request) -> String {
    let path = request.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str());
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// Middleware: a request id (the client's `x-request-id` if it is a short token, else a new
/// one), a log line and the request's metrics.
pub(crate) async fn around(metrics: std::sync::Arc<Metrics>, request: Request, next: Next) -> Response<Body> {
    let start = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let (method, endpoint) = (request.method().clone(), endpoint(&request));
    let span = tracing::info_span!("request", request_id = %id, %method, endpoint = %endpoint);
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let status = response.status();
    let seconds = start.elapsed().as_secs_f64();
    metrics.requests.with_label_values(&[&endpoint, status.as_str()]).inc();
    if let Some(kind) = response.extensions().get::<super::http_error::Refused>() {
        metrics.rejected(kind.0);
    }
    metrics.latency.with_label_values(&[&endpoint]).observe(seconds);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms = seconds * 1000.0, "answered");
        } else {
            tracing::info!(status = status.as_u16(), ms = seconds * 1000.0, "answered");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// `/healthz`: the process answers.
pub(crate) async fn healthz() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok\n")
}
