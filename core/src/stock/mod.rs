//! Stock: the domain types of the warehouse, and (in submodules) the Redis key layout, the
//! numbering of orders, the Lua scripts' contracts and the split-sale policy.
//!
//! Stock of one SKU is counted in places: `available`, each sale's `pool`, `locked` (held by
//! unpaid orders and seed-contract locks) and `sold`. Every movement between places within one
//! hash slot happens inside one Lua script, and `available + pools + locked + sold == total`
//! after each of them (see [`Ledger::is_conserved`]). The two movements that cross slots on a
//! Redis Cluster are journaled: units moving between a split sale's sub-pools ([`Shard`], the
//! `move_*` scripts) are counted where they are going, and a multi-SKU seed-contract lock is a
//! saga of per-SKU steps (see [`lock`]).
//!
//! - [`keys`]: every key name, lock keys included;
//! - [`money`]: prices, currencies, order amounts;
//! - [`numbering`]: order numbers, directory entries, a buyer's home sub-pool;
//! - [`record`]: the order record and the request entry the scripts store (no JSON);
//! - [`call`]: one function per script that packs its KEYS and ARGV and one that parses its
//!   reply, so a store running scripts only sends calls;
//! - [`split`]: the split-sale policy (the buy fall-over, the spread of a pool) as pure plans;
//! - [`lock`]: the seed-contract lock's saga; [`audit`]: does the stock add up;
//! - [`room`]: what a sale's waiting room answers (issue 14).
//!
//! What it does not do: talk to Redis, read a clock (scripts take `now` as an argument, so tests
//! and the model-based oracle run on simulated time) or decide policy of the edge. The Redis
//! store executes the calls and plans made here, and decides only their order and concurrency.

/// Implements `as_str` (the name stored in Redis and shown in audits) and `parse` (its inverse)
/// for an enum stored by name, from one table, so each status is named and parsed one way.
macro_rules! stored_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name stored in Redis and shown in audits.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }

            /// Parses a stored name.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

use std::collections::BTreeMap;

pub mod audit;
pub mod call;
pub mod keys;
pub mod lock;
pub mod money;
pub mod numbering;
pub mod record;
pub mod room;
pub mod split;

pub use self::call::{parse_order_record, parse_sale, refusal, Move};
pub use self::keys::Keys;
pub use self::money::{amount, Currency, MAX_PRICE};
pub use self::numbering::{
    event_entry, event_of_order, home_subpool, order_no, order_seq, parse_event_entry,
    parse_retired_entry, retired_entry, subpool_of_order,
};

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

/// The most buys one `Seckill/BuyMany` may carry: one lane's batch ([`call::BUY_BATCH_MAX`]),
/// so the buys an edge instance gathers for a sale are decided by one script call.
pub const BUY_MANY_MAX: usize = call::BUY_BATCH_MAX;

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
    /// Units one user may buy in the sale (see `limit_counts_held` for what counts).
    pub per_user_limit: i64,
    /// How long an order waits for payment, ms.
    pub pay_window_ms: i64,
    /// Sub-pools the pool is split in (1: one pool). A very hot sale on a Redis Cluster spreads
    /// its pool over several slots; see [`home_subpool`].
    pub subpools: u32,
    /// Price of one unit in minor units of `currency`, `0..=`[`MAX_PRICE`]. A redefinition may
    /// change it; orders keep the amount of their buy.
    pub price: i64,
    /// The price's currency.
    pub currency: Currency,
    /// What `per_user_limit` counts: `false`, every unit the user won in the sale, cancelled and
    /// expired orders included (buy, cancel, buy again gains nothing); `true`, only the units
    /// the user's orders hold now. Fixed once the sale exists: the per-user counts mean one or
    /// the other.
    pub limit_counts_held: bool,
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

stored_names!(OrderStatus {
    Queued => "QUEUED",
    PendingPayment => "PENDING_PAYMENT",
    Paid => "PAID",
    Cancelled => "CANCELLED",
    Expired => "EXPIRED",
});

impl OrderStatus {
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
    /// `qty` × the sale's price at the buy, in minor units of `currency`: what a payment must be.
    pub amount: i64,
    /// The amount's currency.
    pub currency: Currency,
    /// The payment that paid it; `None` until paid.
    pub payment: Option<Payment>,
}

/// The payment side's confirmation recorded in a paid order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The payment provider's reference (1 to 128 characters).
    pub id: String,
    /// When the order was paid, unix ms.
    pub paid_ms: i64,
}

/// The payment side's word that an order is paid (`PayOrder`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayRequest {
    /// The order.
    pub order_no: String,
    /// When set, the order must be this user's (else any user's order may be paid: the payment
    /// side need not know who bought).
    pub user_id: Option<String>,
    /// The payment provider's reference. The same one again is a retry and changes nothing;
    /// another one for a paid order is refused.
    pub payment_id: String,
    /// What was paid, in minor units of the order's currency: must be the order's amount.
    pub amount: i64,
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
    /// The order's amount, so the order side can book it without reading the order.
    pub amount: i64,
    /// The amount's currency.
    pub currency: Currency,
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

stored_names!(LockStatus {
    Locked => "LOCKED",
    Finished => "FINISHED",
    Released => "RELEASED",
});

/// A refusal of a stock operation that is the caller's to fix (as opposed to a broken store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    /// No such SKU, sale, order or lock.
    #[error("{0} not found")]
    NotFound(String),
    /// The operation does not fit the current state (not enough units, wrong status, …).
    #[error("{0}")]
    FailedPrecondition(String),
    /// An idempotency key was reused for a different request (a lock's order id, a buy's
    /// request id, a payment of an order already paid by another payment).
    #[error("{0}")]
    AlreadyExists(String),
    /// The order belongs to another user.
    #[error("order {0} belongs to another user")]
    NotYours(String),
}

impl StockError {
    /// A buy's request id asked again, in the same sale, for another quantity than the one it
    /// first named (`(event, qty)`).
    pub fn request_reused(request_id: &str, (event, qty): (i64, i64)) -> Self {
        Self::AlreadyExists(format!(
            "request_id {request_id:?} was a buy of {qty} in event {event}; a new buy needs a new one"
        ))
    }
}

/// Encodes a lock's SKU map as the scripts take it: `sku:num,sku:num` in SKU order.
pub fn encode_sku_nums(sku_nums: &BTreeMap<i64, i64>) -> String {
    sku_nums
        .iter()
        .map(|(sku, n)| format!("{sku}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_lock_map_encodes_in_sku_order() {
        assert_eq!(
            encode_sku_nums(&[(2, 1), (1, 3)].into_iter().collect()),
            "1:3,2:1"
        );
    }
}
