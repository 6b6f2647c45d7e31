//! The directory: which shards a sale, an order, a win or a SKU lives in, read from the
//! directory hashes (`events`, `skus`, each SKU's set of sales) and cached where it never
//! changes (a sale's SKU and split); and which sales are still live (`events:live`), the only
//! ones the order worker and the sweeper visit.
//!
//! What it does not do: write the directory (defining a sale claims its entry, see [`super::sale`]).

use std::collections::BTreeMap;

use redis::AsyncCommands;

use super::{corrupt, unavailable, RedisStore};
use crate::stock::{self, Shard, Win};
use crate::warehouse::store::StoreResult;

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

    /// The shards of a SKU: its own and every sub-pool any of its sales was split into (retired
    /// ones included: their shards keep the units' history).
    pub(super) async fn shards_of(&self, sku: i64) -> StoreResult<Vec<Shard>> {
        let mut shards = vec![Shard::from(sku)];
        let mut conn = self.conn.clone();
        let subs: Vec<u32> = conn
            .smembers(self.keys.sub_shards(sku))
            .await
            .map_err(unavailable)?;
        shards.extend(
            subs.into_iter()
                .filter(|s| *s > 0)
                .map(|sub| Shard::new(sku, sub)),
        );
        for event in self.sales_of_sku(sku).await? {
            if let Some((_, subpools)) = self.sale_entry(event).await? {
                shards.extend((1..subpools).map(|sub| Shard::new(sku, sub)));
            }
        }
        shards.sort_unstable();
        shards.dedup();
        Ok(shards)
    }

    /// The sales not yet retired, from the live directory: event id → (SKU, sub-pools).
    pub(super) async fn live_sales(&self) -> StoreResult<BTreeMap<i64, (i64, u32)>> {
        let mut conn = self.conn.clone();
        let entries: BTreeMap<i64, String> = conn
            .hgetall(self.keys.live_events())
            .await
            .map_err(unavailable)?;
        Ok(entries
            .into_iter()
            .filter_map(|(event, e)| Some((event, stock::parse_event_entry(&e)?)))
            .collect())
    }

    /// Every shard of every sale not yet retired, for the sweeper (one read of the live
    /// directory, however many sales have retired), and those sales.
    pub(super) async fn live_shards(&self) -> StoreResult<(Vec<Shard>, BTreeMap<i64, (i64, u32)>)> {
        let live = self.live_sales().await?;
        let mut shards: Vec<Shard> = live
            .values()
            .flat_map(|&(sku, subpools)| (0..subpools.max(1)).map(move |sub| Shard::new(sku, sub)))
            .collect();
        shards.sort_unstable();
        shards.dedup();
        Ok((shards, live))
    }

    /// The order streams to read: those of every shard of every sale not yet retired (the
    /// consumer group is created with the sale; a SKU sold only through the seed contract has no
    /// stream). A retired sale has no QUEUED order, so nothing is left to read for it.
    pub(super) async fn order_streams(&self) -> StoreResult<Vec<String>> {
        Ok(self
            .live_shards()
            .await?
            .0
            .into_iter()
            .map(|shard| self.keys.order_stream(shard))
            .collect())
    }

    /// Fills the live directory from the full one when it does not exist (a store written
    /// before there was one, or whose sales have all retired): every sale without a tombstone.
    /// Run once when the store connects; a retired sale listed again is retired again by the
    /// next sweep.
    pub(super) async fn ensure_live_directory(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let exists: bool = conn
            .exists(self.keys.live_events())
            .await
            .map_err(unavailable)?;
        if exists {
            return Ok(());
        }
        let all: BTreeMap<String, String> = conn
            .hgetall(self.keys.events())
            .await
            .map_err(unavailable)?;
        if all.is_empty() {
            return Ok(());
        }
        let retired: std::collections::HashSet<String> = conn
            .hkeys(self.keys.retired_events())
            .await
            .map_err(unavailable)?;
        let live: Vec<(String, String)> = all
            .into_iter()
            .filter(|(event, _)| !retired.contains(event))
            .collect();
        if !live.is_empty() {
            conn.hset_multiple::<_, _, _, ()>(self.keys.live_events(), &live)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
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
