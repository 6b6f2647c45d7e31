//! The order sink against a real Redis and a private PostgreSQL per test: every win of a crowd
//! becomes exactly one row whose final status is Redis's; the same after a poison entry, a
//! redelivered or reordered change, PostgreSQL restarted mid-drain and the sink `kill -9`ed
//! mid-drain; and peak shaving: a spike accepted at full speed, drained at the set pace, with
//! PostgreSQL down during it; the seed contract's locks, per lock and SKU; and a Redis Cluster,
//! whose change logs are spread over its masters.
//!
//! Nothing sleeps to wait: every wait is `eventually` on the audit or on a row count.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_core::stock::{BuyDecision, BuyRequest, Keys, LockRequest, OrderStatus, Sale, Shard};
use flashgate_core::warehouse::metrics::Metrics;
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{OrderQueue, Orders, RedisStore, Sales, SeedLocks, Stock};
use flashgate_core::warehouse::worker::{process_wins, run_order_worker, WorkerOptions};
use flashgate_orders::change::{self, Entry, StreamId};
use flashgate_orders::{audit, db, sink};
use flashgate_tests::cluster::TestCluster;
use flashgate_tests::{
    eur, eventually, free_port, http1_request, pay_in_full, unique_prefix, TestPostgres, TestRedis,
};
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(60);

fn running_sale(id: i64, sku: i64, pool: i64) -> Sale {
    let now = now_ms();
    Sale {
        id,
        sku,
        pool,
        start_ms: now - 1_000,
        end_ms: now + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 60_000,
        subpools: 1,
        price: 1999,
        currency: eur(),
        limit_counts_held: false,
    }
}

/// `buyers` users buy one unit each, `clients` at a time; answers the winning order numbers and
/// the accept rate (buys decided per second).
async fn crowd(
    store: &RedisStore,
    sale: &Sale,
    buyers: usize,
    clients: usize,
) -> (Vec<String>, f64) {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks = (0..clients).map(|_| {
        let (store, next, event) = (store.clone(), next.clone(), sale.id);
        tokio::spawn(async move {
            let mut won = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= buyers {
                    return won;
                }
                let buy = BuyRequest {
                    event_id: event,
                    user_id: format!("u{i}"),
                    qty: 1,
                    request_id: format!("r{i}"),
                };
                if let BuyDecision::Queued { order_no, .. } =
                    store.buy(&buy, now_ms()).await.expect("buy")
                {
                    won.push(order_no);
                }
            }
        })
    });
    let mut won = Vec::new();
    for t in futures_util::future::join_all(tasks).await {
        won.extend(t.expect("buyer"));
    }
    let rate = buyers as f64 / started.elapsed().as_secs_f64();
    (won, rate)
}

/// Creates every queued order (the warehouse's worker, by hand).
async fn create_all(store: &RedisStore) {
    let metrics = Metrics::new();
    loop {
        let wins = store
            .read_wins("w", 500, Duration::from_millis(5))
            .await
            .expect("read wins");
        if wins.is_empty() {
            return;
        }
        process_wins(store, &wins, &metrics).await.expect("create");
    }
}

async fn pool_for(pg: &TestPostgres) -> deadpool_postgres::Pool {
    let pool = db::pool(&pg.url, 4).expect("pool");
    assert_eq!(db::migrate(&pool).await.expect("migrate"), vec![1, 2]);
    assert!(
        db::migrate(&pool).await.expect("again").is_empty(),
        "migrations run once"
    );
    pool
}

/// Starts an in-process sink on `store`'s Redis (one or a Cluster); answers it and its stop
/// switch.
async fn start_sink(
    store: &RedisStore,
    pool: deadpool_postgres::Pool,
    max_rows_per_s: u32,
) -> (Arc<sink::Sink>, watch::Sender<bool>) {
    let options = sink::Options {
        batch: 500,
        max_rows_per_s: NonZeroU32::new(max_rows_per_s),
        ..Default::default()
    };
    let sink = Arc::new(sink::Sink::new(
        store.connection(),
        pool,
        store.keys().clone(),
        options,
    ));
    let (stop_tx, stop) = watch::channel(false);
    let s = sink.clone();
    tokio::spawn(async move { s.run(stop).await });
    (sink, stop_tx)
}

