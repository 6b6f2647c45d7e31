//! The warehouse's two listeners keep their callers apart: the edge listener answers only
//! origin-signed gRPC-Web of the edge's methods, the internal listener only native gRPC (with
//! the bearer token when one is set). Every refusal happens before a service runs, so each test
//! also checks that the ledger did not move and that no service counted a request.

use flashgate_core::grpc_web::{Code as WebCode, Reply};
use flashgate_core::proto::flashsale::{
    admin_client::AdminClient, seckill_client::SeckillClient, BuyOutcome, BuyReply, BuyReq, Event,
    EventReq, EventState, PutSkuStockReq, SkuLedger, SkuLedgerReq,
};
use flashgate_core::proto::warehouse::warehouse_client::WarehouseClient;
use flashgate_core::warehouse::origin::EDGE_METHODS;
use flashgate_core::warehouse::server::ServerOptions;
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::MemoryStore;
use flashgate_tests::grpc_web::{call, code};
use flashgate_tests::{lock_req, unique_prefix, TestWarehouse, TEST_ORIGIN_KEY};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    ServerReflectionRequest,
};

const SKU: i64 = 1;
const TOKEN: &str = "internal-token-for-the-tests-0123456789";

async fn warehouse_with_sale(options: ServerOptions) -> TestWarehouse {
    let w = TestWarehouse::start_with(MemoryStore::new(), options).await;
    let mut admin = AdminClient::new(w.new_channel().await);
    let stock = PutSkuStockReq {
        sku_id: SKU,
        num: 5,
    };
    admin.put_sku_stock(bearer(stock)).await.unwrap();
    admin.put_event(bearer(sale())).await.unwrap();
    w
}

/// Test options: the test origin key, a worker of its own.
fn options() -> ServerOptions {
    let mut options = ServerOptions {
        origin_key: Some(TEST_ORIGIN_KEY.to_vec()),
        ..ServerOptions::default()
    };
    if let Some(worker) = options.worker.as_mut() {
        worker.consumer = unique_prefix();
    }
    options
}

/// [`options`] with the internal listener behind [`TOKEN`].
fn options_with_token() -> ServerOptions {
    ServerOptions {
        internal_token: Some(TOKEN.as_bytes().to_vec()),
        ..options()
    }
}

fn sale() -> Event {
    let start_ms = now_ms() - 1_000;
    Event {
        id: 1,
        sku_id: SKU,
        pool: 5,
        start_ms,
        end_ms: start_ms + 600_000,
        per_user_limit: 1,
        pay_window_ms: 600_000,
        subpools: 0,
        price: 1999,
        currency: "EUR".into(),
        ..Default::default()
    }
}

fn buy(user: &str) -> BuyReq {
    BuyReq {
        event_id: 1,
        user_id: user.into(),
        qty: 1,
        request_id: format!("{user}-1"),
    }
}

/// `message` with `authorization: Bearer <value>`.
fn with_authorization<M>(message: M, value: &str) -> Request<M> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(value).expect("a valid header value"),
    );
    request
}

/// `message` with `authorization: value`, or without the header.
fn ask<M>(message: M, value: Option<&str>) -> Request<M> {
    match value {
        Some(value) => with_authorization(message, value),
        None => Request::new(message),
    }
}

/// `message` carrying the right token (harmless where none is required).
fn bearer<M>(message: M) -> Request<M> {
    with_authorization(message, &format!("Bearer {TOKEN}"))
}

async fn ledger(w: &TestWarehouse) -> SkuLedger {
    AdminClient::new(w.new_channel().await)
        .get_sku_ledger(bearer(SkuLedgerReq { sku_id: SKU }))
        .await
        .expect("the ledger, on the internal listener")
        .into_inner()
}

