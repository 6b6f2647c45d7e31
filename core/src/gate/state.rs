//! What the gate remembers between requests: rate-limit buckets, the breaker, cached sale views,
//! the directory of sale ids, the traffic meter, and for waiting rooms the cached snapshot of
//! each sale's line and the admissions claimed, in one serialisable [`GateState`] the adapter
//! keeps wherever its runtime keeps state (isolate memory, a key-value store).
//!
//! What it deliberately does not do: decide anything, or store itself; [`GateState::prune`]
//! only drops what no longer constrains a decision.

use super::gather::{SaleBuys, SaleJoins};
use crate::admission::{Room, Rules, Ticket};
use crate::breaker::Breaker;
use crate::limit::{RateMeter, Tat};
use crate::proto::flashsale::{EventList, EventState, QueueSnapshot};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;

/// An ISO 4217 currency code, three capital letters (`"EUR"`). A value, not a `String`, so a
/// cached [`SaleView`] stays `Copy` and the buy path never allocates for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The code, if `code` is three ASCII capital letters.
    pub fn parse(code: &str) -> Option<Currency> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_uppercase)
            .then_some(Currency(bytes))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Currency::parse(&code)
            .ok_or_else(|| serde::de::Error::custom("a currency is three capital letters"))
    }
}

/// A sale as the edge caches it (from the warehouse's `EventState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleView {
    /// Event id.
    pub id: i64,
    /// The SKU on sale.
    pub sku_id: i64,
    /// Units put in the sale.
    pub pool: u32,
    /// Units left when last seen.
    pub remaining: u32,
    /// Whether the pool is empty.
    pub sold_out: bool,
    /// Start, unix ms, inclusive.
    pub start_ms: i64,
    /// End, unix ms, exclusive.
    pub end_ms: i64,
    /// Units one user may buy.
    pub per_user_limit: u32,
    /// Price per unit, in minor units of `currency` (e.g. cents).
    #[serde(default)]
    pub price: u64,
    /// The price's currency; `None` when the warehouse names none (a sale defined before
    /// sales had prices).
    #[serde(default)]
    pub currency: Option<Currency>,
    /// The sale has a waiting room: links are minted for admitted places only.
    #[serde(default)]
    pub waiting_room: bool,
    /// How long before the start the line opens, ms (0: at the start).
    #[serde(default)]
    pub prequeue_ms: i64,
    /// At most `admit_factor × remaining` places admitted and pending (the default filled in).
    #[serde(default)]
    pub admit_factor: u32,
    /// How long an unused admission lasts, ms (the default filled in).
    #[serde(default)]
    pub admission_ttl_ms: i64,
}

impl SaleView {
    pub(super) fn from_state(state: &EventState) -> Option<SaleView> {
        let e = state.event.as_ref()?;
        Some(SaleView {
            id: e.id,
            sku_id: e.sku_id,
            pool: e.pool.max(0) as u32,
            remaining: state.remaining.max(0) as u32,
            sold_out: state.sold_out || state.remaining <= 0,
            start_ms: e.start_ms,
            end_ms: e.end_ms,
            per_user_limit: e.per_user_limit.max(1) as u32,
            price: e.price.max(0) as u64,
            currency: Currency::parse(&e.currency),
            waiting_room: e.waiting_room,
            prequeue_ms: e.prequeue_ms.max(0),
            admit_factor: match e.admit_factor {
                f if f > 0 => f as u32,
                _ => Rules::DEFAULT_ADMIT_FACTOR,
            },
            admission_ttl_ms: match e.admission_ttl_ms {
                t if t > 0 => t,
                _ => Rules::DEFAULT_ADMISSION_TTL_MS,
            },
        })
    }

    /// When the sale's line opens (unix ms): `prequeue_ms` before the start.
    pub fn queue_opens_ms(&self) -> i64 {
        self.start_ms.saturating_sub(self.prequeue_ms.max(0))
    }
}

