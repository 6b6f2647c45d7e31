//! The seed-contract lock on Redis: per-SKU steps journaled under the order id, so a lock of
//! SKUs on different cluster nodes never names two slots in one script (see
//! [`crate::stock::lock`] for the journal, the parts and why the answers are those of one Redis).
//!
//! - `lock`: read the journal; if it is absent or ABORTED, register the order in the directories
//!   and begin a fresh attempt (PENDING); take each SKU in ascending order; all taken: commit
//!   (PENDING → LOCKED). A short SKU: abort (PENDING → ABORTING), release every SKU of the map
//!   (a SKU never taken gets a tombstone that fences a take still on its way), ABORTED, and
//!   answer FAILED_PRECONDITION naming that SKU. The same map found PENDING (a crashed or
//!   concurrent twin) is resumed at its attempt: takes are idempotent per attempt. Found
//!   ABORTING, it is rolled back first. Found LOCKED or later, it is a duplicate. Another map
//!   found PENDING or ABORTING is answered UNAVAILABLE (retry): whether it is ALREADY_EXISTS
//!   depends on how that lock ends. When a repair rolls this caller's attempt back under it (a
//!   take fenced, or the commit's compare-and-set lost), the caller looks again, a few times.
//! - `unlock`: LOCKED → FINISHING | RELEASING (the decision), then each SKU's step, then FINISHED
//!   | RELEASED. A journal found FINISHING or RELEASING is driven forward by whoever finds it,
//!   and the opposite unlock then answers "already FINISHED". PENDING, ABORTING and ABORTED are
//!   no lock yet (or any more): NOT_FOUND, without touching a lock that may be under way.
//! - `repair_locks`: for each order in the open directory whose journal has not moved for
//!   `older_than`: PENDING is claimed (PENDING → ABORTING, a compare-and-set that a late commit
//!   loses) and rolled back; ABORTING is rolled back; FINISHING and RELEASING are rolled
//!   forward. Every step being idempotent, a repair racing the lock's own caller is harmless.
//!
//! [`crash_point`] is a test hook that kills the process between steps; it does nothing unless
//! the environment variable [`FAULT_CRASH_AT`] names the point.
//!
//! What it does not do: hold a Redis lock, or wait for anything: a saga step that finds another
//! caller's work under way either does it too (idempotently) or answers.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::AsyncCommands;

use super::{corrupt, unavailable, RedisStore};
use crate::stock::audit::LockSnapshot;
use crate::stock::call::{self, Call, Cas};
use crate::stock::lock::{
    self as saga, Journal, JournalSnapshot, JournalStatus, LockRecords, LockRepairs, Part,
    PartSnapshot, Take,
};
use crate::stock::{self, LockRequest, StockError};
use crate::warehouse::env::FAULT_CRASH_AT;
use crate::warehouse::store::{StoreError, StoreResult};

/// How many times one call looks again after a repair rolled its attempt back under it.
const ROUNDS: usize = 4;

/// Test hook: aborts the process (no unwinding, no graceful anything, like `kill -9`) when the
/// environment variable `FLASHGATE_FAULT_CRASH_AT` equals `point`. Read once; inert unless set.
/// The points: `lock.after_take` (after each SKU taken), `unlock.after_step` (after an unlock's
/// first SKU step), `transfer.after_move_out` (a transfer between shards, after its units left
/// the source and before they are credited).
pub(super) fn crash_point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(FAULT_CRASH_AT).ok());
    if at.as_deref() == Some(point) {
        tracing::error!(point, "{FAULT_CRASH_AT} is set: crashing here on purpose");
        std::process::abort();
    }
}

/// A journal with its age by the journal node's clock.
struct Read {
    journal: Journal,
    age_ms: i64,
}

fn refused(e: StockError) -> StoreError {
    StoreError::Refused(e)
}

fn sku_nums(j: &Journal) -> StoreResult<BTreeMap<i64, i64>> {
    j.sku_nums()
        .ok_or_else(|| corrupt(format!("lock skus {:?}", j.skus)))
}

