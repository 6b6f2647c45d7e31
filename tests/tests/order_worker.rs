//! The order worker turns every QUEUED buy into exactly one order awaiting payment: through the
//! server, and after a consumer dies between reading its wins and acknowledging them and another
//! reclaims them (on Redis, on the memory store, and by the server's own worker).
//!
//! Nothing here sleeps to wait: the server's worker is observed with `eventually`, and the
//! store-level scenarios drive the worker's steps (`read_wins`, `reclaim_wins`, `process_wins`)
//! by hand, which is also how they simulate the crash.

use std::collections::BTreeSet;
use std::time::Duration;

use flashgate_core::proto::flashsale::{
    BuyOutcome, BuyReq, Event, OrderReq, OrderStatus as OrderStatusMsg, PutSkuStockReq,
    SkuLedgerReq,
};
use flashgate_core::stock::{call, BuyDecision, BuyRequest, OrderStatus, Sale, Win};
use flashgate_core::warehouse::metrics::Metrics;
use flashgate_core::warehouse::server::ServerOptions;
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{
    MemoryStore, OrderQueue, Orders, RedisConnection, RedisStore, RedisStoreConfig, Sales, Stock,
    Store,
};
use flashgate_core::warehouse::worker::{process_wins, run_order_worker, WorkerOptions};
use flashgate_tests::redis_server::calls_between;
use flashgate_tests::{eur, eventually, unique_prefix, TestRedis, TestWarehouse, TEST_ORIGIN_KEY};

/// Long enough that no order expires while a test runs.
const PAY_WINDOW_MS: i64 = 3_600_000;
/// How long a store-level read of wins may wait (never zero: `BLOCK 0` is forever to Redis).
const BLOCK: Duration = Duration::from_millis(5);
/// How long the server's worker gets to catch up.
const PATIENCE: Duration = Duration::from_secs(10);

/// A sale running now (wall clock: the server and `process_wins` decide with it).
fn running_sale(id: i64, sku: i64, pool: i64, per_user_limit: i64) -> Sale {
    let now = now_ms();
    Sale {
        id,
        sku,
        pool,
        start_ms: now - 1_000,
        end_ms: now + 3_600_000,
        per_user_limit,
        pay_window_ms: PAY_WINDOW_MS,
        subpools: 1,
        price: 100,
        currency: eur(),
        limit_counts_held: false,
    }
}

fn event(sale: &Sale) -> Event {
    Event {
        id: sale.id,
        sku_id: sale.sku,
        pool: sale.pool as i32,
        start_ms: sale.start_ms,
        end_ms: sale.end_ms,
        per_user_limit: sale.per_user_limit as i32,
        pay_window_ms: sale.pay_window_ms,
        subpools: 0,
        price: sale.price,
        currency: sale.currency.to_string(),
        limit_counts_held: sale.limit_counts_held,
        ..Default::default()
    }
}

/// One sample's value in Prometheus text, `series` being for example
/// `flashgate_order_worker_total{event="created"}`.
fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse::<f64>()
            .ok()
            .map(|v| v as u64)
    })
}

fn worker_events(metrics: &str, event: &str) -> u64 {
    sample(
        metrics,
        &format!("flashgate_order_worker_total{{event=\"{event}\"}}"),
    )
    .unwrap_or(0)
}

fn order_nos(wins: &[Win]) -> BTreeSet<String> {
    wins.iter().map(|w| w.order_no.clone()).collect()
}

