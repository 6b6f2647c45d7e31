//! The waiting room at the edge: `POST /api/events/{id}/queue` (join: a solved challenge for a
//! place and its signed place token) and `GET /api/events/{id}/queue` (poll: where the place
//! stands), and the replies of the three `flashsale.Queue` calls behind them.
//!
//! The warehouse holds every sale's line; the edge only caches it. A poll is answered from the
//! instance's [`RoomSnapshot`] of the sale, refreshed by one `Queue/GetQueue` at most every
//! [`GateConfig::queue_refresh_ms`](super::GateConfig::queue_refresh_ms) whatever the crowd,
//! and from the [place token](crate::place) the page shows, which carries the place's ticket: a
//! waiting buyer costs the warehouse nothing. Once the snapshot shows the place opened (its
//! ticket at or before the last opened one: an admission on standby still waits, at the
//! front), the poll asks `Queue/ClaimAdmission` once; an
//! `ADMITTED` answer is remembered until it lapses, and answered with a purchase link whose
//! nonce is the place's, so one place is one purchase. Sold out reaches every poller from the
//! snapshot at once. A poll that asks to wait ([`super::WAIT_HEADER`]) is held by an adapter that
//! can ([`Hold`]) until that news comes.
//!
//! What it deliberately does not do: decide who is admitted (the warehouse does, with the
//! [`admission`](crate::admission) rules, beside the stock), or mint a link for a waiting-room
//! sale any other way (`POST …/link` is refused `queue_required` for one).

use super::hold::Hold;
use super::origin::{Call, Seat};
use super::response::{ok_json, Response, NO_STORE};
use super::routes::{LinkBody, Minted};
use super::state::{Claim, GateState, RoomSnapshot, SaleEntry, SaleView};
use super::{refuse, Gate, Shopper, Step, Verdict};
use crate::admission::{self, Place, QueueState, QueueView, Room, Ticket, ViewFacts};
use crate::limit::LimitKey;
use crate::place::{self, PlaceClaims, PlaceVerdict};
use crate::proto::flashsale::{ClaimAdmissionReq, JoinQueueReq, PlaceState, QueuePlace, QueueReq};
use crate::refusal::{Reason, Refusal};
use serde::Serialize;

/// What a join or a poll answers.
#[derive(Serialize)]
struct Answer<'a> {
    state: &'static str,
    position: u64,
    ahead: u64,
    /// `null` when nothing is moving (no estimate can be made).
    eta_s: Option<u64>,
    poll_after_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    admitted_until_ms: Option<i64>,
    /// The purchase link, when admitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<Minted>,
    /// The place token, on a join.
    #[serde(skip_serializing_if = "Option::is_none")]
    place: Option<&'a str>,
    server_time_ms: i64,
}

fn answer(view: &QueueView, link: Option<Minted>, place: Option<&str>, now: i64) -> Response {
    let body = Answer {
        state: view.state.as_str(),
        position: view.position,
        ahead: view.ahead,
        eta_s: view.eta_s,
        poll_after_ms: view.poll_after_ms,
        admitted_until_ms: view.admitted_until_ms,
        link,
        place,
        server_time_ms: now,
    };
    ok_json(200, &body, NO_STORE)
}

/// A final state's view: nothing more to wait for.
fn settled(state: QueueState) -> QueueView {
    QueueView {
        state,
        position: 0,
        ahead: 0,
        eta_s: None,
        poll_after_ms: 0,
        admitted_until_ms: None,
    }
}

fn waiting_view(
    sale: &SaleView,
    user: &str,
    ahead: u64,
    room: Room,
    rate: f64,
    now: i64,
) -> QueueView {
    admission::view(&ViewFacts {
        user,
        place: Place::Waiting { ahead },
        room,
        admit_rate_per_s: rate,
        start_ms: sale.start_ms,
        end_ms: sale.end_ms,
        now_ms: now,
    })
}

fn refusal_response(refusal: Refusal) -> Response {
    refusal.into()
}

/// The sale, if it has a waiting room that is not over.
fn room_sale(sale: SaleView, now: i64) -> Step<SaleView> {
    if !sale.waiting_room {
        return Err(refuse(Reason::NoQueue));
    }
    if now >= sale.end_ms {
        return Err(refuse(Reason::SaleEnded));
    }
    Ok(sale)
}

