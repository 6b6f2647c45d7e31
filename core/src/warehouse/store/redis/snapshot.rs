//! The reads across every shard of a SKU: the ledger (`ledger.lua` per shard, one instant) and
//! the audit's snapshot (each shard read in bounded chunks, so no command runs long at any size:
//! see [`RedisStore::shard_snapshot`]). Units between two shards are counted where they are
//! going, once (see [`RedisStore::unlanded`]).
//!
//! What it does not do: judge what it reads (the audit, [`crate::stock::audit`], does).

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use redis::AsyncCommands;

use super::{unavailable, RedisStore};
use crate::stock::audit::SkuSnapshot;
use crate::stock::call::{self, Move};
use crate::stock::{Ledger, Shard};
use crate::warehouse::store::{StoreError, StoreResult};

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

    /// `Audit::snapshot`: each shard read in bounded chunks ([`Self::shard_snapshot`]), merged.
    pub(super) async fn snapshot_of(&self, sku: i64) -> StoreResult<Option<SkuSnapshot>> {
        let mut merged: Option<SkuSnapshot> = None;
        for shard in self.shards_of(sku).await? {
            let Some(mut part) = self.shard_snapshot(shard).await? else {
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
                    all.counters.sold_purged += part.counters.sold_purged;
                    all.moving += part.moving;
                    all.sales.extend(part.sales);
                    all.orders.extend(part.orders);
                    all
                }
            });
        }
        Ok(merged)
    }

    /// One shard as the audit reads it, in chunks of at most [`call::AUDIT_CHUNK`] entries
    /// ([`call::AUDIT_ORDERS_CHUNK`] orders; plain `HGETALL` of small hashes, `SSCAN`/`HSCAN` of
    /// the large ones, sales read concurrently), so no command runs long however many sales and orders the shard holds.
    /// Not one instant, so the stock hash is read before and after: if it moved in between (a
    /// buy, a payment), the shard is read again, up to three times; a store that never stands
    /// still for that long is read as it was on the last attempt (the audit's transient
    /// mismatches, see `audit`).
    async fn shard_snapshot(&self, shard: Shard) -> StoreResult<Option<SkuSnapshot>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stock = self.hash_all(&self.keys.stock(shard)).await?;
            if stock.is_empty() {
                return Ok(None);
            }
            let events = self.set_scan(&self.keys.sku_events(shard)).await?;
            let sales = stream::iter(events)
                .map(|event| async move {
                    let sale = self.hash_all(&self.keys.event(shard, event)).await?;
                    let users = self
                        .hash_scan(&self.keys.event_users(shard, event), call::AUDIT_CHUNK)
                        .await?;
                    let req = self
                        .hash_scan(&self.keys.event_requests(shard, event), call::AUDIT_CHUNK)
                        .await?;
                    Ok::<_, StoreError>(call::RawSale { sale, users, req })
                })
                .buffered(32)
                .try_collect::<Vec<_>>()
                .await?;
            let orders = self
                .hash_scan(&self.keys.orderbook(shard), call::AUDIT_ORDERS_CHUNK)
                .await?;
            let after = self.hash_all(&self.keys.stock(shard)).await?;
            if after == stock || attempt == 3 {
                return Ok(call::assemble_snapshot(shard, &stock, sales, &orders)?);
            }
        }
    }

    async fn hash_all(&self, key: &str) -> StoreResult<BTreeMap<String, String>> {
        let mut conn = self.conn.clone();
        conn.hgetall(key).await.map_err(unavailable)
    }

    /// A hash of any size, `HSCAN` by `chunk` (an entry seen twice while the hash rehashes is
    /// kept once).
    async fn hash_scan(&self, key: &str, chunk: usize) -> StoreResult<BTreeMap<String, String>> {
        let mut all = BTreeMap::new();
        let mut cursor = "0".to_owned();
        loop {
            let mut conn = self.conn.clone();
            let (next, flat): (String, Vec<String>) = redis::cmd("HSCAN")
                .arg(key)
                .arg(&cursor)
                .arg("COUNT")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let mut pairs = flat.into_iter();
            while let (Some(field), Some(value)) = (pairs.next(), pairs.next()) {
                all.insert(field, value);
            }
            if next == "0" {
                return Ok(all);
            }
            cursor = next;
        }
    }

    /// The event ids of a set of sales, `SSCAN` by [`call::AUDIT_CHUNK`], ascending.
    async fn set_scan(&self, key: &str) -> StoreResult<Vec<i64>> {
        let mut all = BTreeSet::new();
        let mut cursor = "0".to_owned();
        loop {
            let mut conn = self.conn.clone();
            let (next, ids): (String, Vec<i64>) = redis::cmd("SSCAN")
                .arg(key)
                .arg(&cursor)
                .arg("COUNT")
                .arg(call::AUDIT_CHUNK)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            all.extend(ids);
            if next == "0" {
                return Ok(all.into_iter().collect());
            }
            cursor = next;
        }
    }
}
