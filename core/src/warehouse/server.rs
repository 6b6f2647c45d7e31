//! Putting the warehouse together: two gRPC listeners, the metrics listener, the order worker and
//! the sweeper — all stopped together.
//!
//! - The **internal listener** (`--listen`) serves native gRPC to the shop's own back office:
//!   the seed contract, administration, the order side, health and reflection, behind
//!   [`InternalAuthLayer`] (no gRPC-Web; the bearer token when one is set). It must never face
//!   the internet.
//! - The **edge listener** (`--edge-listen`, optional) serves the edge alone: origin-signed
//!   gRPC-Web of the edge's methods, behind [`OriginAuthLayer`]; nothing else answers there.
//!
//! Both get the same per-connection concurrency limit with load shedding and the same request
//! timeout; the check of each listener runs inside those limits, before any service.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_web::GrpcWebLayer;

use super::internal::InternalAuthLayer;
use super::metrics::{self, Metrics};
use super::origin::OriginAuthLayer;
use super::service::WarehouseService;
use super::store::Store;
use super::worker::{run_order_worker, run_sweeper, WorkerOptions};
use crate::proto::flashsale::{
    admin_server::AdminServer, queue_server::QueueServer, seckill_server::SeckillServer,
};
use crate::proto::warehouse::warehouse_server::WarehouseServer;
use crate::proto::FILE_DESCRIPTOR_SET;

/// How the server behaves (the flags of `flashgate-warehouse`, already parsed).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The key the edge signs its gRPC-Web calls with; `None` refuses every call on the edge
    /// listener.
    pub origin_key: Option<Vec<u8>>,
    /// The bearer token every call on the internal listener but health must carry, or `None`
    /// for an internal listener open to whoever reaches it (at least
    /// [`super::internal::MIN_TOKEN_LEN`] bytes; the binary checks).
    pub internal_token: Option<Vec<u8>>,
    /// Tolerated clock difference between edge and warehouse.
    pub origin_max_skew_ms: i64,
    /// Requests in flight per connection before new ones are shed (`RESOURCE_EXHAUSTED`).
    pub concurrency_per_connection: usize,
    /// Longest a request may take before it is cancelled.
    pub request_timeout: Duration,
    /// The order worker and sweeper, or `None` to run the API alone.
    pub worker: Option<WorkerOptions>,
    /// Whether `DemoPayOrder` pays orders (a local demo only; never in production).
    pub demo_payments: bool,
    /// The waiting rooms' draw secret (`--queue-secret`), or `None` to refuse waiting rooms.
    pub queue_secret: Option<Vec<u8>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            origin_key: None,
            internal_token: None,
            origin_max_skew_ms: crate::origin_auth::DEFAULT_MAX_SKEW_MS,
            concurrency_per_connection: 256,
            request_timeout: Duration::from_secs(5),
            worker: Some(WorkerOptions::new("warehouse")),
            demo_payments: false,
            queue_secret: None,
        }
    }
}

/// Where the warehouse listens, already bound (so the caller names its own settings in bind
/// errors, and a test can bind port 0 and read the address).
#[derive(Debug)]
pub struct Listeners {
    /// The internal listener: native gRPC for the back office (`--listen`).
    pub internal: TcpListener,
    /// The edge listener: origin-signed gRPC-Web of the edge's methods (`--edge-listen`), or
    /// `None` to serve no edge.
    pub edge: Option<TcpListener>,
    /// Prometheus `GET /metrics` (`--metrics-listen`), or `None`.
    pub metrics: Option<TcpListener>,
}

