//! The gate: one decision per `/api` request, composed from the policy modules in a fixed
//! order, cheapest refusal first.
//!
//! An edge adapter (Cloudflare Worker, Spin component) builds a [`Request`] view from its
//! platform's request, with `now` read once and 32 bytes of randomness; keeps a [`GateState`]
//! (rate-limit TATs, the breaker, cached sale views, the directory of sale ids, the traffic
//! meter) wherever its runtime keeps state; and asks [`Gate::decide`]. The [`Verdict`] is an
//! answer the edge gives itself (a challenge, a purchase link, a cached sale), a [`Refusal`], or
//! a [`Forward`]: a ready gRPC-Web call to the warehouse, origin-signed. The adapter sends it
//! and hands the warehouse's reply to [`Gate::complete`], which feeds the breaker, the sold-out
//! flag and the directory and maps the reply to the client's [`Response`]. No policy lives in
//! the adapter:
//!
//! ```text
//! let mut verdict = gate.decide(&request, &mut state);
//! loop {
//!     match verdict {
//!         Verdict::Forward(call) => {
//!             let reply = /* POST origin + call.path, call.headers, call.body */;
//!             match gate.complete(&mut state, &call, reply, now_ms) {
//!                 Completion::Respond(response) => break response,
//!                 // The directory or a sale view was missing: now cached, decide again
//!                 // (at most twice: the directory, then the sale).
//!                 Completion::Retry => verdict = gate.decide_again(&request, &mut state),
//!             }
//!         }
//!         other => break other.into_response().expect("not a forward"),
//!     }
//! }
//! ```
//!
//! [`Exchange`] is that loop, ready for adapters, and [`Response::headers`] what goes with an
//! answer, so the Worker and the Spin component share them instead of each writing its own.
//!
//! Order of checks: route and shape (path, body and token sizes; the demo's routes outside demo
//! mode) → bot rules (deny list, automation) → per-network (an address-less request counts
//! against one shared unknown network) and global rate limits → user token → per-user rate
//! limit → the route's own checks (purchase link, then per-sale and hot-SKU limits;
//! proof-of-work for a link) → the sale: a cached view, else the directory of sale ids (an id
//! it does not list is refused, never asked for) → sold-out flag and sale window → breaker →
//! forward.
//!
//! The edge routes: `GET /api/events/{id}`, `POST /api/events/{id}/challenge`,
//! `POST /api/events/{id}/link`, the waiting room's `POST /api/events/{id}/queue` (join) and
//! `GET /api/events/{id}/queue` (poll, see `queue`), `POST /api/buy/{token}`, `GET /api/orders/{no}`,
//! `POST /api/orders/{no}/cancel`, and in demo mode `POST /api/session/guest` and
//! `POST /api/demo/orders/{no}/pay`. No route pays outside demo mode: payment is the payment
//! side's word to the warehouse, never the buyer's.
//!
//! What an origin call costs is bounded by what the edge already knows: a sale id this instance
//! has no view of is looked up in the [`SaleDirectory`] (`Admin/ListEvents`, refreshed at most
//! once per [`GateConfig::directory_refresh_ms`] whatever the traffic), so a flood of made-up
//! ids costs the warehouse at most one call per interval per instance.
//!
//! The files: `config` (variables, limits, [`GateConfig`]), `request` (the request view,
//! headers, body bound, routes), `state` ([`GateState`]), `routes` (one step per route),
//! `queue` (the waiting room's routes and the replies of its calls),
//! `origin` (the warehouse calls, the origin URL and reply, [`Gate::complete`]), `exchange`
//! (the adapter loop) and `response` (what the client gets); this file is the pipeline.
//!
//! What it deliberately does not do: I/O, clock reads, randomness, or persistence. State is
//! mutated in place and the caller stores it; [`GateState::prune`] drops what no longer matters.

mod config;
mod exchange;
mod gather;
mod hold;
mod origin;
mod queue;
mod request;
mod response;
mod routes;
mod state;

pub use config::{vars, ConfigError, GateConfig, Limits, DEMO_MODE_WARNING};
pub use exchange::{Exchange, Next};
pub use gather::{
    BuyWait, GatheredBuy, JoinWait, Waiting, BUY_TICK_MS, JOIN_CLOSE_GATHER_MS, JOIN_START_LEAD_MS,
    JOIN_TICK_MS, MAX_BUY_WAIT_MS, MAX_GATHERED, MAX_GATHERED_BUYS, MAX_JOIN_WAIT_MS,
};
pub use hold::{Hold, HOLD_TICK_MS, MAX_HOLD_MS};
pub use origin::{
    BadOriginUrl, Call, Completion, Forward, OriginReply, OriginResponse, OriginUrl, Rpc, Seat,
};
pub use request::{
    route, BoundedBody, HeaderValues, Headers, NetworkLimit, Request, Route, DEMO_PREFIX,
    PLACE_HEADER, WAIT_HEADER,
};
pub use response::{Response, NO_STORE, SALE_CACHE};
pub use state::{
    Claim, ClaimEntry, Currency, GateState, QueueEntry, RoomSnapshot, SaleDirectory, SaleEntry,
    SaleView,
};