impl Gate {
    /// `POST /api/events/{id}/queue`: a solved challenge (the body `POST …/link` takes) for a
    /// place in the sale's line, from the pre-queue's opening to the end. Forwarded as
    /// `Queue/JoinQueue` unless the edge already knows the answer (no room, too early, over,
    /// sold out); gathered with the sale's other joins on a gate that gathers them.
    pub(super) fn join(&self, state: &mut GateState, who: &Shopper, id: i64) -> Step<Verdict> {
        let now = who.req.now_ms;
        let answer: LinkBody<'_> =
            serde_json::from_slice(who.req.body).map_err(|_| refuse(Reason::BadRequest))?;
        let sale = room_sale(self.sale_of(state, who, id)?, now)?;
        let opens_ms = sale.queue_opens_ms();
        if now < opens_ms {
            let wait = opens_ms.abs_diff(now);
            return Err(Verdict::Refuse(Refusal::after(Reason::TooEarly, wait)));
        }
        let solved = self.solved(who, id, &answer)?;
        if state.line_sold_out(id) && now >= sale.start_ms {
            return Err(refuse(Reason::SoldOut));
        }
        let seat = Seat {
            sale,
            user_id: who.user.id.clone(),
            link_nonce: solved.link_nonce(),
        };
        let seat = match self.gather(state, seat, now) {
            Ok(gathered) => return Ok(gathered),
            Err(seat) => seat,
        };
        let message = JoinQueueReq {
            event_id: id,
            user_id: seat.user_id.clone(),
        };
        Ok(self.forward(state, Call::JoinQueue(Box::new(seat)), &message, now))
    }

    /// `GET /api/events/{id}/queue`: where the place in the place token stands, from the cached
    /// snapshot (refreshed first when stale), a remembered claim, or the warehouse's claim once
    /// the snapshot shows the place opened.
    pub(super) fn poll(&self, state: &mut GateState, who: &Shopper, id: i64) -> Step<Verdict> {
        let now = who.req.now_ms;
        let token = who
            .req
            .headers
            .place
            .ok_or_else(|| refuse(Reason::BadPlace))?;
        let claims = match place::verify(&self.config.link_keys, token, &who.user.id, id, now) {
            PlaceVerdict::Valid(claims) => claims,
            // A place of a sale that is over: the wait is over too.
            PlaceVerdict::Expired => {
                return Ok(Verdict::Respond(answer(
                    &settled(QueueState::Ended),
                    None,
                    None,
                    now,
                )))
            }
            _ => return Err(refuse(Reason::BadPlace)),
        };
        let paced = LimitKey::Place(id, &who.user.id);
        self.limit(state, who.pass, paced, &self.config.limits.place, now)?;
        // Any remembered view will do (a poll needs only the sale's window and terms): the
        // snapshot is the poll's one origin cost. With none, the line's refresh brings the view
        // (a valid place token was minted for a room sale), so an edge that keeps nothing
        // between requests makes one call a poll, not three; the sale is read (through the
        // directory) only if the line came without it or was refused.
        if !state.sales.contains_key(&id) && state.line(id).is_none() {
            self.snapshot(state, id, now)?;
        }
        let sale = match state.sales.get(&id) {
            Some(SaleEntry {
                sale: Some(sale), ..
            }) => *sale,
            // Gone, for as long as a view lasts (then asked again: a sale may be put anew).
            Some(SaleEntry {
                sale: None,
                fetched_ms,
                ..
            }) if now.saturating_sub(*fetched_ms) < self.config.sale_ttl_ms => {
                return Err(refuse(Reason::UnknownResource))
            }
            _ => self.sale(state, id, now, false)?,
        };
        if !sale.waiting_room {
            return Err(refuse(Reason::NoQueue));
        }
        if now >= sale.end_ms {
            let ended = answer(&settled(QueueState::Ended), None, None, now);
            return Ok(Verdict::Respond(ended));
        }
        let seat = Seat {
            sale,
            user_id: who.user.id.clone(),
            link_nonce: claims.link_nonce,
        };
        if let Some(claim) = state.claim(id, &seat.user_id, now) {
            if matches!(claim, Claim::Admitted { .. }) {
                // An admission's answer reads the copy of the line (sold out, a unit free):
                // keep it fresh, at the same one call a refresh as the waiting places.
                self.snapshot(state, id, now)?;
            }
            return Ok(Verdict::Respond(
                self.claim_answer(state, &seat, claim, now),
            ));
        }
        let snapshot = self.snapshot(state, id, now)?;
        if snapshot.opened(claims.ticket) {
            let message = ClaimAdmissionReq {
                event_id: id,
                user_id: seat.user_id.clone(),
            };
            let call = Call::ClaimAdmission(Box::new(seat));
            return Ok(self.forward(state, call, &message, now));
        }
        let mut view = waiting_view(
            &sale,
            &seat.user_id,
            snapshot.ahead_of(claims.ticket),
            snapshot.room(),
            snapshot.admit_rate_per_s(),
            now,
        );
        // Only a waiting place has news to wait for.
        let waits = view.state == QueueState::Waiting;
        let hold = (self.holds_polls() && waits).then(|| Hold {
            place: GateState::claim_key(id, &seat.user_id),
            seq: 0,
            event_id: id,
            until_ms: now,
            ahead: view.ahead,
            line_ms: state.queues.get(&id).map_or(now, |entry| entry.fetched_ms),
            refresh_ms: self.config.queue_refresh_ms,
        });
        let hold = hold.and_then(|hold| hold.asked(who.req.headers.wait, now));
        if hold.is_some() {
            // The next poll is held again: come back at once.
            view.poll_after_ms = 0;
        }
        let mut response = answer(&view, None, None, now);
        response.hold = hold.map(Box::new);
        Ok(Verdict::Respond(response))
    }

