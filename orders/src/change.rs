//! One change-log entry, read, with its stream id (which orders the changes of one order: an
//! order lives in one shard). A script appends it to its shard's change log (`{sku:ID}:changes`,
//! see `Keys::changes`) in the same atomic step as the change itself. Two kinds:
//!
//! - an order's change, `{o, r}`: the order number and its whole record after the change
//!   (`stock::record`);
//! - a seed-contract lock's step on the log's SKU, `{l, p, s}` (`lock_take.lua`,
//!   `lock_release.lua`, `lock_finish.lua`): the lock's order id, the part the step wrote
//!   (`attempt:num:STATE`, `stock::lock::Part`) and the lock status the step carried the lock
//!   towards (LOCKED, ABORTED, RELEASED or FINISHED). A lock's SKUs live in different shards,
//!   so each SKU's steps are ordered, and the lock as a whole is its SKUs' rows together.
//!
//! An entry that is not one (a record that does not decode, a field missing) is a [`Poison`]:
//! the sink sets it aside in `dead_letters` and goes on.
//!
//! What it does not do: read Redis or write PostgreSQL (the sink does), or decide anything about
//! an order.

use std::fmt;

use flashgate_core::stock::lock::{JournalStatus, Part};
use flashgate_core::stock::{record, Order, Shard};

/// A stream entry id `MS-SEQ`: Redis's clock in ms at the append, and a sequence within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Unix ms of the append (the Redis server's clock).
    pub ms: i64,
    /// The sequence within that ms.
    pub seq: i64,
}

impl StreamId {
    /// `"1700000000000-3"` → its parts; `None` when it is not a stream id.
    pub fn parse(id: &str) -> Option<Self> {
        let (ms, seq) = id.split_once('-')?;
        Some(Self {
            ms: ms.parse().ok().filter(|v: &i64| *v >= 0)?,
            seq: seq.parse().ok().filter(|v: &i64| *v >= 0)?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The label of a shard in PostgreSQL: `5`, or `5:2` for sub-pool 2 of SKU 5.
pub fn shard_label(shard: Shard) -> String {
    match shard.sub {
        0 => shard.sku.to_string(),
        sub => format!("{}:{sub}", shard.sku),
    }
}

/// One order change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The shard whose change log carried it (`shard_label`).
    pub shard: String,
    /// Its entry's id.
    pub id: StreamId,
    /// The order after the change.
    pub order: Order,
    /// The record as the script wrote it (kept verbatim in `order_events`).
    pub record: String,
}

/// One step of a seed-contract lock on one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockChange {
    /// The shard whose change log carried it (`shard_label`: the SKU's own shard).
    pub shard: String,
    /// Its entry's id.
    pub id: StreamId,
    /// The lock's order id (`SKuStockLock.order_id`).
    pub order_id: i64,
    /// The SKU.
    pub sku: i64,
    /// The part the step wrote on the SKU.
    pub part: Part,
    /// The lock status the step carried the lock towards: LOCKED (a take), ABORTED (a
    /// roll-back's release), RELEASED (an unlock's release) or FINISHED.
    pub status: JournalStatus,
}

/// An entry that is not a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// The shard whose change log carried it.
    pub shard: String,
    /// Its entry's id.
    pub id: StreamId,
    /// The entry's fields as read, for a person to look at.
    pub fields: String,
    /// Why it is not a change.
    pub error: String,
}

/// A change-log entry: an order's change, a lock's step, or poison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An order change.
    Change(Change),
    /// A seed-contract lock's step.
    Lock(LockChange),
    /// Not one.
    Poison(Poison),
}

impl Entry {
    /// The entry's id.
    pub fn id(&self) -> StreamId {
        match self {
            Entry::Change(c) => c.id,
            Entry::Lock(l) => l.id,
            Entry::Poison(p) => p.id,
        }
    }
}