use crate::bot::{BotSignals, BotVerdict};
use crate::identity::{IdentityVerdict, User};
use crate::limit::{self, Decision, LimitKey, Quota};
use crate::proto::flashsale::{EventReq, ListEventsReq};
use crate::refusal::{Reason, Refusal};

/// The gate's decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The edge answers by itself.
    Respond(Response),
    /// The request is refused.
    Refuse(Refusal),
    /// Call the warehouse, then [`Gate::complete`].
    Forward(Forward),
    /// A gathered join or buy ([`Gate::gathering_joins`], [`Gate::gathering_buys`]): wait until
    /// the time given (unix ms), then look again ([`Exchange::check`] does).
    Wait(Box<Waiting>, i64),
}

impl Verdict {
    /// The client response, unless the verdict is a forward (returned back as the error). A
    /// wait, which only a gate that gathers gives and only [`Exchange`] can keep, is a `503`
    /// to retry after a second here.
    pub fn into_response(self) -> Result<Response, Forward> {
        match self {
            Verdict::Respond(r) => Ok(r),
            Verdict::Refuse(r) => Ok(r.into()),
            Verdict::Forward(f) => Err(f),
            Verdict::Wait(..) => Ok(Refusal::after(Reason::Unavailable, 1_000).into()),
        }
    }
}

/// One step of the pipeline: go on with a `T`, or stop with the verdict.
type Step<T> = Result<T, Verdict>;

fn refuse(reason: Reason) -> Verdict {
    Verdict::Refuse(Refusal::new(reason))
}

/// Who asks, once the shared checks have passed: the request, the verified user, what the bot
/// rules made of it, and whether this decision is the request's first.
struct Shopper<'r> {
    req: &'r Request<'r>,
    user: User,
    bot: BotVerdict,
    pass: Pass,
}

/// A request's first decision, or a repeat after a refresh ([`Gate::decide_again`]). The first
/// charges the rate limits and the traffic meter; a repeat was charged by it and is not again,
/// so a request costs its user and network one request however many refreshes it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    First,
    Again,
}

/// The gate: the configuration, and the decisions.
#[derive(Debug, Clone)]
pub struct Gate {
    config: GateConfig,
    holds_polls: bool,
    gathers_joins: bool,
    gathers_buys: bool,
}

impl Gate {
    /// A gate over `config`.
    pub fn new(config: GateConfig) -> Self {
        Gate {
            config,
            holds_polls: false,
            gathers_joins: false,
            gathers_buys: false,
        }
    }

    /// A gate for an adapter that holds waiting-room polls that ask for it (see [`Hold`]): their
    /// answers carry a [`Response::hold`] and tell the client to come back at once (the next
    /// poll is held again). Without it the wait header is ignored.
    pub fn holding_polls(mut self) -> Self {
        self.holds_polls = true;
        self
    }

    /// Whether this gate's adapter holds polls ([`Gate::holding_polls`]).
    pub fn holds_polls(&self) -> bool {
        self.holds_polls
    }

    /// The configuration.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// Decides one request, updating `state`.
    pub fn decide(&self, req: &Request<'_>, state: &mut GateState) -> Verdict {
        self.decide_steps(req, state, Pass::First)
            .unwrap_or_else(|verdict| verdict)
    }

    /// Decides `req` again after its forward's [`Completion::Retry`] (what [`Exchange`] does):
    /// the same checks on what the refresh cached, without charging the rate limits and the
    /// traffic meter a second time.
    pub fn decide_again(&self, req: &Request<'_>, state: &mut GateState) -> Verdict {
        self.decide_steps(req, state, Pass::Again)
            .unwrap_or_else(|verdict| verdict)
    }

    /// The key to ask the platform's per-network limiter with (see [`NetworkLimit`]): the
    /// client's network, or the one shared by every request without a client address; `None`
    /// when the request is refused before any limit is consulted (unknown route, oversized, a
    /// bot). Pure: it decides nothing and changes no state.
    pub fn network_key(&self, req: &Request<'_>) -> Option<String> {
        self.screen(req).ok()?;
        Some(LimitKey::network(req.client_ip).to_string())
    }

