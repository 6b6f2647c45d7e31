//! `RedisStore`: stock in Redis, every operation one Lua script (EVALSHA, reloaded on NOSCRIPT).
//!
//! One Redis or a Redis Cluster, the same code: every command and every script names keys of one
//! hash slot (a SKU's keys share the tag `{sku:ID}`), so no CROSSSLOT error can occur. On one
//! Redis the connection is a redis-rs `ConnectionManager`; on a cluster a `ClusterConnection`
//! that follows slot moves and failovers. Both are multiplexed (one socket per node carries every
//! concurrent request) and reconnect by themselves. Nothing blocks a connection: the order
//! worker reads each order stream without `BLOCK` and waits between empty rounds (see
//! [`RedisStore::read_wins`](super::Store::read_wins)), because one `XREADGROUP` may not name
//! streams of different slots. Key names and reply parsing live in [`crate::stock`]; this file
//! only moves bytes.

mod lock;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use redis::{AsyncCommands, Client, Cmd, Pipeline, RedisFuture, Script, Value};

use super::{Store, StoreError, StoreResult};
use crate::stock::audit::{Counters, LockSnapshot, SaleSnapshot, SkuSnapshot};
use crate::stock::lock::{LockRecords, LockRepairs};
use crate::stock::{
    self, scripts, BuyDecision, BuyRequest, Keys, Ledger, LockRequest, Move, Order, OrderStatus,
    Sale, SaleState, Shard, StockError, Win, ORDER_GROUP,
};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// `redis://host:port/db` (or `rediss://`); for a cluster, one or more seed nodes separated
    /// by commas (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`).
    pub url: String,
    /// Talk to a Redis Cluster (implied by a `url` naming several nodes).
    pub cluster: bool,
    /// Namespace of every key (isolates deployments and tests sharing one Redis).
    pub prefix: String,
    /// How long one command may take before the caller gets `Unavailable`.
    pub response_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
}

impl RedisStoreConfig {
    /// Defaults for `url`: prefix `fg`, 2 s responses, 1 s connects.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            prefix: "fg".into(),
            response_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        }
    }

    /// The node URLs `url` names.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether this configuration reaches a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster || self.urls().len() > 1
    }
}

/// The command connection: one Redis or a Redis Cluster. Either way every command it carries
/// names keys of one hash slot.
#[derive(Clone)]
pub enum RedisConnection {
    /// One Redis.
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the master serving their slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

struct Scripts {
    put_stock: Script,
    put_event: Script,
    put_subpool: Script,
    move_out: Script,
    move_in: Script,
    buy: Script,
    create_order: Script,
    pay: Script,
    release_order: Script,
    close_event: Script,
    ledger: Script,
    snapshot: Script,
}

/// How many times a buy on a split sale fetches units into its home sub-pool (or waits out
/// units passing between two others) before it gives up to buyers who keep taking them first.
const MAX_BUY_ROUNDS: usize = 4;

/// How long the order worker waits between rounds that found no new win.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// A [`Store`] over one Redis or a Redis Cluster.
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConnection,
    config: Arc<RedisStoreConfig>,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    /// A sale's SKU and split never change, so the directory lookup is cached for the life of
    /// the process.
    sale_entries: Arc<RwLock<HashMap<i64, (i64, u32)>>>,
    /// Names this process's transfers between shards.
    transfer_ids: Arc<TransferIds>,
}

/// Transfer ids unique across processes and machines: `HOST-PID-STARTNS-N`.
struct TransferIds {
    token: String,
    next: AtomicU64,
}

impl TransferIds {
    fn new() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            token: format!("{host}-{}-{started}", std::process::id()),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{}",
            self.token,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Splits a script's `{status, …}` reply, turning refusal codes into [`StockError`]s.
fn status(reply: &[String]) -> StoreResult<&str> {
    let code = reply.first().ok_or_else(|| corrupt("empty script reply"))?;
    let detail = reply.get(1).map(String::as_str).unwrap_or("");
    match stock::refusal(code, detail) {
        Some(refusal) => Err(StoreError::Refused(refusal)),
        None => Ok(code),
    }
}

/// The arguments of `put_event.lua` and `put_subpool.lua`: a sale's definition in one shard.
fn sale_args(sale: &Sale, subpools: u32, sub: u32) -> [String; 10] {
    [
        sale.id.to_string(),
        sale.sku.to_string(),
        sale.pool.to_string(),
        sale.start_ms.to_string(),
        sale.end_ms.to_string(),
        sale.per_user_limit.to_string(),
        sale.pay_window_ms.to_string(),
        ORDER_GROUP.into(),
        subpools.to_string(),
        sub.to_string(),
    ]
}

fn num(s: &str) -> StoreResult<i64> {
    s.parse()
        .map_err(|_| corrupt(format!("not a number: {s:?}")))
}

impl RedisStore {
    /// Connects (fails fast when Redis cannot be reached) and loads nothing yet: scripts are sent
    /// on first use and cached by Redis.
    pub async fn connect(config: RedisStoreConfig) -> StoreResult<Self> {
        let conn = Self::open(&config).await?;
        Ok(Self {
            conn,
            keys: Arc::new(Keys::new(config.prefix.clone())),
            config: Arc::new(config),
            scripts: Arc::new(Scripts {
                put_stock: Script::new(scripts::PUT_STOCK),
                put_event: Script::new(scripts::PUT_EVENT),
                put_subpool: Script::new(scripts::PUT_SUBPOOL),
                move_out: Script::new(scripts::MOVE_OUT),
                move_in: Script::new(scripts::MOVE_IN),
                buy: Script::new(scripts::BUY),
                create_order: Script::new(scripts::CREATE_ORDER),
                pay: Script::new(scripts::PAY),
                release_order: Script::new(scripts::RELEASE_ORDER),
                close_event: Script::new(scripts::CLOSE_EVENT),
                ledger: Script::new(scripts::LEDGER),
                snapshot: Script::new(scripts::SNAPSHOT),
            }),
            sale_entries: Arc::default(),
            transfer_ids: Arc::new(TransferIds::new()),
        })
    }

