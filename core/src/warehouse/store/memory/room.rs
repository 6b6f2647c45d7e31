//! The memory store's waiting rooms: `room_put.lua`, `room_join.lua`, `room_move.lua` and
//! `room_claim.lua`, step for step, through [`crate::admission`]'s rules ([`join`],
//! [`Room::admits`], [`Room::sold_out`], [`openings`], [`lapses_at`], [`opens_at`],
//! [`rate_step`]), each one critical
//! section. The line is kept as the Redis sorted set is: scores ([`Ticket::score`]), ties by
//! user; the admitted and the opened places are two prefixes of it, the open admissions a map.
//!
//! What it does not do: anything the scripts do not (it is their oracle).

use std::collections::{BTreeSet, HashMap};

use super::{refused, Inner, MemoryStore};
use crate::admission::{join, lapses_at, openings, opens_at, rate_step};
use crate::admission::{Join, JoinFacts, RateMark, Room, Rules};
use crate::admission::{Ticket, ARRIVAL_SCORE};
use crate::stock::room::{Joined, Moved, Place, PlaceState, Snapshot, MOVE_MAX_ADMITS};
use crate::stock::{Sale, StockError};
use crate::warehouse::store::{Rooms, StoreResult};

/// One sale's room (the Redis store's `room:EID` hash and sorted sets).
#[derive(Default)]
pub(super) struct RoomRecord {
    /// The settings; `None`: the room was turned off (its line is kept, unused).
    rules: Option<Rules>,
    /// User → score.
    places: HashMap<String, u64>,
    /// `(score, user)`: the line in order.
    line: BTreeSet<(u64, String)>,
    arrivals: u64,
    admitted: u64,
    /// The score of the last admitted place.
    through: u64,
    /// Of the admitted, opened so far.
    opened: u64,
    /// The score of the last opened place.
    opened_through: u64,
    began: bool,
    /// Open admissions: user → when the admission lapses.
    pending: HashMap<String, i64>,
    rate: RateMark,
    sold_out: bool,
}

impl RoomRecord {
    /// Where `user`'s place stands (room_join.lua's and room_claim.lua's common tail).
    fn place(&self, user: &str, score: u64, ended: bool, now_ms: i64) -> Place {
        let rank = self.line.range(..(score, user.to_owned())).count() as u64;
        let state = if ended {
            PlaceState::Ended
        } else if rank < self.opened {
            match (self.pending.get(user), self.rules) {
                (Some(&until_ms), Some(rules)) if until_ms > now_ms => PlaceState::Admitted {
                    from_ms: opens_at(&rules, until_ms),
                    until_ms,
                },
                _ => PlaceState::Lapsed,
            }
        } else if self.sold_out {
            PlaceState::SoldOut
        } else {
            PlaceState::Waiting
        };
        Place {
            state,
            ticket: Some(Ticket::from_score(score)),
            rank: Some(rank),
        }
    }
}

/// Whether the room's line may be used: it has settings, and its sale is one pool (as the
/// Redis store has it: the bound is decided in the pool's slot, so a split sale has no line even
/// if a room was put on it at the store; the service never puts one).
fn has_line(sale: &Sale, room: &RoomRecord) -> bool {
    room.rules.is_some() && sale.subpools <= 1
}

fn no_room(event_id: i64) -> StockError {
    StockError::FailedPrecondition(format!("event {event_id} has no waiting room"))
}

impl Inner {
    /// The sale (whether it has ended) and its room, or why not.
    fn room_mut(
        &mut self,
        event_id: i64,
        now_ms: i64,
    ) -> Result<(&Sale, bool, &mut RoomRecord), StockError> {
        let Some(record) = self.sales.get(&event_id) else {
            return Err(StockError::NotFound(format!("event {event_id}")));
        };
        let ended = record.state.closed || now_ms >= record.state.sale.end_ms;
        match self.rooms.get_mut(&event_id) {
            Some(room) if has_line(&record.state.sale, room) => {
                Ok((&record.state.sale, ended, room))
            }
            _ => Err(no_room(event_id)),
        }
    }
}

impl Rooms for MemoryStore {
    async fn put_room(&self, sale: &Sale, rules: Option<&Rules>) -> StoreResult<()> {
        let mut inner = self.inner();
        match rules {
            Some(rules) => inner.rooms.entry(sale.id).or_default().rules = Some(*rules),
            None => {
                if let Some(room) = inner.rooms.get_mut(&sale.id) {
                    room.rules = None;
                }
            }
        }
        Ok(())
    }

    async fn room(&self, event_id: i64) -> StoreResult<Option<Rules>> {
        Ok(self.inner().rooms.get(&event_id).and_then(|r| r.rules))
    }

