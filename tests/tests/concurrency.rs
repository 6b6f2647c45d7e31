//! No oversell under concurrency, through the real gRPC server over Redis: a thousand buyers on a
//! pool of a hundred, and five hundred seed-contract locks on a stock of fifty.
//!
//! The requests are spread over several HTTP/2 connections so none exceeds the server's
//! per-connection concurrency limit (256): a shed request would fail the test, not hide in a
//! count. Every task waits at a barrier first, so the requests really are in flight together.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use flashgate_core::proto::flashsale::seckill_client::SeckillClient;
use flashgate_core::proto::flashsale::{
    BuyOutcome, BuyReq, Event, EventReq, PutSkuStockReq, SkuLedgerReq,
};
use flashgate_core::proto::warehouse::warehouse_client::WarehouseClient;
use flashgate_core::stock::Ledger;
use flashgate_core::warehouse::service::now_ms;
use flashgate_tests::{lock_req, TestRedis, TestWarehouse};
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::Code;

/// Connections the load is spread over (1,000 requests / 8 = 125 each, under the limit of 256).
const CONNECTIONS: usize = 8;

async fn connections(w: &TestWarehouse) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        channels.push(w.new_channel().await);
    }
    channels
}

async fn ledger(w: &TestWarehouse, sku_id: i64) -> Ledger {
    let l = w
        .admin()
        .get_sku_ledger(SkuLedgerReq { sku_id })
        .await
        .expect("ledger")
        .into_inner();
    Ledger {
        total: l.total,
        available: l.available,
        pools: l.pools,
        locked: l.locked,
        sold: l.sold,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_buys_on_a_pool_of_100_queue_exactly_100() {
    let redis = TestRedis::start().await;
    let w = TestWarehouse::start(redis.store().await).await;
    let mut admin = w.admin();
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: 1,
            num: 150,
        })
        .await
        .expect("put stock");
    let now = now_ms();
    admin
        .put_event(Event {
            id: 1,
            sku_id: 1,
            pool: 100,
            start_ms: now - 1_000,
            end_ms: now + 3_600_000,
            per_user_limit: 1,
            pay_window_ms: 3_600_000,
            subpools: 0,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .expect("put event");

    // 825 users ask once, 50 users twice and 25 users three times, each time with a different
    // request id: 1,000 requests from 900 users.
    let mut requests = Vec::new();
    for user in 0..900 {
        let attempts = match user {
            0..825 => 1,
            825..875 => 2,
            _ => 3,
        };
        for attempt in 0..attempts {
            requests.push((
                format!("user-{user}"),
                format!("user-{user}-attempt-{attempt}"),
            ));
        }
    }
    assert_eq!(requests.len(), 1000);
    let asked: BTreeMap<String, usize> =
        requests
            .iter()
            .fold(BTreeMap::new(), |mut asked, (user, _)| {
                *asked.entry(user.clone()).or_default() += 1;
                asked
            });

    let channels = connections(&w).await;
    let start = Arc::new(Barrier::new(requests.len()));
    let mut tasks = JoinSet::new();
    for (i, (user, request_id)) in requests.into_iter().enumerate() {
        let mut client = SeckillClient::new(channels[i % CONNECTIONS].clone());
        let start = start.clone();
        tasks.spawn(async move {
            start.wait().await;
            let reply = client
                .buy(BuyReq {
                    event_id: 1,
                    user_id: user.clone(),
                    qty: 1,
                    request_id,
                })
                .await;
            (user, reply)
        });
    }

    let mut queued: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut limited_users = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (user, reply) = joined.expect("task");
        let reply = reply
            .unwrap_or_else(|status| panic!("buy of {user} failed: {status:?}"))
            .into_inner();
        let outcome = BuyOutcome::try_from(reply.outcome).expect("a known outcome");
        *outcomes.entry(outcome.as_str_name()).or_default() += 1;
        match outcome {
            BuyOutcome::Queued => queued.entry(user).or_default().push(reply.order_no),
            BuyOutcome::LimitReached => {
                limited_users.insert(user);
            }
            BuyOutcome::SoldOut => {}
            other => panic!("unexpected outcome {other:?} for {user}"),
        }
    }

    let order_nos: BTreeSet<&String> = queued.values().flatten().collect();
    assert_eq!(
        queued.values().map(Vec::len).sum::<usize>(),
        100,
        "outcomes: {outcomes:?}"
    );
    assert_eq!(order_nos.len(), 100, "every win has its own order number");
    for (user, orders) in &queued {
        assert_eq!(
            orders.len(),
            1,
            "{user} holds {orders:?}, over the per-user limit of 1"
        );
    }
    // Only a user who already won can hit the limit of 1.
    for user in &limited_users {
        assert!(
            asked[user] > 1 && queued.contains_key(user),
            "{user} was refused by a limit it had not reached"
        );
    }
    assert_eq!(
        outcomes.values().sum::<usize>(),
        1000,
        "every request got an answer: {outcomes:?}"
    );

    let after = ledger(&w, 1).await;
    assert!(after.is_conserved(), "{after:?}");
    assert_eq!(
        after,
        Ledger {
            total: 150,
            available: 50,
            pools: 0,
            locked: 100,
            sold: 0
        }
    );
    let event = admin
        .get_event(EventReq { id: 1 })
        .await
        .expect("get event")
        .into_inner();
    assert_eq!(event.remaining, 0);
    assert!(event.sold_out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_locks_of_one_unit_on_a_stock_of_50_take_exactly_50() {
    let redis = TestRedis::start().await;
    let w = TestWarehouse::start(redis.store().await).await;
    w.admin()
        .put_sku_stock(PutSkuStockReq { sku_id: 2, num: 50 })
        .await
        .expect("put stock");

    let channels = connections(&w).await;
    let start = Arc::new(Barrier::new(500));
    let mut tasks = JoinSet::new();
    for order_id in 1..=500i64 {
        let mut client = WarehouseClient::new(channels[order_id as usize % CONNECTIONS].clone());
        let start = start.clone();
        tasks.spawn(async move {
            start.wait().await;
            client
                .s_ku_stock_lock(lock_req(order_id, &[(2, 1)]))
                .await
                .map(drop)
        });
    }

    let (mut locked, mut refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(()) => locked += 1,
            Err(status) if status.code() == Code::FailedPrecondition => refused += 1,
            Err(status) => panic!("unexpected status {status:?}"),
        }
    }
    assert_eq!((locked, refused), (50, 450));

    let after = ledger(&w, 2).await;
    assert!(after.is_conserved(), "{after:?}");
    assert_eq!(
        after,
        Ledger {
            total: 50,
            available: 0,
            pools: 0,
            locked: 50,
            sold: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_request_take_one_unit_and_answer_one_order() {
    let redis = TestRedis::start().await;
    let w = TestWarehouse::start(redis.store().await).await;
    let mut admin = w.admin();
    admin
        .put_sku_stock(PutSkuStockReq { sku_id: 3, num: 10 })
        .await
        .expect("put stock");
    let now = now_ms();
    admin
        .put_event(Event {
            id: 3,
            sku_id: 3,
            pool: 10,
            start_ms: now - 1_000,
            end_ms: now + 3_600_000,
            per_user_limit: 5,
            pay_window_ms: 3_600_000,
            subpools: 0,
            price: 1999,
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .expect("put event");

    let channels = connections(&w).await;
    let start = Arc::new(Barrier::new(64));
    let mut tasks = JoinSet::new();
    for i in 0..64 {
        let mut client = SeckillClient::new(channels[i % CONNECTIONS].clone());
        let start = start.clone();
        tasks.spawn(async move {
            start.wait().await;
            let req = BuyReq {
                event_id: 3,
                user_id: "impatient".into(),
                qty: 1,
                request_id: "click-1".into(),
            };
            client.buy(req).await.expect("buy").into_inner()
        });
    }
    let mut order_nos = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let reply = joined.expect("task");
        assert_eq!(reply.outcome(), BuyOutcome::Queued, "{reply:?}");
        order_nos.insert(reply.order_no);
    }
    assert_eq!(order_nos.len(), 1, "one request, one order: {order_nos:?}");
    let after = ledger(&w, 3).await;
    assert_eq!(
        after,
        Ledger {
            total: 10,
            available: 0,
            pools: 9,
            locked: 1,
            sold: 0
        }
    );
}
