//! The order queue on Redis: every shard's order stream, read (one `XREADGROUP` per stream,
//! concurrently, no `BLOCK`: streams live in different slots), reclaimed (`XAUTOCLAIM`), and the
//! orders a read batch announces created once and acknowledged by one `create_order.lua` call per
//! shard, in the same atomic step; then the acknowledged entries deleted (`stream_ack.lua`: a head
//! trim, not an `XDEL` each).
//!
//! What it does not do: decide what to do with a win (the order worker does).

use std::time::Duration;

use std::collections::BTreeMap;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use super::{unavailable, RedisStore};
use crate::stock::call::{self, Created};
use crate::stock::{Currency, Shard, StockError, Win, ORDER_GROUP};
use crate::warehouse::store::{StoreError, StoreResult};

fn not_found(order_no: &str) -> StoreError {
    StoreError::Refused(StockError::NotFound(format!("order {order_no}")))
}

/// How long the order worker waits between rounds that found no new win.
const IDLE_POLL: Duration = Duration::from_millis(20);

impl RedisStore {
    /// `OrderQueue::read_wins`: rounds over every stream until one finds wins or `block` is over.
    pub(super) async fn poll_wins(
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

    /// `OrderQueue::reclaim_wins`.
    pub(super) async fn claim_idle_wins(
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

    /// `OrderQueue::create_order`: one win, created without acknowledging it.
    pub(super) async fn create_order_of(&self, win: &Win, now_ms: i64) -> StoreResult<bool> {
        let (_, shard) = self.shard_of_win(win).await?;
        let one = [(win.order_no.as_str(), win.entry_id.as_str())];
        let create = call::create_orders(&self.keys, shard, &one, false, self.order_log, now_ms);
        let reply: Vec<String> = self.run(&create).await?;
        match call::parse_create_orders(&reply, 1)?[..] {
            [Created::NotFound] => Err(not_found(&win.order_no)),
            [outcome] => Ok(outcome == Created::Created),
            _ => unreachable!("parse_create_orders answers one outcome per win"),
        }
    }

    /// `OrderQueue::settle_wins`: the wins grouped by shard, each shard's created and
    /// acknowledged by one `create_order.lua` call (up to [`call::CREATE_BATCH`] wins each), the
    /// shards concurrently (they live in different slots).
    pub(super) async fn settle_batch(&self, wins: &[Win], now_ms: i64) -> StoreResult<Vec<bool>> {
        let mut by_shard: BTreeMap<Shard, Vec<usize>> = BTreeMap::new();
        for (i, win) in wins.iter().enumerate() {
            by_shard
                .entry(self.shard_of_win(win).await?.1)
                .or_default()
                .push(i);
        }
        let calls = by_shard.iter().flat_map(|(shard, of_shard)| {
            of_shard
                .chunks(call::CREATE_BATCH)
                .map(move |chunk| async move {
                    let batch: Vec<(&str, &str)> = chunk
                        .iter()
                        .map(|&i| (wins[i].order_no.as_str(), wins[i].entry_id.as_str()))
                        .collect();
                    let create = call::create_orders(
                        &self.keys,
                        *shard,
                        &batch,
                        true,
                        self.order_log,
                        now_ms,
                    );
                    let reply: Vec<String> = self.run(&create).await?;
                    let outcomes = call::parse_create_orders(&reply, chunk.len())?;
                    let acked: Vec<&str> = batch
                        .iter()
                        .zip(&outcomes)
                        .filter(|(_, outcome)| **outcome != Created::NotFound)
                        .map(|(win, _)| win.1)
                        .collect();
                    if !acked.is_empty() {
                        let stream = self.keys.order_stream(*shard);
                        let ack = call::stream_ack(&stream, ORDER_GROUP, &acked);
                        // Deleting is housekeeping: the wins are created and acknowledged, and
                        // the next batch's head trim takes what this one leaves.
                        if let Err(e) = self.run::<i64>(&ack).await {
                            tracing::warn!(error = %e, "acknowledged wins not deleted yet");
                        }
                    }
                    Ok::<_, StoreError>(chunk.iter().copied().zip(outcomes).collect::<Vec<_>>())
                })
        });
        let mut created = vec![false; wins.len()];
        let (mut missing, mut failure) = (None, None);
        for result in futures_util::future::join_all(calls).await {
            match result {
                Ok(outcomes) => {
                    for (i, outcome) in outcomes {
                        created[i] = outcome == Created::Created;
                        if outcome == Created::NotFound {
                            missing.get_or_insert(i);
                        }
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        match missing {
            Some(i) => Err(not_found(&wins[i].order_no)),
            None => Ok(created),
        }
    }

    /// `OrderQueue::ack_win`.
    pub(super) async fn ack(&self, win: &Win) -> StoreResult<()> {
        let (_, shard) = self.shard_of_win(win).await?;
        let stream = self.keys.order_stream(shard);
        let ack = call::stream_ack(&stream, ORDER_GROUP, &[&win.entry_id]);
        self.run::<i64>(&ack).await.map(|_| ())
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

    fn wins_of(&self, stream: &str, ids: Vec<StreamId>) -> Vec<Win> {
        let Some(sku_id) = self.keys.sku_of(stream) else {
            return Vec::new();
        };
        ids.into_iter()
            .filter_map(|entry| {
                let order_no: String = entry.get("order")?;
                let amount: i64 = entry.get("amount")?;
                let currency = Currency::parse(&entry.get::<String>("currency")?)?;
                Some(Win {
                    sku_id,
                    entry_id: entry.id,
                    order_no,
                    amount,
                    currency,
                })
            })
            .collect()
    }
}