/// A sale's waiting room as the edge caches it (from the warehouse's `QueueSnapshot`): enough
/// to answer every poll of the instance without the warehouse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    /// Places in line.
    pub places: u64,
    /// Of which drawn in the pre-queue.
    pub drawn: u64,
    /// Places opened so far (may mint a link): a prefix of the line; the places admitted after
    /// it wait on standby ([`crate::admission::openings`]), which the edge need not tell apart
    /// from waiting ones.
    #[serde(default)]
    pub opened: u64,
    /// The ticket of the last opened place (meaningful when `opened > 0`).
    #[serde(default)]
    pub opened_through: u64,
    /// Admitted, neither bought nor lapsed (open or on standby).
    pub pending: u64,
    /// Units in the pool.
    pub remaining: u64,
    /// Units held by unpaid orders.
    pub held: u64,
    /// Nothing left and nothing that can come back.
    pub sold_out: bool,
    /// Admissions per second lately, in thousandths (an integer, so the state stays `Eq`).
    pub admit_rate_milli: u64,
}

impl RoomSnapshot {
    /// The warehouse's snapshot, as cached.
    pub fn from_proto(s: &QueueSnapshot) -> Self {
        let count = |n: i64| n.max(0) as u64;
        let rate = s.admit_rate_per_s;
        RoomSnapshot {
            places: count(s.places),
            drawn: count(s.drawn),
            opened: count(s.opened),
            opened_through: s.opened_through,
            pending: count(s.pending),
            remaining: count(s.remaining),
            held: count(s.held),
            sold_out: s.sold_out,
            admit_rate_milli: if rate.is_finite() && rate > 0.0 {
                (rate * 1_000.0).min(u64::MAX as f64) as u64
            } else {
                0
            },
        }
    }

    /// Whether the place with `ticket` has been opened (it may since have bought or lapsed:
    /// the warehouse's claim tells). An admitted place on standby has not: it waits at the
    /// front, and no claim is asked for it.
    pub fn opened(&self, ticket: Ticket) -> bool {
        self.opened > 0 && ticket.get() <= self.opened_through
    }

    /// Places ahead of `ticket`'s that have not opened yet: standby admissions and waiting
    /// places, each of which opens before it (an estimate for a drawn place, see
    /// [`Ticket::estimated_rank`]).
    pub fn ahead_of(&self, ticket: Ticket) -> u64 {
        ticket
            .estimated_rank(self.drawn)
            .saturating_sub(self.opened)
    }

    /// The counts admission is decided on.
    pub fn room(&self) -> Room {
        Room {
            remaining: self.remaining,
            held: self.held,
            pending: self.pending,
        }
    }

    /// Admissions opened per second lately.
    pub fn admit_rate_per_s(&self) -> f64 {
        self.admit_rate_milli as f64 / 1_000.0
    }
}

/// A cached waiting room, refreshed at most once per
/// [`GateConfig::queue_refresh_ms`](super::GateConfig::queue_refresh_ms) per instance, like
/// the directory: `asked_ms` is when the last refresh left, answered or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// The last snapshot, if one came back.
    pub snapshot: Option<RoomSnapshot>,
    /// When it was fetched, unix ms.
    pub fetched_ms: i64,
    /// When a refresh was last sent, unix ms.
    pub asked_ms: Option<i64>,
    /// The last snapshot carried the sale's state (warehouses since the line's reply does): the
    /// line's refresh is the sale view's too, and the view needs no `GetEvent` of its own.
    #[serde(default)]
    pub carries_sale: bool,
}

/// What the warehouse answered to a user's claim of an admission, remembered while it holds so
/// an admitted buyer's polls cost the warehouse one claim, not one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Claim {
    /// Admitted and open until `until_ms` (unix ms).
    Admitted {
        /// When the admission lapses.
        until_ms: i64,
    },
    /// Nothing left to admit the place to.
    SoldOut,
    /// The place is over: lapsed, spent on a purchase, or the sale ended.
    Ended,
}

/// A remembered [`Claim`], kept until `kept_until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimEntry {
    /// The warehouse's answer.
    pub claim: Claim,
    /// When it is forgotten, unix ms.
    pub kept_until_ms: i64,
}

