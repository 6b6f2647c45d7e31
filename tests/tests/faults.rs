//! Faults in the middle of a flash sale: the warehouse killed with `kill -9`, Redis restarted,
//! and a late payment racing the sweeper. Each ends with the audit. The promise under test: no
//! unit sold twice, no acknowledged win lost, a retried buy answers the same order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashgate_core::proto::flashsale::{
    admin_client::AdminClient, seckill_client::SeckillClient, BuyOutcome, BuyReq, Event, OrderReq,
    OrderStatus as OrderStatusMsg, PayOrderReq, PutSkuStockReq,
};
use flashgate_core::stock::call;
use flashgate_core::stock::{BuyDecision, BuyRequest, OrderStatus, Sale, Shard, StockError};
use flashgate_core::warehouse::audit;
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{
    OrderQueue, Orders, RedisStore, RedisStoreConfig, Sales, Stock, StoreError,
};
use flashgate_tests::{
    eur, eventually, free_port, pay_in_full, TestRedis, TestWarehouse, WarehouseProcess,
};
use tonic::transport::Channel;

const POOL: i32 = 2_000;
/// The sale's price per unit (cents of EUR); every buy is of one unit.
const PRICE: i64 = 1999;
/// Concurrent buyers' connections during the spike.
const CLIENTS: usize = 16;
/// Answers seen before the fault is injected, and after it before the spike stops.
const BEFORE_FAULT: usize = 100;
const AFTER_FAULT: usize = 200;

fn buy_req(i: usize) -> BuyReq {
    BuyReq {
        event_id: 1,
        user_id: format!("u{i}"),
        qty: 1,
        request_id: format!("r{i}"),
    }
}

async fn put_sale(channel: Channel) {
    let mut admin = AdminClient::new(channel);
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: 1,
            num: 5_000,
        })
        .await
        .unwrap();
    let start_ms = now_ms() - 1_000;
    admin
        .put_event(Event {
            id: 1,
            sku_id: 1,
            pool: POOL,
            start_ms,
            end_ms: start_ms + 3_600_000,
            per_user_limit: 1,
            pay_window_ms: 3_600_000,
            subpools: 0,
            price: PRICE,
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Each buyer's first attempt: the answer, or `None` when the call failed.
type Attempts = BTreeMap<usize, Option<(BuyOutcome, String)>>;

/// A crowd of new buyers arriving without pause on `CLIENTS` connections; `fault` runs once
/// `BEFORE_FAULT` buys have been answered, and the crowd stops once `AFTER_FAULT` more have been
/// answered after it (so the fault lands in the middle of traffic, and the system recovered).
async fn spike<F, Fut>(channels: Vec<Channel>, fault: F) -> Attempts
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let attempts: Arc<Mutex<Attempts>> = Arc::default();
    let (next, answered, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let mut client = SeckillClient::new(channels[c % channels.len()].clone());
        let (attempts, next, answered, stop) = (
            attempts.clone(),
            next.clone(),
            answered.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let answer = client.buy(buy_req(i)).await.ok().map(|r| {
                    let r = r.into_inner();
                    (r.outcome(), r.order_no)
                });
                if answer.is_some() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                attempts.lock().unwrap().insert(i, answer);
            }
        });
    }
    let reached = |n: usize| {
        let answered = answered.clone();
        move || {
            let done = answered.load(Ordering::SeqCst) >= n;
            async move { done.then_some(()) }
        }
    };
    eventually(
        "the spike to be under way",
        Duration::from_secs(20),
        reached(BEFORE_FAULT),
    )
    .await;
    fault().await;
    let mark = answered.load(Ordering::SeqCst);
    eventually(
        "buys to be answered again after the fault",
        Duration::from_secs(30),
        reached(mark + AFTER_FAULT),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}
    let attempts = attempts.lock().unwrap().clone();
    eprintln!(
        "spike: {} buyers, {} calls failed during the fault",
        attempts.len(),
        failed(&attempts)
    );
    attempts
}

