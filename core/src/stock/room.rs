//! A sale's waiting room as the stores keep it (issue 14): the values the `room_*` scripts and
//! the memory store answer, shared by both so the model tests compare them directly.
//!
//! The line lives beside the sale's stock, in its slot: a join, a move of the line and a claim
//! are one script each, so "at most `admit_factor × remaining` admitted and pending" is decided
//! against the pool as it is, not a copy of it. The rules themselves (the draw, who is admitted,
//! lapses) are [`crate::admission`]'s; this module only names what a holder answers and the
//! few choices of the holder: how many places one move admits at most, and how long the line
//! is kept after the sale.
//!
//! What it does not do: decide (the stores apply [`crate::admission`]), or shape the wire
//! (the service maps these to `flashsale.QueuePlace` and `QueueSnapshot`).

use crate::admission::Ticket;

/// The most places one move of the line admits, and the most it opens (so one step costs the
/// same however long the line is); the next move goes on where it stopped.
pub const MOVE_MAX_ADMITS: u64 = 1_000;

/// How long a room's keys outlive its sale's end (ms): nothing reads them after the end, and
/// they expire by themselves instead of waiting for the sale's retirement.
pub const ROOM_RETAIN_MS: i64 = 3_600_000;

/// Where a user's place stands, as a join or a claim answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceState {
    /// In line.
    Waiting,
    /// Admitted and open: may mint a purchase link until `until_ms` (a standby admission, not
    /// open yet, is [`PlaceState::Waiting`]; [`crate::admission::openings`]).
    Admitted {
        /// When the admission opened (unix ms).
        from_ms: i64,
        /// When the admission lapses (unix ms).
        until_ms: i64,
    },
    /// Nothing left and nothing can come back (as of the line's last move).
    SoldOut,
    /// The sale is over.
    Ended,
    /// The line opens at `opens_ms` (a join before the pre-queue).
    TooEarly {
        /// When the pre-queue opens (unix ms).
        opens_ms: i64,
    },
    /// Admitted and bought, or unused past its deadline: the place is spent.
    Lapsed,
    /// The user has no place in this sale's line.
    NoPlace,
}

/// A user's place: its state, and its ticket and 0-based rank in the line when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// Where it stands.
    pub state: PlaceState,
    /// The ticket ([`Ticket::from_score`] of the score kept), when the user has a place.
    pub ticket: Option<Ticket>,
    /// Places before it in the line (admitted ones included), when the user has a place.
    pub rank: Option<u64>,
}

impl Place {
    /// An answer without a place (too early, ended, sold out before joining, never joined).
    pub fn without(state: PlaceState) -> Self {
        Self {
            state,
            ticket: None,
            rank: None,
        }
    }
}

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// The place as it stands after the join.
    pub place: Place,
    /// Whether this join created it (false: joined before, or no place given).
    pub new: bool,
}

/// A sale's line, as a move leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Places in line.
    pub places: u64,
    /// Of them, drawn in the pre-queue.
    pub drawn: u64,
    /// Places admitted so far: the first `admitted` of the line.
    pub admitted: u64,
    /// The ticket of the last admitted place.
    pub through: Option<Ticket>,
    /// Of the admitted places, opened so far (may mint a link while they last): the first
    /// `opened` of the line; the admitted places after them are on standby.
    pub opened: u64,
    /// The ticket of the last opened place.
    pub opened_through: Option<Ticket>,
    /// Admitted places neither bought nor lapsed: the open ones and those on standby.
    pub pending: u64,
    /// Units in the sale's pool.
    pub remaining: u64,
    /// Units held by the sale's unpaid orders.
    pub held: u64,
    /// `remaining == 0 && held == 0` ([`crate::admission::Room::sold_out`]).
    pub sold_out: bool,
    /// Admissions per second lately, in thousandths ([`crate::admission::RateMark`]).
    pub rate_milli_per_s: u64,
}

/// What one move of the line did, and the line after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Moved {
    /// The line after the move.
    pub snapshot: Snapshot,
    /// Places this move admitted.
    pub admitted: u64,
    /// Admissions this move found lapsed.
    pub lapsed: u64,
    /// Admitted users this move found to have bought.
    pub bought: u64,
    /// Places this move opened.
    pub opened: u64,
}
