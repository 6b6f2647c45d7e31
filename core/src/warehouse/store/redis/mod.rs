//! `RedisStore`: stock in Redis, every operation one or more Lua script calls packed by
//! [`crate::stock::call`] (EVALSHA, reloaded on NOSCRIPT).
//!
//! One Redis or a Redis Cluster, the same code: every command and every script names keys of one
//! hash slot (a SKU's keys share the tag `{sku:ID}`), so no CROSSSLOT error can occur. Nothing
//! blocks a connection: the order worker reads each order stream without `BLOCK` and waits
//! between empty rounds ([`stream`]), because one `XREADGROUP` may not name streams of different
//! slots. What this store decides itself is only which calls to send, in which order and how
//! concurrently: the scripts' arguments and replies are [`crate::stock::call`]'s, the split-sale
//! policy is [`crate::stock::split`]'s (executed in [`buy`] and [`transfer`]), the lock saga's
//! states are [`crate::stock::lock`]'s.
//!
//! The files: [`connection`] (reaching Redis), [`scripts`] (the one script registry),
//! [`directory`] (which shards a sale, an order or a SKU lives in), [`sale`] (stock and sale
//! definitions), [`buy`] and [`batch`] (buys decided in batches per sale and shard), [`order`]
//! (pay, cancel), [`transfer`] (units between shards), [`stream`] (the order queue), [`sweep`]
//! (expiry and closing), [`snapshot`] (ledger and audit reads), [`lock`] (the seed-contract
//! saga), [`durability`] (whether an answer is on disk), [`replicas`] (steps that span masters,
//! waited for on a replica).

mod batch;
mod buy;
mod connection;
mod directory;
pub mod durability;
mod lock;
mod order;
mod replicas;
mod room;
mod sale;
mod scripts;
mod snapshot;
mod stream;
mod sweep;
mod transfer;

pub use self::connection::{RedisConnection, RedisStoreConfig};
pub use self::scripts::invocation;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{Audit, OrderQueue, Orders, Sales, SeedLocks, Stock, StoreError, StoreResult};
use crate::stock::audit::{LockSnapshot, SkuSnapshot};
use crate::stock::lock::{LockRecords, LockRepairs};
use crate::stock::{
    BuyDecision, BuyRequest, Keys, Ledger, LockRequest, Order, PayRequest, Sale, SaleState, Win,
};

/// A [`Store`](super::Store) over one Redis or a Redis Cluster.
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConnection,
    config: Arc<RedisStoreConfig>,
    keys: Arc<Keys>,
    /// A sale's SKU and split never change, so the directory lookup is cached for the life of
    /// the process.
    sale_entries: Arc<RwLock<HashMap<i64, (i64, u32)>>>,
    /// Names this process's transfers between shards.
    transfer_ids: Arc<transfer::TransferIds>,
    /// How an acknowledged write is known to be on disk, decided when connecting.
    guarantee: Arc<durability::Guarantee>,
    /// Under [`durability::Guarantee::WaitAof`]: what each script call waits for.
    aof_barrier: Option<Arc<durability::AofBarrier>>,
    /// Whether concurrent buys of one sale in one shard are decided by one script call.
    buy_batch: bool,
    /// The buys waiting for their batch.
    lanes: Arc<batch::Lanes>,
    /// The step connection, on a cluster with replicas only: steps that span masters run on it,
    /// each followed by `WAIT` (see [`replicas`]).
    steps: Option<Arc<RedisConnection>>,
    /// How old a transfer's journal entry must be before the sweeper lands it (ms).
    move_lease_ms: i64,
    /// How long a retired sale's keys are kept (see [`RedisStore::with_retention`]).
    retain_closed: Duration,
    /// Whether the order and lock-step scripts append each change to their shard's change log
    /// for the order sink (see [`RedisStore::with_order_log`]).
    order_log: bool,
}

/// How long a retired sale's keys are kept by default: 7 days.
pub const DEFAULT_RETAIN_CLOSED: Duration = Duration::from_secs(7 * 24 * 3600);

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .field("buy_batch", &self.buy_batch)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

