//! Steps that span masters, on a real Redis Cluster (3 masters, started per test, with a replica
//! each where the test is about failover): a transfer between sub-pools and a multi-SKU seed lock
//! stopped between two steps, the master of the first step killed (`kill -9`) and failed over,
//! then repaired: no unit counted twice or lost, the audit clean. A `move_out` retried after its
//! entry was landed takes nothing (tombstones), a young entry is left to its mover (the lease),
//! and a step whose replica does not acknowledge stops the transfer as a crash would.
//!
//! The "process stopped between two steps" is the test running the first step itself through the
//! store's own step path ([`RedisStore::run_step`], waited for on the replica exactly as a
//! warehouse runs it) and never running the second: what a warehouse killed there leaves (the
//! binary's `FLASHGATE_FAULT_CRASH_AT=transfer.after_move_out` stops at the same point).

use std::time::Duration;

use flashgate_core::stock::call::{self, End};
use flashgate_core::stock::lock::JournalStatus;
use flashgate_core::stock::{Keys, Ledger, LockRequest, Sale, Shard};
use flashgate_core::warehouse::store::{Orders, RedisStore, Sales, SeedLocks, Stock, StoreError};
use flashgate_tests::cluster::{assert_audit_clean, subpool_pools, TestCluster};
use flashgate_tests::{assert_ledger, eur, unique_prefix};
use redis::AsyncCommands;

const SUBPOOLS: u32 = 4;
const START: i64 = 1_000_000;

async fn store_on(cluster: &TestCluster, prefix: &str) -> RedisStore {
    cluster.store(prefix).await
}

async fn pools(store: &RedisStore, sku: i64, event: i64) -> Vec<i64> {
    subpool_pools(store, sku, event, SUBPOOLS).await
}

/// A split sale of 20 units in 4 sub-pools (5 each), running from START.
async fn split_sale(store: &RedisStore, sku: i64, event: i64) {
    store.put_stock(sku, 20).await.expect("put stock");
    let sale = Sale {
        id: event,
        sku,
        pool: 20,
        start_ms: START,
        end_ms: START + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 10_000,
        subpools: SUBPOOLS,
        price: 100,
        currency: eur(),
        limit_counts_held: false,
    };
    store.put_sale(&sale).await.expect("put sale");
    assert_eq!(pools(store, sku, event).await, vec![5; 4]);
}

/// A SKU whose sub-pools 1 and 3 are served by different masters.
async fn sku_across_masters(cluster: &TestCluster, keys: &Keys) -> i64 {
    for sku in 1..=1_000 {
        let a = cluster.master_of_key(&keys.stock(Shard::new(sku, 1))).await;
        let b = cluster.master_of_key(&keys.stock(Shard::new(sku, 3))).await;
        if a != b {
            return sku;
        }
    }
    panic!("no sku up to 1000 has sub-pools 1 and 3 on different masters");
}

