//! Gathered joins: an instance that serves many requests at once (a Worker isolate; see
//! [`Gate::gathering_joins`]) does not send each `POST /api/events/{id}/queue` to the warehouse
//! as a `Queue/JoinQueue` of its own. It gathers a sale's joins for
//! [`GateConfig::queue_join_batch_ms`](super::GateConfig::queue_join_batch_ms) and sends them
//! in one `Queue/JoinQueueMany` (at most [`JOIN_MANY_MAX`] users a call, one call in flight per
//! sale), so a crowd joining costs the warehouse about one call per interval per instance
//! instead of one per place. Each join is answered with its own place token once its batch's
//! reply is in, exactly as a single join's reply would have answered it.
//!
//! The adapter's side is [`Next::Wait`](super::Next::Wait): sleep until the time it names, then
//! [`Exchange::check`](super::Exchange::check). Whichever waiting join of the sale finds its batch
//! due sends it (the Worker under `waitUntil`, so the client that happened to send it cannot
//! cancel the others' joins by going away); the others find their answers in the [`GateState`]
//! when it is back. Nothing depends on one request: a batch whose reply never came back is
//! gathered again after the origin timeout, and a join that waited [`MAX_JOIN_WAIT_MS`] without
//! an answer is answered `503` with a retry time.
//!
//! Fairness: the warehouse decides drawn or arrival by its own clock when the batch arrives, so
//! a batch gathered before the start is sent by [`JOIN_START_LEAD_MS`] before it, and a join
//! made in the pre-queue is drawn however the gathering falls.
//!
//! What it deliberately does not do: decide a place (the warehouse does, per user, as for a
//! single join), or gather on Spin (one request per instance: nothing to gather with).

use std::collections::{HashMap, HashSet, VecDeque};

use super::origin::{Call, Seat};
use super::state::GateState;
use super::{Gate, Verdict};
use crate::admission::JOIN_MANY_MAX;
use crate::proto::flashsale::{JoinQueueManyReq, QueuePlace};
use crate::refusal::{Reason, Refusal};

/// How often a waiting join looks for its answer while its sale's batch is out.
pub const JOIN_TICK_MS: i64 = 50;

/// The longest a join waits for its batch's answer before it is answered `503`.
pub const MAX_JOIN_WAIT_MS: i64 = 15_000;

/// A batch gathered before a sale's start is sent this long before it at the latest, so that
/// it reaches the warehouse in time for its joins to be drawn; joins made closer to the start
/// are gathered for [`JOIN_CLOSE_GATHER_MS`] only, and their batches do not wait for one another.
pub const JOIN_START_LEAD_MS: i64 = 1_000;

/// How long joins are gathered within [`JOIN_START_LEAD_MS`] of the start.
pub const JOIN_CLOSE_GATHER_MS: i64 = 100;

/// How many joins of one sale an instance gathers at most; more are answered `503` until the
/// batches drain.
pub const MAX_GATHERED: usize = 20 * JOIN_MANY_MAX;

/// How long a batch's answers are kept for the joins that wait for them.
const ANSWER_KEEP_MS: i64 = 5_000;

/// What a gathered join does next ([`Gate::join_step`]).
#[derive(Debug)]
pub(super) enum Gathered {
    /// Its answer, or its batch to send (a forward; the join's answer comes with the reply).
    Done(Verdict),
    /// Look again at this time (unix ms).
    Wait(i64),
}

/// One request's join, gathered with the others of its sale: whose it is and when it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinWait {
    /// The place asked for.
    pub seat: Seat,
    /// When the join came in (unix ms).
    pub since_ms: i64,
}

/// A user's answer from a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    Place(PlaceReply),
    Refused(Refusal),
}

/// A batch's `QueuePlace` for one user, kept in the (`Eq`) state: prost derives only
/// `PartialEq` for messages, and this one has no float field, so its equality is total.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PlaceReply(QueuePlace);

impl Eq for PlaceReply {}

/// One sale's gathered joins in an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SaleJoins {
    /// Users waiting to be sent, in arrival order.
    queued: VecDeque<String>,
    /// When the oldest of `queued` came (unix ms).
    opened_ms: i64,
    /// The batches out: their users, when each left, and when it had opened. One at a time
    /// from the start on; before it, batches do not wait for one another.
    out: Vec<(Vec<String>, i64, i64)>,
    /// Every user queued or out (each is sent once however often they join meanwhile).
    members: HashSet<String>,
    /// Users' answers, and when they came.
    answers: HashMap<String, (Answered, i64)>,
    /// When a join came or a batch was answered last (unix ms).
    touched_ms: i64,
    /// A batch was answered without the line (a warehouse from before replies carried it).
    pub(super) lineless: bool,
}