/// Why [`serve`] stopped before its shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the embedded descriptors.
    #[error("building the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A listener's address could not be read.
    #[error("reading a listener's address: {0}")]
    Listener(#[from] std::io::Error),
    /// A gRPC listener failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The settings both gRPC listeners share: HTTP/1.1 accepted (gRPC-Web on the edge listener, and
/// a readable refusal for a misdirected edge on the internal one), the per-connection limit with
/// shedding, the request timeout.
fn server(options: &ServerOptions) -> Server {
    Server::builder()
        .accept_http1(true)
        .concurrency_limit_per_connection(options.concurrency_per_connection)
        .load_shed(true)
        .timeout(options.request_timeout)
}

/// Serves until `shutdown` resolves, then stops accepting on every listener, lets requests in
/// flight finish and stops the worker and the sweeper. If one gRPC listener fails, the other is
/// stopped too and the failure returned.
pub async fn serve<S: Store>(
    store: S,
    options: ServerOptions,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Metrics::new();
    let service = WarehouseService::new(store.clone(), metrics.clone())
        .with_demo_payments(options.demo_payments)
        .with_queue_secret(options.queue_secret.as_deref());
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<WarehouseServer<WarehouseService<S>>>()
        .await;
    health
        .set_serving::<SeckillServer<WarehouseService<S>>>()
        .await;
    health
        .set_serving::<AdminServer<WarehouseService<S>>>()
        .await;
    health
        .set_serving::<QueueServer<WarehouseService<S>>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(worker) = options.worker.clone() {
        tasks.spawn(run_order_worker(
            store.clone(),
            worker.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ));
        tasks.spawn(run_sweeper(
            store.clone(),
            worker,
            metrics.clone(),
            stop_rx.clone(),
        ));
    }
    if let Some(listener) = listeners.metrics {
        tracing::info!(url = %metrics::describe(listener.local_addr()?), "metrics listening");
        let mut stop = stop_rx.clone();
        let (metrics, store) = (metrics.clone(), store.clone());
        tasks.spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = metrics::serve(listener, metrics, store, stopped).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }

    // Both gRPC listeners stop on `quit`: the shutdown signal, or the other one's failure.
    let (quit_tx, quit_rx) = watch::channel(false);
    let quit = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|q| *q).await;
    };
    let signal = {
        let quit_tx = quit_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = quit_tx.send(true);
        })
    };

    let internal_addr = listeners.internal.local_addr()?;
    if options.internal_token.is_none() && !internal_addr.ip().is_loopback() {
        tracing::warn!(
            addr = %internal_addr,
            "the internal listener is not on loopback and has no --internal-token: whoever \
             reaches it can buy for any user, pay orders and put stock; keep it on a private \
             interface and set a token"
        );
    }
    tracing::info!(
        addr = %internal_addr,
        token = options.internal_token.is_some(),
        "internal listener (native gRPC: back office)"
    );
    let internal = server(&options)
        .layer(InternalAuthLayer::new(
            options.internal_token.as_deref(),
            metrics.clone(),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(WarehouseServer::new(service.clone()))
        .add_service(AdminServer::new(service.clone()))
        .add_service(SeckillServer::new(service.clone()))
        .add_service(QueueServer::new(service.clone()))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listeners.internal).with_nodelay(Some(true)),
            quit(quit_rx.clone()),
        );
    let internal = async {
        let result = internal.await;
        let _ = quit_tx.send(true);
        result
    };

    let edge = match listeners.edge {
        Some(listener) => {
            let origin_key = options.origin_key.clone().unwrap_or_default();
            if origin_key.is_empty() {
                tracing::warn!(
                    "an edge listener but no origin key (--origin-key): every edge call will be \
                     refused"
                );
            }
            tracing::info!(
                addr = %listener.local_addr()?,
                "edge listener (origin-signed gRPC-Web only)"
            );
            // Only the services holding the edge's methods are routed; the layer refuses every
            // other method before routing anyway.
            let served = server(&options)
                .layer(OriginAuthLayer::new(
                    &origin_key,
                    options.origin_max_skew_ms,
                    metrics.clone(),
                ))
                .layer(GrpcWebLayer::new())
                .add_service(AdminServer::new(service.clone()))
                .add_service(QueueServer::new(service.clone()))
                .add_service(SeckillServer::new(service))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    quit(quit_rx),
                );
            Some(served)
        }
        None => {
            tracing::info!("no edge listener (--edge-listen unset): the edge cannot call here");
            None
        }
    };
    let edge = async {
        let Some(edge) = edge else { return Ok(()) };
        let result = edge.await;
        let _ = quit_tx.send(true);
        result
    };

    let (internal, edge) = tokio::join!(internal, edge);
    signal.abort();
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    tracing::info!("warehouse stopped");
    internal?;
    edge?;
    Ok(())
}