/// Stock and a running sale of `wins` units (limit 1), then one buy per user: returns the orders.
async fn won<S: Store>(store: &S, sku: i64, wins: i64) -> BTreeSet<String> {
    store.put_stock(sku, wins * 2).await.expect("put stock");
    let sale = running_sale(sku, sku, wins, 1);
    store.put_sale(&sale).await.expect("put sale");
    let mut orders = BTreeSet::new();
    for user in 0..wins {
        let buy = BuyRequest {
            event_id: sale.id,
            user_id: format!("user-{user}"),
            qty: 1,
            // One request id per buy (its scope is the sale).
            request_id: format!("r1-{}", sale.id),
        };
        match store.buy(&buy, now_ms()).await.expect("buy") {
            BuyDecision::Queued { order_no, .. } => assert!(orders.insert(order_no)),
            other => panic!("buy of user-{user}: {other:?}"),
        }
    }
    orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queued_buy_becomes_exactly_one_pending_order() {
    let redis = TestRedis::start().await;
    let store = redis.store().await;
    let w = TestWarehouse::start(store.clone()).await;
    let (mut admin, mut seckill) = (w.admin(), w.seckill());
    admin
        .put_sku_stock(PutSkuStockReq { sku_id: 7, num: 40 })
        .await
        .expect("put stock");
    let sale = running_sale(7, 7, 25, 1);
    admin.put_event(event(&sale)).await.expect("put event");

    // 30 buyers for 25 units; the first five click twice with the same request id (a retry
    // must not announce a second win).
    let mut wins = Vec::new();
    for user in 0..30 {
        let user_id = format!("user-{user}");
        let buy = BuyReq {
            event_id: 7,
            user_id: user_id.clone(),
            qty: 1,
            request_id: format!("{user_id}-r1"),
        };
        let reply = seckill.buy(buy.clone()).await.expect("buy").into_inner();
        if user < 5 {
            let retry = seckill.buy(buy).await.expect("retry").into_inner();
            assert_eq!(
                (retry.outcome(), &retry.order_no),
                (reply.outcome(), &reply.order_no)
            );
        }
        match reply.outcome() {
            BuyOutcome::Queued => wins.push((reply.order_no, user_id)),
            BuyOutcome::SoldOut => {}
            other => panic!("{user_id}: {other:?}"),
        }
    }
    assert_eq!(wins.len(), 25);

    for (order_no, user_id) in &wins {
        let req = OrderReq {
            order_no: order_no.clone(),
            user_id: user_id.clone(),
        };
        let order = eventually(
            &format!("order {order_no} to await payment"),
            PATIENCE,
            || {
                let (mut seckill, req) = (seckill.clone(), req.clone());
                async move {
                    let order = seckill.get_order(req).await.ok()?.into_inner();
                    (order.status() == OrderStatusMsg::PendingPayment).then_some(order)
                }
            },
        )
        .await;
        assert_eq!((order.event_id, order.sku_id, order.qty), (7, 7, 1));
        assert!(
            order.deadline_ms >= order.created_ms + PAY_WINDOW_MS,
            "{order:?}"
        );
        assert!(order.deadline_ms <= now_ms() + PAY_WINDOW_MS, "{order:?}");
    }

    // Once the stream is drained (acknowledged entries are deleted), the counters are final.
    let stream = store.keys().order_stream(7);
    eventually("the order stream to be drained", PATIENCE, || {
        let (mut conn, stream) = (store.connection(), stream.clone());
        async move {
            let len: usize = redis::cmd("XLEN")
                .arg(&stream)
                .query_async(&mut conn)
                .await
                .ok()?;
            (len == 0).then_some(())
        }
    })
    .await;
    let metrics = eventually(
        "the worker to count 25 created orders",
        PATIENCE,
        || async {
            let metrics = w.metrics().await;
            (worker_events(&metrics, "created") >= 25).then_some(metrics)
        },
    )
    .await;
    assert_eq!(worker_events(&metrics, "created"), 25, "{metrics}");
    assert_eq!(worker_events(&metrics, "duplicate"), 0, "{metrics}");

    // Creating orders moves no stock.
    let l = admin
        .get_sku_ledger(SkuLedgerReq { sku_id: 7 })
        .await
        .expect("ledger")
        .into_inner();
    assert_eq!(
        (l.total, l.available, l.pools, l.locked, l.sold),
        (40, 15, 0, 25, 0)
    );
}

/// A read batch over two SKUs is created and acknowledged by one `create_order.lua` call per
/// shard (so one XACK per shard, inside it), and the same batch delivered again creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_batch_costs_one_script_call_per_shard_and_redelivery_creates_nothing() {
    let redis = TestRedis::spawn(&[]).await;
    let store = redis.store().await;
    let mut won_all = won(&store, 1, 6).await;
    won_all.extend(won(&store, 2, 4).await);
    let wins = store.read_wins("a", 100, BLOCK).await.expect("read");
    assert_eq!(order_nos(&wins), won_all);

    let metrics = Metrics::new();
    let before = redis.command_calls().await;
    let created = process_wins(&store, &wins, &metrics)
        .await
        .expect("process");
    let calls = calls_between(&before, &redis.command_calls().await);
    assert_eq!(created, 10);
    // The script's first call in this Redis answers NOSCRIPT and is sent again after its load.
    let loads = calls.get("script|load").copied().unwrap_or(0);
    // Per shard: `create_order.lua` (creates and acknowledges) and `stream_ack.lua` (deletes by
    // one head trim; its XACK finds nothing left to acknowledge).
    assert_eq!(
        calls.get("evalsha").map(|n| n - loads),
        Some(4),
        "{calls:?}"
    );
    assert_eq!(calls.get("xack"), Some(&4), "{calls:?}");
    assert_eq!(calls.get("xtrim"), Some(&2), "{calls:?}");
    assert_eq!(calls.get("xdel"), None, "{calls:?}");
    assert_eq!(
        store
            .reclaim_wins("b", Duration::ZERO, 100)
            .await
            .expect("reclaim"),
        Vec::new(),
        "nothing is left pending"
    );

    // The same batch again (a redelivery): nothing is created, nothing changes.
    let first: Vec<i64> = {
        let mut d = Vec::new();
        for order_no in &won_all {
            d.push(store.order(order_no).await.unwrap().unwrap().deadline_ms);
        }
        d
    };
    assert_eq!(
        process_wins(&store, &wins, &metrics).await.expect("again"),
        0
    );
    for (order_no, deadline) in won_all.iter().zip(first) {
        let order = store.order(order_no).await.unwrap().unwrap();
        assert_eq!(
            (order.status, order.deadline_ms),
            (OrderStatus::PendingPayment, deadline)
        );
    }
}

