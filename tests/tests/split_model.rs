//! Model-based property test of a sale split in sub-pools: one random sequence of operations is
//! applied to a sale split in K ∈ {2, 3, 4} sub-pools in the Redis store (a real Redis, or the
//! Redis Cluster named by `FLASHGATE_TEST_REDIS_CLUSTER`, where each sub-pool is a shard of its
//! own) and to the same sale in the memory store, which ignores the split and keeps one pool. Both
//! must give the same kinds of answers, and after every step account for the same units in the
//! same places, conserve them, and pass the audit.
//!
//! Why one pool is a fair oracle for K: the split is meant to be invisible to buyers. A buyer's
//! per-user count and request ids live in their home sub-pool only (a stable hash of the user
//! id), so limits and retries behave as with one pool; a buy short at home fetches units from the
//! other sub-pools (journaled transfers) before it may answer SOLD_OUT, so SOLD_OUT means what it
//! means with one pool: fewer units left than asked, over all sub-pools; and every unit is in one
//! place, so the ledgers (summed over the shards on Redis) must be equal. The operations run one
//! at a time, so no race excuses a difference: a SOLD_OUT from Redis where the memory store sold
//! is a fall-over bug, not bad luck.
//!
//! What is deliberately not compared: order numbers (Redis numbers each sub-pool's wins on an
//! interleaved track of its own), so the test keeps, per store, the order each (user, request id)
//! won and resolves pays, cancels, wins and expiries through it; a buy's `remaining`, which on a
//! split sale is an estimate from the home sub-pool (only "0, sold out" must agree); and
//! `available()`, which on Redis reads the SKU's own shard only (the ledger sums every shard).
//! Time is simulated (the stores take `now_ms`), so sales end and deadlines pass without sleeps.
//!
//! Beyond the ledgers: every sub-pool's copy of the sale's definition (its price and what its
//! per-user limit counts included; each case draws the rule) must equal the definition the memory
//! store holds (a refused redefinition must leave every copy alone: a per-user limit raised in
//! one sub-pool would let its buyers past the limit), each user's counted units and request ids
//! must sit in their home sub-pool only, a retried request must answer its first order number,
//! and payments (right and wrong amounts, repeated and competing payment ids) must get the same
//! answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flashgate_core::stock::{
    home_subpool, BuyDecision, BuyRequest, Order, PayRequest, Sale, Win, MAX_SUBPOOLS,
};
use flashgate_core::warehouse::audit;
use flashgate_core::warehouse::store::{
    Audit, MemoryStore, OrderQueue, Orders, RedisStore, Sales, Stock,
};
use flashgate_tests::{blocking_runtime, both, eur, kind, run_property, Kind, TestRedis};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The one SKU, and the one sale of it that is split.
const SKU: i64 = 1;
const EVENT: i64 = 1;
/// Buyers. Their home sub-pools are, with 2 sub-pools, 1 0 1 0 1; with 3, 2 0 1 2 0; with 4,
/// 3 2 1 0 3: every sub-pool is somebody's home and, five buyers for at most four sub-pools,
/// some share one (see `every_sub_pool_is_some_buyers_home`).
const USERS: [&str; 5] = ["u1", "u2", "u3", "u4", "u5"];
/// Request ids per buyer: few, so that many buys are retries of an earlier one.
const REQUESTS: u8 = 4;
/// Where simulated time starts; every time and duration is a multiple of `TICK_MS`, so the
/// clock often lands exactly on a sale's end or an order's deadline.
const START_MS: i64 = 1_000_000;
const TICK_MS: i64 = 250;
/// How long a read of wins may wait (never zero: `BLOCK 0` is forever to Redis).
const BLOCK: Duration = Duration::from_millis(1);
/// Larger than any case's number of wins or due orders, so both stores answer with all of them.
const BATCH: usize = 1000;
/// Cases when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 48;

type User = &'static str;
/// What a buy is remembered by: its buyer and request id.
type Request = (User, u8);

/// Which won order a pay or cancel names, resolved against the orders won so far.
#[derive(Debug, Clone)]
struct OrderRef {
    /// Index into the orders won so far; `UNKNOWN_PICK` names an order that does not exist.
    pick: usize,
    /// Whether the order's own buyer asks (else `other`, often someone else).
    as_owner: bool,
    other: User,
}

