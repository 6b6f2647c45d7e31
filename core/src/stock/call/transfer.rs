//! The calls of a transfer between two shards (`move_out.lua`, `move_in.lua`, then
//! `move_forget.lua`), the journal entry ([`Move`]) that makes it safe to stop between them, and
//! the two times that keep a stopped transfer's repair from racing its own mover: the lease
//! ([`MOVE_LEASE_MS`], [`is_stranded`]) and the tombstone's life ([`MOVE_TOMBSTONE_TTL_MS`]).

use super::{
    num, num_at, status, Call, ReplyError, ReplyResult, MOVE_FORGET, MOVE_IN, MOVE_OUT, MOVE_READ,
};
use crate::stock::{Keys, Shard};

/// How old a journal entry must be before anyone but its mover lands it. A live mover lands its
/// own entry within a few round trips, or within the cluster client's retries (6, at most 1 s
/// apart, 2 s each: under 20 s) when a failover interrupts it; 30 s is past both, so a repair
/// lands only the transfers of movers that stopped.
pub const MOVE_LEASE_MS: i64 = 30_000;

/// How long a landed transfer's tombstone lives: far past any retry of its `move_out.lua` (the
/// cluster client's end within 20 s, and ids are never reused), so a retry always finds it.
pub const MOVE_TOMBSTONE_TTL_MS: i64 = 24 * 3_600_000;

/// Whether a journal entry written at `at_ms` (by its source node's clock; `None`: an entry
/// written before entries carried a time) is stranded at `now_ms`: old enough for a repair to
/// land it without racing its mover. Clocks of the warehouse and of Redis are assumed to agree
/// within the lease's margin over the mover's worst case.
pub fn is_stranded(at_ms: Option<i64>, now_ms: i64, lease_ms: i64) -> bool {
    at_ms.is_none_or(|at| now_ms.saturating_sub(at) >= lease_ms)
}

/// One end of a transfer: a field of a hash in one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// The shard holding the hash.
    pub shard: Shard,
    /// The hash.
    pub key: String,
    /// The field counted (`pool` or `available`).
    pub field: &'static str,
}

impl End {
    /// A sale's pool in one shard.
    pub fn pool(keys: &Keys, shard: Shard, event: i64) -> Self {
        Self {
            shard,
            key: keys.event(shard, event),
            field: "pool",
        }
    }

    /// A shard's available units.
    pub fn available(keys: &Keys, shard: Shard) -> Self {
        Self {
            shard,
            key: keys.stock(shard),
            field: "available",
        }
    }
}

/// A transfer journaled by `move_out.lua` and not yet known to have landed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Move {
    /// Units on their way.
    #[serde(deserialize_with = "number_string")]
    pub n: i64,
    /// The field they left (`pool` or `available`).
    pub from: String,
    /// The destination hash.
    pub to: String,
    /// The destination field.
    pub field: String,
    /// The destination shard's received set.
    pub received: String,
    /// The destination shard's stock hash.
    pub fallback: String,
    /// When it was journaled, by the source node's clock (ms); absent in entries written before
    /// the lease existed.
    #[serde(default, deserialize_with = "optional_number_string")]
    pub at: Option<i64>,
}

fn optional_number_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    number_string(d).map(Some)
}

fn number_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl Move {
    /// Parses a journal entry.
    pub fn parse(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }

    /// The entry `move_out.lua` journals for `n` units from `from` to `to`.
    pub fn between(keys: &Keys, from: &End, to: &End, n: i64) -> Self {
        Self {
            n,
            from: from.field.into(),
            to: to.key.clone(),
            field: to.field.into(),
            received: keys.received(to.shard),
            fallback: keys.stock(to.shard),
            at: None,
        }
    }

    /// Whether the units are on their way to a sale's pool (else to `available`).
    pub fn is_pool(&self) -> bool {
        self.field == "pool"
    }
}

/// `move_out.lua`: takes up to `want` units out of `from`, journaled under transfer `id`.
pub fn move_out(keys: &Keys, id: &str, from: &End, to: &End, want: i64) -> Call {
    let landing = Move::between(keys, from, to, want);
    Call::new(
        &MOVE_OUT,
        vec![
            from.key.clone(),
            keys.moves(from.shard),
            keys.moved(from.shard, id),
        ],
        vec![
            id.into(),
            landing.from,
            want.to_string(),
            landing.to,
            landing.field,
            landing.received,
            landing.fallback,
        ],
    )
}

/// `move_out.lua`'s reply: the units taken.
pub fn parse_move_out(reply: &[String]) -> ReplyResult<i64> {
    status(reply)?;
    num_at(reply, 1, "move_out")
}

/// `move_in.lua`: credits journaled transfer `id` at its destination, once.
pub fn move_in(id: &str, landing: &Move) -> Call {
    Call::new(
        &MOVE_IN,
        vec![
            landing.to.clone(),
            landing.received.clone(),
            landing.fallback.clone(),
        ],
        vec![id.into(), landing.field.clone(), landing.n.to_string()],
    )
}

/// `move_in.lua`'s reply.
pub fn parse_move_in(reply: &[String]) -> ReplyResult<()> {
    status(reply).map(drop)
}

