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
//! What it deliberately does not do: I/O, clock reads, randomness, or persistence. State is
//! mutated in place and the caller stores it; [`GateState::prune`] drops what no longer matters.

use crate::bot::{BotPolicy, BotSignals, BotVerdict};
use crate::breaker::{Admission, Breaker, BreakerConfig, Outcome};
use crate::error::{Reason, Refusal};
use crate::grpc_web::{self, Code, Reply, StatusHeaders};
use crate::identity::{Identity, IdentityVerdict, User};
use crate::limit::{self, Decision, LimitKey, Quota, Tat};
use crate::link::{self, Expect, KeyRing, LinkClaims, LinkVerdict};
use crate::pow::{self, DifficultyPolicy, PowVerdict};
use crate::proto::flashsale::{
    BuyOutcome, BuyReply, BuyReq, EventReq, EventState, Order, OrderReq, OrderStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

/// Names of the environment variables / bindings the adapters read, declared once.
pub mod vars {
    /// Purchase-link key ring, `id:base64url,…`, first signs (required).
    pub const LINK_KEYS: &str = "FLASHGATE_LINK_KEYS";
    /// Proof-of-work key ring, same form (defaults to the link ring).
    pub const POW_KEYS: &str = "FLASHGATE_POW_KEYS";
    /// The shop's HS256 user-token key, raw text (required).
    pub const USER_TOKEN_KEY: &str = "FLASHGATE_USER_TOKEN_KEY";
    /// The origin-signature key shared with the warehouse, raw text (required).
    pub const ORIGIN_KEY: &str = "FLASHGATE_ORIGIN_KEY";
    /// `1`/`true`: guests may mint their own identity.
    pub const DEMO_MODE: &str = "FLASHGATE_DEMO_MODE";
    /// Quota per client network, e.g. `20/s burst 40`.
    pub const LIMIT_IP: &str = "FLASHGATE_LIMIT_IP";
    /// Quota per user.
    pub const LIMIT_USER: &str = "FLASHGATE_LIMIT_USER";
    /// Quota per sale (challenge, link and buy requests).
    pub const LIMIT_EVENT: &str = "FLASHGATE_LIMIT_EVENT";
    /// Quota for buys of the SKU under sale (the hot key).
    pub const LIMIT_SKU: &str = "FLASHGATE_LIMIT_SKU";
    /// Quota over everything.
    pub const LIMIT_GLOBAL: &str = "FLASHGATE_LIMIT_GLOBAL";
    /// Denied networks, comma separated CIDRs.
    pub const BOT_DENY: &str = "FLASHGATE_BOT_DENY";
    /// Bot score from which a harder challenge is required.
    pub const BOT_CHALLENGE_AT: &str = "FLASHGATE_BOT_CHALLENGE_AT";
    /// Bot score from which requests are blocked.
    pub const BOT_BLOCK_AT: &str = "FLASHGATE_BOT_BLOCK_AT";
    /// Proof-of-work floor bits.
    pub const POW_FLOOR_BITS: &str = "FLASHGATE_POW_FLOOR_BITS";
    /// Proof-of-work cap bits.
    pub const POW_CAP_BITS: &str = "FLASHGATE_POW_CAP_BITS";
    /// Requests per second below which load adds no difficulty.
    pub const POW_CALM_RATE: &str = "FLASHGATE_POW_CALM_RATE";
    /// Purchase-link lifetime, ms.
    pub const LINK_TTL_MS: &str = "FLASHGATE_LINK_TTL_MS";
    /// Challenge lifetime, ms.
    pub const CHALLENGE_TTL_MS: &str = "FLASHGATE_CHALLENGE_TTL_MS";
    /// Largest accepted request body, bytes.
    pub const MAX_BODY: &str = "FLASHGATE_MAX_BODY";
    /// Breaker cooldown, ms.
    pub const BREAKER_COOLDOWN_MS: &str = "FLASHGATE_BREAKER_COOLDOWN_MS";
    /// The warehouse's gRPC-Web base URL, e.g. `https://origin.example.com` (required by the
    /// adapters; the gate itself never sends anything).
    pub const ORIGIN_URL: &str = "FLASHGATE_ORIGIN_URL";
    /// How long an adapter waits for the warehouse before counting the call failed, ms.
    pub const ORIGIN_TIMEOUT_MS: &str = "FLASHGATE_ORIGIN_TIMEOUT_MS";
    /// The window of the platform's per-network limiter (e.g. the Workers rate-limit binding's
    /// `period`), ms: the Retry-After of its refusals.
    pub const PLATFORM_LIMIT_WINDOW_MS: &str = "FLASHGATE_PLATFORM_LIMIT_WINDOW_MS";
    /// How long a sale view (and with it the sold-out flag) is remembered for buys, ms.
    pub const SALE_MEMORY_MS: &str = "FLASHGATE_SALE_MEMORY_MS";
}

/// The rate limits the gate applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per client network.
    pub ip: Quota,
    /// Per user.
    pub user: Quota,
    /// Per sale.
    pub event: Quota,
    /// Buys of the SKU under sale.
    pub sku: Quota,
    /// Over everything this state sees.
    pub global: Quota,
}

impl Default for Limits {
    fn default() -> Self {
        let q = |text: &str| text.parse::<Quota>().expect("default quotas parse");
        Limits {
            ip: q("20/s burst 40"),
            user: q("5/s burst 10"),
            event: q("2000/s burst 4000"),
            sku: q("1000/s burst 2000"),
            global: q("5000/s burst 10000"),
        }
    }
}

