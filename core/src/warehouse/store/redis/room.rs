//! Waiting rooms on Redis: each operation one `room_*` script in the sale's slot (packed by
//! [`crate::stock::call`]), beside the pool it admits against; the directory of rooms
//! (`{prefix}:rooms`, event → end) is a command of its own in its own slot.
//!
//! What it does not do: decide anything (the scripts apply [`crate::admission`]'s rules), or
//! keep a room for a sale split in sub-pools (the service refuses one: the pool would span
//! slots, and the bound could not be decided in one script).

use redis::AsyncCommands;

use super::{unavailable, RedisStore};
use crate::admission::{Rules, Ticket};
use crate::stock::call;
use crate::stock::room::{Joined, Moved, Place};
use crate::stock::{Sale, StockError};
use crate::warehouse::store::{Rooms, StoreError, StoreResult};

impl RedisStore {
    /// The SKU of a sale that may have a room (one pool), or why not.
    async fn room_sku(&self, event_id: i64) -> StoreResult<i64> {
        match self.sale_entry(event_id).await? {
            Some((sku, subpools)) if subpools <= 1 => Ok(sku),
            // (The service never gives a split sale a room.)
            Some(_) => Err(StoreError::Refused(StockError::FailedPrecondition(
                format!("event {event_id} has no waiting room"),
            ))),
            None => Err(StoreError::Refused(StockError::NotFound(format!(
                "event {event_id}"
            )))),
        }
    }
}

impl Rooms for RedisStore {
    async fn put_room(&self, sale: &Sale, rules: Option<&Rules>) -> StoreResult<()> {
        // Listed first, so a room the sweeper should move is never missing from its list; a
        // room turned off leaves the list after its settings went.
        let mut conn = self.conn.clone();
        if rules.is_some() {
            conn.zadd::<_, _, _, ()>(self.keys.rooms(), sale.id, sale.end_ms)
                .await
                .map_err(unavailable)?;
        }
        let reply: Vec<String> = self.run(&call::put_room(&self.keys, sale, rules)).await?;
        call::status(&reply)?;
        if rules.is_none() {
            conn.zrem::<_, _, ()>(self.keys.rooms(), sale.id)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn room(&self, event_id: i64) -> StoreResult<Option<Rules>> {
        let Some((sku, _)) = self.sale_entry(event_id).await? else {
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.room(sku, event_id))
            .arg(&["prequeue", "factor", "ttl"][..])
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(call::parse_room_rules(&fields)?)
    }

    async fn join_room(
        &self,
        event_id: i64,
        user: &str,
        secret: &[u8],
        now_ms: i64,
    ) -> StoreResult<Joined> {
        let sku = self.room_sku(event_id).await?;
        // Computed here, used by the script only in the pre-queue: the secret never leaves
        // the process.
        let drawn = Ticket::draw(secret, event_id, user);
        let call = call::join_room(&self.keys, (sku, event_id), user, drawn, now_ms);
        let reply: Vec<String> = self.run(&call).await?;
        Ok(call::parse_place(&reply)?)
    }

    async fn move_room(&self, event_id: i64, now_ms: i64) -> StoreResult<Moved> {
        let sku = self.room_sku(event_id).await?;
        let reply: Vec<String> = self
            .run(&call::move_room(&self.keys, (sku, event_id), now_ms))
            .await?;
        Ok(call::parse_move(&reply)?)
    }

    async fn claim_room(&self, event_id: i64, user: &str, now_ms: i64) -> StoreResult<Place> {
        let sku = self.room_sku(event_id).await?;
        let call = call::claim_room(&self.keys, (sku, event_id), user, now_ms);
        let reply: Vec<String> = self.run(&call).await?;
        Ok(call::parse_place(&reply)?.place)
    }

    async fn open_rooms(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
        let mut conn = self.conn.clone();
        // Rooms ended over a retention time ago leave the list (their keys expire too).
        let forgotten = now_ms.saturating_sub(crate::stock::room::ROOM_RETAIN_MS);
        conn.zrembyscore::<_, _, _, ()>(self.keys.rooms(), "-inf", forgotten)
            .await
            .map_err(unavailable)?;
        let mut ids: Vec<i64> = conn
            .zrangebyscore(self.keys.rooms(), format!("({now_ms}"), "+inf")
            .await
            .map_err(unavailable)?;
        ids.sort_unstable();
        Ok(ids)
    }
}