    /// Steps 1 and 2: route and shape, then bot rules.
    fn screen<'r>(&self, req: &Request<'r>) -> Step<(Route<'r>, BotVerdict)> {
        if req.path.len() > self.config.max_path || req.body.len() > self.config.max_body {
            return Err(refuse(Reason::TooLarge));
        }
        if req.path.starts_with(DEMO_PREFIX) && !self.config.identity.demo_mode() {
            return Err(refuse(Reason::NotFound));
        }
        let route = route(req.method, req.path).map_err(refuse)?;
        let signals = BotSignals {
            user_agent: req.headers.user_agent,
            accept_language: req.headers.accept_language,
            sec_fetch_site: req.headers.sec_fetch_site,
            sec_fetch_mode: req.headers.sec_fetch_mode,
            client_ip: req.client_ip,
            platform_score: req.platform_bot_score,
        };
        let bot = self.config.bot.assess(&signals).verdict;
        if bot == BotVerdict::Block {
            return Err(refuse(Reason::Blocked));
        }
        Ok((route, bot))
    }

    /// Bounds the state's memory: drops spent rate-limit buckets and sale views older than
    /// [`GateConfig::sale_memory_ms`], at most once a second. Adapters call it per request.
    pub fn housekeep(&self, state: &mut GateState, now_ms: i64) {
        if now_ms.saturating_sub(state.pruned_ms) >= 1_000 {
            state.prune(now_ms, self.config.sale_memory_ms);
            state.pruned_ms = now_ms;
        }
    }

    fn decide_steps(&self, req: &Request<'_>, state: &mut GateState, pass: Pass) -> Step<Verdict> {
        let now = req.now_ms;
        // 1. Route and shape; 2. bot rules.
        let (route, bot) = self.screen(req)?;
        if pass == Pass::First {
            state.traffic.tick(now);
        }
        // 3. Per-network and global limits.
        match req.network_limit {
            NetworkLimit::Local => {
                let network = LimitKey::network(req.client_ip);
                self.limit(state, pass, network, &self.config.limits.ip, now)?;
            }
            NetworkLimit::Allowed => {}
            NetworkLimit::Exceeded => {
                let wait = self.config.platform_limit_window_ms.max(0) as u64;
                return Err(Verdict::Refuse(Refusal::after(Reason::RateLimited, wait)));
            }
        }
        self.limit(
            state,
            pass,
            LimitKey::Global,
            &self.config.limits.global,
            now,
        )?;
        // 4. Identity (every route but the public sale view and the guest door).
        let user = match route {
            Route::Event(id) => return self.event(state, id, now),
            Route::Guest => return self.guest(req),
            _ => self.identify(req)?,
        };
        self.limit(
            state,
            pass,
            LimitKey::User(&user.id),
            &self.config.limits.user,
            now,
        )?;
        // 5. The route's own checks.
        let shopper = Shopper {
            req,
            user,
            bot,
            pass,
        };
        match route {
            Route::Challenge(id) => self.challenge(state, &shopper, id),
            Route::Link(id) => self.link(state, &shopper, id),
            Route::Join(id) => self.join(state, &shopper, id),
            Route::Queue(id) => self.poll(state, &shopper, id),
            Route::Buy(token) => self.buy(state, &shopper, token),
            Route::Order(no) => self.order(state, &shopper, no, Call::GetOrder),
            Route::Cancel(no) => self.order(state, &shopper, no, Call::CancelOrder),
            // Demo mode only (`screen` refused it otherwise): the warehouse pays it only when
            // it runs with `--demo-payments`, and only as this user's own order.
            Route::DemoPay(no) => self.order(state, &shopper, no, Call::DemoPayOrder),
            Route::Event(_) | Route::Guest => unreachable!("answered above"),
        }
    }

    /// Charges `key`'s bucket on a request's first pass; a repeat passes what the first passed.
    fn limit(
        &self,
        state: &mut GateState,
        pass: Pass,
        key: LimitKey<'_>,
        quota: &Quota,
        now: i64,
    ) -> Step<()> {
        if pass == Pass::Again {
            return Ok(());
        }
        let key = key.to_string();
        let tat = state.limits.get(&key).copied().unwrap_or_default();
        match limit::check(tat, now, quota) {
            (Decision::Allow, next) => {
                state.limits.insert(key, next);
                Ok(())
            }
            (Decision::Deny { retry_after_ms }, _) => Err(Verdict::Refuse(Refusal::after(
                Reason::RateLimited,
                retry_after_ms,
            ))),
        }
    }

    fn identify(&self, req: &Request<'_>) -> Step<User> {
        let token = crate::identity::bearer(req.headers.authorization);
        match self.config.identity.verify(token, req.now_ms) {
            IdentityVerdict::Valid(user) => Ok(user),
            IdentityVerdict::Expired => Err(refuse(Reason::TokenExpired)),
            _ => Err(refuse(Reason::Unauthenticated)),
        }
    }

    /// The cached sale, or a refresh forward if the cache has nothing fresh; `answer`: whether
    /// the refreshed view answers the client (the sale route) or the request is decided again.
    /// Only an id this instance has seen as a sale, or that the directory lists, is asked for.
    fn sale(&self, state: &mut GateState, id: i64, now: i64, answer: bool) -> Step<SaleView> {
        match state.fresh_sale(id, now, self.config.sale_ttl_ms) {
            Some(SaleEntry {
                sale: Some(sale), ..
            }) => return Ok(*sale),
            Some(SaleEntry { sale: None, .. }) => return Err(refuse(Reason::UnknownResource)),
            None => {}
        }
        // A refresh is out until it answers or the origin timeout passes (under load a request
        // may be decided seconds after it arrived: its clock is its arrival's).
        let in_flight = self.config.sale_ttl_ms.max(self.config.origin_timeout_ms);
        match state.sales.get(&id) {
            // Stale, with its refresh already out: the crowd meanwhile is answered from the
            // last view (stale-while-revalidate), so a refresh costs one call, not one per
            // request that arrives while it is in flight.
            Some(SaleEntry {
                sale: Some(sale),
                refresh_asked_ms: Some(asked),
                ..
            }) if now.saturating_sub(*asked) < in_flight => return Ok(*sale),
            // A waiting-room sale's view comes with its line's snapshot: the line's refresh (one
            // call per refresh interval, whichever request asks first) is the view's, and the
            // view is as fresh as the line.
            Some(SaleEntry {
                sale: Some(sale), ..
            }) if sale.waiting_room && state.queues.get(&id).is_some_and(|q| q.carries_sale) => {
                let sale = *sale;
                self.snapshot(state, id, now)?;
                return Ok(sale);
            }
            // No line yet, but joins of the sale gathered or out: their batch's answer brings
            // the line and the view with it. Bounded, should that answer not carry them (a
            // warehouse from before it did) or not come back.
            Some(SaleEntry {
                sale: Some(sale),
                fetched_ms,
                ..
            }) if sale.waiting_room && self.batch_brings_line(state, id, *fetched_ms, now) => {
                return Ok(*sale)
            }
            Some(SaleEntry { sale: Some(_), .. }) => {}
            _ => {
                self.listed(state, id, now)?;
                if let Some(&asked) = state.sale_reads.get(&id) {
                    if now.saturating_sub(asked) < in_flight {
                        return Err(Verdict::Refuse(Refusal::after(Reason::Unavailable, 1_000)));
                    }
                }
            }
        }
        let verdict = self.forward(
            state,
            Call::GetEvent {
                event_id: id,
                answer,
            },
            &EventReq { id },
            now,
        );
        if matches!(verdict, Verdict::Forward(_)) {
            match state.sales.get_mut(&id) {
                Some(SaleEntry {
                    sale: Some(_),
                    refresh_asked_ms,
                    ..
                }) => *refresh_asked_ms = Some(now),
                _ => {
                    state.sale_reads.insert(id, now);
                }
            }
        }
        Err(verdict)
    }

    /// Goes on if the directory lists `id`; refuses an id a fresh directory does not list;
    /// refreshes a stale directory, at most once per refresh interval. While a refresh is out,
    /// the last list still vouches for the ids it names, and any other id waits for the new
    /// list (`503`, retry shortly) rather than cost the origin a call.
    fn listed(&self, state: &mut GateState, id: i64, now: i64) -> Step<()> {
        let every = self.config.directory_refresh_ms;
        let directory = &state.directory;
        if directory.is_fresh(now, every) {
            return if directory.lists(id) {
                Ok(())
            } else {
                Err(refuse(Reason::UnknownResource))
            };
        }
        if directory.may_ask(now, every) {
            let verdict = self.forward(state, Call::ListEvents, &ListEventsReq {}, now);
            if matches!(verdict, Verdict::Forward(_)) {
                state.directory.asked_ms = Some(now);
            }
            return Err(verdict);
        }
        if directory.lists(id) {
            return Ok(());
        }
        let asked = directory.asked_ms.unwrap_or(now);
        let wait = every.saturating_sub(now.saturating_sub(asked)).max(0) as u64;
        Err(Verdict::Refuse(Refusal::after(Reason::Unavailable, wait)))
    }

    fn open_sale(sale: &SaleView, now: i64, allow_upcoming: bool) -> Step<()> {
        if now >= sale.end_ms {
            return Err(refuse(Reason::SaleEnded));
        }
        if sale.sold_out {
            return Err(refuse(Reason::SoldOut));
        }
        if !allow_upcoming && now < sale.start_ms {
            let wait = sale.start_ms.abs_diff(now);
            return Err(Verdict::Refuse(Refusal::after(Reason::TooEarly, wait)));
        }
        Ok(())
    }
}
