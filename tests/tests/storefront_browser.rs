//! The storefront in a real browser: headless Debian chromium, driven by playwright-core from
//! Node's test runner (`tests/browser/*.test.mjs`), against the real Worker under `wrangler dev`,
//! the warehouse on a Redis of the test's own, in demo mode (the page mints a guest identity and
//! pays with the edge's demo payment, `POST /api/demo/orders/{no}/pay`).
//!
//! This test starts the world and creates the sales; the Node files drive the page and write
//! what they bought to a results file; then this test asks the warehouse whether it agrees.
//! Screenshots land in `tests/artifacts/` (git-ignored).
//!
//! One sale has a waiting room (issue 14): two visitors join its line during the countdown,
//! the one admitted first at the start buys and pays without a click to look again, and the
//! other, still waiting, is told sold out; the warehouse's line must say the same.

use std::time::Duration;

use flashgate_core::gate::DEMO_MODE_WARNING;
use flashgate_core::proto::flashsale::{
    queue_client::QueueClient, seckill_client::SeckillClient, ClaimAdmissionReq, Event, OrderReq,
    OrderStatus, PlaceState, QueueReq, SkuLedgerReq,
};
use flashgate_core::refusal::Reason;
use flashgate_core::warehouse::server::ServerOptions;
use flashgate_core::warehouse::store::{RedisStore, RedisStoreConfig};
use flashgate_tests::edge::{Origin, Wrangler};
use flashgate_tests::process::Scratch;
use flashgate_tests::storefront::{assert_playwright_installed, chromium_path, run_node_tests};
use flashgate_tests::wait::eventually;
use flashgate_tests::{unique_prefix, TestRedis, TEST_ORIGIN_KEY, TEST_QUEUE_SECRET};
use serde_json::Value;
use tonic::transport::Channel;

/// `1:` + base64url("flashgate-test-link-key-0123456789").
const LINK_KEYS: &str = "1:Zmxhc2hnYXRlLXRlc3QtbGluay1rZXktMDEyMzQ1Njc4OQ";
const USER_KEY: &str = "flashgate-test-user-token-key-0123";

/// Every refusal code of the core's catalogue, as a JSON array.
fn refusal_codes() -> String {
    let codes: Vec<&str> = Reason::ALL.iter().map(|reason| reason.code()).collect();
    serde_json::to_string(&codes).expect("strings serialise")
}

/// The sales of the scenarios: (event, sku, stock, pool, starts in ms).
const BUY: (i64, i64, i32, i32, i64) = (1, 2001, 20, 5, 25_000);
const RACE: (i64, i64, i32, i32, i64) = (2, 2002, 5, 1, 25_000);
const EARLY: (i64, i64, i32, i32, i64) = (3, 2003, 5, 5, 600_000);
/// The waiting room's sale: one unit for two visitors in line.
const LINE: (i64, i64, i32, i32, i64) = (4, 2004, 5, 1, 25_000);
/// Its pre-queue: open since before the sale was created, so the visitors join at once and
/// wait out the countdown in line (their order is drawn, so either may be first).
const LINE_PREQUEUE_MS: i64 = 60_000;
/// The price of the purchase's sale, minor units and currency: the page shows `€19.99`.
const BUY_PRICE: (i64, &str) = (1999, "EUR");

async fn put_sale(origin: &Origin<RedisStore>, sale: (i64, i64, i32, i32, i64)) -> Event {
    let (id, sku, stock, pool, starts_in) = sale;
    origin
        .put_sale((id, sku, stock, pool), starts_in, 300_000)
        .await
}

