//! The seed-contract lock (`Warehouse.SKuStockLock` / `SkuStockUnlock`) as a saga of per-SKU
//! steps, so that it works on a Redis Cluster, where one script may only touch one hash slot.
//!
//! A lock names several SKUs, each in its own slot (`{sku:ID}`), and its record lives in yet
//! another (`:lock:ORDER_ID`). So instead of one script, a lock is:
//!
//! - a **journal** hash under the order id ([`Keys::lock`](super::Keys::lock)): the SKU map, the order's fields, a
//!   `status` ([`JournalStatus`]), an `attempt` (the fencing number of the current try), a `seq`
//!   (bumped by every transition, so a seq names one state of one attempt) and `since` (the
//!   journal node's clock at the last transition). Every transition is a compare-and-set on
//!   `seq` (`lock_begin.lua`, `lock_move.lua`), so of two callers racing for one state exactly
//!   one moves it;
//! - one **part** per SKU, in the SKU's slot ([`Keys::lock_parts`](super::Keys::lock_parts): order id → `attempt:num:STATE`, see
//!   [`Part`]), written by the same script that moves the SKU's counters (`lock_take.lua`,
//!   `lock_release.lua`, `lock_finish.lua`). A step is idempotent per (order, attempt), and a
//!   part at a newer attempt, or a RELEASED part at this one, fences it: a step that arrives
//!   after its attempt was rolled back changes nothing;
//! - two **directories** per shard of order ids ([`Keys::locks_open`](super::Keys::locks_open), [`Keys::locks_all`](super::Keys::locks_all); 16 shards, each its
//!   own slot), because `SCAN` sees one cluster node: `open` holds the locks a repair may have to
//!   finish, `all` every lock ever begun (for the audit's listing).
//!
//! The journal's states, and who moves them:
//!
//! ```text
//!  (none) ─begin─▶ PENDING ──all SKUs taken──▶ LOCKED ──unlock──▶ FINISHING ──▶ FINISHED
//!  ABORTED ─begin─▶   │                           └────unlock──▶ RELEASING ──▶ RELEASED
//!                     └─short SKU / repair─▶ ABORTING ──every SKU released──▶ ABORTED
//! ```
//!
//! A lock commits at PENDING → LOCKED and an unlock at LOCKED → FINISHING | RELEASING: before
//! those moves the operation has not happened (a repair rolls it back), after them it has (a
//! repair rolls it forward). So every answer is one a single Redis could have given: all SKUs or
//! none, the same order id and map again is a duplicate, another map is ALREADY_EXISTS, a failed
//! lock leaves nothing (its journal is ABORTED, which the listing and the API treat as absent,
//! and a later begin opens attempt + 1). What a single Redis never shows, and this may, briefly:
//! while a lock that will fail runs, another caller can see the units of its first SKUs locked
//! (and be refused for them). Two more answers differ in kind, not in outcome: a lock of the
//! same order id with another map while one is still taking its SKUs is UNAVAILABLE (retry),
//! since whether it is ALREADY_EXISTS depends on how that one ends; an unlock of a lock still
//! taking its SKUs is NOT_FOUND (it has not happened yet) and leaves it alone.
//!
//! Why a crash or a race never leaks or double-takes a unit:
//!
//! - a crash leaves the journal in-flight (PENDING, ABORTING, FINISHING, RELEASING) and the
//!   order in the `open` directory; a repair rolls PENDING and ABORTING back and FINISHING and
//!   RELEASING forward, every step again being a no-op where it was done;
//! - a repair that rolls back a lock whose own caller is alive (slow, or the lease too short)
//!   first wins the compare-and-set PENDING → ABORTING, so the caller's commit loses; its
//!   releases leave every SKU RELEASED at that attempt, so the caller's takes still on the wire
//!   are fenced; the caller then sees ABORTING/ABORTED and begins a new attempt;
//! - a late step of an old attempt meets a part of a newer attempt and changes nothing, and a
//!   new attempt only begins from ABORTED, when every part of the old one is RELEASED;
//! - the `open` directory is a sorted set scored with the seq the journal will have after the
//!   move that needs repair's attention, written *before* that move; an entry is removed only by
//!   someone who saw the journal settled at a seq at least that score. So a removal based on an
//!   old read cannot drop the entry of a move made since. (An entry whose move never happened,
//!   because its caller died in between, stays until the order moves again, costing one read
//!   per repair.)
//!
//! Journals and parts (including RELEASED tombstones) are kept, like the one-script lock's
//! records were: the attempt counter and the tombstones are what fence late steps. A record
//! written by that former lock (no attempt, no parts) is attempt 0, which the unlock steps
//! accept without a part; it enters the directories, and so the audit, when it is unlocked.
//!
//! Everything here is pure: the encoding of parts and journals and the parsing of the journal's
//! and the steps' replies (the keys are [`super::Keys`]'s, the calls [`super::call`]'s). The
//! steps run in the warehouse's Redis store; the audit ([`super::audit`]) checks parts against
//! journals.

