//! Two `flashgate-warehouse` processes on one Redis Cluster under one crowd: no unit
//! oversold, every win exactly one order whichever process's worker made it, the audit clean;
//! and a master killed with `kill -9` mid-crowd, its replica taking over, the warehouses healing
//! by themselves.
//!
//! What a failover may lose, and what this file therefore asserts: Redis replicates
//! asynchronously, so a buy the old master ran and answered just before it died may be missing on
//! the promoted replica (the buyer holds an order number that does not exist, and the sale's
//! counter may hand that number to someone else). The warehouse does not `WAIT` for replicas, so
//! that window is open. What holds regardless, because each buy is one script whose effects
//! replicate as one `MULTI`/`EXEC` and a replica applies a prefix of its master's history: the
//! ledger is conserved, no unit is sold twice, every order has its stock, every buyer who retries
//! gets one definite answer that matches the store, and the audit is clean. A lost acknowledged
//! win is counted, printed and bounded: it must have been sent before the kill.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashgate_core::proto::flashsale::{
    admin_client::AdminClient, seckill_client::SeckillClient, BuyOutcome, BuyReq, Event,
    PutSkuStockReq,
};
use flashgate_core::stock::{Keys, OrderStatus, Shard};
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{Audit, RedisStore, RedisStoreConfig};
use flashgate_tests::cluster::TestCluster;
use flashgate_tests::{
    assert_ledger, eventually, free_port, unique_prefix, warehouse_bin, WarehouseProcess,
};
use tonic::transport::Channel;

/// The waits of this file: generous for a loaded two-core machine, never reached when healthy.
const PATIENCE: Duration = Duration::from_secs(30);

/// Starts a `flashgate-warehouse` process on free ports with the cluster's `seed`, key `prefix`
/// and consumer name, its metrics served (the test reads its order worker's counters), and
/// waits until it accepts connections. Reclaims after 500 ms idle, so a win whose order creation
/// a failover swallowed is taken up again soon.
async fn start_warehouse(seed: &str, prefix: &str, consumer: &str) -> WarehouseProcess {
    let mut args = store_flags(seed, prefix);
    args.extend(["--consumer", consumer, "--reclaim-idle-ms", "500"].map(str::to_owned));
    WarehouseProcess::spawn(free_port(), &args, &[], Some(free_port())).await
}

/// Orders `warehouse`'s worker created, from its metrics.
async fn orders_created(warehouse: &WarehouseProcess) -> u64 {
    let text = warehouse.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("flashgate_order_worker_total{event=\"created\"} "))
        .map_or(0, |n| n.trim().parse().expect("a counter"))
}

