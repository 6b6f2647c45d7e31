//! The order queue on Redis: every shard's order stream, read (one `XREADGROUP` per stream,
//! concurrently, no `BLOCK`: streams live in different slots), reclaimed (`XAUTOCLAIM`) and
//! acknowledged (`XACK` + `XDEL`), and the order a win announces created once (`create_order.lua`).
//!
//! What it does not do: decide what to do with a win (the order worker does).

use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use super::{unavailable, RedisStore};
use crate::stock::call;
use crate::stock::{Currency, Win, ORDER_GROUP};
use crate::warehouse::store::StoreResult;

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

    /// `OrderQueue::create_order`.
    pub(super) async fn create_order_of(&self, win: &Win, now_ms: i64) -> StoreResult<bool> {
        let (event, shard) = self.shard_of_win(win).await?;
        let create = call::create_order(&self.keys, shard, event, &win.order_no, now_ms);
        let reply: Vec<String> = self.run(&create).await?;
        Ok(call::parse_create_order(&reply)?)
    }

    /// `OrderQueue::ack_win`.
    pub(super) async fn ack(&self, win: &Win) -> StoreResult<()> {
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