use std::collections::BTreeMap;

use super::audit::LockSnapshot;
use super::LockStatus;

/// Shards of the lock directories (each its own cluster slot).
pub const SHARDS: i64 = 16;

/// The directory shard of an order id.
pub fn shard(order_id: i64) -> i64 {
    order_id.rem_euclid(SHARDS)
}

/// Where a lock's journal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JournalStatus {
    /// An attempt is taking its SKUs.
    Pending,
    /// Every SKU taken: the lock holds its units.
    Locked,
    /// The attempt failed or was interrupted; its SKUs are being released.
    Aborting,
    /// Rolled back: nothing held. To the API, as if it had never been.
    Aborted,
    /// Being committed, SKU by SKU.
    Finishing,
    /// Committed: units sold.
    Finished,
    /// Being released, SKU by SKU.
    Releasing,
    /// Released: units back to available.
    Released,
}

stored_names!(JournalStatus {
    Pending => "PENDING",
    Locked => "LOCKED",
    Aborting => "ABORTING",
    Aborted => "ABORTED",
    Finishing => "FINISHING",
    Finished => "FINISHED",
    Releasing => "RELEASING",
    Released => "RELEASED",
});

impl JournalStatus {
    /// Whether the saga is between steps here (a crash leaves it so until a repair).
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Aborting | Self::Finishing | Self::Releasing
        )
    }

    /// What the seed contract sees: PENDING, ABORTING and ABORTED are no lock (yet, or any
    /// more); an unlock under way has already happened.
    pub fn visible(self) -> Option<LockStatus> {
        match self {
            Self::Pending | Self::Aborting | Self::Aborted => None,
            Self::Locked => Some(LockStatus::Locked),
            Self::Finishing | Self::Finished => Some(LockStatus::Finished),
            Self::Releasing | Self::Released => Some(LockStatus::Released),
        }
    }

    /// The settled state an unlock under way ends in.
    pub fn settles_as(self) -> Self {
        match self {
            Self::Pending | Self::Aborting => Self::Aborted,
            Self::Finishing => Self::Finished,
            Self::Releasing => Self::Released,
            other => other,
        }
    }
}

/// Where one SKU's part of a lock is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PartState {
    /// The units are held (counted in the SKU's `locked`).
    Locked,
    /// Given back, or a tombstone fencing a late take of this attempt: holds nothing.
    Released,
    /// Committed (counted in the SKU's `sold`).
    Finished,
}

stored_names!(PartState {
    Locked => "LOCKED",
    Released => "RELEASED",
    Finished => "FINISHED",
});

/// One SKU's part of one lock, stored as `attempt:num:STATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// The attempt that wrote it.
    pub attempt: i64,
    /// Units.
    pub num: i64,
    /// Where it is.
    pub state: PartState,
}

impl Part {
    /// The stored form.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.attempt, self.num, self.state.as_str())
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.splitn(3, ':');
        let attempt = it.next()?.parse().ok().filter(|a: &i64| *a >= 0)?;
        let num = it.next()?.parse().ok().filter(|n: &i64| *n >= 0)?;
        let state = PartState::parse(it.next()?)?;
        Some(Self {
            attempt,
            num,
            state,
        })
    }

    /// Whether it holds units (locked or sold).
    pub fn is_live(&self) -> bool {
        self.state != PartState::Released
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at attempt {}, {} units",
            self.state.as_str(),
            self.attempt,
            self.num
        )
    }
}

/// A journal as the scripts answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// Where it is.
    pub status: JournalStatus,
    /// The current attempt (0: a record of the former one-script lock, which kept no parts).
    pub attempt: i64,
    /// Transitions so far.
    pub seq: i64,
    /// The SKU map, canonical (see [`super::encode_sku_nums`]).
    pub skus: String,
}

impl Journal {
    /// The SKU map.
    pub fn sku_nums(&self) -> Option<BTreeMap<i64, i64>> {
        parse_sku_nums(&self.skus)
    }
}