/// The buyers whose first attempt failed.
fn failed(attempts: &Attempts) -> usize {
    attempts.values().filter(|a| a.is_none()).count()
}

/// Retries every buyer with the same request id until each gets a definite answer.
async fn settle(attempts: &Attempts, channel: Channel) -> BTreeMap<usize, (BuyOutcome, String)> {
    let mut finals = BTreeMap::new();
    for &i in attempts.keys() {
        let client = SeckillClient::new(channel.clone());
        let reply = eventually(
            &format!("buyer {i}'s retry to be answered"),
            Duration::from_secs(30),
            || {
                let mut client = client.clone();
                async move {
                    client
                        .buy(buy_req(i))
                        .await
                        .ok()
                        .map(tonic::Response::into_inner)
                }
            },
        )
        .await;
        finals.insert(i, (reply.outcome(), reply.order_no));
    }
    finals
}

/// The promise, checked after any fault: a retry answers exactly what was answered before, every
/// unit taken belongs to exactly one winner (no oversell), every win became exactly one order,
/// and the audit is clean.
async fn assert_nothing_lost(
    attempts: &Attempts,
    finals: &BTreeMap<usize, (BuyOutcome, String)>,
    channel: Channel,
    store: &RedisStore,
) {
    for (i, answer) in attempts {
        if let Some(answer) = answer {
            if answer.0 == BuyOutcome::Queued {
                assert_eq!(
                    &finals[i], answer,
                    "buyer {i}: a retry must answer the same order"
                );
            }
        }
    }
    let winners: Vec<(&usize, &String)> = finals
        .iter()
        .filter(|(_, (o, _))| *o == BuyOutcome::Queued)
        .map(|(i, (_, no))| (i, no))
        .collect();
    let distinct: BTreeSet<&String> = winners.iter().map(|(_, no)| *no).collect();
    assert_eq!(distinct.len(), winners.len(), "one order number per winner");
    let ledger = store.ledger(1).await.unwrap().unwrap();
    assert_eq!(
        ledger.locked,
        winners.len() as i64,
        "every unit taken belongs to a winner"
    );
    assert_eq!(
        ledger.pools + ledger.locked,
        i64::from(POOL),
        "nothing left the sale uncounted"
    );
    let won = winners.iter().map(|(i, no)| (**i, (*no).clone()));
    await_orders(channel, won, "created", |s| {
        s == OrderStatusMsg::PendingPayment
    })
    .await;
    let report = audit::run(store).await.unwrap();
    assert!(report.is_clean(), "{}", audit::render(&report));
    assert_eq!(report.orders, winners.len());
}

/// Waits (bounded) until each `(buyer, order number)` has an order whose status passes `done`.
async fn await_orders(
    channel: Channel,
    orders: impl Iterator<Item = (usize, String)>,
    what: &str,
    done: fn(OrderStatusMsg) -> bool,
) {
    let seckill = SeckillClient::new(channel);
    for (i, no) in orders {
        let user = format!("u{i}");
        eventually(
            &format!("order {no} to be {what}"),
            Duration::from_secs(30),
            || {
                let mut seckill = seckill.clone();
                let req = OrderReq {
                    order_no: no.clone(),
                    user_id: user.clone(),
                };
                async move {
                    let order = seckill.get_order(req).await.ok()?.into_inner();
                    done(order.status()).then_some(())
                }
            },
        )
        .await;
    }
}

