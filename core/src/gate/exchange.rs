//! One request's way through the gate, as a small state machine adapters drive: decide, then
//! for each forward the warehouse's reply, until there is a response.
//!
//! It is the adapter loop of the [`gate`](super) module docs, kept here so that no adapter
//! carries it. What it deliberately does not do: hold the state or send anything; it borrows no
//! state between steps, so an adapter may release its state (a thread-local, a key-value entry)
//! while the call is in flight.

use super::gather::{Gathered, Waiting};
use super::origin::{Completion, Forward, OriginReply};
use super::request::Request;
use super::response::Response;
use super::state::GateState;
use super::{Gate, Verdict};
use crate::refusal::{Reason, Refusal};

/// What an adapter does next for one request (see [`Exchange`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send this to the client: the request is done.
    Respond(Response),
    /// Send this call to the warehouse and hand its reply to [`Exchange::reply`].
    Send(Forward),
    /// A gathered join or buy (a gate that [gathers joins](Gate::gathering_joins) or
    /// [buys](Gate::gathering_buys) only): wait until `until_ms` (unix ms; at once if that has
    /// passed), then [`Exchange::check`].
    Wait {
        /// When to look again.
        until_ms: i64,
    },
}

/// One request's way through the gate: housekeeping and a decision, then for each forward the
/// warehouse's reply, until there is a response.
///
/// ```text
/// let mut exchange = Exchange::default();
/// let mut next = exchange.start(&gate, &request, &mut state);
/// let response = loop {
///     match next {
///         Next::Respond(response) => break response,
///         Next::Send(call) => {
///             let reply = /* POST origin + call.path, call.headers, call.body */;
///             next = exchange.reply(&gate, &request, &mut state, &call, reply, now_ms);
///         }
///     }
///         Next::Wait { until_ms } => {
///             /* sleep until until_ms */
///             next = exchange.check(&gate, &mut state, now_ms);
///         }
///     }
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exchange {
    retries: u8,
    /// The request's gathered join or buy, while it waits for its batch.
    waiting: Option<Box<Waiting>>,
}

/// How often one request may be decided again: once for the directory of sale ids, once for
/// the sale's view, once for a waiting room's snapshot. Each refresh makes what it fetched
/// fresh, so a fourth would be a broken promise of the core, answered rather than looped on.
const MAX_RETRIES: u8 = 3;

impl Exchange {
    /// Housekeeps `state` ([`Gate::housekeep`]) and decides `req`.
    pub fn start(&mut self, gate: &Gate, req: &Request<'_>, state: &mut GateState) -> Next {
        gate.housekeep(state, req.now_ms);
        self.next(gate.decide(req, state))
    }

    /// Decides a held poll once more ([`Hold`](super::Hold)) at `req.now_ms`, on what `state`
    /// holds now, without charging the rate limits and the traffic meter again (the poll was
    /// charged when it came in).
    pub fn resume(&mut self, gate: &Gate, req: &Request<'_>, state: &mut GateState) -> Next {
        self.retries = 0;
        gate.housekeep(state, req.now_ms);
        self.next(gate.decide_again(req, state))
    }

    /// Looks at a gathered join or buy again at `now_ms`, after [`Next::Wait`]: its answer, its
    /// batch to send (this request sends it for every request in it), or another wait.
    pub fn check(&mut self, gate: &Gate, state: &mut GateState, now_ms: i64) -> Next {
        let Some(waiting) = self.waiting.as_deref() else {
            // Nothing waits: an adapter's mistake, answered rather than looped on.
            return Next::Respond(Refusal::after(Reason::Unavailable, 1_000).into());
        };
        match gate.gathered_step(state, waiting, now_ms) {
            Gathered::Wait(until_ms) => Next::Wait { until_ms },
            Gathered::Done(verdict) => self.next(verdict),
        }
    }

    /// Hands the warehouse's `reply` to `call` to the gate ([`Gate::complete`]), deciding `req`
    /// once more when a refreshed directory, sale view or waiting room asks for it. The core
    /// promises that happens at most three times (the directory, the sale, the room); a fourth
    /// time is answered `503` rather than looping.
    pub fn reply(
        &mut self,
        gate: &Gate,
        req: &Request<'_>,
        state: &mut GateState,
        call: &Forward,
        reply: OriginReply<'_>,
        now_ms: i64,
    ) -> Next {
        match gate.complete(state, call, reply, now_ms) {
            Completion::Respond(response) => Next::Respond(response),
            Completion::Check => self.check(gate, state, now_ms),
            Completion::Retry if self.retries < MAX_RETRIES => {
                self.retries += 1;
                self.next(gate.decide_again(req, state))
            }
            Completion::Retry => Next::Respond(Refusal::after(Reason::Unavailable, 1_000).into()),
        }
    }

    fn next(&mut self, verdict: Verdict) -> Next {
        let response = match verdict {
            Verdict::Wait(waiting, until_ms) => {
                self.waiting = Some(waiting);
                return Next::Wait { until_ms };
            }
            // A gathered batch among them: its sender still waits for its own answer.
            Verdict::Forward(call) => return Next::Send(call),
            Verdict::Respond(response) => response,
            Verdict::Refuse(refusal) => refusal.into(),
        };
        self.waiting = None;
        Next::Respond(response)
    }
}
