//! Every RPC of the warehouse, every validation rule and every status code, through a real tonic
//! client against a real server over the Redis store.

use std::collections::HashMap;

use flashgate_core::proto::common::SkuIdReq;
use flashgate_core::proto::flashsale::{
    buy_result, BuyManyReq, BuyOutcome, BuyReq, Event, EventReq, EventStatus, ListEventsReq, Order,
    OrderReq, OrderStatus, PayOrderReq, PutSkuStockReq, SkuLedgerReq,
};
use flashgate_core::proto::warehouse::{SkuStockLockReq, SkuStockUnlockReq, SkusReq};
use flashgate_core::stock::{BUY_MANY_MAX, MAX_PRICE};
use flashgate_core::warehouse::audit;
use flashgate_core::warehouse::server::ServerOptions;
use flashgate_core::warehouse::service::{now_ms, LISTED_AFTER_END_MS};
use flashgate_core::warehouse::store::RedisStore;
use flashgate_tests::{eventually, lock_req, TestRedis, TestWarehouse, TEST_ORIGIN_KEY};
use std::time::Duration;
use tonic::Code;

async fn warehouse() -> (TestRedis, TestWarehouse) {
    let (redis, _, warehouse) = warehouse_and_store().await;
    (redis, warehouse)
}

async fn warehouse_and_store() -> (TestRedis, RedisStore, TestWarehouse) {
    let redis = TestRedis::start().await;
    let store = redis.store().await;
    let warehouse = TestWarehouse::start(store.clone()).await;
    (redis, store, warehouse)
}

/// The price of a unit in every sale `sale` defines: 2.50 EUR.
const PRICE: i64 = 250;

fn sale(id: i64, sku: i64, pool: i32, start_ms: i64) -> Event {
    Event {
        id,
        sku_id: sku,
        pool,
        start_ms,
        end_ms: start_ms + 3_600_000,
        per_user_limit: 2,
        pay_window_ms: 60_000,
        subpools: 0,
        price: PRICE,
        currency: "EUR".into(),
        limit_counts_held: false,
        ..Default::default()
    }
}

fn buy(event_id: i64, user: &str, qty: i32, request_id: &str) -> BuyReq {
    BuyReq {
        event_id,
        user_id: user.into(),
        qty,
        request_id: request_id.into(),
    }
}

/// The payment side's confirmation of `amount` for `order_no` by payment `payment_id`, naming
/// the buyer `user` (`""`: not naming one).
fn pay_req(order_no: &str, user: &str, payment_id: &str, amount: i64) -> PayOrderReq {
    PayOrderReq {
        order_no: order_no.into(),
        user_id: user.into(),
        payment_id: payment_id.into(),
        amount,
    }
}

fn order_req(order_no: &str, user: &str) -> OrderReq {
    OrderReq {
        order_no: order_no.into(),
        user_id: user.into(),
    }
}

