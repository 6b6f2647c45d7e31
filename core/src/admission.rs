//! The waiting room's rules, pure: who gets a place in a sale's line, in what order the line
//! moves, how many places may be admitted at once, when an admission lapses, and what a waiting
//! buyer is told.
//!
//! **Places.** A user joins a sale's line once (joining again returns the same place). A join in
//! the pre-queue window (`[start − prequeue, start)`) gets a *drawn* [`Ticket`]: a keyed hash of
//! (sale, user) under a server secret, so the order of the pre-queue is random, fixed, and the
//! same however early, how often or from how many connections a user joined — nothing a client
//! does improves it, and without the secret nobody can predict it. A join after the start gets
//! an *arrival* ticket numbered in arrival order, and every arrival ticket sorts after every drawn
//! one. The line is the places in ticket order; "the draw at the start" is nothing more than
//! that order becoming the one admissions follow, so it costs no work at the start.
//!
//! **Admission.** A place turns into an admission (the right to mint a purchase link) only while
//! the admitted users who have neither bought nor given up number fewer than
//! `admit_factor × remaining pool` ([`Room::admits`]): a crowd of 100,000 for 100 units moves
//! ~200 people at a time, and a unit that comes back (a cancellation, an expired order) admits
//! the next `admit_factor` places. An admission lapses `admission_ttl` after it opens if it was
//! not used; one on standby does not lapse (it has not opened).
//!
//! **Who buys first** ([`openings`]). Admitting more places than there are units keeps the line
//! moving when some of the admitted never buy, but it makes the admitted race each other, and
//! the fastest client — a bot polling as often as it may — would win the race. So an admission
//! is not open (its purchase link is not minted) until there is a unit for it: a move opens the
//! admitted places in line order, only as many as there are units that no open admission is
//! counted against (`remaining − open`, or with a per-user limit above one, enough that each
//! open buyer finds a unit whatever the others take), and the rest wait on *standby* in line.
//! Every open admission has a unit whatever the others do, and a unit reaches a standby place
//! only once every place before it has bought, lapsed or been opened: a unit comes to a place
//! for being slow or absent ahead, never for being fast behind, however late the places before
//! it learn of their admission. When the pool is empty and no unpaid order holds units that could come back,
//! every place still waiting is told `sold_out` at once ([`Room::sold_out`]) — nobody waits for
//! stock that is gone.
//!
//! **What a buyer is told** ([`view`]): `waiting` with a position, how many are ahead and an
//! estimate; `admitted` until a deadline; `sold_out`; `ended`; and how long to wait before the
//! next poll, longer the further back one is and spread by the user so a crowd does not poll in
//! step.
//!
//! What it deliberately does not do: hold the line. The state (places by ticket, the admitted
//! set, the arrival counter) lives wherever the edge can coordinate globally — a Durable Object
//! per sale on Cloudflare, the warehouse's Redis on Spin — and that holder applies these rules.
//! It reads no clock and draws no randomness: the secret and `now` come from the caller.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Domain separation for the draw's keyed hash (a change reorders every pre-queue).
const DRAW_DOMAIN: &[u8] = b"flashgate waiting room draw v1";
/// The bit that marks an arrival ticket: every arrival sorts after every drawn ticket.
const ARRIVAL_BIT: u64 = 1 << 63;
/// Bounds of the advised wait between polls.
const POLL_MIN_MS: u64 = 500;
const POLL_MAX_MS: u64 = 5_000;

/// A sale's waiting-room settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// How long before the start the pre-queue opens (ms); 0: no pre-queue, everyone arrives
    /// in order from the start.
    pub prequeue_ms: i64,
    /// At most `admit_factor × remaining pool` admitted and pending (at least 1).
    pub admit_factor: u32,
    /// How long an unused admission lasts (ms).
    pub admission_ttl_ms: i64,
}

