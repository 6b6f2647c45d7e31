//! Work that does not grow with history: a sale that has ended and whose orders are all final
//! retires from the order worker's and the sweeper's lists, so with 10,000 such sales an idle
//! round of the worker and a tick of the sweeper cost the same number of Redis calls as with
//! one sale (counted with `INFO commandstats`, never timed). A retired sale's keys expire after
//! `--retain-closed`; the SKU's counters keep its sold units and the audit stays clean.
//!
//! Time is the argument the stores take (a timeline of its own, far from the wall clock), except
//! for the keys' expiry, which is Redis's own clock: that test waits for it with `eventually`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use flashgate_core::stock::{BuyDecision, BuyRequest, OrderStatus, PayRequest, Sale, StockError};
use flashgate_core::warehouse::audit;
use flashgate_core::warehouse::store::{
    MemoryStore, OrderQueue, Orders, RedisStore, Sales, SeedLocks, Stock, Store, StoreError,
};
use flashgate_tests::redis_server::calls_between;
use flashgate_tests::{assert_ledger, eur, eventually, TestRedis};

const START: i64 = 1_000_000;
const END: i64 = START + 60_000;
const PAY_WINDOW_MS: i64 = 600_000;
/// Sales that end and retire in the history test.
const RETIRED: i64 = 10_000;
/// SKUs they are spread over (each SKU's own set of sales grows with them too).
const SKUS: i64 = 100;
/// The one sale both stores keep running.
const LIVE_SKU: i64 = 5_000;
const LIVE_EVENT: i64 = 900_000;

fn sale(id: i64, sku: i64, end_ms: i64) -> Sale {
    Sale {
        id,
        sku,
        pool: 1,
        start_ms: START,
        end_ms,
        per_user_limit: 1,
        pay_window_ms: PAY_WINDOW_MS,
        subpools: 1,
        price: 100,
        currency: eur(),
        limit_counts_held: false,
    }
}

/// Defines `sale`, wins its one unit, creates the order and pays it (even ids) or cancels it.
async fn sold_once<S: Store>(store: &S, sale: Sale) -> String {
    store.put_sale(&sale).await.expect("put sale");
    let buy = BuyRequest {
        event_id: sale.id,
        user_id: format!("u{}", sale.id),
        qty: 1,
        request_id: format!("r{}", sale.id),
    };
    let BuyDecision::Queued { order_no, .. } = store.buy(&buy, START + 10).await.expect("buy")
    else {
        panic!("sale {} took no buy", sale.id);
    };
    order_no
}

async fn settle_and_finish<S: Store>(store: &S, order_nos: &[String]) {
    loop {
        let wins = store
            .read_wins("setup", 1_000, Duration::from_millis(1))
            .await
            .expect("read");
        if wins.is_empty() {
            break;
        }
        store.settle_wins(&wins, START + 20).await.expect("settle");
    }
    stream::iter(order_nos.iter().enumerate())
        .for_each_concurrent(64, |(i, order_no): (usize, &String)| async move {
            let order = store.order(order_no).await.unwrap().expect("order");
            assert_eq!(order.status, OrderStatus::PendingPayment);
            if i % 2 == 0 {
                let pay = PayRequest {
                    order_no: order_no.to_string(),
                    user_id: None,
                    payment_id: format!("p-{order_no}"),
                    amount: order.amount,
                };
                store.pay(&pay, START + 30).await.expect("pay");
            } else {
                store
                    .cancel(order_no, &order.user_id, START + 30)
                    .await
                    .expect("cancel");
            }
        })
        .await;
}

/// The one running sale with one order awaiting payment, in either store.
async fn the_live_sale<S: Store>(store: &S) {
    store.put_stock(LIVE_SKU, 10).await.expect("stock");
    let order_no = sold_once(store, sale(LIVE_EVENT, LIVE_SKU, END + 10_000_000)).await;
    settle_and_finish(store, &[]).await;
    assert_eq!(
        store.order(&order_no).await.unwrap().unwrap().status,
        OrderStatus::PendingPayment
    );
}

/// What one sweeper tick sends (the body of `run_sweeper`).
async fn sweeper_tick(redis: &TestRedis, store: &RedisStore, now: i64) -> BTreeMap<String, u64> {
    let before = redis.command_calls().await;
    store.expire_due(now, 1000).await.expect("expire");
    store.close_ended(now).await.expect("close");
    store
        .repair_locks(Duration::from_secs(5))
        .await
        .expect("repair");
    calls_between(&before, &redis.command_calls().await)
}

