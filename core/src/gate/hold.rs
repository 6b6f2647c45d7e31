//! Held polls of a waiting room (long polling): a client that asks with
//! [`WAIT_HEADER`](super::WAIT_HEADER) is answered when its place's news changes — admitted,
//! sold out, ended, or moved on by a tenth of the line ahead — or once the wait it asked for
//! (at most [`MAX_HOLD_MS`]) is over, instead of polling every half second. An adapter that can
//! keep a request open while others are served (a Worker isolate; see
//! [`Gate::holding_polls`](super::Gate::holding_polls)) holds the poll; where each request is an
//! instance of its own (Spin) the header is ignored and the client polls as
//! `poll_after_ms` says.
//!
//! What holding costs: nothing at the warehouse (the held polls are decided again on the
//! instance's copy of the line, which one `Queue/GetQueue` a refresh interval keeps fresh), a
//! timer per held poll every [`HOLD_TICK_MS`], and one decision each time the copy changed. What
//! it buys: a sale's sell-out reaches every held poll within one refresh and one tick, and a
//! crowd waiting costs the edge one request per place per hold, not two a second.
//!
//! The adapter's loop, with the first answer's hold:
//!
//! ```text
//! let first = /* the exchange's response */;
//! let Some(hold) = first.hold else { return first };
//! let hold = hold.enter(&mut state);
//! loop {
//!     loop { sleep(HOLD_TICK_MS); if hold.wakes(&state, now) { break } }
//!     let latest = /* the exchange again, Exchange::resume, with now */;
//!     if hold.releases(&latest, &state, now) { return latest }
//! }
//! ```
//!
//! One held poll per place and instance: a newer one releases the older (answered with what it
//! has), so a client opening many polls of its place holds one and spends the place's poll
//! pacing on the rest, as a page polling flat out would.
//!
//! What it deliberately does not do: hold anything but a waiting place's poll (an admission,
//! a refusal or a final state is answered at once), or charge the rate limits again (the held
//! poll was charged once, when it came in).

use super::response::Response;
use super::state::GateState;

/// The longest a poll is held, whatever the client asks.
pub const MAX_HOLD_MS: i64 = 20_000;

/// How often a held poll looks at the instance's copy of the line.
pub const HOLD_TICK_MS: u64 = 250;

/// A waiting place's poll that may be held: what its answer said, and until when to hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The place's key ([`GateState::claim_key`]).
    pub place: String,
    /// This held poll's number: a newer held poll of the place (in [`GateState::holds`])
    /// releases it.
    pub seq: u64,
    /// The sale.
    pub event_id: i64,
    /// Until when the first answer may be held (unix ms).
    pub until_ms: i64,
    /// Places ahead, as the answer said.
    pub ahead: u64,
    /// When the copy of the line the answer was decided on was fetched (unix ms).
    pub line_ms: i64,
    /// How often the instance refreshes its copy of the line
    /// ([`GateConfig::queue_refresh_ms`](super::GateConfig::queue_refresh_ms)).
    pub refresh_ms: i64,
}

impl Hold {
    /// The hold of `self`'s poll when its client asked to wait (`wait`, the header's text, ms),
    /// from `now_ms`: `None` for no wait or a bad one.
    pub fn asked(self, wait: Option<&str>, now_ms: i64) -> Option<Self> {
        let wait: i64 = wait?.trim().parse().ok().filter(|w: &i64| *w > 0)?;
        Some(Hold {
            until_ms: now_ms.saturating_add(wait.min(MAX_HOLD_MS)),
            ..self
        })
    }

    /// Enters this poll in `state` as its place's held poll, releasing the one held before:
    /// an adapter calls it once, when it starts holding the poll.
    pub fn enter(mut self, state: &mut GateState) -> Self {
        state.hold_seq += 1;
        self.seq = state.hold_seq;
        state
            .holds
            .insert(self.place.clone(), (self.seq, self.until_ms));
        self
    }

    /// Whether a newer held poll of the same place came in since this one.
    fn superseded(&self, state: &GateState) -> bool {
        state
            .holds
            .get(&self.place)
            .is_some_and(|&(seq, _)| seq != self.seq)
    }

    /// Whether to decide the poll again now: the hold's time is up, a newer held poll of the
    /// place came in, or the instance's copy of the line is not the one this answer was decided
    /// on, or it is due for a refresh (which deciding again asks the warehouse for).
    pub fn wakes(&self, state: &GateState, now_ms: i64) -> bool {
        if now_ms >= self.until_ms || self.superseded(state) {
            return true;
        }
        match state.queues.get(&self.event_id) {
            Some(entry) => {
                entry.fetched_ms != self.line_ms
                    || now_ms.saturating_sub(entry.fetched_ms) >= self.refresh_ms
            }
            None => true,
        }
    }

