//! Gathered calls: an instance that serves many requests at once (a Worker isolate) sends
//! several requests' calls to the warehouse as one.
//!
//! **Joins** ([`Gate::gathering_joins`]): each `POST /api/events/{id}/queue` is not a
//! `Queue/JoinQueue` of its own. The instance gathers a sale's joins for
//! [`GateConfig::queue_join_batch_ms`](super::GateConfig::queue_join_batch_ms) and sends them
//! in one `Queue/JoinQueueMany` (at most [`JOIN_MANY_MAX`] users a call, one call in flight per
//! sale), so a crowd joining costs the warehouse about one call per interval per instance
//! instead of one per place. Each join is answered with its own place token once its batch's
//! reply is in, exactly as a single join's reply would have answered it.
//!
//! **Buys** ([`Gate::gathering_buys`]): a sale's `POST /api/buy/{token}`s go in
//! `Seckill/BuyMany` calls, one out per sale at a time, each taking every buy that came while
//! the one before was out (at most [`BUY_MANY_MAX`]; no timer, so a lone buy leaves at once; a
//! batch grows while the one before is out and until a waiting buy's next look, at most
//! [`BUY_TICK_MS`] after its reply). The warehouse decides each
//! exactly as the single `Buy` would (its own user, quantity, request id and limit), and its
//! batch lane decides a call's buys with one script call, so a crowd buying costs one request,
//! one HTTP/2 exchange and one script call per batch instead of one each per buy. Every buy was
//! verified (its signed link, the rate limits, the sale's window and sold-out flag) before it
//! is gathered, so a farm gathers no more buys than it could send singly; what it can do with
//! many verified links is queue ahead of later buyers in its isolate, as its single buys would
//! queue ahead of them in the warehouse's batch lane.
//!
//! The adapter's side is [`Next::Wait`](super::Next::Wait): sleep until the time it names, then
//! [`Exchange::check`](super::Exchange::check). Whichever waiting request of the sale finds its
//! batch due sends it (the Worker under `waitUntil`, so the client that happened to send it
//! cannot cancel the others' requests by going away); the others find their answers in the
//! [`GateState`] when it is back. Nothing depends on one request: a batch whose reply never came
//! back is gathered again after the origin timeout (a buy again is the same buy: its request id
//! is its link's), and a request that waited [`MAX_JOIN_WAIT_MS`] ([`MAX_BUY_WAIT_MS`]) without
//! an answer is answered `503` with a retry time.
//!
//! Fairness: the warehouse decides drawn or arrival by its own clock when the batch arrives, so
//! a batch of joins gathered before the start is sent by [`JOIN_START_LEAD_MS`] before it, and
//! a join made in the pre-queue is drawn however the gathering falls. A sale's buys leave an
//! instance in the order they came.
//!
//! What it deliberately does not do: decide a place or a buy (the warehouse does, one by one,
//! as for single calls), or gather on Spin (one request per instance: nothing to gather with).

use std::collections::{HashMap, HashSet, VecDeque};

use super::origin::{observe_buy, status_refusal, Call, Seat};
use super::response::buy_response;
use super::state::GateState;
use super::{Gate, Verdict};
use crate::admission::JOIN_MANY_MAX;
use crate::breaker::Outcome;
use crate::grpc_web::Code;
use crate::proto::flashsale::{
    buy_result, BuyManyReq, BuyReply, BuyReq, BuyResult, JoinQueueManyReq, QueuePlace,
};
use crate::refusal::{Reason, Refusal};
use crate::stock::{BUY_MANY_MAX, FIELD_SEP};

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

/// How often a gathered buy looks for its answer, or for its sale's call out to come back so
/// that it can send the next.
pub const BUY_TICK_MS: i64 = 20;

/// The longest a buy waits for its batch's answer before it is answered `503` (tried again
/// with the same link, it finds its order if the warehouse took it).
pub const MAX_BUY_WAIT_MS: i64 = 10_000;

/// How many buys of one sale an instance gathers at most; more are answered `503`.
pub const MAX_GATHERED_BUYS: usize = 20 * BUY_MANY_MAX;

/// How long a batch's answers are kept for the joins that wait for them.
const ANSWER_KEEP_MS: i64 = 5_000;

/// What a gathered join or buy does next (`Gate::gathered_step`).
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

/// What a gathered item is known by: each is sent once however often it is asked for meanwhile,
/// and its answer is found under this key.
pub(super) trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for String {
    fn key(&self) -> &str {
        self
    }
}

