//! The memory store's SKU stock and sale definitions: `put_stock` (the difference goes to or
//! comes from `available`), `put_sale` (pre-warming moves only the difference between the pool
//! and `available`), and the reads of both, as `put_stock.lua`, `put_event.lua` and `ledger.lua`
//! do them; sales are also indexed by their end, so listing those not long ended is one range.
//!
//! What it does not do: buy from a pool or close it (see [`super::orders`]).

use std::collections::HashMap;

use super::{refused, MemoryStore, SaleRecord};
use crate::stock::{Ledger, Sale, SaleState, StockError};
use crate::warehouse::store::{Sales, Stock, StoreResult};

impl Stock for MemoryStore {
    async fn put_stock(&self, sku: i64, total: i64) -> StoreResult<i64> {
        let mut inner = self.inner();
        let counts = inner.skus.entry(sku).or_default();
        let next = counts.available + (total - counts.total);
        if next < 0 {
            return refused(StockError::FailedPrecondition(format!(
                "sku {sku}: total {total} is below the {} units pooled, locked or sold",
                counts.total - counts.available
            )));
        }
        counts.total = total;
        counts.available = next;
        Ok(next)
    }

    async fn available(&self, skus: &[i64]) -> StoreResult<Vec<Option<i64>>> {
        let inner = self.inner();
        Ok(skus
            .iter()
            .map(|s| inner.skus.get(s).map(|c| c.available))
            .collect())
    }

    async fn ledger(&self, sku: i64) -> StoreResult<Option<Ledger>> {
        let inner = self.inner();
        Ok(inner.skus.get(&sku).map(|c| Ledger {
            total: c.total,
            available: c.available,
            pools: c.sales.iter().map(|e| inner.sales[e].state.remaining).sum(),
            locked: c.locked,
            sold: c.sold,
        }))
    }

    async fn skus(&self) -> StoreResult<Vec<i64>> {
        Ok(self.inner().skus.keys().copied().collect())
    }
}

impl Sales for MemoryStore {
    async fn put_sale(&self, sale: &Sale) -> StoreResult<SaleState> {
        let mut inner = self.inner();
        if inner.retired.contains_key(&sale.id) {
            return refused(StockError::FailedPrecondition(format!(
                "event {} has ended and been closed",
                sale.id
            )));
        }
        if let Some(existing) = inner.sales.get(&sale.id) {
            if existing.state.sale.sku != sale.sku {
                return refused(StockError::FailedPrecondition(format!(
                    "event {} sells sku {}; its sku cannot change",
                    sale.id, existing.state.sale.sku
                )));
            }
            if existing.state.sale.subpools != sale.subpools {
                return refused(StockError::FailedPrecondition(format!(
                    "event {} is split in {} sub-pools; that cannot change",
                    sale.id, existing.state.sale.subpools
                )));
            }
        }
        let Some(available) = inner.skus.get(&sale.sku).map(|c| c.available) else {
            return refused(StockError::NotFound(format!("sku {}", sale.sku)));
        };
        let (put, pool) = match inner.sales.get(&sale.id) {
            Some(r) if r.state.closed => {
                return refused(StockError::FailedPrecondition(format!(
                    "event {} has ended and been closed",
                    sale.id
                )))
            }
            Some(r) if r.state.sale.limit_counts_held != sale.limit_counts_held => {
                return refused(StockError::FailedPrecondition(format!(
                    "event {}: what its per-user limit counts (limit_counts_held) cannot change",
                    sale.id
                )))
            }
            Some(r) => (r.state.sale.pool, r.state.remaining),
            None => (0, 0),
        };
        let delta = sale.pool - put;
        if delta > available {
            return refused(StockError::FailedPrecondition(format!(
                "sku {} has {available} units available, the pool needs {delta} more",
                sale.sku
            )));
        }
        if -delta > pool {
            return refused(StockError::FailedPrecondition(format!(
                "event {}: only {pool} units are left in the pool, cannot take back {}",
                sale.id, -delta
            )));
        }
        let counts = inner.sku_mut(sale.sku);
        counts.available -= delta;
        counts.sales.insert(sale.id);
        let record = inner.sales.entry(sale.id).or_insert_with(|| SaleRecord {
            state: SaleState {
                sale: sale.clone(),
                remaining: 0,
                closed: false,
            },
            seq: 0,
            counted: HashMap::new(),
            requests: HashMap::new(),
        });
        let ended = std::mem::replace(&mut record.state.sale, sale.clone()).end_ms;
        record.state.remaining = pool + delta;
        let state = record.state.clone();
        inner.ends.remove(&(ended, sale.id));
        inner.ends.insert((sale.end_ms, sale.id));
        Ok(state)
    }

    async fn sale(&self, event_id: i64) -> StoreResult<Option<SaleState>> {
        Ok(self.inner().sales.get(&event_id).map(|r| r.state.clone()))
    }

    async fn sales_of(&self, sku: i64) -> StoreResult<Vec<i64>> {
        Ok(self
            .inner()
            .skus
            .get(&sku)
            .map(|c| c.sales.iter().copied().collect())
            .unwrap_or_default())
    }

    async fn sales_ending_from(&self, from_ms: i64) -> StoreResult<Vec<i64>> {
        let mut ids: Vec<i64> = self
            .inner()
            .ends
            .range((from_ms, i64::MIN)..)
            .map(|(_, id)| *id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }
}
