//! A scalper's attacks, one named scenario each, run against both edges (the Worker under
//! `wrangler dev`, the Spin component under `wasmtime serve`) in front of the warehouse on a
//! real Redis — before the shared [`scenarios`](crate::scenarios), in the same [`World`].
//!
//! The attacker has a valid account (or several), a bot farm and the source code. Each scenario
//! asserts the answer (status and stable code, or the gRPC code) AND that the attack changed
//! nothing it must not: the SKU's ledger is compared before and after, so a refusal that still
//! moved stock fails. Attacks already closed before the hardening (forged, tampered, expired,
//! foreign and early links; automation user agents; oversized and malformed bodies; unsigned
//! gRPC-Web) are in `scenarios`; the ones here are those a motivated scalper used until the
//! hardening closed them.
//!
//! Each scenario has its own sale (ids 40–49), users and client addresses (198.18.40.0/22).

use std::time::Duration;

use flashgate_core::grpc_web::Code;
use flashgate_core::proto::flashsale::{
    admin_client::AdminClient, seckill_client::SeckillClient, BuyReq, Event, Order, PayOrderReq,
    PutSkuStockReq, SkuLedger,
};
use flashgate_core::proto::warehouse::SkuStockReply;
use flashgate_core::warehouse::service::now_ms;
use serde_json::{json, Value};

use crate::grpc_web;
use crate::scenarios::{Browser, World};
use crate::wait::{poll_until, Pace};

/// The challenge lifetime the scenarios' edges run with (`FLASHGATE_CHALLENGE_TTL_MS` in
/// [`edge_vars`](crate::scenarios::edge_vars)): short, so the stockpiling scenario waits for a
/// start only a few seconds away.
pub const CHALLENGE_TTL_MS: i64 = 6_000;

/// Every attack, in order.
pub async fn run_all(world: &World) {
    let name = world.profile.name;
    native_grpc_on_the_edge_listener_is_refused(world).await;
    a_leaked_edge_key_reaches_no_back_office_method(world).await;
    eprintln!("{name} adversary: the edge listener holds");
    the_buyer_cannot_pay_their_own_order(world).await;
    one_answer_buys_one_order(world).await;
    a_retry_asking_for_more_is_not_the_first_order(world).await;
    buy_cancel_rebuy_gains_nothing(world).await;
    eprintln!("{name} adversary: links and limits hold");
    a_challenge_fetched_long_before_the_start_is_spent_by_nobody(world).await;
    eprintln!("{name} adversary: all attacks refused");
}

/// A sale `id` of `pool` units of `sku` (stock `pool + 10`), open now for an hour, `limit`
/// units per user, priced 1999 EUR cents.
async fn open_sale(world: &World, (id, sku, pool): (i64, i64, i32), limit: i32) -> Event {
    sale_starting(world, (id, sku, pool), limit, -1_000).await
}

async fn sale_starting(
    world: &World,
    (id, sku, pool): (i64, i64, i32),
    limit: i32,
    starts_in_ms: i64,
) -> Event {
    let mut admin = world.admin().await;
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: sku,
            num: pool + 10,
        })
        .await
        .expect("put stock");
    let start_ms = now_ms() + starts_in_ms;
    let event = Event {
        id,
        sku_id: sku,
        pool,
        start_ms,
        end_ms: start_ms + 3_600_000,
        per_user_limit: limit,
        pay_window_ms: 600_000,
        price: 1999,
        currency: "EUR".into(),
        ..Default::default()
    };
    admin.put_event(event.clone()).await.expect("put event");
    world.until_listed(id).await;
    event
}

/// `(total, available, pools, locked, sold)`.
fn figures(l: &SkuLedger) -> (i64, i64, i64, i64, i64) {
    (l.total, l.available, l.pools, l.locked, l.sold)
}

/// Asserts the SKU's ledger is still `before`.
async fn assert_unchanged(world: &World, sku: i64, before: &SkuLedger, attack: &str) {
    let after = world.ledger(sku).await;
    assert_eq!(
        figures(&after),
        figures(before),
        "{}: {attack} moved stock",
        world.profile.name
    );
}

