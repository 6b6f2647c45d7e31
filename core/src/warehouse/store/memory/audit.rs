//! The memory store's snapshot for the audit: one SKU's counters, sales and orders, read in one
//! critical section, in the shape the Redis store's chunked reads give (one pool per sale,
//! whatever its split; retired sales left out, their orders kept).
//!
//! What it does not do: judge what it reads ([`crate::stock::audit`] does).

use super::MemoryStore;
use crate::stock::audit::{Counters, SaleSnapshot, SkuSnapshot};
use crate::stock::{Sale, SaleState};
use crate::warehouse::store::{Audit, StoreResult};

impl Audit for MemoryStore {
    async fn snapshot(&self, sku: i64) -> StoreResult<Option<SkuSnapshot>> {
        let inner = self.inner();
        let Some(counts) = inner.skus.get(&sku) else {
            return Ok(None);
        };
        let sales = counts
            .sales
            .iter()
            .map(|id| {
                let r = &inner.sales[id];
                SaleSnapshot {
                    // One pool here whatever the split: its orders are numbered 1, 2, …
                    state: SaleState {
                        sale: Sale {
                            subpools: 1,
                            ..r.state.sale.clone()
                        },
                        ..r.state.clone()
                    },
                    sub: 0,
                    seq: r.seq,
                    counted: r.counted.iter().map(|(u, n)| (u.clone(), *n)).collect(),
                    requests: r
                        .requests
                        .iter()
                        .filter_map(|(k, (_, won))| Some((k.clone(), won.clone()?)))
                        .collect(),
                }
            })
            .collect();
        Ok(Some(SkuSnapshot {
            sku,
            counters: Counters {
                total: counts.total,
                available: counts.available,
                locked: counts.locked,
                sold: counts.sold,
                sold_purged: counts.sold_purged,
            },
            sales,
            orders: inner
                .orders
                .values()
                .filter(|o| o.sku_id == sku)
                .cloned()
                .collect(),
            moving: 0,
        }))
    }
}