/// Everything the gate is configured with; adapters fill it once, e.g. with
/// [`GateConfig::from_lookup`].
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Signs and verifies purchase links.
    pub link_keys: KeyRing,
    /// Signs and verifies proof-of-work challenges.
    pub pow_keys: KeyRing,
    /// Verifies user tokens (and mints guests in demo mode).
    pub identity: Identity,
    /// Signs forwarded requests for the warehouse.
    pub origin_key: Vec<u8>,
    /// Rate limits.
    pub limits: Limits,
    /// Bot rules.
    pub bot: BotPolicy,
    /// Proof-of-work difficulty.
    pub difficulty: DifficultyPolicy,
    /// Bits added for requests the bot rules want challenged.
    pub bot_extra_bits: u8,
    /// The breaker in front of the origin.
    pub breaker: BreakerConfig,
    /// Largest accepted body, bytes.
    pub max_body: usize,
    /// Longest accepted path, bytes.
    pub max_path: usize,
    /// Purchase-link lifetime (never past the sale's end).
    pub link_ttl_ms: i64,
    /// Challenge lifetime (counted from the sale's start if issued before it).
    pub challenge_ttl_ms: i64,
    /// Guest token lifetime.
    pub guest_ttl_ms: i64,
    /// How long a cached sale view is trusted.
    pub sale_ttl_ms: i64,
    /// Tolerated user-token clock skew.
    pub token_leeway_ms: i64,
    /// How long an adapter waits for the warehouse before it reports [`OriginReply::Failed`].
    pub origin_timeout_ms: i64,
    /// The window of the platform's per-network limiter, for the Retry-After of its refusals
    /// (see [`NetworkLimit`]).
    pub platform_limit_window_ms: i64,
    /// How long a sale view is remembered for the buy path's sold-out flag and window check
    /// (the challenge, link and sale routes refresh after [`GateConfig::sale_ttl_ms`]).
    pub sale_memory_ms: i64,
}

/// Why the configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is absent.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable does not parse.
    #[error("{name} is invalid: {why}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        why: String,
    },
}

impl GateConfig {
    /// A configuration with defaults for everything but the keys.
    pub fn new(link_keys: KeyRing, user_token_key: &[u8], origin_key: &[u8]) -> Self {
        GateConfig {
            pow_keys: link_keys.clone(),
            link_keys,
            identity: Identity::new(user_token_key, 5_000, false),
            origin_key: origin_key.to_vec(),
            limits: Limits::default(),
            bot: BotPolicy::default(),
            difficulty: DifficultyPolicy::default(),
            bot_extra_bits: 4,
            breaker: BreakerConfig::default(),
            max_body: 4 * 1024,
            max_path: 1024,
            link_ttl_ms: 60_000,
            challenge_ttl_ms: 120_000,
            guest_ttl_ms: 3_600_000,
            sale_ttl_ms: 1_000,
            token_leeway_ms: 5_000,
            origin_timeout_ms: 3_000,
            platform_limit_window_ms: 10_000,
            sale_memory_ms: 10_000,
        }
    }

    /// Builds the configuration from variables named in [`vars`], looked up with `get` (the
    /// adapter's env or bindings). Absent optional variables keep their defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn parse<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            name: &'static str,
        ) -> Result<Option<T>, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            get(name)
                .map(|v| v.trim().parse::<T>())
                .transpose()
                .map_err(|e| ConfigError::Invalid {
                    name,
                    why: e.to_string(),
                })
        }
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let secret = |name: &'static str| {
            let value = required(name)?;
            if value.len() < crate::origin_auth::MIN_KEY_LEN {
                return Err(ConfigError::Invalid {
                    name,
                    why: "shorter than 16 bytes".into(),
                });
            }
            Ok(value.into_bytes())
        };
        let ring = |name: &'static str, text: String| {
            KeyRing::parse(&text).map_err(|e| ConfigError::Invalid {
                name,
                why: e.to_string(),
            })
        };
        let link_keys = ring(vars::LINK_KEYS, required(vars::LINK_KEYS)?)?;
        let mut config = GateConfig::new(
            link_keys,
            &secret(vars::USER_TOKEN_KEY)?,
            &secret(vars::ORIGIN_KEY)?,
        );
        if let Some(text) = get(vars::POW_KEYS).filter(|t| !t.is_empty()) {
            config.pow_keys = ring(vars::POW_KEYS, text)?;
        }
        let demo = get(vars::DEMO_MODE).is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        config.identity =
            Identity::new(&secret(vars::USER_TOKEN_KEY)?, config.token_leeway_ms, demo);
        let limits = &mut config.limits;
        for (name, slot) in [
            (vars::LIMIT_IP, &mut limits.ip),
            (vars::LIMIT_USER, &mut limits.user),
            (vars::LIMIT_EVENT, &mut limits.event),
            (vars::LIMIT_SKU, &mut limits.sku),
            (vars::LIMIT_GLOBAL, &mut limits.global),
        ] {
            if let Some(q) = parse::<Quota>(&get, name)? {
                *slot = q;
            }
        }
        if let Some(text) = get(vars::BOT_DENY) {
            config.bot.deny =
                BotPolicy::parse_deny_list(&text).map_err(|e| ConfigError::Invalid {
                    name: vars::BOT_DENY,
                    why: e.to_string(),
                })?;
        }
        if let Some(v) = parse(&get, vars::BOT_CHALLENGE_AT)? {
            config.bot.challenge_at = v;
        }
        if let Some(v) = parse(&get, vars::BOT_BLOCK_AT)? {
            config.bot.block_at = v;
        }
        if let Some(v) = parse(&get, vars::POW_FLOOR_BITS)? {
            config.difficulty.floor_bits = v;
        }
        if let Some(v) = parse(&get, vars::POW_CAP_BITS)? {
            config.difficulty.cap_bits = v;
        }
        if let Some(v) = parse(&get, vars::POW_CALM_RATE)? {
            config.difficulty.calm_rate_per_s = v;
        }
        if let Some(v) = parse(&get, vars::LINK_TTL_MS)? {
            config.link_ttl_ms = v;
        }
        if let Some(v) = parse(&get, vars::CHALLENGE_TTL_MS)? {
            config.challenge_ttl_ms = v;
        }
        if let Some(v) = parse(&get, vars::MAX_BODY)? {
            config.max_body = v;
        }
        if let Some(v) = parse(&get, vars::BREAKER_COOLDOWN_MS)? {
            config.breaker.cooldown_ms = v;
        }
        if let Some(v) = parse(&get, vars::ORIGIN_TIMEOUT_MS)? {
            config.origin_timeout_ms = v;
        }
        if let Some(v) = parse(&get, vars::PLATFORM_LIMIT_WINDOW_MS)? {
            config.platform_limit_window_ms = v;
        }
        if let Some(v) = parse(&get, vars::SALE_MEMORY_MS)? {
            config.sale_memory_ms = v;
        }
        Ok(config)
    }
}