impl RedisStore {
    /// `SeedLocks::lock`, see the module doc.
    pub(super) async fn lock_saga(&self, req: &LockRequest) -> StoreResult<()> {
        let oid = req.order_id;
        let skus = stock::encode_sku_nums(&req.sku_nums);
        for _ in 0..ROUNDS {
            let found = self.read_journal(oid).await?.map(|r| r.journal);
            let begin_at = match found {
                None => None,
                Some(j) if j.status == JournalStatus::Aborted => Some(j.seq),
                Some(j) if j.skus != skus => {
                    return Err(match j.status {
                        JournalStatus::Pending | JournalStatus::Aborting => {
                            StoreError::Unavailable(format!(
                                "order_id {oid}: a lock with other sku_nums is under way; retry"
                            ))
                        }
                        _ => refused(StockError::AlreadyExists(format!(
                            "order_id {oid} is already locked with other sku_nums"
                        ))),
                    });
                }
                // The same request, crashed or running in a twin: resume it (takes are
                // idempotent per attempt).
                Some(j) if j.status == JournalStatus::Pending => {
                    if self.take_and_commit(req, &j).await? {
                        return Ok(());
                    }
                    continue;
                }
                Some(j) if j.status == JournalStatus::Aborting => {
                    self.roll_back(oid, &j).await?;
                    continue;
                }
                // LOCKED, or unlocked (or being unlocked) since: a duplicate.
                Some(_) => return Ok(()),
            };
            if let Cas::Moved(j) = self.begin(req, &skus, begin_at.unwrap_or(0)).await? {
                if self.take_and_commit(req, &j).await? {
                    return Ok(());
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "order_id {oid}: the lock was interrupted by concurrent repairs; retry"
        )))
    }

    /// Takes every SKU for the attempt of the PENDING journal `pending` and commits (`true`),
    /// or rolls it back at the first short SKU. `false` when someone else rolled the attempt
    /// back or committed it first: the caller looks again.
    async fn take_and_commit(&self, req: &LockRequest, pending: &Journal) -> StoreResult<bool> {
        let oid = req.order_id;
        match self.take_all(oid, pending, &req.sku_nums).await? {
            Took::All => {}
            Took::Fenced => return Ok(false),
            Took::Short(why) => {
                self.abort(oid, pending).await?;
                return Err(refused(StockError::FailedPrecondition(why)));
            }
        }
        match self
            .move_journal(oid, pending, JournalStatus::Locked)
            .await?
        {
            Cas::Moved(locked) => {
                self.settle(oid, locked.seq).await?;
                Ok(true)
            }
            // A twin committed it (the next look answers OK), or a repair is rolling it back
            // (the next look finishes that and begins again).
            Cas::Stayed(_) => Ok(false),
        }
    }

    /// `SeedLocks::unlock`, see the module doc.
    pub(super) async fn unlock_saga(&self, oid: i64, finish: bool) -> StoreResult<()> {
        let (moving, done) = if finish {
            (JournalStatus::Finishing, JournalStatus::Finished)
        } else {
            (JournalStatus::Releasing, JournalStatus::Released)
        };
        let not_found = || refused(StockError::NotFound(format!("lock of order_id {oid}")));
        for _ in 0..ROUNDS {
            let Some(Read { journal: j, .. }) = self.read_journal(oid).await? else {
                return Err(not_found());
            };
            let settled = match j.status {
                JournalStatus::Pending | JournalStatus::Aborting | JournalStatus::Aborted => {
                    return Err(not_found())
                }
                JournalStatus::Locked => {
                    self.register(oid, j.seq + 1).await?;
                    match self.move_journal(oid, &j, moving).await? {
                        Cas::Moved(j) => self.roll_forward(oid, &j, true).await?,
                        Cas::Stayed(_) => continue,
                    }
                }
                JournalStatus::Finishing | JournalStatus::Releasing => {
                    self.roll_forward(oid, &j, false).await?
                }
                JournalStatus::Finished | JournalStatus::Released => j.status,
            };
            return if settled == done {
                Ok(())
            } else {
                Err(refused(StockError::FailedPrecondition(format!(
                    "order_id {oid} is already {}",
                    settled.as_str()
                ))))
            };
        }
        Err(StoreError::Unavailable(format!(
            "order_id {oid}: the unlock kept racing concurrent unlocks; retry"
        )))
    }