const UNKNOWN_PICK: usize = 9;

/// Where a consumer of wins stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// Crashes right after reading.
    AfterRead,
    /// Crashes after creating the orders, before acknowledging.
    AfterCreate,
    /// Creates and acknowledges (a healthy worker).
    Never,
}

/// One step. Times and durations are in ticks, starts relative to the clock.
#[derive(Debug, Clone)]
enum Op {
    PutStock {
        total: i64,
    },
    /// Defines or redefines the sale (pool up or down); refused when the pool does not fit.
    PutSale {
        pool: i64,
        start: i64,
        duration: i64,
        limit: i64,
        pay_window: i64,
        price: i64,
    },
    /// A redefinition both stores must refuse: a pool `excess` units larger than the units put
    /// in so far plus all the SKU has available, with the per-user limit raised by `raise`, the
    /// end `later` ticks later and a longer pay window (none of which may reach any sub-pool).
    PutImpossibleSale {
        excess: i64,
        raise: i64,
        later: i64,
    },
    /// The current definition with another split; refused when `subpools` is not the case's.
    Resplit {
        subpools: u32,
    },
    /// The current definition with the other rule for what the per-user limit counts: refused.
    Recount,
    Buy {
        user: User,
        qty: i64,
        request: u8,
    },
    ReadWins {
        stop: Stop,
    },
    ReclaimWins,
    /// The payment side confirms an order: `payment` picks one of two payment ids, `amount_off`
    /// is added to the order's amount (0 mostly), and `anonymous` leaves the user out.
    Pay {
        order: OrderRef,
        payment: u8,
        amount_off: i64,
        anonymous: bool,
    },
    Cancel {
        order: OrderRef,
    },
    ExpireDue,
    CloseEnded,
    Advance {
        ticks: i64,
    },
    /// Moves the clock to `ticks` after the sale's end (0: exactly onto it).
    PastEnd {
        ticks: i64,
    },
}

/// A case: the split, then stock and the sale, then random steps.
#[derive(Debug, Clone)]
struct Case {
    subpools: u32,
    /// What the sale's per-user limit counts: units held (`true`) or every unit won.
    counts_held: bool,
    ops: Vec<Op>,
}

fn user() -> impl Strategy<Value = User> {
    prop::sample::select(USERS.to_vec())
}

fn order_ref() -> impl Strategy<Value = OrderRef> {
    (0..=UNKNOWN_PICK, prop::bool::weighted(0.8), user()).prop_map(|(pick, as_owner, other)| {
        OrderRef {
            pick,
            as_owner,
            other,
        }
    })
}

fn op() -> impl Strategy<Value = Op> {
    let put_sale = (
        (0..=16i64, -8..=4i64, 4..=32i64, 1..=3i64, 2..=16i64),
        prop::sample::select(vec![0, 250, 1999]),
    )
        .prop_map(
            |((pool, start, duration, limit, pay_window), price)| Op::PutSale {
                pool,
                start,
                duration,
                limit,
                pay_window,
                price,
            },
        );
    let amount_off = prop_oneof![8 => Just(0i64), 1 => Just(1i64), 1 => Just(-1i64)];
    let pay = (order_ref(), 0..2u8, amount_off, prop::bool::weighted(0.3)).prop_map(
        |(order, payment, amount_off, anonymous)| Op::Pay {
            order,
            payment,
            amount_off,
            anonymous,
        },
    );
    let impossible =
        (1..=3i64, 1..=2i64, 0..=8i64).prop_map(|(excess, raise, later)| Op::PutImpossibleSale {
            excess,
            raise,
            later,
        });
    let resplit = prop::sample::select(vec![1, 2, 3, 4, 5, MAX_SUBPOOLS])
        .prop_map(|subpools| Op::Resplit { subpools });
    let stop = prop_oneof![
        1 => Just(Stop::AfterRead),
        1 => Just(Stop::AfterCreate),
        3 => Just(Stop::Never),
    ];
    prop_oneof![
        1 => (0..=24i64).prop_map(|total| Op::PutStock { total }),
        2 => put_sale,
        1 => impossible,
        1 => resplit,
        12 => (user(), 1..=3i64, 0..REQUESTS)
            .prop_map(|(user, qty, request)| Op::Buy { user, qty, request }),
        3 => stop.prop_map(|stop| Op::ReadWins { stop }),
        1 => Just(Op::ReclaimWins),
        1 => Just(Op::Recount),
        4 => pay,
        3 => order_ref().prop_map(|order| Op::Cancel { order }),
        2 => Just(Op::ExpireDue),
        1 => Just(Op::CloseEnded),
        2 => (0..=8i64).prop_map(|ticks| Op::Advance { ticks }),
        1 => (0..=4i64).prop_map(|ticks| Op::PastEnd { ticks }),
    ]
}

