//! A SKU's stock and its sales' definitions: `PutSkuStock`, `PutEvent` (one pool, or split in
//! sub-pools, each defined in its shard and then spread, and indexed by its end), and reading a
//! sale back.
//!
//! What it does not do: buy (see [`super::buy`]) or close a sale (see [`super::sweep`]).

use std::collections::BTreeMap;

use futures_util::future::try_join_all;
use redis::AsyncCommands;

use super::{corrupt, unavailable, RedisStore};
use crate::stock::call;
use crate::stock::{self, Sale, SaleState, Shard, StockError};
use crate::warehouse::store::{StoreError, StoreResult};

impl RedisStore {
    /// `Stock::put_stock`.
    pub(super) async fn put_sku_stock(&self, sku: i64, total: i64) -> StoreResult<i64> {
        // The directory first (a listed SKU without stock is skipped by its readers; a SKU with
        // stock missing from the directory would escape the sweeper and the audit). It lives in
        // another slot than the SKU, so it is a command of its own.
        let mut conn = self.conn.clone();
        conn.sadd::<_, _, ()>(self.keys.skus(), sku)
            .await
            .map_err(unavailable)?;
        let reply: Vec<String> = self.run(&call::put_stock(&self.keys, sku, total)).await?;
        Ok(call::parse_put_stock(&reply)?)
    }

    /// `Stock::available`.
    pub(super) async fn available_of(&self, skus: &[i64]) -> StoreResult<Vec<Option<i64>>> {
        // One read per SKU, concurrently: the SKUs live in different slots.
        try_join_all(skus.iter().map(|sku| {
            let mut conn = self.conn.clone();
            let key = self.keys.stock(*sku);
            async move { conn.hget(key, "available").await.map_err(unavailable) }
        }))
        .await
    }

    /// `Sales::put_sale`.
    pub(super) async fn define_sale(&self, sale: &Sale) -> StoreResult<SaleState> {
        // The index by end first (another slot, so a command of its own): a process dying from
        // here on leaves the sale listed, never a defined sale hidden from the edge. After the
        // definition the index is set from what is stored, whatever the answer.
        let mut conn = self.conn.clone();
        conn.zadd::<_, _, _, ()>(self.keys.sale_ends(), sale.id, sale.end_ms)
            .await
            .map_err(unavailable)?;
        let defined = self.define_in_shards(sale).await;
        let stored = self.sale_state(sale.id).await?;
        match &stored {
            Some(state) => {
                conn.zadd::<_, _, _, ()>(self.keys.sale_ends(), sale.id, state.sale.end_ms)
            }
            None => conn.zrem::<_, _, ()>(self.keys.sale_ends(), sale.id),
        }
        .await
        .map_err(unavailable)?;
        defined?;
        stored.ok_or_else(|| corrupt("sale vanished after put"))
    }

    /// The definition itself: the directory claim, the SKU's own shard, the sub-pools.
    async fn define_in_shards(&self, sale: &Sale) -> StoreResult<()> {
        let k = &self.keys;
        let subpools = sale.subpools.max(1);
        // Claim the event id for this SKU and split in the directory (another slot, so a
        // command of its own) before the sale exists: neither ever changes.
        let mut conn = self.conn.clone();
        let entry = stock::event_entry(sale.sku, subpools);
        let claimed: bool = conn
            .hset_nx(k.events(), sale.id, &entry)
            .await
            .map_err(unavailable)?;
        if !claimed && !self.is_live(sale.id).await? {
            return Err(StoreError::Refused(StockError::FailedPrecondition(
                format!("event {} has ended and been closed", sale.id),
            )));
        }
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
            self.gather(sale.sku, sale.id, subpools).await?;
        }
        // Listed for the worker and the sweeper before it can take a buy (again, on a
        // redefinition, in case a crash came between a claim and here); the sub-pool shards
        // recorded for the SKU's reads after the sale retires.
        conn.hset::<_, _, _, ()>(k.live_events(), sale.id, &entry)
            .await
            .map_err(unavailable)?;
        if subpools > 1 {
            let subs: Vec<u32> = (1..subpools).collect();
            conn.sadd::<_, _, ()>(k.sub_shards(sale.sku), subs)
                .await
                .map_err(unavailable)?;
        }
        let reply: Vec<String> = self.run(&call::put_sale(k, sale, subpools, 0)).await?;
        let refused = call::status(&reply).err().map(StoreError::from);
        if refused.is_some() && claimed {
            // Refused, so nothing was defined: release the claim so the id stays free.
            conn.hdel::<_, _, ()>(k.events(), sale.id)
                .await
                .map_err(unavailable)?;
            conn.hdel::<_, _, ()>(k.live_events(), sale.id)
                .await
                .map_err(unavailable)?;
        }
        // Sub-pools take the new definition only when the SKU's own shard did; a refused
        // redefinition only spreads back what was gathered.
        if subpools > 1 && refused.is_none() {
            for sub in 1..subpools {
                let reply: Vec<String> = self.run(&call::put_sale(k, sale, subpools, sub)).await?;
                call::status(&reply)?;
            }
        }
        if subpools > 1 && !(refused.is_some() && claimed) {
            self.spread(sale.sku, sale.id, subpools).await?;
        }
        if let Some(refused) = refused {
            return Err(refused);
        }
        self.remember_sale(sale.id, (sale.sku, subpools));
        Ok(())
    }

    /// Whether a sale id has no tombstone (it never retired).
    async fn is_live(&self, event_id: i64) -> StoreResult<bool> {
        let mut conn = self.conn.clone();
        let retired: bool = conn
            .hexists(self.keys.retired_events(), event_id)
            .await
            .map_err(unavailable)?;
        Ok(!retired)
    }

    /// `Sales::sale`: the definition from the SKU's own shard, the units left summed over the
    /// sub-pools.
    pub(super) async fn sale_state(&self, event_id: i64) -> StoreResult<Option<SaleState>> {
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

    /// Units left in a sale's pools, summed over its sub-pools (read concurrently).
    pub(super) async fn pools_left(&self, sku: i64, event: i64, subpools: u32) -> StoreResult<i64> {
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

    /// `Sales::sales_ending_from`: one range read of the index by end.
    pub(super) async fn sales_by_end(&self, from_ms: i64) -> StoreResult<Vec<i64>> {
        let mut conn = self.conn.clone();
        let mut ids: Vec<i64> = conn
            .zrangebyscore(self.keys.sale_ends(), from_ms, "+inf")
            .await
            .map_err(unavailable)?;
        ids.sort_unstable();
        Ok(ids)
    }
}