/// The request headers the gate reads (`None` when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    /// `Authorization` (a `Bearer` user token).
    pub authorization: Option<&'a str>,
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// `Accept-Language`.
    pub accept_language: Option<&'a str>,
    /// `Sec-Fetch-Site`.
    pub sec_fetch_site: Option<&'a str>,
    /// `Sec-Fetch-Mode`.
    pub sec_fetch_mode: Option<&'a str>,
}

/// Who limits requests per client network.
///
/// A platform with a limiter of its own that every instance of a location shares (the Workers
/// rate-limit binding) asks it under the key [`Gate::network_key`] gives, before deciding, and
/// says what it answered; elsewhere the gate keeps a GCRA bucket per network in its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkLimit {
    /// No platform limiter: the gate limits networks itself ([`Limits::ip`]).
    #[default]
    Local,
    /// The platform's limiter let the request through.
    Allowed,
    /// The platform's limiter refused it: answered with a Retry-After of its window
    /// ([`GateConfig::platform_limit_window_ms`]).
    Exceeded,
}

/// One request, as the adapter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path, without the query string.
    pub path: &'a str,
    /// The headers that matter.
    pub headers: Headers<'a>,
    /// The client's address, as the platform reports it.
    pub client_ip: Option<IpAddr>,
    /// The platform's bot score (1 automated … 99 human), if it gives one.
    pub platform_bot_score: Option<u8>,
    /// What the platform's per-network limiter said, if it has one.
    pub network_limit: NetworkLimit,
    /// The body (read up to [`GateConfig::max_body`] + 1 bytes; the gate refuses longer ones).
    pub body: &'a [u8],
    /// Unix ms, read once by the adapter.
    pub now_ms: i64,
    /// Fresh randomness for nonces, seeds and guest ids.
    pub entropy: [u8; 32],
}

