//! Stock: the domain types of the warehouse, the Redis key layout and the Lua scripts' contracts.
//!
//! Stock of one SKU is counted in places: `available`, each sale's `pool`, `locked` (held by
//! unpaid orders and seed-contract locks) and `sold`. Every movement between places within one
//! hash slot happens inside one Lua script, and `available + pools + locked + sold == total`
//! after each of them (see [`Ledger::is_conserved`]). The two movements that cross slots on a
//! Redis Cluster are journaled: units moving between a split sale's sub-pools ([`Shard`], the
//! `move_*` scripts) are counted where they are going, and a multi-SKU seed-contract lock is a
//! saga of per-SKU steps (see [`lock`]).
//!
//! Everything here is pure: key names, argument packing and reply parsing are functions with unit
//! tests, so the one place that talks to Redis (the warehouse's `RedisStore`) only moves bytes.
//! Every key of a SKU carries the hash tag `{sku:ID}` (a sub-pool's `{sku:ID:SUB}`), so each
//! script touches one cluster slot; the only keys outside a SKU's slots are the directories
//! ([`Keys::events`], [`Keys::skus`], the lock directories `{locks:N}`) and the seed-contract
//! lock journals ([`Keys::lock`]), each written by scripts or commands of their own.
//!
//! What it does not do: talk to Redis, read a clock (scripts take `now` as an argument, so tests
//! and the model-based oracle run on simulated time) or decide policy of the edge.

use std::collections::BTreeMap;

pub mod audit;
pub mod lock;

/// The Lua scripts, each headed by its KEYS / ARGV / reply contract and a worked example.
pub mod scripts {
    /// `Admin.PutSkuStock`.
    pub const PUT_STOCK: &str = include_str!("lua/put_stock.lua");
    /// `Admin.PutEvent`: define a sale and pre-warm its pool.
    pub const PUT_EVENT: &str = include_str!("lua/put_event.lua");
    /// `Admin.PutEvent` of a split sale: define it in one sub-pool's shard.
    pub const PUT_SUBPOOL: &str = include_str!("lua/put_subpool.lua");
    /// A transfer between two shards, step one: take units out and journal them.
    pub const MOVE_OUT: &str = include_str!("lua/move_out.lua");
    /// A transfer between two shards, step two: credit them once.
    pub const MOVE_IN: &str = include_str!("lua/move_in.lua");
    /// `Seckill.Buy`: the whole decision, one script.
    pub const BUY: &str = include_str!("lua/buy.lua");
    /// The order worker: QUEUED → PENDING_PAYMENT, exactly once.
    pub const CREATE_ORDER: &str = include_str!("lua/create_order.lua");
    /// `Seckill.PayOrder`: locked → sold.
    pub const PAY: &str = include_str!("lua/pay.lua");
    /// `Seckill.CancelOrder` and the sweeper's expiry: locked → pool or available.
    pub const RELEASE_ORDER: &str = include_str!("lua/release_order.lua");
    /// The sweeper's end of a sale: pool → available.
    pub const CLOSE_EVENT: &str = include_str!("lua/close_event.lua");
    /// Read-only: a SKU's counters and the sum of its sales' pools.
    pub const LEDGER: &str = include_str!("lua/ledger.lua");
    /// Read-only: everything the audit needs about one SKU, at one instant.
    pub const SNAPSHOT: &str = include_str!("lua/snapshot.lua");
}

/// One hash-tag shard of a SKU: the SKU's own keys (`sub` 0, tag `{sku:ID}`) or those of one
/// sub-pool of a sale split in several (`sub` ≥ 1, tag `{sku:ID:SUB}`), which land on other
/// cluster slots. Each shard has the same key layout, so every script runs unchanged on any of
/// them; a shard's `stock` hash counts only what passed through it (`locked`, `sold`, and
/// `available` units waiting to be drained back to the SKU's own shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard {
    /// The SKU.
    pub sku: i64,
    /// 0 for the SKU's own shard, else the sub-pool's number.
    pub sub: u32,
}

impl Shard {
    /// Sub-pool `sub` of `sku` (0 is the SKU's own shard).
    pub fn new(sku: i64, sub: u32) -> Self {
        Self { sku, sub }
    }