impl Rules {
    /// The default admit factor.
    pub const DEFAULT_ADMIT_FACTOR: u32 = 2;
    /// The default life of an unused admission: long enough to solve nothing new, mint a link
    /// and buy with it from a slow phone.
    pub const DEFAULT_ADMISSION_TTL_MS: i64 = 30_000;
}

/// A place's rank in the line: lower goes first. Drawn tickets (pre-queue) sort before arrival
/// tickets (after the start), and arrival tickets in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

impl Ticket {
    /// The drawn ticket of `user` in `sale`'s pre-queue under `secret`: the first 63 bits of
    /// HMAC-SHA256(secret, domain ‖ sale ‖ user).
    pub fn draw(secret: &[u8], sale: i64, user: &str) -> Ticket {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
        mac.update(DRAW_DOMAIN);
        mac.update(&sale.to_be_bytes());
        mac.update(user.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Ticket(u64::from_be_bytes(first) & !ARRIVAL_BIT)
    }

    /// The ticket of the `seq`-th arrival after the start (0-based).
    pub fn arrival(seq: u64) -> Ticket {
        Ticket(ARRIVAL_BIT | (seq & !ARRIVAL_BIT))
    }

    /// Whether the place was drawn in the pre-queue.
    pub fn is_drawn(self) -> bool {
        self.0 & ARRIVAL_BIT == 0
    }

    /// The ticket as stored (a holder keeps it as a number, e.g. a sorted-set score's member or
    /// an SQLite integer column: store [`Ticket::to_sortable_i64`] where only signed integers sort).
    pub fn get(self) -> u64 {
        self.0
    }

    /// A ticket read back from [`Ticket::get`].
    pub fn from_raw(raw: u64) -> Ticket {
        Ticket(raw)
    }

    /// The ticket as an `i64` that sorts the same way (SQLite's INTEGER is signed).
    pub fn to_sortable_i64(self) -> i64 {
        (self.0 ^ ARRIVAL_BIT) as i64
    }

    /// A ticket read back from [`Ticket::to_sortable_i64`].
    pub fn from_sortable_i64(value: i64) -> Ticket {
        Ticket(value as u64 ^ ARRIVAL_BIT)
    }

    /// The ticket as a number a double holds exactly (below 2^53), sorting the same way, for a
    /// holder whose sort key is a double (a Redis sorted set's score): a drawn ticket's top 52
    /// bits, an arrival `2^52 + seq`. A drawn ticket loses its low 11 bits, so the holder keeps
    /// [`Ticket::from_score`] of it as *the* ticket (two drawn places of one score, about one
    /// pair in 10^6 among 100,000 places, are then ordered by user).
    pub fn score(self) -> u64 {
        if self.is_drawn() {
            self.0 >> 11
        } else {
            ARRIVAL_SCORE + (self.0 & !ARRIVAL_BIT).min(ARRIVAL_SCORE - 1)
        }
    }

    /// The ticket a score stands for (the inverse of [`Ticket::score`] on the tickets it keeps).
    pub fn from_score(score: u64) -> Ticket {
        if score < ARRIVAL_SCORE {
            Ticket(score << 11)
        } else {
            Ticket::arrival(score - ARRIVAL_SCORE)
        }
    }

    /// This place's 0-based rank in a line of `drawn` drawn places (and any arrivals), from
    /// nothing but a published snapshot's count: exact for an arrival (every drawn place, then
    /// the arrivals before it), and for a drawn ticket its share of the 63-bit range times
    /// `drawn` (the draw is uniform, so the estimate is off by about √drawn; an edge answering
    /// a poll needs no more, and never a list of the places).
    pub fn estimated_rank(self, drawn: u64) -> u64 {
        if self.is_drawn() {
            // < drawn, as the ticket is < 2^63.
            ((u128::from(self.0) * u128::from(drawn)) >> 63) as u64
        } else {
            drawn.saturating_add(self.0 & !ARRIVAL_BIT)
        }
    }
}

/// The first arrival ticket's [`Ticket::score`]: every drawn score is below it.
pub const ARRIVAL_SCORE: u64 = 1 << 52;

/// The most users one `Queue/JoinQueueMany` may join: what an edge instance gathers for a
/// moment is sent in calls of at most this many.
pub const JOIN_MANY_MAX: usize = 512;

/// How long the window is over which [`rate_step`] measures admissions.
pub const RATE_WINDOW_MS: i64 = 5_000;

/// The admission rate a holder publishes for ETAs, as integers so every holder computes the
/// same figure: the admissions opened ([`openings`]: the pace at which the line reaches the
/// places behind) over the last full window of [`RATE_WINDOW_MS`], per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateMark {
    /// When the current window began (unix ms; 0: not yet, the sale has not started).
    pub at_ms: i64,
    /// Admissions opened when it began.
    pub opened: u64,
    /// Admissions per second over the last full window, in thousandths.
    pub milli_per_s: u64,
}