async fn fg_store(url: &str) -> RedisStore {
    // The binary's default prefix, so the test reads what the warehouse wrote.
    RedisStore::connect(RedisStoreConfig::new(url))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_warehouse_mid_spike_loses_no_acknowledged_win() {
    let redis = TestRedis::spawn(&[]).await;
    let port = free_port();
    let args = |consumer: &'static str| {
        [
            "--store",
            "redis",
            "--redis-url",
            redis.url.as_str(),
            "--reclaim-idle-ms",
            "300",
            "--consumer",
            consumer,
        ]
        .map(str::to_owned)
    };
    let first = WarehouseProcess::start(port, &args("first")).await;
    put_sale(first.channel().await).await;
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(first.channel().await);
    }

    let second_args = args("second");
    let second: Arc<Mutex<Option<WarehouseProcess>>> = Arc::default();
    let slot = second.clone();
    let attempts = spike(channels, || async move {
        first.kill9();
        let restarted = WarehouseProcess::start(port, &second_args).await;
        *slot.lock().unwrap() = Some(restarted);
    })
    .await;
    // A killed warehouse breaks every connection to it: buys in flight fail.
    assert!(
        failed(&attempts) > 0,
        "the fault must hit traffic in flight"
    );
    let second = second.lock().unwrap().take().expect("restarted");
    let finals = settle(&attempts, second.channel().await).await;
    assert_nothing_lost(
        &attempts,
        &finals,
        second.channel().await,
        &fg_store(&redis.url).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_spike_loses_nothing_acknowledged() {
    let mut redis = TestRedis::spawn_durable().await;
    let store = fg_store(&redis.url).await;
    let w = TestWarehouse::start(store.clone()).await;
    put_sale(w.new_channel().await).await;
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(w.new_channel().await);
    }

    // The restart lands between answered buys by construction; the store's reconnect may ride
    // through it without a single failed call (seen here), which is fine: what must hold is
    // that nothing acknowledged is lost.
    let attempts = spike(channels, || redis.restart()).await;

    // The warehouse reconnects by itself: no restart, no new store.
    let finals = settle(&attempts, w.new_channel().await).await;
    assert_nothing_lost(&attempts, &finals, w.new_channel().await, &store).await;
}