    /// The sale's cached waiting room: fresh, or refreshed (one call per refresh interval per
    /// instance; while it is out, or the breaker is open, the last snapshot answers, and with
    /// none a poll is asked to come back shortly rather than cost the origin another call).
    pub(super) fn snapshot(&self, state: &mut GateState, id: i64, now: i64) -> Step<RoomSnapshot> {
        let every = self.config.queue_refresh_ms;
        let entry = state.queues.get(&id).copied().unwrap_or_default();
        if let Some(snapshot) = entry.snapshot {
            // Before the start nobody is admitted, so a pre-queue's line need not be fresher
            // than its batches: a crowd joining costs one call a second, not two.
            let before_start = state
                .sales
                .get(&id)
                .and_then(|entry| entry.sale)
                .is_some_and(|sale| now < sale.start_ms);
            if now.saturating_sub(entry.fetched_ms) < every
                || (before_start && self.batch_brings_line(state, id, entry.fetched_ms, now))
            {
                return Ok(snapshot);
            }
        }
        let may_ask = entry
            .asked_ms
            .is_none_or(|at| now.saturating_sub(at) >= every);
        if may_ask {
            let verdict = self.forward(
                state,
                Call::GetQueue { event_id: id },
                &QueueReq { event_id: id },
                now,
            );
            if matches!(verdict, Verdict::Forward(_)) {
                state.queues.entry(id).or_default().asked_ms = Some(now);
                return Err(verdict);
            }
            return entry.snapshot.ok_or(verdict);
        }
        if let Some(snapshot) = entry.snapshot {
            return Ok(snapshot);
        }
        let asked = entry.asked_ms.unwrap_or(now);
        let wait = every.saturating_sub(now.saturating_sub(asked)).max(0) as u64;
        Err(Verdict::Refuse(Refusal::after(Reason::Unavailable, wait)))
    }

    /// The answer to `Queue/JoinQueue`: the place with its token, or why there is none.
    pub(super) fn joined(
        &self,
        state: &mut GateState,
        seat: &Seat,
        place: &QueuePlace,
        now: i64,
    ) -> Response {
        let sale = &seat.sale;
        let place_state = PlaceState::try_from(place.state).unwrap_or(PlaceState::Unspecified);
        let claims = PlaceClaims {
            event_id: sale.id,
            user_id: seat.user_id.clone(),
            ticket: Ticket::from_raw(place.ticket),
            expires_ms: sale.end_ms,
            link_nonce: seat.link_nonce,
        };
        let token = || place::mint(&self.config.link_keys, &claims);
        match place_state {
            PlaceState::PlaceWaiting => {
                let Some(token) = token() else {
                    return refusal_response(Refusal::new(Reason::BadRequest));
                };
                let snapshot = state.line(sale.id);
                let rank = place.rank.max(0) as u64;
                let view = match snapshot {
                    Some(s) => waiting_view(
                        sale,
                        &seat.user_id,
                        rank.saturating_sub(s.opened),
                        s.room(),
                        s.admit_rate_per_s(),
                        now,
                    ),
                    // No snapshot yet: the warehouse has just said "waiting", so not sold out;
                    // the first poll brings the figures.
                    None => {
                        let room = Room {
                            remaining: u64::from(sale.remaining).max(1),
                            held: 0,
                            pending: 0,
                        };
                        waiting_view(sale, &seat.user_id, rank, room, 0.0, now)
                    }
                };
                answer(&view, None, Some(&token), now)
            }
            PlaceState::PlaceAdmitted | PlaceState::PlaceLapsed => {
                let Some(token) = token() else {
                    return refusal_response(Refusal::new(Reason::BadRequest));
                };
                let claim = self.learn_claim(state, seat, place, now);
                self.claim_response(seat, claim, Some(&token), now)
            }
            PlaceState::PlaceTooEarly => {
                let wait = place.opens_ms.saturating_sub(now).max(0) as u64;
                refusal_response(Refusal::after(Reason::TooEarly, wait))
            }
            PlaceState::PlaceSoldOut => refusal_response(Refusal::new(Reason::SoldOut)),
            PlaceState::PlaceEnded => refusal_response(Refusal::new(Reason::SaleEnded)),
            PlaceState::PlaceNoPlace | PlaceState::Unspecified => {
                refusal_response(Refusal::after(Reason::Unavailable, 1_000))
            }
        }
    }