impl RateMark {
    /// Admissions per second.
    pub fn per_s(&self) -> f64 {
        self.milli_per_s as f64 / 1_000.0
    }
}

/// The rate after a move at `now_ms` that left `opened` admissions opened in all, for a sale
/// starting at `start_ms`: the first window begins at the start (so the first admissions count),
/// and a window of at least [`RATE_WINDOW_MS`] closes at the first move after it.
pub fn rate_step(mark: RateMark, opened: u64, start_ms: i64, now_ms: i64) -> RateMark {
    if now_ms < start_ms {
        return mark;
    }
    let mark = if mark.at_ms == 0 {
        RateMark {
            at_ms: start_ms,
            opened: 0,
            milli_per_s: 0,
        }
    } else {
        mark
    };
    let elapsed = now_ms - mark.at_ms;
    if elapsed < RATE_WINDOW_MS {
        return mark;
    }
    RateMark {
        at_ms: now_ms,
        opened,
        milli_per_s: opened.saturating_sub(mark.opened).saturating_mul(1_000_000) / elapsed as u64,
    }
}

/// What a join asks for, as the holder knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinFacts<'a> {
    /// The sale.
    pub sale: i64,
    /// The user (verified by the edge).
    pub user: &'a str,
    /// The sale's start (unix ms).
    pub start_ms: i64,
    /// The sale's end (unix ms).
    pub end_ms: i64,
    /// Now (unix ms).
    pub now_ms: i64,
    /// The user's place in this sale, if it has one.
    pub existing: Option<Ticket>,
    /// The arrival counter: how many arrival tickets were given so far.
    pub arrivals: u64,
}

/// What a join decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// The user already has this place: nothing changes.
    Again(Ticket),
    /// A new drawn place (the holder stores it).
    Drawn(Ticket),
    /// A new arrival place (the holder stores it and counts one more arrival).
    Arrived(Ticket),
    /// The line is not open yet: it opens at `opens_ms`.
    TooEarly {
        /// When the pre-queue opens (unix ms).
        opens_ms: i64,
    },
    /// The sale is over.
    Ended,
}

/// Decides a join under `rules` with the draw's `secret`.
pub fn join(rules: &Rules, secret: &[u8], facts: &JoinFacts<'_>) -> Join {
    if let Some(ticket) = facts.existing {
        return Join::Again(ticket);
    }
    if facts.now_ms >= facts.end_ms {
        return Join::Ended;
    }
    let opens_ms = facts.start_ms.saturating_sub(rules.prequeue_ms.max(0));
    if facts.now_ms < opens_ms {
        return Join::TooEarly { opens_ms };
    }
    if facts.now_ms < facts.start_ms {
        Join::Drawn(Ticket::draw(secret, facts.sale, facts.user))
    } else {
        Join::Arrived(Ticket::arrival(facts.arrivals))
    }
}

/// The counts admission is decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Room {
    /// Units left in the sale's pool.
    pub remaining: u64,
    /// Units held by unpaid orders (they may come back).
    pub held: u64,
    /// Admitted users who have neither bought nor given up nor lapsed.
    pub pending: u64,
}