impl SaleJoins {
    /// Whether there is nothing to keep: no join waits and no answer is wanted, or nothing
    /// happened for longer than any join waits (the joins still gathered have all given up).
    pub(super) fn is_idle(&self, now_ms: i64) -> bool {
        let quiet = now_ms.saturating_sub(self.touched_ms);
        quiet >= MAX_JOIN_WAIT_MS + ANSWER_KEEP_MS
            || (self.members.is_empty()
                && self
                    .answers
                    .values()
                    .all(|&(_, at)| now_ms.saturating_sub(at) >= ANSWER_KEEP_MS))
    }

    /// Whether joins are gathered or out and their batch's answer will carry the line.
    pub(super) fn brings_line(&self) -> bool {
        !self.members.is_empty() && !self.lineless
    }

    /// Drops answers nobody came for.
    pub(super) fn prune(&mut self, now_ms: i64) {
        self.answers
            .retain(|_, &mut (_, at)| now_ms.saturating_sub(at) < ANSWER_KEEP_MS);
    }

    fn enqueue(&mut self, user: &str, now_ms: i64) {
        self.touched_ms = now_ms;
        // A new join asks anew: an answer kept from an earlier one is not this one's.
        self.answers.remove(user);
        if self.members.insert(user.to_owned()) {
            if self.queued.is_empty() {
                self.opened_ms = now_ms;
            }
            self.queued.push_back(user.to_owned());
        }
    }

    /// When the queued batch is due: `batch_ms` after its first join, or at once when full; by
    /// [`JOIN_START_LEAD_MS`] before the start of a sale that has not started, and within
    /// [`JOIN_CLOSE_GATHER_MS`] of its first join closer to the start than that.
    fn due_ms(&self, batch_ms: i64, start_ms: i64) -> i64 {
        let opened = self.opened_ms;
        if self.queued.len() >= JOIN_MANY_MAX {
            return opened;
        }
        let due = opened.saturating_add(batch_ms);
        let lead_at = start_ms.saturating_sub(JOIN_START_LEAD_MS);
        if opened < lead_at {
            due.min(lead_at)
        } else if opened < start_ms {
            due.min(opened + JOIN_CLOSE_GATHER_MS)
        } else {
            due
        }
    }

    fn answer(&mut self, users: &[String], answers: impl Iterator<Item = Answered>, now: i64) {
        self.touched_ms = now;
        for (user, answer) in users.iter().zip(answers) {
            self.members.remove(user);
            self.answers.insert(user.clone(), (answer, now));
        }
    }
}

impl Gate {
    /// A gate for an adapter that serves many requests at once and can keep a join waiting
    /// while it gathers the sale's other joins ([`Next::Wait`](super::Next::Wait)): its
    /// waiting-room joins go to the warehouse together, in `Queue/JoinQueueMany`.
    pub fn gathering_joins(mut self) -> Self {
        self.gathers_joins = true;
        self
    }

    /// A join that passed every check: gathered, or (a gate that does not gather) its seat back
    /// to send alone.
    pub(super) fn gather(
        &self,
        state: &mut GateState,
        seat: Seat,
        now: i64,
    ) -> Result<Verdict, Seat> {
        if !self.gathers_joins {
            return Err(seat);
        }
        let joins = state.joins.entry(seat.sale.id).or_default();
        if joins.members.len() >= MAX_GATHERED && !joins.members.contains(&seat.user_id) {
            let wait = self.config.queue_join_batch_ms.max(0) as u64;
            return Ok(Verdict::Refuse(Refusal::after(Reason::Unavailable, wait)));
        }
        joins.enqueue(&seat.user_id, now);
        let due = joins.due_ms(self.config.queue_join_batch_ms, seat.sale.start_ms);
        let wait = JoinWait {
            seat,
            since_ms: now,
        };
        Ok(Verdict::Wait(Box::new(wait), due))
    }

    /// Whether a batch of sale `id`'s joins, gathered or out, will bring its line (and the sale
    /// with it) soon enough to stand in for a read of what was fetched at `fetched_ms`: within a
    /// batch's time (gathered, then sent and replied to), and only from a warehouse whose batches
    /// answer with the line.
    pub(super) fn batch_brings_line(
        &self,
        state: &GateState,
        id: i64,
        fetched_ms: i64,
        now: i64,
    ) -> bool {
        let batch_ms =
            self.config.queue_join_batch_ms + self.config.origin_timeout_ms + JOIN_TICK_MS;
        state.joins.get(&id).is_some_and(SaleJoins::brings_line)
            && now.saturating_sub(fetched_ms) < batch_ms
    }

