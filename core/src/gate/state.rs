//! What the gate remembers between requests: rate-limit buckets, the breaker, cached sale views,
//! the directory of sale ids and the traffic meter, in one serialisable [`GateState`] the adapter
//! keeps wherever its runtime keeps state (isolate memory, a key-value store).
//!
//! What it deliberately does not do: decide anything, or store itself; [`GateState::prune`]
//! only drops what no longer constrains a decision.

use crate::breaker::Breaker;
use crate::limit::{RateMeter, Tat};
use crate::proto::flashsale::{EventList, EventState};
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
        })
    }
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
    /// The sale ids that exist, for refusing the others without an origin call.
    #[serde(default)]
    pub directory: SaleDirectory,
    /// Recent `/api` request rate, for proof-of-work difficulty.
    pub traffic: RateMeter,
    /// When [`Gate::housekeep`](super::Gate::housekeep) last pruned, unix ms.
    #[serde(default)]
    pub pruned_ms: i64,
}

impl GateState {
    /// Drops rate-limit buckets that no longer constrain anything and sale views older than
    /// `sale_ttl_ms`; call now and then to bound memory.
    pub fn prune(&mut self, now_ms: i64, sale_ttl_ms: i64) {
        self.limits.retain(|_, tat| tat.is_live(now_ms));
        self.sales
            .retain(|_, e| now_ms.saturating_sub(e.fetched_ms) < sale_ttl_ms);
    }

    pub(super) fn fresh_sale(&self, id: i64, now_ms: i64, ttl_ms: i64) -> Option<&SaleEntry> {
        self.sales
            .get(&id)
            .filter(|e| now_ms.saturating_sub(e.fetched_ms) < ttl_ms)
    }
}