    /// `SeedLocks::repair_locks`, see the module doc.
    pub(super) async fn repair_saga(&self, older_than: Duration) -> StoreResult<LockRepairs> {
        let min_age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let mut repairs = LockRepairs::default();
        for shard in 0..saga::SHARDS {
            let mut conn = self.conn.clone();
            let open: Vec<i64> = conn
                .zrange(self.keys.locks_open(shard), 0, -1)
                .await
                .map_err(unavailable)?;
            for oid in open {
                match self.repair_one(oid, min_age).await {
                    Ok(Some(JournalStatus::Aborted)) => repairs.rolled_back.push(oid),
                    Ok(Some(_)) => repairs.rolled_forward.push(oid),
                    Ok(None) => {}
                    Err(StoreError::Corrupt(why)) => repairs.failed.push((oid, why)),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(repairs)
    }

    /// Repairs one lock if it is in flight and old enough; returns the state it settled in.
    async fn repair_one(&self, oid: i64, min_age: i64) -> StoreResult<Option<JournalStatus>> {
        // No journal: registered by a caller that stopped before its begin. The entry stays
        // (a begin may still be on its way) and costs one read per pass.
        let Some(Read { journal: j, age_ms }) = self.read_journal(oid).await? else {
            return Ok(None);
        };
        if !j.status.is_in_flight() {
            self.settle(oid, j.seq).await?;
            return Ok(None);
        }
        if age_ms < min_age {
            return Ok(None);
        }
        match j.status {
            JournalStatus::Pending => {
                match self.move_journal(oid, &j, JournalStatus::Aborting).await? {
                    Cas::Moved(j) => self.roll_back(oid, &j).await.map(Some),
                    // It moved on by itself (committed, or rolled back by someone else).
                    Cas::Stayed(_) => Ok(None),
                }
            }
            JournalStatus::Aborting => self.roll_back(oid, &j).await.map(Some),
            _ => self.roll_forward(oid, &j, false).await.map(Some),
        }
    }

    /// `SeedLocks::locks`: every lock the contract sees, from the full directory (not SCAN).
    pub(super) async fn list_locks(&self) -> StoreResult<Vec<LockSnapshot>> {
        let mut locks: Vec<LockSnapshot> = self
            .journals()
            .await?
            .into_iter()
            .filter_map(|j| {
                Some(LockSnapshot {
                    order_id: j.order_id,
                    status: j.status.visible()?,
                    sku_nums: j.sku_nums,
                })
            })
            .collect();
        locks.sort_by_key(|l| l.order_id);
        Ok(locks)
    }

    /// `SeedLocks::lock_records`: every journal, and every part on a SKU with stock.
    pub(super) async fn lock_records_of(&self) -> StoreResult<LockRecords> {
        let journals = self.journals().await?;
        let mut parts = Vec::new();
        for sku in self.all_skus().await? {
            let mut conn = self.conn.clone();
            let stored: BTreeMap<String, String> = conn
                .hgetall(self.keys.lock_parts(sku))
                .await
                .map_err(unavailable)?;
            for (order_id, part) in stored {
                parts.push(PartSnapshot {
                    order_id: call::num(&order_id)?,
                    sku,
                    part: Part::parse(&part)
                        .ok_or_else(|| corrupt(format!("lock part {part:?} on sku {sku}")))?,
                });
            }
        }
        Ok(LockRecords { journals, parts })
    }

    async fn journals(&self) -> StoreResult<Vec<JournalSnapshot>> {
        let mut journals = Vec::new();
        for shard in 0..saga::SHARDS {
            let mut conn = self.conn.clone();
            let mut ids: Vec<i64> = conn
                .smembers(self.keys.locks_all(shard))
                .await
                .map_err(unavailable)?;
            ids.sort_unstable();
            let reads = try_join_all(ids.iter().map(|&oid| self.read_journal(oid))).await?;
            for (oid, read) in ids.into_iter().zip(reads) {
                let Some(Read { journal: j, .. }) = read else {
                    continue;
                };
                journals.push(JournalSnapshot {
                    order_id: oid,
                    status: j.status,
                    attempt: j.attempt,
                    sku_nums: sku_nums(&j)?,
                });
            }
        }
        journals.sort_by_key(|j| j.order_id);
        Ok(journals)
    }

    /// Takes every SKU in ascending order for the attempt of `pending`.
    async fn take_all(
        &self,
        oid: i64,
        pending: &Journal,
        wanted: &BTreeMap<i64, i64>,
    ) -> StoreResult<Took> {
        for (&sku, &n) in wanted {
            let part = call::PartStep {
                sku,
                oid,
                attempt: pending.attempt,
                n,
            };
            let take = call::lock_take(&self.keys, part, self.order_log);
            let reply: Vec<String> = self.run_step(&take).await?;
            match saga::parse_take(&reply).map_err(|why| self.contradiction(oid, sku, why))? {
                Take::Taken | Take::Already => crash_point("lock.after_take"),
                Take::Fenced => return Ok(Took::Fenced),
                Take::Short { available } => {
                    return Ok(Took::Short(format!(
                        "sku {sku} has {available} units available, {n} asked"
                    )))
                }
            }
        }
        Ok(Took::All)
    }

    /// After a short SKU: claims the attempt for roll-back and rolls it back. If the claim
    /// loses, the attempt is someone else's now: committed by a twin (this call still failed,
    /// before that twin's success) or being rolled back by a repair.
    async fn abort(&self, oid: i64, pending: &Journal) -> StoreResult<()> {
        match self
            .move_journal(oid, pending, JournalStatus::Aborting)
            .await?
        {
            Cas::Moved(j) => self.roll_back(oid, &j).await.map(drop),
            Cas::Stayed(Some(j))
                if j.status == JournalStatus::Aborting && j.attempt == pending.attempt =>
            {
                self.roll_back(oid, &j).await.map(drop)
            }
            Cas::Stayed(_) => Ok(()),
        }
    }

    /// ABORTING: releases every SKU of the map at the attempt (idempotent), then ABORTED.
    async fn roll_back(&self, oid: i64, aborting: &Journal) -> StoreResult<JournalStatus> {
        let log = self.order_log.then_some(JournalStatus::Aborted);
        for (sku, n) in sku_nums(aborting)? {
            let part = call::PartStep {
                sku,
                oid,
                attempt: aborting.attempt,
                n,
            };
            self.part_step(call::lock_release(&self.keys, part, log), oid, sku)
                .await?;
        }
        self.conclude(oid, aborting, JournalStatus::Aborted).await
    }

    /// FINISHING or RELEASING: each SKU's step (idempotent), then FINISHED or RELEASED.
    async fn roll_forward(
        &self,
        oid: i64,
        moving: &Journal,
        unlocking: bool,
    ) -> StoreResult<JournalStatus> {
        let finishing = moving.status == JournalStatus::Finishing;
        for (i, (sku, n)) in sku_nums(moving)?.into_iter().enumerate() {
            let part = call::PartStep {
                sku,
                oid,
                attempt: moving.attempt,
                n,
            };
            let step = if finishing {
                call::lock_finish(&self.keys, part, self.order_log)
            } else {
                let log = self.order_log.then_some(JournalStatus::Released);
                call::lock_release(&self.keys, part, log)
            };
            self.part_step(step, oid, sku).await?;
            if unlocking && i == 0 {
                crash_point("unlock.after_step");
            }
        }
        self.conclude(oid, moving, moving.status.settles_as()).await
    }

    /// The last move of a roll-back or roll-forward, then out of the open directory.
    async fn conclude(
        &self,
        oid: i64,
        from: &Journal,
        to: JournalStatus,
    ) -> StoreResult<JournalStatus> {
        match self.move_journal(oid, from, to).await? {
            Cas::Moved(j) => self.settle(oid, j.seq).await?,
            // Someone concluded it first (and settles it, or a repair will), and maybe a new
            // attempt began after that.
            Cas::Stayed(Some(j))
                if j.attempt > from.attempt || (j.attempt == from.attempt && j.status == to) => {}
            Cas::Stayed(j) => {
                return Err(corrupt(format!(
                    "lock of order_id {oid}: {} at attempt {} became {j:?} while concluding",
                    from.status.as_str(),
                    from.attempt
                )))
            }
        }
        Ok(to)
    }

    /// One part step (`lock_release.lua` or `lock_finish.lua`) of lock `oid` on `sku`.
    async fn part_step(&self, step: Call, oid: i64, sku: i64) -> StoreResult<()> {
        let reply: Vec<String> = self.run_step(&step).await?;
        saga::parse_step(&reply).map_err(|why| self.contradiction(oid, sku, why))
    }

    fn contradiction(&self, oid: i64, sku: i64, why: String) -> StoreError {
        corrupt(format!("lock of order_id {oid} on sku {sku}: {why}"))
    }

    async fn read_journal(&self, oid: i64) -> StoreResult<Option<Read>> {
        let reply: Vec<String> = self.run(&call::lock_read(&self.keys, oid)).await?;
        Ok(call::parse_lock_read(&reply)?.map(|(journal, age_ms)| Read { journal, age_ms }))
    }

    /// Registers, then opens a fresh attempt if the journal is still at `seq`.
    async fn begin(&self, req: &LockRequest, skus: &str, seq: i64) -> StoreResult<Cas> {
        self.register(req.order_id, seq + 1).await?;
        self.cas(call::lock_begin(&self.keys, req, skus, seq)).await
    }

    async fn move_journal(&self, oid: i64, from: &Journal, to: JournalStatus) -> StoreResult<Cas> {
        self.cas(call::lock_move(&self.keys, oid, from, to)).await
    }

    async fn cas(&self, step: Call) -> StoreResult<Cas> {
        let reply: Vec<String> = self.run_step(&step).await?;
        Ok(call::parse_cas(&reply)?)
    }

    /// Enters the order in the directories before a move into a state repair must find.
    async fn register(&self, oid: i64, next_seq: i64) -> StoreResult<()> {
        self.run_step::<Vec<String>>(&call::lock_register(&self.keys, oid, next_seq))
            .await
            .map(drop)
    }

    /// Drops the order from the open directory, unless a later move registered it again.
    async fn settle(&self, oid: i64, seq: i64) -> StoreResult<()> {
        self.run::<Vec<String>>(&call::lock_settle(&self.keys, oid, seq))
            .await
            .map(drop)
    }
}

/// What taking every SKU came to.
enum Took {
    All,
    /// This attempt was rolled back (or concluded) by someone else: look again.
    Fenced,
    /// The refusal naming the first short SKU.
    Short(String),
}