/// An `/api` route, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /api/events/{id}`: the sale's public state.
    Event(i64),
    /// `POST /api/events/{id}/challenge`: a proof-of-work challenge.
    Challenge(i64),
    /// `POST /api/events/{id}/link`: a PoW answer for a purchase link.
    Link(i64),
    /// `POST /api/buy/{token}`: buy through a purchase link.
    Buy(&'a str),
    /// `GET /api/orders/{no}`.
    Order(&'a str),
    /// `POST /api/orders/{no}/pay`.
    Pay(&'a str),
    /// `POST /api/orders/{no}/cancel`.
    Cancel(&'a str),
    /// `POST /api/session/guest` (demo mode only).
    Guest,
}

fn order_no(text: &str) -> Option<&str> {
    let ok = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(text)
}

fn event_id(text: &str) -> Option<i64> {
    (text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
        .filter(|id| *id > 0)
}

/// Parses a method and path into a route, or the refusal for it.
pub fn route<'a>(method: &str, path: &'a str) -> Result<Route<'a>, Reason> {
    let path = path.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix("/api/").ok_or(Reason::NotFound)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (route, allowed) = match parts.as_slice() {
        ["events", id] => (event_id(id).map(Route::Event), "GET"),
        ["events", id, "challenge"] => (event_id(id).map(Route::Challenge), "POST"),
        ["events", id, "link"] => (event_id(id).map(Route::Link), "POST"),
        ["buy", token] => {
            let ok = !token.is_empty() && token.len() <= link::MAX_TOKEN_LEN;
            (ok.then_some(Route::Buy(token)), "POST")
        }
        ["orders", no] => (order_no(no).map(Route::Order), "GET"),
        ["orders", no, "pay"] => (order_no(no).map(Route::Pay), "POST"),
        ["orders", no, "cancel"] => (order_no(no).map(Route::Cancel), "POST"),
        ["session", "guest"] => (Some(Route::Guest), "POST"),
        _ => return Err(Reason::NotFound),
    };
    if !method.eq_ignore_ascii_case(allowed) {
        return Err(Reason::MethodNotAllowed);
    }
    route.ok_or(Reason::BadRequest)
}

/// A sale as the edge caches it (from the warehouse's `EventState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
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

impl Sale {
    fn from_state(state: &EventState) -> Option<Sale> {
        let e = state.event.as_ref()?;
        Some(Sale {
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
    pub sale: Option<Sale>,
    /// When it was fetched, unix ms.
    pub fetched_ms: i64,
}

/// Recent request rate, from two one-second windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateMeter {
    window_start_ms: i64,
    current: u32,
    previous: u32,
}

impl RateMeter {
    /// Counts one request at `now_ms`.
    pub fn tick(&mut self, now_ms: i64) {
        self.roll(now_ms);
        self.current = self.current.saturating_add(1);
    }

    fn roll(&mut self, now_ms: i64) {
        let elapsed = now_ms.saturating_sub(self.window_start_ms);
        if elapsed >= 2_000 {
            *self = RateMeter {
                window_start_ms: now_ms,
                current: 0,
                previous: 0,
            };
        } else if elapsed >= 1_000 {
            *self = RateMeter {
                window_start_ms: self.window_start_ms + 1_000,
                current: 0,
                previous: self.current,
            };
        }
    }

    /// Requests per second at `now_ms`: the previous window weighted by how much of it still
    /// overlaps the last second, plus the current one.
    pub fn rate(&self, now_ms: i64) -> u32 {
        let mut m = *self;
        m.roll(now_ms);
        let into = now_ms.saturating_sub(m.window_start_ms).clamp(0, 1_000) as u64;
        (u64::from(m.previous) * (1_000 - into) / 1_000 + u64::from(m.current)) as u32
    }
}

/// The state the gate reads and updates; the adapter owns and stores it. It serialises with
/// serde (e.g. to JSON) for runtimes that keep state between requests only in a store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateState {
    /// Rate-limit buckets by [`LimitKey`] storage key.
    pub limits: HashMap<String, Tat>,
    /// The origin breaker.
    pub breaker: Breaker,
    /// Cached sale views by event id.
    pub sales: HashMap<i64, SaleEntry>,
    /// Recent `/api` request rate, for proof-of-work difficulty.
    pub traffic: RateMeter,
    /// When [`Gate::housekeep`] last pruned, unix ms.
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

    fn fresh_sale(&self, id: i64, now_ms: i64, ttl_ms: i64) -> Option<&SaleEntry> {
        self.sales
            .get(&id)
            .filter(|e| now_ms.saturating_sub(e.fetched_ms) < ttl_ms)
    }
}

/// A response the edge sends to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// `Retry-After`, seconds.
    pub retry_after_s: Option<u64>,
    /// `Cache-Control`.
    pub cache_control: &'static str,
}

impl Response {
    /// The headers an edge sends with the response, besides its status and body: the JSON
    /// content type, `Cache-Control`, `nosniff`, and `Retry-After` where waiting helps.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/json; charset=utf-8".to_owned()),
            ("cache-control", self.cache_control.to_owned()),
            ("x-content-type-options", "nosniff".to_owned()),
        ];
        if let Some(seconds) = self.retry_after_s {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers
    }
}

/// `Cache-Control` for anything personal or one-off.
pub const NO_STORE: &str = "no-store";
/// `Cache-Control` for a sale's public state: a crowd polling it costs the origin once a second.
pub const SALE_CACHE: &str = "public, max-age=1";

impl From<Refusal> for Response {
    fn from(refusal: Refusal) -> Self {
        Response {
            status: refusal.status(),
            body: refusal.to_json(),
            retry_after_s: refusal.retry_after_secs(),
            cache_control: NO_STORE,
        }
    }
}

fn ok_json(status: u16, body: &impl Serialize, cache_control: &'static str) -> Response {
    Response {
        status,
        body: serde_json::to_string(body).expect("plain structs serialise"),
        retry_after_s: None,
        cache_control,
    }
}

/// Which warehouse call a [`Forward`] is, with what [`Gate::complete`] needs to read its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `flashsale.Admin/GetEvent`; `answer`: whether the reply answers the client (the event
    /// route) or only refreshes the cache before deciding again.
    GetEvent {
        /// The sale.
        event_id: i64,
        /// Answer the client with it.
        answer: bool,
    },
    /// `flashsale.Seckill/Buy`.
    Buy {
        /// The sale (for the sold-out flag).
        event_id: i64,
    },
    /// `flashsale.Seckill/GetOrder`.
    GetOrder,
    /// `flashsale.Seckill/PayOrder`.
    PayOrder,
    /// `flashsale.Seckill/CancelOrder`.
    CancelOrder,
}

impl Call {
    /// The gRPC method path.
    pub fn path(&self) -> &'static str {
        match self {
            Call::GetEvent { .. } => "/flashsale.Admin/GetEvent",
            Call::Buy { .. } => "/flashsale.Seckill/Buy",
            Call::GetOrder => "/flashsale.Seckill/GetOrder",
            Call::PayOrder => "/flashsale.Seckill/PayOrder",
            Call::CancelOrder => "/flashsale.Seckill/CancelOrder",
        }
    }
}

/// A ready gRPC-Web call to the warehouse: `POST {origin}{path}` with these headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// What it is.
    pub call: Call,
    /// The gRPC method path, appended to the origin's base URL.
    pub path: &'static str,
    /// Request headers: gRPC-Web's and the origin signature.
    pub headers: Vec<(&'static str, String)>,
    /// The framed request body.
    pub body: Vec<u8>,
}

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