    async fn open(config: &RedisStoreConfig) -> StoreResult<RedisConnection> {
        if config.is_cluster() {
            // Retries ride out a failover: the client refreshes its slot map on MOVED and on
            // connection errors, and retries the command against the new master.
            let client = ClusterClientBuilder::new(config.urls())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .retries(6)
                .min_retry_wait(50)
                .max_retry_wait(1_000)
                .build()
                .map_err(unavailable)?;
            let conn = client.get_async_connection().await.map_err(unavailable)?;
            return Ok(RedisConnection::Cluster(conn));
        }
        let client = Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connect_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        ConnectionManager::new_with_config(client, manager_config)
            .await
            .map(RedisConnection::Single)
            .map_err(unavailable)
    }

    /// The key layout this store uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A clone of the command connection, for tools that read Redis directly (the audit, tests).
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    async fn run(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> StoreResult<Vec<String>> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// A sale's SKU and the sub-pools it is split in, from the directory (cached).
    async fn sale_entry(&self, event_id: i64) -> StoreResult<Option<(i64, u32)>> {
        if let Some(entry) = self
            .sale_entries
            .read()
            .expect("not poisoned")
            .get(&event_id)
        {
            return Ok(Some(*entry));
        }
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn
            .hget(self.keys.events(), event_id)
            .await
            .map_err(unavailable)?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let entry = stock::parse_event_entry(&raw)
            .ok_or_else(|| corrupt(format!("directory entry of event {event_id}: {raw:?}")))?;
        // Cached only once the sale exists: a claim whose definition is refused is released,
        // and the id may then be claimed for another SKU or split.
        let defined: bool = conn
            .exists(self.keys.event(entry.0, event_id))
            .await
            .map_err(unavailable)?;
        if defined {
            self.sale_entries
                .write()
                .expect("not poisoned")
                .insert(event_id, entry);
        }
        Ok(Some(entry))
    }

    /// The sale of an order number and the shard holding the order.
    async fn shard_of_order(&self, order_no: &str) -> StoreResult<Option<(i64, Shard)>> {
        let Some(event) = stock::event_of_order(order_no) else {
            return Ok(None);
        };
        let Some((sku, subpools)) = self.sale_entry(event).await? else {
            return Ok(None);
        };
        Ok(stock::subpool_of_order(order_no, subpools).map(|sub| (event, Shard::new(sku, sub))))
    }

    /// The shard of a win's order.
    async fn shard_of_win(&self, win: &Win) -> StoreResult<(i64, Shard)> {
        self.shard_of_order(&win.order_no)
            .await?
            .ok_or_else(|| corrupt(format!("win of an unknown sale: {win:?}")))
    }

    /// The shards of a SKU: its own and every sub-pool of its sales.
    async fn shards_of(&self, sku: i64) -> StoreResult<Vec<Shard>> {
        let mut shards = vec![Shard::from(sku)];
        for event in self.sales_of(sku).await? {
            if let Some((_, subpools)) = self.sale_entry(event).await? {
                shards.extend((1..subpools).map(|sub| Shard::new(sku, sub)));
            }
        }
        shards.sort_unstable();
        shards.dedup();
        Ok(shards)
    }

    /// Units left in a sale's pools, summed over its sub-pools (read concurrently).
    async fn pools_left(&self, sku: i64, event: i64, subpools: u32) -> StoreResult<i64> {
        let reads = (0..subpools).map(|sub| {
            let mut conn = self.conn.clone();
            let key = self.keys.event(Shard::new(sku, sub), event);
            async move {
                let pool: Option<i64> = conn.hget(key, "pool").await.map_err(unavailable)?;
                Ok::<_, StoreError>(pool.unwrap_or(0))
            }
        });
        Ok(try_join_all(reads).await?.into_iter().sum())
    }

    /// The pools of every sub-pool but `home`'s, as `(steps after home, pool)`, read
    /// concurrently; one that cannot be read counts as empty (and is logged).
    async fn other_pools(&self, home: Shard, event: i64, subpools: u32) -> Vec<(u32, i64)> {
        let reads = (1..subpools).map(|step| {
            let mut conn = self.conn.clone();
            let key = self
                .keys
                .event(Shard::new(home.sku, (home.sub + step) % subpools), event);
            async move {
                match conn.hget::<_, _, Option<i64>>(key, "pool").await {
                    Ok(pool) => (step, pool.unwrap_or(0)),
                    Err(e) => {
                        tracing::warn!(error = %e, step, "cannot read a sub-pool; passing it over");
                        (step, 0)
                    }
                }
            }
        });
        futures_util::future::join_all(reads).await
    }

    /// Pool units of a split sale journaled out of one sub-pool and not yet credited to
    /// another.
    async fn pool_moves_in_flight(&self, sku: i64, event: i64, subpools: u32) -> StoreResult<i64> {
        let pools: Vec<String> = (0..subpools)
            .map(|sub| self.keys.event(Shard::new(sku, sub), event))
            .collect();
        let journals =
            try_join_all((0..subpools).map(|sub| self.moves_of(Shard::new(sku, sub)))).await?;
        let mut total = 0;
        for (id, landing) in journals.into_iter().flatten() {
            if pools.contains(&landing.to) && !self.has_landed(&id, &landing).await? {
                total += landing.n;
            }
        }
        Ok(total)
    }

    /// Whether a journaled transfer has been credited at its destination already (it is then
    /// only waiting to be forgotten, and must not be counted twice).
    async fn has_landed(&self, id: &str, landing: &Move) -> StoreResult<bool> {
        let mut conn = self.conn.clone();
        conn.sismember(&landing.received, id)
            .await
            .map_err(unavailable)
    }

    /// Every shard of every SKU, for the sweeper; a SKU whose sales cannot be listed is passed
    /// over and its error handed back beside the rest.
    async fn every_shard(&self) -> StoreResult<(Vec<Shard>, Option<StoreError>)> {
        let (mut shards, mut failure) = (Vec::new(), None);
        for sku in self.skus().await? {
            match self.shards_of(sku).await {
                Ok(of_sku) => shards.extend(of_sku),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        Ok((shards, failure))
    }

    /// The sweeper's expiry in one shard: releases orders unpaid past their deadline.
    async fn expire_in(
        &self,
        shard: Shard,
        now_ms: i64,
        limit: usize,
        expired: &mut Vec<String>,
    ) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let due: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.deadlines(shard))
            .arg("-inf")
            .arg(format!("({now_ms}"))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit - expired.len())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        for order_no in due {
            if self
                .release(&order_no, "", now_ms, OrderStatus::Expired)
                .await?
                .0
            {
                expired.push(order_no);
            }
        }
        Ok(())
    }