/// Native gRPC straight at the edge listener — the port that must face the internet — for a
/// user of the attacker's choosing: no token, no proof-of-work, no link. Refused before any
/// service runs; reflection and administration too.
pub async fn native_grpc_on_the_edge_listener_is_refused(world: &World) {
    let sale = open_sale(world, (40, 140, 5), 1).await;
    let before = world.ledger(sale.sku_id).await;
    let edge = crate::channel_to(world.origin.edge_addr).await;
    let buy = SeckillClient::new(edge.clone())
        .buy(BuyReq {
            event_id: sale.id,
            user_id: "victim".into(),
            qty: 1,
            request_id: "straight-in".into(),
        })
        .await
        .expect_err("a native Buy on the edge listener");
    assert_eq!(buy.code(), tonic::Code::Unauthenticated, "{buy:?}");
    let put = AdminClient::new(edge)
        .put_sku_stock(PutSkuStockReq {
            sku_id: sale.sku_id,
            num: 1_000,
        })
        .await
        .expect_err("a native PutSkuStock on the edge listener");
    assert_eq!(put.code(), tonic::Code::Unauthenticated, "{put:?}");
    assert_unchanged(
        world,
        sale.sku_id,
        &before,
        "native gRPC on the edge listener",
    )
    .await;
}

/// Even with the edge's own key (leaked, or a compromised edge), the edge listener answers only
/// the edge's methods: no stock, no sale definitions, no payment.
pub async fn a_leaked_edge_key_reaches_no_back_office_method(world: &World) {
    let sale = open_sale(world, (41, 141, 5), 1).await;
    let before = world.ledger(sale.sku_id).await;
    let put = PutSkuStockReq {
        sku_id: sale.sku_id,
        num: 1_000,
    };
    let pay = PayOrderReq {
        order_no: format!("{}-1", sale.id),
        payment_id: "pay-forged".into(),
        amount: 1999,
        ..Default::default()
    };
    let edge = world.origin.edge_addr;
    let path = "/flashsale.Admin/PutSkuStock";
    let r = grpc_web::call::<_, SkuStockReply>(edge, path, &put, Some(now_ms())).await;
    assert_eq!(grpc_web::code(&r), Code::PermissionDenied, "{path}");
    let path = "/flashsale.Seckill/PayOrder";
    let r = grpc_web::call::<_, Order>(edge, path, &pay, Some(now_ms())).await;
    assert_eq!(grpc_web::code(&r), Code::PermissionDenied, "{path}");
    assert_unchanged(world, sale.sku_id, &before, "signed back-office calls").await;
}

/// Link and buy for `buyer`: the order number of a `202`.
async fn buy_once(buyer: &Browser, event: i64) -> String {
    let path = buyer.link(event).await;
    let bought = buyer.post(&path, &json!({})).await;
    assert_eq!(bought.status(), 202, "{}", bought.json);
    bought.json["order_no"]
        .as_str()
        .expect("order_no")
        .to_owned()
}

/// The order `no` as its buyer sees it, once the order worker has created it.
async fn pending(buyer: &Browser, no: &str) -> Value {
    poll_until(
        "the order to await payment",
        Duration::from_secs(15),
        Pace::Every(Duration::from_millis(200)),
        || {
            let (buyer, no) = (buyer.clone(), no.to_owned());
            async move {
                let r = buyer.get(&format!("/api/orders/{no}")).await;
                (r.json["status"] == "pending_payment").then_some(r.json)
            }
        },
    )
    .await
}

/// Payment is the payment side's word, never the buyer's: the old pay route is gone, the demo
/// one exists only in demo mode (off here), and the order stays unpaid.
pub async fn the_buyer_cannot_pay_their_own_order(world: &World) {
    let sale = open_sale(world, (42, 142, 5), 1).await;
    let buyer = world.browser("payless", "198.18.40.1");
    let no = buy_once(&buyer, sale.id).await;
    let order = pending(&buyer, &no).await;
    assert_eq!(order["amount"], 1999, "{order}");
    let before = world.ledger(sale.sku_id).await;
    for path in [
        format!("/api/orders/{no}/pay"),
        format!("/api/demo/orders/{no}/pay"),
    ] {
        let r = buyer.post(&path, &json!({})).await;
        assert_eq!(
            (r.status(), r.code()),
            (404, "not_found"),
            "{path}: {}",
            r.json
        );
    }
    let order = buyer.get(&format!("/api/orders/{no}")).await;
    assert_eq!(order.json["status"], "pending_payment");
    assert_unchanged(world, sale.sku_id, &before, "self-payment").await;
}

