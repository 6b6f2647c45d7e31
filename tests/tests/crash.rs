//! Crash tests of durable acknowledgement (`--durability`): a spike of Buys and PayOrders
//! against the real warehouse binary on a real `redis-server` with its AOF in a temp dir, a
//! `kill -9` of redis-server in the middle of it (no shutdown, no last flush), redis-server
//! started again from its AOF on the same port, and then: with `fsync`, every Buy answered
//! QUEUED and every PayOrder answered OK before the kill is there (the order exists with that
//! status or a later one), the ledger is conserved and the audit is clean. With `relaxed`
//! (`appendfsync everysec`) a loss of up to a second is allowed and printed, never a failure;
//! a conservation break or an unclean audit still fails it. And the warehouse refuses to start
//! with `fsync` against a Redis that cannot give it.
//!
//! Why a kill of redis-server and not of the machine: this is the crash a test can cause. Redis
//! `write()`s its AOF buffer every event-loop turn whatever `appendfsync` says, so a killed
//! process loses only what had not been written yet (a write Redis postponed behind a slow
//! fsync); a power loss also loses what the kernel had not fsynced, which is what `everysec`
//! leaves for up to a second and `always` never does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashgate_core::proto::flashsale::admin_client::AdminClient;
use flashgate_core::proto::flashsale::seckill_client::SeckillClient;
use flashgate_core::proto::flashsale::{
    BuyOutcome, BuyReq, Event, OrderReq, OrderStatus, PayOrderReq, PutSkuStockReq,
};
use flashgate_core::warehouse::audit;
use flashgate_core::warehouse::env;
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{Durability, Guarantee, RedisStore, RedisStoreConfig};
use flashgate_tests::cluster::TestCluster;
use flashgate_tests::process::warehouse_bin;
use flashgate_tests::wait::{poll_until, Pace};
use flashgate_tests::{
    assert_ledger, eventually, free_port, unique_prefix, TestRedis, WarehouseProcess,
};
use tonic::transport::Channel;
use tonic::Code;

const EVENT: i64 = 1;
const SKU: i64 = 7001;
const STOCK: i32 = 5_000;
const PRICE: i64 = 1999;
/// Concurrent buyers in the spike (each its own connection).
const BUYERS: usize = 24;
/// The spike runs until this many Buys were answered QUEUED and ...
const BUYS_BEFORE_KILL: usize = 300;
/// ... this many PayOrders OK; then redis-server is killed while it goes on.
const PAYS_BEFORE_KILL: usize = 100;

/// What the spike was told before the kill: order → (user, paid).
type Acknowledged = Arc<Mutex<HashMap<String, (String, bool)>>>;

/// Puts the stock and the sale (open now, one hour, one unit per user).
async fn put_sale(channel: Channel) {
    let mut admin = AdminClient::new(channel);
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: SKU,
            num: STOCK,
        })
        .await
        .expect("put stock");
    let start_ms = now_ms() - 1_000;
    let event = Event {
        id: EVENT,
        sku_id: SKU,
        pool: STOCK,
        start_ms,
        end_ms: start_ms + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 600_000,
        subpools: 0,
        price: PRICE,
        currency: "EUR".into(),
        ..Default::default()
    };
    admin.put_event(event).await.expect("put event");
}

/// One buyer of the spike: buys as new users, one after another, and pays each order as the
/// payment side would (retrying while the order worker is still creating it), recording every
/// answer that acknowledges a write, until told to stop or Redis is gone.
async fn buyer(n: usize, channel: Channel, acked: Acknowledged, stop: Arc<AtomicBool>) {
    let mut seckill = SeckillClient::new(channel);
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let user = format!("u{n}-{i}");
        let buy = BuyReq {
            event_id: EVENT,
            user_id: user.clone(),
            qty: 1,
            request_id: format!("r-{user}"),
        };
        let reply = match seckill.buy(buy).await {
            Ok(r) => r.into_inner(),
            Err(_) => return,
        };
        assert_eq!(reply.outcome(), BuyOutcome::Queued, "{user}: {reply:?}");
        acked
            .lock()
            .unwrap()
            .insert(reply.order_no.clone(), (user.clone(), false));
        // Pay every other order: the rest stay PENDING_PAYMENT (locked units).
        if i % 2 == 1 {
            continue;
        }
        let pay = PayOrderReq {
            order_no: reply.order_no.clone(),
            user_id: String::new(),
            payment_id: format!("pay-{}", reply.order_no),
            amount: PRICE,
        };
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match seckill.pay_order(pay.clone()).await {
                Ok(_) => {
                    acked.lock().unwrap().get_mut(&reply.order_no).unwrap().1 = true;
                    break;
                }
                // Still QUEUED: the order worker has not created it yet.
                Err(s) if s.code() == Code::FailedPrecondition => tokio::task::yield_now().await,
                Err(_) => return,
            }
        }
    }
}

