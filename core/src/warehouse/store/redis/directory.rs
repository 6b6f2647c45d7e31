//! The directory: which shards a sale, an order, a win or a SKU lives in, read from the
//! directory hashes (`events`, `skus`, each SKU's set of sales) and cached where it never
//! changes (a sale's SKU and split).
//!
//! What it does not do: write the directory (defining a sale claims its entry, see [`super::sale`]).

use redis::AsyncCommands;

use super::{corrupt, unavailable, RedisStore};
use crate::stock::{self, Shard, Win};
use crate::warehouse::store::{StoreError, StoreResult};

impl RedisStore {
    /// A sale's SKU and the sub-pools it is split in, from the directory (cached).
    pub(super) async fn sale_entry(&self, event_id: i64) -> StoreResult<Option<(i64, u32)>> {
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
            self.remember_sale(event_id, entry);
        }
        Ok(Some(entry))
    }

    /// Caches a sale's directory entry.
    pub(super) fn remember_sale(&self, event_id: i64, entry: (i64, u32)) {
        self.sale_entries
            .write()
            .expect("not poisoned")
            .insert(event_id, entry);
    }

    /// The sale of an order number and the shard holding the order.
    pub(super) async fn shard_of_order(&self, order_no: &str) -> StoreResult<Option<(i64, Shard)>> {
        let Some(event) = stock::event_of_order(order_no) else {
            return Ok(None);
        };
        let Some((sku, subpools)) = self.sale_entry(event).await? else {
            return Ok(None);
        };
        Ok(stock::subpool_of_order(order_no, subpools).map(|sub| (event, Shard::new(sku, sub))))
    }

    /// The shard of a win's order.
    pub(super) async fn shard_of_win(&self, win: &Win) -> StoreResult<(i64, Shard)> {
        self.shard_of_order(&win.order_no)
            .await?
            .ok_or_else(|| corrupt(format!("win of an unknown sale: {win:?}")))
    }

    /// The shards of a SKU: its own and every sub-pool of its sales.
    pub(super) async fn shards_of(&self, sku: i64) -> StoreResult<Vec<Shard>> {
        let mut shards = vec![Shard::from(sku)];
        for event in self.sales_of_sku(sku).await? {
            if let Some((_, subpools)) = self.sale_entry(event).await? {
                shards.extend((1..subpools).map(|sub| Shard::new(sku, sub)));
            }
        }
        shards.sort_unstable();
        shards.dedup();
        Ok(shards)
    }

    /// Every shard of every SKU, for the sweeper; a SKU whose sales cannot be listed is passed
    /// over and its error handed back beside the rest.
    pub(super) async fn every_shard(&self) -> StoreResult<(Vec<Shard>, Option<StoreError>)> {
        let (mut shards, mut failure) = (Vec::new(), None);
        for sku in self.all_skus().await? {
            match self.shards_of(sku).await {
                Ok(of_sku) => shards.extend(of_sku),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        Ok((shards, failure))
    }

    /// The order streams to read: those of every shard of every sale (the consumer group is
    /// created with the sale; a SKU sold only through the seed contract has no stream).
    pub(super) async fn order_streams(&self) -> StoreResult<Vec<String>> {
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

    /// `Sales::sales_of`: the sales of a SKU.
    pub(super) async fn sales_of_sku(&self, sku: i64) -> StoreResult<Vec<i64>> {
        let mut ids = self.sales_in(Shard::from(sku)).await?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// The sales with a pool in one shard, as Redis lists them.
    pub(super) async fn sales_in(&self, shard: Shard) -> StoreResult<Vec<i64>> {
        let mut conn = self.conn.clone();
        conn.smembers(self.keys.sku_events(shard))
            .await
            .map_err(unavailable)
    }

    /// `Stock::skus`: every SKU with stock.
    pub(super) async fn all_skus(&self) -> StoreResult<Vec<i64>> {
        let mut conn = self.conn.clone();
        let mut skus: Vec<i64> = conn.smembers(self.keys.skus()).await.map_err(unavailable)?;
        skus.sort_unstable();
        Ok(skus)
    }
}