/// The store flags every process of a test shares: the warehouses and the audit.
fn store_flags(seed: &str, prefix: &str) -> Vec<String> {
    [
        "--store",
        "redis",
        "--redis-url",
        seed,
        "--redis-prefix",
        prefix,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The `flashgate-load` binary beside `flashgate-warehouse` (`FLASHGATE_LOAD_BIN` overrides).
fn load_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("FLASHGATE_LOAD_BIN") {
        return bin.into();
    }
    let bin = warehouse_bin().with_file_name("flashgate-load");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p flashgate-load`",
        bin.display()
    );
    bin
}

/// `flashgate-warehouse audit` with the warehouses' store flags: its exit status and report.
async fn audit(seed: &str, prefix: &str) -> (bool, String) {
    let out = tokio::process::Command::new(warehouse_bin())
        .args(store_flags(seed, prefix))
        .arg("audit")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run flashgate-warehouse audit");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The test's own view of the store (the same keys the warehouses use).
async fn store(cluster: &TestCluster, prefix: &str) -> RedisStore {
    let mut config = RedisStoreConfig::new(cluster.seed());
    config.cluster = true;
    config.prefix = prefix.to_owned();
    RedisStore::connect(config)
        .await
        .expect("connect to the cluster")
}

/// Puts `pool` units of `sku` on sale as `event`, open now for an hour, one unit per user.
async fn put_sale(channel: Channel, sku: i64, event: i64, pool: i32, subpools: i32) {
    let mut admin = AdminClient::new(channel);
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: sku,
            num: pool,
        })
        .await
        .expect("put stock");
    let start_ms = now_ms() - 1_000;
    admin
        .put_event(Event {
            id: event,
            sku_id: sku,
            pool,
            start_ms,
            end_ms: start_ms + 3_600_000,
            per_user_limit: 1,
            pay_window_ms: 3_600_000,
            subpools,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .expect("put the sale");
}

/// Waits until the worker has made an order of every win: `expected` orders of `sku`, none
/// still QUEUED. Returns the orders as `(user, order number)`.
async fn settled_orders(
    store: &RedisStore,
    sku: i64,
    expected: usize,
) -> BTreeSet<(String, String)> {
    eventually(
        &format!("{expected} orders of sku {sku}, none QUEUED"),
        PATIENCE,
        || async {
            let snapshot = store.snapshot(sku).await.ok()??;
            let done = snapshot.orders.len() == expected
                && snapshot
                    .orders
                    .iter()
                    .all(|o| o.status == OrderStatus::PendingPayment);
            done.then(|| {
                snapshot
                    .orders
                    .into_iter()
                    .map(|o| (o.user_id, o.order_no))
                    .collect()
            })
        },
    )
    .await
}

/// The first SKU whose `subpools` shards (`{sku:ID}`, `{sku:ID:1}`, …) are served by as many
/// different masters: the split sale then really runs on every master.
async fn sku_on_distinct_masters(cluster: &TestCluster, keys: &Keys, subpools: u32) -> i64 {
    for sku in 1..=1_000 {
        let mut masters = BTreeSet::new();
        for sub in 0..subpools {
            masters.insert(
                cluster
                    .master_of_key(&keys.stock(Shard::new(sku, sub)))
                    .await,
            );
        }
        if masters.len() == subpools as usize {
            return sku;
        }
    }
    panic!("no sku up to 1000 has its {subpools} sub-pools on distinct masters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_warehouse_processes_under_one_crowd_no_oversell_audit_clean() {
    const POOL: i32 = 60;
    const SUBPOOLS: u32 = 3;
    const EVENT: i64 = 1;
    const BUYERS: u64 = 600;
    let started = Instant::now();
    let cluster = TestCluster::spawn(3, 0).await;
    let (seed, prefix) = (cluster.seed(), unique_prefix());
    // A split sale whose three sub-pools live on the three masters, so both processes' buys and
    // the transfers between sub-pools cross every master.
    let sku = sku_on_distinct_masters(&cluster, &Keys::new(prefix.clone()), SUBPOOLS).await;
    let a = start_warehouse(&seed, &prefix, "a").await;
    let b = start_warehouse(&seed, &prefix, "b").await;
    put_sale(a.channel().await, sku, EVENT, POOL, SUBPOOLS as i32).await;

    // One crowd, ten times the pool, spread over both processes (actor i to process i mod 2).
    let out = tokio::process::Command::new(load_bin())
        .args([
            "--target",
            &format!("grpc://127.0.0.1:{},grpc://127.0.0.1:{}", a.port, b.port),
        ])
        .args([
            "--event",
            &EVENT.to_string(),
            "--buyers",
            &BUYERS.to_string(),
        ])
        .args(["--bots", "40", "--bot-requests", "3", "--concurrency", "32"])
        .args(["--label", "crowd", "--json"])
        .output()
        .await
        .expect("run flashgate-load");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "flashgate-load printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "flashgate-load failed: {report}");
    assert_eq!(report["won"], POOL, "exactly the pool, over both: {report}");
    assert_eq!(report["oversold"], 0, "{report}");
    assert_eq!(report["sale"]["remaining"], 0, "{report}");
    assert_eq!(report["sale"]["locked"], POOL, "{report}");
    assert_eq!(report["sale"]["conserved"], 1, "{report}");
    let outcomes = &report["outcomes"];
    let count = |k: &str| outcomes[k].as_u64().unwrap_or(0);
    assert_eq!(
        count("QUEUED") + count("SOLD_OUT"),
        BUYERS,
        "every buyer got a definite answer: {report}"
    );
    let split: Vec<u64> = report["actors_by_target"]
        .as_object()
        .expect("actors by target")
        .values()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert!(
        split.len() == 2 && split.iter().all(|&n| n > 0),
        "the crowd went through both processes: {report}"
    );

    // Both order workers read the same consumer group: every win becomes exactly one order.
    let store = store(&cluster, &prefix).await;
    let orders = settled_orders(&store, sku, POOL as usize).await;
    let users: BTreeSet<&String> = orders.iter().map(|(user, _)| user).collect();
    assert_eq!(users.len(), POOL as usize, "one order per winner");
    let created = eventually("both workers' counters to add up", PATIENCE, || async {
        let created = (orders_created(&a).await, orders_created(&b).await);
        (created.0 + created.1 == POOL as u64).then_some(created)
    })
    .await;
    eprintln!(
        "orders created by worker a: {}, by worker b: {}",
        created.0, created.1
    );

    let (clean, said) = audit(&seed, &prefix).await;
    assert!(clean, "{said}");
    assert!(said.contains(&format!("{POOL} orders")), "{said}");
    eprintln!("{}took {:?}", said, started.elapsed());
}

/// One buy the failover crowd sent: by whom, through which process, when, and the answer.
#[derive(Debug, Clone)]
struct Attempt {
    buyer: usize,
    via: usize,
    sent: Instant,
    answered: Instant,
    answer: Result<(BuyOutcome, String), tonic::Code>,
}

fn buy_req(buyer: usize) -> BuyReq {
    BuyReq {
        event_id: 1,
        user_id: format!("u{buyer}"),
        qty: 1,
        request_id: format!("r{buyer}"),
    }
}

/// A crowd of new buyers, one buy each, on `clients` loops spread over `channels` (one list per
/// process), until `stop`; every attempt is recorded.
fn crowd(
    channels: &[Vec<Channel>],
    clients: usize,
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
) -> tokio::task::JoinSet<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let via = c % channels.len();
        let channel = channels[via][c / channels.len() % channels[via].len()].clone();
        let (stop, attempts, next) = (stop.clone(), attempts.clone(), next.clone());
        tasks.spawn(async move {
            let mut seckill = SeckillClient::new(channel);
            while !stop.load(Ordering::SeqCst) {
                let buyer = next.fetch_add(1, Ordering::SeqCst);
                let sent = Instant::now();
                let answer = seckill
                    .buy(buy_req(buyer))
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        (r.outcome(), r.order_no)
                    })
                    .map_err(|s| s.code());
                attempts.lock().unwrap().push(Attempt {
                    buyer,
                    via,
                    sent,
                    answered: Instant::now(),
                    answer,
                });
            }
        });
    }
    tasks
}

/// Asks every buyer's request again (same user, same request id) until each gets a definite
/// answer: what a client that retries ends up holding. Returns buyer → (outcome, order number).
async fn retry_all(buyers: usize, channel: Channel) -> BTreeMap<usize, (BuyOutcome, String)> {
    const LANES: usize = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..LANES {
        let seckill = SeckillClient::new(channel.clone());
        tasks.spawn(async move {
            let mut finals = Vec::new();
            for buyer in (lane..buyers).step_by(LANES) {
                let reply = eventually(
                    &format!("buyer {buyer}'s retry to be answered"),
                    PATIENCE,
                    || {
                        let mut seckill = seckill.clone();
                        async move { seckill.buy(buy_req(buyer)).await.ok() }
                    },
                )
                .await
                .into_inner();
                finals.push((buyer, (reply.outcome(), reply.order_no)));
            }
            finals
        });
    }
    let mut finals = BTreeMap::new();
    while let Some(lane) = tasks.join_next().await {
        finals.extend(lane.expect("retry lane"));
    }
    finals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_during_load_heals_by_itself_and_the_audit_is_clean() {
    const POOL: i32 = 1_000;
    const SKU: i64 = 7;
    /// Answers seen before the kill; then, after the failover, buys each process must win again.
    const BEFORE_KILL: usize = 120;
    const WON_AFTER: usize = 40;
    let started = Instant::now();
    let mut cluster = TestCluster::spawn(3, 1).await;
    let (seed, prefix) = (cluster.seed(), unique_prefix());
    let mut warehouses = [
        start_warehouse(&seed, &prefix, "a").await,
        start_warehouse(&seed, &prefix, "b").await,
    ];
    put_sale(warehouses[0].channel().await, SKU, 1, POOL, 0).await;
    let doomed = cluster
        .master_of_key(&Keys::new(prefix.clone()).stock(SKU))
        .await;

    let mut channels = Vec::new();
    for w in &warehouses {
        channels.push(vec![w.channel().await, w.channel().await]);
    }
    let (stop, attempts) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let mut tasks = crowd(&channels, 16, stop.clone(), Arc::clone(&attempts));
    let answered = |since: Instant, via: usize, outcome: Option<BuyOutcome>| {
        attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.sent >= since && a.via == via)
            .filter(|a| match (&a.answer, outcome) {
                (Ok((o, _)), Some(want)) => *o == want,
                (Ok(_), None) => true,
                (Err(_), _) => false,
            })
            .count()
    };
    eventually("the crowd to be under way", PATIENCE, || {
        let n = answered(started, 0, None) + answered(started, 1, None);
        async move { (n >= BEFORE_KILL).then_some(()) }
    })
    .await;

    let killed_at = Instant::now();
    cluster.kill9(doomed);
    cluster.wait_failover(doomed).await;
    let healed_at = Instant::now();
    eprintln!(
        "killed master {doomed} (holds sku {SKU}); a replica took over after {:?}",
        healed_at - killed_at
    );
    // The crowd never stopped; each process must win buys sent after the failover, by itself.
    eventually("both processes to win buys again", PATIENCE, || {
        let won = [0, 1].map(|via| answered(healed_at, via, Some(BuyOutcome::Queued)));
        async move { won.iter().all(|&n| n >= WON_AFTER).then_some(()) }
    })
    .await;
    let recovered_after = healed_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}
    for w in &mut warehouses {
        assert!(w.try_wait().is_none(), "a warehouse process exited");
    }
    let attempts = attempts.lock().unwrap().clone();
    assert!(
        attempts
            .iter()
            .any(|a| a.sent > killed_at && a.sent < healed_at),
        "the crowd kept buying during the failover"
    );
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.answer.is_err()).collect();
    let slowest = attempts
        .iter()
        .map(|a| a.answered - a.sent)
        .max()
        .unwrap_or_default();
    eprintln!(
        "crowd: {} buys, {} failed ({:?}), slowest answer {slowest:?}; both processes won \
         {WON_AFTER} buys each within {recovered_after:?} of the failover",
        attempts.len(),
        failed.len(),
        failed
            .iter()
            .fold(BTreeMap::<String, usize>::new(), |mut by, a| {
                *by.entry(format!("{:?}", a.answer.as_ref().unwrap_err()))
                    .or_default() += 1;
                by
            }),
    );

    // Every buyer retries its request until answered; a retry of an answered win must answer
    // the same order, unless that win was lost in the replication window.
    let finals = retry_all(attempts.len(), warehouses[1].channel().await).await;
    let mut lost = Vec::new();
    for a in &attempts {
        let Ok(first @ (BuyOutcome::Queued, _)) = &a.answer else {
            continue;
        };
        if &finals[&a.buyer] != first {
            lost.push(a);
        }
    }
    eprintln!(
        "acknowledged wins missing after the failover (replication window): {}",
        lost.len()
    );
    for a in &lost {
        assert!(
            a.sent < killed_at,
            "buyer {}'s win, sent {:?} after the kill, was lost: only a write the old master ran \
             can be missing; now answered {:?}",
            a.buyer,
            a.sent - killed_at,
            finals[&a.buyer]
        );
    }

    // The store after the failover: what the retries answer is exactly the orders that exist,
    // within the pool, the ledger conserved, every order made by a worker.
    let winners: BTreeSet<(String, String)> = finals
        .iter()
        .filter(|(_, (outcome, _))| *outcome == BuyOutcome::Queued)
        .map(|(buyer, (_, order_no))| (format!("u{buyer}"), order_no.clone()))
        .collect();
    assert!(winners.len() <= POOL as usize, "more winners than the pool");
    let store = store(&cluster, &prefix).await;
    let orders = settled_orders(&store, SKU, winners.len()).await;
    assert_eq!(
        orders, winners,
        "every win is exactly one order, and only those"
    );
    let ledger = assert_ledger(&store, SKU).await;
    assert_eq!(ledger.locked, winners.len() as i64, "{ledger:?}");
    assert_eq!(ledger.pools + ledger.locked, i64::from(POOL), "{ledger:?}");

    // The same flags as the warehouses, the killed node still in the seed list.
    let (clean, said) = audit(&seed, &prefix).await;
    assert!(clean, "{said}");
    assert!(
        said.contains(&format!("{} orders", winners.len())),
        "{said}"
    );
    eprintln!("{}took {:?}", said, started.elapsed());
}
