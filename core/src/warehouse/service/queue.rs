//! `flashsale.Queue`, the waiting room's service (issue 14), and the room's part of `PutEvent`
//! and `GetEvent` (the `Event.waiting_room` settings validated, stored and returned).
//!
//! A join needs the warehouse's draw secret (`--queue-secret`): without one, every join of a
//! waiting-room sale, and every `PutEvent` asking for a room, is `FAILED_PRECONDITION` saying
//! so. A secret made up per process would draw each warehouse's pre-queue joins under another
//! key, and a restart would forget the key a pre-queue was drawn under, so the order could not
//! be checked afterwards; an operator sets one secret for all warehouses instead.
//!
//! What it does not do: decide (the store applies [`crate::admission`]'s rules) or answer a
//! buyer (the edge turns a [`QueueSnapshot`] into positions and ETAs).

use tonic::{Request, Response, Status};

use super::{invalid, positive, status_of, text, WarehouseService};
use crate::admission::{Rules, JOIN_MANY_MAX};
use crate::proto::flashsale::{
    queue_server::Queue, ClaimAdmissionReq, Event, EventState, JoinQueueManyReq, JoinQueueReq,
    PlaceState as Wire, QueuePlace, QueuePlaces, QueueReq, QueueSnapshot,
};
use crate::stock::room::{Place, PlaceState, Snapshot};
use crate::warehouse::service::now_ms;
use crate::warehouse::store::Store;

/// The shortest draw secret accepted (bytes).
pub const MIN_QUEUE_SECRET_LEN: usize = 32;
/// The longest pre-queue (ms): a day.
pub const MAX_PREQUEUE_MS: i64 = 86_400_000;
/// The highest admit factor.
pub const MAX_ADMIT_FACTOR: i32 = 100;
/// The shortest and longest life of an unused admission (ms), when set.
pub const ADMISSION_TTL_MS: std::ops::RangeInclusive<i64> = 1_000..=3_600_000;

/// The room settings of a `PutEvent`, validated, defaults applied (`None`: no waiting room).
/// `subpools` is the sale's validated split.
pub(super) fn room_rules(e: &Event, subpools: u32) -> Result<Option<Rules>, Status> {
    if !(0..=MAX_PREQUEUE_MS).contains(&e.prequeue_ms) {
        return Err(invalid(
            "prequeue_ms",
            &format!("must be 0 up to {MAX_PREQUEUE_MS} (a day)"),
        ));
    }
    if !(0..=MAX_ADMIT_FACTOR).contains(&e.admit_factor) {
        return Err(invalid(
            "admit_factor",
            &format!(
                "must be 0 (the default, {}) up to {MAX_ADMIT_FACTOR}",
                Rules::DEFAULT_ADMIT_FACTOR
            ),
        ));
    }
    if e.admission_ttl_ms != 0 && !ADMISSION_TTL_MS.contains(&e.admission_ttl_ms) {
        return Err(invalid(
            "admission_ttl_ms",
            &format!(
                "must be 0 (the default, {} ms) or {} up to {} ms",
                Rules::DEFAULT_ADMISSION_TTL_MS,
                ADMISSION_TTL_MS.start(),
                ADMISSION_TTL_MS.end()
            ),
        ));
    }
    if !e.waiting_room {
        return Ok(None);
    }
    if subpools > 1 {
        return Err(invalid(
            "waiting_room",
            "a sale split in sub-pools (subpools > 1) cannot have a waiting room: its line is \
             decided against the pool in one Redis slot, and a split pool spans several",
        ));
    }
    Ok(Some(Rules {
        prequeue_ms: e.prequeue_ms,
        admit_factor: match e.admit_factor {
            0 => Rules::DEFAULT_ADMIT_FACTOR,
            n => n as u32,
        },
        admission_ttl_ms: match e.admission_ttl_ms {
            0 => Rules::DEFAULT_ADMISSION_TTL_MS,
            n => n,
        },
    }))
}

