//! Putting the warehouse together: the gRPC server (native gRPC and gRPC-Web on one port, health,
//! reflection, the origin check, per-connection concurrency limits with load shedding, request
//! timeouts), the metrics listener, the order worker and the sweeper — all stopped together.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_web::GrpcWebLayer;

use super::metrics::{self, Metrics};
use super::origin::OriginAuthLayer;
use super::service::WarehouseService;
use super::store::Store;
use super::worker::{run_order_worker, run_sweeper, WorkerOptions};
use crate::proto::flashsale::{admin_server::AdminServer, seckill_server::SeckillServer};
use crate::proto::warehouse::warehouse_server::WarehouseServer;
use crate::proto::FILE_DESCRIPTOR_SET;

/// How the server behaves (the flags of `flashgate-warehouse`, already parsed).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The key gRPC-Web calls must be signed with; `None` refuses every gRPC-Web call.
    pub origin_key: Option<Vec<u8>>,
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
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            origin_key: None,
            origin_max_skew_ms: crate::origin_auth::DEFAULT_MAX_SKEW_MS,
            concurrency_per_connection: 256,
            request_timeout: Duration::from_secs(5),
            worker: Some(WorkerOptions::new("warehouse")),
            demo_payments: false,
        }
    }
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
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves until `shutdown` resolves, then stops accepting, lets requests in flight finish and
/// stops the worker and the sweeper.
pub async fn serve<S: Store>(
    store: S,
    options: ServerOptions,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Metrics::new();
    let service = WarehouseService::new(store.clone(), metrics.clone())
        .with_demo_payments(options.demo_payments);
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
    if let Some(listener) = metrics_listener {
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

    let origin_key = options.origin_key.clone().unwrap_or_default();
    if origin_key.is_empty() {
        tracing::warn!("no origin key set: every gRPC-Web call will be refused");
    }
    tracing::info!(addr = %listener.local_addr()?, "warehouse listening (gRPC and gRPC-Web)");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = Server::builder()
        .accept_http1(true)
        .concurrency_limit_per_connection(options.concurrency_per_connection)
        .load_shed(true)
        .timeout(options.request_timeout)
        .layer(OriginAuthLayer::new(
            &origin_key,
            options.origin_max_skew_ms,
            metrics.clone(),
        ))
        .layer(GrpcWebLayer::new())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(WarehouseServer::new(service.clone()))
        .add_service(AdminServer::new(service.clone()))
        .add_service(SeckillServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    tracing::info!("warehouse stopped");
    Ok(result?)
}