    /// The sweeper's end of sales in one shard: lands stranded transfers, closes ended sales
    /// (their ids are pushed to `closed` once, from the SKU's own shard) and sends a sub-pool
    /// shard's `available` home.
    async fn close_in(&self, shard: Shard, now_ms: i64, closed: &mut Vec<i64>) -> StoreResult<()> {
        let k = &self.keys;
        self.land_stranded(shard).await?;
        let mut conn = self.conn.clone();
        let events: Vec<i64> = conn
            .smembers(k.sku_events(shard))
            .await
            .map_err(unavailable)?;
        for event in events {
            let reply = self
                .run(
                    &self.scripts.close_event,
                    &[k.event(shard, event), k.stock(shard)],
                    &[now_ms.to_string()],
                )
                .await?;
            if status(&reply)? == "CLOSED" && shard.sub == 0 {
                closed.push(event);
            }
        }
        if shard.sub > 0 {
            self.send_home(shard).await?;
        }
        Ok(())
    }

    /// Moves up to `want` units from `from_field` of `from_key` (in shard `from`) to `to_field`
    /// of `to_key` (in shard `to`), journaled so a crash half-way is completed by whoever finds
    /// the journal entry (see `move_out.lua`). Returns the units moved.
    #[allow(clippy::too_many_arguments)]
    async fn transfer(
        &self,
        from: Shard,
        from_key: String,
        from_field: &str,
        to: Shard,
        to_key: String,
        to_field: &str,
        want: i64,
    ) -> StoreResult<i64> {
        let id = self.transfer_ids.next();
        let k = &self.keys;
        let reply = self
            .run(
                &self.scripts.move_out,
                &[from_key, k.moves(from)],
                &[
                    id.clone(),
                    from_field.into(),
                    want.to_string(),
                    to_key.clone(),
                    to_field.into(),
                    k.received(to),
                    k.stock(to),
                ],
            )
            .await?;
        status(&reply)?;
        let moved = num(reply.get(1).ok_or_else(|| corrupt("move_out reply"))?)?;
        if moved > 0 {
            let landing = Move {
                n: moved,
                from: from_field.into(),
                to: to_key,
                field: to_field.into(),
                received: k.received(to),
                fallback: k.stock(to),
            };
            self.land(from, &id, &landing).await?;
        }
        Ok(moved)
    }

    /// Credits a journaled transfer at its destination (once) and forgets the journal entry.
    async fn land(&self, from: Shard, id: &str, landing: &Move) -> StoreResult<()> {
        let reply = self
            .run(
                &self.scripts.move_in,
                &[
                    landing.to.clone(),
                    landing.received.clone(),
                    landing.fallback.clone(),
                ],
                &[id.into(), landing.field.clone(), landing.n.to_string()],
            )
            .await?;
        status(&reply)?;
        let mut conn = self.conn.clone();
        conn.hdel::<_, _, ()>(self.keys.moves(from), id)
            .await
            .map_err(unavailable)
    }