/// The value of one labelled counter line (`0` when it has never been counted).
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Requests any service counted for `method`, all codes.
fn served(metrics: &str, method: &str) -> u64 {
    let label = format!("method=\"{method}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("flashgate_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Every `flashgate_origin_refusals_total` series, summed.
fn origin_refusals(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("flashgate_origin_refusals_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A reflection request listing the services.
fn list_services() -> tokio_stream::Iter<std::vec::IntoIter<ServerReflectionRequest>> {
    tokio_stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }])
}

/// The part of `google.protobuf.FileDescriptorSet` that names services and methods (decoded
/// here rather than through prost-types: four fields are all the test reads).
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileSet {
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<File>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct File {
        #[prost(string, optional, tag = "2")]
        pub package: Option<String>,
        #[prost(message, repeated, tag = "6")]
        pub service: Vec<Service>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Service {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(message, repeated, tag = "2")]
        pub method: Vec<Method>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Method {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
    }
}

/// The path of every method the warehouse's binary serves on some listener: its own contracts,
/// health and both reflection versions, read from their descriptors (so a method added later is
/// covered without editing this test).
fn every_method() -> Vec<String> {
    let sets = [
        flashgate_core::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut paths = Vec::new();
    for set in sets {
        let set = descriptor::FileSet::decode(set).expect("a descriptor set");
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    let method = method.name.unwrap_or_default();
                    paths.push(format!("/{package}.{service_name}/{method}"));
                }
            }
        }
    }
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_grpc_on_the_edge_listener_is_unauthenticated_and_changes_nothing() {
    let w = warehouse_with_sale(options()).await;
    let before = ledger(&w).await;
    let metrics_before = w.metrics().await;
    let edge = w.edge_channel().await;

    let mut refusals = vec![
        (
            "Buy",
            SeckillClient::new(edge.clone())
                .buy(buy("mallory"))
                .await
                .map(drop),
        ),
        (
            "GetEvent (an edge method, but native)",
            AdminClient::new(edge.clone())
                .get_event(EventReq { id: 1 })
                .await
                .map(drop),
        ),
        (
            "PutSkuStock",
            AdminClient::new(edge.clone())
                .put_sku_stock(PutSkuStockReq {
                    sku_id: SKU,
                    num: 1_000_000,
                })
                .await
                .map(drop),
        ),
        (
            "PutEvent",
            AdminClient::new(edge.clone())
                .put_event(Event { pool: 0, ..sale() })
                .await
                .map(drop),
        ),
        (
            "SKuStockLock",
            WarehouseClient::new(edge.clone())
                .s_ku_stock_lock(lock_req(7, &[(SKU, 1)]))
                .await
                .map(drop),
        ),
        (
            "Health/Check",
            HealthClient::new(edge.clone())
                .check(HealthCheckRequest::default())
                .await
                .map(drop),
        ),
    ];
    let reflection = ServerReflectionClient::new(edge.clone())
        .server_reflection_info(list_services())
        .await;
    refusals.push(("reflection", reflection.map(drop)));
    for (what, result) in refusals {
        let status = result.expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert!(
            status.message().contains("edge listener"),
            "{what}: the refusal says where it was: {status:?}"
        );
    }

    assert_eq!(ledger(&w).await, before, "the ledger did not move");
    let metrics = w.metrics().await;
    for method in ["Buy", "GetEvent", "PutSkuStock", "PutEvent", "SKuStockLock"] {
        assert_eq!(
            served(&metrics, method),
            served(&metrics_before, method),
            "{method} reached a service"
        );
    }
    let not_grpc_web = r#"flashgate_origin_refusals_total{reason="not_grpc_web"}"#;
    assert_eq!(counter(&metrics, not_grpc_web), 7, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_call_of_any_method_the_edge_does_not_make_is_permission_denied() {
    let w = warehouse_with_sale(options()).await;
    let before = ledger(&w).await;
    let others: Vec<String> = every_method()
        .into_iter()
        .filter(|path| !EDGE_METHODS.contains(&path.as_str()))
        .collect();
    for expected in [
        "/flashsale.Admin/PutSkuStock",
        "/flashsale.Admin/PutEvent",
        "/flashsale.Admin/GetSkuLedger",
        "/warehouse.Warehouse/SKuStockLock",
        "/warehouse.Warehouse/SkuStockUnlock",
        "/grpc.health.v1.Health/Check",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ] {
        assert!(
            others.iter().any(|p| p == expected),
            "{expected} is not among {others:?}"
        );
    }
    // A message the administration methods would act on, were they reached.
    let request = PutSkuStockReq {
        sku_id: SKU,
        num: 1_000_000,
    };
    for path in &others {
        let reply: Reply<()> = call(w.edge_addr, path, &request, Some(now_ms())).await;
        assert_eq!(code(&reply), WebCode::PermissionDenied, "{path}: {reply:?}");
    }
    assert_eq!(ledger(&w).await, before, "the ledger did not move");
    let metrics = w.metrics().await;
    assert_eq!(served(&metrics, "PutSkuStock"), 1, "only the test's own");
    let method = r#"flashgate_origin_refusals_total{reason="method"}"#;
    assert_eq!(counter(&metrics, method), others.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_or_stale_grpc_web_is_unauthenticated_whatever_the_method() {
    let w = warehouse_with_sale(options()).await;
    let before = ledger(&w).await;
    let stale = Some(now_ms() - 120_000);
    for (path, signed_at) in [
        ("/flashsale.Seckill/Buy", None),
        ("/flashsale.Seckill/Buy", stale),
        ("/flashsale.Admin/PutSkuStock", None),
        ("/flashsale.Admin/PutSkuStock", stale),
    ] {
        let reply: Reply<()> = call(w.edge_addr, path, &buy("mallory"), signed_at).await;
        assert_eq!(
            code(&reply),
            WebCode::Unauthenticated,
            "{path} signed at {signed_at:?}: {reply:?}"
        );
    }
    assert_eq!(ledger(&w).await, before, "the ledger did not move");
    let metrics = w.metrics().await;
    assert_eq!(served(&metrics, "Buy"), 0);
    assert_eq!(
        counter(
            &metrics,
            r#"flashgate_origin_refusals_total{reason="missing"}"#
        ),
        2
    );
    assert_eq!(
        counter(
            &metrics,
            r#"flashgate_origin_refusals_total{reason="stale"}"#
        ),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_edge_method_signed_reaches_its_service() {
    // The internal token guards the internal listener only: the edge sends none.
    let w = warehouse_with_sale(options_with_token()).await;
    let reply: Reply<BuyReply> = call(
        w.edge_addr,
        "/flashsale.Seckill/Buy",
        &buy("ann"),
        Some(now_ms()),
    )
    .await;
    let Reply::Message(bought) = reply else {
        panic!("a buy expected: {reply:?}");
    };
    assert_eq!(bought.outcome(), BuyOutcome::Queued);
    let reply: Reply<EventState> = call(
        w.edge_addr,
        "/flashsale.Admin/GetEvent",
        &EventReq { id: 1 },
        Some(now_ms()),
    )
    .await;
    let Reply::Message(state) = reply else {
        panic!("the sale view expected: {reply:?}");
    };
    assert_eq!(state.remaining, 4, "the buy took one unit");
    let after = ledger(&w).await;
    assert_eq!((after.pools, after.locked), (4, 1), "{after:?}");

    // The rest of the edge's methods, with an empty request: each is answered by its service
    // (whatever it thinks of the request), none by the listener.
    let refused_before = origin_refusals(&w.metrics().await);
    for path in EDGE_METHODS {
        let reply: Reply<()> = call(w.edge_addr, path, &(), Some(now_ms())).await;
        assert_ne!(code(&reply), WebCode::Unauthenticated, "{path}: {reply:?}");
    }
    assert_eq!(
        origin_refusals(&w.metrics().await),
        refused_before,
        "the edge listener refused an edge method"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_on_the_internal_listener_is_refused_pointing_at_the_edge_listener() {
    let w = warehouse_with_sale(options()).await;
    let before = ledger(&w).await;
    for signed_at in [None, Some(now_ms())] {
        let reply: Reply<BuyReply> =
            call(w.addr, "/flashsale.Seckill/Buy", &buy("mallory"), signed_at).await;
        let Reply::Status(status) = reply else {
            panic!("refused expected, signed at {signed_at:?}: {reply:?}");
        };
        assert_eq!(status.code, WebCode::PermissionDenied, "{status:?}");
        assert!(
            status.message.contains("--edge-listen"),
            "the refusal says where the edge belongs: {status:?}"
        );
    }
    assert_eq!(ledger(&w).await, before, "the ledger did not move");
    let metrics = w.metrics().await;
    assert_eq!(served(&metrics, "Buy"), 0);
    assert_eq!(
        counter(
            &metrics,
            r#"flashgate_internal_refusals_total{reason="grpc_web"}"#
        ),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_token_is_required_everywhere_but_health() {
    let w = warehouse_with_sale(options_with_token()).await;
    let before = ledger(&w).await;
    let channel: Channel = w.new_channel().await;
    let mut seckill = SeckillClient::new(channel.clone());
    let mut admin = AdminClient::new(channel.clone());

    let right = format!("Bearer {TOKEN}");
    let wrong_byte = format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]);
    let too_short = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let too_long = format!("Bearer {TOKEN}0");
    let not_bearer = format!("Basic {TOKEN}");
    for (what, value) in [
        (
            "another token of the same length",
            Some(wrong_byte.as_str()),
        ),
        ("a token one byte short", Some(too_short.as_str())),
        ("a token one byte long", Some(too_long.as_str())),
        ("another scheme", Some(not_bearer.as_str())),
        ("no token", None),
    ] {
        let bought = seckill
            .buy(ask(buy("mallory"), value))
            .await
            .expect_err(what);
        assert_eq!(bought.code(), Code::Unauthenticated, "Buy, {what}");
        let stock = PutSkuStockReq {
            sku_id: SKU,
            num: 1_000_000,
        };
        let put = admin
            .put_sku_stock(ask(stock, value))
            .await
            .expect_err(what);
        assert_eq!(put.code(), Code::Unauthenticated, "PutSkuStock, {what}");
    }
    assert_eq!(ledger(&w).await, before, "the ledger did not move");

    // Reflection needs the token too; health does not.
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let refused = reflection
        .server_reflection_info(list_services())
        .await
        .expect_err("reflection without a token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    reflection
        .server_reflection_info(bearer(list_services()))
        .await
        .expect("reflection with the token");
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    // The right token: served.
    let bought = seckill
        .buy(with_authorization(buy("ann"), &right))
        .await
        .expect("Buy with the token")
        .into_inner();
    assert_eq!(bought.outcome(), BuyOutcome::Queued);
    let metrics = w.metrics().await;
    let series = |reason| format!("flashgate_internal_refusals_total{{reason=\"{reason}\"}}");
    // Per case two calls: three wrong tokens; no token, another scheme; one reflection.
    assert_eq!(counter(&metrics, &series("bad_token")), 6, "{metrics}");
    assert_eq!(counter(&metrics, &series("missing_token")), 5, "{metrics}");
    assert_eq!(served(&metrics, "Buy"), 1, "only the buy with the token");
}