/// One solved challenge, many links: every link is the same purchase, one order.
pub async fn one_answer_buys_one_order(world: &World) {
    let sale = open_sale(world, (43, 143, 5), 3).await;
    let buyer = world.browser("hoarder", "198.18.40.2");
    let answer = buyer.solve(sale.id).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        let minted = buyer
            .post(&format!("/api/events/{}/link", sale.id), &answer)
            .await;
        assert_eq!(minted.status(), 200, "{}", minted.json);
        let bought = buyer
            .post(minted.json["path"].as_str().unwrap(), &json!({}))
            .await;
        assert_eq!(bought.status(), 202, "{}", bought.json);
        orders.push(bought.json["order_no"].as_str().unwrap().to_owned());
    }
    orders.dedup();
    assert_eq!(orders.len(), 1, "one answer, one order: {orders:?}");
    let ledger = world.ledger(sale.sku_id).await;
    assert_eq!((ledger.pools, ledger.locked), (4, 1), "one unit taken");
}

/// A retry of a bought link asking for more units is not answered with the first order as if it
/// matched: refused, and nothing more is taken.
pub async fn a_retry_asking_for_more_is_not_the_first_order(world: &World) {
    let sale = open_sale(world, (44, 144, 5), 3).await;
    let buyer = world.browser("greedy", "198.18.40.3");
    let path = buyer.link(sale.id).await;
    let first = buyer.post(&path, &json!({ "qty": 1 })).await;
    assert_eq!(first.status(), 202, "{}", first.json);
    let before = world.ledger(sale.sku_id).await;
    let more = buyer.post(&path, &json!({ "qty": 3 })).await;
    assert_eq!(
        (more.status(), more.code()),
        (409, "link_used"),
        "{}",
        more.json
    );
    assert_unchanged(world, sale.sku_id, &before, "a retry asking for more").await;
}

/// Buy, cancel, buy again with fresh work: the per-user limit counts units won, cancelled ones
/// included, so the second purchase is refused and the cancelled unit stays in the pool for
/// someone else.
pub async fn buy_cancel_rebuy_gains_nothing(world: &World) {
    let sale = open_sale(world, (45, 145, 5), 1).await;
    let buyer = world.browser("churner", "198.18.40.4");
    let no = buy_once(&buyer, sale.id).await;
    pending(&buyer, &no).await;
    let cancelled = buyer
        .post(&format!("/api/orders/{no}/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status(), 200, "{}", cancelled.json);
    let before = world.ledger(sale.sku_id).await;
    assert_eq!((before.pools, before.locked), (5, 0), "the unit is back");
    let path = buyer.link(sale.id).await;
    let again = buyer.post(&path, &json!({})).await;
    assert_eq!((again.status(), again.code()), (409, "limit_reached"));
    assert_unchanged(world, sale.sku_id, &before, "buy-cancel-rebuy").await;
}

/// A challenge fetched long before the start lives `challenge_ttl` from its issue, not from
/// the start: solved at leisure during the countdown, it is expired when the sale opens.
pub async fn a_challenge_fetched_long_before_the_start_is_spent_by_nobody(world: &World) {
    let sale = sale_starting(world, (46, 146, 5), 1, CHALLENGE_TTL_MS + 1_500).await;
    let early = world.browser("stockpiler", "198.18.40.6");
    let issued = early
        .post(&format!("/api/events/{}/challenge", sale.id), &json!({}))
        .await;
    assert_eq!(issued.status(), 200, "{}", issued.json);
    let expires = issued.json["expires_ms"].as_i64().expect("expires_ms");
    assert!(
        expires < sale.start_ms,
        "a challenge issued before the start must expire before it: {}",
        issued.json
    );
    let answer = early.solve_issued(&issued.json);
    let before = world.ledger(sale.sku_id).await;
    // Wait for the sale to open (the view says so), then spend the stockpiled answer.
    poll_until(
        "the sale to open",
        Duration::from_secs(20),
        Pace::Every(Duration::from_millis(250)),
        || {
            let early = early.clone();
            async move {
                let r = early.get(&format!("/api/events/{}", sale.id)).await;
                (r.json["status"] == "running").then_some(())
            }
        },
    )
    .await;
    let spent = early
        .post(&format!("/api/events/{}/link", sale.id), &answer)
        .await;
    assert_eq!(
        (spent.status(), spent.code()),
        (410, "challenge_expired"),
        "{}",
        spent.json
    );
    assert_unchanged(world, sale.sku_id, &before, "a stockpiled challenge").await;
}
