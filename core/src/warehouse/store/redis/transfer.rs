//! Units between two shards: a journaled transfer (`move_out.lua` then `move_in.lua`), the
//! journal's reads (what is still on its way, counted once), and the two plans that use it
//! here: spreading a split sale's pool ([`crate::stock::split::spread`]) and sending a sub-pool
//! shard's `available` home.
//!
//! A transfer is three steps: `move_out.lua` (source master), `move_in.lua` (destination
//! master), `move_forget.lua` (source: the entry becomes a tombstone, so a cluster client's retry
//! of `move_out` finds it done). The first two are waited for on a replica before the next step
//! ([`RedisStore::run_step`]); the last needs no wait (lost in a failover, the entry is found
//! again, and landing it again is a DUPLICATE at the destination).
//!
//! What it does not do: decide how many units to move (the plans do) or hold anything across
//! a crash: a transfer stopped half-way is completed by the sweeper once its journal entry is
//! older than the lease ([`call::MOVE_LEASE_MS`]), so a repair never races a live mover.

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::try_join_all;
use redis::AsyncCommands;

use super::{unavailable, RedisStore};
use crate::stock::call::{self, End, Move};
use crate::stock::{split, Shard};
use crate::warehouse::store::StoreResult;

/// Transfer ids unique across processes and machines: `HOST-PID-STARTNS-N`.
pub(super) struct TransferIds {
    token: String,
    next: AtomicU64,
}

impl TransferIds {
    pub(super) fn new() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            token: format!("{host}-{}-{started}", std::process::id()),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{}",
            self.token,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl RedisStore {
    /// Moves up to `want` units from `from` to `to`, journaled so a crash half-way is completed
    /// by whoever finds the journal entry (see `move_out.lua`). Returns the units moved.
    pub(super) async fn transfer(&self, from: &End, to: &End, want: i64) -> StoreResult<i64> {
        let id = self.transfer_ids.next();
        let k = &self.keys;
        let reply: Vec<String> = self
            .run_step(&call::move_out(k, &id, from, to, want))
            .await?;
        let moved = call::parse_move_out(&reply)?;
        if moved > 0 {
            super::lock::crash_point("transfer.after_move_out");
            self.land(from.shard, &id, &Move::between(k, from, to, moved))
                .await?;
        }
        Ok(moved)
    }

    /// Credits a journaled transfer at its destination (once), then replaces its journal entry
    /// with a tombstone.
    async fn land(&self, from: Shard, id: &str, landing: &Move) -> StoreResult<()> {
        let reply: Vec<String> = self.run_step(&call::move_in(id, landing)).await?;
        call::parse_move_in(&reply)?;
        let reply: Vec<String> = self
            .run(&call::move_forget(&self.keys, from, id, landing.n))
            .await?;
        call::parse_move_forget(&reply)?;
        Ok(())
    }

    /// The transfers journaled in a shard and not yet forgotten, with the shard node's clock.
    async fn moves_of(&self, shard: Shard) -> StoreResult<(i64, Vec<(String, Move)>)> {
        let reply: Vec<String> = self.run(&call::move_read(&self.keys, shard)).await?;
        Ok(call::parse_move_read(&reply)?)
    }

    /// The transfers journaled out of a shard and not yet credited at their destination: the
    /// units in them are counted where they are going (once: an entry already credited there
    /// is only waiting to be forgotten).
    pub(super) async fn unlanded(&self, shard: Shard) -> StoreResult<Vec<Move>> {
        let mut unlanded = Vec::new();
        for (id, landing) in self.moves_of(shard).await?.1 {
            let mut conn = self.conn.clone();
            let landed: bool = conn
                .sismember(&landing.received, &id)
                .await
                .map_err(unavailable)?;
            if !landed {
                unlanded.push(landing);
            }
        }
        Ok(unlanded)
    }

    /// Pool units of a split sale journaled out of one sub-pool and not yet credited to
    /// another.
    pub(super) async fn pool_moves_in_flight(
        &self,
        sku: i64,
        event: i64,
        subpools: u32,
    ) -> StoreResult<i64> {
        let pools: Vec<String> = (0..subpools)
            .map(|sub| self.keys.event(Shard::new(sku, sub), event))
            .collect();
        let journals =
            try_join_all((0..subpools).map(|sub| self.unlanded(Shard::new(sku, sub)))).await?;
        Ok(journals
            .into_iter()
            .flatten()
            .filter(|landing| pools.contains(&landing.to))
            .map(|landing| landing.n)
            .sum())
    }

    /// Completes the transfers a stopped process left half-way in `shard`: those journaled at
    /// least the lease ago by the shard node's clock (a younger one may be its mover's, still
    /// under way).
    pub(super) async fn land_stranded(&self, shard: Shard) -> StoreResult<()> {
        let (now_ms, entries) = self.moves_of(shard).await?;
        for (id, landing) in entries {
            if call::is_stranded(landing.at, now_ms, self.move_lease_ms) {
                self.land(shard, &id, &landing).await?;
            }
        }
        Ok(())
    }

    /// Spreads a split sale's units evenly over its sub-pools (the SKU's own shard gives).
    pub(super) async fn spread(&self, sku: i64, event: i64, subpools: u32) -> StoreResult<()> {
        let k = &self.keys;
        let mut pools = Vec::new();
        for sub in 0..subpools {
            let mut conn = self.conn.clone();
            let pool: Option<i64> = conn
                .hget(k.event(Shard::new(sku, sub), event), "pool")
                .await
                .map_err(unavailable)?;
            pools.push(pool.unwrap_or(0));
        }
        let main = End::pool(k, Shard::from(sku), event);
        for (sub, need) in split::spread(&pools) {
            let to = End::pool(k, Shard::new(sku, sub), event);
            self.transfer(&main, &to, need).await?;
        }
        Ok(())
    }

    /// Gathers every sub-pool's units of a split sale back into the SKU's own shard.
    pub(super) async fn gather(&self, sku: i64, event: i64, subpools: u32) -> StoreResult<()> {
        let k = &self.keys;
        let main = End::pool(k, Shard::from(sku), event);
        for sub in 1..subpools {
            let from = End::pool(k, Shard::new(sku, sub), event);
            self.transfer(&from, &main, i64::MAX).await?;
        }
        Ok(())
    }

    /// Moves a sub-pool shard's `available` units to the SKU's own shard.
    pub(super) async fn send_home(&self, shard: Shard) -> StoreResult<i64> {
        let k = &self.keys;
        let home = End::available(k, Shard::from(shard.sku));
        self.transfer(&End::available(k, shard), &home, i64::MAX)
            .await
    }
}