    async fn join_room(
        &self,
        event_id: i64,
        user: &str,
        secret: &[u8],
        now_ms: i64,
    ) -> StoreResult<Joined> {
        let mut inner = self.inner();
        let (sale, ended, room) = match inner.room_mut(event_id, now_ms) {
            Ok(found) => found,
            Err(e) => return refused(e),
        };
        let rules = room.rules.expect("a room with settings");
        let existing = room.places.get(user).copied();
        // Once the line has begun to move, every new place is an arrival, whatever the
        // caller's clock says (the admitted places stay a prefix of the line).
        let now = if room.began {
            now_ms.max(sale.start_ms)
        } else {
            now_ms
        };
        let facts = JoinFacts {
            sale: event_id,
            user,
            start_ms: sale.start_ms,
            end_ms: if ended { i64::MIN } else { sale.end_ms },
            now_ms: now,
            existing: existing.map(Ticket::from_score),
            arrivals: room.arrivals,
        };
        let score = match join(&rules, secret, &facts) {
            Join::Again(_) => existing.expect("joined before"),
            Join::Ended => return Ok(without(PlaceState::Ended)),
            Join::TooEarly { opens_ms } => {
                return Ok(without(PlaceState::TooEarly { opens_ms }));
            }
            Join::Drawn(_) | Join::Arrived(_) if room.sold_out => {
                return Ok(without(PlaceState::SoldOut));
            }
            Join::Drawn(ticket) => ticket.score(),
            Join::Arrived(ticket) => {
                room.arrivals += 1;
                ticket.score()
            }
        };
        let new = existing.is_none();
        if new {
            room.places.insert(user.to_owned(), score);
            room.line.insert((score, user.to_owned()));
        }
        Ok(Joined {
            place: room.place(user, score, ended, now_ms),
            new,
        })
    }

    async fn move_room(&self, event_id: i64, now_ms: i64) -> StoreResult<Moved> {
        let mut inner = self.inner();
        let inner = &mut *inner;
        let held: i64 = inner
            .orders
            .values()
            .filter(|o| o.event_id == event_id && o.status.holds_units())
            .map(|o| o.qty)
            .sum();
        let Some(record) = inner.sales.get(&event_id) else {
            return refused(StockError::NotFound(format!("event {event_id}")));
        };
        let (sale, remaining) = (&record.state.sale, record.state.remaining);
        let ended = record.state.closed || now_ms >= sale.end_ms;
        let room = match inner.rooms.get_mut(&event_id) {
            Some(room) if has_line(sale, room) => room,
            _ => return refused(no_room(event_id)),
        };
        let rules = room.rules.expect("checked");
        let (mut lapsed, mut bought, mut admits) = (0, 0, 0);
        if !ended {
            let before = room.pending.len();
            room.pending.retain(|_, until| *until > now_ms);
            lapsed = (before - room.pending.len()) as u64;
            let before = room.pending.len();
            room.pending
                .retain(|user, _| record.counted.get(user).copied().unwrap_or(0) <= 0);
            bought = (before - room.pending.len()) as u64;
        }
        let standby = room.admitted - room.opened;
        let counts = Room {
            remaining: remaining.max(0) as u64,
            held: held.max(0) as u64,
            pending: room.pending.len() as u64 + standby,
        };
        let mut opens = 0;
        room.sold_out = false;
        if !ended && now_ms >= sale.start_ms {
            room.began = true;
            room.sold_out = counts.sold_out();
            let free = counts.admits(&rules).min(MOVE_MAX_ADMITS);
            let next = room.line.iter().skip(room.admitted as usize);
            if let Some((n, (score, _))) = (1..).zip(next.take(free as usize)).last() {
                room.through = *score;
                room.admitted += n;
                admits = n;
            }
            let open = room.pending.len() as u64;
            let on_standby = room.admitted - room.opened;
            let per_user = sale.per_user_limit.max(1) as u64;
            let n = openings(counts.remaining, open, on_standby, per_user).min(MOVE_MAX_ADMITS);
            let next: Vec<(u64, String)> = room
                .line
                .iter()
                .skip(room.opened as usize)
                .take(n as usize)
                .cloned()
                .collect();
            for (score, user) in next {
                room.pending.insert(user, lapses_at(&rules, now_ms));
                room.opened_through = score;
                room.opened += 1;
                opens += 1;
            }
            room.rate = rate_step(room.rate, room.opened, sale.start_ms, now_ms);
        }
        Ok(Moved {
            snapshot: Snapshot {
                places: room.line.len() as u64,
                drawn: room.line.range(..(ARRIVAL_SCORE, String::new())).count() as u64,
                admitted: room.admitted,
                through: (room.admitted > 0).then(|| Ticket::from_score(room.through)),
                opened: room.opened,
                opened_through: (room.opened > 0).then(|| Ticket::from_score(room.opened_through)),
                pending: room.pending.len() as u64 + room.admitted - room.opened,
                remaining: counts.remaining,
                held: counts.held,
                sold_out: room.sold_out,
                rate_milli_per_s: room.rate.milli_per_s,
            },
            admitted: admits,
            lapsed,
            bought,
            opened: opens,
        })
    }

    async fn claim_room(&self, event_id: i64, user: &str, now_ms: i64) -> StoreResult<Place> {
        let mut inner = self.inner();
        let (_, ended, room) = match inner.room_mut(event_id, now_ms) {
            Ok(found) => found,
            Err(e) => return refused(e),
        };
        Ok(match room.places.get(user) {
            Some(&score) => room.place(user, score, ended, now_ms),
            None if ended => Place::without(PlaceState::Ended),
            None => Place::without(PlaceState::NoPlace),
        })
    }

    async fn open_rooms(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
        let inner = self.inner();
        Ok(inner
            .rooms
            .iter()
            .filter(|(id, room)| {
                room.rules.is_some()
                    && inner
                        .sales
                        .get(id)
                        .is_some_and(|s| s.state.sale.end_ms > now_ms)
            })
            .map(|(id, _)| *id)
            .collect())
    }
}

fn without(state: PlaceState) -> Joined {
    Joined {
        place: Place::without(state),
        new: false,
    }
}