/// Items of one sale gathered in an instance for calls that carry many (a sale's joins, its
/// buys): queued in arrival order, sent in batches, and answered by key to the requests that
/// wait for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Gathering<T, A> {
    /// Items waiting to be sent, in arrival order.
    queued: VecDeque<T>,
    /// When the oldest of `queued` came (unix ms).
    opened_ms: i64,
    /// The batches out: their items, when each left, and when it had opened.
    out: Vec<(Vec<T>, i64, i64)>,
    /// The keys of every item queued or out.
    members: HashSet<String>,
    /// Answers by key, and when they came.
    answers: HashMap<String, (A, i64)>,
    /// When an item came or a batch was answered last (unix ms).
    touched_ms: i64,
}

impl<T, A> Default for Gathering<T, A> {
    fn default() -> Self {
        Gathering {
            queued: VecDeque::new(),
            opened_ms: 0,
            out: Vec::new(),
            members: HashSet::new(),
            answers: HashMap::new(),
            touched_ms: 0,
        }
    }
}

impl<T: Keyed + Clone, A: Clone> Gathering<T, A> {
    /// Whether there is nothing to keep: nothing waits and no answer is wanted, or nothing
    /// happened for longer than any request waits (`max_wait_ms`: the ones still gathered have
    /// all given up).
    fn is_idle(&self, now_ms: i64, max_wait_ms: i64) -> bool {
        let quiet = now_ms.saturating_sub(self.touched_ms);
        quiet >= max_wait_ms + ANSWER_KEEP_MS
            || (self.members.is_empty()
                && self
                    .answers
                    .values()
                    .all(|&(_, at)| now_ms.saturating_sub(at) >= ANSWER_KEEP_MS))
    }

    /// Drops answers nobody came for.
    fn prune(&mut self, now_ms: i64) {
        self.answers
            .retain(|_, &mut (_, at)| now_ms.saturating_sub(at) < ANSWER_KEEP_MS);
    }

    /// Queues `item`, unless an item of its key is queued or out already.
    fn enqueue(&mut self, item: &T, now_ms: i64) {
        self.touched_ms = now_ms;
        // A new request asks anew: an answer kept from an earlier one is not this one's.
        self.answers.remove(item.key());
        if self.members.insert(item.key().to_owned()) {
            if self.queued.is_empty() {
                self.opened_ms = now_ms;
            }
            self.queued.push_back(item.clone());
        }
    }

    /// The answer for `key`, if its batch's reply is in.
    fn answer_of(&self, key: &str) -> Option<A> {
        self.answers.get(key).map(|(answer, _)| answer.clone())
    }

    /// Queues again the batches out for longer than `lost_after_ms`: their replies are lost.
    /// Each is due again at once, since it was due when it left.
    fn requeue_lost(&mut self, now_ms: i64, lost_after_ms: i64) {
        while let Some(i) = self
            .out
            .iter()
            .position(|(_, sent_ms, _)| now_ms.saturating_sub(*sent_ms) > lost_after_ms)
        {
            let (lost, _, opened) = self.out.remove(i);
            self.opened_ms = if self.queued.is_empty() {
                opened
            } else {
                self.opened_ms.min(opened)
            };
            for item in lost.into_iter().rev() {
                self.queued.push_front(item);
            }
        }
    }

    /// Takes the next batch (at most `max` items) out, sent at `now_ms`. What is left keeps the
    /// time its batch opened.
    fn send(&mut self, max: usize, now_ms: i64) -> Vec<T> {
        let n = self.queued.len().min(max);
        let items: Vec<T> = self.queued.drain(..n).collect();
        self.out.push((items.clone(), now_ms, self.opened_ms));
        items
    }

    /// Takes back the batch just sent (the breaker failed it fast) and answers it `answer`.
    fn fail_last(&mut self, answer: A, now_ms: i64) {
        if let Some((items, _, _)) = self.out.pop() {
            let keys: Vec<String> = items.iter().map(|i| i.key().to_owned()).collect();
            self.answered(&keys, std::iter::repeat(answer), now_ms);
        }
    }

    /// The reply to the batch of `keys`: an answer per item, in order. A late reply of a batch
    /// gathered again is not dropped either: its answers are the warehouse's all the same.
    fn answered(&mut self, keys: &[String], answers: impl Iterator<Item = A>, now_ms: i64) {
        self.out.retain(|(out, _, _)| {
            out.len() != keys.len() || out.iter().zip(keys).any(|(item, key)| item.key() != key)
        });
        self.touched_ms = now_ms;
        for (key, answer) in keys.iter().zip(answers) {
            self.members.remove(key);
            self.answers.insert(key.clone(), (answer, now_ms));
        }
        // Items of a batch gathered again after its reply was taken for lost, answered now
        // after all: not sent a second time.
        if !self.queued.is_empty() {
            let answered: HashSet<&str> = keys.iter().map(String::as_str).collect();
            self.queued.retain(|item| !answered.contains(item.key()));
        }
    }
}