/// Two sweepers that listed the same due order both ran `release_order.lua` for it; the second
/// found it EXPIRED already, was answered as if it had released it, and counted it too (seen
/// as "expired twice" in `a_late_payment_and_the_sweeper_never_both_win`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sweeper_expiring_the_same_order_counted_it_expired_twice() {
    let redis = TestRedis::start().await;
    let store = redis.store().await;
    store.put_stock(1, 5).await.unwrap();
    let sale = Sale {
        id: 1,
        sku: 1,
        pool: 2,
        start_ms: 0,
        end_ms: 10_000_000,
        per_user_limit: 1,
        pay_window_ms: 1_000,
        subpools: 1,
        price: PRICE,
        currency: eur(),
        limit_counts_held: false,
    };
    store.put_sale(&sale).await.unwrap();
    let req = BuyRequest {
        event_id: 1,
        user_id: "ann".into(),
        qty: 1,
        request_id: "r".into(),
    };
    let BuyDecision::Queued { order_no, .. } = store.buy(&req, 10).await.unwrap() else {
        panic!("won")
    };
    for win in store
        .read_wins("w", 10, Duration::from_millis(5))
        .await
        .unwrap()
    {
        store.create_order(&win, 10).await.unwrap();
        store.ack_win(&win).await.unwrap();
    }
    // What each sweeper sends for an order it listed as due.
    let expire = call::release_order(
        store.keys(),
        (1, Shard::from(1)),
        &order_no,
        "",
        5_000,
        OrderStatus::Expired,
        true,
    );
    let mut released = Vec::new();
    for _ in 0..2 {
        let reply: Vec<String> = store.run(&expire).await.unwrap();
        let (by_this_call, order) = call::parse_release_order(&order_no, &reply).unwrap();
        assert_eq!(order.status, OrderStatus::Expired);
        released.push(by_this_call);
    }
    assert_eq!(
        released,
        vec![true, false],
        "only the first call released it"
    );
    assert_eq!(store.ledger(1).await.unwrap().unwrap().locked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_payment_and_the_sweeper_never_both_win() {
    let redis = TestRedis::start().await;
    let store = redis.store().await;
    let now = 1_000_000;
    let orders = 120;
    store.put_stock(1, 500).await.unwrap();
    let sale = Sale {
        id: 1,
        sku: 1,
        pool: 200,
        start_ms: 0,
        end_ms: 10_000_000,
        per_user_limit: 1,
        pay_window_ms: 1_000,
        subpools: 1,
        price: 100,
        currency: eur(),
        limit_counts_held: false,
    };
    store.put_sale(&sale).await.unwrap();
    let mut buyers = BTreeMap::new();
    for i in 0..orders {
        let req = BuyRequest {
            event_id: 1,
            user_id: format!("u{i}"),
            qty: 1,
            request_id: "r".into(),
        };
        let BuyDecision::Queued { order_no, .. } = store.buy(&req, now).await.unwrap() else {
            panic!("pool has room")
        };
        buyers.insert(order_no, req.user_id);
    }
    let mut created = 0;
    while created < orders {
        for win in store
            .read_wins("worker", 64, Duration::from_millis(5))
            .await
            .unwrap()
        {
            assert!(store.create_order(&win, now).await.unwrap());
            store.ack_win(&win).await.unwrap();
            created += 1;
        }
    }
    let deadline = now + 1_000;

    // Every payment arrives at the last allowed millisecond while the sweeper, one millisecond
    // later by its clock, expires whatever is still unpaid.
    let mut payments = tokio::task::JoinSet::new();
    for (order_no, user) in buyers.clone() {
        let store = store.clone();
        payments.spawn(async move {
            (
                order_no.clone(),
                pay_in_full(&store, &order_no, &user, deadline).await,
            )
        });
    }
    let mut sweeps = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = store.clone();
        sweeps.spawn(async move { store.expire_due(deadline + 1, 1_000).await.unwrap() });
    }
    let mut paid = BTreeSet::new();
    while let Some(joined) = payments.join_next().await {
        match joined.unwrap() {
            (no, Ok(order)) => {
                assert_eq!(order.status, OrderStatus::Paid);
                paid.insert(no);
            }
            (_, Err(StoreError::Refused(StockError::FailedPrecondition(_)))) => {}
            (no, Err(e)) => panic!("payment of {no} failed unexpectedly: {e}"),
        }
    }
    let mut expired = BTreeSet::new();
    while let Some(joined) = sweeps.join_next().await {
        for no in joined.unwrap() {
            assert!(expired.insert(no.clone()), "{no} expired twice");
        }
    }
    assert!(
        paid.is_disjoint(&expired),
        "an order both paid and expired: {:?}",
        paid.intersection(&expired).collect::<Vec<_>>()
    );
    assert_eq!(
        paid.len() + expired.len(),
        orders,
        "every order ends paid or expired"
    );
    for (no, user) in &buyers {
        let order = store.order(no).await.unwrap().unwrap();
        let expected = if paid.contains(no) {
            OrderStatus::Paid
        } else {
            OrderStatus::Expired
        };
        assert_eq!(order.status, expected, "{no} of {user}");
    }
    let ledger = store.ledger(1).await.unwrap().unwrap();
    assert_eq!(ledger.sold, paid.len() as i64);
    assert_eq!(ledger.locked, 0);
    assert_eq!(
        ledger.pools,
        200 - orders as i64 + expired.len() as i64,
        "expired units went back to the running sale"
    );
    let report = audit::run(&store).await.unwrap();
    assert!(report.is_clean(), "{}", audit::render(&report));
}