/// How many acknowledged Buys and PayOrders could not be found after the restart.
#[derive(Debug, Default)]
struct Loss {
    buys: usize,
    pays: usize,
}

/// Runs the spike, kills redis-server in its middle, restarts it from its AOF, and answers
/// what of the acknowledged writes is missing once the warehouse had `patience` to find it.
async fn spike_kill_restart(redis: &mut TestRedis, durability: &str, patience: Duration) -> Loss {
    let prefix = unique_prefix();
    let port = free_port();
    let warehouse = WarehouseProcess::spawn(
        port,
        &[
            "--store",
            "redis",
            "--redis-url",
            &redis.url,
            "--redis-prefix",
            &prefix,
            // A win delivered to the worker but not acknowledged before the kill is taken again
            // soon after the restart.
            "--reclaim-idle-ms",
            "500",
        ],
        &[(env::DURABILITY, durability)],
        None,
    )
    .await;
    put_sale(warehouse.channel().await).await;

    let acked: Acknowledged = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut buyers = Vec::new();
    for n in 0..BUYERS {
        let channel = warehouse.channel().await;
        buyers.push(tokio::spawn(buyer(n, channel, acked.clone(), stop.clone())));
    }
    let counts = |acked: &Acknowledged| {
        let acked = acked.lock().unwrap();
        (
            acked.len(),
            acked.values().filter(|(_, paid)| *paid).count(),
        )
    };
    eventually(
        "the spike to be under way",
        Duration::from_secs(120),
        || {
            let (buys, pays) = counts(&acked);
            async move { (buys >= BUYS_BEFORE_KILL && pays >= PAYS_BEFORE_KILL).then_some(()) }
        },
    )
    .await;
    // Mid-spike: every buyer has a call in flight or about to be.
    redis.kill9();
    stop.store(true, Ordering::SeqCst);
    for b in buyers {
        b.await.expect("a buyer panicked");
    }
    // The acknowledgements are final now: a call answered after the kill failed.
    let acked = acked.lock().unwrap().clone();
    let pays = acked.values().filter(|(_, paid)| *paid).count();
    eprintln!(
        "{durability}: killed redis-server with {} Buys QUEUED and {pays} PayOrders OK acknowledged",
        acked.len()
    );
    redis.start_again().await;

    // The same warehouse reconnects by itself; its order worker finishes the wins left queued.
    let mut seckill = SeckillClient::new(warehouse.channel().await);
    let missing = |seckill: &mut SeckillClient<Channel>| {
        let mut seckill = seckill.clone();
        let acked = acked.clone();
        async move {
            let mut loss = Loss::default();
            for (order_no, (user, paid)) in &acked {
                let req = OrderReq {
                    order_no: order_no.clone(),
                    user_id: user.clone(),
                };
                let status = match seckill.get_order(req).await {
                    Ok(o) => o.into_inner().status(),
                    Err(s) if s.code() == Code::NotFound => OrderStatus::Unspecified,
                    Err(_) => return None,
                };
                // PENDING_PAYMENT or later: the worker's work is done for this one.
                let created = matches!(status, OrderStatus::PendingPayment | OrderStatus::Paid);
                if status == OrderStatus::Unspecified {
                    loss.buys += 1;
                    loss.pays += usize::from(*paid);
                } else if *paid && status != OrderStatus::Paid {
                    loss.pays += 1;
                } else if !created {
                    return None;
                }
            }
            Some(loss)
        }
    };
    let deadline = tokio::time::Instant::now() + patience;
    let loss = loop {
        let loss = poll_until(
            "the restarted warehouse to read every acknowledged order",
            Duration::from_secs(60),
            Pace::Backoff,
            || missing(&mut seckill),
        )
        .await;
        if (loss.buys == 0 && loss.pays == 0) || tokio::time::Instant::now() >= deadline {
            break loss;
        }
        tokio::task::yield_now().await;
    };

    // Conservation and the audit, on the restarted Redis, once the worker is done with the
    // wins it had left (the audit is safe on a live store either way).
    let mut config = RedisStoreConfig::new(redis.url.clone());
    config.prefix = prefix;
    let store = RedisStore::connect(config).await.expect("connect");
    let ledger = assert_ledger(&store, SKU).await;
    eprintln!("{durability}: ledger after the restart: {ledger:?}");
    let report = poll_until(
        "the audit to be clean",
        Duration::from_secs(30),
        Pace::Backoff,
        || {
            let store = store.clone();
            async move {
                let report = audit::run(&store).await.ok()?;
                report.is_clean().then_some(report)
            }
        },
    )
    .await;
    eprint!("{durability}: {}", audit::render(&report));
    loss
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_loses_no_acknowledged_buy_or_payment_to_a_kill_9_of_redis() {
    let mut redis = TestRedis::spawn_aof("always").await;
    let loss = spike_kill_restart(&mut redis, "fsync", Duration::from_secs(20)).await;
    assert_eq!(
        (loss.buys, loss.pays),
        (0, 0),
        "acknowledged writes lost with --durability fsync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_says_how_much_a_kill_9_of_redis_lost() {
    let mut redis = TestRedis::spawn_aof("everysec").await;
    // A lost write is allowed here: only say how much (within a few seconds of patience).
    let loss = spike_kill_restart(&mut redis, "relaxed", Duration::from_secs(5)).await;
    println!(
        "relaxed (appendfsync everysec): lost {} acknowledged Buys and {} acknowledged PayOrders \
         to a kill -9 of redis-server",
        loss.buys, loss.pays
    );
    eprintln!(
        "relaxed (appendfsync everysec): lost {} acknowledged Buys and {} acknowledged PayOrders",
        loss.buys, loss.pays
    );
}

/// `fsync` on `appendfsync everysec`: a Redis with WAITAOF (7.2+) is accepted and must lose
/// nothing acknowledged (each write waits for WAITAOF); one without is refused. On this
/// machine's Redis 7.0 that is the refusal; put a 7.2+ `redis-server` first on PATH to run the
/// crash through WAITAOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_on_everysec_waits_for_waitaof_where_redis_has_it() {
    let mut redis = TestRedis::spawn_aof("everysec").await;
    let client = redis::Client::open(redis.url.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let version = flashgate_core::warehouse::store::durability::parse_version(&info);
    if version.is_some_and(|v| v < (7, 2)) {
        let err = refused_start(&redis.url).await;
        assert!(err.contains("without WAITAOF"), "{err}");
        return;
    }
    let loss = spike_kill_restart(&mut redis, "fsync", Duration::from_secs(20)).await;
    eprintln!("fsync through WAITAOF on Redis {version:?}: lost {loss:?}");
    assert_eq!((loss.buys, loss.pays), (0, 0), "lost with WAITAOF");
}

/// Starts the serving binary with `--durability fsync` against `url` and answers its stderr
/// once it exited; fails if it is still serving after a generous while.
async fn refused_start(url: &str) -> String {
    let port = free_port().to_string();
    let child = tokio::process::Command::new(warehouse_bin())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            "off",
        ])
        .args(["--store", "redis", "--redis-url", url])
        .env(env::DURABILITY, "fsync")
        .env_remove(env::EDGE_LISTEN)
        .env_remove(env::INTERNAL_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn flashgate-warehouse");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the warehouse started with --durability fsync on a Redis that cannot give it")
        .expect("wait for the warehouse");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "exited 0: {stderr}");
    stderr
}

