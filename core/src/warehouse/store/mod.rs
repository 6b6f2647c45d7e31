//! Where stock lives: the [`Store`] trait and its two implementations.
//!
//! The traits are shaped around the atomic operations of the domain (`buy`, `lock`, `pay`, …),
//! not around get/set, so each operation is one Lua script in [`RedisStore`] and one critical
//! section in [`MemoryStore`]. Both implement the same semantics; the model-based tests hold them
//! to it. Time comes in as an argument (`now_ms`) so the stores never read a clock for decisions.
//!
//! The operations are grouped along the seams of the domain, one trait each: [`Stock`] (a SKU's
//! counts), [`Sales`] (sale definitions), [`Orders`] (buying and an order's life), [`OrderQueue`]
//! (wins on their way to orders), [`SeedLocks`] (the seed contract), [`Audit`] and [`Rooms`]
//! (waiting rooms); [`Store`] is all of them, for code that needs the whole store.

mod memory;
mod redis;

pub use self::memory::MemoryStore;
pub use self::redis::durability::{self, Durability, Guarantee};
pub use self::redis::{
    invocation, RedisConnection, RedisStore, RedisStoreConfig, DEFAULT_RETAIN_CLOSED,
};

use std::future::Future;
use std::time::Duration;

use crate::admission::Rules;
use crate::stock::audit::{LockSnapshot, SkuSnapshot};
use crate::stock::call::ReplyError;
use crate::stock::lock::{LockRecords, LockRepairs};
use crate::stock::room::{Joined, Moved, Place};
use crate::stock::{
    BuyDecision, BuyRequest, Ledger, LockRequest, Order, PayRequest, Sale, SaleState, StockError,
    Win,
};

/// A failed store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The request does not fit the stock's state: the caller's to fix.
    #[error(transparent)]
    Refused(#[from] StockError),
    /// The backend cannot be reached or did not answer in time.
    #[error("stock store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something the protocol does not allow.
    #[error("stock store answered unexpectedly: {0}")]
    Corrupt(String),
}

