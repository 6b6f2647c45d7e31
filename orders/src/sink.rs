//! The sink's loop: find every shard's change log, read it through the consumer group
//! [`SINK_GROUP`], wait for the pacer, apply the batch to PostgreSQL in one transaction, and only
//! after the commit acknowledge and delete the entries (`stream_ack.lua`, the warehouse's own:
//! `XACK`, then one head trim below the oldest pending entry instead of an `XDEL` of each).
//!
//! Exactly once, here: a change is applied once however often it is delivered. A sink killed
//! between the commit and the acknowledgement reads the same entries again (its own pending
//! entries first, `XREADGROUP … 0`) and applying them again changes nothing (see [`crate::db`]);
//! a sink killed before the commit left nothing in PostgreSQL. A database that is down keeps the
//! entries pending, and the next round retries them: the queue absorbs the peak, the warehouse's
//! Buy never waits for any of it (it does not know PostgreSQL exists).
//!
//! Which shards: every SKU in the directory (`skus`) and each one's sub-pool shards, listed again
//! every [`Options::rescan`] (retired sales included: their last changes still need carrying).
//! The group is created at `0`, so a sink started late still reads everything logged before it.
//!
//! One Redis or a Redis Cluster, through the warehouse's own [`RedisConnection`]: every command
//! here names one key (a change log, a directory set) or, for the acknowledgement, one change
//! log, so each goes to the master serving that key's slot — a cluster's change logs are
//! spread over its masters with their SKUs, and the sink reads each where it lives.
//!
//! What it does not do: decide anything about orders, or change Redis beyond its own group.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use redis::streams::StreamReadReply;
use redis::{AsyncCommands, Value};
use tokio::sync::watch;

use flashgate_core::stock::{call, Keys, Shard};
use flashgate_core::warehouse::store::{self, RedisConnection};

use crate::change::{self, Entry, StreamId};
use crate::db;
use crate::metrics::Metrics;

/// The sink's consumer group on every change log.
pub const SINK_GROUP: &str = "order-sink";

/// How the sink paces itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// This process's consumer name (restart a sink with the same name: it reads its own
    /// pending entries first).
    pub consumer: String,
    /// Entries read and applied per transaction, at most.
    pub batch: usize,
    /// Rows per second written at most (`None`: as fast as PostgreSQL takes them).
    pub max_rows_per_s: Option<NonZeroU32>,
    /// How often the shard list is read again.
    pub rescan: Duration,
    /// How long a round that found nothing waits before the next.
    pub idle: Duration,
    /// How long to wait after a database error before retrying.
    pub backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            consumer: "sink".into(),
            batch: 1000,
            max_rows_per_s: None,
            rescan: Duration::from_secs(1),
            idle: Duration::from_millis(20),
            backoff: Duration::from_millis(200),
        }
    }
}

/// What went wrong in a round.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Redis could not be read or acknowledged.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// PostgreSQL refused the batch or could not be reached.
    #[error(transparent)]
    Db(#[from] db::DbError),
}

/// One change log: its shard, the shard's label and the log's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Log {
    /// The shard.
    pub at: Shard,
    /// `shard_label`.
    pub shard: String,
    /// The stream's key.
    pub key: String,
}

/// The order sink.
pub struct Sink {
    redis: RedisConnection,
    pool: Pool,
    keys: Keys,
    options: Options,
    pacer: Option<DefaultDirectRateLimiter>,
    metrics: Arc<Metrics>,
}