/// What the warehouse answered to a [`Forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginReply<'a> {
    /// An HTTP response.
    Http {
        /// HTTP status.
        status: u16,
        /// `grpc-status` / `grpc-message` response headers (trailers-only responses).
        grpc: StatusHeaders<'a>,
        /// The body.
        body: &'a [u8],
    },
    /// No response: connection failure or timeout.
    Failed,
}

/// What to do after [`Gate::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Send this to the client.
    Respond(Response),
    /// A sale view was refreshed: call [`Gate::decide`] again for the same request.
    Retry,
}

/// What an adapter does next for one request (see [`Exchange`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send this to the client: the request is done.
    Respond(Response),
    /// Send this call to the warehouse and hand its reply to [`Exchange::reply`].
    Send(Forward),
}

/// One request's way through the gate: housekeeping and a decision, then for each forward the
/// warehouse's reply, until there is a response. It is the adapter loop of the module docs,
/// kept here so that no adapter carries it; it borrows no state between steps, so an adapter
/// may release its state (a thread-local, a key-value entry) while the call is in flight.
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
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exchange {
    retried: bool,
}

impl Exchange {
    /// Housekeeps `state` ([`Gate::housekeep`]) and decides `req`.
    pub fn start(&mut self, gate: &Gate, req: &Request<'_>, state: &mut GateState) -> Next {
        gate.housekeep(state, req.now_ms);
        Self::next(gate.decide(req, state))
    }

    /// Hands the warehouse's `reply` to `call` to the gate ([`Gate::complete`]), deciding `req`
    /// once more when a refreshed sale view asks for it. The core promises that happens at most
    /// once; a second time is answered `503` rather than looping.
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
            Completion::Retry if !self.retried => {
                self.retried = true;
                Self::next(gate.decide(req, state))
            }
            Completion::Retry => Next::Respond(Refusal::after(Reason::Unavailable, 1_000).into()),
        }
    }

    fn next(verdict: Verdict) -> Next {
        match verdict.into_response() {
            Ok(response) => Next::Respond(response),
            Err(call) => Next::Send(call),
        }
    }
}

type Step<T> = Result<T, Verdict>;

fn refuse(reason: Reason) -> Verdict {
    Verdict::Refuse(Refusal::new(reason))
}

/// The gate: the configuration, and the decisions.
#[derive(Debug, Clone)]
pub struct Gate {
    config: GateConfig,
}

#[derive(Deserialize)]
struct LinkBody<'a> {
    challenge: &'a str,
    nonce: u64,
}