impl From<ReplyError> for StoreError {
    fn from(e: ReplyError) -> Self {
        match e {
            ReplyError::Refused(refused) => Self::Refused(refused),
            ReplyError::Malformed(what) => Self::Corrupt(what),
        }
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A SKU's stock on hand and where it is counted.
pub trait Stock: Send + Sync {
    /// Sets a SKU's on-hand total; returns its available units.
    fn put_stock(&self, sku: i64, total: i64) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Available units of each SKU, `None` for unknown SKUs.
    fn available(&self, skus: &[i64])
        -> impl Future<Output = StoreResult<Vec<Option<i64>>>> + Send;
    /// A SKU's counts in every place, `None` when unknown.
    fn ledger(&self, sku: i64) -> impl Future<Output = StoreResult<Option<Ledger>>> + Send;
    /// Every SKU that has stock.
    fn skus(&self) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;
}

/// Flash sales' definitions and the directory of them.
pub trait Sales: Send + Sync {
    /// Creates or redefines a sale and moves units between available and its pool.
    fn put_sale(&self, sale: &Sale) -> impl Future<Output = StoreResult<SaleState>> + Send;
    /// A sale, `None` when unknown.
    fn sale(&self, event_id: i64) -> impl Future<Output = StoreResult<Option<SaleState>>> + Send;
    /// The sales of a SKU.
    fn sales_of(&self, sku: i64) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;
    /// The ids of the sales whose end is at or after `from_ms`, ascending: those still running
    /// or upcoming, and those ended since. Read from an index by end, so its cost does not grow
    /// with the sales that ended before.
    fn sales_ending_from(&self, from_ms: i64)
        -> impl Future<Output = StoreResult<Vec<i64>>> + Send;
}

/// Buying, and an order's life after the buy: paid, cancelled, expired; and the end of sales.
pub trait Orders: Send + Sync {
    /// One flash-sale buy decision. A request id names one buy within its sale: the user's request
    /// id used in the sale before with another quantity is refused ([`StockError::AlreadyExists`]),
    /// even if that buy won nothing; the same buy again answers its first decision's order, or
    /// decides again if it won nothing. In another sale it is another request.
    fn buy(
        &self,
        req: &BuyRequest,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<BuyDecision>> + Send;
    /// A flash-sale order, `None` when unknown.
    fn order(&self, order_no: &str) -> impl Future<Output = StoreResult<Option<Order>>> + Send;
    /// Records the payment side's confirmation of an order awaiting payment (locked → sold). The
    /// amount must be the order's (else [`StockError::FailedPrecondition`], nothing changes); the
    /// same payment again answers the paid order and changes nothing; another payment of a paid
    /// order is [`StockError::AlreadyExists`].
    fn pay(&self, req: &PayRequest, now_ms: i64)
        -> impl Future<Output = StoreResult<Order>> + Send;
    /// Cancels a queued or unpaid order (locked → pool while the sale runs, else available).
    fn cancel(
        &self,
        order_no: &str,
        user_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<Order>> + Send;
    /// Expires up to `limit` orders unpaid past their deadline; returns their numbers.
    fn expire_due(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// Closes sales that have ended (pool → available); returns their ids.
    fn close_ended(&self, now_ms: i64) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;
}

/// The queue between a buy and its order: wins read, reclaimed, turned into orders, acknowledged.
pub trait OrderQueue: Send + Sync {
    /// Reads up to `count` new wins per SKU for `consumer`, waiting up to `block` for the
    /// first (`block` must not be zero: to Redis, `BLOCK 0` is forever). Per SKU, because one
    /// XREADGROUP over several streams applies COUNT to each; trimming afterwards would strand
    /// delivered entries until a reclaim.
    fn read_wins(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> impl Future<Output = StoreResult<Vec<Win>>> + Send;
    /// Takes over up to `count` wins (in total) delivered to any consumer and unacknowledged for
    /// `min_idle`.
    fn reclaim_wins(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> impl Future<Output = StoreResult<Vec<Win>>> + Send;
    /// Creates the order a win announces, once: `true` when this call created it.
    fn create_order(
        &self,
        win: &Win,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Acknowledges a processed win so it is never delivered again.
    fn ack_win(&self, win: &Win) -> impl Future<Output = StoreResult<()>> + Send;
    /// Creates the orders of a read batch and acknowledges their wins: per win, `true` when this
    /// call created its order. A win whose order does not exist stays unacknowledged and makes
    /// the answer [`StockError::NotFound`] once the others are settled; on any error some wins
    /// may be settled and the rest are left for a reclaim (settling again is a no-op).
    ///
    /// By default [`create_order`](OrderQueue::create_order) then
    /// [`ack_win`](OrderQueue::ack_win) per win; the Redis store settles each shard's wins in one
    /// script call that acknowledges them in the same atomic step.
    fn settle_wins(
        &self,
        wins: &[Win],
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<Vec<bool>>> + Send {
        async move {
            let mut created = Vec::with_capacity(wins.len());
            for win in wins {
                created.push(self.create_order(win, now_ms).await?);
                self.ack_win(win).await?;
            }
            Ok(created)
        }
    }
}

/// The seed contract's locks (`SKuStockLock`, `SkuStockUnlock`) and their repair.
pub trait SeedLocks: Send + Sync {
    /// Locks every SKU of the order or none, idempotent by order id.
    fn lock(&self, req: &LockRequest) -> impl Future<Output = StoreResult<()>> + Send;
    /// Commits (`finish`) or releases a lock, idempotent.
    fn unlock(&self, order_id: i64, finish: bool) -> impl Future<Output = StoreResult<()>> + Send;
    /// Finishes seed-contract locks and unlocks that stopped between their per-SKU steps (a
    /// crashed warehouse) and have not moved for `older_than`: a lock still taking its SKUs is
    /// rolled back, an unlock under way is completed. Safe to run from any number of processes
    /// at once and while locks are taken (every step is idempotent and fenced); `older_than` only
    /// spares the work of callers that are alive. A store whose lock is one atomic step (the
    /// default) has nothing to repair.
    fn repair_locks(
        &self,
        older_than: Duration,
    ) -> impl Future<Output = StoreResult<LockRepairs>> + Send {
        let _ = older_than;
        async { Ok(LockRepairs::default()) }
    }
    /// Every seed-contract lock as the contract sees it: a lock that failed (or is still taking
    /// its SKUs) is not one; an unlock under way has happened.
    fn locks(&self) -> impl Future<Output = StoreResult<Vec<LockSnapshot>>> + Send;
    /// Every lock's journal and per-SKU parts, for the audit. By default (a store whose lock is
    /// one atomic step) the records [`locks`](SeedLocks::locks) implies.
    fn lock_records(&self) -> impl Future<Output = StoreResult<LockRecords>> + Send {
        async move { Ok(LockRecords::implied_by(&self.locks().await?)) }
    }
}

/// What the audit reads.
pub trait Audit: Send + Sync {
    /// Everything the audit needs about one SKU (its sales not yet retired, all its orders);
    /// `None` when unknown. The memory store reads it at one instant; the Redis store in bounded
    /// chunks, re-read while the SKU's counters move.
    fn snapshot(&self, sku: i64) -> impl Future<Output = StoreResult<Option<SkuSnapshot>>> + Send;
}

/// A sale's waiting room (issue 14), beside its stock: the settings, a join, a move of the line
/// and a claim, each atomic with the sale's pool (on Redis one `room_*` script in the sale's
/// slot). The rules are [`crate::admission`]'s; what they answer is [`crate::stock::room`]'s.
///
/// A store without waiting rooms (a test's wrapper) keeps the defaults: no sale has a room.
pub trait Rooms: Send + Sync {
    /// Stores a sale's room settings (`None`: no waiting room), after the sale was put.
    fn put_room(
        &self,
        sale: &Sale,
        rules: Option<&Rules>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let refused = rules.is_some().then(|| no_rooms(sale.id));
        async move { refused.map_or(Ok(()), Err) }
    }
    /// A sale's room settings, `None` when it has no waiting room (or is unknown).
    fn room(&self, event_id: i64) -> impl Future<Output = StoreResult<Option<Rules>>> + Send {
        let _ = event_id;
        async { Ok(None) }
    }
    /// `user` joins the line of sale `event_id` at `now_ms`; in the pre-queue the place is
    /// drawn under `secret` ([`crate::admission::Ticket::draw`]). Once per user: again, the
    /// same place.
    fn join_room(
        &self,
        event_id: i64,
        user: &str,
        secret: &[u8],
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<Joined>> + Send {
        let _ = (user, secret, now_ms);
        async move { Err(no_rooms(event_id)) }
    }
    /// One move of the line at `now_ms` (lapses, forgets buyers, admits the next places), and
    /// the line after it.
    fn move_room(
        &self,
        event_id: i64,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<Moved>> + Send {
        let _ = now_ms;
        async move { Err(no_rooms(event_id)) }
    }
    /// Where `user`'s place stands at `now_ms` (read-only).
    fn claim_room(
        &self,
        event_id: i64,
        user: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<Place>> + Send {
        let _ = (user, now_ms);
        async move { Err(no_rooms(event_id)) }
    }
    /// The sales with a waiting room whose end is after `now_ms` (those the sweeper moves),
    /// ascending.
    fn open_rooms(&self, now_ms: i64) -> impl Future<Output = StoreResult<Vec<i64>>> + Send {
        let _ = now_ms;
        async { Ok(Vec::new()) }
    }
}

fn no_rooms(event_id: i64) -> StoreError {
    StoreError::Refused(StockError::FailedPrecondition(format!(
        "event {event_id} has no waiting room"
    )))
}

/// The warehouse's stock operations, each atomic: every seam at once. Implemented for any type
/// that implements the seams, so code over `S: Store` needs one bound, while a wrapper (a test's
/// store that holds some calls) writes only the seams it changes.
pub trait Store:
    Stock + Sales + Orders + OrderQueue + SeedLocks + Audit + Rooms + Clone + Send + Sync + 'static
{
}

impl<T> Store for T where
    T: Stock
        + Sales
        + Orders
        + OrderQueue
        + SeedLocks
        + Audit
        + Rooms
        + Clone
        + Send
        + Sync
        + 'static
{
}