/// Stock and a running sale first (its pool small, so sub-pools run short and buys fall over
/// to the others), then up to 40 random steps.
fn case() -> impl Strategy<Value = Case> {
    let sale = (2..=10i64, -4..=0i64, 16..=48i64, 1..=3i64, 4..=16i64);
    (
        (2..=4u32, any::<bool>()),
        8..=20i64,
        sale,
        prop::collection::vec(op(), 1..=40),
    )
        .prop_map(
            |((subpools, counts_held), total, (pool, start, duration, limit, pay_window), more)| {
                let mut ops = vec![
                    Op::PutStock { total },
                    Op::PutSale {
                        pool: pool.min(total),
                        start,
                        duration,
                        limit,
                        pay_window,
                        price: 1999,
                    },
                ];
                ops.extend(more);
                Case {
                    subpools,
                    counts_held,
                    ops,
                }
            },
        )
}

/// An order with its number blanked: the numbers differ between the stores by design.
fn unnumbered(order: Order) -> Order {
    Order {
        order_no: String::new(),
        ..order
    }
}

/// The kind of a buy answer and, when it says, the units it says are left.
fn outcome(decision: &BuyDecision) -> (&'static str, Option<i64>) {
    match decision {
        BuyDecision::Queued { remaining, .. } => ("QUEUED", Some(*remaining)),
        BuyDecision::SoldOut { remaining } => ("SOLD_OUT", Some(*remaining)),
        BuyDecision::LimitReached { remaining } => ("LIMIT_REACHED", Some(*remaining)),
        BuyDecision::NotStarted => ("NOT_STARTED", None),
        BuyDecision::Ended => ("ENDED", None),
        BuyDecision::UnknownEvent => ("UNKNOWN_EVENT", None),
    }
}

/// The order a request won, on each store.
#[derive(Debug)]
struct Won {
    redis: String,
    memory: String,
}

/// The two stores, the split, the simulated clock and the orders won so far.
struct Pair {
    redis: RedisStore,
    memory: MemoryStore,
    subpools: u32,
    counts_held: bool,
    now: i64,
    won: BTreeMap<Request, Won>,
}

impl Pair {
    /// The sale as the oracle holds it (equal to Redis's after the previous step).
    async fn sale(&self) -> Option<Sale> {
        self.memory.sale(EVENT).await.ok().flatten().map(|s| s.sale)
    }

    /// Remembers a won order, or checks a retry answered the one its request won first.
    fn won(
        &mut self,
        request: Request,
        redis: String,
        memory: String,
    ) -> Result<(), TestCaseError> {
        if let Some(first) = self.won.get(&request) {
            prop_assert_eq!(
                (&redis, &memory),
                (&first.redis, &first.memory),
                "a retry of {:?} must answer the order it won first (Redis, memory)",
                request
            );
            return Ok(());
        }
        for (other, w) in &self.won {
            prop_assert!(
                w.redis != redis && w.memory != memory,
                "{:?} won {} on Redis / {} in memory, already won by {:?}",
                request,
                redis,
                memory,
                other
            );
        }
        self.won.insert(request, Won { redis, memory });
        Ok(())
    }

