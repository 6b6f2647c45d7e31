//! The sweeper's two walks over every shard of every live sale (the live directory: a sale that
//! has ended and whose orders are all final retires from it, so a sweep costs the same however
//! many sales have retired): expire orders unpaid past their deadline, and close ended sales
//! (landing stranded transfers and sending a sub-pool shard's `available` home on the way), then
//! retire them once their orders are final. A shard that cannot be reached (its master failing over) holds
//! up only itself; its error is answered after the others are swept.
//!
//! What it does not do: decide when to sweep (the worker's loop does).

use std::collections::BTreeSet;

use redis::AsyncCommands;

use super::{unavailable, RedisStore};
use crate::stock::{self, call};
use crate::stock::{OrderStatus, Shard};
use crate::warehouse::store::StoreResult;

impl RedisStore {
    /// `Orders::expire_due`.
    pub(super) async fn expire_every_shard(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let mut expired = Vec::new();
        let (shards, _) = self.live_shards().await?;
        let mut failure = None;
        for shard in shards {
            if expired.len() >= limit {
                return Ok(expired);
            }
            if let Err(e) = self.expire_in(shard, now_ms, limit, &mut expired).await {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(expired), Err)
    }

    /// `Orders::close_ended`: closes ended sales, retires from the live directory those that
    /// have retired in every shard (and gives their keys the retention time).
    pub(super) async fn close_every_shard(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
        let mut closed = Vec::new();
        let (shards, live) = self.live_shards().await?;
        let mut failure = None;
        let mut listed = BTreeSet::new();
        for shard in shards {
            if let Err(e) = self.close_in(shard, now_ms, &mut closed, &mut listed).await {
                failure.get_or_insert(e);
            }
        }
        // A live sale no shard found an order of still live in: retire it if every shard has
        // marked it (one being defined right now has no mark and is left alone; one whose
        // retirement a crash interrupted is listed by some shards only, and finished now).
        for (event, entry) in live.into_iter().filter(|(e, _)| !listed.contains(e)) {
            if let Err(e) = self.retire(event, entry, now_ms).await {
                failure.get_or_insert(e);
            }
        }
        if let Err(e) = self.purge_one(now_ms).await {
            failure.get_or_insert(e);
        }
        failure.map_or(Ok(closed), Err)
    }

    /// The orders of the sale that retired longest ago, once the retention time has passed
    /// since: deleted by ranges (`purge_orders.lua`, what they sold kept counted), then the sale
    /// off the purge index (its other keys have expired by themselves). One sale per sweep, one
    /// read when none is due.
    async fn purge_one(&self, now_ms: i64) -> StoreResult<()> {
        let retain = self.retain_closed.as_millis().max(1) as i64;
        let mut conn = self.conn.clone();
        let due: Vec<i64> = redis::cmd("ZRANGE")
            .arg(self.keys.purge_due())
            .arg("-inf")
            .arg(now_ms.saturating_sub(retain))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(event) = due.first().copied() else {
            return Ok(());
        };
        let entry: Option<String> = conn
            .hget(self.keys.retired_events(), event)
            .await
            .map_err(unavailable)?;
        let tombstone = entry.as_deref().and_then(stock::parse_retired_entry);
        let sku = self.sale_entry(event).await?.map(|(sku, _)| sku);
        if let (Some((_, seqs)), Some(sku)) = (tombstone, sku) {
            let subpools = seqs.len() as u32;
            for (sub, seq) in seqs.into_iter().enumerate() {
                let shard = Shard::new(sku, sub as u32);
                let mut first = 1;
                while first <= seq {
                    let last = (first + call::PURGE_CHUNK - 1).min(seq);
                    let purge =
                        call::purge_orders(&self.keys, (event, subpools), shard, (first, last));
                    let reply: Vec<String> = self.run(&purge).await?;
                    call::parse_purge_orders(&reply)?;
                    first = last + 1;
                }
            }
        }
        conn.zrem::<_, _, ()>(self.keys.purge_due(), event)
            .await
            .map_err(unavailable)
    }

    /// A sale's retirement, once `close_event.lua` has marked it in every shard (every order of
    /// it final): off each shard's set of sales, the tombstone (so its id is never defined
    /// again), the retention time of its keys in every shard, and last off the live directory (a
    /// crash before that only repeats these idempotent steps at the next sweep).
    async fn retire(
        &self,
        event: i64,
        (sku, subpools): (i64, u32),
        now_ms: i64,
    ) -> StoreResult<()> {
        let shards: Vec<Shard> = (0..subpools.max(1))
            .map(|sub| Shard::new(sku, sub))
            .collect();
        let mut seqs = Vec::new();
        for &shard in &shards {
            let mut conn = self.conn.clone();
            let (retired, seq): (Option<String>, Option<i64>) = redis::cmd("HMGET")
                .arg(self.keys.event(shard, event))
                .arg("retired")
                .arg("seq")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if retired.as_deref() != Some("1") {
                return Ok(());
            }
            seqs.push(seq.unwrap_or(0));
        }
        let mut conn = self.conn.clone();
        for &shard in &shards {
            // Its pool is 0 (closed), so no ledger changes: the sweeper and the audit stop
            // visiting it here.
            conn.srem::<_, _, ()>(self.keys.sku_events(shard), event)
                .await
                .map_err(unavailable)?;
        }
        conn.hset_nx::<_, _, _, ()>(
            self.keys.retired_events(),
            event,
            stock::retired_entry(now_ms, &seqs),
        )
        .await
        .map_err(unavailable)?;
        redis::cmd("ZADD")
            .arg(self.keys.purge_due())
            .arg("NX")
            .arg(now_ms)
            .arg(event)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)?;
        let retain = self.retain_closed.as_millis().max(1) as i64;
        for &shard in &shards {
            let mut pipe = redis::pipe();
            for key in [
                self.keys.event(shard, event),
                self.keys.event_users(shard, event),
                self.keys.event_requests(shard, event),
            ] {
                pipe.cmd("PEXPIRE").arg(key).arg(retain).ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        conn.hdel::<_, _, ()>(self.keys.live_events(), event)
            .await
            .map_err(unavailable)
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
    /// (their ids are pushed to `closed` once, from the SKU's own shard) and marks those whose
    /// orders here are all final (the others are pushed to `listed`: not retiring yet), and
    /// sends a sub-pool shard's `available` home.
    async fn close_in(
        &self,
        shard: Shard,
        now_ms: i64,
        closed: &mut Vec<i64>,
        listed: &mut BTreeSet<i64>,
    ) -> StoreResult<()> {
        self.land_stranded(shard).await?;
        let events = self.sales_in(shard).await?;
        for event in events {
            let Some((_, subpools)) = self.sale_entry(event).await? else {
                listed.insert(event);
                continue;
            };
            let reply: Vec<String> = self
                .run(&call::close_event(
                    &self.keys,
                    (event, subpools),
                    shard,
                    now_ms,
                ))
                .await?;
            let closing = call::parse_close_event(&reply)?;
            if closing.closed_now && shard.sub == 0 {
                closed.push(event);
            }
            if closing.retired.is_none() {
                listed.insert(event);
            }
        }
        if shard.sub > 0 {
            self.send_home(shard).await?;
        }
        Ok(())
    }
}