/// Consumer "a" reads six of ten wins, creates the orders of three and dies before acknowledging
/// any; consumer "b" reclaims and processes them, then reads the rest. Every order is created
/// exactly once, redelivery changes nothing, and nothing is left behind.
async fn a_dropped_consumer_loses_no_win<S: Store>(live: S, crashed: S) {
    let won = won(&live, 1, 10).await;

    let taken = crashed.read_wins("a", 6, BLOCK).await.expect("read");
    assert_eq!(taken.len(), 6);
    let mut created = 0;
    for win in &taken[..3] {
        assert!(crashed.create_order(win, now_ms()).await.expect("create"));
        created += 1;
    }
    let mut first_deadlines = Vec::new();
    for win in &taken[..3] {
        first_deadlines.push(
            live.order(&win.order_no)
                .await
                .expect("order")
                .expect("exists")
                .deadline_ms,
        );
    }
    drop(crashed);

    // A consumer's entries are its own until they have idled for `min_idle`.
    assert_eq!(
        live.reclaim_wins("b", Duration::from_secs(3600), 100)
            .await
            .expect("reclaim"),
        Vec::new()
    );

    let metrics = Metrics::new();
    let reclaimed = live
        .reclaim_wins("b", Duration::ZERO, 100)
        .await
        .expect("reclaim");
    assert_eq!(order_nos(&reclaimed), order_nos(&taken));
    created += process_wins(&live, &reclaimed, &metrics)
        .await
        .expect("process reclaimed");
    let rest = live
        .read_wins("b", 100, BLOCK)
        .await
        .expect("read the rest");
    assert_eq!(rest.len(), 4);
    assert!(
        order_nos(&rest).is_disjoint(&order_nos(&taken)),
        "{rest:?} were delivered before"
    );
    created += process_wins(&live, &rest, &metrics)
        .await
        .expect("process the rest");
    assert_eq!(created, 10, "every win created exactly once");
    assert_eq!(metrics.worker.with_label_values(&["created"]).get(), 7);
    assert_eq!(metrics.worker.with_label_values(&["duplicate"]).get(), 3);

    // Processing every win again (a late redelivery) creates nothing.
    let all: Vec<Win> = taken.iter().chain(&rest).cloned().collect();
    assert_eq!(order_nos(&all), won);
    assert_eq!(
        process_wins(&live, &all, &metrics)
            .await
            .expect("reprocess"),
        0
    );

    for order_no in &won {
        let order = live.order(order_no).await.expect("order").expect("exists");
        assert_eq!(order.status, OrderStatus::PendingPayment, "{order:?}");
        assert!(
            order.deadline_ms >= order.created_ms + PAY_WINDOW_MS,
            "{order:?}"
        );
    }
    for (win, deadline) in taken[..3].iter().zip(first_deadlines) {
        let order = live
            .order(&win.order_no)
            .await
            .expect("order")
            .expect("exists");
        assert_eq!(
            order.deadline_ms, deadline,
            "a redelivered win moved the deadline of {}",
            win.order_no
        );
    }

    assert_eq!(
        live.reclaim_wins("c", Duration::ZERO, 100)
            .await
            .expect("reclaim"),
        Vec::new()
    );
    assert_eq!(
        live.read_wins("c", 100, BLOCK).await.expect("read"),
        Vec::new()
    );
}