#[tokio::test]
async fn fsync_refuses_a_redis_with_appendfsync_everysec_or_appendonly_no() {
    let everysec = TestRedis::spawn_aof("everysec").await;
    let err = refused_start(&everysec.url).await;
    assert!(
        err.contains("appendfsync everysec") && err.contains("CONFIG SET appendfsync always"),
        "{err}"
    );
    let scratch = TestRedis::spawn(&[]).await;
    let err = refused_start(&scratch.url).await;
    assert!(
        err.contains("appendonly no") && err.contains("--durability relaxed"),
        "{err}"
    );
}

/// `fsync` on a Redis Cluster reads every master: refused while any runs `everysec` (the message
/// names that master), accepted once every master runs `appendfsync always`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_on_a_cluster_needs_appendfsync_always_on_every_master() {
    let cluster = TestCluster::spawn(3, 0).await;
    let connect = || {
        let mut config = RedisStoreConfig::new(cluster.seed());
        config.cluster = true;
        config.prefix = unique_prefix();
        config.durability = Durability::Fsync;
        RedisStore::connect(config)
    };
    let set_always = |port: u16| async move {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to a master");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendfsync")
            .arg("always")
            .query_async(&mut conn)
            .await
            .expect("CONFIG SET");
    };
    let ports = cluster.master_ports();
    let (last, rest) = ports.split_last().expect("masters");
    for port in rest {
        set_always(*port).await;
    }
    let err = connect()
        .await
        .expect_err("fsync accepted on everysec")
        .to_string();
    assert!(
        err.contains("appendfsync everysec") && err.contains(&format!(":{last}")),
        "{err}"
    );
    for port in rest {
        assert!(
            !err.contains(&format!(":{port}")),
            "names a master that is fine: {err}"
        );
    }
    set_always(*last).await;
    let store = connect()
        .await
        .expect("every master runs appendfsync always");
    assert_eq!(*store.guarantee(), Guarantee::FsyncPerReply);
}
