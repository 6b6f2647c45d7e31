//! The memory store's seed-contract locks: a lock takes every SKU of the order or none, an
//! unlock commits or releases it, each in one critical section, so none is ever left between
//! steps and there is nothing to repair.
//!
//! What it does not do: journal per-SKU steps (the Redis store's saga needs them; see
//! [`crate::stock::lock`]).

use std::time::Duration;

use super::{refused, LockRecord, MemoryStore};
use crate::stock::audit::LockSnapshot;
use crate::stock::lock::LockRepairs;
use crate::stock::{LockRequest, LockStatus, StockError};
use crate::warehouse::store::{SeedLocks, StoreResult};

impl SeedLocks for MemoryStore {
    async fn lock(&self, req: &LockRequest) -> StoreResult<()> {
        let mut inner = self.inner();
        if let Some(existing) = inner.locks.get(&req.order_id) {
            return if existing.sku_nums == req.sku_nums {
                Ok(())
            } else {
                refused(StockError::AlreadyExists(format!(
                    "order_id {} is already locked with other sku_nums",
                    req.order_id
                )))
            };
        }
        for (sku, num) in &req.sku_nums {
            let available = inner.skus.get(sku).map_or(0, |c| c.available);
            if available < *num {
                return refused(StockError::FailedPrecondition(format!(
                    "sku {sku} has {available} units available, {num} asked"
                )));
            }
        }
        for (sku, num) in &req.sku_nums {
            let counts = inner.sku_mut(*sku);
            counts.available -= num;
            counts.locked += num;
        }
        inner.locks.insert(
            req.order_id,
            LockRecord {
                sku_nums: req.sku_nums.clone(),
                status: LockStatus::Locked,
            },
        );
        Ok(())
    }

    async fn unlock(&self, order_id: i64, finish: bool) -> StoreResult<()> {
        let mut inner = self.inner();
        let Some(lock) = inner.locks.get_mut(&order_id) else {
            return refused(StockError::NotFound(format!("lock of order_id {order_id}")));
        };
        let target = if finish {
            LockStatus::Finished
        } else {
            LockStatus::Released
        };
        if lock.status == target {
            return Ok(());
        }
        if lock.status != LockStatus::Locked {
            return refused(StockError::FailedPrecondition(format!(
                "order_id {order_id} is already {}",
                lock.status.as_str()
            )));
        }
        lock.status = target;
        let sku_nums = lock.sku_nums.clone();
        for (sku, num) in sku_nums {
            let counts = inner.sku_mut(sku);
            counts.locked -= num;
            if finish {
                counts.sold += num;
            } else {
                counts.available += num;
            }
        }
        Ok(())
    }

    async fn locks(&self) -> StoreResult<Vec<LockSnapshot>> {
        let inner = self.inner();
        let mut locks: Vec<LockSnapshot> = inner
            .locks
            .iter()
            .map(|(id, l)| LockSnapshot {
                order_id: *id,
                sku_nums: l.sku_nums.clone(),
                status: l.status,
            })
            .collect();
        locks.sort_by_key(|l| l.order_id);
        Ok(locks)
    }

    async fn repair_locks(&self, _older_than: Duration) -> StoreResult<LockRepairs> {
        // A lock and an unlock are each one critical section: none is ever left half-way.
        Ok(LockRepairs::default())
    }
}