/// A small deterministic generator (xorshift64*), so a soak's fault schedule replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Mixed traffic (buys, payments, cancellations, order reads) for `SOAK_SECONDS` (default 8;
/// `scripts/bench/soak.sh` runs minutes), with the warehouse killed and Redis restarted at moments drawn
/// from `SOAK_SEED` (printed, so a failure replays). Ends with every failed buy retried and the
/// audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_faults_at_random_moments() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::try_from(now_ms()).unwrap_or(1) | 1);
    eprintln!("soak: {seconds} s, SOAK_SEED={seed}");
    let mut rng = Rng(seed);

    let mut redis = TestRedis::spawn_durable().await;
    let port = free_port();
    let url = redis.url.clone();
    let args = [
        "--store",
        "redis",
        "--redis-url",
        url.as_str(),
        "--reclaim-idle-ms",
        "300",
    ];
    let mut warehouse = Some(WarehouseProcess::start(port, &args).await);
    put_sale(warehouse.as_ref().unwrap().channel().await).await;
    let channel = warehouse.as_ref().unwrap().channel().await;

    let stop = Arc::new(AtomicBool::new(false));
    let attempts: Arc<Mutex<Attempts>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let mut traffic = tokio::task::JoinSet::new();
    for c in 0..CLIENTS as u64 {
        let (stop, attempts, next, channel) = (
            stop.clone(),
            attempts.clone(),
            next.clone(),
            channel.clone(),
        );
        let mut rng = Rng(seed ^ (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        traffic.spawn(async move {
            let mut seckill = SeckillClient::new(channel);
            let mut mine: Vec<(String, String)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match rng.below(10) {
                    // Pay, cancel or look at one of this client's orders; failures are fine here,
                    // the audit judges the end state.
                    0..=2 if !mine.is_empty() => {
                        let (no, user) = mine[rng.below(mine.len() as u64) as usize].clone();
                        let req = OrderReq {
                            order_no: no,
                            user_id: user,
                        };
                        let _ = match rng.below(3) {
                            0 => {
                                // As the payment side would: the sale's price, one unit.
                                let pay = PayOrderReq {
                                    payment_id: format!("pay-{}", req.order_no),
                                    order_no: req.order_no,
                                    user_id: req.user_id,
                                    amount: PRICE,
                                };
                                seckill.pay_order(pay).await
                            }
                            1 => seckill.cancel_order(req).await,
                            _ => seckill.get_order(req).await,
                        };
                    }
                    _ => {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let answer = seckill.buy(buy_req(i)).await.ok().map(|r| {
                            let r = r.into_inner();
                            (r.outcome(), r.order_no)
                        });
                        if let Some((BuyOutcome::Queued, no)) = &answer {
                            mine.push((no.clone(), format!("u{i}")));
                        }
                        attempts.lock().unwrap().insert(i, answer);
                    }
                }
            }
        });
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut faults = Vec::new();
    loop {
        let pause = Duration::from_millis(500 + rng.below(1_500));
        if tokio::time::Instant::now() + pause >= deadline {
            break;
        }
        // Faults happen at drawn moments: this wait is the schedule, not a wait for a result.
        tokio::time::sleep(pause).await;
        if rng.below(2) == 0 {
            warehouse.take().expect("running").kill9();
            warehouse = Some(WarehouseProcess::start(port, &args).await);
            faults.push("kill -9 warehouse");
        } else {
            redis.restart().await;
            faults.push("restart redis");
        }
    }
    stop.store(true, Ordering::SeqCst);
    while traffic.join_next().await.is_some() {}
    eprintln!("soak: faults injected: {faults:?}");

    let attempts = attempts.lock().unwrap().clone();
    let channel = warehouse.as_ref().unwrap().channel().await;
    let finals = settle(&attempts, channel.clone()).await;
    for (i, answer) in &attempts {
        if let Some(answer @ (BuyOutcome::Queued, _)) = answer {
            assert_eq!(
                &finals[i], answer,
                "buyer {i} (SOAK_SEED={seed}): a retry must answer the same order"
            );
        }
    }
    let won = finals
        .iter()
        .filter(|(_, (o, _))| *o == BuyOutcome::Queued)
        .map(|(i, (_, no))| (*i, no.clone()));
    await_orders(channel, won, "out of the queue", |s| {
        s != OrderStatusMsg::Queued
    })
    .await;
    let report = audit::run(&fg_store(&redis.url).await).await.unwrap();
    assert!(
        report.is_clean(),
        "SOAK_SEED={seed}\n{}",
        audit::render(&report)
    );
    drop(warehouse);
}
