//! Model-based property test of batched buys: random groups of concurrent buys decided on real
//! Redis by `buy_batch.lua` (each group one script call) must get, buy by buy, exactly the
//! answers the memory store gives deciding them one by one in arrival order — and after every
//! group both stores must show the same ledger, sale and orders, the ledger conserved and the
//! audit clean.
//!
//! The domain is tiny so the interesting cases happen in most groups: 3 users, 3 request ids,
//! quantities 1 to 3, a pool of 0 to 8 against a per-user limit of 1 to 3 (a user twice in one
//! group, a request id repeated in a group with the same or another quantity, sold out in the
//! middle of a group), a clock that crosses the sale's start and end within a group (every buy
//! carries its own time), and cancels between groups (the sale's limit counts units held or every
//! unit won). The runtime is single-threaded, so a group's buys all enter their lane before the
//! first call goes out: the group is one batch, in the order given, which the test checks with
//! Redis's own count of script calls when it runs on a Redis of its own.

use flashgate_core::stock::audit::audit;
use flashgate_core::stock::{BuyDecision, BuyRequest, Sale};
use flashgate_core::warehouse::store::{Audit, MemoryStore, Orders, Sales, Stock, StoreResult};
use flashgate_tests::{blocking_runtime, eur, kind, run_property, TestRedis};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const SKU: i64 = 1;
const EVENT: i64 = 1;
const USERS: [&str; 3] = ["ann", "bob", "张三"];
const TICK_MS: i64 = 100;
const START_MS: i64 = 1_000_000;
/// The sale opens 2 ticks after the clock starts and runs for 6.
const OPENS: i64 = START_MS + 2 * TICK_MS;
const CLOSES: i64 = OPENS + 6 * TICK_MS;

#[derive(Debug, Clone)]
struct Buy {
    user: usize,
    qty: i64,
    request: usize,
    /// Ticks after the group's clock.
    late: i64,
}

#[derive(Debug, Clone)]
enum Step {
    /// Buys sent at once, decided as one batch.
    Group { ticks: i64, buys: Vec<Buy> },
    /// Cancel the `pick`-th order won so far (by its buyer).
    Cancel { pick: usize },
}

#[derive(Debug, Clone)]
struct Case {
    pool: i64,
    limit: i64,
    counts_held: bool,
    steps: Vec<Step>,
}

fn case() -> impl Strategy<Value = Case> {
    let buy =
        (0..USERS.len(), 1i64..=3, 0usize..3, 0i64..2).prop_map(|(user, qty, request, late)| Buy {
            user,
            qty,
            request,
            late,
        });
    let step = prop_oneof![
        4 => (0i64..3, prop::collection::vec(buy, 1..12))
            .prop_map(|(ticks, buys)| Step::Group { ticks, buys }),
        1 => (0usize..8).prop_map(|pick| Step::Cancel { pick }),
    ];
    (
        0i64..=8,
        1i64..=3,
        any::<bool>(),
        prop::collection::vec(step, 1..8),
    )
        .prop_map(|(pool, limit, counts_held, steps)| Case {
            pool,
            limit,
            counts_held,
            steps,
        })
}

/// Script calls Redis has run to the end: a first EVALSHA of a script Redis does not know yet
/// fails (NOSCRIPT) and counts too, and is followed by one SCRIPT LOAD and the EVALSHA again.
async fn evalsha_calls(redis: &TestRedis) -> u64 {
    let calls = redis.command_calls().await;
    let count = |name: &str| calls.get(name).copied().unwrap_or(0);
    count("evalsha") - count("script|load")
}

