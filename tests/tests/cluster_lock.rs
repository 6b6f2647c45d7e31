//! The seed-contract lock (`SKuStockLock` / `SkuStockUnlock`) as per-SKU steps journaled under
//! the order id: on a real Redis Cluster (3 masters, started per test) with the SKUs on three
//! different masters, the real `flashgate-warehouse` binary is killed between two steps
//! (`FLASHGATE_FAULT_CRASH_AT`) and the lock is repaired — rolled back by the restarted
//! warehouse's sweeper, or an unlock rolled forward by `audit --repair` — without a unit leaked,
//! taken twice or half-locked; the same request then behaves as on one Redis.
//!
//! And in-process, on one Redis (or the cluster the test command names): locks, unlocks and
//! repairs with no lease race on a few order ids, so repairs interrupt sagas at arbitrary points;
//! whatever interleaving happens, no step ever contradicts its journal, every lock answered OK
//! exists, and once everything has settled the audit is clean.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use flashgate_core::proto::warehouse::warehouse_client::WarehouseClient;
use flashgate_core::proto::warehouse::SkuStockUnlockReq;
use flashgate_core::stock::call::{self, Call};
use flashgate_core::stock::lock::{self as saga, Journal, JournalStatus};
use flashgate_core::stock::{Keys, Ledger, LockRequest, LockStatus, StockError};
use flashgate_core::warehouse::audit;
use flashgate_core::warehouse::env::FAULT_CRASH_AT;
use flashgate_core::warehouse::store::{
    RedisStore, RedisStoreConfig, SeedLocks, Stock, StoreError,
};
use flashgate_tests::cluster::TestCluster;
use flashgate_tests::{
    assert_ledger, blocking_runtime_with_workers, eventually, free_port, lock_req, run_property,
    unique_prefix, warehouse_bin, TestRedis, WarehouseProcess,
};
use proptest::prelude::*;
use tonic::Code;

const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until `warehouse` has died by itself, and asserts it did not exit cleanly.
async fn wait_crashed(mut warehouse: WarehouseProcess) {
    let status = eventually(
        "the warehouse to crash at its crash point",
        PATIENCE,
        || {
            let exited = warehouse.try_wait();
            async move { exited }
        },
    )
    .await;
    assert!(!status.success(), "the warehouse exited cleanly: {status}");
}

/// A cluster, a key prefix of this test's own, a store on both, and three SKUs whose keys live
/// on three different masters, each with `stock` units.
struct Setup {
    cluster: TestCluster,
    prefix: String,
    store: RedisStore,
    skus: Vec<i64>,
}

impl Setup {
    async fn new(stock: i64) -> Self {
        let cluster = TestCluster::spawn(3, 0).await;
        let prefix = unique_prefix();
        let keys = Keys::new(prefix.clone());
        let skus = cluster
            .keys_on_distinct_masters(|id| keys.stock(id), 3)
            .await;
        let mut config = RedisStoreConfig::new(cluster.seed());
        config.cluster = true;
        config.prefix = prefix.clone();
        let store = RedisStore::connect(config)
            .await
            .expect("connect to the test cluster");
        for &sku in &skus {
            store.put_stock(sku, stock).await.expect("put stock");
        }
        Self {
            cluster,
            prefix,
            store,
            skus,
        }
    }