impl RedisStore {
    /// Connects (fails fast when Redis cannot be reached), reads the servers' persistence
    /// settings and refuses, as [`StoreError::Refused`] with a message naming the setting, a
    /// `Durability::Fsync` configuration the servers cannot keep. Loads nothing yet: scripts are
    /// sent on first use and cached by Redis.
    pub async fn connect(config: RedisStoreConfig) -> StoreResult<Self> {
        let mut conn = RedisConnection::open(&config).await?;
        let settings = durability::read_settings(&mut conn, &config.url).await?;
        let guarantee = durability::verdict(config.durability, &settings, config.is_cluster())
            .map_err(|why| {
                StoreError::Refused(crate::stock::StockError::FailedPrecondition(why))
            })?;
        // WAITAOF blocks the connection it is sent on: the barrier's rounds get their own.
        let aof_barrier = match guarantee {
            durability::Guarantee::WaitAof => match RedisConnection::open(&config).await? {
                RedisConnection::Single(own) => Some(durability::AofBarrier::new(
                    own,
                    format!("{}:aof-barrier", config.prefix),
                )),
                RedisConnection::Cluster(_) => unreachable!("verdict: no WAITAOF on a cluster"),
            },
            _ => None,
        };
        let steps = if replicas::cluster_has_replicas(&conn).await? {
            tracing::info!("the cluster has replicas: steps that span masters wait for them");
            Some(Arc::new(RedisConnection::open(&config).await?))
        } else {
            None
        };
        let store = Self {
            aof_barrier,
            guarantee: Arc::new(guarantee),
            conn,
            keys: Arc::new(Keys::new(config.prefix.clone())),
            config: Arc::new(config),
            sale_entries: Arc::default(),
            transfer_ids: Arc::new(transfer::TransferIds::new()),
            buy_batch: true,
            lanes: Arc::default(),
            steps,
            move_lease_ms: crate::stock::call::MOVE_LEASE_MS,
            retain_closed: DEFAULT_RETAIN_CLOSED,
            order_log: true,
        };
        store.ensure_live_directory().await?;
        Ok(store)
    }

    /// Keeps a retired sale's keys (its hash, per-user counts and request ids, in every shard)
    /// for `retain` after it retires (it has ended and every order of it is final), then lets
    /// them expire (`PEXPIRE`); the sweeper then deletes its orders from the SKU's orderbook
    /// (what they sold stays counted in the SKU's `sold`, and as `sold_purged` for the audit).
    pub fn with_retention(mut self, retain: Duration) -> Self {
        self.retain_closed = retain;
        self
    }

    /// How this store's acknowledged writes are known to be on disk (for the start-up log).
    pub fn guarantee(&self) -> &durability::Guarantee {
        &self.guarantee
    }

    /// Decides concurrent buys of one sale in one shard in batches (`true`, the default: one
    /// `buy_batch.lua` call for everything queued while the previous call was out) or each
    /// alone (`false`: one call per buy, the single-call baseline).
    pub fn with_buy_batch(mut self, on: bool) -> Self {
        self.buy_batch = on;
        self
    }

    /// Appends every order change (created, paid, cancelled, expired) and every seed-contract
    /// lock step (a SKU's part taken, released or finished) to its shard's change log in the
    /// same script (`true`, the default), for the order sink (`flashgate-orders`) to
    /// carry into PostgreSQL; `false` appends nothing, for a deployment without a sink, whose
    /// logs would otherwise grow by one entry per change (about 150 bytes) until one drains them.
    pub fn with_order_log(mut self, on: bool) -> Self {
        self.order_log = on;
        self
    }

    /// This store with another lease for landing stranded transfers (default
    /// [`MOVE_LEASE_MS`](crate::stock::call::MOVE_LEASE_MS)); tests shorten it.
    pub fn with_move_lease(mut self, lease: Duration) -> Self {
        self.move_lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Whether steps that span masters wait for a replica (a cluster with replicas).
    pub fn waits_for_replicas(&self) -> bool {
        self.steps.is_some()
    }

    /// The key layout this store uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A clone of the command connection, for tools that read Redis directly (the audit, tests).
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }
}