/// What the worker's idle rounds send per round: `read_wins` rounds over the live streams
/// (one directory read, then one XREADGROUP per stream) until its block is over, and a reclaim.
async fn worker_round(redis: &TestRedis, store: &RedisStore) -> BTreeMap<String, u64> {
    let before = redis.command_calls().await;
    let wins = store
        .read_wins("w", 128, Duration::from_millis(1))
        .await
        .expect("read");
    assert!(wins.is_empty());
    let mid = redis.command_calls().await;
    let reclaimed = store
        .reclaim_wins("w", Duration::from_secs(10), 128)
        .await
        .expect("reclaim");
    assert!(reclaimed.is_empty());
    let read = calls_between(&before, &mid);
    let rounds = read
        .get("hgetall")
        .copied()
        .expect("one directory read per round");
    let mut per_round: BTreeMap<String, u64> = read
        .into_iter()
        .map(|(name, n)| {
            assert_eq!(n % rounds, 0, "{name}: {n} calls in {rounds} rounds");
            (format!("read:{name}"), n / rounds)
        })
        .collect();
    for (name, n) in calls_between(&mid, &redis.command_calls().await) {
        per_round.insert(format!("reclaim:{name}"), n);
    }
    per_round
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_retired_sales_cost_the_worker_and_the_sweeper_nothing() {
    let redis = TestRedis::spawn(&[]).await;
    let one = redis.store().await;
    let history = redis.store().await;
    the_live_sale(&one).await;
    the_live_sale(&history).await;

    for sku in 1..=SKUS {
        history.put_stock(sku, RETIRED).await.expect("stock");
    }
    let order_nos: Vec<String> = stream::iter(1..=RETIRED)
        .map(|id| sold_once(&history, sale(id, 1 + id % SKUS, END)))
        .buffer_unordered(64)
        .collect()
        .await;
    settle_and_finish(&history, &order_nos).await;
    // Past the end: the first tick closes every sale and retires it in its shard (its orders
    // are all final), the next takes it off the live directory.
    let now = END + 1;
    let (mut ticks, mut closed) = (0, 0);
    loop {
        let before = history.skus().await.unwrap().len();
        closed += history.close_ended(now).await.expect("close").len();
        ticks += 1;
        assert_eq!(history.skus().await.unwrap().len(), before);
        if ticks >= 2 && history.sales_of(1).await.unwrap().is_empty() {
            break;
        }
        assert!(ticks < 10, "the sales do not retire");
    }
    assert_eq!(closed as i64, RETIRED);

    // Warm both (the scripts are loaded, the directory cached), then count.
    sweeper_tick(&redis, &one, now).await;
    sweeper_tick(&redis, &history, now).await;
    let (a, b) = (
        sweeper_tick(&redis, &one, now).await,
        sweeper_tick(&redis, &history, now).await,
    );
    assert_eq!(
        a, b,
        "a sweeper tick with one sale, and with 10,000 retired beside it"
    );
    assert_eq!(
        b.get("evalsha"),
        Some(&2),
        "one close_event.lua of the live sale, one move_read.lua of its shard: {b:?}"
    );
    let (a, b) = (
        worker_round(&redis, &one).await,
        worker_round(&redis, &history).await,
    );
    assert_eq!(
        a, b,
        "a worker round with one sale, and with 10,000 retired beside it"
    );
    assert_eq!(b.get("read:xreadgroup"), Some(&1), "{b:?}");

    // Retired, not gone: the sale and its orders are readable during the retention time, the
    // counters keep every unit sold, the audit is clean, and the id cannot be defined again.
    let mut sold = 0;
    for sku in 1..=SKUS {
        let ledger = assert_ledger(&history, sku).await;
        assert_eq!((ledger.pools, ledger.locked), (0, 0), "sku {sku}");
        sold += ledger.sold;
    }
    assert_eq!(sold, RETIRED / 2, "every paid unit stays counted");
    let state = history.sale(2).await.unwrap().expect("kept");
    assert!(state.closed);
    assert_eq!(
        history
            .order(&order_nos[0])
            .await
            .unwrap()
            .map(|o| o.status),
        Some(OrderStatus::Paid)
    );
    let report = audit::run(&history).await.expect("audit");
    assert!(report.is_clean(), "{}", audit::render(&report));
    assert_eq!(report.sales, 1, "only the live sale is audited as a sale");
    assert_eq!(report.orders as i64, RETIRED + 1);
    assert!(matches!(
        history.put_sale(&sale(2, 3, END + 1_000)).await,
        Err(StoreError::Refused(StockError::FailedPrecondition(_)))
    ));
}

/// A sale with an order still awaiting payment stays on the lists after its end, and retires
/// once the order is final: on Redis and on the memory store alike.
async fn a_sale_retires_only_once_its_orders_are_final<S: Store>(store: S) {
    store.put_stock(7, 10).await.unwrap();
    let paid = sold_once(&store, sale(1, 7, END)).await;
    let mut open = sale(1, 7, END);
    open.pool = 2;
    store.put_sale(&open).await.unwrap();
    let buy = BuyRequest {
        event_id: 1,
        user_id: "late".into(),
        qty: 1,
        request_id: "r-late".into(),
    };
    let BuyDecision::Queued {
        order_no: unpaid, ..
    } = store.buy(&buy, START + 11).await.unwrap()
    else {
        panic!("no second win");
    };
    settle_and_finish(&store, std::slice::from_ref(&paid)).await;

    assert_eq!(store.close_ended(END).await.unwrap(), vec![1]);
    store.close_ended(END).await.unwrap();
    assert_eq!(
        store.sales_of(7).await.unwrap(),
        vec![1],
        "an order still awaits payment"
    );
    let expired = store
        .expire_due(START + 20 + PAY_WINDOW_MS + 1, 10)
        .await
        .unwrap();
    assert_eq!(expired, vec![unpaid]);
    store.close_ended(END + PAY_WINDOW_MS).await.unwrap();
    store.close_ended(END + PAY_WINDOW_MS).await.unwrap();
    assert_eq!(store.sales_of(7).await.unwrap(), Vec::<i64>::new());
    let ledger = assert_ledger(&store, 7).await;
    assert_eq!((ledger.available, ledger.sold), (9, 1));
    let report = audit::run(&store).await.expect("audit");
    assert!(report.is_clean(), "{}", audit::render(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_retires_only_once_its_orders_are_final_on_redis() {
    let redis = TestRedis::start().await;
    a_sale_retires_only_once_its_orders_are_final(redis.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_retires_only_once_its_orders_are_final_on_the_memory_store() {
    a_sale_retires_only_once_its_orders_are_final(MemoryStore::new()).await;
}

/// With a short retention a retired sale's keys expire (on Redis by Redis's own clock) and the
/// sweeper then deletes its orders; what stays is the SKU's counters (its sold unit included)
/// and the tombstone, so the ledger and the audit still add up and the id stays taken.
async fn a_retired_sale_is_forgotten_after_the_retention<S: Store>(
    store: S,
    expired: impl AsyncFn(&S),
) {
    store.put_stock(7, 10).await.unwrap();
    let order_no = sold_once(&store, sale(1, 7, END)).await;
    settle_and_finish(&store, std::slice::from_ref(&order_no)).await;
    store.close_ended(END).await.unwrap();
    assert!(
        store.sale(1).await.unwrap().is_some(),
        "kept for the retention"
    );
    expired(&store).await;
    store.close_ended(END + 50).await.unwrap();
    assert_eq!(store.sale(1).await.unwrap(), None);
    assert_eq!(
        store.order(&order_no).await.unwrap(),
        None,
        "its orders are deleted"
    );
    let ledger = assert_ledger(&store, 7).await;
    assert_eq!((ledger.available, ledger.sold), (9, 1));
    let report = audit::run(&store).await.expect("audit");
    assert!(report.is_clean(), "{}", audit::render(&report));
    assert_eq!(report.orders, 0);
    assert!(matches!(
        store.put_sale(&sale(1, 7, END + 1_000)).await,
        Err(StoreError::Refused(StockError::FailedPrecondition(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_sales_keys_expire_after_the_retention_and_the_stock_still_adds_up() {
    let redis = TestRedis::start().await;
    let store = redis
        .store()
        .await
        .with_retention(Duration::from_millis(50));
    a_retired_sale_is_forgotten_after_the_retention(store, async |store: &RedisStore| {
        let keys = store.keys().clone();
        eventually(
            "the retired sale's keys expire",
            Duration::from_secs(10),
            || {
                let mut conn = store.connection();
                let keys = [
                    keys.event(7, 1),
                    keys.event_users(7, 1),
                    keys.event_requests(7, 1),
                ];
                async move {
                    let left: i64 = redis::cmd("EXISTS")
                        .arg(&keys)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    (left == 0).then_some(())
                }
            },
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_sale_is_forgotten_after_the_retention_on_the_memory_store() {
    let store = MemoryStore::new().with_retention(Duration::from_millis(50));
    a_retired_sale_is_forgotten_after_the_retention(store, async |_: &MemoryStore| {}).await;
}