/// Waits until `store`'s Redis and PostgreSQL agree, nothing in flight; answers the report.
async fn agreed(store: &RedisStore, pg: &TestPostgres) -> audit::Report {
    let pool = db::pool(&pg.url, 1).expect("pool");
    let keys = store.keys().clone();
    eventually("Redis and PostgreSQL agree", PATIENCE, || {
        let (pool, keys) = (pool.clone(), keys.clone());
        let mut conn = store.connection();
        async move {
            let report = audit::audit(&mut conn, &keys, &pool).await.ok()?;
            assert!(report.is_consistent(), "{report}");
            report.is_clean().then_some(report)
        }
    })
    .await;
    audit::audit(&mut store.connection(), &keys, &pool)
        .await
        .unwrap()
}

async fn count(pg: &TestPostgres, sql: &str) -> i64 {
    pg.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

async fn statuses(pg: &TestPostgres) -> BTreeMap<String, i64> {
    pg.client()
        .await
        .query("SELECT status, count(*) FROM orders GROUP BY status", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_win_of_a_crowd_becomes_one_row_with_redis_final_status() {
    let (redis, pg) = (TestRedis::spawn(&[]).await, TestPostgres::start().await);
    let store = redis.store().await;
    let keys = store.keys().clone();
    store.put_stock(1, 2_000).await.unwrap();
    let sale = running_sale(1, 1, 800);
    store.put_sale(&sale).await.unwrap();
    let (won, _) = crowd(&store, &sale, 1_000, 50).await;
    assert_eq!(won.len(), 800, "800 units, 1,000 buyers");
    // 50 cancelled while QUEUED (before the worker), then created, 100 paid, 50 cancelled,
    // the rest expired by the sweeper.
    for no in &won[..50] {
        store
            .cancel(
                no,
                &store.order(no).await.unwrap().unwrap().user_id,
                now_ms(),
            )
            .await
            .unwrap();
    }
    create_all(&store).await;
    for no in &won[50..150] {
        let user = store.order(no).await.unwrap().unwrap().user_id;
        pay_in_full(&store, no, &user, now_ms()).await.unwrap();
    }
    for no in &won[150..200] {
        let user = store.order(no).await.unwrap().unwrap().user_id;
        store.cancel(no, &user, now_ms()).await.unwrap();
    }
    let expired = store.expire_due(now_ms() + 61_000, 10_000).await.unwrap();
    assert_eq!(expired.len(), 600);
    // A poison entry among them: set aside, never blocking the rest.
    let mut conn = store.connection();
    let _: String = redis::cmd("XADD")
        .arg(keys.changes(Shard::from(1)))
        .arg("*")
        .arg("o")
        .arg("1-999999")
        .arg("r")
        .arg("not a record")
        .query_async(&mut conn)
        .await
        .unwrap();

    let pool = pool_for(&pg).await;
    let (sink, _stop) = start_sink(&store, pool.clone(), 0).await;
    let report = agreed(&store, &pg).await;
    assert_eq!(
        (report.orders, report.rows, report.matched),
        (800, 800, 800),
        "{report}"
    );
    assert_eq!(
        statuses(&pg).await,
        BTreeMap::from([
            ("CANCELLED".into(), 100),
            ("EXPIRED".into(), 600),
            ("PAID".into(), 100)
        ])
    );
    // Every change is one event: 800 creations but 50 cancelled first, 100 payments, 100
    // cancellations, 600 expiries.
    assert_eq!(
        count(&pg, "SELECT count(*) FROM order_events").await,
        750 + 100 + 100 + 600
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM dead_letters").await, 1);
    assert_eq!(sink.metrics().poison.get(), 1);
    let len: u64 = redis::cmd("XLEN")
        .arg(keys.changes(Shard::from(1)))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 0, "committed entries are acknowledged and deleted");

    // The same changes delivered again, and an older one after them, change nothing.
    let rows: Vec<(String, i64, i64, String)> = pg
        .client()
        .await
        .query(
            "SELECT e.order_no, e.change_ms, e.change_seq, e.record FROM order_events e",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let again: Vec<change::Change> = rows
        .iter()
        .map(|(no, ms, seq, record)| {
            let fields = vec![
                ("o".to_owned(), Some(no.clone())),
                ("r".to_owned(), Some(record.clone())),
            ];
            match change::read(Shard::from(1), StreamId { ms: *ms, seq: *seq }, &fields) {
                Entry::Change(c) => c,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    let applied = db::apply(
        &pool,
        &db::Batch {
            changes: again.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (applied.rows, applied.events),
        (0, 0),
        "a redelivery changes nothing"
    );
    let mut stale = again
        .iter()
        .find(|c| c.order.status == OrderStatus::Paid)
        .unwrap()
        .clone();
    stale.id = StreamId { ms: 1, seq: 0 };
    stale.order.status = OrderStatus::PendingPayment;
    stale.order.payment = None;
    assert_eq!(
        db::apply(
            &pool,
            &db::Batch {
                changes: vec![stale],
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .rows,
        0,
        "an older change never overwrites"
    );
    let report = agreed(&store, &pg).await;
    assert_eq!(report.matched, 800, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_drain_loses_and_doubles_nothing() {
    let (redis, mut pg) = (TestRedis::spawn(&[]).await, TestPostgres::start().await);
    let store = redis.store().await;
    store.put_stock(2, 3_000).await.unwrap();
    let sale = running_sale(2, 2, 2_000);
    store.put_sale(&sale).await.unwrap();
    let (won, _) = crowd(&store, &sale, 2_000, 50).await;
    create_all(&store).await;
    let pool = pool_for(&pg).await;
    let (_sink, _stop) = start_sink(&store, pool, 500).await;
    eventually("some rows", PATIENCE, || async {
        (count(&pg, "SELECT count(*) FROM orders").await >= 300).then_some(())
    })
    .await;
    pg.restart().await;
    let report = agreed(&store, &pg).await;
    assert_eq!(
        (report.orders, report.rows),
        (won.len(), won.len()),
        "{report}"
    );
}

/// The sink binary (built beside this test: `cargo build -p flashgate-orders`).
fn sink_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("flashgate-orders");
    assert!(
        bin.exists(),
        "{} is missing: cargo build -p flashgate-orders",
        bin.display()
    );
    bin
}

/// The sink binary on the Redis `redis_args` name (`--redis-url …`, and `--redis-cluster` for a
/// cluster), paced at `rate` rows/s, serving /metrics and /healthz on `port`.
fn spawn_sink(redis_args: &[&str], keys: &Keys, pg: &TestPostgres, rate: u32, port: u16) -> Child {
    Command::new(sink_bin())
        .args(redis_args)
        .args(["--redis-prefix", keys.prefix()])
        .args([
            "--orders-db",
            &pg.url,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--lag-threshold-s", "0.5"])
        .args(["--max-rows-per-s", &rate.to_string(), "--batch", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flashgate-orders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_killed_mid_drain_and_restarted_loses_and_doubles_nothing() {
    let (redis, pg) = (TestRedis::spawn(&[]).await, TestPostgres::start().await);
    let store = redis.store().await;
    let keys = store.keys().clone();
    store.put_stock(3, 3_000).await.unwrap();
    let sale = running_sale(3, 3, 2_000);
    store.put_sale(&sale).await.unwrap();
    let (won, _) = crowd(&store, &sale, 2_000, 50).await;
    create_all(&store).await;
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut first = spawn_sink(&["--redis-url", &redis.url], &keys, &pg, 400, port);
    eventually("some rows", PATIENCE, || async {
        let n = tokio_postgres_count(&pg).await;
        (n >= 400).then_some(())
    })
    .await;
    // A backlog older than the threshold: /healthz says so, and the metrics show the queue.
    let health = http1_request(addr, "GET", "/healthz", &[], &[]).await;
    let body = String::from_utf8_lossy(&health.body).into_owned();
    assert_eq!(health.status, 503, "{body}");
    assert!(body.starts_with("lagging"), "{body}");
    let metrics = http1_request(addr, "GET", "/metrics", &[], &[]).await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        metrics.contains("flashgate_sink_queue_depth{shard=\"3\"}"),
        "{metrics}"
    );
    first.kill().expect("kill -9");
    first.wait().unwrap();
    let mut second = spawn_sink(&["--redis-url", &redis.url], &keys, &pg, 0, port);
    let report = agreed(&store, &pg).await;
    eventually("/healthz ok once drained", PATIENCE, || async {
        tokio::net::TcpStream::connect(addr).await.ok()?;
        let health = http1_request(addr, "GET", "/healthz", &[], &[]).await;
        (health.status == 200).then_some(())
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(
        (report.orders, report.rows),
        (won.len(), won.len()),
        "{report}"
    );
}

async fn tokio_postgres_count(pg: &TestPostgres) -> i64 {
    match tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
                .query_one("SELECT count(*) FROM orders", &[])
                .await
                .map(|r| r.get(0))
                .unwrap_or(0)
        }
        Err(_) => 0,
    }
}

/// A spike of 5,000 wins with the worker running and the sink at 500 rows/s: accepted at full
/// speed (far faster than the sink writes), drained in about 10 s; then the same with
/// PostgreSQL down for the spike: the buys do not notice, the rows arrive once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_is_accepted_at_full_speed_and_drained_at_the_set_pace() {
    let (redis, mut pg) = (TestRedis::spawn(&[]).await, TestPostgres::start().await);
    let store = redis.store().await;
    let (_worker_stop, worker_rx) = watch::channel(false);
    tokio::spawn(run_order_worker(
        store.clone(),
        WorkerOptions::new("w"),
        Metrics::new(),
        worker_rx,
    ));
    store.put_stock(4, 20_000).await.unwrap();
    let sale = running_sale(4, 4, 5_000);
    store.put_sale(&sale).await.unwrap();
    let pool = pool_for(&pg).await;
    let (_sink, _stop) = start_sink(&store, pool, 500).await;

    let (won, accept_rate) = crowd(&store, &sale, 5_000, 50).await;
    assert_eq!(won.len(), 5_000);
    let spike_over = Instant::now();
    agreed(&store, &pg).await;
    let drain = spike_over.elapsed().as_secs_f64();
    let drain_rate = 5_000.0 / drain;
    eprintln!("accept {accept_rate:.0} buys/s, drain {drain_rate:.0} rows/s in {drain:.1} s");
    assert!(
        (6.0..25.0).contains(&drain),
        "drained in {drain:.1} s at 500 rows/s"
    );
    assert!(drain_rate < 700.0, "the pace holds: {drain_rate:.0} rows/s");
    assert!(
        accept_rate > 2.0 * drain_rate,
        "accepted at {accept_rate:.0}/s, not the sink's pace"
    );

    // PostgreSQL down for the next spike.
    pg.stop().await;
    let sale = running_sale(5, 4, 5_000);
    store.put_sale(&sale).await.unwrap();
    let (won, rate_down) = crowd(&store, &sale, 5_000, 50).await;
    assert_eq!(won.len(), 5_000);
    eprintln!("accept with PostgreSQL down {rate_down:.0} buys/s");
    assert!(
        rate_down > 2.0 * drain_rate,
        "buys unaffected: {rate_down:.0}/s"
    );
    pg.restart().await;
    let report = agreed(&store, &pg).await;
    assert_eq!(report.rows, 10_000, "{report}");
}

/// A Redis Cluster: three SKUs whose change logs live on three different masters, a sale on
/// each; the sink binary with `--redis-cluster` carries every win of every master into
/// PostgreSQL with Redis's final status (payments and cancellations included), and the audit
/// binary, reading the same cluster, finds both agreeing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_s_change_logs_on_every_master_become_rows() {
    let (cluster, pg) = (TestCluster::spawn(3, 0).await, TestPostgres::start().await);
    let store = cluster.store(&unique_prefix()).await;
    let keys = store.keys().clone();
    let skus = cluster
        .keys_on_distinct_masters(|sku| keys.changes(Shard::from(sku)), 3)
        .await;
    let mut won = Vec::new();
    for (i, &sku) in skus.iter().enumerate() {
        store.put_stock(sku, 500).await.unwrap();
        let sale = running_sale(i as i64 + 1, sku, 200);
        store.put_sale(&sale).await.unwrap();
        won.extend(crowd(&store, &sale, 300, 20).await.0);
    }
    assert_eq!(won.len(), 600, "200 units on each of three masters");
    create_all(&store).await;
    for (i, no) in won.iter().enumerate() {
        let user = store.order(no).await.unwrap().unwrap().user_id;
        match i % 3 {
            0 => drop(pay_in_full(&store, no, &user, now_ms()).await.unwrap()),
            1 => drop(store.cancel(no, &user, now_ms()).await.unwrap()),
            _ => {}
        }
    }
    pool_for(&pg).await;
    let seed = cluster.seed();
    let cluster_args = ["--redis-url", seed.as_str(), "--redis-cluster"];
    let mut sink = spawn_sink(&cluster_args, &keys, &pg, 0, free_port());
    let report = agreed(&store, &pg).await;
    sink.kill().unwrap();
    sink.wait().unwrap();
    assert_eq!(
        (report.orders, report.rows, report.matched),
        (600, 600, 600),
        "{report}"
    );
    assert_eq!(
        statuses(&pg).await,
        BTreeMap::from([
            ("CANCELLED".into(), 200),
            ("PAID".into(), 200),
            ("PENDING_PAYMENT".into(), 200)
        ])
    );
    for sku in &skus {
        let sql = format!("SELECT count(*) FROM orders WHERE sku_id = {sku}");
        assert_eq!(count(&pg, &sql).await, 200, "the rows of SKU {sku}");
    }
    let audit = Command::new(sink_bin())
        .args(cluster_args)
        .args(["--redis-prefix", keys.prefix(), "--orders-db", &pg.url])
        .args(["audit", "--clean"])
        .output()
        .expect("flashgate-orders audit");
    let printed = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{printed}");
    assert!(printed.contains("matched 600"), "{printed}");
}

/// The seed contract's locks reach PostgreSQL per lock and SKU, and `seed_locks` shows each
/// lock as a whole: finished, released, a lock that failed on a short SKU (ABORTED, every SKU
/// given back or never taken), the same lock taken again once the stock is there (its next
/// attempt, LOCKED), and one still held; the audit matches every part with its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_contract_locks_become_rows_per_sku_and_a_status_per_lock() {
    let (redis, pg) = (TestRedis::spawn(&[]).await, TestPostgres::start().await);
    let store = redis.store().await;
    for sku in [11, 12, 13] {
        store.put_stock(sku, 10).await.unwrap();
    }
    let lock = |order_id: i64, sku_nums: &[(i64, i64)]| LockRequest {
        order_id,
        order_no: format!("shop-{order_id}"),
        consignee: "Ann".into(),
        phone: "555".into(),
        address: "1 Main St".into(),
        note: String::new(),
        sku_nums: sku_nums.iter().copied().collect(),
    };
    store.lock(&lock(1, &[(11, 2), (12, 3)])).await.unwrap();
    store.unlock(1, true).await.unwrap();
    store.lock(&lock(2, &[(11, 1), (13, 1)])).await.unwrap();
    store.unlock(2, false).await.unwrap();
    let short = lock(3, &[(12, 1), (13, 20)]);
    store.lock(&short).await.expect_err("13 has 10 units");
    store.lock(&lock(4, &[(11, 1)])).await.unwrap();
    let aborted = lock(5, &[(11, 1), (12, 50)]);
    store.lock(&aborted).await.expect_err("12 has 7 units");

    let pool = pool_for(&pg).await;
    let (_sink, _stop) = start_sink(&store, pool.clone(), 0).await;
    let report = agreed(&store, &pg).await;
    assert_eq!(
        (report.lock_parts, report.lock_rows, report.locks_matched),
        (9, 9, 9),
        "{report}"
    );
    let seed_locks = || async {
        pg.client()
            .await
            .query(
                "SELECT order_id, attempt, skus, units, status FROM seed_locks ORDER BY order_id",
                &[],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                let row: (i64, i64, i64, i64, String) =
                    (r.get(0), r.get(1), r.get(2), r.get::<_, i64>(3), r.get(4));
                row
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seed_locks().await,
        vec![
            (1, 1, 2, 5, "FINISHED".into()),
            (2, 1, 2, 2, "RELEASED".into()),
            (3, 1, 2, 21, "ABORTED".into()),
            (4, 1, 1, 1, "LOCKED".into()),
            (5, 1, 2, 51, "ABORTED".into()),
        ]
    );

    // The failed lock again once 13 has the stock: its next attempt, LOCKED on both SKUs.
    store.put_stock(13, 30).await.unwrap();
    store.lock(&short).await.unwrap();
    agreed(&store, &pg).await;
    assert_eq!(seed_locks().await[2], (3, 2, 2, 21, "LOCKED".into()));
    // Every step is one event: attempt 1 took 12, then its roll-back released 12 and left a
    // tombstone on 13; attempt 2 took both.
    let steps = count(
        &pg,
        "SELECT count(*) FROM stock_lock_events WHERE order_id = 3",
    )
    .await;
    assert_eq!(steps, 5);
}