    /// The answer to `Queue/ClaimAdmission`: a purchase link when admitted, else where the
    /// place stands.
    pub(super) fn claimed(
        &self,
        state: &mut GateState,
        seat: &Seat,
        place: &QueuePlace,
        now: i64,
    ) -> Response {
        let place_state = PlaceState::try_from(place.state).unwrap_or(PlaceState::Unspecified);
        match place_state {
            PlaceState::PlaceAdmitted
            | PlaceState::PlaceLapsed
            | PlaceState::PlaceSoldOut
            | PlaceState::PlaceEnded => {
                let claim = self.learn_claim(state, seat, place, now);
                self.claim_answer(state, seat, claim, now)
            }
            // The snapshot ran ahead of the line (or the line opens later): still waiting,
            // at the front.
            PlaceState::PlaceWaiting | PlaceState::PlaceTooEarly => {
                let room = Room {
                    remaining: u64::from(seat.sale.remaining).max(1),
                    held: 0,
                    pending: 0,
                };
                let view = waiting_view(&seat.sale, &seat.user_id, 0, room, 0.0, now);
                answer(&view, None, None, now)
            }
            PlaceState::PlaceNoPlace => refusal_response(Refusal::new(Reason::QueueRequired)),
            PlaceState::Unspecified => refusal_response(Refusal::after(Reason::Unavailable, 1_000)),
        }
    }

    /// Remembers what the warehouse said of an admitted (or over) place: an admission until it
    /// lapses, sold out for a moment (units could be added again), the end of a place until
    /// the sale ends.
    fn learn_claim(
        &self,
        state: &mut GateState,
        seat: &Seat,
        place: &QueuePlace,
        now: i64,
    ) -> Claim {
        let place_state = PlaceState::try_from(place.state).unwrap_or(PlaceState::Unspecified);
        let (claim, kept_until_ms) = match place_state {
            PlaceState::PlaceAdmitted => {
                let until_ms = place.admitted_until_ms;
                (Claim::Admitted { until_ms }, until_ms)
            }
            PlaceState::PlaceSoldOut => (
                Claim::SoldOut,
                now.saturating_add(self.config.queue_refresh_ms),
            ),
            _ => (Claim::Ended, seat.sale.end_ms),
        };
        state.remember_claim(seat.sale.id, &seat.user_id, claim, kept_until_ms);
        claim
    }

    /// A claim's answer to a poll. An admission not used by the time the line is sold out (its
    /// buyer was slow) is told so with the line, from the instance's copy as the waiting places
    /// keep it fresh: a link now would only buy a refusal.
    ///
    /// An open admission while the copy shows no unit free (the pool was lowered, or the copy
    /// is older than the buys; a move opens no more places than leave each a unit)
    /// waits at the front instead, polling each second: a link now would buy `SOLD_OUT` (and
    /// the page would take that for the end), and a unit that comes back shows in the copy
    /// within a refresh.
    fn claim_answer(&self, state: &GateState, seat: &Seat, claim: Claim, now: i64) -> Response {
        if let Claim::Admitted { until_ms } = claim {
            let line = state.line(seat.sale.id);
            if line.is_some_and(|l| l.sold_out) {
                return answer(&settled(QueueState::SoldOut), None, None, now);
            }
            if now < until_ms && line.is_some_and(|l| l.remaining == 0) {
                return answer(&admission::front_view(until_ms - now), None, None, now);
            }
        }
        self.claim_response(seat, claim, None, now)
    }

    /// What a claim means for the buyer: admitted with a link minted now, or a final state.
    fn claim_response(&self, seat: &Seat, claim: Claim, place: Option<&str>, now: i64) -> Response {
        match claim {
            Claim::Admitted { until_ms } if until_ms > now => {
                let minted =
                    self.mint_link(&seat.sale, &seat.user_id, seat.link_nonce, until_ms, now);
                match minted {
                    Ok(link) => {
                        let view = QueueView {
                            state: QueueState::Admitted,
                            position: 0,
                            ahead: 0,
                            eta_s: Some(0),
                            poll_after_ms: 0,
                            admitted_until_ms: Some(until_ms),
                        };
                        answer(&view, Some(link), place, now)
                    }
                    Err(refusal) => refusal.into(),
                }
            }
            Claim::SoldOut => answer(&settled(QueueState::SoldOut), None, place, now),
            Claim::Admitted { .. } | Claim::Ended => {
                answer(&settled(QueueState::Ended), None, place, now)
            }
        }
    }
}