    /// The order numbers (Redis, memory) and the asking user of an order reference.
    fn resolve(&self, order: &OrderRef) -> (String, String, String) {
        let known = (order.pick != UNKNOWN_PICK && !self.won.is_empty())
            .then(|| order.pick % self.won.len());
        match known.and_then(|i| self.won.iter().nth(i)) {
            Some(((owner, _), w)) => {
                let user = if order.as_owner { owner } else { &order.other };
                (w.redis.clone(), w.memory.clone(), (*user).to_owned())
            }
            None => {
                let unknown = format!("{EVENT}-999");
                (unknown.clone(), unknown, order.other.to_owned())
            }
        }
    }

    /// The request that won `order_no` on one store.
    fn request_of(&self, order_no: &str, on_redis: bool) -> Result<Request, TestCaseError> {
        self.won
            .iter()
            .find(|(_, w)| order_no == if on_redis { &w.redis } else { &w.memory })
            .map(|(request, _)| *request)
            .ok_or_else(|| {
                let store = if on_redis { "Redis" } else { "memory" };
                TestCaseError::fail(format!("{store} names order {order_no}, which nobody won"))
            })
    }

    /// Wins keyed by the request that won them, in request order.
    fn by_request(
        &self,
        wins: Vec<Win>,
        on_redis: bool,
    ) -> Result<Vec<(Request, Win)>, TestCaseError> {
        let mut keyed = wins
            .into_iter()
            .map(|w| Ok((self.request_of(&w.order_no, on_redis)?, w)))
            .collect::<Result<Vec<_>, TestCaseError>>()?;
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keyed)
    }

    /// Compares wins read from both stores (by request), then creates and acknowledges them as
    /// far as the worker gets.
    async fn process(
        &self,
        what: &str,
        r: Result<Vec<Win>, Kind>,
        m: Result<Vec<Win>, Kind>,
        stop: Stop,
    ) -> Result<(), TestCaseError> {
        let (r, m) = match (r, m) {
            (Ok(r), Ok(m)) => (self.by_request(r, true)?, self.by_request(m, false)?),
            (r, m) => return Err(TestCaseError::fail(format!("{what}: {r:?} / {m:?}"))),
        };
        let announced = |wins: &[(Request, Win)]| {
            wins.iter()
                .map(|(request, w)| (*request, w.sku_id, w.amount, w.currency))
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(announced(&r), announced(&m), "{} (Redis, memory)", what);
        if matches!(stop, Stop::AfterRead) {
            return Ok(());
        }
        for ((request, rw), (_, mw)) in r.iter().zip(&m) {
            let created = (
                kind(self.redis.create_order(rw, self.now).await),
                kind(self.memory.create_order(mw, self.now).await),
            );
            prop_assert_eq!(created.0, created.1, "create_order of {:?}", request);
        }
        if matches!(stop, Stop::AfterCreate) {
            return Ok(());
        }
        for ((request, rw), (_, mw)) in r.iter().zip(&m) {
            let acked = (
                kind(self.redis.ack_win(rw).await),
                kind(self.memory.ack_win(mw).await),
            );
            prop_assert_eq!(acked.0, acked.1, "ack_win of {:?}", request);
        }
        Ok(())
    }

    /// Puts a sale on both stores; `must_refuse` when the step is built to be refused.
    async fn put_sale(&self, sale: &Sale, must_refuse: bool) -> Result<(), TestCaseError> {
        let (r, m) = both!(self, s => s.put_sale(sale));
        prop_assert_eq!(&r, &m, "put_sale({:?}) (Redis, memory)", sale);
        if must_refuse {
            prop_assert_eq!(m, Err(Kind::FailedPrecondition), "{:?}", sale);
        }
        Ok(())
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match op {
            Op::PutStock { total } => {
                let (r, m) = both!(self, s => s.put_stock(SKU, *total));
                prop_assert_eq!(r, m, "put_stock({}) (Redis, memory)", total);
            }
            Op::PutSale {
                pool,
                start,
                duration,
                limit,
                pay_window,
                price,
            } => {
                let start_ms = now + start * TICK_MS;
                let sale = Sale {
                    id: EVENT,
                    sku: SKU,
                    pool: *pool,
                    start_ms,
                    end_ms: start_ms + duration * TICK_MS,
                    per_user_limit: *limit,
                    pay_window_ms: pay_window * TICK_MS,
                    subpools: self.subpools,
                    price: *price,
                    currency: eur(),
                    limit_counts_held: self.counts_held,
                };
                self.put_sale(&sale, false).await?;
            }
            Op::PutImpossibleSale {
                excess,
                raise,
                later,
            } => {
                // From the oracle: its state was checked equal to Redis's after the last step.
                let available = match self.memory.ledger(SKU).await {
                    Ok(Some(ledger)) => ledger.available,
                    _ => 0,
                };
                let sale = self.sale().await.unwrap_or(Sale {
                    id: EVENT,
                    sku: SKU,
                    pool: 0,
                    start_ms: now,
                    end_ms: now + 8 * TICK_MS,
                    per_user_limit: 1,
                    pay_window_ms: 4 * TICK_MS,
                    subpools: self.subpools,
                    price: 100,
                    currency: eur(),
                    limit_counts_held: self.counts_held,
                });
                let impossible = Sale {
                    pool: sale.pool + available + excess,
                    per_user_limit: sale.per_user_limit + raise,
                    end_ms: sale.end_ms + later * TICK_MS,
                    pay_window_ms: sale.pay_window_ms + TICK_MS,
                    ..sale
                };
                self.put_sale(&impossible, true).await?;
            }
            Op::Resplit { subpools } => {
                if let Some(sale) = self.sale().await {
                    let resplit = Sale {
                        subpools: *subpools,
                        ..sale
                    };
                    self.put_sale(&resplit, *subpools != self.subpools).await?;
                }
            }
            Op::Recount => {
                if let Some(sale) = self.sale().await {
                    let recounted = Sale {
                        limit_counts_held: !sale.limit_counts_held,
                        ..sale
                    };
                    self.put_sale(&recounted, true).await?;
                }
            }
            Op::Buy { user, qty, request } => {
                let req = BuyRequest {
                    event_id: EVENT,
                    user_id: (*user).to_owned(),
                    qty: *qty,
                    request_id: format!("r{request}"),
                };
                let (r, m) = match both!(self, s => s.buy(&req, now)) {
                    (Ok(r), Ok(m)) => (r, m),
                    // A request id reused with another quantity, refused by both.
                    (Err(Kind::AlreadyExists), Err(Kind::AlreadyExists)) => return Ok(()),
                    (r, m) => return Err(TestCaseError::fail(format!("buy: {r:?} / {m:?}"))),
                };
                let ((r_kind, r_left), (m_kind, m_left)) = (outcome(&r), outcome(&m));
                prop_assert!(
                    r_kind != "SOLD_OUT" || m_kind == "SOLD_OUT",
                    "Redis answered {:?} with units left over its sub-pools: memory {:?}",
                    r,
                    m
                );
                prop_assert_eq!(r_kind, m_kind, "buy (Redis {:?}, memory {:?})", r, m);
                if let (Some(r_left), Some(m_left)) = (r_left, m_left) {
                    prop_assert_eq!(
                        r_left == 0,
                        m_left == 0,
                        "only a sold-out pool may be answered with 0 left (Redis {:?}, memory {:?})",
                        r,
                        m
                    );
                }
                if let (
                    BuyDecision::Queued { order_no: r_no, .. },
                    BuyDecision::Queued { order_no: m_no, .. },
                ) = (r, m)
                {
                    self.won((*user, *request), r_no, m_no)?;
                }
            }
            Op::ReadWins { stop } => {
                let (r, m) = both!(self, s => s.read_wins("worker", BATCH, BLOCK));
                self.process("read_wins", r, m, *stop).await?;
            }
            Op::ReclaimWins => {
                let (r, m) = both!(self, s => s.reclaim_wins("reclaimer", Duration::ZERO, BATCH));
                self.process("reclaim_wins", r, m, Stop::Never).await?;
            }
            Op::Pay {
                order,
                payment,
                amount_off,
                anonymous,
            } => {
                let (r_no, m_no, user) = self.resolve(order);
                // The order's amount from the oracle (checked equal to Redis's), off as drawn.
                let amount = match self.memory.order(&m_no).await {
                    Ok(Some(o)) => o.amount,
                    _ => 0,
                };
                let pay = |order_no: &str| PayRequest {
                    order_no: order_no.to_owned(),
                    user_id: (!anonymous).then(|| user.clone()),
                    payment_id: format!("p{payment}"),
                    amount: amount + amount_off,
                };
                let r = kind(self.redis.pay(&pay(&r_no), now).await).map(unnumbered);
                let m = kind(self.memory.pay(&pay(&m_no), now).await).map(unnumbered);
                prop_assert_eq!(r, m, "{:?} (Redis {})", pay(&m_no), r_no);
            }
            Op::Cancel { order } => {
                let (r_no, m_no, user) = self.resolve(order);
                let r = kind(self.redis.cancel(&r_no, &user, now).await).map(unnumbered);
                let m = kind(self.memory.cancel(&m_no, &user, now).await).map(unnumbered);
                prop_assert_eq!(r, m, "cancel({} / {}, {})", r_no, m_no, user);
            }
            Op::ExpireDue => {
                let (r, m) = match both!(self, s => s.expire_due(now, BATCH)) {
                    (Ok(r), Ok(m)) => (r, m),
                    (r, m) => {
                        return Err(TestCaseError::fail(format!("expire_due: {r:?} / {m:?}")))
                    }
                };
                let requests = |nos: Vec<String>, on_redis| {
                    nos.iter()
                        .map(|no| self.request_of(no, on_redis))
                        .collect::<Result<BTreeSet<_>, _>>()
                };
                prop_assert_eq!(requests(r, true)?, requests(m, false)?, "expired");
            }
            Op::CloseEnded => {
                let (r, m) = both!(self, s => s.close_ended(now));
                prop_assert_eq!(r, m, "close_ended");
            }
            Op::Advance { ticks } => self.now += ticks * TICK_MS,
            Op::PastEnd { ticks } => {
                if let Some(sale) = self.sale().await {
                    self.now = self.now.max(sale.end_ms + ticks * TICK_MS);
                }
            }
        }
        Ok(())
    }

    /// Both stores account for the same units in the same places, and every order agrees.
    async fn check_state(&self) -> Result<(), TestCaseError> {
        let (r, m) = both!(self, s => s.ledger(SKU));
        prop_assert_eq!(&r, &m, "ledgers (Redis, memory)");
        if let Ok(Some(ledger)) = r {
            prop_assert!(ledger.is_conserved(), "not conserved: {:?}", ledger);
        }
        let (r, m) = both!(self, s => s.sale(EVENT));
        prop_assert_eq!(&r, &m, "the sale (Redis, memory)");
        for (request, won) in &self.won {
            let r = kind(self.redis.order(&won.redis).await).map(|o| o.map(unnumbered));
            let m = kind(self.memory.order(&won.memory).await).map(|o| o.map(unnumbered));
            prop_assert_eq!(
                r,
                m,
                "order of {:?} ({} on Redis, {} in memory)",
                request,
                won.redis,
                won.memory
            );
        }
        self.check_subpools().await?;
        let redis = audit::run(&self.redis).await;
        let memory = audit::run(&self.memory).await;
        for (store, report) in [("Redis", redis), ("memory", memory)] {
            match report {
                Ok(report) => {
                    prop_assert!(report.is_clean(), "{}: {}", store, audit::render(&report))
                }
                Err(e) => return Err(TestCaseError::fail(format!("audit of {store}: {e}"))),
            }
        }
        Ok(())
    }

    /// Every sub-pool holds the sale's definition as the oracle has it, and each user's units
    /// and request ids sit in their home sub-pool, adding up to what the oracle holds.
    async fn check_subpools(&self) -> Result<(), TestCaseError> {
        let snapshots = (
            self.redis.snapshot(SKU).await,
            self.memory.snapshot(SKU).await,
        );
        let (Ok(Some(redis)), Ok(Some(memory))) = snapshots else {
            prop_assert!(
                matches!(snapshots, (Ok(None), Ok(None))),
                "snapshots: {:?}",
                snapshots
            );
            return Ok(());
        };
        let Some(oracle) = memory.sales.iter().find(|s| s.state.sale.id == EVENT) else {
            return Ok(());
        };
        // The definition without the pool: a sub-pool's `put` is 0, units reach it by transfer.
        let definition = |sale: &Sale| Sale {
            pool: 0,
            ..sale.clone()
        };
        let expected = Sale {
            subpools: self.subpools,
            ..definition(&oracle.state.sale)
        };
        let copies: Vec<_> = redis
            .sales
            .iter()
            .filter(|s| s.state.sale.id == EVENT)
            .collect();
        let subs: Vec<u32> = copies.iter().map(|c| c.sub).collect();
        prop_assert_eq!(
            subs.iter().copied().collect::<BTreeSet<_>>(),
            (0..self.subpools).collect::<BTreeSet<_>>(),
            "one copy of the sale per sub-pool: {:?}",
            subs
        );
        let mut counted = BTreeMap::new();
        let mut requests = BTreeMap::new();
        for copy in copies {
            prop_assert_eq!(
                (definition(&copy.state.sale), copy.state.closed),
                (expected.clone(), oracle.state.closed),
                "sub-pool {}'s copy of the sale (Redis, memory)",
                copy.sub
            );
            for (user, n) in copy.counted.iter().filter(|(_, n)| **n != 0) {
                let home = home_subpool(user, self.subpools);
                prop_assert_eq!(copy.sub, home, "{} holds {} units away from home", user, n);
                *counted.entry(user.clone()).or_insert(0) += n;
            }
            for ((user, request), order_no) in &copy.requests {
                let home = home_subpool(user, self.subpools);
                prop_assert_eq!(
                    copy.sub,
                    home,
                    "request {} of {} away from home",
                    request,
                    user
                );
                requests.insert((user.clone(), request.clone()), order_no.clone());
            }
        }
        let oracle_counted: BTreeMap<_, _> = oracle
            .counted
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(u, n)| (u.clone(), *n))
            .collect();
        prop_assert_eq!(
            counted,
            oracle_counted,
            "units counted per user (Redis, memory)"
        );
        let won = |on_redis: bool| {
            self.won
                .iter()
                .map(|((user, request), w)| {
                    let no = if on_redis { &w.redis } else { &w.memory };
                    (((*user).to_owned(), format!("r{request}")), no.clone())
                })
                .collect::<BTreeMap<_, _>>()
        };
        prop_assert_eq!(requests, won(true), "Redis's request ids");
        prop_assert_eq!(&oracle.requests, &won(false), "memory's request ids");
        Ok(())
    }
}

