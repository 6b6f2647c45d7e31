//! Key names: every Redis key the warehouse uses, the seed-contract lock's included, built in
//! one place so a script's KEYS and the commands around it can only agree.
//!
//! Every key of a SKU carries the hash tag `{sku:ID}` (a sub-pool's `{sku:ID:SUB}`), so each
//! script touches one cluster slot; the only keys outside a SKU's slots are the directories
//! ([`Keys::events`], [`Keys::live_events`], [`Keys::retired_events`], [`Keys::sale_ends`],
//! [`Keys::skus`], the lock directories `{locks:N}`) and the seed-contract lock journals
//! ([`Keys::lock`]), each written by scripts or commands of their own.
//!
//! What it does not do: decide which keys a script is given (that is [`super::call`]).

use super::Shard;

/// Key names. `prefix` namespaces one deployment (and isolates tests sharing a Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (for example `"fg"`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix these keys live under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn in_shard(&self, shard: impl Into<Shard>, name: &str) -> String {
        format!("{}:{{{}}}:{name}", self.prefix, shard.into().tag())
    }

    /// Hash `total available locked sold` of one SKU (of a sub-pool shard: what passed through
    /// it; `total` stays 0 there).
    pub fn stock(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "stock")
    }

    /// Set of the event ids with a pool in this shard (for the ledger's sum of pools).
    pub fn sku_events(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "events")
    }

    /// Hash of one sale in one shard: its definition, `pool` (units left), `put` (units put in;
    /// kept on the SKU's own shard), `seq`, `closed`, `subpools`, `sub`.
    pub fn event(&self, shard: impl Into<Shard>, event: i64) -> String {
        self.in_shard(shard, &format!("ev:{event}"))
    }

    /// The prefix of a shard's sale keys (`event` is this followed by the event id).
    pub fn event_prefix(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "ev:")
    }

    /// Hash user id → units the per-user limit counts for the user in the sale: every unit won,
    /// or, for a sale whose limit counts units held, the units the user's orders hold now.
    pub fn event_users(&self, shard: impl Into<Shard>, event: i64) -> String {
        self.in_shard(shard, &format!("ev:{event}:users"))
    }

    /// Hash `user \x1f request id` → `QTY` or `QTY:ORDER` (Buy's idempotency: the request ids
    /// used in the sale, the quantity each asked for and the order it won; see
    /// [`super::record`]).
    pub fn event_requests(&self, shard: impl Into<Shard>, event: i64) -> String {
        self.in_shard(shard, &format!("ev:{event}:req"))
    }

    /// Hash order number → order record ([`super::record`]) of every flash-sale order of the shard. One key
    /// per shard, so the scripts declare every key they touch.
    pub fn orderbook(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "orderbook")
    }

    /// Stream of wins waiting for the order worker.
    pub fn order_stream(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "orders")
    }

    /// Stream of the shard's order changes (`o` order number, `r` its record after the change),
    /// appended by the scripts that change an order in the same atomic step, for the order sink
    /// to carry into PostgreSQL (`flashgate-orders`); entries are deleted once the sink has
    /// committed them.
    pub fn changes(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "changes")
    }

    /// Sorted set order number → payment deadline (ms), for the sweeper.
    pub fn deadlines(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "deadlines")
    }

    /// Set of the sub-pool numbers (1…) any sale of the SKU was ever split into: the shards
    /// that hold its units' history (`sold`, `locked`) after the sales that used them retired.
    pub fn sub_shards(&self, sku: i64) -> String {
        self.in_shard(sku, "subshards")
    }

    /// Hash transfer id → units on their way out of this shard (see the `move_*` scripts).
    pub fn moves(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "moves")
    }

    /// A landed transfer's tombstone in its source shard: its units, for
    /// [`call::MOVE_TOMBSTONE_TTL_MS`](super::call::MOVE_TOMBSTONE_TTL_MS) (see `move_forget.lua`).
    pub fn moved(&self, shard: impl Into<Shard>, id: &str) -> String {
        self.in_shard(shard, &format!("moved:{id}"))
    }

    /// Set of the transfer ids this shard has been credited with (a transfer lands once).
    pub fn received(&self, shard: impl Into<Shard>) -> String {
        self.in_shard(shard, "received")
    }

    /// Directory hash event id → `SKU` or `SKU/SUBPOOLS` (a sale's SKU and split never change,
    /// so callers cache it).
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Directory hash event id → `SKU` or `SKU/SUBPOOLS` (as [`Keys::events`]) of the sales not
    /// yet retired: those the order worker reads and the sweeper visits. A sale leaves it once
    /// it has ended and every order of it is final, so their work does not grow with history.
    pub fn live_events(&self) -> String {
        format!("{}:events:live", self.prefix)
    }

    /// Hash event id → `RETIRED_AT_MS SEQ_0 SEQ_1 …` (unix ms, and the sale's wins per
    /// sub-pool) of every retired sale: the tombstone that keeps a retired sale's id (and so its
    /// order numbers) from being defined again after its keys have expired.
    pub fn retired_events(&self) -> String {
        format!("{}:events:retired", self.prefix)
    }

    /// Sorted set event id → when it retired (unix ms) of the retired sales whose orders are
    /// still in their orderbooks: the sweeper deletes them a retention time later.
    pub fn purge_due(&self) -> String {
        format!("{}:events:purge", self.prefix)
    }

    /// Sorted set event id → the sale's end (unix ms), so the sales still worth listing (not
    /// ended long ago) are one range read however many have ended.
    pub fn sale_ends(&self) -> String {
        format!("{}:events:ends", self.prefix)
    }

    /// Directory set of every SKU with stock (for the worker, the sweeper and the audit).
    pub fn skus(&self) -> String {
        format!("{}:skus", self.prefix)
    }

    /// The shard whose hash tag a key carries, if it is one of this prefix's SKU keys.
    pub fn shard_of(&self, key: &str) -> Option<Shard> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix(":{sku:")?;
        let tag = rest.split_once('}')?.0;
        Some(match tag.split_once(':') {
            None => Shard::new(tag.parse().ok()?, 0),
            Some((sku, sub)) => Shard::new(sku.parse().ok()?, sub.parse().ok().filter(|s| *s > 0)?),
        })
    }

    /// The SKU whose hash tag a key carries, if it is one of this prefix's SKU keys.
    pub fn sku_of(&self, key: &str) -> Option<i64> {
        self.shard_of(key).map(|s| s.sku)
    }

    /// Hash of one seed-contract lock's journal (`SKuStockLock`), keyed by order id (the key
    /// the former one-script lock used for its record, kept).
    pub fn lock(&self, order_id: i64) -> String {
        format!("{}:lock:{order_id}", self.prefix)
    }

    /// Hash order id → lock part (`attempt:num:STATE`) of every lock's part on one SKU, in the
    /// SKU's slot.
    pub fn lock_parts(&self, sku: i64) -> String {
        self.in_shard(sku, "locks")
    }

    /// Sorted set order id → seq of the locks a repair may have to finish, in one shard of the
    /// lock directories (see [`super::lock::shard`]).
    pub fn locks_open(&self, dir: i64) -> String {
        format!("{}:{{locks:{dir}}}:open", self.prefix)
    }

    /// Set of every order id ever begun, in one shard of the lock directories.
    pub fn locks_all(&self, dir: i64) -> String {
        format!("{}:{{locks:{dir}}}:all", self.prefix)
    }

    /// Hash of a sale's waiting room, in the sale's slot (a room sale has one pool): its
    /// settings (`prequeue factor ttl`) and counters (`arrivals admitted through began
    /// held_from rate_at rate_n rate sold_out`; see `room_move.lua`).
    pub fn room(&self, sku: i64, event: i64) -> String {
        self.in_shard(sku, &format!("room:{event}"))
    }

    /// Sorted set user → [`Ticket::score`](crate::admission::Ticket::score): a sale's line.
    pub fn room_places(&self, sku: i64, event: i64) -> String {
        self.in_shard(sku, &format!("room:{event}:places"))
    }

    /// Sorted set user → when the admission lapses (unix ms): the admitted places neither
    /// bought nor lapsed.
    pub fn room_pending(&self, sku: i64, event: i64) -> String {
        self.in_shard(sku, &format!("room:{event}:pending"))
    }

    /// Directory sorted set event id → the sale's end (unix ms) of the sales with a waiting
    /// room: those the sweeper moves.
    pub fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_sku_shares_its_hash_tag() {
        let k = Keys::new("fg");
        for key in [
            k.stock(7),
            k.sku_events(7),
            k.event(7, 3),
            k.event_users(7, 3),
            k.event_requests(7, 3),
            k.orderbook(7),
            k.order_stream(7),
            k.deadlines(7),
        ] {
            let tag = key
                .split_once('{')
                .and_then(|(_, rest)| rest.split_once('}'))
                .map(|(t, _)| t);
            assert_eq!(tag, Some("sku:7"), "{key}");
        }
        assert_eq!(k.stock(7), "fg:{sku:7}:stock");
        assert_ne!(k.stock(7), k.stock(70));
        assert_eq!(k.sku_of(&k.order_stream(70)), Some(70));
        assert_eq!(k.sku_of("other:{sku:70}:orders"), None);
        let sub = Shard::new(7, 3);
        assert_eq!(k.stock(sub), "fg:{sku:7:3}:stock");
        assert_eq!(k.event(sub, 2), "fg:{sku:7:3}:ev:2");
        assert_eq!(k.event_prefix(sub) + "2", k.event(sub, 2));
        assert_eq!(k.shard_of(&k.order_stream(sub)), Some(sub));
        assert_eq!(k.shard_of(&k.order_stream(7)), Some(Shard::new(7, 0)));
        assert_eq!(k.shard_of("fg:{sku:7:0}:orders"), None);
        assert_eq!(k.shard_of("fg:{sku:7:x}:orders"), None);
    }

    #[test]
    fn lock_parts_share_their_sku_slot_and_directories_have_their_own() {
        let k = Keys::new("fg");
        assert_eq!(k.lock_parts(7), "fg:{sku:7}:locks");
        assert_eq!(k.locks_open(3), "fg:{locks:3}:open");
        assert_eq!(k.locks_all(3), "fg:{locks:3}:all");
        assert_eq!(k.lock(9), "fg:lock:9");
    }

    #[test]
    fn the_end_index_has_a_slot_of_its_own() {
        let k = Keys::new("fg");
        assert_eq!(k.sale_ends(), "fg:events:ends");
        assert_eq!(k.sku_of(&k.sale_ends()), None);
        assert_eq!(k.live_events(), "fg:events:live");
        assert_eq!(k.retired_events(), "fg:events:retired");
    }

    #[test]
    fn a_rooms_keys_share_its_sales_slot_and_the_directory_has_its_own() {
        let k = Keys::new("fg");
        assert_eq!(k.room(7, 3), "fg:{sku:7}:room:3");
        assert_eq!(k.room_places(7, 3), "fg:{sku:7}:room:3:places");
        assert_eq!(k.room_pending(7, 3), "fg:{sku:7}:room:3:pending");
        for key in [k.room(7, 3), k.room_places(7, 3), k.room_pending(7, 3)] {
            assert_eq!(k.shard_of(&key), k.shard_of(&k.event(7, 3)), "{key}");
        }
        // Not under the sale prefix, so a scan of a shard's sales never meets them.
        assert!(!k.room(7, 3).starts_with(&k.event_prefix(7)));
        assert_ne!(k.room(7, 3), k.room(7, 30));
        assert_eq!(k.rooms(), "fg:rooms");
        assert_eq!(k.sku_of(&k.rooms()), None);
    }
}
