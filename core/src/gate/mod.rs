//! The gate: one decision per `/api` request, composed from the policy modules in a fixed
//! order, cheapest refusal first.
//!
//! An edge adapter (Cloudflare Worker, Spin component) builds a [`Request`] view from its
//! platform's request, with `now` read once and 32 bytes of randomness; keeps a [`GateState`]
//! (rate-limit TATs, the breaker, cached sale views, the traffic meter) wherever its runtime
//! keeps state; and asks [`Gate::decide`]. The [`Verdict`] is an answer the edge gives itself
//! (a challenge, a purchase link, a cached sale), a [`Refusal`], or a [`Forward`]: a ready
//! gRPC-Web call to the warehouse, origin-signed. The adapter sends it and hands the warehouse's
//! reply to [`Gate::complete`], which feeds the breaker and the sold-out flag and maps the reply
//! to the client's [`Response`]. No policy lives in the adapter:
//!
//! ```text
//! let mut verdict = gate.decide(&request, &mut state);
//! loop {
//!     match verdict {
//!         Verdict::Forward(call) => {
//!             let reply = /* POST origin + call.path, call.headers, call.body */;
//!             match gate.complete(&mut state, &call, reply, now_ms) {
//!                 Completion::Respond(response) => break response,
//!                 // A sale view was missing: now cached, decide again (happens at most once).
//!                 Completion::Retry => verdict = gate.decide(&request, &mut state),
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
//! Order of checks: route and shape (path, body and token sizes) → bot rules (deny list,
//! automation) → per-IP and global rate limits → user token → per-user rate limit → the route's
//! own checks (purchase link, then per-sale and hot-SKU limits; proof-of-work for a link) →
//! sold-out flag and sale window → breaker → forward.
//!
//! The edge routes: `GET /api/events/{id}`, `POST /api/events/{id}/challenge`,
//! `POST /api/events/{id}/link`, `POST /api/buy/{token}`, `GET /api/orders/{no}`,
//! `POST /api/orders/{no}/pay`, `POST /api/orders/{no}/cancel`, and in demo mode
//! `POST /api/session/guest`.
//!
//! The files: `config` (variables, limits, [`GateConfig`]), `request` (the request view,
//! headers, body bound, routes), `state` ([`GateState`]), `routes` (one step per route),
//! `origin` (the warehouse calls, the origin URL and reply, [`Gate::complete`]), `exchange`
//! (the adapter loop) and `response` (what the client gets); this file is the pipeline.
//!
//! What it deliberately does not do: I/O, clock reads, randomness, or persistence. State is
//! mutated in place and the caller stores it; [`GateState::prune`] drops what no longer matters.

mod config;
mod exchange;
mod origin;
mod request;
mod response;
mod routes;
mod state;

pub use config::{vars, ConfigError, GateConfig, Limits, DEMO_MODE_WARNING};
pub use exchange::{Exchange, Next};
pub use origin::{
    BadOriginUrl, Call, Completion, Forward, OriginReply, OriginResponse, OriginUrl, Rpc,
};
pub use request::{route, BoundedBody, HeaderValues, Headers, NetworkLimit, Request, Route};
pub use response::{Response, NO_STORE, SALE_CACHE};
pub use state::{GateState, SaleEntry, SaleView};

use crate::bot::{BotSignals, BotVerdict};
use crate::identity::{IdentityVerdict, User};
use crate::limit::{self, Decision, LimitKey, Quota};
use crate::proto::flashsale::EventReq;
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
}

impl Verdict {
    /// The client response, unless the verdict is a forward (returned back as the error).
    pub fn into_response(self) -> Result<Response, Forward> {
        match self {
            Verdict::Respond(r) => Ok(r),
            Verdict::Refuse(r) => Ok(r.into()),
            Verdict::Forward(f) => Err(f),
        }
    }
}

/// One step of the pipeline: go on with a `T`, or stop with the verdict.
type Step<T> = Result<T, Verdict>;

fn refuse(reason: Reason) -> Verdict {
    Verdict::Refuse(Refusal::new(reason))
}