/// Reads one entry of `at`'s change log: `fields` as Redis answered them (a field without a
/// text value is `None`).
pub fn read(at: Shard, id: StreamId, fields: &[(String, Option<String>)]) -> Entry {
    let shard = shard_label(at);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    };
    let poison = |error: String| {
        Entry::Poison(Poison {
            shard: shard.clone(),
            id,
            fields: fields
                .iter()
                .map(|(k, v)| format!("{k}={:?}", v.as_deref().unwrap_or("<binary>")))
                .collect::<Vec<_>>()
                .join(" "),
            error,
        })
    };
    if let Some(order_id) = get("l") {
        let Some(order_id) = order_id.parse::<i64>().ok() else {
            return poison(format!("{order_id:?} is not a lock's order id"));
        };
        let Some(part) = get("p").and_then(Part::parse) else {
            return poison(format!("the part of lock {order_id} does not decode"));
        };
        let status = get("s").and_then(JournalStatus::parse).filter(|s| {
            matches!(
                s,
                JournalStatus::Locked
                    | JournalStatus::Aborted
                    | JournalStatus::Released
                    | JournalStatus::Finished
            )
        });
        let Some(status) = status else {
            return poison(format!("lock {order_id}: no status a step moves towards"));
        };
        return Entry::Lock(LockChange {
            shard: shard.clone(),
            id,
            order_id,
            sku: at.sku,
            part,
            status,
        });
    }
    let (Some(order_no), Some(raw)) = (get("o"), get("r")) else {
        return poison("no `o` (order number) or no `r` (record) field, nor `l` (lock)".into());
    };
    if flashgate_core::stock::event_of_order(order_no).is_none() {
        return poison(format!("{order_no:?} is not an order number"));
    }
    match record::decode(order_no, raw) {
        Some(order) => Entry::Change(Change {
            shard: shard.clone(),
            id,
            order,
            record: raw.to_owned(),
        }),
        None => poison(format!("the record of {order_no} does not decode")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashgate_core::stock::OrderStatus;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    #[test]
    fn stream_ids_order_by_time_then_sequence() {
        let a = StreamId::parse("1700-9").unwrap();
        let b = StreamId::parse("1701-0").unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "1700-9");
        for bad in ["", "17", "-1-0", "a-0", "1-x"] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_change_carries_the_order_after_it() {
        let id = StreamId { ms: 5, seq: 0 };
        let raw = "7\u{1f}5\u{1f}ann\u{1f}1\u{1f}PENDING_PAYMENT\u{1f}61000\u{1f}1000\u{1f}1999\u{1f}EUR\u{1f}\u{1f}";
        let Entry::Change(c) = read(Shard::from(5), id, &fields(&[("o", "7-1"), ("r", raw)]))
        else {
            panic!("a change");
        };
        assert_eq!(c.order.order_no, "7-1");
        assert_eq!(c.order.status, OrderStatus::PendingPayment);
        assert_eq!(c.record, raw);
    }

    #[test]
    fn a_lock_step_carries_its_part_and_the_status_it_moves_towards() {
        let id = StreamId { ms: 6, seq: 0 };
        let step = fields(&[("l", "31"), ("p", "2:3:RELEASED"), ("s", "ABORTED")]);
        let Entry::Lock(l) = read(Shard::from(5), id, &step) else {
            panic!("a lock step");
        };
        assert_eq!((l.order_id, l.sku, l.shard.as_str()), (31, 5, "5"));
        assert_eq!(l.part.encode(), "2:3:RELEASED");
        assert_eq!(l.status, JournalStatus::Aborted);
    }

    #[test]
    fn an_entry_that_is_not_a_change_is_poison_with_its_reason() {
        let id = StreamId { ms: 5, seq: 1 };
        for (bad, why) in [
            (fields(&[("o", "7-1")]), "no `o`"),
            (fields(&[("o", "7-1"), ("r", "garbage")]), "does not decode"),
            (
                fields(&[("o", "x"), ("r", "garbage")]),
                "not an order number",
            ),
        ] {
            let Entry::Poison(p) = read(Shard::new(5, 1), id, &bad) else {
                panic!("{bad:?} is poison");
            };
            assert!(p.error.contains(why), "{}", p.error);
            assert_eq!((p.shard.as_str(), p.id), ("5:1", id));
        }
        for (bad, why) in [
            (fields(&[("l", "x"), ("p", "1:2:LOCKED")]), "not a lock's"),
            (fields(&[("l", "9"), ("p", "1:2")]), "does not decode"),
            (fields(&[("l", "9"), ("p", "1:2:LOCKED")]), "no status"),
            (
                fields(&[("l", "9"), ("p", "1:2:LOCKED"), ("s", "PENDING")]),
                "no status",
            ),
        ] {
            let Entry::Poison(p) = read(Shard::from(5), id, &bad) else {
                panic!("{bad:?} is poison");
            };
            assert!(p.error.contains(why), "{}", p.error);
        }
        assert_eq!(shard_label(Shard::new(5, 2)), "5:2");
        assert_eq!(shard_label(Shard::from(5)), "5");
    }
}