/// A buy gathered with its sale's others: the request to send, and the key its answer is found
/// under: the user, the request id and the quantity (a link's nonce is its own, but a key that
/// names the user keeps one user's answer from ever reaching another, and one that names the
/// quantity sends a second quantity through the same link on its own, to be refused as the
/// single buy would be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatheredBuy {
    req: BuyRequestOf,
    key: String,
}

/// A `BuyReq` kept in the (`Eq`) state: prost derives only `PartialEq`, and this message has no
/// float field, so its equality is total.
#[derive(Debug, Clone, PartialEq)]
struct BuyRequestOf(BuyReq);

impl Eq for BuyRequestOf {}

impl GatheredBuy {
    fn new(req: BuyReq) -> Self {
        let key = format!(
            "{}{FIELD_SEP}{}{FIELD_SEP}{}",
            req.user_id, req.request_id, req.qty
        );
        GatheredBuy {
            req: BuyRequestOf(req),
            key,
        }
    }
}

impl Keyed for GatheredBuy {
    fn key(&self) -> &str {
        &self.key
    }
}

/// One request's buy, gathered with the others of its sale (see [`Gate::gathering_buys`]): the
/// sale, the buy, and when it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyWait {
    /// The sale.
    pub event_id: i64,
    /// The buy.
    pub buy: GatheredBuy,
    /// When it came in (unix ms).
    pub since_ms: i64,
}

/// A request that waits for the answer of a call it was gathered into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// A waiting-room join ([`Gate::gathering_joins`]).
    Join(JoinWait),
    /// A buy ([`Gate::gathering_buys`]).
    Buy(BuyWait),
}

/// A buy's answer from a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bought {
    Reply(BuyAnswer),
    Refused(Refusal),
}

/// A batch's `BuyReply` for one buy, kept in the (`Eq`) state (no float field).
#[derive(Debug, Clone, PartialEq)]
struct BuyAnswer(BuyReply);

impl Eq for BuyAnswer {}

/// One sale's gathered buys in an instance, by user and request id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SaleBuys {
    batches: Gathering<GatheredBuy, Bought>,
}

impl SaleBuys {
    /// Whether there is nothing to keep (see [`Gathering::is_idle`]).
    pub(super) fn is_idle(&self, now_ms: i64) -> bool {
        self.batches.is_idle(now_ms, MAX_BUY_WAIT_MS)
    }

    /// Drops answers nobody came for.
    pub(super) fn prune(&mut self, now_ms: i64) {
        self.batches.prune(now_ms);
    }
}

/// One sale's gathered joins in an instance, by user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SaleJoins {
    batches: Gathering<String, Answered>,
    /// A batch was answered without the line (a warehouse from before replies carried it).
    pub(super) lineless: bool,
}

impl SaleJoins {
    /// Whether there is nothing to keep (see [`Gathering::is_idle`]).
    pub(super) fn is_idle(&self, now_ms: i64) -> bool {
        self.batches.is_idle(now_ms, MAX_JOIN_WAIT_MS)
    }

    /// Whether joins are gathered or out and their batch's answer will carry the line.
    pub(super) fn brings_line(&self) -> bool {
        !self.batches.members.is_empty() && !self.lineless
    }

    /// Drops answers nobody came for.
    pub(super) fn prune(&mut self, now_ms: i64) {
        self.batches.prune(now_ms);
    }