/// Parses the journal fields `{status, attempt, seq, skus}` the journal scripts answer (after
/// their outcome); `Ok(None)` when there is no journal.
pub fn parse_journal(fields: &[String]) -> Result<Option<Journal>, String> {
    let [status, attempt, seq, skus, ..] = fields else {
        return Err(format!("journal reply {fields:?}"));
    };
    if status.is_empty() {
        return Ok(None);
    }
    let bad = || format!("journal reply {fields:?}");
    let journal = Journal {
        status: JournalStatus::parse(status).ok_or_else(bad)?,
        attempt: attempt.parse().map_err(|_| bad())?,
        seq: seq.parse().map_err(|_| bad())?,
        skus: skus.clone(),
    };
    journal.sku_nums().ok_or_else(bad)?;
    Ok(Some(journal))
}

/// Parses a canonical SKU map `sku:num,sku:num`.
pub fn parse_sku_nums(encoded: &str) -> Option<BTreeMap<i64, i64>> {
    encoded
        .split(',')
        .map(|pair| {
            let (sku, n) = pair.split_once(':')?;
            Some((sku.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

/// What `lock_take.lua` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// Units moved to locked.
    Taken,
    /// This attempt holds them already.
    Already,
    /// Fewer units available than asked; nothing changed.
    Short {
        /// Units available.
        available: i64,
    },
    /// This attempt may no longer take here (rolled back, or a newer attempt is under way).
    Fenced,
}

/// Parses `lock_take.lua`'s reply; `Err` carries what does not fit the saga.
pub fn parse_take(reply: &[String]) -> Result<Take, String> {
    match reply {
        [t] if t == "TAKEN" => Ok(Take::Taken),
        [t] if t == "ALREADY" => Ok(Take::Already),
        [t, n] if t == "SHORT" => n
            .parse()
            .map(|available| Take::Short { available })
            .map_err(|_| format!("take reply {reply:?}")),
        [t, _] if t == "FENCED" => Ok(Take::Fenced),
        _ => Err(format!("take reply {reply:?}")),
    }
}

/// Parses the reply of `lock_release.lua` or `lock_finish.lua`: `Ok` for every outcome the saga
/// allows (moved, tombstone, duplicate, a newer attempt's part), `Err` for a contradiction.
pub fn parse_step(reply: &[String]) -> Result<(), String> {
    match reply.first().map(String::as_str) {
        Some("RELEASED" | "FINISHED" | "TOMBSTONE" | "DUPLICATE" | "NEWER") => Ok(()),
        _ => Err(format!("step reply {reply:?}")),
    }
}

/// One lock's journal as the audit reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSnapshot {
    /// The order id.
    pub order_id: i64,
    /// Where it is.
    pub status: JournalStatus,
    /// The current attempt.
    pub attempt: i64,
    /// SKU → units.
    pub sku_nums: BTreeMap<i64, i64>,
}

/// One SKU's part of one lock as the audit reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSnapshot {
    /// The order id.
    pub order_id: i64,
    /// The SKU.
    pub sku: i64,
    /// The part.
    pub part: Part,
}

/// Every lock's journal and every part, for the audit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockRecords {
    /// Every journal, ABORTED ones included.
    pub journals: Vec<JournalSnapshot>,
    /// Every part on a SKU with stock.
    pub parts: Vec<PartSnapshot>,
}

impl LockRecords {
    /// The records a store whose lock is one atomic step implies: one attempt, every SKU's part
    /// in the lock's state.
    pub fn implied_by(locks: &[LockSnapshot]) -> Self {
        let mut records = Self::default();
        for lock in locks {
            let (status, state) = match lock.status {
                LockStatus::Locked => (JournalStatus::Locked, PartState::Locked),
                LockStatus::Finished => (JournalStatus::Finished, PartState::Finished),
                LockStatus::Released => (JournalStatus::Released, PartState::Released),
            };
            records.journals.push(JournalSnapshot {
                order_id: lock.order_id,
                status,
                attempt: 1,
                sku_nums: lock.sku_nums.clone(),
            });
            records
                .parts
                .extend(lock.sku_nums.iter().map(|(&sku, &num)| PartSnapshot {
                    order_id: lock.order_id,
                    sku,
                    part: Part {
                        attempt: 1,
                        num,
                        state,
                    },
                }));
        }
        records
    }
}

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockRepairs {
    /// Locks interrupted while taking their SKUs, now rolled back (ABORTED).
    pub rolled_back: Vec<i64>,
    /// Unlocks interrupted half-way, now completed (FINISHED or RELEASED).
    pub rolled_forward: Vec<i64>,
    /// Locks whose records contradict the saga, left as they are for a person to look at.
    pub failed: Vec<(i64, String)>,
}

impl LockRepairs {
    /// Whether nothing needed repair.
    pub fn is_empty(&self) -> bool {
        self.rolled_back.is_empty() && self.rolled_forward.is_empty() && self.failed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parts_share_their_sku_slot_and_directories_spread_over_shards() {
        let k = super::super::Keys::new("fg");
        assert_eq!(k.lock_parts(7), "fg:{sku:7}:locks");
        assert_eq!(k.sku_of(&k.lock_parts(7)), Some(7));
        assert_eq!(k.lock(9), "fg:lock:9");
        assert_eq!(k.locks_open(shard(9)), "fg:{locks:9}:open");
        assert_eq!(k.locks_all(shard(25)), "fg:{locks:9}:all");
        assert_eq!(shard(-1), 15);
        assert!((0..100).all(|id| (0..SHARDS).contains(&shard(id))));
    }

    #[test]
    fn parts_round_trip_and_reject_garbage() {
        let part = Part {
            attempt: 2,
            num: 3,
            state: PartState::Locked,
        };
        assert_eq!(part.encode(), "2:3:LOCKED");
        assert_eq!(Part::parse("2:3:LOCKED"), Some(part));
        assert!(part.is_live());
        assert!(!Part::parse("2:3:RELEASED").unwrap().is_live());
        for bad in [
            "",
            "2:3",
            "2:3:SOLD",
            "x:3:LOCKED",
            "-1:3:LOCKED",
            "2:-3:LOCKED",
        ] {
            assert_eq!(Part::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn journal_replies_parse() {
        assert_eq!(parse_journal(&strings(&["", "0", "0", "", "0"])), Ok(None));
        let j = parse_journal(&strings(&["PENDING", "2", "4", "1:2,5:1"]))
            .unwrap()
            .unwrap();
        assert_eq!(j.status, JournalStatus::Pending);
        assert_eq!((j.attempt, j.seq), (2, 4));
        assert_eq!(j.sku_nums(), Some([(1, 2), (5, 1)].into_iter().collect()));
        assert!(parse_journal(&strings(&["SOLD", "1", "1", "1:1"])).is_err());
        assert!(parse_journal(&strings(&["LOCKED", "1", "1", "1-1"])).is_err());
        assert!(parse_journal(&strings(&["LOCKED"])).is_err());
    }

    #[test]
    fn step_replies_parse() {
        assert_eq!(parse_take(&strings(&["TAKEN"])), Ok(Take::Taken));
        assert_eq!(parse_take(&strings(&["ALREADY"])), Ok(Take::Already));
        assert_eq!(
            parse_take(&strings(&["SHORT", "1"])),
            Ok(Take::Short { available: 1 })
        );
        assert_eq!(
            parse_take(&strings(&["FENCED", "2:3:RELEASED"])),
            Ok(Take::Fenced)
        );
        assert!(parse_take(&strings(&["CONFLICT", "1:3:LOCKED"])).is_err());
        assert!(parse_step(&strings(&["TOMBSTONE"])).is_ok());
        assert!(parse_step(&strings(&["CONFLICT", ""])).is_err());
    }

    #[test]
    fn the_contract_sees_a_lock_from_its_commit_point_on() {
        use JournalStatus::*;
        let all = [
            Pending, Locked, Aborting, Aborted, Finishing, Finished, Releasing, Released,
        ];
        for s in all {
            assert_eq!(JournalStatus::parse(s.as_str()), Some(s));
            assert_eq!(s.is_in_flight(), s.settles_as() != s, "{s:?}");
        }
        assert_eq!(Pending.visible(), None);
        assert_eq!(Aborted.visible(), None);
        assert_eq!(Finishing.visible(), Some(LockStatus::Finished));
        assert_eq!(Releasing.settles_as(), Released);
    }

    #[test]
    fn a_one_step_store_implies_one_part_per_sku() {
        let locks = [LockSnapshot {
            order_id: 4,
            sku_nums: [(1, 2), (3, 1)].into_iter().collect(),
            status: LockStatus::Finished,
        }];
        let records = LockRecords::implied_by(&locks);
        assert_eq!(records.journals.len(), 1);
        assert_eq!(records.journals[0].status, JournalStatus::Finished);
        assert_eq!(records.parts.len(), 2);
        assert!(records
            .parts
            .iter()
            .all(|p| p.part.state == PartState::Finished && p.part.attempt == 1));
    }
}