/// The ids of the sales the warehouse lists (`Admin/ListEvents`: upcoming, running and recently
/// ended ones): a sale id in none of them is refused at the edge without asking for it.
///
/// At most one refresh leaves an instance per refresh interval
/// ([`GateConfig::directory_refresh_ms`](super::GateConfig::directory_refresh_ms)): `asked_ms`
/// is when the last one left, whether or not it was answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleDirectory {
    /// Sale ids, ascending; empty until fetched.
    pub ids: Vec<i64>,
    /// When the list was fetched, unix ms; `None` until it is.
    pub fetched_ms: Option<i64>,
    /// When a refresh was last sent, unix ms; `None` if never.
    pub asked_ms: Option<i64>,
}

impl SaleDirectory {
    /// Whether the list names `id`.
    pub fn lists(&self, id: i64) -> bool {
        self.ids.binary_search(&id).is_ok()
    }

    /// Whether the list was fetched less than `refresh_ms` before `now_ms`.
    pub fn is_fresh(&self, now_ms: i64, refresh_ms: i64) -> bool {
        self.fetched_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < refresh_ms)
    }

    /// Whether a refresh may be sent at `now_ms`: none was sent in the last `refresh_ms`.
    pub fn may_ask(&self, now_ms: i64, refresh_ms: i64) -> bool {
        self.asked_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= refresh_ms)
    }

    /// The warehouse's list, fetched at `now_ms`.
    pub(super) fn learn(&mut self, list: &EventList, now_ms: i64) {
        self.ids.clone_from(&list.ids);
        // The contract says ascending; the lookup must not depend on it.
        self.ids.sort_unstable();
        self.ids.dedup();
        self.fetched_ms = Some(now_ms);
    }
}

/// A cached sale view: the sale, or the knowledge that there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleEntry {
    /// `None`: the warehouse said there is no such sale.
    pub sale: Option<SaleView>,
    /// When it was fetched, unix ms.
    pub fetched_ms: i64,
    /// When a refresh of this stale entry was sent, unix ms: until it answers (or the origin
    /// timeout passes), requests are answered from the entry instead of each sending one.
    #[serde(default)]
    pub refresh_asked_ms: Option<i64>,
}

/// The state the gate reads and updates; the adapter owns and stores it. It serialises with
/// serde (e.g. to JSON) for runtimes that keep state between requests only in a store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateState {
    /// Rate-limit buckets by [`LimitKey`](crate::limit::LimitKey) storage key.
    pub limits: HashMap<String, Tat>,
    /// The origin breaker.
    pub breaker: Breaker,
    /// Cached sale views by event id.
    pub sales: HashMap<i64, SaleEntry>,
    /// Reads of sales the instance has no view of, by event id: when each was sent (unix ms).
    /// While one is out, the crowd arriving for that sale is asked to come back shortly instead
    /// of each request sending its own read (a cold cache's stampede at a sale's first second).
    #[serde(default)]
    pub sale_reads: HashMap<i64, i64>,
    /// The sale ids that exist, for refusing the others without an origin call.
    #[serde(default)]
    pub directory: SaleDirectory,
    /// Recent `/api` request rate, for proof-of-work difficulty.
    pub traffic: RateMeter,
    /// When [`Gate::housekeep`](super::Gate::housekeep) last pruned, unix ms.
    #[serde(default)]
    pub pruned_ms: i64,
    /// Cached waiting rooms by event id.
    #[serde(default)]
    pub queues: HashMap<i64, QueueEntry>,
    /// Remembered admission claims by [`GateState::claim_key`].
    #[serde(default)]
    pub claims: HashMap<String, ClaimEntry>,
    /// The latest held poll of each place by [`GateState::claim_key`]: its number
    /// ([`Hold::seq`](super::Hold::seq)) and until when it holds. A newer held poll of the same
    /// place releases the older one, so a client holds one poll per place, however many it
    /// opens. Only an adapter that holds polls fills it, in memory (never stored).
    #[serde(skip)]
    pub holds: HashMap<String, (u64, i64)>,
    /// The last held poll's number.
    #[serde(skip)]
    pub hold_seq: u64,
    /// Joins gathered by sale, waiting to be sent together or for their answers (see
    /// [`JoinWait`](super::JoinWait)). Only a gate that gathers joins fills it, in memory.
    #[serde(skip)]
    pub(super) joins: HashMap<i64, SaleJoins>,
    /// Buys gathered by sale (see [`BuyWait`](super::BuyWait)). Only a gate that gathers buys
    /// fills it, in memory.
    #[serde(skip)]
    pub(super) buys: HashMap<i64, SaleBuys>,
}