    /// When the queued batch is due: `batch_ms` after its first join, or at once when full; by
    /// [`JOIN_START_LEAD_MS`] before the start of a sale that has not started, and within
    /// [`JOIN_CLOSE_GATHER_MS`] of its first join closer to the start than that.
    fn due_ms(&self, batch_ms: i64, start_ms: i64) -> i64 {
        let opened = self.batches.opened_ms;
        if self.batches.queued.len() >= JOIN_MANY_MAX {
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
}

impl Gate {
    /// A gate for an adapter that serves many requests at once and can keep a join waiting
    /// while it gathers the sale's other joins ([`Next::Wait`](super::Next::Wait)): its
    /// waiting-room joins go to the warehouse together, in `Queue/JoinQueueMany`.
    pub fn gathering_joins(mut self) -> Self {
        self.gathers_joins = true;
        self
    }

    /// A gate for an adapter that serves many requests at once and can keep a buy waiting
    /// ([`Next::Wait`](super::Next::Wait)): while a sale's buys are out in a `Seckill/BuyMany`,
    /// the buys that come are gathered and sent together when its reply is in (see
    /// [`BuyWait`]).
    pub fn gathering_buys(mut self) -> Self {
        self.gathers_buys = true;
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
        let joins = &mut state.joins.entry(seat.sale.id).or_default().batches;
        if joins.members.len() >= MAX_GATHERED && !joins.members.contains(&seat.user_id) {
            let wait = self.config.queue_join_batch_ms.max(0) as u64;
            return Ok(Verdict::Refuse(Refusal::after(Reason::Unavailable, wait)));
        }
        joins.enqueue(&seat.user_id, now);
        let due =
            state.joins[&seat.sale.id].due_ms(self.config.queue_join_batch_ms, seat.sale.start_ms);
        let wait = JoinWait {
            seat,
            since_ms: now,
        };
        Ok(Verdict::Wait(Box::new(Waiting::Join(wait)), due))
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

    /// Where a gathered request stands at `now`: its answer, its batch to send (a forward), or
    /// a wait until the time given.
    pub(super) fn gathered_step(
        &self,
        state: &mut GateState,
        waiting: &Waiting,
        now: i64,
    ) -> Gathered {
        match waiting {
            Waiting::Join(join) => self.join_step(state, join, now),
            Waiting::Buy(buy) => self.buy_step(state, buy, now),
        }
    }

    /// Where a gathered join stands at `now`.
    fn join_step(&self, state: &mut GateState, wait: &JoinWait, now: i64) -> Gathered {
        let sale = wait.seat.sale;
        let user = wait.seat.user_id.as_str();
        let joins = state.joins.entry(sale.id).or_default();
        if let Some(answer) = joins.batches.answer_of(user) {
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
        joins
            .batches
            .requeue_lost(now, self.config.origin_timeout_ms + JOIN_TICK_MS);
        // Its answer was pruned before this join came back for it: gathered again.
        if !joins.batches.members.contains(user) {
            joins.batches.enqueue(&wait.seat.user_id, now);
        }
        // Whoever looks when the queued batch is due sends it, for everyone in it.
        let until = |at: i64| Gathered::Wait(at.min(wait.since_ms + MAX_JOIN_WAIT_MS));
        let due = (!joins.batches.queued.is_empty())
            .then(|| joins.due_ms(self.config.queue_join_batch_ms, sale.start_ms));
        let idle = joins.batches.out.is_empty();
        let may_send = idle || now < sale.start_ms;
        match due {
            Some(due) if now >= due && may_send => {}
            Some(due) if idle => return until(due),
            // This join's batch is out (its answer comes with the reply), or the next one
            // waits for it.
            _ => return until(now + JOIN_TICK_MS),
        }
        let users = joins.batches.send(JOIN_MANY_MAX, now);
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
            let joins = &mut state.joins.entry(sale.id).or_default().batches;
            joins.fail_last(Answered::Refused(refusal), now);
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
        let joins = &mut state.joins.entry(event_id).or_default().batches;
        match places {
            Ok(places) => joins.answered(
                users,
                places.into_iter().map(|p| Answered::Place(PlaceReply(p))),
                now,
            ),
            Err(refusal) => {
                joins.answered(users, std::iter::repeat(Answered::Refused(refusal)), now)
            }
        }
    }

    /// A buy that passed every check: gathered with its sale's other buys (sent at once if none
    /// is out), or (a gate that does not gather) its request back to send alone.
    pub(super) fn gather_buy(
        &self,
        state: &mut GateState,
        event_id: i64,
        req: BuyReq,
        now: i64,
    ) -> Result<Verdict, BuyReq> {
        if !self.gathers_buys {
            return Err(req);
        }
        let buy = GatheredBuy::new(req);
        let buys = &mut state.buys.entry(event_id).or_default().batches;
        if buys.members.len() >= MAX_GATHERED_BUYS && !buys.members.contains(&buy.key) {
            return Ok(Verdict::Refuse(Refusal::after(Reason::Unavailable, 1_000)));
        }
        buys.enqueue(&buy, now);
        let wait = BuyWait {
            event_id,
            buy,
            since_ms: now,
        };
        // Looked at again at once: sent now if nothing of the sale is out.
        Ok(Verdict::Wait(Box::new(Waiting::Buy(wait)), now))
    }

    /// Where a gathered buy stands at `now`.
    fn buy_step(&self, state: &mut GateState, wait: &BuyWait, now: i64) -> Gathered {
        let event_id = wait.event_id;
        let buys = &mut state.buys.entry(event_id).or_default().batches;
        if let Some(answer) = buys.answer_of(&wait.buy.key) {
            return Gathered::Done(match answer {
                Bought::Reply(BuyAnswer(reply)) => Verdict::Respond(buy_response(&reply)),
                Bought::Refused(refusal) => Verdict::Refuse(refusal),
            });
        }
        // Retried with the same link, a buy the warehouse took answers with its order.
        if now.saturating_sub(wait.since_ms) >= MAX_BUY_WAIT_MS {
            let refusal = Refusal::after(Reason::Unavailable, 1_000);
            return Gathered::Done(Verdict::Refuse(refusal));
        }
        buys.requeue_lost(now, self.config.origin_timeout_ms + BUY_TICK_MS);
        if !buys.members.contains(&wait.buy.key) {
            buys.enqueue(&wait.buy, now);
        }
        // One call out per sale: the next takes everything queued meanwhile, when its reply is
        // in (no timer, so a lone buy leaves at once).
        if buys.queued.is_empty() || !buys.out.is_empty() {
            let until = (now + BUY_TICK_MS).min(wait.since_ms + MAX_BUY_WAIT_MS);
            return Gathered::Wait(until);
        }
        let batch = buys.send(BUY_MANY_MAX, now);
        let message = BuyManyReq {
            buys: batch.iter().map(|b| b.req.0.clone()).collect(),
        };
        let call = Call::BuyMany {
            event_id,
            keys: batch.into_iter().map(|b| b.key).collect(),
        };
        let verdict = self.forward(state, call, &message, now);
        if let Verdict::Refuse(refusal) = verdict {
            let buys = &mut state.buys.entry(event_id).or_default().batches;
            buys.fail_last(Bought::Refused(refusal), now);
        }
        Gathered::Done(verdict)
    }

    /// The warehouse's reply to a batch of buys: a result per buy, or the refusal of every one.
    /// Each reply tells the sale's view what it tells after a single buy. The breaker hears of a
    /// failure when most of the batch met one (the store unreachable): one sub-pool's shard
    /// failing, which fails only the buys homed there, does not fail the sale's other buys.
    pub(super) fn buys_answered(
        state: &mut GateState,
        event_id: i64,
        keys: &[String],
        results: Result<Vec<BuyResult>, Refusal>,
        now: i64,
    ) -> Outcome {
        let mut failed = 0;
        let answers: Vec<Bought> = match results {
            Ok(results) => results
                .into_iter()
                .map(|result| match result.result {
                    Some(buy_result::Result::Reply(reply)) => {
                        observe_buy(state, event_id, &reply);
                        Bought::Reply(BuyAnswer(reply))
                    }
                    Some(buy_result::Result::Refused(refused)) => {
                        let code = Code::from_i32(refused.code);
                        let (this, refusal) = status_refusal(&Call::Buy { event_id }, code);
                        if this == Outcome::Failure {
                            failed += 1;
                        }
                        Bought::Refused(refusal)
                    }
                    None => {
                        failed += 1;
                        Bought::Refused(Refusal::after(Reason::Unavailable, 1_000))
                    }
                })
                .collect(),
            Err(refusal) => vec![Bought::Refused(refusal); keys.len()],
        };
        let outcome = if 2 * failed > answers.len() {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let buys = &mut state.buys.entry(event_id).or_default().batches;
        buys.answered(keys, answers.into_iter(), now);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathered_joins_nobody_waits_for_are_forgotten() {
        let mut joins = SaleJoins::default();
        joins.batches.enqueue(&"ann".to_owned(), 1_000);
        assert!(
            !joins.is_idle(1_000 + MAX_JOIN_WAIT_MS),
            "ann may still wait"
        );
        assert!(joins.is_idle(1_000 + MAX_JOIN_WAIT_MS + ANSWER_KEEP_MS));
        let place = Answered::Refused(Refusal::new(Reason::Unavailable));
        let ann = ["ann".to_owned()];
        joins.batches.answered(&ann, std::iter::once(place), 2_000);
        assert!(
            !joins.is_idle(2_000 + ANSWER_KEEP_MS - 1),
            "the answer is wanted"
        );
        joins.prune(2_000 + ANSWER_KEEP_MS);
        assert!(joins.batches.answers.is_empty() && joins.is_idle(2_000 + ANSWER_KEEP_MS));
    }

    #[test]
    fn a_gathered_buy_is_known_by_its_user_and_request_together() {
        let buy = |user: &str, request: &str| {
            GatheredBuy::new(BuyReq {
                event_id: 1,
                user_id: user.into(),
                qty: 1,
                request_id: request.into(),
            })
        };
        let mut buys = SaleBuys::default();
        buys.batches.enqueue(&buy("ann", "link-1"), 1_000);
        buys.batches.enqueue(&buy("ann", "link-1"), 1_001);
        buys.batches.enqueue(&buy("bob", "link-1"), 1_002);
        assert_eq!(buys.batches.queued.len(), 2, "ann's retry is her first buy");

        let sent = buys.batches.send(BUY_MANY_MAX, 1_003);
        let keys: Vec<String> = sent.iter().map(|b| b.key.clone()).collect();
        let refused = Bought::Refused(Refusal::new(Reason::SoldOut));
        buys.batches
            .answered(&keys[..1], std::iter::once(refused.clone()), 1_010);
        assert_eq!(
            buys.batches.answer_of(&buy("ann", "link-1").key),
            Some(refused)
        );
        assert_eq!(buys.batches.answer_of(&buy("bob", "link-1").key), None);
    }

    fn buy_of(user: &str, qty: i32) -> GatheredBuy {
        GatheredBuy::new(BuyReq {
            event_id: 7,
            user_id: user.into(),
            qty,
            request_id: "link-1".into(),
        })
    }

    #[test]
    fn another_quantity_through_one_link_is_gathered_as_a_buy_of_its_own() {
        let mut buys = SaleBuys::default();
        buys.batches.enqueue(&buy_of("ann", 1), 1_000);
        buys.batches.enqueue(&buy_of("ann", 2), 1_001);
        let sent = buys.batches.send(BUY_MANY_MAX, 1_002);
        let qtys: Vec<i32> = sent.iter().map(|b| b.req.0.qty).collect();
        assert_eq!(
            qtys,
            [1, 2],
            "both reach the warehouse, which refuses the second"
        );
    }

    #[test]
    fn a_late_reply_of_a_batch_taken_for_lost_is_not_sent_again() {
        let mut buys = SaleBuys::default();
        buys.batches.enqueue(&buy_of("ann", 1), 1_000);
        let sent = buys.batches.send(BUY_MANY_MAX, 1_000);
        buys.batches.requeue_lost(5_000, 3_020);
        assert_eq!(buys.batches.queued.len(), 1, "taken for lost: queued again");
        let keys: Vec<String> = sent.iter().map(|b| b.key.clone()).collect();
        let answer = Bought::Refused(Refusal::new(Reason::SoldOut));
        buys.batches.answered(&keys, std::iter::once(answer), 5_001);
        assert!(buys.batches.queued.is_empty(), "answered after all");
        assert!(buys.batches.answer_of(&keys[0]).is_some());
    }

    #[test]
    fn a_batch_fails_the_breaker_only_when_most_of_its_buys_failed() {
        let mut state = GateState::default();
        let buyers = [buy_of("ann", 1), buy_of("bob", 1), buy_of("cid", 1)];
        let keys: Vec<String> = buyers.iter().map(|b| b.key.clone()).collect();
        let won = || BuyResult {
            result: Some(buy_result::Result::Reply(BuyReply {
                outcome: 1,
                order_no: "7-1".into(),
                remaining: 5,
            })),
        };
        let unavailable = || BuyResult {
            result: Some(buy_result::Result::Refused(
                crate::proto::flashsale::BuyRefused {
                    code: Code::Unavailable as i32,
                    message: "stock store unavailable".into(),
                },
            )),
        };
        // One buy homed on a failing shard: the batch is a success for the breaker.
        let one = vec![won(), unavailable(), won()];
        let outcome = Gate::buys_answered(&mut state, 7, &keys, Ok(one), 1_000);
        assert_eq!(outcome, Outcome::Success);
        assert!(matches!(
            state.buys[&7].batches.answer_of(&keys[1]),
            Some(Bought::Refused(r)) if r.reason == Reason::Unavailable
        ));
        let most = vec![unavailable(), unavailable(), won()];
        let outcome = Gate::buys_answered(&mut state, 7, &keys, Ok(most), 2_000);
        assert_eq!(outcome, Outcome::Failure);
    }
}
