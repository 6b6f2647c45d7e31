//! The order side of the queue (队列削峰) and the sweeper.
//!
//! The order worker reads wins from the order streams through a consumer group, turns each read
//! batch into orders awaiting payment (exactly once: the store changes only a QUEUED order) and
//! acknowledges them in the same step or only afterwards, so a worker that dies between reading and
//! acknowledging loses nothing: another worker reclaims the entry once it has been idle long
//! enough, and creating it again is a no-op. It goes at its own pace; buyers never wait for it.
//!
//! The sweeper expires orders unpaid past their deadline, closes sales that have ended, moves
//! the lines of waiting rooms (lapses, admissions: the line moves without polls), and
//! repairs seed-contract locks a crashed warehouse left between their per-SKU steps (any
//! warehouse's sweeper repairs any lock, once it has stood still for `repair_after`).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::metrics::Metrics;
use super::service::now_ms;
use super::store::{Store, StoreResult};
use crate::stock::Win;

/// How the order worker and the sweeper pace themselves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// This process's consumer name in the group (unique per process).
    pub consumer: String,
    /// Wins read per batch.
    pub batch: usize,
    /// How long one read waits for new wins.
    pub block: Duration,
    /// How long a delivered, unacknowledged win must idle before another consumer takes it.
    pub reclaim_idle: Duration,
    /// How often the sweeper runs.
    pub sweep_every: Duration,
    /// How long a seed-contract lock must stand still between steps before the sweeper repairs
    /// it (a lease: its own caller is presumed alive until then).
    pub repair_after: Duration,
}

impl WorkerOptions {
    /// Defaults for a consumer named `consumer`.
    pub fn new(consumer: impl Into<String>) -> Self {
        Self {
            consumer: consumer.into(),
            batch: 128,
            block: Duration::from_millis(500),
            reclaim_idle: Duration::from_secs(10),
            sweep_every: Duration::from_millis(500),
            repair_after: Duration::from_secs(5),
        }
    }
}

/// Creates the orders of `wins` and acknowledges them ([`OrderQueue::settle_wins`]: on Redis one
/// script call per shard for the whole batch, acknowledging in the same step). Returns how many
/// this call created. A win whose creation fails stays unacknowledged, so it is retried by a
/// reclaim.
///
/// [`OrderQueue::settle_wins`]: super::store::OrderQueue::settle_wins
pub async fn process_wins<S: Store>(
    store: &S,
    wins: &[Win],
    metrics: &Metrics,
) -> StoreResult<usize> {
    if wins.is_empty() {
        return Ok(0);
    }
    let settled = store.settle_wins(wins, now_ms()).await?;
    let created = settled.iter().filter(|c| **c).count();
    metrics
        .worker
        .with_label_values(&["created"])
        .inc_by(created as u64);
    metrics
        .worker
        .with_label_values(&["duplicate"])
        .inc_by((settled.len() - created) as u64);
    Ok(created)
}

/// Runs the order worker until `shutdown` turns true.
///
/// Reclaiming and reading take turns, never race: a blocking read dropped half-way would leave
/// Redis delivering the next wins to a read nobody listens to, stranding them until a reclaim.
/// So each read blocks at most until the next reclaim is due.
pub async fn run_order_worker<S: Store>(
    store: S,
    options: WorkerOptions,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let reclaim_every = (options.reclaim_idle / 2).max(Duration::from_millis(50));
    let mut next_reclaim = Instant::now();
    let mut backoff = Duration::from_millis(50);
    while !*shutdown.borrow() {
        let step = async {
            let now = Instant::now();
            if now >= next_reclaim {
                next_reclaim = now + reclaim_every;
                let wins = store
                    .reclaim_wins(&options.consumer, options.reclaim_idle, options.batch)
                    .await?;
                if !wins.is_empty() {
                    metrics
                        .worker
                        .with_label_values(&["reclaimed"])
                        .inc_by(wins.len() as u64);
                    tracing::info!(
                        count = wins.len(),
                        "reclaimed wins left by another consumer"
                    );
                }
                process_wins(&store, &wins, &metrics).await
            } else {
                // Never zero: to Redis, BLOCK 0 waits forever.
                let block = options
                    .block
                    .min(next_reclaim - now)
                    .max(Duration::from_millis(1));
                let wins = store
                    .read_wins(&options.consumer, options.batch, block)
                    .await?;
                process_wins(&store, &wins, &metrics).await
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            result = step => match result {
                Ok(_) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(error = %e, "order worker step failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            },
        }
    }
}

/// Runs the sweeper every `options.sweep_every` until `shutdown` turns true.
pub async fn run_sweeper<S: Store>(
    store: S,
    options: WorkerOptions,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(options.sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        match store.expire_due(now, 1000).await {
            Ok(expired) if !expired.is_empty() => {
                metrics
                    .worker
                    .with_label_values(&["expired"])
                    .inc_by(expired.len() as u64);
                tracing::info!(count = expired.len(), "expired unpaid orders");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeper could not expire orders"),
        }
        match store.close_ended(now).await {
            Ok(closed) if !closed.is_empty() => {
                metrics
                    .worker
                    .with_label_values(&["closed"])
                    .inc_by(closed.len() as u64);
                tracing::info!(events = ?closed, "closed ended sales; their pools returned to available");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeper could not close sales"),
        }
        // The lines of waiting rooms move without polls (GetQueue moves them too).
        match store.open_rooms(now).await {
            Ok(rooms) => {
                for event in rooms {
                    match store.move_room(event, now).await {
                        Ok(moved) => metrics.room_moved(&moved),
                        Err(e) => {
                            tracing::warn!(event, error = %e, "sweeper could not move a line")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeper could not list waiting rooms"),
        }
        match store.repair_locks(options.repair_after).await {
            Ok(repairs) => {
                let (back, forward) = (repairs.rolled_back.len(), repairs.rolled_forward.len());
                if back + forward > 0 {
                    metrics
                        .worker
                        .with_label_values(&["lock_repaired"])
                        .inc_by((back + forward) as u64);
                    tracing::warn!(
                        rolled_back = ?repairs.rolled_back,
                        rolled_forward = ?repairs.rolled_forward,
                        "repaired seed-contract locks left between steps (a warehouse crashed)"
                    );
                }
                for (order_id, why) in &repairs.failed {
                    tracing::error!(order_id, why, "a seed-contract lock cannot be repaired");
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeper could not repair locks"),
        }
    }
}