/// Every change log of `keys`'s directory: each SKU's own shard and its sub-pool shards.
pub async fn logs(redis: &mut RedisConnection, keys: &Keys) -> redis::RedisResult<Vec<Log>> {
    let skus: Vec<i64> = redis.smembers(keys.skus()).await?;
    let mut logs = Vec::new();
    for sku in skus {
        let subs: Vec<u32> = redis.smembers(keys.sub_shards(sku)).await?;
        for shard in std::iter::once(Shard::from(sku)).chain(
            subs.into_iter()
                .filter(|s| *s > 0)
                .map(|s| Shard::new(sku, s)),
        ) {
            logs.push(Log {
                at: shard,
                shard: change::shard_label(shard),
                key: keys.changes(shard),
            });
        }
    }
    logs.sort_by(|a, b| a.key.cmp(&b.key));
    logs.dedup();
    Ok(logs)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

impl Sink {
    /// A sink over `redis` (one Redis or a Cluster, prefix `keys`) and `pool`; the migrations
    /// must have run.
    pub fn new(redis: RedisConnection, pool: Pool, keys: Keys, options: Options) -> Self {
        let pacer = options.max_rows_per_s.map(|rate| {
            // A burst of at most one batch, and of at most one second's rows: the pace holds
            // from the first second on.
            let burst = NonZeroU32::new((options.batch as u32).min(rate.get()).max(1))
                .expect("at least one");
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            redis,
            pool,
            keys,
            options,
            pacer,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// The sink's metrics (shared with its HTTP endpoint).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Entries read per round: a batch, or less when the pacer's burst is smaller.
    fn read_size(&self) -> usize {
        match self.options.max_rows_per_s {
            Some(rate) => self.options.batch.min(rate.get() as usize).max(1),
            None => self.options.batch.max(1),
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut grouped: HashSet<String> = HashSet::new();
        let mut logs: Vec<Log> = Vec::new();
        let mut listed = tokio::time::Instant::now() - self.options.rescan;
        while !*stop.borrow() {
            if listed.elapsed() >= self.options.rescan {
                match self.list(&mut grouped).await {
                    Ok(found) => logs = found,
                    Err(e) => tracing::warn!(error = %e, "cannot list the change logs"),
                }
                self.observe(&logs).await;
                listed = tokio::time::Instant::now();
            }
            let mut moved = 0;
            let mut failed = false;
            for log in &logs {
                match self.drain_once(log).await {
                    Ok(n) => moved += n,
                    Err(e) => {
                        self.metrics.db_errors.inc();
                        tracing::warn!(shard = %log.shard, error = %e, "batch not applied; retrying");
                        failed = true;
                    }
                }
            }
            let pause = if failed {
                self.options.backoff
            } else if moved == 0 {
                self.options.idle
            } else {
                continue;
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// The change logs, each with the sink's group (created at `0` when missing).
    async fn list(&self, grouped: &mut HashSet<String>) -> redis::RedisResult<Vec<Log>> {
        let mut conn = self.redis.clone();
        let found = logs(&mut conn, &self.keys).await?;
        for log in &found {
            if grouped.contains(&log.key) {
                continue;
            }
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&log.key)
                .arg(SINK_GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
            grouped.insert(log.key.clone());
        }
        Ok(found)
    }

    /// Reads one batch of `log` (this consumer's pending entries first), applies it, and
    /// acknowledges it; answers how many entries it moved.
    pub async fn drain_once(&self, log: &Log) -> Result<usize, SinkError> {
        let count = self.read_size();
        let mut entries = self.read(log, "0", count).await?;
        if entries.is_empty() {
            entries = self.read(log, ">", count).await?;
        }
        if entries.is_empty() {
            return Ok(0);
        }
        if let Some(pacer) = &self.pacer {
            let n = NonZeroU32::new(entries.len() as u32).expect("not empty");
            pacer
                .until_n_ready(n)
                .await
                .expect("a read is never larger than the burst");
        }
        let batch = db::Batch::of(&entries);
        for p in &batch.poison {
            tracing::error!(shard = %p.shard, id = %p.id, error = %p.error, "poison change set aside");
        }
        let applied = db::apply(&self.pool, &batch).await?;
        let ids: Vec<String> = entries.iter().map(|e| e.id().to_string()).collect();
        self.acknowledge(&log.key, &ids).await?;
        self.metrics
            .changes
            .inc_by((batch.changes.len() + batch.locks.len()) as u64);
        self.metrics.rows.inc_by(applied.rows + applied.lock_rows);
        self.metrics.poison.inc_by(batch.poison.len() as u64);
        self.metrics.batch.observe(entries.len() as f64);
        Ok(entries.len())
    }

    /// `ids` of `key` acknowledged in [`SINK_GROUP`] and deleted, by the warehouse's
    /// `stream_ack.lua`.
    async fn acknowledge(&self, key: &str, ids: &[String]) -> Result<(), SinkError> {
        let ack = call::stream_ack(key, SINK_GROUP, ids);
        let mut conn = self.redis.clone();
        store::invocation(&ack)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    async fn read(&self, log: &Log, from: &str, count: usize) -> Result<Vec<Entry>, SinkError> {
        let mut conn = self.redis.clone();
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(SINK_GROUP)
            .arg(&self.options.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&log.key)
            .arg(from)
            .query_async(&mut conn)
            .await?;
        let mut entries = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for id in key.ids {
                let Some(stream_id) = StreamId::parse(&id.id) else {
                    continue;
                };
                let fields: Vec<(String, Option<String>)> =
                    id.map.iter().map(|(k, v)| (k.clone(), text(v))).collect();
                entries.push(change::read(log.at, stream_id, &fields));
            }
        }
        Ok(entries)
    }

    /// Refreshes the queue gauges: each log's depth and its oldest entry's age.
    pub async fn observe(&self, logs: &[Log]) {
        let mut conn = self.redis.clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut oldest_overall = 0.0f64;
        for log in logs {
            let depth: redis::RedisResult<u64> = conn.xlen(&log.key).await;
            let first: redis::RedisResult<redis::streams::StreamRangeReply> =
                conn.xrange_count(&log.key, "-", "+", 1).await;
            if let (Ok(depth), Ok(first)) = (depth, first) {
                let age = first
                    .ids
                    .first()
                    .and_then(|e| StreamId::parse(&e.id))
                    .map(|id| ((now - id.ms).max(0)) as f64 / 1000.0)
                    .unwrap_or(0.0);
                oldest_overall = oldest_overall.max(age);
                self.metrics
                    .depth
                    .with_label_values(&[&log.shard])
                    .set(depth as i64);
                self.metrics
                    .oldest
                    .with_label_values(&[&log.shard])
                    .set(age);
            }
        }
        self.metrics.lag.set(oldest_overall);
    }

    /// Runs [`Sink::observe`] every `every` until `stop` (so /healthz sees the lag while the
    /// loop waits for PostgreSQL).
    pub async fn observe_every(&self, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut grouped = HashSet::new();
        while !*stop.borrow() {
            if let Ok(logs) = self.list(&mut grouped).await {
                self.observe(&logs).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