/// The warehouse's question for an order the browser tests reported: `{order_no, user_id}`.
fn order_req(reported: &Value) -> OrderReq {
    let field = |name: &str| {
        reported[name]
            .as_str()
            .unwrap_or_else(|| panic!("the browser tests reported no {name}: {reported}"))
            .to_owned()
    };
    OrderReq {
        order_no: field("order_no"),
        user_id: field("user_id"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_sells_in_a_real_browser() {
    // Fail fast, before the slow start, when the browser side is missing.
    chromium_path();
    assert_playwright_installed();

    let redis = TestRedis::spawn(&[]).await;
    let mut config = RedisStoreConfig::new(redis.url.clone());
    config.prefix = unique_prefix();
    let store = RedisStore::connect(config).await.expect("connect redis");
    let mut options = ServerOptions {
        origin_key: Some(TEST_ORIGIN_KEY.to_vec()),
        // The page's "Pay now" is the demo's payment (`/api/demo/orders/{no}/pay`).
        demo_payments: true,
        // The waiting room's draw secret: without one the warehouse refuses rooms.
        queue_secret: Some(TEST_QUEUE_SECRET.to_vec()),
        ..ServerOptions::default()
    };
    if let Some(worker) = options.worker.as_mut() {
        worker.consumer = unique_prefix();
    }
    let origin = Origin::start(store, options).await;
    let vars = [
        (
            "FLASHGATE_ORIGIN_URL",
            format!("http://{}", origin.edge_addr),
        ),
        (
            "FLASHGATE_ORIGIN_KEY",
            String::from_utf8(TEST_ORIGIN_KEY.to_vec()).unwrap(),
        ),
        ("FLASHGATE_USER_TOKEN_KEY", USER_KEY.to_owned()),
        ("FLASHGATE_LINK_KEYS", LINK_KEYS.to_owned()),
        ("FLASHGATE_DEMO_MODE", "1".to_owned()),
        ("FLASHGATE_POW_FLOOR_BITS", "12".to_owned()),
        ("FLASHGATE_POW_CAP_BITS", "16".to_owned()),
    ];
    let edge = Wrangler::start(&vars).await;
    // Demo mode says so in the Worker's log, from the isolate's first request (its start probe).
    eventually(
        "the demo-mode warning in wrangler's log",
        Duration::from_secs(10),
        || async { edge.log().contains(DEMO_MODE_WARNING).then_some(()) },
    )
    .await;

    // The sales start once the browser is up (the countdown is waited out, not skipped).
    let buy = Event {
        price: BUY_PRICE.0,
        currency: BUY_PRICE.1.to_owned(),
        ..put_sale(&origin, BUY).await
    };
    // Redefined with its price: the same pool, so no unit moves.
    origin
        .admin()
        .await
        .put_event(buy.clone())
        .await
        .expect("price the sale");
    let race = put_sale(&origin, RACE).await;
    let early = put_sale(&origin, EARLY).await;
    // Redefined with its waiting room (the same pool): one unit, admitted one place at a time.
    let line = Event {
        waiting_room: true,
        prequeue_ms: LINE_PREQUEUE_MS,
        admit_factor: 1,
        ..put_sale(&origin, LINE).await
    };
    origin
        .admin()
        .await
        .put_event(line.clone())
        .await
        .expect("give the sale its waiting room");

    let scratch = Scratch::new("storefront");
    let results = scratch.0.join("results.json");
    let env = [
        ("FLASHGATE_URL", format!("http://{}", edge.addr)),
        ("FLASHGATE_EVENT_BUY", buy.id.to_string()),
        ("FLASHGATE_EVENT_RACE", race.id.to_string()),
        ("FLASHGATE_EVENT_EARLY", early.id.to_string()),
        ("FLASHGATE_EVENT_LINE", line.id.to_string()),
        ("FLASHGATE_RESULTS", results.display().to_string()),
        // The refusal catalogue, so the page is checked against every code the edge can send.
        ("FLASHGATE_REFUSAL_CODES", refusal_codes()),
    ];
    let node = tokio::task::spawn_blocking(move || {
        run_node_tests(
            &[
                "tests/browser/assets.test.mjs",
                "tests/browser/storefront.test.mjs",
            ],
            &env,
        )
    })
    .await
    .expect("join node");
    let stdout = String::from_utf8_lossy(&node.stdout);
    let stderr = String::from_utf8_lossy(&node.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        node.status.success(),
        "the browser tests failed ({}):\n{stdout}\n{stderr}\nwrangler's log:\n{}",
        node.status,
        edge.log_tail()
    );

    // The warehouse agrees with what the browsers saw.
    let results: Value = serde_json::from_slice(
        &std::fs::read(&results).expect("the browser tests wrote their results"),
    )
    .expect("results are JSON");
    eprintln!("the browser tests reported: {results:#}");
    let mut admin = origin.admin().await;
    let channel = Channel::from_shared(format!("http://{}", origin.addr))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect");
    let mut seckill = SeckillClient::new(channel.clone());

    let order = seckill
        .get_order(order_req(&results["paid"]))
        .await
        .expect("the paid order exists")
        .into_inner();
    assert_eq!(order.status, OrderStatus::Paid as i32, "{order:?}");
    // Paid with the demo payment: the order's amount, never a figure from the page.
    assert_eq!(
        (order.amount, order.currency.as_str()),
        (BUY_PRICE.0, BUY_PRICE.1),
        "{order:?}"
    );
    assert!(order.payment_id.starts_with("demo-"), "{order:?}");
    assert_eq!(order.event_id, buy.id);
    let ledger = admin
        .get_sku_ledger(SkuLedgerReq { sku_id: buy.sku_id })
        .await
        .expect("ledger")
        .into_inner();
    assert_eq!((ledger.sold, ledger.locked), (1, 0), "{ledger:?}");
    assert_eq!(
        ledger.available + ledger.pools + ledger.locked + ledger.sold,
        ledger.total
    );

    let order = seckill
        .get_order(order_req(&results["race_winner"]))
        .await
        .expect("the winner's order exists")
        .into_inner();
    assert_eq!(order.event_id, race.id);
    assert_eq!(order.status, OrderStatus::Cancelled as i32, "{order:?}");
    let ledger = admin
        .get_sku_ledger(SkuLedgerReq {
            sku_id: race.sku_id,
        })
        .await
        .expect("ledger")
        .into_inner();
    // Sold once, cancelled while the sale runs: the unit is back in the sale's pool.
    assert_eq!(
        (ledger.pools, ledger.locked, ledger.sold),
        (1, 0, 0),
        "{ledger:?}"
    );
    assert_eq!(
        ledger.available + ledger.pools + ledger.locked + ledger.sold,
        ledger.total
    );

    let ledger = admin
        .get_sku_ledger(SkuLedgerReq {
            sku_id: early.sku_id,
        })
        .await
        .expect("ledger")
        .into_inner();
    assert_eq!(
        (ledger.pools, ledger.locked, ledger.sold),
        (5, 0, 0),
        "nothing sold early"
    );

    // The waiting room: the one admitted first paid, as the page said; the other was told sold
    // out while still in line, and the warehouse's line says so too.
    let order = seckill
        .get_order(order_req(&results["line_paid"]))
        .await
        .expect("the admitted buyer's order exists")
        .into_inner();
    assert_eq!(order.event_id, line.id);
    assert_eq!(order.status, OrderStatus::Paid as i32, "{order:?}");
    assert!(order.payment_id.starts_with("demo-"), "{order:?}");
    let ledger = admin
        .get_sku_ledger(SkuLedgerReq {
            sku_id: line.sku_id,
        })
        .await
        .expect("ledger")
        .into_inner();
    assert_eq!(
        (ledger.pools, ledger.locked, ledger.sold),
        (0, 0, 1),
        "{ledger:?}"
    );
    assert_eq!(
        ledger.available + ledger.pools + ledger.locked + ledger.sold,
        ledger.total
    );
    let mut queue = QueueClient::new(channel);
    let room = queue
        .get_queue(QueueReq { event_id: line.id })
        .await
        .expect("the line")
        .into_inner();
    assert!(room.sold_out, "{room:?}");
    // Both drawn in the pre-queue; one admitted, who bought (so nobody is pending).
    assert_eq!(
        (room.places, room.drawn, room.admitted, room.pending),
        (2, 2, 1, 0),
        "{room:?}"
    );
    let waiting = results["line_waiting"]["user_id"]
        .as_str()
        .expect("the browser tests reported the user still waiting");
    assert_ne!(waiting, order.user_id, "two visitors, two users");
    let place = queue
        .claim_admission(ClaimAdmissionReq {
            event_id: line.id,
            user_id: waiting.to_owned(),
        })
        .await
        .expect("claim")
        .into_inner();
    assert_eq!(place.state(), PlaceState::PlaceSoldOut, "{place:?}");
    drop(edge);
}