    /// The transfers journaled in a shard and not yet forgotten.
    async fn moves_of(&self, shard: Shard) -> StoreResult<Vec<(String, Move)>> {
        let mut conn = self.conn.clone();
        let entries: BTreeMap<String, String> = conn
            .hgetall(self.keys.moves(shard))
            .await
            .map_err(unavailable)?;
        entries
            .into_iter()
            .map(|(id, json)| {
                let landing =
                    Move::parse(&json).ok_or_else(|| corrupt(format!("move {id}: {json}")))?;
                Ok((id, landing))
            })
            .collect()
    }

    /// Completes the transfers a stopped process left half-way in `shard`.
    async fn land_stranded(&self, shard: Shard) -> StoreResult<()> {
        for (id, landing) in self.moves_of(shard).await? {
            self.land(shard, &id, &landing).await?;
        }
        Ok(())
    }

    /// Spreads a split sale's units evenly over its sub-pools (the SKU's own shard gives).
    async fn spread(&self, sku: i64, event: i64, subpools: u32) -> StoreResult<()> {
        let k = &self.keys;
        let main = Shard::from(sku);
        let mut pools = Vec::new();
        for sub in 0..subpools {
            let mut conn = self.conn.clone();
            let pool: Option<i64> = conn
                .hget(k.event(Shard::new(sku, sub), event), "pool")
                .await
                .map_err(unavailable)?;
            pools.push(pool.unwrap_or(0));
        }
        let total: i64 = pools.iter().sum();
        let n = i64::from(subpools);
        for sub in 1..subpools {
            let target = total / n + i64::from(i64::from(sub) < total % n);
            let need = target - pools[sub as usize];
            if need > 0 {
                let to = Shard::new(sku, sub);
                self.transfer(
                    main,
                    k.event(main, event),
                    "pool",
                    to,
                    k.event(to, event),
                    "pool",
                    need,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// What defining a sale in a shard touches: the shard's stock, the sale, the shard's set of
    /// sales and its order stream (`put_event.lua`, `put_subpool.lua`).
    fn sale_keys(&self, shard: Shard, event: i64) -> [String; 4] {
        let k = &self.keys;
        [
            k.stock(shard),
            k.event(shard, event),
            k.sku_events(shard),
            k.order_stream(shard),
        ]
    }

    /// One `buy.lua` in one shard.
    async fn buy_in(
        &self,
        shard: Shard,
        subpools: u32,
        req: &BuyRequest,
        now_ms: i64,
    ) -> StoreResult<BuyDecision> {
        let (k, e) = (&self.keys, req.event_id);
        let reply = self
            .run(
                &self.scripts.buy,
                &[
                    k.event(shard, e),
                    k.event_users(shard, e),
                    k.event_requests(shard, e),
                    k.stock(shard),
                    k.orderbook(shard),
                    k.order_stream(shard),
                ],
                &[
                    e.to_string(),
                    req.user_id.clone(),
                    req.qty.to_string(),
                    req.request_id.clone(),
                    now_ms.to_string(),
                    subpools.to_string(),
                    shard.sub.to_string(),
                ],
            )
            .await?;
        let [outcome, order_no, remaining] = &reply[..] else {
            return Err(corrupt(format!("buy reply {reply:?}")));
        };
        stock::parse_buy(outcome, order_no, num(remaining)?)
            .ok_or_else(|| corrupt(format!("buy outcome {outcome}")))
    }

    fn order_from(&self, order_no: &str, record: &str) -> StoreResult<Order> {
        stock::parse_order_record(order_no, record)
            .ok_or_else(|| corrupt(format!("order record {order_no}: {record}")))
    }

    async fn release(
        &self,
        order_no: &str,
        user_id: &str,
        now_ms: i64,
        to: OrderStatus,
    ) -> StoreResult<(bool, Order)> {
        let not_found = || StoreError::Refused(StockError::NotFound(format!("order {order_no}")));
        let (event, shard) = self.shard_of_order(order_no).await?.ok_or_else(not_found)?;
        let k = &self.keys;
        let reply = self
            .run(
                &self.scripts.release_order,
                &[
                    k.orderbook(shard),
                    k.deadlines(shard),
                    k.stock(shard),
                    k.event(shard, event),
                    k.event_users(shard, event),
                ],
                &[
                    order_no.into(),
                    user_id.into(),
                    now_ms.to_string(),
                    to.as_str().into(),
                ],
            )
            .await?;
        let released = status(&reply)? == "OK";
        let record = reply
            .get(1)
            .ok_or_else(|| corrupt("release reply without record"))?;
        if released && shard.sub > 0 {
            // After the sale's end the units went to the sub-pool shard's `available`: send
            // them home now, so the SKU can lock or pool them again (the sweeper would, later).
            self.send_home(shard).await?;
        }
        Ok((released, self.order_from(order_no, record)?))
    }

    /// Moves a sub-pool shard's `available` units to the SKU's own shard.
    async fn send_home(&self, shard: Shard) -> StoreResult<i64> {
        let (k, main) = (&self.keys, Shard::from(shard.sku));
        self.transfer(
            shard,
            k.stock(shard),
            "available",
            main,
            k.stock(main),
            "available",
            i64::MAX,
        )
        .await
    }

    /// The order streams to read: those of every shard of every sale (the consumer group is
    /// created with the sale; a SKU sold only through the seed contract has no stream).
    async fn order_streams(&self) -> StoreResult<Vec<String>> {
        let mut conn = self.conn.clone();
        let entries: Vec<String> = conn.hvals(self.keys.events()).await.map_err(unavailable)?;
        let mut shards: Vec<Shard> = entries
            .iter()
            .filter_map(|e| stock::parse_event_entry(e))
            .flat_map(|(sku, subpools)| (0..subpools).map(move |sub| Shard::new(sku, sub)))
            .collect();
        shards.sort_unstable();
        shards.dedup();
        Ok(shards
            .into_iter()
            .map(|shard| self.keys.order_stream(shard))
            .collect())
    }

    /// One round over every order stream, each its own `XREADGROUP` (streams live in different
    /// slots), sent concurrently. A stream whose group does not exist yet (a sale being defined
    /// right now) is skipped.
    async fn read_round(&self, consumer: &str, count: usize) -> StoreResult<Vec<Win>> {
        let streams = self.order_streams().await?;
        let reads = streams.iter().map(|stream| async move {
            let mut conn = self.conn.clone();
            let reply: Result<Option<StreamReadReply>, _> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(ORDER_GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(stream)
                .arg(">")
                .query_async(&mut conn)
                .await;
            match reply {
                Ok(reply) => Ok(reply
                    .map(|r| {
                        r.keys
                            .into_iter()
                            .flat_map(|k| self.wins_of(&k.key, k.ids))
                            .collect()
                    })
                    .unwrap_or_default()),
                Err(e) if e.code() == Some("NOGROUP") => Ok(Vec::new()),
                Err(e) => Err(unavailable(e)),
            }
        });
        // A stream that cannot be read (its master failing over) holds up only its own wins.
        let results = futures_util::future::join_all(reads).await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        let mut wins = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(batch) => wins.extend(batch),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if failed == streams.len() => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, failed, "some order streams could not be read");
                Ok(wins)
            }
            None => Ok(wins),
        }
    }

    fn wins_of(&self, stream: &str, ids: Vec<redis::streams::StreamId>) -> Vec<Win> {
        let Some(sku_id) = self.keys.sku_of(stream) else {
            return Vec::new();
        };
        ids.into_iter()
            .filter_map(|entry| {
                let order_no: String = entry.get("order")?;
                Some(Win {
                    sku_id,
                    entry_id: entry.id,
                    order_no,
                })
            })
            .collect()
    }
}

#[derive(serde::Deserialize)]
struct RawSnapshot {
    stock: BTreeMap<String, String>,
    sales: BTreeMap<String, RawSale>,
    orders: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RawSale {
    sale: BTreeMap<String, String>,
    users: BTreeMap<String, String>,
    req: BTreeMap<String, String>,
}

fn parse_snapshot(shard: Shard, json: &str) -> StoreResult<SkuSnapshot> {
    let sku = shard.sku;
    // cjson encodes an empty Lua table as `{}`, which is also an empty map here.
    let raw: RawSnapshot =
        serde_json::from_str(json).map_err(|e| corrupt(format!("snapshot of sku {sku}: {e}")))?;
    let counter = |k: &str| raw.stock.get(k).map_or(Ok(0), |v| num(v));
    let mut sales = Vec::new();
    for sale in raw.sales.into_values() {
        let state = stock::parse_sale(&sale.sale)
            .ok_or_else(|| corrupt(format!("sale hash {:?}", sale.sale)))?;
        let held = sale
            .users
            .iter()
            .map(|(u, n)| Ok((u.clone(), num(n)?)))
            .collect::<StoreResult<_>>()?;
        let requests = sale
            .req
            .into_iter()
            .map(|(field, order_no)| {
                let (user, request) = field
                    .split_once(stock::FIELD_SEP)
                    .ok_or_else(|| corrupt(format!("request field {field:?}")))?;
                Ok(((user.to_owned(), request.to_owned()), order_no))
            })
            .collect::<StoreResult<_>>()?;
        let seq = sale.sale.get("seq").map_or(Ok(0), |v| num(v))?;
        sales.push(SaleSnapshot {
            state,
            sub: shard.sub,
            seq,
            held,
            requests,
        });
    }
    let orders = raw
        .orders
        .iter()
        .map(|(no, record)| {
            stock::parse_order_record(no, record)
                .ok_or_else(|| corrupt(format!("order record {no}: {record}")))
        })
        .collect::<StoreResult<_>>()?;
    Ok(SkuSnapshot {
        sku,
        counters: Counters {
            total: counter("total")?,
            available: counter("available")?,
            locked: counter("locked")?,
            sold: counter("sold")?,
        },
        sales,
        orders,
        moving: 0,
    })
}

impl Store for RedisStore {
    async fn put_stock(&self, sku: i64, total: i64) -> StoreResult<i64> {
        // The directory first (a listed SKU without stock is skipped by its readers; a SKU with
        // stock missing from the directory would escape the sweeper and the audit). It lives in
        // another slot than the SKU, so it is a command of its own.
        let mut conn = self.conn.clone();
        conn.sadd::<_, _, ()>(self.keys.skus(), sku)
            .await
            .map_err(unavailable)?;
        let reply = self
            .run(
                &self.scripts.put_stock,
                &[self.keys.stock(sku)],
                &[sku.to_string(), total.to_string()],
            )
            .await?;
        status(&reply)?;
        num(reply.get(1).ok_or_else(|| corrupt("put_stock reply"))?)
    }

    async fn available(&self, skus: &[i64]) -> StoreResult<Vec<Option<i64>>> {
        // One read per SKU, concurrently: the SKUs live in different slots.
        try_join_all(skus.iter().map(|sku| {
            let mut conn = self.conn.clone();
            let key = self.keys.stock(*sku);
            async move { conn.hget(key, "available").await.map_err(unavailable) }
        }))
        .await
    }

    async fn ledger(&self, sku: i64) -> StoreResult<Option<Ledger>> {
        let k = &self.keys;
        let mut ledger = Ledger::default();
        for shard in self.shards_of(sku).await? {
            let reply = self
                .run(
                    &self.scripts.ledger,
                    &[k.stock(shard), k.sku_events(shard)],
                    &[k.event_prefix(shard)],
                )
                .await?;
            if reply.first().map(String::as_str) == Some("NOT_FOUND") {
                if shard.sub == 0 {
                    return Ok(None);
                }
                continue;
            }
            let n: Vec<i64> = reply
                .iter()
                .skip(1)
                .map(|s| num(s))
                .collect::<StoreResult<_>>()?;
            let [total, available, pools, locked, sold] = n[..] else {
                return Err(corrupt("ledger reply"));
            };
            ledger.total += total;
            ledger.available += available;
            ledger.pools += pools;
            ledger.locked += locked;
            ledger.sold += sold;
            // Units between two shards are counted where they are going (once: an entry
            // already credited there is only waiting to be forgotten).
            for (id, landing) in self.moves_of(shard).await? {
                if self.has_landed(&id, &landing).await? {
                    continue;
                }
                match landing.field.as_str() {
                    "pool" => ledger.pools += landing.n,
                    _ => ledger.available += landing.n,
                }
            }
        }
        Ok(Some(ledger))
    }

    async fn skus(&self) -> StoreResult<Vec<i64>> {
        let mut conn = self.conn.clone();
        let mut skus: Vec<i64> = conn.smembers(self.keys.skus()).await.map_err(unavailable)?;
        skus.sort_unstable();
        Ok(skus)
    }

    async fn put_sale(&self, sale: &Sale) -> StoreResult<SaleState> {
        let k = &self.keys;
        let subpools = sale.subpools.max(1);
        let main = Shard::from(sale.sku);
        // Claim the event id for this SKU and split in the directory (another slot, so a
        // command of its own) before the sale exists: neither ever changes.
        let mut conn = self.conn.clone();
        let entry = stock::event_entry(sale.sku, subpools);
        let claimed: bool = conn
            .hset_nx(k.events(), sale.id, &entry)
            .await
            .map_err(unavailable)?;
        if !claimed {
            let known: String = conn.hget(k.events(), sale.id).await.map_err(unavailable)?;
            let (known_sku, known_subpools) = stock::parse_event_entry(&known)
                .ok_or_else(|| corrupt(format!("directory entry of event {}", sale.id)))?;
            let why = if known_sku != sale.sku {
                format!(
                    "event {} sells sku {known_sku}; its sku cannot change",
                    sale.id
                )
            } else if known_subpools != subpools {
                format!(
                    "event {} is split in {known_subpools} sub-pools; that cannot change",
                    sale.id
                )
            } else {
                String::new()
            };
            if !why.is_empty() {
                return Err(StoreError::Refused(StockError::FailedPrecondition(why)));
            }
            // A redefinition works on one pool: gather the sub-pools' units first.
            for sub in 1..subpools {
                let from = Shard::new(sale.sku, sub);
                self.transfer(
                    from,
                    k.event(from, sale.id),
                    "pool",
                    main,
                    k.event(main, sale.id),
                    "pool",
                    i64::MAX,
                )
                .await?;
            }
        }
        let reply = self
            .run(
                &self.scripts.put_event,
                &self.sale_keys(main, sale.id),
                &sale_args(sale, subpools, 0),
            )
            .await?;
        let refused = status(&reply).err();
        if refused.is_some() && claimed {
            // Refused, so nothing was defined: release the claim so the id stays free.
            conn.hdel::<_, _, ()>(k.events(), sale.id)
                .await
                .map_err(unavailable)?;
        }
        // Sub-pools take the new definition only when the SKU's own shard did; a refused
        // redefinition only spreads back what was gathered.
        if subpools > 1 && refused.is_none() {
            for sub in 1..subpools {
                let shard = Shard::new(sale.sku, sub);
                let reply = self
                    .run(
                        &self.scripts.put_subpool,
                        &self.sale_keys(shard, sale.id),
                        &sale_args(sale, subpools, sub),
                    )
                    .await?;
                status(&reply)?;
            }
        }
        if subpools > 1 && !(refused.is_some() && claimed) {
            self.spread(sale.sku, sale.id, subpools).await?;
        }
        if let Some(refused) = refused {
            return Err(refused);
        }
        self.sale_entries
            .write()
            .expect("not poisoned")
            .insert(sale.id, (sale.sku, subpools));
        self.sale(sale.id)
            .await?
            .ok_or_else(|| corrupt("sale vanished after put"))
    }

    async fn sale(&self, event_id: i64) -> StoreResult<Option<SaleState>> {
        let Some((sku, subpools)) = self.sale_entry(event_id).await? else {
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        let fields: BTreeMap<String, String> = conn
            .hgetall(self.keys.event(sku, event_id))
            .await
            .map_err(unavailable)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let mut state = stock::parse_sale(&fields)
            .ok_or_else(|| corrupt(format!("sale {event_id}: {fields:?}")))?;
        if subpools > 1 {
            state.remaining = self.pools_left(sku, event_id, subpools).await?;
        }
        Ok(Some(state))
    }

    async fn sales_of(&self, sku: i64) -> StoreResult<Vec<i64>> {
        let mut conn = self.conn.clone();
        let mut ids: Vec<i64> = conn
            .smembers(self.keys.sku_events(sku))
            .await
            .map_err(unavailable)?;
        ids.sort_unstable();
        Ok(ids)
    }

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

    async fn buy(&self, req: &BuyRequest, now_ms: i64) -> StoreResult<BuyDecision> {
        let Some((sku, subpools)) = self.sale_entry(req.event_id).await? else {
            return Ok(BuyDecision::UnknownEvent);
        };
        let (k, e) = (&self.keys, req.event_id);
        let home = Shard::new(sku, stock::home_subpool(&req.user_id, subpools));
        for round in 0..=MAX_BUY_ROUNDS {
            let decision = self.buy_in(home, subpools, req, now_ms).await?;
            if subpools == 1 {
                return Ok(decision);
            }
            // What is left over all sub-pools: while the home sub-pool has units, an estimate
            // from it (the pool is spread evenly) that costs no read and is never 0; once it is
            // empty, the sum, read from every sub-pool, so 0 means sold out.
            let left = |home_left: i64| async move {
                if home_left > 0 {
                    Ok(home_left.saturating_mul(i64::from(subpools)))
                } else {
                    self.pools_left(sku, e, subpools).await
                }
            };
            let short = match decision {
                BuyDecision::SoldOut { remaining } => req.qty - remaining,
                BuyDecision::Queued {
                    order_no,
                    remaining,
                } => {
                    return Ok(BuyDecision::Queued {
                        order_no,
                        remaining: left(remaining).await?,
                    });
                }
                BuyDecision::LimitReached { remaining } => {
                    return Ok(BuyDecision::LimitReached {
                        remaining: left(remaining).await?,
                    });
                }
                other => return Ok(other),
            };
            if round == MAX_BUY_ROUNDS {
                break;
            }
            // The home sub-pool is short: fetch units from the others that have some (read
            // concurrently; a sub-pool that cannot be reached is passed over), then buy at home
            // again.
            let mut others = Vec::new();
            for (step, pool) in self.other_pools(home, e, subpools).await {
                others.push(((home.sub + step) % subpools, pool));
            }
            others.sort_by_key(|(_, pool)| std::cmp::Reverse(*pool));
            let mut moved = 0;
            for (sub, _) in others.iter().filter(|(_, pool)| *pool > 0) {
                if moved >= short {
                    break;
                }
                let from = Shard::new(sku, *sub);
                match self
                    .transfer(
                        from,
                        k.event(from, e),
                        "pool",
                        home,
                        k.event(home, e),
                        "pool",
                        short - moved,
                    )
                    .await
                {
                    Ok(n) => moved += n,
                    Err(StoreError::Unavailable(why)) => {
                        tracing::warn!(%why, sub, "a sub-pool is unreachable; buying from the others");
                    }
                    Err(other) => return Err(other),
                }
            }
            if moved > 0 {
                continue;
            }
            // Nothing fetched: SOLD_OUT, unless units are passing between two sub-pools right
            // now (another buyer's transfer), in which case look again (bounded).
            let home_left = req.qty - short;
            let in_flight = self.pool_moves_in_flight(sku, e, subpools).await?;
            let seen: i64 =
                home_left + others.iter().map(|(_, pool)| pool).sum::<i64>() + in_flight;
            if in_flight == 0 {
                return Ok(BuyDecision::SoldOut {
                    remaining: seen.min(i64::from(i32::MAX)),
                });
            }
        }
        // Rounds spent while others kept taking what was fetched: what is left is too little
        // for this buyer right now.
        Ok(BuyDecision::SoldOut {
            remaining: self.pools_left(sku, e, subpools).await?,
        })
    }

    async fn order(&self, order_no: &str) -> StoreResult<Option<Order>> {
        let Some((_, shard)) = self.shard_of_order(order_no).await? else {
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        let record: Option<String> = conn
            .hget(self.keys.orderbook(shard), order_no)
            .await
            .map_err(unavailable)?;
        record.map(|r| self.order_from(order_no, &r)).transpose()
    }

    async fn pay(&self, order_no: &str, user_id: &str, now_ms: i64) -> StoreResult<Order> {
        let not_found = || StoreError::Refused(StockError::NotFound(format!("order {order_no}")));
        let (_, shard) = self.shard_of_order(order_no).await?.ok_or_else(not_found)?;
        let k = &self.keys;
        let reply = self
            .run(
                &self.scripts.pay,
                &[k.orderbook(shard), k.deadlines(shard), k.stock(shard)],
                &[order_no.into(), user_id.into(), now_ms.to_string()],
            )
            .await?;
        status(&reply)?;
        self.order_from(order_no, reply.get(1).ok_or_else(|| corrupt("pay reply"))?)
    }

    async fn cancel(&self, order_no: &str, user_id: &str, now_ms: i64) -> StoreResult<Order> {
        // An empty user is how the sweeper asks release_order.lua for any user's order.
        if user_id.is_empty() {
            return Err(StoreError::Refused(StockError::NotYours(
                order_no.to_owned(),
            )));
        }
        Ok(self
            .release(order_no, user_id, now_ms, OrderStatus::Cancelled)
            .await?
            .1)
    }

    async fn expire_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
        let mut expired = Vec::new();
        let (shards, mut failure) = self.every_shard().await?;
        for shard in shards {
            if expired.len() >= limit {
                return Ok(expired);
            }
            // A shard that cannot be reached (its master failing over) holds up only itself.
            if let Err(e) = self.expire_in(shard, now_ms, limit, &mut expired).await {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(expired), Err)
    }

    async fn close_ended(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
        let mut closed = Vec::new();
        let (shards, mut failure) = self.every_shard().await?;
        for shard in shards {
            // A shard that cannot be reached (its master failing over) holds up only itself.
            if let Err(e) = self.close_in(shard, now_ms, &mut closed).await {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(closed), Err)
    }

    async fn read_wins(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> StoreResult<Vec<Win>> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            let wins = self.read_round(consumer, count).await?;
            let now = tokio::time::Instant::now();
            if !wins.is_empty() || now >= deadline {
                return Ok(wins);
            }
            tokio::time::sleep(IDLE_POLL.min(deadline - now)).await;
        }
    }

    async fn reclaim_wins(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> StoreResult<Vec<Win>> {
        let mut wins = Vec::new();
        for stream in self.order_streams().await? {
            if wins.len() >= count {
                break;
            }
            let mut conn = self.conn.clone();
            let reply: Result<StreamAutoClaimReply, _> = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(ORDER_GROUP)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(count - wins.len())
                .query_async(&mut conn)
                .await;
            match reply {
                Ok(reply) => wins.extend(self.wins_of(&stream, reply.claimed)),
                Err(e) if e.code() == Some("NOGROUP") => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(wins)
    }

    async fn create_order(&self, win: &Win, now_ms: i64) -> StoreResult<bool> {
        let (event, shard) = self.shard_of_win(win).await?;
        let k = &self.keys;
        let reply = self
            .run(
                &self.scripts.create_order,
                &[
                    k.orderbook(shard),
                    k.deadlines(shard),
                    k.event(shard, event),
                ],
                &[win.order_no.clone(), now_ms.to_string()],
            )
            .await?;
        Ok(status(&reply)? == "CREATED")
    }

    async fn ack_win(&self, win: &Win) -> StoreResult<()> {
        let (_, shard) = self.shard_of_win(win).await?;
        let stream = self.keys.order_stream(shard);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .xack(&stream, ORDER_GROUP, &[&win.entry_id])
            .ignore()
            .xdel(&stream, &[&win.entry_id])
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn snapshot(&self, sku: i64) -> StoreResult<Option<SkuSnapshot>> {
        // One script per shard: each shard is read at one instant, the SKU shard by shard (a
        // sale split in sub-pools moves units between shards only through journaled transfers,
        // which are counted below).
        let k = &self.keys;
        let mut merged: Option<SkuSnapshot> = None;
        for shard in self.shards_of(sku).await? {
            let mut invocation = self.scripts.snapshot.prepare_invoke();
            invocation
                .key(k.stock(shard))
                .key(k.sku_events(shard))
                .key(k.orderbook(shard))
                .arg(k.event_prefix(shard));
            let mut conn = self.conn.clone();
            let json: String = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if json.is_empty() {
                if shard.sub == 0 {
                    return Ok(None);
                }
                continue;
            }
            let mut part = parse_snapshot(shard, &json)?;
            for (id, landing) in self.moves_of(shard).await? {
                if self.has_landed(&id, &landing).await? {
                    continue;
                }
                match landing.field.as_str() {
                    "pool" => part.moving += landing.n,
                    _ => part.counters.available += landing.n,
                }
            }
            merged = Some(match merged {
                None => part,
                Some(mut all) => {
                    all.counters.total += part.counters.total;
                    all.counters.available += part.counters.available;
                    all.counters.locked += part.counters.locked;
                    all.counters.sold += part.counters.sold;
                    all.moving += part.moving;
                    all.sales.extend(part.sales);
                    all.orders.extend(part.orders);
                    all
                }
            });
        }
        Ok(merged)
    }

    async fn locks(&self) -> StoreResult<Vec<LockSnapshot>> {
        // From the lock directory, not SCAN (which sees one cluster node).
        self.list_locks().await
    }

    async fn lock_records(&self) -> StoreResult<LockRecords> {
        self.lock_records_of().await
    }
}