    /// The hash tag, without braces: `sku:ID` or `sku:ID:SUB`.
    pub fn tag(&self) -> String {
        match self.sub {
            0 => format!("sku:{}", self.sku),
            sub => format!("sku:{}:{sub}", self.sku),
        }
    }
}

impl From<i64> for Shard {
    fn from(sku: i64) -> Self {
        Self { sku, sub: 0 }
    }
}

/// The most sub-pools a sale may be split in.
pub const MAX_SUBPOOLS: u32 = 64;

/// Key names. `prefix` namespaces one deployment (and isolates tests sharing a Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (for example `"fg"`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix these keys live under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn in_shard(&self, shard: impl Into<Shard>, name: &str) -> String {
        format!("{}:{{{}}}:{name}", self.prefix, shard.into().tag())
    }

    /// Hash `total available locked sold` of one SKU (of a sub-pool shard: what passed through
    /// it; `total` stays 0 there).
    pub fn stock(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "stock")
    }

    /// Set of the event ids with a pool in this shard (for the ledger's sum of pools).
    pub fn sku_events(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "events")
    }

    /// Hash of one sale in one shard: its definition, `pool` (units left), `put` (units put in;
    /// kept on the SKU's own shard), `seq`, `closed`, `subpools`, `sub`.
    pub fn event(&self, shard: impl Into<Shard>, event: i64) -> String {
        self.in_shard(shard, &format!("ev:{event}"))
    }

    /// The prefix of a shard's sale keys (`event` is this followed by the event id).
    pub fn event_prefix(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "ev:")
    }

    /// Hash user id → units the user holds in the sale (the per-user limit).
    pub fn event_users(&self, shard: impl Into<Shard>, event: i64) -> String {
        self.in_shard(shard, &format!("ev:{event}:users"))
    }

    /// Hash `user \x1f request id` → order number (Buy's idempotency).
    pub fn event_requests(&self, shard: impl Into<Shard>, event: i64) -> String {
        self.in_shard(shard, &format!("ev:{event}:req"))
    }

    /// Hash order number → order record (JSON) of every flash-sale order of the shard. One key
    /// per shard, so the scripts declare every key they touch.
    pub fn orderbook(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "orderbook")
    }

    /// Stream of wins waiting for the order worker.
    pub fn order_stream(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "orders")
    }

    /// Sorted set order number → payment deadline (ms), for the sweeper.
    pub fn deadlines(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "deadlines")
    }

    /// Hash transfer id → units on their way out of this shard (see the `move_*` scripts).
    pub fn moves(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "moves")
    }

    /// Set of the transfer ids this shard has been credited with (a transfer lands once).
    pub fn received(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "received")
    }

    /// Directory hash event id → `SKU` or `SKU/SUBPOOLS` (a sale's SKU and split never change,
    /// so callers cache it).
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Directory set of every SKU with stock (for the worker, the sweeper and the audit).
    pub fn skus(&self) -> String {
        format!("{}:skus", self.prefix)
    }

    /// The shard whose hash tag a key carries, if it is one of this prefix's SKU keys.
    pub fn shard_of(&self, key: &str) -> Option<Shard> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix(":{sku:")?;
        let tag = rest.split_once('}')?.0;
        Some(match tag.split_once(':') {
            None => Shard::new(tag.parse().ok()?, 0),
            Some((sku, sub)) => Shard::new(sku.parse().ok()?, sub.parse().ok().filter(|s| *s > 0)?),
        })
    }

    /// The SKU whose hash tag a key carries, if it is one of this prefix's SKU keys.
    pub fn sku_of(&self, key: &str) -> Option<i64> {
        self.shard_of(key).map(|s| s.sku)
    }

    /// Hash of one seed-contract lock (`SKuStockLock`), keyed by order id.
    pub fn lock(&self, order_id: i64) -> String {
        format!("{}:lock:{order_id}", self.prefix)
    }
}

/// A directory entry `SKU` or `SKU/SUBPOOLS` → (SKU, sub-pools).
pub fn parse_event_entry(entry: &str) -> Option<(i64, u32)> {
    match entry.split_once('/') {
        None => Some((entry.parse().ok()?, 1)),
        Some((sku, k)) => Some((sku.parse().ok()?, k.parse().ok().filter(|k| *k >= 1)?)),
    }
}

