//! The memory store's order queue: wins wait in arrival order, are delivered up to a count per
//! SKU (as one `XREADGROUP` over several streams does), stay pending until acknowledged and can
//! be reclaimed by another consumer after an idle time (`XAUTOCLAIM`); the order a win announces
//! is created once (`create_order.lua`).
//!
//! What it does not do: decide what to do with a win (the order worker does).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{refused, Delivery, MemoryStore};
use crate::stock::{OrderStatus, StockError, Win};
use crate::warehouse::store::{OrderQueue, StoreResult};

impl OrderQueue for MemoryStore {
    async fn read_wins(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> StoreResult<Vec<Win>> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            let notified = self.new_win.notified();
            {
                let mut inner = self.inner();
                if !inner.queue.is_empty() {
                    // Up to `count` per SKU, in arrival order, as XREADGROUP over streams does.
                    let mut per_sku: BTreeMap<i64, usize> = BTreeMap::new();
                    let mut wins = Vec::new();
                    // A SKU none of whose sales is live has its stream no longer read (what
                    // is left there is the win of an order cancelled before it was created).
                    let read: std::collections::BTreeSet<i64> = inner
                        .skus
                        .iter()
                        .filter(|(_, c)| c.has_live_sale(&inner.retired))
                        .map(|(sku, _)| *sku)
                        .collect();
                    inner.queue.retain(|win| {
                        if !read.contains(&win.sku_id) {
                            return true;
                        }
                        let taken = per_sku.entry(win.sku_id).or_default();
                        if *taken < count {
                            *taken += 1;
                            wins.push(win.clone());
                            false
                        } else {
                            true
                        }
                    });
                    for win in &wins {
                        let entry: u64 = win.entry_id.parse().expect("numbered by buy");
                        inner.pending.insert(
                            entry,
                            Delivery {
                                consumer: consumer.to_owned(),
                                since: Instant::now(),
                                win: win.clone(),
                            },
                        );
                    }
                    return Ok(wins);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn reclaim_wins(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> StoreResult<Vec<Win>> {
        let mut inner = self.inner();
        let now = Instant::now();
        let mut wins = Vec::new();
        let inner = &mut *inner;
        for delivery in inner.pending.values_mut() {
            if wins.len() == count {
                break;
            }
            let read = inner
                .skus
                .get(&delivery.win.sku_id)
                .is_some_and(|c| c.has_live_sale(&inner.retired));
            if read && now.duration_since(delivery.since) >= min_idle {
                delivery.consumer = consumer.to_owned();
                delivery.since = now;
                wins.push(delivery.win.clone());
            }
        }
        Ok(wins)
    }

    async fn create_order(&self, win: &Win, now_ms: i64) -> StoreResult<bool> {
        let mut inner = self.inner();
        let Some(order) = inner.orders.get(&win.order_no) else {
            return refused(StockError::NotFound(format!("order {}", win.order_no)));
        };
        if order.status != OrderStatus::Queued {
            return Ok(false);
        }
        let window = inner.sales[&order.event_id].state.sale.pay_window_ms;
        let order = inner
            .orders
            .get_mut(&win.order_no)
            .expect("looked up above");
        order.status = OrderStatus::PendingPayment;
        order.deadline_ms = now_ms + window;
        let key = (order.deadline_ms, win.order_no.clone());
        inner.deadlines.insert(key);
        Ok(true)
    }

    async fn ack_win(&self, win: &Win) -> StoreResult<()> {
        if let Ok(entry) = win.entry_id.parse::<u64>() {
            self.inner().pending.remove(&entry);
        }
        Ok(())
    }
}