#[derive(Deserialize, Default)]
struct BuyBody {
    #[serde(default)]
    qty: Option<u32>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        match route {
            Route::Challenge(id) => self.challenge(req, state, &user, id, bot),
            Route::Link(id) => self.link(req, state, &user, id, bot),
            Route::Buy(token) => self.buy(req, state, &user, token),
            Route::Order(no) => self.order(req, state, &user, no, Call::GetOrder),
            Route::Pay(no) => self.order(req, state, &user, no, Call::PayOrder),
            Route::Cancel(no) => self.order(req, state, &user, no, Call::CancelOrder),
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

    /// The cached sale, or a refresh forward if the cache has nothing fresh.
    fn sale(&self, state: &mut GateState, id: i64, now: i64) -> Step<Sale> {
        match state.fresh_sale(id, now, self.config.sale_ttl_ms) {
            Some(SaleEntry {
                sale: Some(sale), ..
            }) => Ok(*sale),
            Some(SaleEntry { sale: None, .. }) => Err(refuse(Reason::UnknownResource)),
            None => Err(self.forward(
                state,
                Call::GetEvent {
                    event_id: id,
                    answer: false,
                },
                &EventReq { id },
                now,
            )),
        }
    }

    fn open_sale(sale: &Sale, now: i64, allow_upcoming: bool) -> Step<()> {
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

    fn forward(
        &self,
        state: &mut GateState,
        call: Call,
        message: &impl prost::Message,
        now: i64,
    ) -> Verdict {
        let (admission, breaker) = state.breaker.admit(now, &self.config.breaker);
        state.breaker = breaker;
        if let Admission::FailFast { retry_after_ms } = admission {
            return Verdict::Refuse(Refusal::after(Reason::Unavailable, retry_after_ms));
        }
        let path = call.path();
        let body = grpc_web::encode_request(message);
        let sig = crate::origin_auth::sign(&self.config.origin_key, "POST", path, now, &body);
        let mut headers: Vec<(&'static str, String)> = grpc_web::REQUEST_HEADERS
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        headers.push((crate::origin_auth::TIMESTAMP_HEADER, sig.timestamp));
        headers.push((crate::origin_auth::SIGNATURE_HEADER, sig.signature));
        Verdict::Forward(Forward {
            call,
            path,
            headers,
            body,
        })
    }

    fn event(&self, state: &mut GateState, id: i64, now: i64) -> Step<Verdict> {
        match state.fresh_sale(id, now, self.config.sale_ttl_ms) {
            Some(SaleEntry {
                sale: Some(sale), ..
            }) => Ok(Verdict::Respond(sale_response(sale, now))),
            Some(SaleEntry { sale: None, .. }) => Err(refuse(Reason::UnknownResource)),
            None => Ok(self.forward(
                state,
                Call::GetEvent {
                    event_id: id,
                    answer: true,
                },
                &EventReq { id },
                now,
            )),
        }
    }

    fn guest(&self, req: &Request<'_>) -> Step<Verdict> {
        let id = hex(&req.entropy[..12]);
        match self
            .config
            .identity
            .mint_guest(&id, req.now_ms, self.config.guest_ttl_ms)
        {
            Ok((user, token)) => {
                #[derive(Serialize)]
                struct Guest<'a> {
                    token: &'a str,
                    user_id: &'a str,
                    expires_ms: i64,
                }
                let body = Guest {
                    token: &token,
                    user_id: &user.id,
                    expires_ms: user.expires_ms,
                };
                Ok(Verdict::Respond(ok_json(200, &body, NO_STORE)))
            }
            Err(_) => Err(refuse(Reason::NotFound)),
        }
    }

    fn required_bits(&self, bot: BotVerdict) -> u8 {
        let extra = if bot == BotVerdict::Challenge {
            self.config.bot_extra_bits
        } else {
            0
        };
        self.config
            .difficulty
            .floor_bits
            .saturating_add(extra)
            .min(pow::MAX_BITS)
    }

    fn challenge(
        &self,
        req: &Request<'_>,
        state: &mut GateState,
        user: &User,
        id: i64,
        bot: BotVerdict,
    ) -> Step<Verdict> {
        let now = req.now_ms;
        self.limit(state, LimitKey::Event(id), &self.config.limits.event, now)?;
        let sale = self.sale(state, id, now)?;
        Self::open_sale(&sale, now, true)?;
        let load = self
            .config
            .difficulty
            .bits(state.traffic.rate(now), sale.remaining, sale.pool);
        let bits = load.max(self.required_bits(bot));
        let challenge = pow::Challenge {
            event_id: id,
            user_id: user.id.clone(),
            seed: req.entropy[..16].try_into().expect("16 bytes"),
            bits,
            expires_ms: now
                .max(sale.start_ms)
                .saturating_add(self.config.challenge_ttl_ms),
        };
        let token = pow::issue(&self.config.pow_keys, &challenge)
            .ok_or_else(|| refuse(Reason::BadRequest))?;
        #[derive(Serialize)]
        struct Issued<'a> {
            challenge: &'a str,
            bits: u8,
            expires_ms: i64,
            starts_ms: i64,
        }
        let body = Issued {
            challenge: &token,
            bits,
            expires_ms: challenge.expires_ms,
            starts_ms: sale.start_ms,
        };
        Ok(Verdict::Respond(ok_json(200, &body, NO_STORE)))
    }

    fn link(
        &self,
        req: &Request<'_>,
        state: &mut GateState,
        user: &User,
        id: i64,
        bot: BotVerdict,
    ) -> Step<Verdict> {
        let now = req.now_ms;
        let answer: LinkBody<'_> =
            serde_json::from_slice(req.body).map_err(|_| refuse(Reason::BadRequest))?;
        self.limit(state, LimitKey::Event(id), &self.config.limits.event, now)?;
        let sale = self.sale(state, id, now)?;
        Self::open_sale(&sale, now, false)?;
        let verdict = pow::verify(
            &self.config.pow_keys,
            answer.challenge,
            answer.nonce,
            &user.id,
            id,
            self.required_bits(bot),
            now,
        );
        match verdict {
            PowVerdict::Valid(_) => {}
            PowVerdict::Expired => return Err(refuse(Reason::ChallengeExpired)),
            _ => return Err(refuse(Reason::ChallengeRequired)),
        }
        let claims = LinkClaims {
            event_id: id,
            sku_id: sale.sku_id,
            user_id: user.id.clone(),
            max_qty: sale.per_user_limit.clamp(1, u32::from(u16::MAX)) as u16,
            not_before_ms: sale.start_ms,
            expires_ms: now.saturating_add(self.config.link_ttl_ms).min(sale.end_ms),
            nonce: req.entropy[16..32].try_into().expect("16 bytes"),
        };
        let token = match link::mint(&self.config.link_keys, &claims, now) {
            Ok(token) => token,
            Err(link::MintRefusal::SaleNotStarted { wait_ms }) => {
                return Err(Verdict::Refuse(Refusal::after(Reason::TooEarly, wait_ms)))
            }
            Err(link::MintRefusal::InvalidClaims) => return Err(refuse(Reason::BadRequest)),
        };
        #[derive(Serialize)]
        struct Minted<'a> {
            token: &'a str,
            path: String,
            max_qty: u16,
            expires_ms: i64,
        }
        let body = Minted {
            path: format!("/api/buy/{token}"),
            token: &token,
            max_qty: claims.max_qty,
            expires_ms: claims.expires_ms,
        };
        Ok(Verdict::Respond(ok_json(200, &body, NO_STORE)))
    }

