//! What the gate remembers between requests: rate-limit buckets, the breaker, cached sale views
//! and the traffic meter, in one serialisable [`GateState`] the adapter keeps wherever its
//! runtime keeps state (isolate memory, a key-value store).
//!
//! What it deliberately does not do: decide anything, or store itself; [`GateState::prune`]
//! only drops what no longer constrains a decision.

use crate::breaker::Breaker;
use crate::limit::{RateMeter, Tat};
use crate::proto::flashsale::EventState;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
    /// Units one user may hold.
    pub per_user_limit: u32,
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
        })
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
