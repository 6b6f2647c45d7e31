//! What an operator relies on: health, reflection, load shedding, request timeouts (on both
//! listeners), and a fast UNAVAILABLE when Redis is gone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_core::grpc_web::{Code as WebCode, Reply};
use flashgate_core::proto::common::SkuIdReq;
use flashgate_core::proto::flashsale::{EventReq, EventState, PutSkuStockReq};
use flashgate_core::proto::warehouse::warehouse_client::WarehouseClient;
use flashgate_core::stock::Ledger;
use flashgate_core::stock::{Sale, SaleState};
use flashgate_core::warehouse::server::ServerOptions;
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{MemoryStore, Sales, Stock, StoreResult};
use flashgate_tests::grpc_web;
use flashgate_tests::{TestRedis, TestWarehouse, TEST_ORIGIN_KEY};
use tokio::sync::Semaphore;
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

/// A memory store whose stock and sale reads wait at a gate the test opens: a request held in the
/// store, so the server has one in flight for as long as the test wants (a sale read is what the
/// edge's `GetEvent` makes, so an edge call can be held too).
#[derive(Clone)]
struct GatedStore {
    inner: MemoryStore,
    gate: Arc<Semaphore>,
    entered: Arc<AtomicUsize>,
}

impl GatedStore {
    fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            gate: Arc::new(Semaphore::new(0)),
            entered: Arc::default(),
        }
    }
}

impl Stock for GatedStore {
    async fn put_stock(&self, sku: i64, total: i64) -> StoreResult<i64> {
        self.inner.put_stock(sku, total).await
    }
    async fn available(&self, skus: &[i64]) -> StoreResult<Vec<Option<i64>>> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.expect("gate open").forget();
        self.inner.available(skus).await
    }
    async fn ledger(&self, sku: i64) -> StoreResult<Option<Ledger>> {
        self.inner.ledger(sku).await
    }
    async fn skus(&self) -> StoreResult<Vec<i64>> {
        self.inner.skus().await
    }
}

impl Sales for GatedStore {
    async fn put_sale(&self, sale: &Sale) -> StoreResult<SaleState> {
        self.inner.put_sale(sale).await
    }
    async fn sale(&self, event_id: i64) -> StoreResult<Option<SaleState>> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.expect("gate open").forget();
        self.inner.sale(event_id).await
    }
    async fn sales_of(&self, sku: i64) -> StoreResult<Vec<i64>> {
        self.inner.sales_of(sku).await
    }
    async fn sales_ending_from(&self, from_ms: i64) -> StoreResult<Vec<i64>> {
        self.inner.sales_ending_from(from_ms).await
    }
}

flashgate_tests::forward_seams!(GatedStore => inner: Orders, OrderQueue, SeedLocks, Audit, Rooms);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_every_service_serving() {
    let w = TestWarehouse::start(MemoryStore::new()).await;
    let mut health = HealthClient::new(w.new_channel().await);
    for service in [
        "warehouse.Warehouse",
        "flashsale.Seckill",
        "flashsale.Admin",
        "",
    ] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_every_service() {
    let w = TestWarehouse::start(MemoryStore::new()).await;
    let mut reflection = ServerReflectionClient::new(w.new_channel().await);
    let ask = |request: MessageRequest| {
        tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        }])
    };
    let mut replies = reflection
        .server_reflection_info(ask(MessageRequest::ListServices(String::new())))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in [
        "flashsale.Admin",
        "flashsale.Seckill",
        "grpc.health.v1.Health",
        "warehouse.Warehouse",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    // grpcurl needs the file behind each symbol, including the seed's oddly cased method.
    let mut replies = reflection
        .server_reflection_info(ask(MessageRequest::FileContainingSymbol(
            "warehouse.Warehouse.SKuStockLock".into(),
        )))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_concurrency_limit_is_shed_with_resource_exhausted() {
    let store = GatedStore::new();
    let (gate, entered) = (store.gate.clone(), store.entered.clone());
    let options = ServerOptions {
        concurrency_per_connection: 1,
        ..ServerOptions::default()
    };
    let w = TestWarehouse::start_with(store, options).await;
    w.admin()
        .put_sku_stock(PutSkuStockReq { sku_id: 1, num: 3 })
        .await
        .unwrap();

    let channel = w.new_channel().await;
    let mut held = WarehouseClient::new(channel.clone());
    let first = tokio::spawn(async move { held.get_sku_stock(SkuIdReq { id: 1 }).await });
    // Wait (bounded) until the first call is inside the store, holding the connection's one slot.
    flashgate_tests::eventually(
        "the first call to hold its slot",
        Duration::from_secs(5),
        || {
            let inside = entered.load(Ordering::SeqCst) == 1;
            async move { inside.then_some(()) }
        },
    )
    .await;
    let second = WarehouseClient::new(channel.clone())
        .get_sku_stock(SkuIdReq { id: 1 })
        .await;
    let shed = second.expect_err("a second call on a full connection must be shed");
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    gate.add_permits(100);
    assert_eq!(
        first.await.unwrap().unwrap().into_inner().num,
        3,
        "the held call still completes"
    );
    // Another connection has its own limit.
    let other = WarehouseClient::new(w.new_channel().await)
        .get_sku_stock(SkuIdReq { id: 1 })
        .await
        .unwrap();
    assert_eq!(other.into_inner().num, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_is_cut_off_on_either_listener() {
    let store = GatedStore::new();
    let options = ServerOptions {
        request_timeout: Duration::from_millis(200),
        origin_key: Some(TEST_ORIGIN_KEY.to_vec()),
        ..ServerOptions::default()
    };
    let w = TestWarehouse::start_with(store, options).await;
    w.admin()
        .put_sku_stock(PutSkuStockReq { sku_id: 1, num: 3 })
        .await
        .unwrap();
    let started = Instant::now();
    let status = w
        .warehouse()
        .get_sku_stock(SkuIdReq { id: 1 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off near the timeout, took {:?}",
        started.elapsed()
    );
    // The edge's sale view, held in the store the same way, on the edge listener (bounded here
    // so a listener without the timeout fails the test instead of hanging it).
    let view = grpc_web::call(
        w.edge_addr,
        "/flashsale.Admin/GetEvent",
        &EventReq { id: 1 },
        Some(now_ms()),
    );
    let reply: Reply<EventState> = tokio::time::timeout(Duration::from_secs(3), view)
        .await
        .expect("the edge listener cuts the call off near the timeout");
    assert_eq!(grpc_web::code(&reply), WebCode::Cancelled, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_answers_unavailable_fast() {
    let redis = TestRedis::spawn(&[]).await;
    let w = TestWarehouse::start(redis.store().await).await;
    w.admin()
        .put_sku_stock(PutSkuStockReq { sku_id: 1, num: 3 })
        .await
        .unwrap();
    drop(redis); // kills this test's redis-server
    let started = Instant::now();
    let status = w
        .warehouse()
        .get_sku_stock(SkuIdReq { id: 1 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        !status.message().contains("redis://"),
        "backend details stay in the log: {status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered in {:?}",
        started.elapsed()
    );
}
