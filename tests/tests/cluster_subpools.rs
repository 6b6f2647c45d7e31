//! A very hot sale split in sub-pools on a real Redis Cluster (3 masters, started per test).
//!
//! A split sale keeps its pool in K shards `{sku:ID:SUB}` that land on different slots and
//! masters. A buyer buys from their home sub-pool (a hash of the user id) and, when it is short,
//! the warehouse moves units over from the others (journaled transfers) before it may answer
//! SOLD_OUT. These tests hold it to: exactly the pool is sold, never SOLD_OUT while any sub-pool
//! has units (demand equal to supply must all be served, even when every buyer has the same home
//! sub-pool), redefinition and the sale's end move units between shards without losing one, and
//! a transfer stopped half-way is completed once, never twice.

use std::collections::BTreeSet;
use std::sync::Arc;

use flashgate_core::proto::flashsale::seckill_client::SeckillClient;
use flashgate_core::proto::flashsale::{BuyOutcome, BuyReq, Event, EventReq, PutSkuStockReq};
use flashgate_core::stock::call::{self, End};
use flashgate_core::stock::{
    home_subpool, BuyDecision, BuyRequest, Keys, Ledger, OrderStatus, Sale, Shard,
};
use flashgate_core::warehouse::service::now_ms;
use flashgate_core::warehouse::store::{
    Audit, OrderQueue, Orders, RedisStore, Sales, Stock, StoreError,
};
use flashgate_tests::cluster::{assert_audit_clean, subpool_pools, TestCluster};
use flashgate_tests::{assert_ledger, eur, eventually, pay_in_full, unique_prefix, TestWarehouse};
use redis::AsyncCommands;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const SUBPOOLS: u32 = 4;

async fn cluster_store(cluster: &TestCluster) -> RedisStore {
    cluster.store(&unique_prefix()).await
}

async fn pools(store: &RedisStore, sku: i64, event: i64) -> Vec<i64> {
    subpool_pools(store, sku, event, SUBPOOLS).await
}

/// `n` user ids whose home sub-pool is `home`.
fn users_at_home(home: u32, n: usize, tag: &str) -> Vec<String> {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .filter(|u| home_subpool(u, SUBPOOLS) == home)
        .take(n)
        .collect()
}