impl Room {
    /// How many more places may be admitted now: `admit_factor × remaining − pending`, never
    /// negative. After a buy takes the last units, admissions already given stay (their buys
    /// will be refused as sold out) but no new one is made.
    pub fn admits(&self, rules: &Rules) -> u64 {
        let capacity = u64::from(rules.admit_factor.max(1)).saturating_mul(self.remaining);
        capacity.saturating_sub(self.pending)
    }

    /// Whether every place still waiting is told `sold_out`: nothing in the pool and nothing
    /// held that could come back.
    pub fn sold_out(&self) -> bool {
        self.remaining == 0 && self.held == 0
    }
}

/// When an admission that opens at `opens_ms` lapses if unused.
pub fn lapses_at(rules: &Rules, opens_ms: i64) -> i64 {
    opens_ms.saturating_add(rules.admission_ttl_ms.max(0))
}

/// When an admission that lapses at `until_ms` opened (the inverse of [`lapses_at`], so a holder
/// keeps one time per admission).
pub fn opens_at(rules: &Rules, until_ms: i64) -> i64 {
    until_ms.saturating_sub(rules.admission_ttl_ms.max(0))
}

/// How many of the `standby` admitted places a move opens (the first of them in line order),
/// in a room with `remaining` units and `open` admissions open and unused, where a buyer takes
/// at most `per_user` units: as many as keep `open` at most `⌈remaining / per_user⌉`. So however
/// many units the other open buyers take (each at most `per_user`), every open admission still
/// finds at least one unit, and a standby place opens only when one before it has bought or
/// lapsed — it cannot gain a unit by being fast. With a `per_user` of 1 (the usual flash sale),
/// each open admission has its whole purchase; above 1, the open buyers share what is left
/// beyond each one's first unit in the order they buy.
pub fn openings(remaining: u64, open: u64, standby: u64, per_user: u64) -> u64 {
    remaining
        .div_ceil(per_user.max(1))
        .saturating_sub(open)
        .min(standby)
}

/// Where a user's place stands, as the holder knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Still in line (or admitted on standby), with `ahead` places before it not opened yet.
    Waiting {
        /// Places with a lower ticket that have not opened yet.
        ahead: u64,
    },
    /// Admitted and open from `from_ms` until `until_ms` (a standby admission, not open yet, is
    /// [`Place::Waiting`], with the places before it that have not opened ahead of it).
    Admitted {
        /// When the admission opens (unix ms).
        from_ms: i64,
        /// When the admission lapses (unix ms).
        until_ms: i64,
    },
    /// Admitted and used (a buy was made) or given up: the place is spent.
    Done,
}

/// The answer to "where am I in line?" (`GET /api/events/{id}/queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueView {
    /// The state the buyer is in.
    pub state: QueueState,
    /// 1-based position among waiting places (0 unless waiting).
    pub position: u64,
    /// Waiting places ahead (0 unless waiting).
    pub ahead: u64,
    /// Estimated seconds until admission (0 unless waiting; `None` when no estimate can be made:
    /// nothing is moving, e.g. before the start or while all units are held by unpaid orders).
    pub eta_s: Option<u64>,
    /// When to ask again (ms); 0 once the state is final.
    pub poll_after_ms: u64,
    /// The admission's deadline (unix ms), when admitted.
    pub admitted_until_ms: Option<i64>,
}

/// A waiting buyer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// In line.
    Waiting,
    /// May mint a purchase link now.
    Admitted,
    /// Nothing left and nothing can come back.
    SoldOut,
    /// The sale is over (or this place was spent).
    Ended,
}

impl QueueState {
    /// The wire name (`waiting`, `admitted`, `sold_out`, `ended`).
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Waiting => "waiting",
            QueueState::Admitted => "admitted",
            QueueState::SoldOut => "sold_out",
            QueueState::Ended => "ended",
        }
    }
}