/// A sale's answer with its room settings (as stored: defaults applied).
pub(super) fn with_room(mut state: EventState, rules: Option<Rules>) -> EventState {
    if let (Some(event), Some(r)) = (state.event.as_mut(), rules) {
        event.waiting_room = true;
        event.prequeue_ms = r.prequeue_ms;
        event.admit_factor = r.admit_factor.try_into().unwrap_or(i32::MAX);
        event.admission_ttl_ms = r.admission_ttl_ms;
    }
    state
}

/// The refusal of a room without a draw secret.
pub(super) fn no_secret() -> Status {
    Status::failed_precondition(
        "waiting rooms need the warehouse's draw secret: start it with --queue-secret \
         (FLASHGATE_QUEUE_SECRET, hex, at least 32 bytes; the same on every warehouse)",
    )
}

fn place_msg(place: Place, now: i64) -> QueuePlace {
    let (state, (admitted_from_ms, admitted_until_ms), opens_ms) = match place.state {
        PlaceState::Waiting => (Wire::PlaceWaiting, (0, 0), 0),
        PlaceState::Admitted { from_ms, until_ms } => (Wire::PlaceAdmitted, (from_ms, until_ms), 0),
        PlaceState::SoldOut => (Wire::PlaceSoldOut, (0, 0), 0),
        PlaceState::Ended => (Wire::PlaceEnded, (0, 0), 0),
        PlaceState::TooEarly { opens_ms } => (Wire::PlaceTooEarly, (0, 0), opens_ms),
        PlaceState::Lapsed => (Wire::PlaceLapsed, (0, 0), 0),
        PlaceState::NoPlace => (Wire::PlaceNoPlace, (0, 0), 0),
    };
    QueuePlace {
        state: state.into(),
        ticket: place.ticket.map_or(0, |t| t.get()),
        rank: place.rank.map_or(0, |r| r.try_into().unwrap_or(i64::MAX)),
        admitted_until_ms,
        opens_ms,
        server_time_ms: now,
        admitted_from_ms,
    }
}

fn count(n: u64) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

fn snapshot_msg(event_id: i64, s: Snapshot, now: i64) -> QueueSnapshot {
    QueueSnapshot {
        event_id,
        places: count(s.places),
        drawn: count(s.drawn),
        admitted: count(s.admitted),
        admitted_through: s.through.map_or(0, |t| t.get()),
        opened: count(s.opened),
        opened_through: s.opened_through.map_or(0, |t| t.get()),
        pending: count(s.pending),
        remaining: count(s.remaining),
        held: count(s.held),
        sold_out: s.sold_out,
        admit_rate_per_s: s.rate_milli_per_s as f64 / 1_000.0,
        server_time_ms: now,
        sale: None,
    }
}

impl<S: Store> WarehouseService<S> {
    /// `GetQueue`'s answer: sale `event`'s line after one move, with the sale's state beside it
    /// (`NOT_FOUND` for no such sale), so an edge refreshes both with one call.
    async fn line(&self, event: i64) -> Result<QueueSnapshot, Status> {
        let sale = self.sale_state(event).await?;
        let now = now_ms();
        let moved = self.store.move_room(event, now).await.map_err(status_of)?;
        self.metrics.room_moved(&moved);
        Ok(QueueSnapshot {
            sale: Some(sale),
            ..snapshot_msg(event, moved.snapshot, now)
        })
    }

    /// `users` joined to sale `event`'s line one after the other, each by the single join's
    /// script (idempotent per user; arrivals are numbered in this order): their places. About a
    /// millisecond per 20 users here; `JoinQueueMany` calls come once a second per edge instance.
    async fn join_users(&self, event: i64, users: &[&str]) -> Result<Vec<QueuePlace>, Status> {
        let secret = self.queue_secret.as_deref().ok_or_else(no_secret)?;
        let now = now_ms();
        let (mut places, mut new) = (Vec::with_capacity(users.len()), 0);
        for user in users {
            let joined = self
                .store
                .join_room(event, user, secret, now)
                .await
                .map_err(status_of)?;
            new += u64::from(joined.new);
            places.push(place_msg(joined.place, now));
        }
        if new > 0 {
            self.metrics.room.with_label_values(&["joined"]).inc_by(new);
        }
        Ok(places)
    }
}