impl GateState {
    /// Drops rate-limit buckets that no longer constrain anything and sale views older than
    /// `sale_ttl_ms`; call now and then to bound memory.
    pub fn prune(&mut self, now_ms: i64, sale_ttl_ms: i64) {
        self.limits.retain(|_, tat| tat.is_live(now_ms));
        self.queues.retain(|_, q| {
            let last = q.asked_ms.unwrap_or(q.fetched_ms).max(q.fetched_ms);
            now_ms.saturating_sub(last) < sale_ttl_ms
        });
        // A sale whose line is being polled keeps its view: polls read it without refreshing
        // it, and a crowd of polls finding it gone would each ask the warehouse for it.
        let queues = &self.queues;
        self.sales.retain(|id, e| {
            now_ms.saturating_sub(e.fetched_ms) < sale_ttl_ms || queues.contains_key(id)
        });
        self.sale_reads
            .retain(|_, asked| now_ms.saturating_sub(*asked) < sale_ttl_ms);
        self.claims.retain(|_, c| c.kept_until_ms > now_ms);
        self.holds.retain(|_, &mut (_, until_ms)| until_ms > now_ms);
        self.joins.retain(|_, joins| {
            joins.prune(now_ms);
            !joins.is_idle(now_ms)
        });
        self.buys.retain(|_, buys| {
            buys.prune(now_ms);
            !buys.is_idle(now_ms)
        });
    }

    /// Caches the warehouse's snapshot of `event_id`'s waiting room, fetched at `now_ms`.
    pub(super) fn learn_queue(&mut self, event_id: i64, snapshot: &QueueSnapshot, now_ms: i64) {
        let sale = snapshot.sale.as_ref().and_then(SaleView::from_state);
        let entry = self.queues.entry(event_id).or_default();
        entry.snapshot = Some(RoomSnapshot::from_proto(snapshot));
        entry.fetched_ms = now_ms;
        entry.carries_sale = sale.is_some();
        if sale.is_some() {
            self.learn_sale(event_id, sale, now_ms);
        }
    }

    /// Remembers the warehouse's view of sale `event_id` (`None`: there is no such sale).
    pub(super) fn learn_sale(&mut self, event_id: i64, sale: Option<SaleView>, now_ms: i64) {
        self.sale_reads.remove(&event_id);
        let entry = SaleEntry {
            sale,
            fetched_ms: now_ms,
            refresh_asked_ms: None,
        };
        self.sales.insert(event_id, entry);
    }

    /// Remembers `user`'s claim in sale `event_id` until `kept_until_ms`.
    pub(super) fn remember_claim(
        &mut self,
        event_id: i64,
        user: &str,
        claim: Claim,
        kept_until_ms: i64,
    ) {
        let entry = ClaimEntry {
            claim,
            kept_until_ms,
        };
        self.claims.insert(Self::claim_key(event_id, user), entry);
    }

    /// The instance's copy of sale `event_id`'s line, if it has one.
    pub fn line(&self, event_id: i64) -> Option<RoomSnapshot> {
        self.queues.get(&event_id).and_then(|q| q.snapshot)
    }

    /// Whether the instance's copy of sale `event_id`'s line says sold out (for good: nothing
    /// left and nothing held).
    pub fn line_sold_out(&self, event_id: i64) -> bool {
        self.line(event_id).is_some_and(|s| s.sold_out)
    }

    /// The key of `user`'s claim in sale `event_id`.
    pub fn claim_key(event_id: i64, user: &str) -> String {
        format!("{event_id}/{user}")
    }

    pub(super) fn claim(&self, event_id: i64, user: &str, now_ms: i64) -> Option<Claim> {
        self.claims
            .get(&Self::claim_key(event_id, user))
            .filter(|c| c.kept_until_ms > now_ms)
            .map(|c| c.claim)
    }

    pub(super) fn fresh_sale(&self, id: i64, now_ms: i64, ttl_ms: i64) -> Option<&SaleEntry> {
        self.sales
            .get(&id)
            .filter(|e| now_ms.saturating_sub(e.fetched_ms) < ttl_ms)
    }
}
