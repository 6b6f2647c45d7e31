//! The sink's Prometheus metrics and its HTTP endpoint: `GET /metrics`, and `GET /healthz`
//! answering `ok` (200) or `lagging: …` (503) once the oldest change not yet in PostgreSQL is
//! older than the threshold.
//!
//! What it does not do: measure anything itself (the sink sets the gauges as it reads).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{extract::State, http::StatusCode, routing::get, Router};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;

/// The sink's metrics, in their own registry (prefix `flashgate_sink_`).
pub struct Metrics {
    registry: Registry,
    /// `queue_depth{shard}`: change-log entries not yet committed to PostgreSQL.
    pub depth: IntGaugeVec,
    /// `oldest_change_seconds{shard}`: the age of the oldest of them.
    pub oldest: GaugeVec,
    /// `lag_seconds`: the oldest over every shard (what /healthz judges).
    pub lag: Gauge,
    /// `changes_total`: changes committed (their rate is the drain rate).
    pub changes: IntCounter,
    /// `rows_total`: order rows inserted or moved forward.
    pub rows: IntCounter,
    /// `batch_entries`: entries per applied batch.
    pub batch: Histogram,
    /// `db_errors_total`: batches PostgreSQL did not take (retried).
    pub db_errors: IntCounter,
    /// `poison_total`: entries set aside in `dead_letters`.
    pub poison: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("flashgate_sink".into()), None).expect("valid prefix");
        let depth = IntGaugeVec::new(
            Opts::new(
                "queue_depth",
                "change-log entries not yet in PostgreSQL, per shard",
            ),
            &["shard"],
        )
        .expect("valid metric");
        let oldest = GaugeVec::new(
            Opts::new(
                "oldest_change_seconds",
                "age of the oldest change not yet in PostgreSQL",
            ),
            &["shard"],
        )
        .expect("valid metric");
        let lag = Gauge::new(
            "lag_seconds",
            "the oldest change not yet in PostgreSQL, any shard",
        )
        .expect("valid metric");
        let changes = IntCounter::new("changes_total", "changes committed").expect("valid metric");
        let rows = IntCounter::new("rows_total", "order rows inserted or moved forward")
            .expect("valid metric");
        let batch = Histogram::with_opts(
            HistogramOpts::new("batch_entries", "entries per applied batch").buckets(vec![
                1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0,
            ]),
        )
        .expect("valid metric");
        let db_errors = IntCounter::new("db_errors_total", "batches PostgreSQL did not take")
            .expect("valid metric");
        let poison = IntCounter::new("poison_total", "entries set aside as dead letters")
            .expect("valid metric");
        for c in [
            Box::new(depth.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(oldest.clone()),
            Box::new(lag.clone()),
            Box::new(changes.clone()),
            Box::new(rows.clone()),
            Box::new(batch.clone()),
            Box::new(db_errors.clone()),
            Box::new(poison.clone()),
        ] {
            registry.register(c).expect("registered once");
        }
        Self {
            registry,
            depth,
            oldest,
            lag,
            changes,
            rows,
            batch,
            db_errors,
            poison,
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("utf-8")
    }
}

#[derive(Clone)]
struct Health {
    metrics: Arc<Metrics>,
    threshold: Duration,
}

/// Serves /metrics and /healthz on `listener` until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, threshold: Duration) {
    let app = Router::new()
        .route("/metrics", get(|State(h): State<Health>| async move { h.metrics.render() }))
        .route(
            "/healthz",
            get(|State(h): State<Health>| async move {
                let lag = h.metrics.lag.get();
                if lag > h.threshold.as_secs_f64() {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "lagging: the oldest change not in PostgreSQL is {lag:.1} s old (threshold {} s)\n",
                            h.threshold.as_secs_f64()
                        ),
                    )
                } else {
                    (StatusCode::OK, format!("ok: lag {lag:.1} s\n"))
                }
            }),
        )
        .with_state(Health { metrics, threshold });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the sink's HTTP endpoint stopped");
    }
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