/// The directory entry of a sale of `sku` split in `subpools`.
pub fn event_entry(sku: i64, subpools: u32) -> String {
    if subpools <= 1 {
        sku.to_string()
    } else {
        format!("{sku}/{subpools}")
    }
}

/// The sub-pool a user buys from first: a stable hash (FNV-1a) of the user id, so a user's
/// per-sale count and request ids stay in one shard.
pub fn home_subpool(user_id: &str, subpools: u32) -> u32 {
    if subpools <= 1 {
        return 0;
    }
    let hash = user_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(subpools)) as u32
}

/// The number of the `seq`-th win of sub-pool `sub` of a sale split in `subpools`: sub-pools
/// number their wins on interleaved tracks (`(seq - 1) * subpools + sub + 1`), so order numbers
/// stay `EVENT-N`, unique, and name their shard. With one pool it is `seq`.
pub fn order_seq(seq: i64, sub: u32, subpools: u32) -> i64 {
    (seq - 1) * i64::from(subpools) + i64::from(sub) + 1
}

/// The sub-pool whose track order number `EVENT-N` is on.
pub fn subpool_of_order(order_no: &str, subpools: u32) -> Option<u32> {
    event_of_order(order_no)?;
    let n: i64 = order_no.split_once('-')?.1.parse().ok()?;
    // (event_of_order accepts any u64; numbers past i64 are no order of ours.)
    Some(((n - 1) % i64::from(subpools.max(1))) as u32)
}

/// The consumer group the order workers share on every order stream.
pub const ORDER_GROUP: &str = "order-workers";

/// Field separator inside composite hash fields (not valid in user ids or request ids).
pub const FIELD_SEP: char = '\u{1f}';

/// The per-place counts of one SKU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Units put in by `PutSkuStock`.
    pub total: i64,
    /// Units anyone may lock or pool.
    pub available: i64,
    /// Units in sales' pools, summed over the SKU's sales.
    pub pools: i64,
    /// Units held by unpaid orders and open seed-contract locks.
    pub locked: i64,
    /// Units sold.
    pub sold: i64,
}

impl Ledger {
    /// The invariant: every unit put in is in exactly one place, and no place is negative.
    pub fn is_conserved(&self) -> bool {
        self.available + self.pools + self.locked + self.sold == self.total
            && [self.available, self.pools, self.locked, self.sold]
                .iter()
                .all(|n| *n >= 0)
    }
}

/// A flash sale of one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    /// Event id.
    pub id: i64,
    /// The SKU on sale.
    pub sku: i64,
    /// Units put in the sale's pool.
    pub pool: i64,
    /// Opening time, unix ms, inclusive.
    pub start_ms: i64,
    /// Closing time, unix ms, exclusive.
    pub end_ms: i64,
    /// Units one user may hold in the sale.
    pub per_user_limit: i64,
    /// How long an order waits for payment, ms.
    pub pay_window_ms: i64,
    /// Sub-pools the pool is split in (1: one pool). A very hot sale on a Redis Cluster spreads
    /// its pool over several slots; see [`home_subpool`].
    pub subpools: u32,
}

/// A sale with its live figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleState {
    /// The definition.
    pub sale: Sale,
    /// Units still in the pool.
    pub remaining: i64,
    /// Whether the sweeper has returned the pool to available after the end.
    pub closed: bool,
}

/// Where a sale is in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalePhase {
    /// Before `start_ms`.
    Upcoming,
    /// Between start and end.
    Running,
    /// At or after `end_ms`, or closed.
    Ended,
}

impl SaleState {
    /// The phase at `now_ms`.
    pub fn phase(&self, now_ms: i64) -> SalePhase {
        if self.closed || now_ms >= self.sale.end_ms {
            SalePhase::Ended
        } else if now_ms < self.sale.start_ms {
            SalePhase::Upcoming
        } else {
            SalePhase::Running
        }
    }
}

/// One buy attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyRequest {
    /// The sale.
    pub event_id: i64,
    /// The buyer.
    pub user_id: String,
    /// Units wanted.
    pub qty: i64,
    /// The caller's idempotency key for this attempt.
    pub request_id: String,
}

