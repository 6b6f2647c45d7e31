//! The sweeper's two walks over every shard of every SKU: expire orders unpaid past their
//! deadline, and close ended sales (landing stranded transfers and sending a sub-pool shard's
//! `available` home on the way). A shard that cannot be reached (its master failing over) holds
//! up only itself; its error is answered after the others are swept.
//!
//! What it does not do: decide when to sweep (the worker's loop does).

use super::{unavailable, RedisStore};
use crate::stock::call;
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
        let (shards, mut failure) = self.every_shard().await?;
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

    /// `Orders::close_ended`.
    pub(super) async fn close_every_shard(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
        let mut closed = Vec::new();
        let (shards, mut failure) = self.every_shard().await?;
        for shard in shards {
            if let Err(e) = self.close_in(shard, now_ms, &mut closed).await {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(closed), Err)
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
        self.land_stranded(shard).await?;
        let events = self.sales_in(shard).await?;
        for event in events {
            let reply: Vec<String> = self
                .run(&call::close_event(&self.keys, shard, event, now_ms))
                .await?;
            if call::parse_close_event(&reply)? && shard.sub == 0 {
                closed.push(event);
            }
        }
        if shard.sub > 0 {
            self.send_home(shard).await?;
        }
        Ok(())
    }
}