fn move_out(keys: &Keys, id: &str, sku: i64, event: i64, n: i64) -> call::Call {
    let (from, to) = (Shard::new(sku, 1), Shard::new(sku, 3));
    call::move_out(
        keys,
        id,
        &End::pool(keys, from, event),
        &End::pool(keys, to, event),
        n,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_out_retried_after_its_entry_was_landed_takes_nothing() {
    let cluster = TestCluster::spawn(3, 0).await;
    let prefix = unique_prefix();
    let store = store_on(&cluster, &prefix).await;
    assert!(
        !store.waits_for_replicas(),
        "no replicas: nothing to wait for"
    );
    split_sale(&store, 6, 4).await;
    let keys = store.keys().clone();
    let (from, to) = (Shard::new(6, 1), Shard::new(6, 3));

    // A mover takes 2 units out of sub-pool 1 and stops (its move_in never comes).
    let out = move_out(&keys, "m-1", 6, 4, 2);
    let reply: Vec<String> = store.run(&out).await.expect("move_out");
    assert_eq!(reply, ["OK", "2"]);
    assert_eq!(pools(&store, 6, 4).await, vec![5, 3, 5, 5]);
    assert_eq!(
        assert_ledger(&store, 6).await.pools,
        20,
        "counted in flight"
    );

    // Younger than the lease: the sweeper leaves it to its mover.
    store.close_ended(START + 1).await.expect("sweep");
    assert_eq!(pools(&store, 6, 4).await, vec![5, 3, 5, 5]);
    let mut conn = store.connection();
    let left: Vec<String> = conn.hkeys(keys.moves(from)).await.expect("journal");
    assert_eq!(left, ["m-1"]);
    assert_audit_clean(&store).await;

    // Past the lease (a sweeper with none), it lands, once, and leaves a tombstone.
    let sweeper = store_on(&cluster, &prefix)
        .await
        .with_move_lease(Duration::ZERO);
    sweeper.close_ended(START + 2).await.expect("sweep");
    assert_eq!(pools(&store, 6, 4).await, vec![5, 3, 5, 7]);
    let left: Vec<String> = conn.hkeys(keys.moves(from)).await.expect("journal");
    assert!(left.is_empty(), "{left:?}");
    let tombstone: Option<i64> = conn.get(keys.moved(from, "m-1")).await.expect("tombstone");
    assert_eq!(tombstone, Some(2));
    let ttl: i64 = conn.pttl(keys.moved(from, "m-1")).await.expect("pttl");
    assert!(
        ttl > call::MOVE_LEASE_MS,
        "the tombstone outlives retries: {ttl} ms"
    );

    // The cluster client re-sends the mover's move_out (its answer was lost): done, nothing taken.
    for _ in 0..2 {
        let reply: Vec<String> = store.run(&out).await.expect("retried move_out");
        assert_eq!(reply, ["OK", "2"]);
    }
    assert_eq!(pools(&store, 6, 4).await, vec![5, 3, 5, 7]);
    // The mover's own move_in and forget, arriving late: a duplicate, nothing credited twice.
    let landing = call::Move::between(
        &keys,
        &End::pool(&keys, from, 4),
        &End::pool(&keys, to, 4),
        2,
    );
    let reply: Vec<String> = store
        .run(&call::move_in("m-1", &landing))
        .await
        .expect("late move_in");
    assert_eq!(reply, ["OK", "DUPLICATE"]);
    let reply: Vec<String> = store
        .run(&call::move_forget(&keys, from, "m-1", 2))
        .await
        .expect("late forget");
    assert_eq!(reply, ["OK", "ALREADY"]);
    assert_eq!(pools(&store, 6, 4).await, vec![5, 3, 5, 7]);
    sweeper.close_ended(START + 3).await.expect("sweep again");
    assert_eq!(pools(&store, 6, 4).await, vec![5, 3, 5, 7]);
    assert_eq!(
        assert_ledger(&store, 6).await,
        Ledger {
            total: 20,
            available: 0,
            pools: 20,
            locked: 0,
            sold: 0
        }
    );
    assert_audit_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_between_the_two_steps_of_a_transfer_loses_and_doubles_nothing() {
    let mut cluster = TestCluster::spawn(3, 1).await;
    let prefix = unique_prefix();
    let store = store_on(&cluster, &prefix).await;
    assert!(store.waits_for_replicas());
    let keys = store.keys().clone();
    let sku = sku_across_masters(&cluster, &keys).await;
    split_sale(&store, sku, 4).await;
    let from = Shard::new(sku, 1);

    // Step one, waited for on the replica; then the mover stops, and the master that ran the
    // step dies before anyone lands it.
    let reply: Vec<String> = store
        .run_step(&move_out(&keys, "m-1", sku, 4, 3))
        .await
        .expect("move_out");
    assert_eq!(reply, ["OK", "3"]);
    let doomed = cluster.master_of_key(&keys.moves(from)).await;
    cluster.kill9(doomed);
    cluster.wait_failover(doomed).await;

    // The promoted replica has the take and its journal entry, together: in flight, counted once.
    assert_eq!(pools(&store, sku, 4).await, vec![5, 2, 5, 5]);
    assert_eq!(assert_ledger(&store, sku).await.pools, 20);
    assert_audit_clean(&store).await;

    // The repair lands it at the destination (another master), once.
    let sweeper = store_on(&cluster, &prefix)
        .await
        .with_move_lease(Duration::ZERO);
    sweeper.close_ended(START + 1).await.expect("sweep");
    sweeper.close_ended(START + 2).await.expect("sweep again");
    assert_eq!(pools(&store, sku, 4).await, vec![5, 2, 5, 8]);
    let ledger = assert_ledger(&store, sku).await;
    assert_eq!((ledger.total, ledger.pools), (20, 20), "{ledger:?}");
    assert_audit_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_replica_does_not_acknowledge_stops_the_transfer_as_a_crash_would() {
    let cluster = TestCluster::spawn(3, 1).await;
    let prefix = unique_prefix();
    let store = store_on(&cluster, &prefix).await;
    let keys = store.keys().clone();
    let sku = sku_across_masters(&cluster, &keys).await;
    split_sale(&store, sku, 4).await;
    let master = cluster.master_of_key(&keys.moves(Shard::new(sku, 1))).await;
    let replicas = cluster.replicas_of(master).await;
    assert_eq!(replicas.len(), 1, "{replicas:?}");

    // The replica stalls: the step is done on the master but never confirmed, so it is
    // answered Unavailable and nothing is built on it (no move_in).
    cluster.pause(replicas[0]);
    let stalled = store
        .run_step::<Vec<String>>(&move_out(&keys, "m-1", sku, 4, 3))
        .await;
    cluster.resume(replicas[0]);
    match stalled {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("confirm"), "{why}"),
        other => panic!("an unconfirmed step must stop the transfer: {other:?}"),
    }
    assert_eq!(pools(&store, sku, 4).await, vec![5, 2, 5, 5]);
    assert_eq!(
        assert_ledger(&store, sku).await.pools,
        20,
        "in flight, once"
    );
    assert_audit_clean(&store).await;

    // As after a crash: the repair lands it once the replica is back.
    cluster.wait_ok().await;
    let sweeper = store_on(&cluster, &prefix)
        .await
        .with_move_lease(Duration::ZERO);
    sweeper.close_ended(START + 1).await.expect("sweep");
    assert_eq!(pools(&store, sku, 4).await, vec![5, 2, 5, 8]);
    assert_audit_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_between_the_steps_of_a_multi_sku_lock_is_repaired_without_a_leak() {
    let mut cluster = TestCluster::spawn(3, 1).await;
    let prefix = unique_prefix();
    let store = store_on(&cluster, &prefix).await;
    let keys = store.keys().clone();
    let skus = cluster
        .keys_on_distinct_masters(|id| keys.stock(id), 3)
        .await;
    for &sku in &skus {
        store.put_stock(sku, 10).await.expect("put stock");
    }
    let mut sorted = skus.clone();
    sorted.sort_unstable();
    let req = LockRequest {
        order_id: 31,
        order_no: "NO-31".into(),
        consignee: "c".into(),
        phone: "1".into(),
        address: "a".into(),
        note: String::new(),
        sku_nums: sorted.iter().map(|&s| (s, 2)).collect(),
    };
    let map = flashgate_core::stock::encode_sku_nums(&req.sku_nums);

    // The saga's first steps, each waited for on its replica: register, begin, take the first
    // SKU; then its process stops, and the master holding that take dies.
    store
        .run_step::<Vec<String>>(&call::lock_register(&keys, 31, 1))
        .await
        .expect("register");
    let begun: Vec<String> = store
        .run_step(&call::lock_begin(&keys, &req, &map, 0))
        .await
        .expect("begin");
    assert_eq!(begun[..2], ["BEGUN", "PENDING"]);
    let taken: Vec<String> = store
        .run_step(&call::lock_take(
            &keys,
            call::PartStep {
                sku: sorted[0],
                oid: 31,
                attempt: 1,
                n: 2,
            },
            false,
        ))
        .await
        .expect("take");
    assert_eq!(taken, ["TAKEN"]);
    let doomed = cluster.master_of_key(&keys.stock(sorted[0])).await;
    cluster.kill9(doomed);
    cluster.wait_failover(doomed).await;

    // The take survived with its part: the repair rolls the lock back, every unit comes back.
    let l = assert_ledger(&store, sorted[0]).await;
    assert_eq!((l.available, l.locked), (8, 2), "{l:?}");
    let repairs = store.repair_locks(Duration::ZERO).await.expect("repair");
    assert_eq!(repairs.rolled_back, vec![31], "{repairs:?}");
    for &sku in &sorted {
        let l = assert_ledger(&store, sku).await;
        assert_eq!((l.available, l.locked, l.sold), (10, 0, 0), "sku {sku}");
    }
    assert_audit_clean(&store).await;

    // The client's retry locks every SKU at a new attempt, and the audit stays clean.
    store.lock(&req).await.expect("the retry locks");
    let records = store.lock_records().await.expect("records");
    let j = records
        .journals
        .iter()
        .find(|j| j.order_id == 31)
        .expect("journal");
    assert_eq!((j.status, j.attempt), (JournalStatus::Locked, 2));
    for &sku in &sorted {
        let l = assert_ledger(&store, sku).await;
        assert_eq!((l.available, l.locked), (8, 2), "sku {sku}");
    }
    assert_audit_clean(&store).await;
}
