//! The edge's path: gRPC-Web over HTTP/1.1 on the same port as native gRPC, accepted only with a
//! valid origin signature.

use flashgate_core::origin_auth::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use flashgate_core::proto::flashsale::{BuyOutcome, BuyReply, BuyReq, Event, PutSkuStockReq};
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::MemoryStore;
use flashgate_tests::{http1_request, HttpResponse, TestWarehouse, TEST_ORIGIN_KEY};
use prost::Message;

const BUY_PATH: &str = "/flashsale.Seckill/Buy";

fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// Splits a gRPC-Web response body into its data messages and its trailer text.
fn unframe(body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut data, mut trailers, mut rest) = (Vec::new(), String::new(), body);
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = rest[5..5 + len].to_vec();
        if rest[0] & 0x80 != 0 {
            trailers.push_str(&String::from_utf8(payload).unwrap());
        } else {
            data.push(payload);
        }
        rest = &rest[5 + len..];
    }
    (data, trailers)
}

/// The gRPC status of a response: from the trailer frame, or from the headers of a
/// trailers-only response.
fn grpc_status(response: &HttpResponse) -> String {
    let (_, trailers) = unframe(&response.body);
    trailers
        .lines()
        .find_map(|l| l.strip_prefix("grpc-status:").map(|s| s.trim().to_owned()))
        .or_else(|| response.header("grpc-status").map(str::to_owned))
        .expect("a grpc-status")
}

async fn post(w: &TestWarehouse, body: &[u8], signature: Option<(String, String)>) -> HttpResponse {
    post_to(w, BUY_PATH, body, signature).await
}

async fn post_to(
    w: &TestWarehouse,
    path: &str,
    body: &[u8],
    signature: Option<(String, String)>,
) -> HttpResponse {
    let mut headers = vec![
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
    ];
    let signature = signature.unwrap_or_default();
    if !signature.0.is_empty() {
        headers.push((TIMESTAMP_HEADER, &signature.0));
        headers.push((SIGNATURE_HEADER, &signature.1));
    }
    http1_request(w.addr, "POST", path, &headers, body).await
}

fn signed(body: &[u8], at_ms: i64) -> Option<(String, String)> {
    let s = origin_auth::sign(TEST_ORIGIN_KEY, "POST", BUY_PATH, at_ms, body);
    Some((s.timestamp, s.signature))
}

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
            ..Default::default()
        })
        .await
        .unwrap();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_grpc_web_buy_is_served_over_http1() {
    let w = warehouse_with_sale().await;
    let body = frame(&BuyReq {
        event_id: 1,
        user_id: "ann".into(),
        qty: 1,
        request_id: "r1".into(),
    });
    let response = post(&w, &body, signed(&body, now_ms())).await;
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("application/grpc-web"));
    assert_eq!(grpc_status(&response), "0");
    let (data, _) = unframe(&response.body);
    let reply = BuyReply::decode(&data[0][..]).unwrap();
    assert_eq!(
        (reply.outcome(), reply.order_no.as_str(), reply.remaining),
        (BuyOutcome::Queued, "1-1", 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_stale_forged_or_altered_calls_are_unauthenticated() {
    let w = warehouse_with_sale().await;
    let body = frame(&BuyReq {
        event_id: 1,
        user_id: "ann".into(),
        qty: 1,
        request_id: "r1".into(),
    });
    let other = frame(&BuyReq {
        event_id: 1,
        user_id: "bob".into(),
        qty: 1,
        request_id: "r1".into(),
    });
    let forged = {
        let s = origin_auth::sign(
            b"not-the-origin-key-but-long-enough",
            "POST",
            BUY_PATH,
            now_ms(),
            &body,
        );
        Some((s.timestamp, s.signature))
    };
    for (name, body, signature) in [
        ("unsigned", &body, None),
        ("stale", &body, signed(&body, now_ms() - 120_000)),
        ("forged", &body, forged),
        ("altered body", &other, signed(&body, now_ms())),
        (
            "malformed",
            &body,
            Some(("yesterday".to_owned(), "v1=abc".to_owned())),
        ),
    ] {
        let response = post(&w, body, signature).await;
        assert_eq!(
            grpc_status(&response),
            "16",
            "{name}: UNAUTHENTICATED expected"
        );
    }
    // None of them reached the service: the pool is whole.
    let event = w
        .admin()
        .get_event(flashgate_core::proto::flashsale::EventReq { id: 1 })
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
async fn native_grpc_needs_no_origin_signature() {
    let w = warehouse_with_sale().await;
    let reply = w
        .seckill()
        .buy(BuyReq {
            event_id: 1,
            user_id: "ann".into(),
            qty: 1,
            request_id: "r1".into(),
        })
        .await
        .unwrap()
        .into_inner();
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
        let body = frame(&PutSkuStockReq {
            sku_id: 1,
            num: 1_000_000,
        });
        let s = origin_auth::sign(TEST_ORIGIN_KEY, "POST", path, now_ms(), &body);
        let response = post_to(&w, path, &body, Some((s.timestamp, s.signature))).await;
        assert_eq!(
            grpc_status(&response),
            "7",
            "{path}: PERMISSION_DENIED expected"
        );
    }
    let ledger = w
        .admin()
        .get_sku_ledger(flashgate_core::proto::flashsale::SkuLedgerReq { sku_id: 1 })
        .await
        .unwrap();
    assert_eq!(ledger.into_inner().total, 5, "stock unchanged");
    // The sale view the edge caches is allowed.
    let body = frame(&flashgate_core::proto::flashsale::EventReq { id: 1 });
    let path = "/flashsale.Admin/GetEvent";
    let s = origin_auth::sign(TEST_ORIGIN_KEY, "POST", path, now_ms(), &body);
    assert_eq!(
        grpc_status(&post_to(&w, path, &body, Some((s.timestamp, s.signature))).await),
        "0"
    );
}
