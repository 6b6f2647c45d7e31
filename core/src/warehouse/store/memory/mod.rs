//! `MemoryStore`: the embedded default for a one-command local run, and the oracle the Redis
//! store is tested against. It keeps everything in one mutex-guarded structure and follows the Lua
//! scripts' semantics line by line. It is not durable: a restart forgets every sale and order.
//!
//! One file per seam of the [`Store`](super::Store): [`stock`] (SKU stock and sale definitions),
//! [`orders`] (buying and an order's life), [`queue`] (the order queue), [`locks`] (the seed
//! contract), [`audit`] (the snapshot), [`room`] (waiting rooms). Each operation takes the one mutex for its whole length,
//! so each is atomic as its script is on Redis.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use super::{StoreError, StoreResult};
use crate::stock::{LockStatus, Order, SaleState, StockError, Win};

mod audit;
mod locks;
mod orders;
mod queue;
mod room;
mod stock;

/// An in-process [`Store`](super::Store) with the Redis store's semantics.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    new_win: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    skus: BTreeMap<i64, SkuCounts>,
    sales: BTreeMap<i64, SaleRecord>,
    /// `(end_ms, event id)` of every sale: the sales still worth listing are one range.
    ends: BTreeSet<(i64, i64)>,
    orders: BTreeMap<String, Order>,
    deadlines: BTreeSet<(i64, String)>,
    locks: HashMap<i64, LockRecord>,
    queue: VecDeque<Win>,
    pending: BTreeMap<u64, Delivery>,
    next_entry: u64,
    /// Retired sale id → when it retired (the tombstone: never defined again).
    retired: BTreeMap<i64, i64>,
    /// How long a retired sale is kept (ms); `None`: the default.
    retain_ms: Option<i64>,
    /// Sale id → its waiting room.
    rooms: BTreeMap<i64, room::RoomRecord>,
}

#[derive(Default)]
struct SkuCounts {
    total: i64,
    available: i64,
    locked: i64,
    sold: i64,
    /// Of `sold`, the units of paid orders forgotten with their retired sale.
    sold_purged: i64,
    sales: BTreeSet<i64>,
}

struct SaleRecord {
    state: SaleState,
    seq: i64,
    /// What the per-user limit counts, per user (units won, or held).
    counted: HashMap<String, i64>,
    /// `(user, request id)` → the quantity the request first asked for in the sale and the order
    /// it won (the Redis store's `req` entry `QTY` or `QTY:ORDER`).
    requests: HashMap<(String, String), (i64, Option<String>)>,
}

struct LockRecord {
    sku_nums: BTreeMap<i64, i64>,
    status: LockStatus,
}

struct Delivery {
    consumer: String,
    since: Instant,
    win: Win,
}

fn refused<T>(e: StockError) -> StoreResult<T> {
    Err(StoreError::Refused(e))
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a retired sale (ended, every order final) for `retain` after it retired, as the
    /// Redis store keeps its keys, then forgets it and its orders (what they sold stays counted).
    /// Time here is the `now_ms` the sweeper passes, not a clock of its own.
    pub fn with_retention(self, retain: std::time::Duration) -> Self {
        self.inner().retain_ms = Some(retain.as_millis() as i64);
        self
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves no half-applied operation (each one checks before
        // it writes), so the data is still consistent: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SkuCounts {
    /// Whether a sale of this SKU has not retired (its order stream is read, as on Redis).
    fn has_live_sale(&self, retired: &BTreeMap<i64, i64>) -> bool {
        self.sales.iter().any(|id| !retired.contains_key(id))
    }
}

impl Inner {
    fn sku_mut(&mut self, sku: i64) -> &mut SkuCounts {
        self.skus.get_mut(&sku).expect("a sale's SKU exists")
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}