/// The decision on a buy attempt. Refusals are values: only a broken store is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyDecision {
    /// Won: the units are locked and the order is on its way through the queue.
    Queued {
        /// The order number (the same one on a retry with the same request id).
        order_no: String,
        /// Units left in the pool.
        remaining: i64,
    },
    /// The pool has fewer units than asked for.
    SoldOut {
        /// Units left in the pool.
        remaining: i64,
    },
    /// The user would hold more than the sale's per-user limit.
    LimitReached {
        /// Units left in the pool.
        remaining: i64,
    },
    /// Before the sale's start.
    NotStarted,
    /// At or after the sale's end.
    Ended,
    /// No such sale.
    UnknownEvent,
}

/// The life of a flash-sale order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrderStatus {
    /// Won; the order worker has not created it yet.
    Queued,
    /// Created; waiting for payment until the deadline.
    PendingPayment,
    /// Paid: its units are sold.
    Paid,
    /// Cancelled by the user: its units went back.
    Cancelled,
    /// Unpaid by the deadline: its units went back.
    Expired,
}

impl OrderStatus {
    /// The name stored in Redis and shown in audits.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::PendingPayment => "PENDING_PAYMENT",
            Self::Paid => "PAID",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "QUEUED" => Self::Queued,
            "PENDING_PAYMENT" => Self::PendingPayment,
            "PAID" => Self::Paid,
            "CANCELLED" => Self::Cancelled,
            "EXPIRED" => Self::Expired,
            _ => return None,
        })
    }

    /// Whether the order still holds locked units.
    pub fn holds_units(self) -> bool {
        matches!(self, Self::Queued | Self::PendingPayment)
    }
}

/// A flash-sale order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// `"{event}-{seq}"`, see [`order_no`].
    pub order_no: String,
    /// The sale.
    pub event_id: i64,
    /// The SKU.
    pub sku_id: i64,
    /// The buyer.
    pub user_id: String,
    /// Units.
    pub qty: i64,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Payment deadline, unix ms; 0 while queued.
    pub deadline_ms: i64,
    /// When the buy was decided, unix ms.
    pub created_ms: i64,
}

/// A win read from the order stream, not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Win {
    /// The SKU whose stream holds the entry.
    pub sku_id: i64,
    /// The stream entry id (the memory store numbers its own).
    pub entry_id: String,
    /// The order it announces.
    pub order_no: String,
}

/// A seed-contract lock request (`SKuStockLock`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    /// The order's id, the idempotency key.
    pub order_id: i64,
    /// 订单号.
    pub order_no: String,
    /// 收货人.
    pub consignee: String,
    /// 收货人手机号.
    pub phone: String,
    /// 收货地址.
    pub address: String,
    /// 订单备注.
    pub note: String,
    /// SKU → units, ordered so every store walks SKUs the same way.
    pub sku_nums: BTreeMap<i64, i64>,
}

/// State of a seed-contract lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStatus {
    /// Units held.
    Locked,
    /// Committed: units sold.
    Finished,
    /// Released: units back to available.
    Released,
}

impl LockStatus {
    /// The name stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Locked => "LOCKED",
            Self::Finished => "FINISHED",
            Self::Released => "RELEASED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "LOCKED" => Self::Locked,
            "FINISHED" => Self::Finished,
            "RELEASED" => Self::Released,
            _ => return None,
        })
    }
}

/// A refusal of a stock operation that is the caller's to fix (as opposed to a broken store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    /// No such SKU, sale, order or lock.
    #[error("{0} not found")]
    NotFound(String),
    /// The operation does not fit the current state (not enough units, wrong status, …).
    #[error("{0}")]
    FailedPrecondition(String),
    /// An idempotency key was reused for a different request.
    #[error("{0}")]
    AlreadyExists(String),
    /// The order belongs to another user.
    #[error("order {0} belongs to another user")]
    NotYours(String),
}

/// The order number of the `seq`-th win of a sale.
pub fn order_no(event_id: i64, seq: i64) -> String {
    format!("{event_id}-{seq}")
}

/// The sale an order number belongs to, or `None` when it is not one of ours.
pub fn event_of_order(order_no: &str) -> Option<i64> {
    let (event, seq) = order_no.split_once('-')?;
    let event: i64 = event.parse().ok().filter(|e| *e > 0)?;
    seq.parse::<u64>().ok().filter(|s| *s > 0)?;
    Some(event)
}

