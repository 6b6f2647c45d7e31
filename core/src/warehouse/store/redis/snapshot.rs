//! The reads across every shard of a SKU: the ledger (`ledger.lua` per shard) and the audit's
//! snapshot (`snapshot.lua` per shard). Each shard is read at one instant, the SKU shard by
//! shard; units between two shards are counted where they are going, once (see
//! [`RedisStore::unlanded`]).
//!
//! What it does not do: judge what it reads (the audit, [`crate::stock::audit`], does).

use super::RedisStore;
use crate::stock::audit::SkuSnapshot;
use crate::stock::call::{self, Move};
use crate::stock::Ledger;
use crate::warehouse::store::StoreResult;

/// Units on their way, as `(to pools, to available)`.
fn in_transfer(moves: &[Move]) -> (i64, i64) {
    moves.iter().fold((0, 0), |(pools, available), m| {
        if m.is_pool() {
            (pools + m.n, available)
        } else {
            (pools, available + m.n)
        }
    })
}

impl RedisStore {
    /// `Stock::ledger`.
    pub(super) async fn ledger_of(&self, sku: i64) -> StoreResult<Option<Ledger>> {
        let mut ledger = Ledger::default();
        for shard in self.shards_of(sku).await? {
            let reply: Vec<String> = self.run(&call::ledger(&self.keys, shard)).await?;
            let Some(part) = call::parse_ledger(&reply)? else {
                if shard.sub == 0 {
                    return Ok(None);
                }
                continue;
            };
            let (pools, available) = in_transfer(&self.unlanded(shard).await?);
            ledger.total += part.total;
            ledger.available += part.available + available;
            ledger.pools += part.pools + pools;
            ledger.locked += part.locked;
            ledger.sold += part.sold;
        }
        Ok(Some(ledger))
    }

    /// `Audit::snapshot`: one script per shard, merged.
    pub(super) async fn snapshot_of(&self, sku: i64) -> StoreResult<Option<SkuSnapshot>> {
        let mut merged: Option<SkuSnapshot> = None;
        for shard in self.shards_of(sku).await? {
            let json: String = self.run(&call::snapshot(&self.keys, shard)).await?;
            let Some(mut part) = call::parse_snapshot(shard, &json)? else {
                if shard.sub == 0 {
                    return Ok(None);
                }
                continue;
            };
            let (pools, available) = in_transfer(&self.unlanded(shard).await?);
            part.moving += pools;
            part.counters.available += available;
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
}