/// `move_forget.lua`: replaces transfer `id`'s journal entry in `from` (of `n` units, landed)
/// with its tombstone.
pub fn move_forget(keys: &Keys, from: Shard, id: &str, n: i64) -> Call {
    Call::new(
        &MOVE_FORGET,
        vec![keys.moves(from), keys.moved(from, id)],
        vec![id.into(), n.to_string(), MOVE_TOMBSTONE_TTL_MS.to_string()],
    )
}

/// `move_forget.lua`'s reply.
pub fn parse_move_forget(reply: &[String]) -> ReplyResult<()> {
    status(reply).map(drop)
}

/// `move_read.lua`: a shard's journal, with the node's clock.
pub fn move_read(keys: &Keys, shard: Shard) -> Call {
    Call::new(&MOVE_READ, vec![keys.moves(shard)], vec![])
}

/// `move_read.lua`'s reply: the node's clock (ms) and every entry as (transfer id, move).
pub fn parse_move_read(reply: &[String]) -> ReplyResult<(i64, Vec<(String, Move)>)> {
    let bad = || ReplyError::Malformed(format!("move_read reply {reply:?}"));
    let (now, entries) = reply.split_first().ok_or_else(bad)?;
    if entries.len() % 2 != 0 {
        return Err(bad());
    }
    let entries = entries
        .chunks(2)
        .map(|pair| Some((pair[0].clone(), Move::parse(&pair[1])?)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    Ok((num(now).map_err(|_| bad())?, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_journals_where_its_units_go() {
        let k = Keys::new("fg");
        let (from, to) = (Shard::new(6, 1), Shard::new(6, 3));
        let (a, b) = (End::pool(&k, from, 4), End::pool(&k, to, 4));
        let out = move_out(&k, "t1", &a, &b, 2);
        assert_eq!(
            out.keys,
            vec![k.event(from, 4), k.moves(from), k.moved(from, "t1")]
        );
        assert_eq!(k.moved(from, "t1"), "fg:{sku:6:1}:moved:t1");
        assert_eq!(
            out.args,
            vec![
                "t1".to_owned(),
                "pool".into(),
                "2".into(),
                k.event(to, 4),
                "pool".into(),
                k.received(to),
                k.stock(to)
            ]
        );
        let landing = Move::between(&k, &a, &b, 2);
        let json = r#"{"n":"2","from":"pool","to":"fg:{sku:6:3}:ev:4","field":"pool","received":"fg:{sku:6:3}:received","fallback":"fg:{sku:6:3}:stock"}"#;
        assert_eq!(Move::parse(json), Some(landing.clone()));
        assert!(landing.is_pool());
        assert_eq!(move_in("t1", &landing).args, vec!["t1", "pool", "2"]);
        let forget = move_forget(&k, from, "t1", 2);
        assert_eq!(forget.keys, vec![k.moves(from), k.moved(from, "t1")]);
        assert_eq!(forget.args, vec!["t1", "2", "86400000"]);
    }

    #[test]
    fn an_entry_carries_its_time_and_old_entries_parse_without_one() {
        let json = r#"{"n":"2","from":"pool","to":"t","field":"pool","received":"r","fallback":"f","at":"1700000000123"}"#;
        assert_eq!(Move::parse(json).unwrap().at, Some(1_700_000_000_123));
        let bad = r#"{"n":"2","from":"pool","to":"t","field":"pool","received":"r","fallback":"f","at":"soon"}"#;
        assert_eq!(Move::parse(bad), None);
    }

    #[test]
    fn a_journal_read_parses_with_its_clock() {
        let k = Keys::new("fg");
        assert_eq!(
            move_read(&k, Shard::new(6, 1)).keys,
            vec![k.moves(Shard::new(6, 1))]
        );
        let json = r#"{"n":"2","from":"pool","to":"t","field":"pool","received":"r","fallback":"f","at":"90"}"#;
        let reply: Vec<String> = vec!["100".into(), "t1".into(), json.into()];
        let (now, entries) = parse_move_read(&reply).unwrap();
        assert_eq!(now, 100);
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].0.as_str(), entries[0].1.at), ("t1", Some(90)));
        assert_eq!(parse_move_read(&["100".to_owned()]).unwrap().1, vec![]);
        assert!(parse_move_read(&[]).is_err());
        assert!(parse_move_read(&["100".into(), "t1".into()]).is_err());
        assert!(parse_move_read(&["100".into(), "t1".into(), "{}".into()]).is_err());
    }

    #[test]
    fn only_an_entry_older_than_the_lease_is_stranded() {
        let at = 1_000_000;
        assert!(!is_stranded(Some(at), at, MOVE_LEASE_MS), "just written");
        assert!(!is_stranded(
            Some(at),
            at + MOVE_LEASE_MS - 1,
            MOVE_LEASE_MS
        ));
        assert!(is_stranded(Some(at), at + MOVE_LEASE_MS, MOVE_LEASE_MS));
        // A clock behind the node's: younger, never stranded early.
        assert!(!is_stranded(Some(at), at - 5_000, MOVE_LEASE_MS));
        // An entry from before entries carried a time: its mover is long gone.
        assert!(is_stranded(None, 0, MOVE_LEASE_MS));
        assert!(is_stranded(Some(at), at, 0), "no lease: everything");
        const { assert!(MOVE_TOMBSTONE_TTL_MS > 100 * MOVE_LEASE_MS) };
    }
}