/// Who asks, once the shared checks have passed: the request, the verified user, and what the
/// bot rules made of it.
struct Shopper<'r> {
    req: &'r Request<'r>,
    user: User,
    bot: BotVerdict,
}

/// The gate: the configuration, and the decisions.
#[derive(Debug, Clone)]
pub struct Gate {
    config: GateConfig,
}

impl Gate {
    /// A gate over `config`.
    pub fn new(config: GateConfig) -> Self {
        Gate { config }
    }

    /// The configuration.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// Decides one request, updating `state`.
    pub fn decide(&self, req: &Request<'_>, state: &mut GateState) -> Verdict {
        self.decide_steps(req, state)
            .unwrap_or_else(|verdict| verdict)
    }

    /// The key to ask the platform's per-network limiter with (see [`NetworkLimit`]), or `None`
    /// when the request is refused before any limit is consulted (unknown route, oversized,
    /// a bot) or carries no client address. Pure: it decides nothing and changes no state.
    pub fn network_key(&self, req: &Request<'_>) -> Option<String> {
        self.screen(req).ok()?;
        req.client_ip.map(|ip| LimitKey::Ip(ip).to_string())
    }

    /// Steps 1 and 2: route and shape, then bot rules.
    fn screen<'r>(&self, req: &Request<'r>) -> Step<(Route<'r>, BotVerdict)> {
        if req.path.len() > self.config.max_path || req.body.len() > self.config.max_body {
            return Err(refuse(Reason::TooLarge));
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

    fn decide_steps(&self, req: &Request<'_>, state: &mut GateState) -> Step<Verdict> {
        let now = req.now_ms;
        // 1. Route and shape; 2. bot rules.
        let (route, bot) = self.screen(req)?;
        state.traffic.tick(now);
        // 3. Per-network and global limits.
        match req.network_limit {
            NetworkLimit::Local => {
                if let Some(ip) = req.client_ip {
                    self.limit(state, LimitKey::Ip(ip), &self.config.limits.ip, now)?;
                }
            }
            NetworkLimit::Allowed => {}
            NetworkLimit::Exceeded => {
                let wait = self.config.platform_limit_window_ms.max(0) as u64;
                return Err(Verdict::Refuse(Refusal::after(Reason::RateLimited, wait)));
            }
        }
        self.limit(state, LimitKey::Global, &self.config.limits.global, now)?;
        // 4. Identity (every route but the public sale view and the guest door).
        let user = match route {
            Route::Event(id) => return self.event(state, id, now),
            Route::Guest => return self.guest(req),
            _ => self.identify(req)?,
        };
        self.limit(
            state,
            LimitKey::User(&user.id),
            &self.config.limits.user,
            now,
        )?;
        // 5. The route's own checks.
        let shopper = Shopper { req, user, bot };
        match route {
            Route::Challenge(id) => self.challenge(state, &shopper, id),
            Route::Link(id) => self.link(state, &shopper, id),
            Route::Buy(token) => self.buy(state, &shopper, token),
            Route::Order(no) => self.order(state, &shopper, no, Call::GetOrder),
            Route::Pay(no) => self.order(state, &shopper, no, Call::PayOrder),
            Route::Cancel(no) => self.order(state, &shopper, no, Call::CancelOrder),
            Route::Event(_) | Route::Guest => unreachable!("answered above"),
        }
    }

    fn limit(&self, state: &mut GateState, key: LimitKey<'_>, quota: &Quota, now: i64) -> Step<()> {
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
    fn sale(&self, state: &mut GateState, id: i64, now: i64, answer: bool) -> Step<SaleView> {
        match state.fresh_sale(id, now, self.config.sale_ttl_ms) {
            Some(SaleEntry {
                sale: Some(sale), ..
            }) => Ok(*sale),
            Some(SaleEntry { sale: None, .. }) => Err(refuse(Reason::UnknownResource)),
            None => Err(self.forward(
                state,
                Call::GetEvent {
                    event_id: id,
                    answer,
                },
                &EventReq { id },
                now,
            )),
        }
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