fn check(redis: &TestRedis, own_redis: bool, case: &Case) -> Result<(), TestCaseError> {
    // The store's connection lives on the runtime it was made on: one per case.
    blocking_runtime().block_on(async {
        let (r, m) = (&redis.store().await, &MemoryStore::new());
        let sale = Sale {
            id: EVENT,
            sku: SKU,
            pool: case.pool,
            start_ms: OPENS,
            end_ms: CLOSES,
            per_user_limit: case.limit,
            pay_window_ms: 60_000,
            subpools: 1,
            price: 250,
            currency: eur(),
            limit_counts_held: case.counts_held,
        };
        r.put_stock(SKU, 10).await.expect("stock");
        m.put_stock(SKU, 10).await.expect("stock");
        r.put_sale(&sale).await.expect("sale");
        m.put_sale(&sale).await.expect("sale");
        let mut clock = START_MS;
        let mut won: Vec<(String, String)> = Vec::new();
        for (n, step) in case.steps.iter().enumerate() {
            match step {
                Step::Group { ticks, buys } => {
                    clock += ticks * TICK_MS;
                    let reqs: Vec<(BuyRequest, i64)> = buys
                        .iter()
                        .map(|b| {
                            let req = BuyRequest {
                                event_id: EVENT,
                                user_id: USERS[b.user].to_owned(),
                                qty: b.qty,
                                request_id: format!("r{}", b.request),
                            };
                            (req, clock + b.late * TICK_MS)
                        })
                        .collect();
                    // (On a cluster or a shared Redis, the count is not this test's alone.)
                    let calls_before = if own_redis {
                        evalsha_calls(redis).await
                    } else {
                        0
                    };
                    // Spawned in order, first polled in order (one thread, a FIFO run queue).
                    let tasks: Vec<_> = reqs
                        .iter()
                        .map(|(req, now)| {
                            let (r, req, now) = (r.clone(), req.clone(), *now);
                            tokio::spawn(async move { r.buy(&req, now).await })
                        })
                        .collect();
                    let mut batched: Vec<StoreResult<BuyDecision>> = Vec::new();
                    for task in tasks {
                        batched.push(task.await.expect("a buy task"));
                    }
                    if own_redis {
                        let calls = evalsha_calls(redis).await - calls_before;
                        prop_assert_eq!(
                            calls,
                            1,
                            "step {}: {} buys in one script call",
                            n,
                            buys.len()
                        );
                    }
                    for ((req, now), got) in reqs.iter().zip(batched) {
                        let want = m.buy(req, *now).await;
                        let (got, want) = (kind(got), kind(want));
                        prop_assert_eq!(&got, &want, "step {}: {:?} at {}", n, req, now);
                        if let Ok(BuyDecision::Queued { order_no, .. }) = got {
                            if !won.iter().any(|(no, _)| *no == order_no) {
                                won.push((order_no, req.user_id.clone()));
                            }
                        }
                    }
                }
                Step::Cancel { pick } => {
                    let Some((order_no, user)) = won.get(pick % won.len().max(1)).cloned() else {
                        continue;
                    };
                    clock += TICK_MS;
                    let (got, want) = (
                        kind(r.cancel(&order_no, &user, clock).await),
                        kind(m.cancel(&order_no, &user, clock).await),
                    );
                    prop_assert_eq!(got, want, "step {}: cancel {}", n, order_no);
                }
            }
            // Conservation, and both stores showing the same, after every step.
            let (lr, lm) = (r.ledger(SKU).await, m.ledger(SKU).await);
            prop_assert_eq!(&lr, &lm, "step {}: ledger", n);
            let ledger = lr.expect("ledger").expect("the SKU");
            prop_assert!(ledger.is_conserved(), "step {}: {:?}", n, ledger);
            prop_assert_eq!(
                kind(r.sale(EVENT).await),
                kind(m.sale(EVENT).await),
                "step {}: sale",
                n
            );
            for (order_no, _) in &won {
                prop_assert_eq!(
                    kind(r.order(order_no).await),
                    kind(m.order(order_no).await),
                    "step {}: order {}",
                    n,
                    order_no
                );
            }
            let snapshot = r.snapshot(SKU).await.expect("snapshot").expect("the SKU");
            let memory = m.snapshot(SKU).await.expect("snapshot").expect("the SKU");
            prop_assert_eq!(
                &snapshot.sales[0].requests,
                &memory.sales[0].requests,
                "step {}: request ids",
                n
            );
            let report = audit(&[snapshot], &[]);
            prop_assert!(
                report.is_clean(),
                "step {}: the audit found {:?}",
                n,
                report
            );
        }
        Ok(())
    })
}

#[test]
fn batched_buys_decide_as_single_buys_in_arrival_order() {
    let rt = blocking_runtime();
    let redis = rt.block_on(TestRedis::start());
    let own_redis = !redis.cluster && std::env::var("REDIS_URL").is_err();
    run_property("batched buys", 256, &case(), |case| {
        check(&redis, own_redis, &case)
    });
}
