//! The calls of the seed-contract lock's saga (`lock_*.lua`): the journal's read, begin and
//! compare-and-set moves, the per-SKU part steps, and the directory entries. The replies of the
//! part steps and of the journal are parsed in [`crate::stock::lock`], beside the saga's types.

use super::{malformed, num_at, Call, Lua, ReplyResult};
use super::{
    LOCK_BEGIN, LOCK_FINISH, LOCK_MOVE, LOCK_READ, LOCK_REGISTER, LOCK_RELEASE, LOCK_SETTLE,
    LOCK_TAKE,
};
use crate::stock::lock::{parse_journal, shard, Journal, JournalStatus};
use crate::stock::{Keys, LockRequest, Shard};

/// `lock_read.lua`: a lock's journal.
pub fn lock_read(keys: &Keys, order_id: i64) -> Call {
    Call::new(&LOCK_READ, vec![keys.lock(order_id)], vec![])
}

/// `lock_read.lua`'s reply: the journal (if any) and its age in ms by the journal node's clock.
pub fn parse_lock_read(reply: &[String]) -> ReplyResult<Option<(Journal, i64)>> {
    let journal = parse_journal(reply).map_err(malformed)?;
    let age_ms = num_at(reply, 4, "journal")?;
    Ok(journal.map(|j| (j, age_ms)))
}

/// `lock_begin.lua`: opens a fresh attempt of `req` (SKU map `skus`, canonical) if the journal
/// is still at `seq`.
pub fn lock_begin(keys: &Keys, req: &LockRequest, skus: &str, seq: i64) -> Call {
    Call::new(
        &LOCK_BEGIN,
        vec![keys.lock(req.order_id)],
        vec![
            seq.to_string(),
            skus.to_owned(),
            req.order_no.clone(),
            req.consignee.clone(),
            req.phone.clone(),
            req.address.clone(),
            req.note.clone(),
        ],
    )
}

/// `lock_move.lua`: moves the journal read as `from` to `to`, if it is still as read.
pub fn lock_move(keys: &Keys, order_id: i64, from: &Journal, to: JournalStatus) -> Call {
    Call::new(
        &LOCK_MOVE,
        vec![keys.lock(order_id)],
        vec![
            from.seq.to_string(),
            from.status.as_str().to_owned(),
            to.as_str().to_owned(),
        ],
    )
}

/// The outcome of a compare-and-set on a journal, and the journal after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// This call moved it.
    Moved(Journal),
    /// It was not as read; this is how it is.
    Stayed(Option<Journal>),
}

/// Parses the reply of `lock_begin.lua` or `lock_move.lua`.
pub fn parse_cas(reply: &[String]) -> ReplyResult<Cas> {
    let (outcome, fields) = reply
        .split_first()
        .ok_or_else(|| malformed("empty journal reply"))?;
    match (outcome.as_str(), parse_journal(fields).map_err(malformed)?) {
        ("MOVED" | "BEGUN", Some(j)) => Ok(Cas::Moved(j)),
        ("STAYED", j) => Ok(Cas::Stayed(j)),
        _ => Err(malformed(format!("journal reply {reply:?}"))),
    }
}

/// One part step's call on the SKU's stock, parts and change log; with `log`, the script also
/// logs the part it writes with that status, the one the step carries its lock towards.
fn part_step(lua: &'static Lua, keys: &Keys, step: PartStep, log: Option<JournalStatus>) -> Call {
    let PartStep {
        sku,
        oid,
        attempt,
        n,
    } = step;
    Call::new(
        lua,
        vec![
            keys.stock(sku),
            keys.lock_parts(sku),
            keys.changes(Shard::from(sku)),
        ],
        vec![
            oid.to_string(),
            attempt.to_string(),
            n.to_string(),
            log.map_or("0", JournalStatus::as_str).to_owned(),
        ],
    )
}

/// One SKU's step of one attempt of a lock: `n` units of `sku` for lock `oid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartStep {
    /// The SKU.
    pub sku: i64,
    /// The lock's order id.
    pub oid: i64,
    /// The journal's attempt.
    pub attempt: i64,
    /// Units (the journal's).
    pub n: i64,
}

/// `lock_take.lua`: takes the step's units for its attempt; with `log`, logged as moving the
/// lock towards LOCKED.
pub fn lock_take(keys: &Keys, step: PartStep, log: bool) -> Call {
    part_step(&LOCK_TAKE, keys, step, log.then_some(JournalStatus::Locked))
}

/// `lock_release.lua`: gives the part back, or leaves a tombstone fencing the attempt; `log`
/// is the status the release serves (ABORTED for a roll-back, RELEASED for an unlock).
pub fn lock_release(keys: &Keys, step: PartStep, log: Option<JournalStatus>) -> Call {
    part_step(&LOCK_RELEASE, keys, step, log)
}

/// `lock_finish.lua`: commits the part (locked → sold); with `log`, logged as FINISHED.
pub fn lock_finish(keys: &Keys, step: PartStep, log: bool) -> Call {
    part_step(
        &LOCK_FINISH,
        keys,
        step,
        log.then_some(JournalStatus::Finished),
    )
}

/// `lock_register.lua`: enters lock `oid` in its directories before a move to `next_seq`.
pub fn lock_register(keys: &Keys, oid: i64, next_seq: i64) -> Call {
    let dir = shard(oid);
    Call::new(
        &LOCK_REGISTER,
        vec![keys.locks_open(dir), keys.locks_all(dir)],
        vec![oid.to_string(), next_seq.to_string()],
    )
}

/// `lock_settle.lua`: drops lock `oid` from the open directory, unless registered past `seq`.
pub fn lock_settle(keys: &Keys, oid: i64, seq: i64) -> Call {
    Call::new(
        &LOCK_SETTLE,
        vec![keys.locks_open(shard(oid))],
        vec![oid.to_string(), seq.to_string()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn journal_moves_parse_as_compare_and_set() {
        let moved = parse_cas(&strings(&["MOVED", "LOCKED", "1", "3", "1:2"])).unwrap();
        assert!(matches!(moved, Cas::Moved(j) if j.status == JournalStatus::Locked && j.seq == 3));
        assert_eq!(
            parse_cas(&strings(&["STAYED", "", "0", "0", ""])),
            Ok(Cas::Stayed(None))
        );
        assert!(parse_cas(&strings(&["MOVED", "", "0", "0", ""])).is_err());
        assert_eq!(
            parse_lock_read(&strings(&["", "0", "0", "", "0"])),
            Ok(None)
        );
        let k = Keys::new("fg");
        let part = PartStep {
            sku: 2,
            oid: 5,
            attempt: 1,
            n: 3,
        };
        let step = lock_release(&k, part, Some(JournalStatus::Aborted));
        assert_eq!(
            step.keys,
            vec![k.stock(2), k.lock_parts(2), k.changes(Shard::from(2))]
        );
        assert_eq!(step.args, strings(&["5", "1", "3", "ABORTED"]));
        assert_eq!(lock_take(&k, part, false).args[3], "0");
        assert_eq!(lock_finish(&k, part, true).args[3], "FINISHED");
        assert_eq!(lock_register(&k, 5, 1).keys[0], k.locks_open(shard(5)));
    }
}