    /// Whether `latest`, the poll decided again at `now_ms` on `state`, is the answer to send:
    /// the hold's time is up, a newer held poll of the place came in, or it is not a waiting
    /// place's any more (admitted, sold out, ended, a refusal), or the line ahead moved by at
    /// least a tenth (one place, near the front).
    pub fn releases(&self, latest: &Response, state: &GateState, now_ms: i64) -> bool {
        if now_ms >= self.until_ms || self.superseded(state) {
            return true;
        }
        match &latest.hold {
            Some(now) => self.ahead.saturating_sub(now.ahead) >= (self.ahead / 10).max(1),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::state::QueueEntry;
    use crate::refusal::{Reason, Refusal};

    /// Ann's poll answered 100 ahead from a copy fetched at 900, refreshed every second.
    fn poll() -> Hold {
        Hold {
            place: GateState::claim_key(7, "ann"),
            seq: 0,
            event_id: 7,
            until_ms: 0,
            ahead: 100,
            line_ms: 900,
            refresh_ms: 1_000,
        }
    }

    fn waiting(hold: Option<Hold>) -> Response {
        let mut response: Response = Refusal::new(Reason::Unavailable).into();
        response.status = 200;
        response.hold = hold.map(Box::new);
        response
    }

    #[test]
    fn a_wait_is_asked_in_ms_and_capped() {
        let hold = poll().asked(Some("15000"), 1_000).unwrap();
        assert_eq!(
            (hold.until_ms, hold.ahead, hold.line_ms),
            (16_000, 100, 900)
        );
        assert_eq!(
            poll().asked(Some(" 600000 "), 1_000).unwrap().until_ms,
            1_000 + MAX_HOLD_MS
        );
        for bad in [None, Some(""), Some("0"), Some("-5"), Some("soon")] {
            assert_eq!(poll().asked(bad, 1_000), None, "{bad:?}");
        }
    }

    #[test]
    fn a_held_poll_is_released_by_news_or_by_its_time() {
        let hold = poll().asked(Some("10000"), 1_000).unwrap();
        let state = GateState::default();
        let moved = |ahead| {
            waiting(Some(Hold {
                ahead,
                ..hold.clone()
            }))
        };
        assert!(!hold.releases(&moved(100), &state, 2_000), "no news");
        assert!(
            !hold.releases(&moved(91), &state, 2_000),
            "less than a tenth"
        );
        assert!(
            hold.releases(&moved(90), &state, 2_000),
            "a tenth of the line"
        );
        assert!(hold.releases(&moved(100), &state, 11_000), "time is up");
        assert!(
            hold.releases(&waiting(None), &state, 2_000),
            "not waiting any more"
        );
        let front = Hold {
            ahead: 3,
            ..hold.clone()
        };
        assert!(
            front.releases(&moved(2), &state, 2_000),
            "near the front one place is news"
        );
    }

    #[test]
    fn a_held_poll_wakes_when_the_line_copy_changed_or_is_due() {
        let hold = poll().asked(Some("10000"), 1_000).unwrap();
        let mut state = GateState::default();
        assert!(hold.wakes(&state, 1_100), "no copy at all: decide again");
        state.queues.insert(
            7,
            QueueEntry {
                fetched_ms: 900,
                ..QueueEntry::default()
            },
        );
        assert!(!hold.wakes(&state, 1_100));
        assert!(hold.wakes(&state, 1_900), "due for a refresh");
        state.queues.get_mut(&7).unwrap().fetched_ms = 1_050;
        assert!(hold.wakes(&state, 1_100), "a new copy");
        assert!(hold.wakes(&state, 11_000), "time is up");
    }

    #[test]
    fn a_newer_held_poll_of_the_place_releases_the_older() {
        let mut state = GateState::default();
        let first = poll()
            .asked(Some("10000"), 1_000)
            .unwrap()
            .enter(&mut state);
        state.queues.insert(
            7,
            QueueEntry {
                fetched_ms: 900,
                ..QueueEntry::default()
            },
        );
        let still = waiting(Some(first.clone()));
        assert!(!first.wakes(&state, 1_100));
        assert!(!first.releases(&still, &state, 1_100));
        let second = poll()
            .asked(Some("10000"), 1_200)
            .unwrap()
            .enter(&mut state);
        assert!(second.seq > first.seq);
        assert!(first.wakes(&state, 1_300), "superseded: wake up");
        assert!(first.releases(&still, &state, 1_300), "and answer");
        assert!(!second.releases(&waiting(Some(second.clone())), &state, 1_300));
        let other = Hold {
            place: GateState::claim_key(7, "bob"),
            ..poll()
        };
        let other = other.asked(Some("10000"), 1_200).unwrap().enter(&mut state);
        assert!(
            !second.wakes(&state, 1_300),
            "another place's poll is not news"
        );
        assert!(other.seq > second.seq);
        state.prune(20_000, 60_000);
        assert!(state.holds.is_empty(), "holds over are forgotten");
    }
}