    fn buy(
        &self,
        req: &Request<'_>,
        state: &mut GateState,
        user: &User,
        token: &str,
    ) -> Step<Verdict> {
        let now = req.now_ms;
        let body: BuyBody = if req.body.iter().all(u8::is_ascii_whitespace) {
            BuyBody::default()
        } else {
            serde_json::from_slice(req.body).map_err(|_| refuse(Reason::BadRequest))?
        };
        let qty = body.qty.unwrap_or(1);
        let expect = Expect {
            user_id: &user.id,
            event_id: None,
            qty,
        };
        let claims = match link::verify(&self.config.link_keys, token, &expect, now) {
            LinkVerdict::Valid(claims) => claims,
            LinkVerdict::NotYetValid { wait_ms } => {
                return Err(Verdict::Refuse(Refusal::after(Reason::TooEarly, wait_ms)))
            }
            LinkVerdict::Expired => return Err(refuse(Reason::LinkExpired)),
            LinkVerdict::QtyTooLarge => return Err(refuse(Reason::QtyTooLarge)),
            _ => return Err(refuse(Reason::BadLink)),
        };
        self.limit(
            state,
            LimitKey::Event(claims.event_id),
            &self.config.limits.event,
            now,
        )?;
        self.limit(
            state,
            LimitKey::Sku(claims.sku_id),
            &self.config.limits.sku,
            now,
        )?;
        // The sold-out flag and the window: any remembered view will do (views are dropped
        // after `sale_memory_ms`); with none, fetch it first, so that a sold-out sale is known
        // again from one cheap `GetEvent` and its buyers never reach `Buy`.
        match state.sales.get(&claims.event_id) {
            // A link binds its sale's SKU: one minted for another definition of the sale is
            // not this sale's.
            Some(SaleEntry {
                sale: Some(sale), ..
            }) if sale.sku_id != claims.sku_id => return Err(refuse(Reason::BadLink)),
            Some(SaleEntry {
                sale: Some(sale), ..
            }) => Self::open_sale(sale, now, false)?,
            Some(SaleEntry { sale: None, .. }) => return Err(refuse(Reason::UnknownResource)),
            None => {
                self.sale(state, claims.event_id, now)?;
            }
        }
        let message = BuyReq {
            event_id: claims.event_id,
            user_id: user.id.clone(),
            qty: qty as i32,
            // One link, one purchase: a retried buy returns the same order.
            request_id: format!("link-{}", hex(&claims.nonce)),
        };
        Ok(self.forward(
            state,
            Call::Buy {
                event_id: claims.event_id,
            },
            &message,
            now,
        ))
    }

    fn order(
        &self,
        req: &Request<'_>,
        state: &mut GateState,
        user: &User,
        no: &str,
        call: Call,
    ) -> Step<Verdict> {
        let message = OrderReq {
            order_no: no.to_owned(),
            user_id: user.id.clone(),
        };
        Ok(self.forward(state, call, &message, req.now_ms))
    }

    /// Handles the warehouse's reply to `forward`: updates the breaker and the cached sale, and
    /// says what to send to the client.
    pub fn complete(
        &self,
        state: &mut GateState,
        forward: &Forward,
        reply: OriginReply<'_>,
        now_ms: i64,
    ) -> Completion {
        let max = grpc_web::DEFAULT_MAX_MESSAGE;
        let parsed = match reply {
            OriginReply::Failed => None,
            OriginReply::Http { status, grpc, body } => Some((status, grpc, body)),
        };
        macro_rules! parse {
            ($t:ty) => {
                match parsed.map(|(s, g, b)| grpc_web::parse_response::<$t>(s, g, b, max)) {
                    Some(Ok(Reply::Message(m))) => Ok(m),
                    Some(Ok(Reply::Status(status))) => Err(Some(status)),
                    Some(Err(_)) | None => Err(None),
                }
            };
        }
        let result: Result<Response, Option<grpc_web::Status>> = match &forward.call {
            Call::GetEvent { event_id, answer } => match parse!(EventState) {
                Ok(event) => {
                    let sale = Sale::from_state(&event);
                    state.sales.insert(
                        *event_id,
                        SaleEntry {
                            sale,
                            fetched_ms: now_ms,
                        },
                    );
                    Ok(match sale {
                        Some(sale) if *answer => sale_response(&sale, now_ms),
                        Some(_) => {
                            return self.settle(state, Outcome::Success, now_ms, Completion::Retry)
                        }
                        None => Refusal::new(Reason::UnknownResource).into(),
                    })
                }
                Err(Some(status)) if status.code == Code::NotFound => {
                    state.sales.insert(
                        *event_id,
                        SaleEntry {
                            sale: None,
                            fetched_ms: now_ms,
                        },
                    );
                    Err(Some(status))
                }
                Err(e) => Err(e),
            },
            Call::Buy { event_id } => parse!(BuyReply).map(|reply| {
                self.observe_buy(state, *event_id, &reply);
                buy_response(&reply)
            }),
            Call::GetOrder | Call::PayOrder | Call::CancelOrder => {
                parse!(Order).map(|order| ok_json(200, &OrderView::from(&order), NO_STORE))
            }
        };
        match result {
            Ok(response) => self.settle(
                state,
                Outcome::Success,
                now_ms,
                Completion::Respond(response),
            ),
            Err(None) => {
                let refusal = Refusal::after(Reason::Unavailable, 1_000);
                self.settle(
                    state,
                    Outcome::Failure,
                    now_ms,
                    Completion::Respond(refusal.into()),
                )
            }
            Err(Some(status)) => {
                let (outcome, refusal) = status_refusal(status.code);
                self.settle(state, outcome, now_ms, Completion::Respond(refusal.into()))
            }
        }
    }

    fn settle(
        &self,
        state: &mut GateState,
        outcome: Outcome,
        now: i64,
        done: Completion,
    ) -> Completion {
        state.breaker = state.breaker.record(outcome, now, &self.config.breaker);
        done
    }