impl Stock for RedisStore {
    async fn put_stock(&self, sku: i64, total: i64) -> StoreResult<i64> {
        self.put_sku_stock(sku, total).await
    }

    async fn available(&self, skus: &[i64]) -> StoreResult<Vec<Option<i64>>> {
        self.available_of(skus).await
    }

    async fn ledger(&self, sku: i64) -> StoreResult<Option<Ledger>> {
        self.ledger_of(sku).await
    }

    async fn skus(&self) -> StoreResult<Vec<i64>> {
        self.all_skus().await
    }
}

impl Sales for RedisStore {
    async fn put_sale(&self, sale: &Sale) -> StoreResult<SaleState> {
        self.define_sale(sale).await
    }

    async fn sale(&self, event_id: i64) -> StoreResult<Option<SaleState>> {
        self.sale_state(event_id).await
    }

    async fn sales_of(&self, sku: i64) -> StoreResult<Vec<i64>> {
        self.sales_of_sku(sku).await
    }

    async fn sales_ending_from(&self, from_ms: i64) -> StoreResult<Vec<i64>> {
        self.sales_by_end(from_ms).await
    }
}

impl Orders for RedisStore {
    async fn buy(&self, req: &BuyRequest, now_ms: i64) -> StoreResult<BuyDecision> {
        self.buy_falling_over(req, now_ms).await
    }

    async fn order(&self, order_no: &str) -> StoreResult<Option<Order>> {
        self.order_of(order_no).await
    }

    async fn pay(&self, req: &PayRequest, now_ms: i64) -> StoreResult<Order> {
        self.pay_order(req, now_ms).await
    }

    async fn cancel(&self, order_no: &str, user_id: &str, now_ms: i64) -> StoreResult<Order> {
        self.cancel_order(order_no, user_id, now_ms).await
    }

    async fn expire_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
        self.expire_every_shard(now_ms, limit).await
    }

    async fn close_ended(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
        self.close_every_shard(now_ms).await
    }
}

impl OrderQueue for RedisStore {
    async fn read_wins(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> StoreResult<Vec<Win>> {
        self.poll_wins(consumer, count, block).await
    }

    async fn reclaim_wins(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> StoreResult<Vec<Win>> {
        self.claim_idle_wins(consumer, min_idle, count).await
    }

    async fn create_order(&self, win: &Win, now_ms: i64) -> StoreResult<bool> {
        self.create_order_of(win, now_ms).await
    }

    async fn ack_win(&self, win: &Win) -> StoreResult<()> {
        self.ack(win).await
    }

    async fn settle_wins(&self, wins: &[Win], now_ms: i64) -> StoreResult<Vec<bool>> {
        self.settle_batch(wins, now_ms).await
    }
}

impl SeedLocks for RedisStore {
    async fn lock(&self, req: &LockRequest) -> StoreResult<()> {
        // Per-SKU steps journaled under the order id: see the `lock` module.
        self.lock_saga(req).await
    }

    async fn unlock(&self, order_id: i64, finish: bool) -> StoreResult<()> {
        self.unlock_saga(order_id, finish).await
    }

    async fn repair_locks(&self, older_than: Duration) -> StoreResult<LockRepairs> {
        self.repair_saga(older_than).await
    }

    async fn locks(&self) -> StoreResult<Vec<LockSnapshot>> {
        // From the lock directory, not SCAN (which sees one cluster node).
        self.list_locks().await
    }

    async fn lock_records(&self) -> StoreResult<LockRecords> {
        self.lock_records_of().await
    }
}

impl Audit for RedisStore {
    async fn snapshot(&self, sku: i64) -> StoreResult<Option<SkuSnapshot>> {
        self.snapshot_of(sku).await
    }
}