/// Asserts a call failed with `code` and a message naming `field`.
fn assert_refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    field: &str,
) {
    let status = result.expect_err("call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(field),
        "message {:?} should name {field}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_reads_and_puts_follow_the_seed_contract() {
    let (_redis, w) = warehouse().await;
    let (mut admin, mut wh) = (w.admin(), w.warehouse());

    assert_refused(
        wh.get_sku_stock(SkuIdReq { id: 1 }).await,
        Code::NotFound,
        "sku 1",
    );
    assert_eq!(
        admin
            .put_sku_stock(PutSkuStockReq { sku_id: 1, num: 10 })
            .await
            .unwrap()
            .into_inner()
            .num,
        10
    );
    assert_eq!(
        admin
            .put_sku_stock(PutSkuStockReq { sku_id: 2, num: 3 })
            .await
            .unwrap()
            .into_inner()
            .num,
        3
    );
    assert_eq!(
        wh.get_sku_stock(SkuIdReq { id: 1 })
            .await
            .unwrap()
            .into_inner()
            .num,
        10
    );

    let batch = wh
        .batch_skus_stock(SkusReq {
            ids: vec![1, 2, 99],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        batch.sku_nums,
        HashMap::from([(1, 10), (2, 3)]),
        "unknown ids are absent"
    );

    // Lowering the total takes from available only; it cannot drop below what is committed.
    wh.s_ku_stock_lock(lock_req(7, &[(1, 4)])).await.unwrap();
    assert_eq!(
        admin
            .put_sku_stock(PutSkuStockReq { sku_id: 1, num: 5 })
            .await
            .unwrap()
            .into_inner()
            .num,
        1
    );
    assert_refused(
        admin
            .put_sku_stock(PutSkuStockReq { sku_id: 1, num: 3 })
            .await,
        Code::FailedPrecondition,
        "sku 1",
    );
    let ledger = admin
        .get_sku_ledger(SkuLedgerReq { sku_id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (ledger.total, ledger.available, ledger.locked, ledger.sold),
        (5, 1, 4, 0)
    );
    assert_refused(
        admin.get_sku_ledger(SkuLedgerReq { sku_id: 404 }).await,
        Code::NotFound,
        "sku 404",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_names_the_field() {
    let (_redis, w) = warehouse().await;
    let (mut admin, mut wh, mut sk) = (w.admin(), w.warehouse(), w.seckill());
    let invalid = Code::InvalidArgument;

    assert_refused(wh.get_sku_stock(SkuIdReq { id: 0 }).await, invalid, "id");
    assert_refused(
        wh.batch_skus_stock(SkusReq { ids: vec![] }).await,
        invalid,
        "ids",
    );
    assert_refused(
        wh.batch_skus_stock(SkusReq { ids: vec![1, -2] }).await,
        invalid,
        "ids",
    );
    assert_refused(
        wh.batch_skus_stock(SkusReq {
            ids: (1..=1001).collect(),
        })
        .await,
        invalid,
        "ids",
    );
    assert!(
        wh.batch_skus_stock(SkusReq {
            ids: (1..=1000).collect()
        })
        .await
        .is_ok(),
        "1000 ids are allowed"
    );

    let ok = lock_req(1, &[(1, 1)]);
    for (req, field) in [
        (
            SkuStockLockReq {
                order_id: 0,
                ..ok.clone()
            },
            "order_id",
        ),
        (
            SkuStockLockReq {
                order_no: "ab".into(),
                ..ok.clone()
            },
            "order_no",
        ),
        (
            SkuStockLockReq {
                consignee: "张".into(),
                ..ok.clone()
            },
            "consignee",
        ),
        (
            SkuStockLockReq {
                phone: "12".into(),
                ..ok.clone()
            },
            "phone",
        ),
        (
            SkuStockLockReq {
                address: "ab".into(),
                ..ok.clone()
            },
            "address",
        ),
        (
            SkuStockLockReq {
                address: "x".repeat(257),
                ..ok.clone()
            },
            "address",
        ),
        (
            SkuStockLockReq {
                note: "x".repeat(513),
                ..ok.clone()
            },
            "note",
        ),
        (
            SkuStockLockReq {
                order_no: "NO\n1".into(),
                ..ok.clone()
            },
            "order_no",
        ),
        (
            SkuStockLockReq {
                sku_nums: HashMap::new(),
                ..ok.clone()
            },
            "sku_nums",
        ),
        (
            SkuStockLockReq {
                sku_nums: HashMap::from([(1, 0)]),
                ..ok.clone()
            },
            "sku_nums",
        ),
        (
            SkuStockLockReq {
                sku_nums: HashMap::from([(0, 1)]),
                ..ok.clone()
            },
            "sku_nums",
        ),
    ] {
        assert_refused(wh.s_ku_stock_lock(req).await, invalid, field);
    }
    assert_refused(
        wh.sku_stock_unlock(SkuStockUnlockReq {
            order_id: -1,
            finish: true,
        })
        .await,
        invalid,
        "order_id",
    );

    assert_refused(
        admin
            .put_sku_stock(PutSkuStockReq { sku_id: 0, num: 1 })
            .await,
        invalid,
        "sku_id",
    );
    assert_refused(
        admin
            .put_sku_stock(PutSkuStockReq { sku_id: 1, num: -1 })
            .await,
        invalid,
        "num",
    );
    let ev = sale(1, 1, 1, now_ms());
    for (req, field) in [
        (
            Event {
                id: 0,
                ..ev.clone()
            },
            "id",
        ),
        (
            Event {
                sku_id: 0,
                ..ev.clone()
            },
            "sku_id",
        ),
        (
            Event {
                pool: -1,
                ..ev.clone()
            },
            "pool",
        ),
        (
            Event {
                end_ms: ev.start_ms,
                ..ev.clone()
            },
            "end_ms",
        ),
        (
            Event {
                per_user_limit: 0,
                ..ev.clone()
            },
            "per_user_limit",
        ),
        (
            Event {
                pay_window_ms: 0,
                ..ev.clone()
            },
            "pay_window_ms",
        ),
        (
            Event {
                subpools: -1,
                ..ev.clone()
            },
            "subpools",
        ),
        (
            Event {
                subpools: 65,
                ..ev.clone()
            },
            "subpools",
        ),
    ] {
        assert_refused(admin.put_event(req).await, invalid, field);
    }
    assert_refused(admin.get_event(EventReq { id: 0 }).await, invalid, "id");

    for (req, field) in [
        (buy(0, "u", 1, "r"), "event_id"),
        (buy(1, "", 1, "r"), "user_id"),
        (buy(1, "u", 0, "r"), "qty"),
        (buy(1, "u", 101, "r"), "qty"),
        (buy(1, "u", 1, ""), "request_id"),
        (buy(1, "u\u{1f}x", 1, "r"), "user_id"),
    ] {
        assert_refused(sk.buy(req).await, invalid, field);
    }
    assert_refused(sk.get_order(order_req("", "u")).await, invalid, "order_no");
    for (req, field) in [
        (pay_req("", "u", "p", 1), "order_no"),
        (pay_req("1-1", "u\u{1f}", "p", 1), "user_id"),
        (pay_req("1-1", "u", "", 1), "payment_id"),
        (pay_req("1-1", "u", &"p".repeat(129), 1), "payment_id"),
        (pay_req("1-1", "u", "p\n", 1), "payment_id"),
        (pay_req("1-1", "u", "p", -1), "amount"),
    ] {
        assert_refused(sk.pay_order(req).await, invalid, field);
    }
    assert_refused(
        sk.demo_pay_order(order_req("1-1", "u")).await,
        Code::PermissionDenied,
        "--demo-payments",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_takes_every_sku_or_none_and_is_idempotent() {
    let (_redis, w) = warehouse().await;
    let (mut admin, mut wh) = (w.admin(), w.warehouse());
    admin
        .put_sku_stock(PutSkuStockReq { sku_id: 1, num: 5 })
        .await
        .unwrap();
    admin
        .put_sku_stock(PutSkuStockReq { sku_id: 2, num: 1 })
        .await
        .unwrap();
    let stock =
        |wh: &mut flashgate_core::proto::warehouse::warehouse_client::WarehouseClient<_>| {
            let mut wh = wh.clone();
            async move {
                wh.batch_skus_stock(SkusReq { ids: vec![1, 2] })
                    .await
                    .unwrap()
                    .into_inner()
                    .sku_nums
            }
        };

    // SKU 2 lacks units: refused naming it, and SKU 1 is untouched.
    assert_refused(
        wh.s_ku_stock_lock(lock_req(10, &[(1, 2), (2, 2)])).await,
        Code::FailedPrecondition,
        "sku 2",
    );
    assert_eq!(stock(&mut wh).await, HashMap::from([(1, 5), (2, 1)]));
    assert_refused(
        wh.s_ku_stock_lock(lock_req(10, &[(3, 1)])).await,
        Code::FailedPrecondition,
        "sku 3",
    );

    wh.s_ku_stock_lock(lock_req(10, &[(1, 2), (2, 1)]))
        .await
        .unwrap();
    assert_eq!(stock(&mut wh).await, HashMap::from([(1, 3), (2, 0)]));
    // The same request again: OK, nothing changes.
    wh.s_ku_stock_lock(lock_req(10, &[(1, 2), (2, 1)]))
        .await
        .unwrap();
    assert_eq!(stock(&mut wh).await, HashMap::from([(1, 3), (2, 0)]));
    // The same order id with other SKUs: a conflict.
    assert_refused(
        wh.s_ku_stock_lock(lock_req(10, &[(1, 1)])).await,
        Code::AlreadyExists,
        "order_id 10",
    );

    // Release: locked → available; a repeat is OK; finishing it afterwards is refused.
    wh.sku_stock_unlock(SkuStockUnlockReq {
        order_id: 10,
        finish: false,
    })
    .await
    .unwrap();
    assert_eq!(stock(&mut wh).await, HashMap::from([(1, 5), (2, 1)]));
    wh.sku_stock_unlock(SkuStockUnlockReq {
        order_id: 10,
        finish: false,
    })
    .await
    .unwrap();
    assert_eq!(stock(&mut wh).await, HashMap::from([(1, 5), (2, 1)]));
    assert_refused(
        wh.sku_stock_unlock(SkuStockUnlockReq {
            order_id: 10,
            finish: true,
        })
        .await,
        Code::FailedPrecondition,
        "order_id 10",
    );

    // Finish: locked → sold; releasing afterwards is refused.
    wh.s_ku_stock_lock(lock_req(11, &[(1, 1)])).await.unwrap();
    wh.sku_stock_unlock(SkuStockUnlockReq {
        order_id: 11,
        finish: true,
    })
    .await
    .unwrap();
    wh.sku_stock_unlock(SkuStockUnlockReq {
        order_id: 11,
        finish: true,
    })
    .await
    .unwrap();
    assert_refused(
        wh.sku_stock_unlock(SkuStockUnlockReq {
            order_id: 11,
            finish: false,
        })
        .await,
        Code::FailedPrecondition,
        "order_id 11",
    );
    let ledger = admin
        .get_sku_ledger(SkuLedgerReq { sku_id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (ledger.total, ledger.available, ledger.locked, ledger.sold),
        (5, 4, 0, 1)
    );

    assert_refused(
        wh.sku_stock_unlock(SkuStockUnlockReq {
            order_id: 404,
            finish: true,
        })
        .await,
        Code::NotFound,
        "order_id 404",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_from_pre_warm_to_payment() {
    let (_redis, store, w) = warehouse_and_store().await;
    let (mut admin, mut sk) = (w.admin(), w.seckill());
    admin
        .put_sku_stock(PutSkuStockReq { sku_id: 5, num: 10 })
        .await
        .unwrap();

    // Pre-warm: 3 units move available → pool; redefining moves only the difference.
    let state = admin
        .put_event(sale(1, 5, 4, now_ms() - 1_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (state.remaining, state.sold_out, state.status()),
        (4, false, EventStatus::Running)
    );
    let state = admin
        .put_event(sale(1, 5, 3, now_ms() - 1_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.remaining, 3);
    assert_refused(
        admin.put_event(sale(1, 6, 3, now_ms())).await,
        Code::FailedPrecondition,
        "sku",
    );
    assert_refused(
        admin.put_event(sale(2, 77, 3, now_ms())).await,
        Code::NotFound,
        "sku 77",
    );
    assert_refused(
        admin.put_event(sale(2, 5, 8, now_ms())).await,
        Code::FailedPrecondition,
        "available",
    );
    assert_refused(
        admin.get_event(EventReq { id: 404 }).await,
        Code::NotFound,
        "event 404",
    );
    let ledger = admin
        .get_sku_ledger(SkuLedgerReq { sku_id: 5 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ledger.available, ledger.pools), (7, 3));

    // Upcoming and unknown sales.
    admin
        .put_event(sale(2, 5, 1, now_ms() + 60_000))
        .await
        .unwrap();
    assert_eq!(
        sk.buy(buy(2, "ann", 1, "r0"))
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        BuyOutcome::NotStarted
    );
    assert_eq!(
        sk.buy(buy(404, "ann", 1, "r0"))
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        BuyOutcome::UnknownEvent
    );

    // A win, a retry of it, the per-user limit, and the pool running out.
    let won = sk.buy(buy(1, "ann", 2, "r1")).await.unwrap().into_inner();
    assert_eq!((won.outcome(), won.remaining), (BuyOutcome::Queued, 1));
    let retry = sk.buy(buy(1, "ann", 2, "r1")).await.unwrap().into_inner();
    assert_eq!(
        (retry.outcome(), retry.order_no.as_str(), retry.remaining),
        (BuyOutcome::Queued, won.order_no.as_str(), 1)
    );
    assert_eq!(
        sk.buy(buy(1, "ann", 1, "r2"))
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        BuyOutcome::LimitReached
    );
    assert_eq!(
        sk.buy(buy(1, "bob", 2, "r3"))
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        BuyOutcome::SoldOut
    );
    let last = sk.buy(buy(1, "bob", 1, "r4")).await.unwrap().into_inner();
    assert_eq!((last.outcome(), last.remaining), (BuyOutcome::Queued, 0));
    let sold_out = sk.buy(buy(1, "cid", 1, "r5")).await.unwrap().into_inner();
    assert_eq!(
        (sold_out.outcome(), sold_out.remaining),
        (BuyOutcome::SoldOut, 0)
    );
    assert!(
        admin
            .get_event(EventReq { id: 1 })
            .await
            .unwrap()
            .into_inner()
            .sold_out
    );

    // The order worker turns each win into an order awaiting payment.
    let pending = eventually("ann's order to be created", Duration::from_secs(10), || {
        let mut sk = sk.clone();
        let no = won.order_no.clone();
        async move {
            let o = sk.get_order(order_req(&no, "ann")).await.ok()?.into_inner();
            (o.status() == OrderStatus::PendingPayment).then_some(o)
        }
    })
    .await;
    assert_eq!((pending.qty, pending.event_id, pending.sku_id), (2, 1, 5));
    assert!(pending.deadline_ms > now_ms(), "deadline in the future");

    // Only the order's own user sees, pays or cancels it.
    assert_refused(
        sk.get_order(order_req(&won.order_no, "bob")).await,
        Code::PermissionDenied,
        &won.order_no,
    );
    assert_refused(
        sk.pay_order(pay_req(&won.order_no, "bob", "p-1", 2 * PRICE))
            .await,
        Code::PermissionDenied,
        &won.order_no,
    );
    assert_refused(
        sk.get_order(order_req("1-999", "ann")).await,
        Code::NotFound,
        "1-999",
    );
    assert_refused(
        sk.pay_order(pay_req("999-1", "ann", "p-1", PRICE)).await,
        Code::NotFound,
        "999-1",
    );
    assert_eq!(
        (pending.amount, pending.currency.as_str(), pending.paid_ms),
        (2 * PRICE, "EUR", 0)
    );

    let paid = sk
        .pay_order(pay_req(&won.order_no, "ann", "p-1", 2 * PRICE))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert_eq!(paid.payment_id, "p-1");
    assert!(paid.paid_ms > 0);
    assert_eq!(
        sk.pay_order(pay_req(&won.order_no, "ann", "p-1", 2 * PRICE))
            .await
            .unwrap()
            .into_inner(),
        paid
    );
    assert_refused(
        sk.cancel_order(order_req(&won.order_no, "ann")).await,
        Code::FailedPrecondition,
        "PAID",
    );

    // Bob cancels: his unit goes back to the running sale's pool.
    eventually("bob's order to be created", Duration::from_secs(10), || {
        let mut sk = sk.clone();
        let no = last.order_no.clone();
        async move {
            (sk.get_order(order_req(&no, "bob"))
                .await
                .ok()?
                .into_inner()
                .status()
                == OrderStatus::PendingPayment)
                .then_some(())
        }
    })
    .await;
    let cancelled = sk
        .cancel_order(order_req(&last.order_no, "bob"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        sk.cancel_order(order_req(&last.order_no, "bob"))
            .await
            .unwrap()
            .into_inner()
            .status(),
        OrderStatus::Cancelled
    );
    assert_refused(
        sk.pay_order(pay_req(&last.order_no, "bob", "p-2", PRICE))
            .await,
        Code::FailedPrecondition,
        "CANCELLED",
    );
    assert_eq!(
        admin
            .get_event(EventReq { id: 1 })
            .await
            .unwrap()
            .into_inner()
            .remaining,
        1
    );

    let ledger = admin
        .get_sku_ledger(SkuLedgerReq { sku_id: 5 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            ledger.total,
            ledger.available,
            ledger.pools,
            ledger.locked,
            ledger.sold
        ),
        (10, 6, 2, 0, 2)
    );
    assert_eq!(
        ledger.available + ledger.pools + ledger.locked + ledger.sold,
        ledger.total
    );

    // Requests and outcomes are counted by method, code and outcome.
    let metrics = w.metrics().await;
    assert!(
        metrics.contains(r#"flashgate_buy_outcomes_total{outcome="SOLD_OUT"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"flashgate_requests_total{code="PERMISSION_DENIED",method="PayOrder"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"flashgate_stock_units{place="sold",sku="5"} 2"#),
        "{metrics}"
    );

    // The audit agrees, with a seed-contract lock on the same SKU in the mix.
    w.warehouse()
        .s_ku_stock_lock(lock_req(50, &[(5, 1)]))
        .await
        .unwrap();
    let report = audit::run(&store).await.unwrap();
    assert!(report.is_clean(), "{}", audit::render(&report));
    assert_eq!(
        (report.skus, report.sales, report.orders, report.locks),
        (1, 2, 2, 1)
    );

    // A unit conjured out of nothing is caught.
    let mut conn = store.connection();
    redis::cmd("HINCRBY")
        .arg(store.keys().stock(5))
        .arg("available")
        .arg(1)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    let report = audit::run(&store).await.unwrap();
    assert!(!report.is_clean());
    assert!(
        audit::render(&report).contains("sku 5: available"),
        "{}",
        audit::render(&report)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_orders_expire_and_ended_sales_return_their_pool() {
    let (_redis, w) = warehouse().await;
    let (mut admin, mut sk) = (w.admin(), w.seckill());
    admin
        .put_sku_stock(PutSkuStockReq { sku_id: 9, num: 5 })
        .await
        .unwrap();
    let start = now_ms() - 1_000;
    // A sale that ends soon with a payment window of 1 ms: the sweeper expires the order, then
    // closes the sale, and every unit ends up available again.
    admin
        .put_event(Event {
            id: 3,
            sku_id: 9,
            pool: 3,
            start_ms: start,
            end_ms: now_ms() + 1_500,
            per_user_limit: 1,
            pay_window_ms: 1,
            subpools: 0,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let won = sk.buy(buy(3, "dee", 1, "r")).await.unwrap().into_inner();
    assert_eq!(won.outcome(), BuyOutcome::Queued);
    let expired = eventually(
        "the unpaid order to expire",
        Duration::from_secs(10),
        || {
            let mut sk = sk.clone();
            let no = won.order_no.clone();
            async move {
                let o = sk.get_order(order_req(&no, "dee")).await.ok()?.into_inner();
                (o.status() == OrderStatus::Expired).then_some(o)
            }
        },
    )
    .await;
    assert_eq!(expired.qty, 1);
    assert_refused(
        sk.pay_order(pay_req(&won.order_no, "dee", "p-1", 1999))
            .await,
        Code::FailedPrecondition,
        "EXPIRED",
    );
    let ledger = eventually("the ended sale to close", Duration::from_secs(10), || {
        let mut admin = admin.clone();
        async move {
            let l = admin
                .get_sku_ledger(SkuLedgerReq { sku_id: 9 })
                .await
                .ok()?
                .into_inner();
            (l.pools == 0 && l.available == 5).then_some(l)
        }
    })
    .await;
    assert_eq!((ledger.locked, ledger.sold, ledger.total), (0, 0, 5));
    let state = admin
        .get_event(EventReq { id: 3 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.status(), EventStatus::Ended);
    assert_eq!(
        sk.buy(buy(3, "eve", 1, "r"))
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        BuyOutcome::Ended
    );
    assert_refused(
        admin.put_event(sale(3, 9, 1, start)).await,
        Code::FailedPrecondition,
        "ended",
    );
}

/// A warehouse over Redis with SKU `sku` (10 units) and sale 1 of it running: pool 5, 2.50 EUR
/// a unit, 2 units per user.
async fn running_sale(sku: i64) -> (TestRedis, RedisStore, TestWarehouse) {
    let (redis, store, w) = warehouse_and_store().await;
    w.admin()
        .put_sku_stock(PutSkuStockReq {
            sku_id: sku,
            num: 10,
        })
        .await
        .unwrap();
    w.admin()
        .put_event(sale(1, sku, 5, now_ms() - 1_000))
        .await
        .unwrap();
    (redis, store, w)
}

/// Buys `qty` units of sale 1 for `user` and waits until the order awaits payment.
async fn pending_order(w: &TestWarehouse, user: &str, qty: i32, request_id: &str) -> Order {
    let won = w
        .seckill()
        .buy(buy(1, user, qty, request_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(won.outcome(), BuyOutcome::Queued, "{won:?}");
    let sk = w.seckill();
    eventually("the order to be created", Duration::from_secs(10), || {
        let (mut sk, no, user) = (sk.clone(), won.order_no.clone(), user.to_owned());
        async move {
            let o = sk.get_order(order_req(&no, &user)).await.ok()?.into_inner();
            (o.status() == OrderStatus::PendingPayment).then_some(o)
        }
    })
    .await
}

/// A SKU's ledger as `(total, available, pools, locked, sold)`.
async fn ledger(w: &TestWarehouse, sku: i64) -> (i64, i64, i64, i64, i64) {
    let l = w
        .admin()
        .get_sku_ledger(SkuLedgerReq { sku_id: sku })
        .await
        .unwrap()
        .into_inner();
    (l.total, l.available, l.pools, l.locked, l.sold)
}

async fn order_of(w: &TestWarehouse, order_no: &str, user: &str) -> Order {
    w.seckill()
        .get_order(order_req(order_no, user))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_and_its_currency_are_validated() {
    let (_redis, w) = warehouse().await;
    let mut admin = w.admin();
    admin
        .put_sku_stock(PutSkuStockReq { sku_id: 1, num: 5 })
        .await
        .unwrap();
    let ev = sale(1, 1, 1, now_ms());
    let prices = [-1, MAX_PRICE + 1].map(|price| {
        (
            Event {
                price,
                ..ev.clone()
            },
            "price",
        )
    });
    let currencies = ["", "EU", "EURO", "eur", "E1R", "€"].map(|currency| {
        let currency = currency.into();
        (
            Event {
                currency,
                ..ev.clone()
            },
            "currency",
        )
    });
    for (req, field) in prices.into_iter().chain(currencies) {
        assert_refused(admin.put_event(req).await, Code::InvalidArgument, field);
    }
    assert_refused(
        admin.get_event(EventReq { id: 1 }).await,
        Code::NotFound,
        "event 1",
    );
    // The bounds themselves are prices: free, and the most a unit may cost.
    for price in [0, MAX_PRICE] {
        let state = admin
            .put_event(Event {
                price,
                ..ev.clone()
            })
            .await
            .unwrap()
            .into_inner();
        let event = state.event.unwrap();
        assert_eq!((event.price, event.currency.as_str()), (price, "EUR"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_keeps_the_price_of_its_buy_when_the_sale_is_repriced() {
    let (_redis, _store, w) = running_sale(21).await;
    let ann = pending_order(&w, "ann", 2, "r1").await;
    assert_eq!((ann.amount, ann.currency.as_str()), (2 * PRICE, "EUR"));

    let repriced = Event {
        price: 999,
        currency: "USD".into(),
        ..sale(1, 21, 5, now_ms() - 1_000)
    };
    w.admin().put_event(repriced).await.unwrap();
    let event = w
        .admin()
        .get_event(EventReq { id: 1 })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!((event.price, event.currency.as_str()), (999, "USD"));
    let bob = pending_order(&w, "bob", 1, "r1").await;
    assert_eq!((bob.amount, bob.currency.as_str()), (999, "USD"));
    let ann = order_of(&w, &ann.order_no, "ann").await;
    assert_eq!(
        (ann.amount, ann.currency.as_str()),
        (2 * PRICE, "EUR"),
        "an order's amount is its buy's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_of_another_amount_is_refused_and_changes_nothing() {
    let (_redis, _store, w) = running_sale(22).await;
    let order = pending_order(&w, "ann", 2, "r1").await;
    let before = ledger(&w, 22).await;
    for amount in [2 * PRICE - 1, 2 * PRICE + 1, PRICE, 0] {
        assert_refused(
            w.seckill()
                .pay_order(pay_req(&order.order_no, "ann", "p-1", amount))
                .await,
            Code::FailedPrecondition,
            "amount",
        );
    }
    assert_eq!(ledger(&w, 22).await, before);
    assert_eq!(order_of(&w, &order.order_no, "ann").await, order);
    // The right amount, from a payment side that does not name the buyer: paid.
    let paid = w
        .seckill()
        .pay_order(pay_req(&order.order_no, "", "p-1", 2 * PRICE))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (paid.status(), paid.payment_id.as_str()),
        (OrderStatus::Paid, "p-1")
    );
    let (total, available, pools, locked, sold) = before;
    assert_eq!(
        ledger(&w, 22).await,
        (total, available, pools, locked - 2, sold + 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_payment_again_is_ok_and_changes_nothing() {
    let (_redis, _store, w) = running_sale(23).await;
    let order = pending_order(&w, "ann", 1, "r1").await;
    let mut sk = w.seckill();
    let paid = sk
        .pay_order(pay_req(&order.order_no, "ann", "psp-7", PRICE))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.status(), OrderStatus::Paid);
    assert!(paid.paid_ms >= order.created_ms, "{paid:?}");
    let after = ledger(&w, 23).await;
    for user in ["ann", ""] {
        let again = sk
            .pay_order(pay_req(&order.order_no, user, "psp-7", PRICE))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, paid, "the paid order, as it was");
    }
    assert_eq!(ledger(&w, 23).await, after);
    assert_eq!(order_of(&w, &order.order_no, "ann").await, paid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_payment_of_a_paid_order_already_exists() {
    let (_redis, _store, w) = running_sale(24).await;
    let order = pending_order(&w, "ann", 1, "r1").await;
    let mut sk = w.seckill();
    let paid = sk
        .pay_order(pay_req(&order.order_no, "ann", "psp-1", PRICE))
        .await
        .unwrap()
        .into_inner();
    let after = ledger(&w, 24).await;
    assert_refused(
        sk.pay_order(pay_req(&order.order_no, "ann", "psp-2", PRICE))
            .await,
        Code::AlreadyExists,
        &order.order_no,
    );
    assert_eq!(ledger(&w, 24).await, after);
    assert_eq!(order_of(&w, &order.order_no, "ann").await, paid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_payments_are_refused_without_the_flag_and_pay_with_it() {
    let (_redis, store, w) = running_sale(25).await;
    let order = pending_order(&w, "ann", 2, "r1").await;
    let before = ledger(&w, 25).await;
    assert_refused(
        w.seckill()
            .demo_pay_order(order_req(&order.order_no, "ann"))
            .await,
        Code::PermissionDenied,
        "--demo-payments",
    );
    assert_eq!(ledger(&w, 25).await, before);

    // The same store behind a warehouse started with --demo-payments.
    let demo = TestWarehouse::start_with(
        store,
        ServerOptions {
            origin_key: Some(TEST_ORIGIN_KEY.to_vec()),
            worker: None,
            demo_payments: true,
            ..ServerOptions::default()
        },
    )
    .await;
    let mut sk = demo.seckill();
    assert_refused(
        sk.demo_pay_order(order_req(&order.order_no, "bob")).await,
        Code::PermissionDenied,
        &order.order_no,
    );
    assert_refused(
        sk.demo_pay_order(order_req(&order.order_no, "")).await,
        Code::InvalidArgument,
        "user_id",
    );
    assert_refused(
        sk.demo_pay_order(order_req("1-99", "ann")).await,
        Code::NotFound,
        "1-99",
    );
    assert_eq!(ledger(&w, 25).await, before);
    let paid = sk
        .demo_pay_order(order_req(&order.order_no, "ann"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (paid.status(), paid.payment_id.clone(), paid.amount),
        (
            OrderStatus::Paid,
            format!("demo-{}", order.order_no),
            2 * PRICE
        )
    );
    // The same path as the payment side's: a repeat is the same payment.
    let again = sk
        .demo_pay_order(order_req(&order.order_no, "ann"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, paid);
    let (total, available, pools, locked, sold) = before;
    assert_eq!(
        ledger(&w, 25).await,
        (total, available, pools, locked - 2, sold + 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_cancel_buy_again_is_limit_reached_unless_the_sale_counts_units_held() {
    let (_redis, _store, w) = warehouse_and_store().await;
    let (mut admin, mut sk) = (w.admin(), w.seckill());
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: 26,
            num: 10,
        })
        .await
        .unwrap();
    let start = now_ms() - 1_000;
    let won_count = Event {
        per_user_limit: 1,
        ..sale(1, 26, 4, start)
    };
    let held_count = Event {
        id: 2,
        limit_counts_held: true,
        ..won_count.clone()
    };
    for (event, rebuy) in [
        (won_count, BuyOutcome::LimitReached),
        (held_count, BuyOutcome::Queued),
    ] {
        let id = event.id;
        let state = admin.put_event(event.clone()).await.unwrap().into_inner();
        assert_eq!(
            state.event.as_ref().map(|e| e.limit_counts_held),
            Some(event.limit_counts_held)
        );
        let first = sk
            .buy(buy(id, "ann", 1, &format!("{id}-r1")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.outcome(), BuyOutcome::Queued);
        let cancelled = sk
            .cancel_order(order_req(&first.order_no, "ann"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cancelled.status(), OrderStatus::Cancelled);
        let again = sk
            .buy(buy(id, "ann", 1, &format!("{id}-r2")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.outcome(), rebuy, "event {id}: {again:?}");
        // What the limit counts is fixed once the sale exists.
        let flipped = Event {
            limit_counts_held: !event.limit_counts_held,
            ..event
        };
        assert_refused(
            admin.put_event(flipped).await,
            Code::FailedPrecondition,
            "limit_counts_held",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_order_does_not_give_back_the_right_to_buy_by_default() {
    let (_redis, _store, w) = warehouse_and_store().await;
    let (mut admin, mut sk) = (w.admin(), w.seckill());
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: 27,
            num: 10,
        })
        .await
        .unwrap();
    // A payment window of 1 ms: the sweeper expires each order as soon as it exists.
    let won_count = Event {
        per_user_limit: 1,
        pay_window_ms: 1,
        ..sale(1, 27, 4, now_ms() - 1_000)
    };
    let held_count = Event {
        id: 2,
        limit_counts_held: true,
        ..won_count.clone()
    };
    for (event, rebuy) in [
        (won_count, BuyOutcome::LimitReached),
        (held_count, BuyOutcome::Queued),
    ] {
        let id = event.id;
        admin.put_event(event).await.unwrap();
        let first = sk
            .buy(buy(id, "ann", 1, &format!("{id}-r1")))
            .await
            .unwrap()
            .into_inner();
        eventually(
            "the unpaid order to expire",
            Duration::from_secs(10),
            || {
                let (mut sk, no) = (sk.clone(), first.order_no.clone());
                async move {
                    let o = sk.get_order(order_req(&no, "ann")).await.ok()?.into_inner();
                    (o.status() == OrderStatus::Expired).then_some(())
                }
            },
        )
        .await;
        let again = sk
            .buy(buy(id, "ann", 1, &format!("{id}-r2")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.outcome(), rebuy, "event {id}: {again:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_reused_for_another_buy_already_exists() {
    let (_redis, _store, w) = running_sale(28).await;
    w.admin()
        .put_event(sale(2, 28, 2, now_ms() - 1_000))
        .await
        .unwrap();
    let mut sk = w.seckill();
    let won = sk.buy(buy(1, "ann", 1, "r1")).await.unwrap().into_inner();
    assert_eq!(won.outcome(), BuyOutcome::Queued);
    let before = ledger(&w, 28).await;
    assert_refused(
        sk.buy(buy(1, "ann", 2, "r1")).await,
        Code::AlreadyExists,
        "request_id",
    );
    assert_eq!(ledger(&w, 28).await, before, "nothing taken");
    // The same buy again is the same order; another user's r1 is another request, and so is
    // ann's r1 in another sale (a request id's scope is one sale).
    let retry = sk.buy(buy(1, "ann", 1, "r1")).await.unwrap().into_inner();
    assert_eq!(
        (retry.outcome(), retry.order_no.as_str()),
        (BuyOutcome::Queued, won.order_no.as_str())
    );
    let bob = sk.buy(buy(2, "bob", 2, "r1")).await.unwrap().into_inner();
    assert_eq!(bob.outcome(), BuyOutcome::Queued);
    // A request that won nothing still names its buy: decided again as itself, refused as
    // another quantity.
    let early = sk.buy(buy(404, "cid", 1, "r1")).await.unwrap().into_inner();
    assert_eq!(early.outcome(), BuyOutcome::UnknownEvent);
    for _ in 0..2 {
        let sold_out = sk.buy(buy(2, "cid", 1, "r1")).await.unwrap().into_inner();
        assert_eq!(sold_out.outcome(), BuyOutcome::SoldOut);
    }
    assert_refused(
        sk.buy(buy(2, "cid", 2, "r1")).await,
        Code::AlreadyExists,
        "request_id",
    );
    let ann = sk.buy(buy(2, "ann", 1, "r1")).await.unwrap().into_inner();
    assert_eq!(
        ann.outcome(),
        BuyOutcome::SoldOut,
        "a new request in sale 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_events_lists_upcoming_running_and_recently_ended_sales() {
    let (_redis, w) = warehouse().await;
    let mut admin = w.admin();
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: 29,
            num: 10,
        })
        .await
        .unwrap();
    let now = now_ms();
    let ending = |id, start_ms, end_ms| Event {
        start_ms,
        end_ms,
        ..sale(id, 29, 1, start_ms)
    };
    let long_ended = now - LISTED_AFTER_END_MS - 60_000;
    for event in [
        ending(10, long_ended - 60_000, long_ended),
        ending(11, now - 120_000, now - 60_000),
        ending(12, now - 60_000, now + 60_000),
        ending(13, now + 60_000, now + 120_000),
    ] {
        admin.put_event(event).await.unwrap();
    }
    let list = admin
        .list_events(ListEventsReq {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.ids,
        vec![11, 12, 13],
        "not the sale that ended long ago"
    );
    assert!((now..=now_ms()).contains(&list.server_time_ms), "{list:?}");

    // A redefinition moves its sale's entry: 12 now ended long ago; 13 ends later (still
    // listed). A refused one (another SKU) moves nothing.
    admin
        .put_event(ending(12, long_ended - 60_000, long_ended))
        .await
        .unwrap();
    admin
        .put_event(ending(13, now + 60_000, now + 7_200_000))
        .await
        .unwrap();
    assert_refused(
        admin
            .put_event(Event {
                sku_id: 30,
                ..ending(11, now - 120_000, now + 60_000)
            })
            .await,
        Code::FailedPrecondition,
        "sku",
    );
    let list = admin
        .list_events(ListEventsReq {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.ids, vec![11, 13]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_many_decides_each_entry_as_its_own_buy_in_order() {
    let (_redis, _store, w) = running_sale(31).await;
    let mut sk = w.seckill();
    let entries = vec![
        buy(1, "ann", 1, "r1"),
        buy(1, "ann", 1, "r2"),
        buy(1, "ann", 1, "r3"),   // her third unit: over the limit of 2
        buy(1, "ann", 2, "r1"),   // r1 bought one unit just before
        buy(1, "bob", 0, "r1"),   // not a quantity
        buy(1, "bob", 2, "r1"),   // the pool's last two but one
        buy(1, "cid", 1, "r1"),   // the last
        buy(1, "dan", 1, "r1"),   // none left
        buy(404, "eve", 1, "r1"), // no such sale
    ];
    let reply = sk
        .buy_many(BuyManyReq {
            buys: entries.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.results.len(), entries.len(), "one result per entry");
    let outcome = |i: usize| match &reply.results[i].result {
        Some(buy_result::Result::Reply(r)) => Ok((r.outcome(), r.order_no.clone(), r.remaining)),
        Some(buy_result::Result::Refused(r)) => Err((r.code, r.message.clone())),
        None => panic!("entry {i} has no result"),
    };
    let won = |i: usize| {
        let (o, no, remaining) = outcome(i).unwrap_or_else(|e| panic!("entry {i}: {e:?}"));
        assert_eq!(o, BuyOutcome::Queued, "entry {i}");
        assert!(!no.is_empty());
        (no, remaining)
    };
    let (ann1, left) = won(0);
    assert_eq!(left, 4);
    assert_eq!(won(1).1, 3);
    assert_eq!(outcome(2).unwrap().0, BuyOutcome::LimitReached);
    let (code, message) = outcome(3).unwrap_err();
    assert_eq!(code, Code::AlreadyExists as i32);
    assert!(message.contains("request_id"), "{message}");
    let (code, message) = outcome(4).unwrap_err();
    assert_eq!(code, Code::InvalidArgument as i32);
    assert!(message.contains("qty"), "{message}");
    assert_eq!(won(5).1, 1);
    assert_eq!(won(6).1, 0);
    assert_eq!(outcome(7).unwrap().0, BuyOutcome::SoldOut);
    assert_eq!(outcome(8).unwrap().0, BuyOutcome::UnknownEvent);
    // Five units left the pool for five orders, nothing more.
    let (total, available, pools, locked, sold) = ledger(&w, 31).await;
    assert_eq!((total, pools, locked, sold), (10, 0, 5, 0));
    assert_eq!(available, 5);

    // The same call again (an edge whose reply was lost) is the same decisions: the same orders,
    // no unit taken twice.
    let again = sk
        .buy_many(BuyManyReq { buys: entries })
        .await
        .unwrap()
        .into_inner();
    match &again.results[0].result {
        Some(buy_result::Result::Reply(r)) => assert_eq!(r.order_no, ann1),
        other => panic!("ann's first buy again: {other:?}"),
    }
    assert_eq!(ledger(&w, 31).await, (10, 5, 0, 5, 0));

    // The call's own bounds.
    assert_refused(
        sk.buy_many(BuyManyReq { buys: vec![] }).await,
        Code::InvalidArgument,
        "buys",
    );
    let too_many = (0..=BUY_MANY_MAX)
        .map(|i| buy(1, &format!("u{i}"), 1, "r1"))
        .collect();
    assert_refused(
        sk.buy_many(BuyManyReq { buys: too_many }).await,
        Code::InvalidArgument,
        "buys",
    );
}
