//! The edge's path: gRPC-Web over HTTP/1.1 on the edge listener, accepted only with a valid
//! origin signature and only for the edge's methods. (What the two listeners refuse to each
//! other's callers is in `listeners.rs`.)

use flashgate_core::grpc_web::{Code, Reply};
use flashgate_core::origin_auth;
use flashgate_core::proto::flashsale::{
    BuyOutcome, BuyReply, BuyReq, Event, EventReq, EventState, PutSkuStockReq, SkuLedgerReq,
};
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::MemoryStore;
use flashgate_tests::grpc_web::{self, call, code, post, sign};
use flashgate_tests::TestWarehouse;

const BUY_PATH: &str = "/flashsale.Seckill/Buy";

async fn warehouse_with_sale() -> TestWarehouse {
    let w = TestWarehouse::start(MemoryStore::new()).await;
    w.admin()
        .put_sku_stock(PutSkuStockReq { sku_id: 1, num: 5 })
        .await
        .unwrap();
    let start_ms = now_ms() - 1_000;
    w.admin()
        .put_event(Event {
            id: 1,
            sku_id: 1,
            pool: 5,
            start_ms,
            end_ms: start_ms + 60_000,
            per_user_limit: 1,
            pay_window_ms: 60_000,
            subpools: 0,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    w
}

fn buy(user: &str) -> BuyReq {
    BuyReq {
        event_id: 1,
        user_id: user.into(),
        qty: 1,
        request_id: "r1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_grpc_web_buy_is_served_over_http1() {
    let w = warehouse_with_sale().await;
    let body = flashgate_core::grpc_web::encode_request(&buy("ann"));
    let signature = sign(BUY_PATH, &body, now_ms());
    let response = post(w.edge_addr, BUY_PATH, &body, Some(&signature)).await;
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("application/grpc-web"));
    let Reply::Message(reply) = grpc_web::reply::<BuyReply>(&response) else {
        panic!("a reply expected: {response:?}");
    };
    assert_eq!(
        (reply.outcome(), reply.order_no.as_str(), reply.remaining),
        (BuyOutcome::Queued, "1-1", 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_stale_forged_or_altered_calls_are_unauthenticated() {
    let w = warehouse_with_sale().await;
    let body = flashgate_core::grpc_web::encode_request(&buy("ann"));
    let other = flashgate_core::grpc_web::encode_request(&buy("bob"));
    let forged = origin_auth::sign(
        b"not-the-origin-key-but-long-enough",
        "POST",
        BUY_PATH,
        now_ms(),
        &body,
    );
    let malformed = origin_auth::OriginSignature {
        timestamp: "yesterday".into(),
        signature: "v1=abc".into(),
    };
    for (name, body, signature) in [
        ("unsigned", &body, None),
        (
            "stale",
            &body,
            Some(sign(BUY_PATH, &body, now_ms() - 120_000)),
        ),
        ("forged", &body, Some(forged)),
        (
            "altered body",
            &other,
            Some(sign(BUY_PATH, &body, now_ms())),
        ),
        ("malformed", &body, Some(malformed)),
    ] {
        let response = post(w.edge_addr, BUY_PATH, body, signature.as_ref()).await;
        let reply = grpc_web::reply::<BuyReply>(&response);
        assert_eq!(code(&reply), Code::Unauthenticated, "{name}: {reply:?}");
    }
    // None of them reached the service: the pool is whole.
    let event = w
        .admin()
        .get_event(EventReq { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(event.remaining, 5);
    let metrics = w.metrics().await;
    for reason in ["missing", "stale", "bad_signature", "malformed"] {
        assert!(
            metrics.contains(&format!(
                "flashgate_origin_refusals_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_grpc_on_the_internal_listener_needs_no_origin_signature() {
    let w = warehouse_with_sale().await;
    let reply = w.seckill().buy(buy("ann")).await.unwrap().into_inner();
    assert_eq!(reply.outcome(), BuyOutcome::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_edge_cannot_reach_administration_or_the_seed_contract() {
    let w = warehouse_with_sale().await;
    for path in [
        "/flashsale.Admin/PutSkuStock",
        "/flashsale.Admin/PutEvent",
        "/warehouse.Warehouse/SKuStockLock",
        // Payment is the payment side's word, on the internal listener: never the edge's.
        "/flashsale.Seckill/PayOrder",
    ] {
        let request = PutSkuStockReq {
            sku_id: 1,
            num: 1_000_000,
        };
        let reply: Reply<()> = call(w.edge_addr, path, &request, Some(now_ms())).await;
        assert_eq!(code(&reply), Code::PermissionDenied, "{path}: {reply:?}");
    }
    let ledger = w
        .admin()
        .get_sku_ledger(SkuLedgerReq { sku_id: 1 })
        .await
        .unwrap();
    assert_eq!(ledger.into_inner().total, 5, "stock unchanged");
    // The sale view the edge caches is allowed.
    let path = "/flashsale.Admin/GetEvent";
    let reply: Reply<EventState> =
        call(w.edge_addr, path, &EventReq { id: 1 }, Some(now_ms())).await;
    let Reply::Message(state) = reply else {
        panic!("the sale view expected: {reply:?}");
    };
    assert_eq!(state.remaining, 5);
}