#[tonic::async_trait]
impl<S: Store> Queue for WarehouseService<S> {
    async fn join_queue(
        &self,
        request: Request<JoinQueueReq>,
    ) -> Result<Response<QueuePlace>, Status> {
        self.track("JoinQueue", async {
            let req = request.get_ref();
            let event = positive("event_id", req.event_id)?;
            let user = text("user_id", &req.user_id, 1, 128)?;
            let mut places = self.join_users(event, &[user]).await?;
            Ok(places.swap_remove(0))
        })
        .await
    }

    async fn join_queue_many(
        &self,
        request: Request<JoinQueueManyReq>,
    ) -> Result<Response<QueuePlaces>, Status> {
        self.track("JoinQueueMany", async {
            let req = request.get_ref();
            let event = positive("event_id", req.event_id)?;
            if req.user_ids.is_empty() || req.user_ids.len() > JOIN_MANY_MAX {
                return Err(invalid(
                    "user_ids",
                    &format!("must name 1 up to {JOIN_MANY_MAX} users"),
                ));
            }
            let users = req
                .user_ids
                .iter()
                .map(|user| text("user_ids", user, 1, 128))
                .collect::<Result<Vec<_>, _>>()?;
            let places = self.join_users(event, &users).await?;
            // The line as it stands after them, so the batch's sender need not ask for it; the
            // joins are made and answered even if this read fails (the sender asks, as before).
            let line = self.line(event).await.ok();
            Ok(QueuePlaces { places, line })
        })
        .await
    }

    async fn get_queue(
        &self,
        request: Request<QueueReq>,
    ) -> Result<Response<QueueSnapshot>, Status> {
        self.track("GetQueue", async {
            let event = positive("event_id", request.get_ref().event_id)?;
            self.line(event).await
        })
        .await
    }

    async fn claim_admission(
        &self,
        request: Request<ClaimAdmissionReq>,
    ) -> Result<Response<QueuePlace>, Status> {
        self.track("ClaimAdmission", async {
            let req = request.get_ref();
            let event = positive("event_id", req.event_id)?;
            let user = text("user_id", &req.user_id, 1, 128)?;
            let now = now_ms();
            let place = self
                .store
                .claim_room(event, user, now)
                .await
                .map_err(status_of)?;
            if matches!(place.state, PlaceState::Admitted { .. }) {
                self.metrics.room.with_label_values(&["claimed"]).inc();
            }
            Ok(place_msg(place, now))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            waiting_room: true,
            ..Event::default()
        }
    }

    #[test]
    fn room_settings_take_their_defaults_and_refuse_what_cannot_be() {
        assert_eq!(
            room_rules(&event(), 1).unwrap(),
            Some(Rules {
                prequeue_ms: 0,
                admit_factor: 2,
                admission_ttl_ms: 30_000
            })
        );
        assert_eq!(room_rules(&Event::default(), 1).unwrap(), None);
        let split = room_rules(&event(), 2).unwrap_err();
        assert_eq!(split.code(), tonic::Code::InvalidArgument);
        assert!(split.message().starts_with("waiting_room:"), "{split:?}");
        for bad in [
            Event {
                prequeue_ms: -1,
                ..event()
            },
            Event {
                admit_factor: -1,
                ..event()
            },
            Event {
                admission_ttl_ms: -1,
                ..event()
            },
            Event {
                admission_ttl_ms: 10,
                ..event()
            },
            // Refused even without a room: a negative setting is a mistake either way.
            Event {
                prequeue_ms: -1,
                ..Event::default()
            },
        ] {
            let refused = room_rules(&bad, 1).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn a_sales_answer_carries_its_room() {
        let state = EventState {
            event: Some(Event::default()),
            ..EventState::default()
        };
        let rules = Rules {
            prequeue_ms: 5,
            admit_factor: 3,
            admission_ttl_ms: 2_000,
        };
        let e = with_room(state.clone(), Some(rules)).event.unwrap();
        assert!(e.waiting_room);
        assert_eq!(
            (e.prequeue_ms, e.admit_factor, e.admission_ttl_ms),
            (5, 3, 2_000)
        );
        assert_eq!(with_room(state.clone(), None), state);
    }
}
