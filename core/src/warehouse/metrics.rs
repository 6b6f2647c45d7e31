//! Prometheus metrics, served on their own port (`--metrics-listen`) so scraping never competes
//! with buyers for the gRPC listeners' concurrency limits.
//!
//! Counters and histograms are updated on the request path; the stock gauges are refreshed from
//! the store at scrape time, so they are never staler than the scrape itself.

use std::net::SocketAddr;
use std::time::Duration;

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

use super::store::Store;
use crate::stock::room::Moved;

/// The warehouse's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `flashgate_requests_total{method, code}`.
    pub requests: IntCounterVec,
    /// `flashgate_request_seconds{method}`.
    pub latency: HistogramVec,
    /// `flashgate_buy_outcomes_total{outcome}`.
    pub buy_outcomes: IntCounterVec,
    /// `flashgate_origin_refusals_total{reason}`: calls the edge listener refused before any
    /// service ran (not gRPC-Web, the origin signature, a method the edge may not call).
    pub origin_refusals: IntCounterVec,
    /// `flashgate_internal_refusals_total{reason}`: calls the internal listener refused before
    /// any service ran (gRPC-Web, a missing or wrong bearer token).
    pub internal_refusals: IntCounterVec,
    /// `flashgate_orders_created_total` by the order worker, and wins it reclaimed.
    pub worker: IntCounterVec,
    /// `flashgate_stock_units{sku, place}`.
    pub stock: IntGaugeVec,
    /// `flashgate_room_total{event}`: the waiting rooms' places `joined`, places `admitted`,
    /// admissions `opened` (off standby), admissions `lapsed` unused, admitted users found to
    /// have `bought`, admissions `claimed`.
    pub room: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("flashgate".into()), None).expect("valid prefix");
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "gRPC requests by method and status code"),
            &["method", "code"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("request_seconds", "gRPC handling time by method").buckets(vec![
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method"],
        )
        .expect("valid metric");
        let buy_outcomes = IntCounterVec::new(
            Opts::new("buy_outcomes_total", "Buy decisions by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let origin_refusals = IntCounterVec::new(
            Opts::new(
                "origin_refusals_total",
                "calls refused on the edge listener (not gRPC-Web, origin signature, method)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let internal_refusals = IntCounterVec::new(
            Opts::new(
                "internal_refusals_total",
                "calls refused on the internal listener (gRPC-Web, bearer token)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let worker = IntCounterVec::new(
            Opts::new(
                "order_worker_total",
                "order worker and sweeper events (created, duplicate, reclaimed, expired, closed, lock_repaired)",
            ),
            &["event"],
        )
        .expect("valid metric");
        let stock = IntGaugeVec::new(
            Opts::new(
                "stock_units",
                "units of a SKU by place (available, pools, locked, sold, total)",
            ),
            &["sku", "place"],
        )
        .expect("valid metric");
        let room = IntCounterVec::new(
            Opts::new(
                "room_total",
                "waiting-room events (joined, admitted, lapsed, bought, claimed)",
            ),
            &["event"],
        )
        .expect("valid metric");
        for c in [
            &room,
            &requests,
            &buy_outcomes,
            &origin_refusals,
            &internal_refusals,
            &worker,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(latency.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(stock.clone()))
            .expect("unique metric");
        Self {
            registry,
            requests,
            latency,
            buy_outcomes,
            origin_refusals,
            internal_refusals,
            worker,
            stock,
            room,
        }
    }

    /// Records what one move of a waiting room's line did.
    pub fn room_moved(&self, moved: &Moved) {
        for (event, n) in [
            ("admitted", moved.admitted),
            ("opened", moved.opened),
            ("lapsed", moved.lapsed),
            ("bought", moved.bought),
        ] {
            if n > 0 {
                self.room.with_label_values(&[event]).inc_by(n);
            }
        }
    }

    /// Records one finished RPC.
    pub fn observe(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, code_name(code)])
            .inc();
        self.latency
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }

    async fn refresh_stock<S: Store>(&self, store: &S) {
        let Ok(skus) = store.skus().await else { return };
        for sku in skus.into_iter().take(1000) {
            if let Ok(Some(l)) = store.ledger(sku).await {
                let sku = sku.to_string();
                for (place, n) in [
                    ("available", l.available),
                    ("pools", l.pools),
                    ("locked", l.locked),
                    ("sold", l.sold),
                    ("total", l.total),
                ] {
                    self.stock.with_label_values(&[sku.as_str(), place]).set(n);
                }
            }
        }
    }
}

/// The canonical upper-snake name of a gRPC code (`NOT_FOUND`), as other gRPC tooling prints it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve<S: Store>(
    listener: TcpListener,
    metrics: Metrics,
    store: S,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    async fn scrape<S: Store>(State((metrics, store)): State<(Metrics, S)>) -> impl IntoResponse {
        metrics.refresh_stock(&store).await;
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            metrics.render(),
        )
    }
    let app = Router::new()
        .route("/metrics", get(scrape::<S>))
        .with_state((metrics, store));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Where the metrics listener ended up (for logs and tests binding port 0).
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}/metrics")
}