    fn observe_buy(&self, state: &mut GateState, event_id: i64, reply: &BuyReply) {
        if let Some(SaleEntry {
            sale: Some(sale), ..
        }) = state.sales.get_mut(&event_id)
        {
            sale.remaining = reply.remaining.max(0) as u32;
            let outcome = BuyOutcome::try_from(reply.outcome).unwrap_or(BuyOutcome::Unspecified);
            if outcome == BuyOutcome::SoldOut
                || (outcome == BuyOutcome::Queued && reply.remaining <= 0)
            {
                sale.sold_out = true;
            }
        }
    }
}

fn status_refusal(code: Code) -> (Outcome, Refusal) {
    use Code::*;
    let business = |reason| (Outcome::Success, Refusal::new(reason));
    match code {
        NotFound | PermissionDenied => business(Reason::UnknownResource),
        FailedPrecondition | AlreadyExists | Aborted => business(Reason::Conflict),
        InvalidArgument | OutOfRange => business(Reason::BadRequest),
        ResourceExhausted => (Outcome::Failure, Refusal::after(Reason::RateLimited, 1_000)),
        _ => (Outcome::Failure, Refusal::after(Reason::Unavailable, 1_000)),
    }
}

fn sale_response(sale: &Sale, now: i64) -> Response {
    #[derive(Serialize)]
    struct View<'a> {
        #[serde(flatten)]
        sale: &'a Sale,
        status: &'static str,
        server_time_ms: i64,
    }
    let status = if now < sale.start_ms {
        "upcoming"
    } else if now >= sale.end_ms {
        "ended"
    } else if sale.sold_out {
        "sold_out"
    } else {
        "running"
    };
    ok_json(
        200,
        &View {
            sale,
            status,
            server_time_ms: now,
        },
        SALE_CACHE,
    )
}

fn buy_response(reply: &BuyReply) -> Response {
    let outcome = BuyOutcome::try_from(reply.outcome).unwrap_or(BuyOutcome::Unspecified);
    let reason = match outcome {
        BuyOutcome::Queued => {
            #[derive(Serialize)]
            struct Queued<'a> {
                outcome: &'static str,
                order_no: &'a str,
                remaining: i32,
            }
            let body = Queued {
                outcome: "queued",
                order_no: &reply.order_no,
                remaining: reply.remaining,
            };
            return ok_json(202, &body, NO_STORE);
        }
        BuyOutcome::SoldOut => Reason::SoldOut,
        BuyOutcome::LimitReached => Reason::LimitReached,
        BuyOutcome::NotStarted => Reason::TooEarly,
        BuyOutcome::Ended => Reason::SaleEnded,
        BuyOutcome::UnknownEvent => Reason::UnknownResource,
        BuyOutcome::Unspecified => Reason::Unavailable,
    };
    Refusal::new(reason).into()
}

/// An order as the client sees it.
#[derive(Debug, Serialize)]
struct OrderView<'a> {
    order_no: &'a str,
    event_id: i64,
    sku_id: i64,
    qty: i32,
    status: &'static str,
    deadline_ms: i64,
    created_ms: i64,
}

impl<'a> From<&'a Order> for OrderView<'a> {
    fn from(o: &'a Order) -> Self {
        let status = match OrderStatus::try_from(o.status).unwrap_or(OrderStatus::Unspecified) {
            OrderStatus::Queued => "queued",
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
            OrderStatus::Unspecified => "unknown",
        };
        OrderView {
            order_no: &o.order_no,
            event_id: o.event_id,
            sku_id: o.sku_id,
            qty: o.qty,
            status,
            deadline_ms: o.deadline_ms,
            created_ms: o.created_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_into_typed_values() {
        assert_eq!(route("GET", "/api/events/7"), Ok(Route::Event(7)));
        assert_eq!(
            route("POST", "/api/events/7/challenge"),
            Ok(Route::Challenge(7))
        );
        assert_eq!(route("post", "/api/events/7/link?x=1"), Ok(Route::Link(7)));
        assert_eq!(route("POST", "/api/buy/abc"), Ok(Route::Buy("abc")));
        assert_eq!(route("GET", "/api/orders/O-1"), Ok(Route::Order("O-1")));
        assert_eq!(route("POST", "/api/orders/O-1/pay"), Ok(Route::Pay("O-1")));
        assert_eq!(
            route("POST", "/api/orders/O-1/cancel"),
            Ok(Route::Cancel("O-1"))
        );
        assert_eq!(route("POST", "/api/session/guest"), Ok(Route::Guest));
        assert_eq!(
            route("POST", "/api/events/7"),
            Err(Reason::MethodNotAllowed)
        );
        assert_eq!(route("GET", "/api/events/x"), Err(Reason::BadRequest));
        assert_eq!(route("GET", "/api/events/0"), Err(Reason::BadRequest));
        assert_eq!(
            route("GET", "/api/events/99999999999999999999"),
            Err(Reason::BadRequest)
        );
        assert_eq!(route("GET", "/api/orders/a b"), Err(Reason::BadRequest));
        assert_eq!(route("GET", "/index.html"), Err(Reason::NotFound));
        assert_eq!(
            route("GET", "/api/events/7/extra/parts"),
            Err(Reason::NotFound)
        );
    }

    #[test]
    fn the_rate_meter_weights_the_previous_second() {
        let mut m = RateMeter::default();
        for i in 0..100 {
            m.tick(10_000 + i * 10);
        }
        assert_eq!(m.rate(10_999), 100);
        assert_eq!(m.rate(11_500), 50);
        assert_eq!(m.rate(12_000), 0);
        assert_eq!(m.rate(20_000), 0);
    }
}