/// What the holder knows when asked for a view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewFacts<'a> {
    /// The user.
    pub user: &'a str,
    /// The user's place.
    pub place: Place,
    /// The room's counts.
    pub room: Room,
    /// Admissions per second lately (the holder's [`crate::limit::RateMeter`] or similar).
    pub admit_rate_per_s: f64,
    /// The sale's start (unix ms).
    pub start_ms: i64,
    /// The sale's end (unix ms).
    pub end_ms: i64,
    /// Now (unix ms).
    pub now_ms: i64,
}

/// What a buyer with `facts.place` is told.
pub fn view(facts: &ViewFacts<'_>) -> QueueView {
    let done = |state| QueueView {
        state,
        position: 0,
        ahead: 0,
        eta_s: None,
        poll_after_ms: 0,
        admitted_until_ms: None,
    };
    if facts.now_ms >= facts.end_ms {
        return done(QueueState::Ended);
    }
    match facts.place {
        Place::Done => done(QueueState::Ended),
        Place::Admitted { until_ms, .. } if until_ms > facts.now_ms => QueueView {
            state: QueueState::Admitted,
            position: 0,
            ahead: 0,
            eta_s: Some(0),
            poll_after_ms: 0,
            admitted_until_ms: Some(until_ms),
        },
        // A lapsed admission the holder has not swept yet is spent all the same.
        Place::Admitted { .. } => done(QueueState::Ended),
        Place::Waiting { .. } if facts.room.sold_out() && facts.now_ms >= facts.start_ms => {
            done(QueueState::SoldOut)
        }
        Place::Waiting { ahead } => {
            let moving = facts.now_ms >= facts.start_ms && facts.admit_rate_per_s > 0.0;
            let eta_s = if facts.now_ms < facts.start_ms {
                // Before the start: the wait to the start (how fast the line will move then
                // is not known yet).
                let to_start = ((facts.start_ms - facts.now_ms) as u64).div_ceil(1_000);
                Some(to_start)
            } else if moving {
                Some((ahead as f64 / facts.admit_rate_per_s).ceil() as u64)
            } else {
                None
            };
            QueueView {
                state: QueueState::Waiting,
                position: ahead + 1,
                ahead,
                eta_s,
                poll_after_ms: poll_after_ms(facts.user, ahead, facts.start_ms - facts.now_ms),
                admitted_until_ms: None,
            }
        }
    }
}

/// What an admission is told while it cannot buy yet (open, but every unit is held by an unpaid
/// order or taken by a buyer before it in line; a unit may come back within `wait_ms`): waiting
/// at the front, to ask again within [`FRONT_POLL_MS`], so that it learns of a free unit or of
/// the sell-out within a second.
pub fn front_view(wait_ms: i64) -> QueueView {
    let wait_ms = wait_ms.max(1) as u64;
    QueueView {
        state: QueueState::Waiting,
        position: 1,
        ahead: 0,
        eta_s: Some(wait_ms.div_ceil(1_000)),
        poll_after_ms: wait_ms.min(FRONT_POLL_MS),
        admitted_until_ms: None,
    }
}

/// The longest advised wait between the polls of an admission that cannot buy yet.
pub const FRONT_POLL_MS: u64 = 1_000;

/// The advised wait before the next poll: half a second near the front, growing with the line
/// ahead (about 1 ms per place) up to 5 s, never past the start, and spread by up to a fifth by
/// the user so that a crowd told the same thing does not come back in the same millisecond.
pub fn poll_after_ms(user: &str, ahead: u64, ms_to_start: i64) -> u64 {
    let mut wait = ahead.clamp(POLL_MIN_MS, POLL_MAX_MS);
    if ms_to_start > 0 {
        wait = wait.min(ms_to_start as u64);
    }
    // FNV-1a of the user: a fixed spread per user, no randomness needed.
    let spread = user.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    }) % (wait / 5 + 1);
    wait + spread
}

#[cfg(test)]
mod tests;