/// A second `RedisStore` on the same keys: its own connections, as another process would have.
async fn same_keys(store: &RedisStore, redis: &TestRedis) -> RedisStore {
    let mut config = RedisStoreConfig::new(redis.url.clone());
    config.prefix = store.keys().prefix().to_owned();
    RedisStore::connect(config).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_consumer_loses_no_win_on_redis() {
    let redis = TestRedis::start().await;
    let live = redis.store().await;
    let crashed = same_keys(&live, &redis).await;
    a_dropped_consumer_loses_no_win(live, crashed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_consumer_loses_no_win_on_the_memory_store() {
    let store = MemoryStore::new();
    a_dropped_consumer_loses_no_win(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_worker_reclaims_what_a_dropped_consumer_left() {
    let redis = TestRedis::start().await;
    let store = redis.store().await;
    let won = won(&store, 5, 8).await;
    {
        let crashed = same_keys(&store, &redis).await;
        assert_eq!(
            order_nos(&crashed.read_wins("a", 100, BLOCK).await.expect("read")),
            won
        );
    }

    let worker = WorkerOptions {
        reclaim_idle: Duration::from_millis(300),
        block: Duration::from_millis(50),
        ..WorkerOptions::new(unique_prefix())
    };
    let options = ServerOptions {
        origin_key: Some(TEST_ORIGIN_KEY.to_vec()),
        worker: Some(worker),
        ..ServerOptions::default()
    };
    let w = TestWarehouse::start_with(store.clone(), options).await;

    for order_no in &won {
        let req = OrderReq {
            order_no: order_no.clone(),
            user_id: String::new(),
        };
        let order = store.order(order_no).await.expect("order").expect("exists");
        let req = OrderReq {
            user_id: order.user_id,
            ..req
        };
        eventually(
            &format!("order {order_no} to await payment"),
            PATIENCE,
            || {
                let (mut seckill, req) = (w.seckill(), req.clone());
                async move {
                    let order = seckill.get_order(req).await.ok()?.into_inner();
                    (order.status() == OrderStatusMsg::PendingPayment).then_some(())
                }
            },
        )
        .await;
    }
    let metrics = eventually("the worker to count 8 created orders", PATIENCE, || async {
        let metrics = w.metrics().await;
        (worker_events(&metrics, "created") >= 8).then_some(metrics)
    })
    .await;
    assert_eq!(worker_events(&metrics, "created"), 8, "{metrics}");
    assert_eq!(worker_events(&metrics, "reclaimed"), 8, "{metrics}");
}

// Regression tests for bugs found while writing the tests above; each names its bug.

/// Reads and reclaims one win while another SKU has stock but has never had a sale.
async fn wins_flow_while_a_sku_has_no_sale<S: Store>(store: S) {
    // A SKU sold only through the seed contract: stock, no sale, so no order stream group.
    store.put_stock(1, 5).await.expect("put stock");
    let won = won(&store, 2, 1).await;
    let read = store.read_wins("w", 10, BLOCK).await.expect("read_wins");
    assert_eq!(order_nos(&read), won);
    let reclaimed = store
        .reclaim_wins("w2", Duration::ZERO, 10)
        .await
        .expect("reclaim_wins");
    assert_eq!(order_nos(&reclaimed), won);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_worker_stalls_while_a_sku_has_stock_but_no_sale() {
    wins_flow_while_a_sku_has_no_sale(MemoryStore::new()).await;
    let redis = TestRedis::start().await;
    wins_flow_while_a_sku_has_no_sale(redis.store().await).await;
}

/// The worker races its reclaim tick against its blocking read (`select!`); when the tick wins,
/// the read is dropped, but Redis still holds the `XREADGROUP` blocked and delivers the next wins
/// to it: they sit unacknowledged until reclaimed, `reclaim_idle` (10 s by default) later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclaim_tick_drops_a_blocked_read_and_strands_its_wins() {
    const RECLAIM_IDLE: Duration = Duration::from_secs(2);
    let redis = TestRedis::start().await;
    let store = redis.store().await;
    store.put_stock(1, 10).await.expect("put stock");
    let sale = running_sale(1, 1, 5, 1);
    store.put_sale(&sale).await.expect("put sale");
    let buy = |user: &str| BuyRequest {
        event_id: 1,
        user_id: user.into(),
        qty: 1,
        request_id: "r".into(),
    };

    // A win a crashed consumer left: once the worker has reclaimed it, its tick has fired while
    // its read was blocked, and that dropped read is still waiting in Redis.
    let BuyDecision::Queued { .. } = store.buy(&buy("left"), now_ms()).await.expect("buy") else {
        panic!("not queued")
    };
    assert_eq!(
        same_keys(&store, &redis)
            .await
            .read_wins("crashed", 10, BLOCK)
            .await
            .expect("read")
            .len(),
        1
    );

    let metrics = Metrics::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let options = WorkerOptions {
        reclaim_idle: RECLAIM_IDLE,
        block: Duration::from_secs(6),
        ..WorkerOptions::new("worker")
    };
    let worker = tokio::spawn(run_order_worker(
        store.clone(),
        options,
        metrics.clone(),
        stopped,
    ));
    eventually(
        "the worker to reclaim the crashed consumer's win",
        Duration::from_secs(20),
        || async { (metrics.worker.with_label_values(&["reclaimed"]).get() >= 1).then_some(()) },
    )
    .await;

    let bought_at = now_ms();
    let BuyDecision::Queued { order_no, .. } =
        store.buy(&buy("late"), bought_at).await.expect("buy")
    else {
        panic!("not queued")
    };
    let order = eventually(
        "the late win to be created",
        Duration::from_secs(20),
        || async {
            let order = store.order(&order_no).await.ok()??;
            (order.status == OrderStatus::PendingPayment).then_some(order)
        },
    )
    .await;
    let latency_ms = order.deadline_ms - PAY_WINDOW_MS - bought_at;
    assert!(
        latency_ms < RECLAIM_IDLE.as_millis() as i64,
        "order {order_no} was created {latency_ms} ms after its buy: \
         its win went to a dropped read and waited to be reclaimed"
    );
    stop.send(true).expect("worker running");
    worker.await.expect("worker stopped");
}

/// `read_wins` promises "up to `count` new wins per SKU" (XREADGROUP over several streams
/// applies COUNT to each stream), and both stores keep it.
async fn a_read_holds_at_most_count_wins_per_sku<S: Store>(store: S) {
    won(&store, 1, 3).await;
    won(&store, 2, 3).await;
    let read = store.read_wins("a", 2, BLOCK).await.expect("read");
    for sku in [1, 2] {
        let of_sku = read.iter().filter(|w| w.sku_id == sku).count();
        assert_eq!(
            of_sku, 2,
            "read_wins(count 2) answered {of_sku} wins of sku {sku}: {read:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_wins_takes_at_most_count_per_sku() {
    a_read_holds_at_most_count_wins_per_sku(MemoryStore::new()).await;
    let redis = TestRedis::start().await;
    a_read_holds_at_most_count_wins_per_sku(redis.store().await).await;
}

/// `reclaim_wins` promises "up to `count` wins", in total.
async fn a_reclaim_holds_at_most_count_wins<S: Store>(store: S) {
    won(&store, 1, 3).await;
    won(&store, 2, 3).await;
    assert_eq!(
        store.read_wins("a", 100, BLOCK).await.expect("read").len(),
        6
    );
    let reclaimed = store
        .reclaim_wins("b", Duration::ZERO, 2)
        .await
        .expect("reclaim");
    assert!(
        reclaimed.len() <= 2,
        "reclaim_wins(count 2) answered {} wins: {reclaimed:?}",
        reclaimed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclaim_wins_returns_count_wins_per_sku_instead_of_in_total() {
    a_reclaim_holds_at_most_count_wins(MemoryStore::new()).await;
    let redis = TestRedis::start().await;
    a_reclaim_holds_at_most_count_wins(redis.store().await).await;
}

/// `stream_ack.lua` on a one-group stream: an entry still pending (another consumer's) stays,
/// and so does everything after it that is not acknowledged; what is acknowledged goes, by XDEL
/// above the pending one and by the head trim below it; once the pending one is acknowledged too
/// the stream is empty, and undelivered entries are never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ack_deletes_what_is_acknowledged_and_nothing_pending_or_unread() {
    let redis = TestRedis::start().await;
    let store = redis.store().await;
    let mut conn = store.connection();
    let stream = format!("{}test-stream", store.keys().prefix());
    let group = "g";
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .expect("group");
    let mut ids = Vec::new();
    for n in 0..6 {
        let id: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("n")
            .arg(n)
            .query_async(&mut conn)
            .await
            .expect("xadd");
        ids.push(id);
    }
    // Consumer "a" takes entries 0..2, "b" takes 2..4; 4 and 5 are never delivered.
    for (consumer, count) in [("a", 2), ("b", 2)] {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut conn)
            .await
            .expect("read");
    }
    let left = |conn: RedisConnection| {
        let stream = stream.clone();
        async move {
            let mut conn = conn;
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(&stream)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .expect("xrange");
            entries.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        }
    };
    let pick = |of: &[usize]| of.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>();
    let ack = |of: &[usize]| call::stream_ack(&stream, group, &pick(of));

    // "b" acknowledges entry 3 while "a"'s 0 and 1 are pending: 3 goes, by XDEL.
    assert_eq!(store.run::<i64>(&ack(&[3])).await.expect("ack 3"), 1);
    assert_eq!(left(conn.clone()).await, pick(&[0, 1, 2, 4, 5]));
    // "a" acknowledges 1 (0 still pending): 1 goes; acknowledging it again counts nothing.
    assert_eq!(store.run::<i64>(&ack(&[1])).await.expect("ack 1"), 1);
    assert_eq!(store.run::<i64>(&ack(&[1])).await.expect("again"), 0);
    assert_eq!(left(conn.clone()).await, pick(&[0, 2, 4, 5]));
    // "a" acknowledges 0: the oldest pending is now 2, everything below it is trimmed.
    assert_eq!(store.run::<i64>(&ack(&[0])).await.expect("ack 0"), 1);
    assert_eq!(left(conn.clone()).await, pick(&[2, 4, 5]));
    // "b" acknowledges 2: nothing is pending, the trim stops after the newest acknowledged id,
    // so the undelivered 4 and 5 stay for the next read.
    assert_eq!(store.run::<i64>(&ack(&[2])).await.expect("ack 2"), 1);
    assert_eq!(left(conn.clone()).await, pick(&[4, 5]));
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg("a")
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .expect("read the rest");
    assert_eq!(store.run::<i64>(&ack(&[5, 4])).await.expect("ack 4, 5"), 2);
    assert_eq!(left(conn.clone()).await, Vec::<String>::new());
}
