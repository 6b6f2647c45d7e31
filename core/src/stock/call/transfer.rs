//! The calls of a transfer between two shards (`move_out.lua`, then `move_in.lua`), and the
//! journal entry ([`Move`]) that makes it safe to stop between them.

use super::{num_at, status, Call, ReplyResult, MOVE_IN, MOVE_OUT};
use crate::stock::{Keys, Shard};

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
        vec![from.key.clone(), keys.moves(from.shard)],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_journals_where_its_units_go() {
        let k = Keys::new("fg");
        let (from, to) = (Shard::new(6, 1), Shard::new(6, 3));
        let (a, b) = (End::pool(&k, from, 4), End::pool(&k, to, 4));
        let out = move_out(&k, "t1", &a, &b, 2);
        assert_eq!(out.keys, vec![k.event(from, 4), k.moves(from)]);
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
    }
}