/// Buys `qty` once for each user, all in flight together (a barrier), over several
/// connections; returns the outcomes in user order.
async fn crowd(
    w: &TestWarehouse,
    event_id: i64,
    users: &[String],
    qty: i32,
) -> Vec<(BuyOutcome, i32)> {
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(w.new_channel().await);
    }
    let start = Arc::new(Barrier::new(users.len()));
    let mut tasks = JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        let mut client = SeckillClient::new(channels[i % channels.len()].clone());
        let (start, user) = (start.clone(), user.clone());
        tasks.spawn(async move {
            start.wait().await;
            let reply = client
                .buy(BuyReq {
                    event_id,
                    user_id: user.clone(),
                    qty,
                    request_id: format!("{user}-r"),
                })
                .await
                .unwrap_or_else(|s| panic!("buy of {user} failed: {s:?}"))
                .into_inner();
            (i, reply)
        });
    }
    let mut outcomes = vec![(BuyOutcome::Unspecified, -1); users.len()];
    while let Some(joined) = tasks.join_next().await {
        let (i, reply) = joined.expect("task");
        let outcome = BuyOutcome::try_from(reply.outcome).expect("a known outcome");
        outcomes[i] = (outcome, reply.remaining);
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_sale_in_four_sub_pools_serves_demand_equal_to_supply_then_sells_out() {
    let cluster = TestCluster::spawn(3, 0).await;
    let store = cluster_store(&cluster).await;
    let w = TestWarehouse::start(store.clone()).await;
    let mut admin = w.admin();
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: 9,
            num: 300,
        })
        .await
        .expect("put stock");
    let now = now_ms();
    let event = Event {
        id: 1,
        sku_id: 9,
        pool: 200,
        start_ms: now - 1_000,
        end_ms: now + 3_600_000,
        per_user_limit: 1,
        pay_window_ms: 3_600_000,
        subpools: SUBPOOLS as i32,
        price: 1999,
        currency: "EUR".into(),
        ..Default::default()
    };
    admin.put_event(event).await.expect("put event");
    assert_eq!(pools(&store, 9, 1).await, vec![50, 50, 50, 50]);
    let masters: BTreeSet<u16> = {
        let mut masters = BTreeSet::new();
        for sub in 0..SUBPOOLS {
            let key = store.keys().event(Shard::new(9, sub), 1);
            masters.insert(cluster.master_of_key(&key).await);
        }
        masters
    };
    assert!(
        masters.len() >= 2,
        "the sub-pools share one master: {masters:?}"
    );

    // Demand equal to supply, all from one home sub-pool (the worst case for fall-over): every
    // buyer must win, since no answer may be SOLD_OUT while any sub-pool has units.
    let buyers = users_at_home(2, 200, "hot");
    let outcomes = crowd(&w, 1, &buyers, 1).await;
    let refused: Vec<_> = outcomes
        .iter()
        .zip(&buyers)
        .filter(|((o, _), _)| *o != BuyOutcome::Queued)
        .collect();
    assert!(
        refused.is_empty(),
        "refused while units were left: {refused:?}"
    );
    assert_eq!(pools(&store, 9, 1).await, vec![0, 0, 0, 0]);

    // A hundred more, from every home: all sold out, with nothing left anywhere.
    let late: Vec<String> = (0..100).map(|i| format!("late-{i}")).collect();
    let outcomes = crowd(&w, 1, &late, 1).await;
    assert!(
        outcomes.iter().all(|o| *o == (BuyOutcome::SoldOut, 0)),
        "{outcomes:?}"
    );

    let view = admin
        .get_event(EventReq { id: 1 })
        .await
        .expect("get event")
        .into_inner();
    assert_eq!(view.remaining, 0);
    assert!(view.sold_out);
    assert_eq!(view.event.expect("event").subpools, SUBPOOLS as i32);
    let ledger = store.ledger(9).await.expect("ledger").expect("known sku");
    assert_eq!(
        ledger,
        Ledger {
            total: 300,
            available: 100,
            pools: 0,
            locked: 200,
            sold: 0
        }
    );
    // Every win turns into exactly one order, numbered on its sub-pool's track.
    let orders = eventually(
        "every win to become an order",
        std::time::Duration::from_secs(20),
        || {
            let store = store.clone();
            async move {
                let snapshot = store.snapshot(9).await.ok()??;
                let pending = snapshot
                    .orders
                    .iter()
                    .filter(|o| o.status == OrderStatus::PendingPayment)
                    .count();
                (pending == 200).then_some(snapshot.orders)
            }
        },
    )
    .await;
    let numbers: BTreeSet<&str> = orders.iter().map(|o| o.order_no.as_str()).collect();
    assert_eq!(numbers.len(), 200);
    let winners: BTreeSet<&str> = orders.iter().map(|o| o.user_id.as_str()).collect();
    assert_eq!(winners, buyers.iter().map(String::as_str).collect());
    assert_audit_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redefining_and_ending_a_split_sale_moves_units_between_shards_without_loss() {
    const START: i64 = 1_000_000;
    let cluster = TestCluster::spawn(3, 0).await;
    let store = cluster_store(&cluster).await;
    store.put_stock(5, 100).await.expect("put stock");
    let sale = Sale {
        id: 3,
        sku: 5,
        pool: 40,
        start_ms: START,
        end_ms: START + 60_000,
        per_user_limit: 2,
        pay_window_ms: 10_000,
        subpools: SUBPOOLS,
        price: 100,
        currency: eur(),
        limit_counts_held: false,
    };
    let state = store.put_sale(&sale).await.expect("put sale");
    assert_eq!(state.remaining, 40);
    assert_eq!(pools(&store, 5, 3).await, vec![10, 10, 10, 10]);

    // Smaller: the sub-pools are gathered, the difference goes back, the rest is spread again.
    let smaller = Sale {
        pool: 30,
        ..sale.clone()
    };
    assert_eq!(
        store.put_sale(&smaller).await.expect("redefine").remaining,
        30
    );
    assert_eq!(pools(&store, 5, 3).await, vec![8, 8, 7, 7]);
    assert_eq!(assert_ledger(&store, 5).await.total, 100);
    let resplit = Sale {
        subpools: 2,
        ..smaller.clone()
    };
    match store.put_sale(&resplit).await {
        Err(StoreError::Refused(e)) => assert!(e.to_string().contains("sub-pools"), "{e}"),
        other => panic!("changing the split must be refused, got {other:?}"),
    }

    // Buys from every home; one order is cancelled while the sale runs (back to its pool).
    let mut orders = Vec::new();
    for i in 0..12 {
        let decision = store
            .buy(
                &BuyRequest {
                    event_id: 3,
                    user_id: format!("u{i}"),
                    qty: 2,
                    request_id: "r".into(),
                },
                START + 10,
            )
            .await
            .expect("buy");
        match decision {
            BuyDecision::Queued { order_no, .. } => orders.push((format!("u{i}"), order_no)),
            other => panic!("u{i}: {other:?}"),
        }
    }
    assert_eq!(store.sale(3).await.unwrap().unwrap().remaining, 30 - 24);
    let (user, order_no) = &orders[0];
    store
        .cancel(order_no, user, START + 20)
        .await
        .expect("cancel");
    assert_eq!(store.sale(3).await.unwrap().unwrap().remaining, 8);
    let (user, order_no) = &orders[1];
    let paid = store.order(order_no).await.unwrap().unwrap();
    assert_eq!(paid.status, OrderStatus::Queued);
    // Pay needs the order created by the worker first; do it by hand.
    let mut created = 0;
    for win in store
        .read_wins("test", 100, std::time::Duration::from_millis(50))
        .await
        .expect("read wins")
    {
        created += usize::from(store.create_order(&win, START + 30).await.expect("create"));
        store.ack_win(&win).await.expect("ack");
    }
    assert_eq!(created, 11, "the cancelled order is not created");
    pay_in_full(&store, order_no, user, START + 40)
        .await
        .expect("pay");
    assert_eq!(assert_ledger(&store, 5).await.total, 100);
    assert_audit_clean(&store).await;

    // The end: every sub-pool's units go home, unpaid orders expire, everything adds up.
    let end = START + 60_000;
    assert_eq!(store.close_ended(end).await.expect("close"), vec![3]);
    let expired = store.expire_due(end + 20_000, 100).await.expect("expire");
    assert_eq!(expired.len(), 10);
    store.close_ended(end + 20_000).await.expect("drain");
    assert_eq!(pools(&store, 5, 3).await, vec![0, 0, 0, 0]);
    assert_eq!(
        store.ledger(5).await.unwrap().unwrap(),
        Ledger {
            total: 100,
            available: 98,
            pools: 0,
            locked: 0,
            sold: 2
        }
    );
    assert_eq!(store.available(&[5]).await.unwrap(), vec![Some(98)]);
    assert_audit_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_stopped_half_way_lands_once() {
    const START: i64 = 1_000_000;
    let cluster = TestCluster::spawn(3, 0).await;
    let store = cluster_store(&cluster).await;
    store.put_stock(6, 20).await.expect("put stock");
    let sale = Sale {
        id: 4,
        sku: 6,
        pool: 20,
        start_ms: START,
        end_ms: START + 60_000,
        per_user_limit: 1,
        pay_window_ms: 10_000,
        subpools: SUBPOOLS,
        price: 100,
        currency: eur(),
        limit_counts_held: false,
    };
    store.put_sale(&sale).await.expect("put sale");
    let keys: &Keys = store.keys();
    let (from, to) = (Shard::new(6, 1), Shard::new(6, 3));
    // What move_out.lua leaves when its process dies before move_in.lua: 3 units out of
    // sub-pool 1, journaled there.
    let journal = serde_json::json!({
        "n": "3", "from": "pool", "to": keys.event(to, 4), "field": "pool",
        "received": keys.received(to), "fallback": keys.stock(to),
    })
    .to_string();
    let mut conn = store.connection();
    let _: i64 = conn
        .hincr(keys.event(from, 4), "pool", -3)
        .await
        .expect("take out");
    let _: () = conn
        .hset(keys.moves(from), "crashed-1", &journal)
        .await
        .expect("journal");
    // In flight, the units are counted where they are going.
    let ledger = assert_ledger(&store, 6).await;
    assert_eq!(ledger.pools, 20, "{ledger:?}");
    assert_audit_clean(&store).await;

    // The sweeper lands it (the sale is running: nothing closes).
    assert!(store
        .close_ended(START + 1)
        .await
        .expect("sweep")
        .is_empty());
    assert_eq!(pools(&store, 6, 4).await, vec![5, 2, 5, 8]);
    let left: Vec<String> = conn.hkeys(keys.moves(from)).await.expect("journal");
    assert!(left.is_empty(), "{left:?}");

    // The same transfer found again (a second sweeper read it before the first forgot it):
    // counted in flight until it is seen through, credited never again.
    let _: () = conn
        .hset(keys.moves(from), "crashed-1", &journal)
        .await
        .expect("journal again");
    let ledger = assert_ledger(&store, 6).await;
    assert_eq!(ledger.pools, 20, "counted twice: {ledger:?}");
    assert_audit_clean(&store).await;
    store.close_ended(START + 2).await.expect("sweep again");
    assert_eq!(pools(&store, 6, 4).await, vec![5, 2, 5, 8]);
    let ledger = assert_ledger(&store, 6).await;
    assert_eq!(ledger.pools, 20, "{ledger:?}");
    assert_audit_clean(&store).await;

    // A client that lost move_out's answer sends it again with the same transfer id: the
    // units are taken once.
    let move_out = call::move_out(
        keys,
        "retried-1",
        &End::pool(keys, from, 4),
        &End::pool(keys, to, 4),
        2,
    );
    for _ in 0..2 {
        let reply: Vec<String> = store.run(&move_out).await.expect("move_out");
        assert_eq!(reply, vec!["OK", "2"]);
    }
    assert_eq!(pools(&store, 6, 4).await, vec![5, 0, 5, 8]);
    // Its entry is younger than the lease (its mover may be alive): a sweeper lands it only past
    // the lease, here none.
    store.close_ended(START + 3).await.expect("sweep leaves it");
    assert_eq!(pools(&store, 6, 4).await, vec![5, 0, 5, 8]);
    store
        .clone()
        .with_move_lease(std::time::Duration::ZERO)
        .close_ended(START + 3)
        .await
        .expect("sweep lands it");
    assert_eq!(pools(&store, 6, 4).await, vec![5, 0, 5, 10]);
    assert_ledger(&store, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_redefinition_changes_no_sub_pool() {
    const START: i64 = 1_000_000;
    let cluster = TestCluster::spawn(3, 0).await;
    let store = cluster_store(&cluster).await;
    store.put_stock(8, 50).await.expect("put stock");
    let sale = Sale {
        id: 6,
        sku: 8,
        pool: 40,
        start_ms: START,
        end_ms: START + 60_000,
        per_user_limit: 1,
        pay_window_ms: 10_000,
        subpools: SUBPOOLS,
        price: 100,
        currency: eur(),
        limit_counts_held: false,
    };
    store.put_sale(&sale).await.expect("put sale");
    // More units than the SKU has, and a higher per-user limit: refused, all of it.
    let greedy = Sale {
        pool: 10_000,
        per_user_limit: 5,
        ..sale.clone()
    };
    assert!(matches!(
        store.put_sale(&greedy).await,
        Err(StoreError::Refused(_))
    ));
    assert_eq!(pools(&store, 8, 6).await, vec![10, 10, 10, 10]);
    let mut conn = store.connection();
    for sub in 0..SUBPOOLS {
        let limit: i64 = conn
            .hget(store.keys().event(Shard::new(8, sub), 6), "limit")
            .await
            .expect("limit");
        assert_eq!(limit, 1, "sub-pool {sub} took a refused definition");
    }
    // A user whose home is a sub-pool still gets one unit, not five.
    let user = users_at_home(1, 1, "limited").remove(0);
    let mut won = 0;
    for r in 0..5 {
        let decision = store
            .buy(
                &BuyRequest {
                    event_id: 6,
                    user_id: user.clone(),
                    qty: 1,
                    request_id: format!("r{r}"),
                },
                START + 1,
            )
            .await
            .expect("buy");
        won += usize::from(matches!(decision, BuyDecision::Queued { .. }));
    }
    assert_eq!(won, 1);
    assert_ledger(&store, 8).await;
    assert_audit_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_of_two_units_from_every_home_take_exactly_the_pool() {
    let cluster = TestCluster::spawn(3, 0).await;
    let store = cluster_store(&cluster).await;
    let w = TestWarehouse::start(store.clone()).await;
    let mut admin = w.admin();
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: 11,
            num: 200,
        })
        .await
        .expect("put stock");
    let now = now_ms();
    admin
        .put_event(Event {
            id: 2,
            sku_id: 11,
            pool: 200,
            start_ms: now - 1_000,
            end_ms: now + 3_600_000,
            per_user_limit: 2,
            pay_window_ms: 3_600_000,
            subpools: SUBPOOLS as i32,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .expect("put event");
    // 150 buyers of 2 units for 200 units: 100 win, 50 are told SOLD_OUT, and every unit goes.
    let users: Vec<String> = (0..150).map(|i| format!("pair-{i}")).collect();
    let outcomes = crowd(&w, 2, &users, 2).await;
    let count = |kind| outcomes.iter().filter(|(o, _)| *o == kind).count();
    let (queued, sold_out) = (count(BuyOutcome::Queued), count(BuyOutcome::SoldOut));
    assert_eq!((queued, sold_out), (100, 50));
    assert_eq!(pools(&store, 11, 2).await, vec![0, 0, 0, 0]);
    let ledger = assert_ledger(&store, 11).await;
    assert_eq!((ledger.locked, ledger.pools), (200, 0), "{ledger:?}");
    assert_audit_clean(&store).await;
}