    /// The flags every run of the binary against this cluster and prefix takes.
    fn store_args(&self) -> Vec<String> {
        [
            "--store",
            "redis",
            "--redis-url",
            &self.cluster.seed(),
            "--redis-cluster",
            "--redis-prefix",
            &self.prefix,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    async fn ledgers(&self) -> Vec<Ledger> {
        let mut ledgers = Vec::new();
        for &sku in &self.skus {
            ledgers.push(assert_ledger(&self.store, sku).await);
        }
        ledgers
    }

    /// `flashgate-warehouse audit [extra]`: (exit status, stdout).
    fn audit(&self, extra: &[&str]) -> (bool, String) {
        let output = Command::new(warehouse_bin())
            .arg("audit")
            .args(extra)
            .args(self.store_args())
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit())
            .output()
            .expect("run flashgate-warehouse audit");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    async fn journal(&self, order_id: i64) -> (JournalStatus, i64) {
        let records = self.store.lock_records().await.expect("lock records");
        let j = records
            .journals
            .iter()
            .find(|j| j.order_id == order_id)
            .expect("the order has a journal");
        (j.status, j.attempt)
    }
}

fn unlock_req(order_id: i64, finish: bool) -> SkuStockUnlockReq {
    SkuStockUnlockReq { order_id, finish }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_killed_after_its_first_take_is_rolled_back_by_the_sweeper_and_retries_cleanly() {
    let setup = Setup::new(10).await;
    let s = &setup.skus;
    let nums = [2, 3, 1];
    let req = lock_req(77, &[(s[0], nums[0]), (s[1], nums[1]), (s[2], nums[2])]);
    let port = free_port();

    let crashing = WarehouseProcess::spawn(
        port,
        &setup.store_args(),
        &[(FAULT_CRASH_AT, "lock.after_take")],
        None,
    )
    .await;
    let died = WarehouseClient::new(crashing.channel().await)
        .s_ku_stock_lock(req.clone())
        .await;
    assert!(died.is_err(), "the warehouse answered {died:?}");
    wait_crashed(crashing).await;

    // Stopped half-way: the first SKU (lowest id) holds its units, the others none.
    let first = s.iter().enumerate().min_by_key(|(_, sku)| **sku).unwrap().0;
    let locked: Vec<i64> = setup.ledgers().await.iter().map(|l| l.locked).collect();
    let mut expected = vec![0; 3];
    expected[first] = i64::from(nums[first]);
    assert_eq!(locked, expected, "SKUs {s:?}");
    assert_eq!(setup.journal(77).await, (JournalStatus::Pending, 1));
    let (clean, said) = setup.audit(&[]);
    assert!(!clean && said.contains("order_id 77 is PENDING"), "{said}");

    // Any warehouse's sweeper rolls it back once it has stood still for the lease.
    let mut args = setup.store_args();
    args.extend(["--repair-after-ms".into(), "50".into()]);
    let warehouse = WarehouseProcess::start(port, &args).await;
    eventually("the sweeper to roll the lock back", PATIENCE, || async {
        (setup.journal(77).await == (JournalStatus::Aborted, 1)).then_some(())
    })
    .await;
    for ledger in setup.ledgers().await {
        assert_eq!((ledger.available, ledger.locked), (10, 0), "{ledger:?}");
    }
    let (clean, said) = setup.audit(&[]);
    assert!(clean, "{said}");
    assert!(
        setup.store.locks().await.unwrap().is_empty(),
        "a failed lock leaves nothing"
    );

    // The same request again: all three SKUs, at a new attempt; then idempotent.
    let mut wh = WarehouseClient::new(warehouse.channel().await);
    wh.s_ku_stock_lock(req.clone())
        .await
        .expect("the retry locks");
    assert_eq!(setup.journal(77).await, (JournalStatus::Locked, 2));
    let after = setup.ledgers().await;
    wh.s_ku_stock_lock(req.clone())
        .await
        .expect("a duplicate is OK");
    assert_eq!(setup.ledgers().await, after);
    for (ledger, n) in after.iter().zip(nums) {
        assert_eq!(
            (ledger.available, ledger.locked),
            (10 - i64::from(n), i64::from(n))
        );
    }
    let other = wh
        .s_ku_stock_lock(lock_req(77, &[(s[0], 1)]))
        .await
        .expect_err("another map is a conflict");
    assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
    let (clean, said) = setup.audit(&[]);
    assert!(clean && said.contains("1 locks"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlock_killed_after_its_first_step_is_completed_by_audit_repair() {
    let setup = Setup::new(10).await;
    let s = &setup.skus;
    let nums = [2, 3, 1];
    let req = lock_req(88, &[(s[0], nums[0]), (s[1], nums[1]), (s[2], nums[2])]);
    let port = free_port();
    // The sweeper stays off so the repair is audit --repair's.
    let mut args = setup.store_args();
    args.extend(["--order-worker".into(), "false".into()]);

    let warehouse = WarehouseProcess::start(port, &args).await;
    WarehouseClient::new(warehouse.channel().await)
        .s_ku_stock_lock(req)
        .await
        .expect("lock");
    drop(warehouse);

    let crashing =
        WarehouseProcess::spawn(port, &args, &[(FAULT_CRASH_AT, "unlock.after_step")], None).await;
    let died = WarehouseClient::new(crashing.channel().await)
        .sku_stock_unlock(unlock_req(88, true))
        .await;
    assert!(died.is_err(), "the warehouse answered {died:?}");
    wait_crashed(crashing).await;

    // Committed on the first SKU only.
    let first = s.iter().enumerate().min_by_key(|(_, sku)| **sku).unwrap().0;
    for (i, ledger) in setup.ledgers().await.iter().enumerate() {
        let n = i64::from(nums[i]);
        let want = if i == first { (0, n) } else { (n, 0) };
        assert_eq!((ledger.locked, ledger.sold), want, "sku {}", s[i]);
    }
    assert_eq!(setup.journal(88).await, (JournalStatus::Finishing, 1));

    let (clean, said) = setup.audit(&["--repair", "--repair-older-than-ms", "0"]);
    assert!(clean, "{said}");
    assert!(
        said.contains("completed 1 interrupted unlock(s): order_id 88"),
        "{said}"
    );
    for (ledger, n) in setup.ledgers().await.iter().zip(nums) {
        assert_eq!(
            (ledger.available, ledger.locked, ledger.sold),
            (10 - i64::from(n), 0, i64::from(n))
        );
    }
    assert_eq!(setup.journal(88).await, (JournalStatus::Finished, 1));
    let (clean, said) = setup.audit(&["--repair", "--repair-older-than-ms", "0"]);
    assert!(
        clean && said.contains("no seed-contract lock needed repair"),
        "{said}"
    );

    let warehouse = WarehouseProcess::start(port, &args).await;
    let mut wh = WarehouseClient::new(warehouse.channel().await);
    wh.sku_stock_unlock(unlock_req(88, true))
        .await
        .expect("finishing again is OK");
    let refused = wh
        .sku_stock_unlock(unlock_req(88, false))
        .await
        .expect_err("releasing a finished lock is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("order_id 88 is already FINISHED"),
        "{refused:?}"
    );
    let unknown = wh
        .sku_stock_unlock(unlock_req(89, true))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
}

/// Runs one of the saga's scripts by hand, as a warehouse that died (or stalled) would have.
/// Attempt 1 of lock 5's step on `sku`: 2 units.
fn lock_5_attempt_1(sku: i64) -> call::PartStep {
    call::PartStep {
        sku,
        oid: 5,
        attempt: 1,
        n: 2,
    }
}

async fn step(store: &RedisStore, call: Call) -> Vec<String> {
    store.run(&call).await.expect("run a lock script")
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

async fn one_redis_with_stock() -> (TestRedis, RedisStore) {
    let redis = TestRedis::start().await;
    let store = redis.store().await;
    for sku in 1..=3 {
        store.put_stock(sku, 5).await.expect("put stock");
    }
    (redis, store)
}

async fn held(store: &RedisStore) -> Vec<(i64, i64, i64)> {
    let mut held = Vec::new();
    for sku in 1..=3 {
        let l = assert_ledger(store, sku).await;
        held.push((l.available, l.locked, l.sold));
    }
    held
}

async fn assert_clean(store: &RedisStore) {
    let report = audit::run(store).await.expect("audit");
    assert!(report.is_clean(), "{}", audit::render(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_landing_after_its_attempt_was_rolled_back_changes_nothing() {
    let (_redis, store) = one_redis_with_stock().await;
    let k = store.keys().clone();

    // A warehouse begins lock 5 of {1:2, 2:2, 3:2}, takes SKU 1 and dies; its take of SKU 2
    // is still on the wire.
    let dead = LockRequest {
        sku_nums: [(1, 2), (2, 2), (3, 2)].into_iter().collect(),
        ..request(5, 0)
    };
    step(&store, call::lock_register(&k, 5, 1)).await;
    let begun = step(&store, call::lock_begin(&k, &dead, "1:2,2:2,3:2", 0)).await;
    assert_eq!(
        begun,
        strings(&["BEGUN", "PENDING", "1", "1", "1:2,2:2,3:2"])
    );
    let taken = step(&store, call::lock_take(&k, lock_5_attempt_1(1), false)).await;
    assert_eq!(taken, strings(&["TAKEN"]));
    assert_eq!(held(&store).await, vec![(3, 2, 0), (5, 0, 0), (5, 0, 0)]);

    // Under the lease nothing is touched; past it, the lock is rolled back.
    let young = store.repair_locks(Duration::from_secs(600)).await.unwrap();
    assert!(young.is_empty(), "{young:?}");
    let repairs = store.repair_locks(Duration::ZERO).await.unwrap();
    assert_eq!(
        (repairs.rolled_back, repairs.rolled_forward),
        (vec![5], vec![])
    );
    assert_eq!(held(&store).await, vec![(5, 0, 0); 3]);

    // The dead warehouse's take and commit land now: fenced, refused.
    let late = step(&store, call::lock_take(&k, lock_5_attempt_1(2), false)).await;
    assert_eq!(late, strings(&["FENCED", "1:2:RELEASED"]));
    let pending = Journal {
        status: JournalStatus::Pending,
        attempt: 1,
        seq: 1,
        skus: "1:2,2:2,3:2".into(),
    };
    let late = step(
        &store,
        call::lock_move(&k, 5, &pending, JournalStatus::Locked),
    )
    .await;
    assert_eq!(late[..2], strings(&["STAYED", "ABORTED"]));
    assert_eq!(held(&store).await, vec![(5, 0, 0); 3]);
    assert!(store.locks().await.unwrap().is_empty());
    assert_clean(&store).await;

    // The client retries: attempt 2 takes every SKU. Attempt 1's compensation landing late
    // does not touch attempt 2's units.
    store.lock(&request(5, 0)).await.expect("the retry locks");
    let late = step(&store, call::lock_release(&k, lock_5_attempt_1(1), None)).await;
    assert_eq!(late, strings(&["NEWER", "2:2:LOCKED"]));
    assert_eq!(held(&store).await, vec![(3, 2, 0), (4, 1, 0), (3, 2, 0)]);
    assert_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_read_before_an_unlock_began_keeps_the_unlock_in_the_open_directory() {
    let (_redis, store) = one_redis_with_stock().await;
    let k = store.keys().clone();
    store.lock(&request(6, 2)).await.expect("lock");
    let open = |store: &RedisStore| {
        let (mut conn, key) = (store.connection(), k.locks_open(saga::shard(6)));
        async move {
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async::<Vec<i64>>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert!(open(&store).await.is_empty(), "a LOCKED lock is settled");

    // Someone saw the journal LOCKED at seq 2 and is about to settle it; meanwhile an unlock
    // registers, moves it to FINISHING and dies before its first step.
    step(&store, call::lock_register(&k, 6, 3)).await;
    let locked = Journal {
        status: JournalStatus::Locked,
        attempt: 1,
        seq: 2,
        skus: "2:4".into(),
    };
    let moved = step(
        &store,
        call::lock_move(&k, 6, &locked, JournalStatus::Finishing),
    )
    .await;
    assert_eq!(moved[..2], strings(&["MOVED", "FINISHING"]));
    let stale = step(&store, call::lock_settle(&k, 6, 2)).await;
    assert_eq!(stale, strings(&["KEPT"]));
    assert_eq!(open(&store).await, vec![6]);

    let repairs = store.repair_locks(Duration::ZERO).await.unwrap();
    assert_eq!(
        (repairs.rolled_back, repairs.rolled_forward),
        (vec![], vec![6])
    );
    assert_eq!(held(&store).await, vec![(5, 0, 0), (1, 0, 4), (5, 0, 0)]);
    assert!(open(&store).await.is_empty());
    assert_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_recorded_by_the_former_one_script_lock_still_unlocks() {
    use redis::AsyncCommands;
    let (_redis, store) = one_redis_with_stock().await;
    let k = store.keys().clone();
    // What lock.lua left: a record without attempt, seq or parts, and the units moved.
    let mut conn = store.connection();
    let () = conn
        .hset_multiple(
            k.lock(9),
            &[
                ("skus", "1:2,3:1"),
                ("status", "LOCKED"),
                ("order_no", "NO-9"),
            ],
        )
        .await
        .unwrap();
    for (sku, n) in [(1, 2), (3, 1)] {
        let () = conn.hincr(k.stock(sku), "available", -n).await.unwrap();
        let () = conn.hincr(k.stock(sku), "locked", n).await.unwrap();
    }

    store
        .lock(&request(9, 1))
        .await
        .expect_err("another map conflicts");
    let mut same = request(9, 0);
    same.sku_nums = [(1, 2), (3, 1)].into_iter().collect();
    store
        .lock(&same)
        .await
        .expect("the same map is a duplicate");
    store.unlock(9, true).await.expect("finish");
    store.unlock(9, true).await.expect("finish again");
    assert_eq!(held(&store).await, vec![(3, 0, 2), (5, 0, 0), (4, 0, 1)]);
    let refused = store.unlock(9, false).await.expect_err("already finished");
    assert!(
        refused
            .to_string()
            .contains("order_id 9 is already FINISHED"),
        "{refused}"
    );
    let locks = store.locks().await.unwrap();
    assert_eq!(
        (locks.len(), locks[0].order_id, locks[0].status),
        (1, 9, LockStatus::Finished)
    );
    assert_clean(&store).await;
}

/// One caller's step in the race.
#[derive(Debug, Clone)]
enum Op {
    Lock { order_id: i64, map: usize },
    Unlock { order_id: i64, finish: bool },
    Repair,
}

/// The SKU maps a lock may ask for (SKUs 1..=3, 4 units each: some locks must fail).
const MAPS: [&[(i64, i64)]; 3] = [&[(1, 2), (2, 1), (3, 2)], &[(1, 3), (3, 3)], &[(2, 4)]];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..=4_i64, 0..MAPS.len()).prop_map(|(order_id, map)| Op::Lock { order_id, map }),
        2 => (1..=4_i64, any::<bool>()).prop_map(|(order_id, finish)| Op::Unlock { order_id, finish }),
        2 => Just(Op::Repair),
    ]
}

fn request(order_id: i64, map: usize) -> LockRequest {
    LockRequest {
        order_id,
        order_no: format!("NO-{order_id}"),
        consignee: "c".into(),
        phone: "123".into(),
        address: "addr".into(),
        note: String::new(),
        sku_nums: MAPS[map].iter().copied().collect(),
    }
}

/// Runs one caller's ops; returns the orders whose lock was answered OK, and the first answer
/// that is not one of the contract's (a step contradicting its journal shows as Corrupt).
async fn caller(store: RedisStore, ops: Vec<Op>) -> Result<Vec<i64>, String> {
    let mut locked = Vec::new();
    for op in ops {
        let result = match &op {
            Op::Lock { order_id, map } => {
                let r = store.lock(&request(*order_id, *map)).await;
                if r.is_ok() {
                    locked.push(*order_id);
                }
                r
            }
            Op::Unlock { order_id, finish } => store.unlock(*order_id, *finish).await,
            Op::Repair => store.repair_locks(Duration::ZERO).await.and_then(|r| {
                if r.failed.is_empty() {
                    Ok(())
                } else {
                    Err(StoreError::Corrupt(format!("{:?}", r.failed)))
                }
            }),
        };
        match result {
            Ok(())
            | Err(StoreError::Refused(
                StockError::NotFound(_)
                | StockError::FailedPrecondition(_)
                | StockError::AlreadyExists(_),
            )) => {}
            // "under way; retry" and "interrupted; retry": the contract's transient answer.
            Err(StoreError::Unavailable(why)) if why.contains("retry") => {}
            Err(e) => return Err(format!("{op:?}: {e}")),
        }
    }
    Ok(locked)
}

#[test]
fn repairs_racing_locks_and_unlocks_never_leak_or_take_twice() {
    let runtime = blocking_runtime_with_workers(2);
    let redis = runtime.block_on(TestRedis::start());
    let callers = proptest::collection::vec(proptest::collection::vec(op(), 1..12), 3);
    run_property("racing repairs", 24, &callers, |callers| {
        runtime.block_on(async {
            let store = redis.store().await;
            for sku in 1..=3 {
                store.put_stock(sku, 4).await.expect("put stock");
            }
            let tasks: Vec<_> = callers
                .into_iter()
                .map(|ops| tokio::spawn(caller(store.clone(), ops)))
                .collect();
            let mut answered_ok = Vec::new();
            for task in tasks {
                let locked = task.await.expect("caller task");
                answered_ok.extend(locked.map_err(TestCaseError::fail)?);
            }
            // Quiet now: one repair settles whatever a repair interrupted.
            let repairs = store.repair_locks(Duration::ZERO).await.expect("repair");
            prop_assert!(repairs.failed.is_empty(), "{:?}", repairs);
            let locks = store.locks().await.expect("locks");
            let statuses: BTreeMap<i64, LockStatus> =
                locks.iter().map(|l| (l.order_id, l.status)).collect();
            for order_id in answered_ok {
                prop_assert!(
                    statuses.contains_key(&order_id),
                    "lock {} was answered OK but is gone: {:?}",
                    order_id,
                    locks
                );
            }
            let report = audit::run(&store).await.expect("audit");
            prop_assert!(report.is_clean(), "{}", audit::render(&report));
            Ok(())
        })
    });
}