    /// Where a gathered join stands at `now`: its answer, its batch to send (a forward), or a
    /// wait until the time given.
    pub(super) fn join_step(&self, state: &mut GateState, wait: &JoinWait, now: i64) -> Gathered {
        let sale = wait.seat.sale;
        let user = wait.seat.user_id.as_str();
        let joins = state.joins.entry(sale.id).or_default();
        if let Some(&(answer, _)) = joins.answers.get(user) {
            return Gathered::Done(match answer {
                Answered::Place(PlaceReply(place)) => {
                    Verdict::Respond(self.joined(state, &wait.seat, &place, now))
                }
                Answered::Refused(refusal) => Verdict::Refuse(refusal),
            });
        }
        if now.saturating_sub(wait.since_ms) >= MAX_JOIN_WAIT_MS {
            let refusal = Refusal::after(Reason::Unavailable, 1_000);
            return Gathered::Done(Verdict::Refuse(refusal));
        }
        // A batch out for longer than a call may take lost its reply: gather it again.
        let lost_after = self.config.origin_timeout_ms + JOIN_TICK_MS;
        while let Some(i) = joins
            .out
            .iter()
            .position(|(_, sent_ms, _)| now.saturating_sub(*sent_ms) > lost_after)
        {
            let (lost, _, opened) = joins.out.remove(i);
            // Due again at once: it was due when it left.
            joins.opened_ms = if joins.queued.is_empty() {
                opened
            } else {
                joins.opened_ms.min(opened)
            };
            for user in lost.into_iter().rev() {
                joins.queued.push_front(user);
            }
        }
        // Its answer was pruned before this join came back for it: gathered again.
        if !joins.members.contains(user) {
            joins.enqueue(user, now);
        }
        // Whoever looks when the queued batch is due sends it, for everyone in it.
        let until = |at: i64| Gathered::Wait(at.min(wait.since_ms + MAX_JOIN_WAIT_MS));
        let due = (!joins.queued.is_empty())
            .then(|| joins.due_ms(self.config.queue_join_batch_ms, sale.start_ms));
        let may_send = joins.out.is_empty() || now < sale.start_ms;
        match due {
            Some(due) if now >= due && may_send => {}
            Some(due) if joins.out.is_empty() => return until(due),
            // This join's batch is out (its answer comes with the reply), or the next one
            // waits for it.
            _ => return until(now + JOIN_TICK_MS),
        }
        let (n, opened) = (joins.queued.len().min(JOIN_MANY_MAX), joins.opened_ms);
        // What is left (a full batch's overflow) keeps the time its batch opened: it is due an
        // interval after it, or at once when full again.
        let users: Vec<String> = joins.queued.drain(..n).collect();
        joins.out.push((users.clone(), now, opened));
        let message = JoinQueueManyReq {
            event_id: sale.id,
            user_ids: users.clone(),
        };
        let call = Call::JoinQueueMany {
            event_id: sale.id,
            users,
        };
        let verdict = self.forward(state, call, &message, now);
        if let Verdict::Refuse(refusal) = verdict {
            // The breaker fails it fast: every join of the batch is told so.
            let joins = state.joins.entry(sale.id).or_default();
            if let Some((users, _, _)) = joins.out.pop() {
                joins.answer(&users, std::iter::repeat(Answered::Refused(refusal)), now);
            }
        }
        Gathered::Done(verdict)
    }

    /// The warehouse's reply to a batch (`places`, or the refusal of every join in it).
    pub(super) fn batch_answered(
        state: &mut GateState,
        event_id: i64,
        users: &[String],
        places: Result<Vec<QueuePlace>, Refusal>,
        now: i64,
    ) {
        let joins = state.joins.entry(event_id).or_default();
        // A late reply of a batch gathered again is not dropped either: its places are the
        // warehouse's answers all the same.
        joins.out.retain(|(out, _, _)| out != users);
        match places {
            Ok(places) => joins.answer(
                users,
                places.into_iter().map(|p| Answered::Place(PlaceReply(p))),
                now,
            ),
            Err(refusal) => joins.answer(users, std::iter::repeat(Answered::Refused(refusal)), now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathered_joins_nobody_waits_for_are_forgotten() {
        let mut joins = SaleJoins::default();
        joins.enqueue("ann", 1_000);
        assert!(
            !joins.is_idle(1_000 + MAX_JOIN_WAIT_MS),
            "ann may still wait"
        );
        assert!(joins.is_idle(1_000 + MAX_JOIN_WAIT_MS + ANSWER_KEEP_MS));
        let place = Answered::Refused(Refusal::new(Reason::Unavailable));
        joins.answer(&["ann".to_owned()], std::iter::once(place), 2_000);
        assert!(
            !joins.is_idle(2_000 + ANSWER_KEEP_MS - 1),
            "the answer is wanted"
        );
        joins.prune(2_000 + ANSWER_KEEP_MS);
        assert!(joins.answers.is_empty() && joins.is_idle(2_000 + ANSWER_KEEP_MS));
    }
}