async fn run_case(redis: &TestRedis, case: Case) -> Result<(), TestCaseError> {
    // A fresh key prefix per case: cases (and shrink steps) never see each other's keys.
    let mut pair = Pair {
        redis: redis.store().await,
        memory: MemoryStore::new(),
        subpools: case.subpools,
        counts_held: case.counts_held,
        now: START_MS,
        won: BTreeMap::new(),
    };
    for (i, op) in case.ops.iter().enumerate() {
        pair.apply(op).await.map_err(|e| {
            TestCaseError::fail(format!("step {i} {op:?} at now={}: {e}", pair.now))
        })?;
        pair.check_state().await.map_err(|e| {
            TestCaseError::fail(format!("after step {i} {op:?} at now={}: {e}", pair.now))
        })?;
    }
    Ok(())
}

#[test]
fn a_sale_split_in_sub_pools_on_redis_matches_one_pool_in_memory() {
    let runtime = blocking_runtime();
    let redis = runtime.block_on(TestRedis::start());
    run_property("the stores disagree", DEFAULT_CASES, &case(), |case| {
        runtime.block_on(run_case(&redis, case))
    });
    drop(redis);
}

/// The domain's buyers reach every sub-pool of every split the model tries, so each sub-pool is
/// bought from at home as well as fetched from.
#[test]
fn every_sub_pool_is_some_buyers_home() {
    for subpools in 2..=4 {
        let homes: BTreeSet<u32> = USERS.iter().map(|u| home_subpool(u, subpools)).collect();
        assert_eq!(homes, (0..subpools).collect(), "split in {subpools}");
    }
}