/// Encodes a lock's SKU map as the scripts take it: `sku:num,sku:num` in SKU order.
pub fn encode_sku_nums(sku_nums: &BTreeMap<i64, i64>) -> String {
    sku_nums
        .iter()
        .map(|(sku, n)| format!("{sku}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a Lua error or refusal reply of the form `CODE detail` into a [`StockError`].
///
/// Scripts answer a refusal as a status array `{"ERR_CODE", detail}`; see each script's header.
pub fn refusal(code: &str, detail: &str) -> Option<StockError> {
    Some(match code {
        "NOT_FOUND" => StockError::NotFound(detail.to_owned()),
        "FAILED_PRECONDITION" => StockError::FailedPrecondition(detail.to_owned()),
        "ALREADY_EXISTS" => StockError::AlreadyExists(detail.to_owned()),
        "NOT_YOURS" => StockError::NotYours(detail.to_owned()),
        _ => return None,
    })
}

/// A transfer journaled by `move_out.lua` and not yet known to have landed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Move {
    /// Units on their way.
    #[serde(deserialize_with = "number_string")]
    pub n: i64,
    /// The field they left (`pool` or `available`).
    pub from: String,
    /// The destination hash.
    pub to: String,
    /// The destination field.
    pub field: String,
    /// The destination shard's received set.
    pub received: String,
    /// The destination shard's stock hash.
    pub fallback: String,
}

fn number_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl Move {
    /// Parses a journal entry.
    pub fn parse(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }
}

/// Parses `Buy`'s reply `{outcome, order_no, remaining}`.
pub fn parse_buy(outcome: &str, order_no: &str, remaining: i64) -> Option<BuyDecision> {
    Some(match outcome {
        "QUEUED" | "DUPLICATE" => BuyDecision::Queued {
            order_no: order_no.to_owned(),
            remaining,
        },
        "SOLD_OUT" => BuyDecision::SoldOut { remaining },
        "LIMIT_REACHED" => BuyDecision::LimitReached { remaining },
        "NOT_STARTED" => BuyDecision::NotStarted,
        "ENDED" => BuyDecision::Ended,
        "UNKNOWN_EVENT" => BuyDecision::UnknownEvent,
        _ => return None,
    })
}

/// Builds an [`Order`] from its record in the orderbook (a JSON object of strings).
pub fn parse_order_record(order_no: &str, record: &str) -> Option<Order> {
    let fields: BTreeMap<String, String> = serde_json::from_str(record).ok()?;
    parse_order(order_no, &fields)
}

/// Builds an [`Order`] from the record's fields.
pub fn parse_order(order_no: &str, fields: &BTreeMap<String, String>) -> Option<Order> {
    let num = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
    Some(Order {
        order_no: order_no.to_owned(),
        event_id: num("event")?,
        sku_id: num("sku")?,
        user_id: fields.get("user")?.clone(),
        qty: num("qty")?,
        status: OrderStatus::parse(fields.get("status")?)?,
        deadline_ms: num("deadline").unwrap_or(0),
        created_ms: num("created")?,
    })
}

/// Builds a [`SaleState`] from a sale hash (`HGETALL`).
pub fn parse_sale(fields: &BTreeMap<String, String>) -> Option<SaleState> {
    let num = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
    Some(SaleState {
        sale: Sale {
            id: num("id")?,
            sku: num("sku")?,
            pool: num("put")?,
            start_ms: num("start")?,
            end_ms: num("end")?,
            per_user_limit: num("limit")?,
            pay_window_ms: num("pay_window")?,
            subpools: num("subpools").map_or(Ok(1), u32::try_from).ok()?.max(1),
        },
        remaining: num("pool")?,
        closed: num("closed").unwrap_or(0) == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_sku_shares_its_hash_tag() {
        let k = Keys::new("fg");
        for key in [
            k.stock(7),
            k.sku_events(7),
            k.event(7, 3),
            k.event_users(7, 3),
            k.event_requests(7, 3),
            k.orderbook(7),
            k.order_stream(7),
            k.deadlines(7),
        ] {
            let tag = key
                .split_once('{')
                .and_then(|(_, rest)| rest.split_once('}'))
                .map(|(t, _)| t);
            assert_eq!(tag, Some("sku:7"), "{key}");
        }
        assert_eq!(k.stock(7), "fg:{sku:7}:stock");
        assert_ne!(k.stock(7), k.stock(70));
        assert_eq!(k.sku_of(&k.order_stream(70)), Some(70));
        assert_eq!(k.sku_of("other:{sku:70}:orders"), None);
        let sub = Shard::new(7, 3);
        assert_eq!(k.stock(sub), "fg:{sku:7:3}:stock");
        assert_eq!(k.event(sub, 2), "fg:{sku:7:3}:ev:2");
        assert_eq!(k.event_prefix(sub) + "2", k.event(sub, 2));
        assert_eq!(k.shard_of(&k.order_stream(sub)), Some(sub));
        assert_eq!(k.shard_of(&k.order_stream(7)), Some(Shard::new(7, 0)));
        assert_eq!(k.shard_of("fg:{sku:7:0}:orders"), None);
        assert_eq!(k.shard_of("fg:{sku:7:x}:orders"), None);
    }

    #[test]
    fn sub_pools_number_orders_on_interleaved_tracks() {
        for k in 1..=5u32 {
            let mut seen = std::collections::BTreeSet::new();
            for sub in 0..k {
                for seq in 1..=20 {
                    let no = order_no(9, order_seq(seq, sub, k));
                    assert!(seen.insert(no.clone()), "{no} twice");
                    assert_eq!(subpool_of_order(&no, k), Some(sub), "{no}");
                }
            }
        }
        assert_eq!(order_seq(5, 0, 1), 5);
        assert_eq!(subpool_of_order("4-18446744073709551615", 4), None);
        assert_eq!(parse_event_entry("12"), Some((12, 1)));
        assert_eq!(parse_event_entry("12/4"), Some((12, 4)));
        assert_eq!(parse_event_entry(&event_entry(12, 4)), Some((12, 4)));
        assert_eq!(parse_event_entry("12/0"), None);
        assert_eq!(event_entry(12, 1), "12");
        let homes: std::collections::BTreeSet<u32> = (0..100)
            .map(|u| home_subpool(&format!("user-{u}"), 4))
            .collect();
        assert_eq!(homes.len(), 4, "a hundred users spread over every sub-pool");
        assert_eq!(home_subpool("anyone", 1), 0);
    }

    #[test]
    fn order_numbers_name_their_sale() {
        assert_eq!(order_no(12, 5), "12-5");
        assert_eq!(event_of_order("12-5"), Some(12));
        for bad in [
            "", "12", "-5", "12-", "x-1", "0-1", "12-0", "12-5-1", "-12-5",
        ] {
            assert_eq!(event_of_order(bad), None, "{bad}");
        }
    }

    #[test]
    fn ledger_conservation_catches_a_lost_unit_and_a_negative_place() {
        let ok = Ledger {
            total: 10,
            available: 4,
            pools: 3,
            locked: 2,
            sold: 1,
        };
        assert!(ok.is_conserved());
        assert!(!Ledger { sold: 2, ..ok }.is_conserved());
        assert!(!Ledger {
            available: -1,
            pools: 8,
            ..ok
        }
        .is_conserved());
    }

    #[test]
    fn replies_parse_into_domain_values() {
        assert_eq!(
            parse_buy("DUPLICATE", "1-1", 4),
            Some(BuyDecision::Queued {
                order_no: "1-1".into(),
                remaining: 4
            })
        );
        assert_eq!(
            parse_buy("SOLD_OUT", "", 0),
            Some(BuyDecision::SoldOut { remaining: 0 })
        );
        assert_eq!(parse_buy("???", "", 0), None);
        assert_eq!(
            refusal("NOT_YOURS", "1-1"),
            Some(StockError::NotYours("1-1".into()))
        );
        assert_eq!(refusal("OK", ""), None);
        let fields: BTreeMap<String, String> = [
            ("event", "1"),
            ("sku", "2"),
            ("user", "u"),
            ("qty", "1"),
            ("status", "PENDING_PAYMENT"),
            ("deadline", "99"),
            ("created", "9"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let order = parse_order("1-1", &fields).unwrap();
        assert_eq!(order.status, OrderStatus::PendingPayment);
        assert_eq!(order.deadline_ms, 99);
        assert_eq!(
            encode_sku_nums(&[(2, 1), (1, 3)].into_iter().collect()),
            "1:3,2:1"
        );
    }
}
