//! Units between two shards: a journaled transfer (`move_out.lua` then `move_in.lua`), the
//! journal's reads (what is still on its way, counted once), and the two plans that use it
//! here: spreading a split sale's pool ([`crate::stock::split::spread`]) and sending a sub-pool
//! shard's `available` home.
//!
//! What it does not do: decide how many units to move (the plans do) or hold anything across
//! a crash: a transfer stopped half-way is completed by whoever finds its journal entry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::try_join_all;
use redis::AsyncCommands;

use super::{corrupt, unavailable, RedisStore};
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
        let reply: Vec<String> = self.run(&call::move_out(k, &id, from, to, want)).await?;
        let moved = call::parse_move_out(&reply)?;
        if moved > 0 {
            self.land(from.shard, &id, &Move::between(k, from, to, moved))
                .await?;
        }
        Ok(moved)
    }

    /// Credits a journaled transfer at its destination (once) and forgets the journal entry.
    async fn land(&self, from: Shard, id: &str, landing: &Move) -> StoreResult<()> {
        let reply: Vec<String> = self.run(&call::move_in(id, landing)).await?;
        call::parse_move_in(&reply)?;
        let mut conn = self.conn.clone();
        conn.hdel::<_, _, ()>(self.keys.moves(from), id)
            .await
            .map_err(unavailable)
    }

    /// The transfers journaled in a shard and not yet forgotten.
    async fn moves_of(&self, shard: Shard) -> StoreResult<Vec<(String, Move)>> {
        let mut conn = self.conn.clone();
        let entries: BTreeMap<String, String> = conn
            .hgetall(self.keys.moves(shard))
            .await
            .map_err(unavailable)?;
        entries
            .into_iter()
            .map(|(id, json)| {
                let landing =
                    Move::parse(&json).ok_or_else(|| corrupt(format!("move {id}: {json}")))?;
                Ok((id, landing))
            })
            .collect()
    }

    /// The transfers journaled out of a shard and not yet credited at their destination: the
    /// units in them are counted where they are going (once: an entry already credited there
    /// is only waiting to be forgotten).
    pub(super) async fn unlanded(&self, shard: Shard) -> StoreResult<Vec<Move>> {
        let mut unlanded = Vec::new();
        for (id, landing) in self.moves_of(shard).await? {
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

    /// Completes the transfers a stopped process left half-way in `shard`.
    pub(super) async fn land_stranded(&self, shard: Shard) -> StoreResult<()> {
        for (id, landing) in self.moves_of(shard).await? {
            self.land(shard, &id, &landing).await?;
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
