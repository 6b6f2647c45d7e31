//! What the gate is configured with: the variable names the adapters read ([`vars`]), the rate
//! limits, and [`GateConfig`], built once per adapter instance from a lookup function.
//!
//! Every optional variable is a row of one table (its name and how its text lands in the
//! configuration), so adding a setting is one line and every setting is refused the same way:
//! a [`ConfigError`] naming the variable, including a duration that is not positive. The
//! required keys and the origin URL (`https://`, or plain `http://` only to a loopback host) are
//! read once, before the table.
//!
//! What it deliberately does not do: read an environment itself (the adapter passes its env or
//! bindings in as a function), or hold runtime state.

use super::origin::OriginUrl;
use crate::bot::BotPolicy;
use crate::breaker::BreakerConfig;
use crate::identity::{Identity, TokenPolicy, UserKeys};
use crate::limit::Quota;
use crate::link::KeyRing;
use crate::pow::DifficultyPolicy;
use std::fmt::Display;
use std::str::FromStr;

/// Names of the environment variables / bindings the adapters read, declared once.
pub mod vars {
    /// Purchase-link key ring, `id:base64url,…`, first signs (required).
    pub const LINK_KEYS: &str = "FLASHGATE_LINK_KEYS";
    /// Proof-of-work key ring, same form (defaults to the link ring).
    pub const POW_KEYS: &str = "FLASHGATE_POW_KEYS";
    /// The shop's HS256 user-token key, raw text of at least 32 bytes, for tokens without a
    /// `kid` (this or [`USER_TOKEN_KEYS`] is required).
    pub const USER_TOKEN_KEY: &str = "FLASHGATE_USER_TOKEN_KEY";
    /// The shop's HS256 user-token keys by `kid`, `kid:base64url,…` (keys of at least 32
    /// bytes); the first also verifies tokens without a `kid` (instead of [`USER_TOKEN_KEY`]).
    pub const USER_TOKEN_KEYS: &str = "FLASHGATE_USER_TOKEN_KEYS";
    /// When set, a user token's `aud` must contain it.
    pub const USER_TOKEN_AUDIENCE: &str = "FLASHGATE_USER_TOKEN_AUDIENCE";
    /// When set, a user token's `iss` must be it.
    pub const USER_TOKEN_ISSUER: &str = "FLASHGATE_USER_TOKEN_ISSUER";
    /// The longest lifetime (`exp − iat`) of an accepted user token, seconds (default 7 days).
    pub const USER_TOKEN_MAX_LIFETIME_S: &str = "FLASHGATE_USER_TOKEN_MAX_LIFETIME_S";
    /// The origin-signature key shared with the warehouse, raw text (required).
    pub const ORIGIN_KEY: &str = "FLASHGATE_ORIGIN_KEY";
    /// `1`/`true`/`yes`: guests may mint their own identity (signed with a key derived for
    /// demo use only), and only then are guest identities accepted. Never in production.
    pub const DEMO_MODE: &str = "FLASHGATE_DEMO_MODE";
    /// Quota per client network, e.g. `20/s burst 40`.
    pub const LIMIT_IP: &str = "FLASHGATE_LIMIT_IP";
    /// Quota per user.
    pub const LIMIT_USER: &str = "FLASHGATE_LIMIT_USER";
    /// Quota per sale (challenge, link and buy requests).
    pub const LIMIT_EVENT: &str = "FLASHGATE_LIMIT_EVENT";
    /// Quota of polls per place in a waiting room (one user in one sale).
    pub const LIMIT_PLACE: &str = "FLASHGATE_LIMIT_PLACE";
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
    /// The warehouse's gRPC-Web base URL, e.g. `https://origin.example.com` (required: every
    /// adapter sends the gate's calls there; the gate itself never sends anything).
    pub const ORIGIN_URL: &str = "FLASHGATE_ORIGIN_URL";
    /// How long an adapter waits for the warehouse before counting the call failed, ms.
    pub const ORIGIN_TIMEOUT_MS: &str = "FLASHGATE_ORIGIN_TIMEOUT_MS";
    /// The window of the platform's per-network limiter (e.g. the Workers rate-limit binding's
    /// `period`), ms: the Retry-After of its refusals.
    pub const PLATFORM_LIMIT_WINDOW_MS: &str = "FLASHGATE_PLATFORM_LIMIT_WINDOW_MS";
    /// How long a sale view (and with it the sold-out flag) is remembered for buys, ms.
    pub const SALE_MEMORY_MS: &str = "FLASHGATE_SALE_MEMORY_MS";
    /// How often the directory of sale ids (`Admin/ListEvents`) may be refreshed, ms: at most
    /// one call per interval per instance, whatever the traffic.
    pub const SALE_DIRECTORY_REFRESH_MS: &str = "FLASHGATE_SALE_DIRECTORY_REFRESH_MS";
    /// How often a waiting room's snapshot (`Queue/GetQueue`) may be refreshed, ms: at most one
    /// call per interval per instance and sale, however many buyers poll.
    pub const QUEUE_REFRESH_MS: &str = "FLASHGATE_QUEUE_REFRESH_MS";
    /// How long an instance that gathers joins (the Worker) gathers a sale's joins before it
    /// sends them in one `Queue/JoinQueueMany`, ms: at most one join call per interval per
    /// instance and sale, however many join.
    pub const QUEUE_JOIN_BATCH_MS: &str = "FLASHGATE_QUEUE_JOIN_BATCH_MS";
}

/// What the adapters log, loudly, when [`vars::DEMO_MODE`] is on: once per instance, when they
/// build the gate.
pub const DEMO_MODE_WARNING: &str =
    "DEMO MODE: guest identities and demo payments are on; never in production";

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
    /// Polls of one place in a waiting room: no faster than the page's quickest advised pace
    /// (every 500 ms), so a bot polling flat out learns of its admission no sooner than a
    /// person's page does.
    pub place: Quota,
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
            place: q("2/s burst 3"),
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
    /// Where the adapter sends the gate's forwards (validated; the gate never sends anything).
    pub origin: OriginUrl,
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
    /// Challenge lifetime, counted from when it is issued (also before the sale's start).
    pub challenge_ttl_ms: i64,
    /// Guest token lifetime.
    pub guest_ttl_ms: i64,
    /// How long a cached sale view is trusted.
    pub sale_ttl_ms: i64,
    /// Tolerated user-token clock skew.
    pub token_leeway_ms: i64,
    /// How long an adapter waits for the warehouse before it reports
    /// [`OriginReply::Failed`](super::OriginReply::Failed).
    pub origin_timeout_ms: i64,
    /// The window of the platform's per-network limiter, for the Retry-After of its refusals
    /// (see [`NetworkLimit`](super::NetworkLimit)).
    pub platform_limit_window_ms: i64,
    /// How long a sale view is remembered for the buy path's sold-out flag and window check
    /// (the challenge, link and sale routes refresh after [`GateConfig::sale_ttl_ms`]).
    pub sale_memory_ms: i64,
    /// How old the directory of sale ids may be before it is refreshed, and the least time
    /// between two refreshes (see [`SaleDirectory`](super::SaleDirectory)).
    pub directory_refresh_ms: i64,
    /// How old a waiting room's snapshot may be before it is refreshed, and the least time
    /// between two refreshes of one sale's (see [`QueueEntry`](super::QueueEntry)).
    pub queue_refresh_ms: i64,
    /// How long a gate that gathers joins ([`Gate::gathering_joins`](super::Gate::gathering_joins))
    /// gathers a sale's joins before sending them together (see [`JoinWait`](super::JoinWait)).
    pub queue_join_batch_ms: i64,
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

/// How one optional variable's text lands in the configuration; the error is the reason only,
/// the table loop names the variable.
type Apply = fn(&mut GateConfig, &str) -> Result<(), String>;

/// Every optional variable: absent ones keep [`GateConfig::new`]'s defaults. One row per
/// setting, so it stays a table rather than a wrapped list.
#[rustfmt::skip]
const SETTINGS: &[(&str, Apply)] = &[
    (vars::POW_KEYS, pow_keys),
    (vars::USER_TOKEN_AUDIENCE, |c, t| { c.identity.policy_mut().audience = claim(t); Ok(()) }),
    (vars::USER_TOKEN_ISSUER, |c, t| { c.identity.policy_mut().issuer = claim(t); Ok(()) }),
    (vars::USER_TOKEN_MAX_LIFETIME_S, max_lifetime),
    (vars::LIMIT_IP, |c, t| parse(&mut c.limits.ip, t)),
    (vars::LIMIT_USER, |c, t| parse(&mut c.limits.user, t)),
    (vars::LIMIT_EVENT, |c, t| parse(&mut c.limits.event, t)),
    (vars::LIMIT_SKU, |c, t| parse(&mut c.limits.sku, t)),
    (vars::LIMIT_PLACE, |c, t| parse(&mut c.limits.place, t)),
    (vars::LIMIT_GLOBAL, |c, t| parse(&mut c.limits.global, t)),
    (vars::BOT_DENY, bot_deny),
    (vars::BOT_CHALLENGE_AT, |c, t| parse(&mut c.bot.challenge_at, t)),
    (vars::BOT_BLOCK_AT, |c, t| parse(&mut c.bot.block_at, t)),
    (vars::POW_FLOOR_BITS, |c, t| parse(&mut c.difficulty.floor_bits, t)),
    (vars::POW_CAP_BITS, |c, t| parse(&mut c.difficulty.cap_bits, t)),
    (vars::POW_CALM_RATE, |c, t| parse(&mut c.difficulty.calm_rate_per_s, t)),
    (vars::LINK_TTL_MS, |c, t| duration(&mut c.link_ttl_ms, t)),
    (vars::CHALLENGE_TTL_MS, |c, t| duration(&mut c.challenge_ttl_ms, t)),
    (vars::MAX_BODY, |c, t| parse(&mut c.max_body, t)),
    (vars::BREAKER_COOLDOWN_MS, |c, t| duration(&mut c.breaker.cooldown_ms, t)),
    (vars::ORIGIN_TIMEOUT_MS, |c, t| duration(&mut c.origin_timeout_ms, t)),
    (vars::PLATFORM_LIMIT_WINDOW_MS, |c, t| duration(&mut c.platform_limit_window_ms, t)),
    (vars::SALE_MEMORY_MS, |c, t| duration(&mut c.sale_memory_ms, t)),
    (vars::SALE_DIRECTORY_REFRESH_MS, |c, t| duration(&mut c.directory_refresh_ms, t)),
    (vars::QUEUE_REFRESH_MS, |c, t| duration(&mut c.queue_refresh_ms, t)),
    (vars::QUEUE_JOIN_BATCH_MS, |c, t| duration(&mut c.queue_join_batch_ms, t)),
];

/// An empty proof-of-work ring keeps the default, the link ring.
fn pow_keys(config: &mut GateConfig, text: &str) -> Result<(), String> {
    if !text.is_empty() {
        config.pow_keys = KeyRing::parse(text).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// An audience or issuer to require; empty text requires none.
fn claim(text: &str) -> Option<String> {
    Some(text.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Whole seconds, at least one: a lifetime of zero would refuse every token.
fn max_lifetime(config: &mut GateConfig, text: &str) -> Result<(), String> {
    let mut seconds = 0_i64;
    parse(&mut seconds, text)?;
    if seconds < 1 {
        return Err(format!("a lifetime must be at least 1 s (got {seconds})"));
    }
    config.identity.policy_mut().max_lifetime_s = seconds;
    Ok(())
}

/// The shop's keys: [`vars::USER_TOKEN_KEY`] (one key) or [`vars::USER_TOKEN_KEYS`] (a ring by
/// `kid`), exactly one of them.
fn user_keys(get: &impl Fn(&str) -> Option<String>) -> Result<UserKeys, ConfigError> {
    let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let invalid = |name: &'static str| move |why: String| ConfigError::Invalid { name, why };
    match (set(vars::USER_TOKEN_KEY), set(vars::USER_TOKEN_KEYS)) {
        (Some(_), Some(_)) => Err(invalid(vars::USER_TOKEN_KEYS)(format!(
            "set either it or {}, not both",
            vars::USER_TOKEN_KEY
        ))),
        (Some(key), None) => UserKeys::single(key.as_bytes())
            .map_err(|e| invalid(vars::USER_TOKEN_KEY)(e.to_string())),
        (None, Some(ring)) => {
            UserKeys::parse(&ring).map_err(|e| invalid(vars::USER_TOKEN_KEYS)(e.to_string()))
        }
        (None, None) => Err(ConfigError::Missing(vars::USER_TOKEN_KEY)),
    }
}

fn bot_deny(config: &mut GateConfig, text: &str) -> Result<(), String> {
    config.bot.deny = BotPolicy::parse_deny_list(text).map_err(|e| e.to_string())?;
    Ok(())
}

/// Parses `text` (trimmed) into `slot`.
fn parse<T: FromStr>(slot: &mut T, text: &str) -> Result<(), String>
where
    T::Err: Display,
{
    *slot = text.trim().parse().map_err(|e: T::Err| e.to_string())?;
    Ok(())
}

/// Parses a duration in ms into `slot`; zero or a negative one would silently mean "never" or
/// "always" depending on where it is used (a challenge born expired, a breaker that never cools
/// down, a directory refreshed on every request), so it is refused.
fn duration(slot: &mut i64, text: &str) -> Result<(), String> {
    let mut ms = 0_i64;
    parse(&mut ms, text)?;
    if ms <= 0 {
        return Err(format!("a duration must be positive (got {ms} ms)"));
    }
    *slot = ms;
    Ok(())
}

impl GateConfig {
    /// A configuration with defaults for everything but the keys; the origin is the edge
    /// listener of the development setup's warehouse (`http://127.0.0.1:50052`).
    pub fn new(link_keys: KeyRing, user_keys: UserKeys, origin_key: &[u8]) -> Self {
        GateConfig {
            pow_keys: link_keys.clone(),
            link_keys,
            identity: Identity::new(user_keys, TokenPolicy::default(), false),
            origin_key: origin_key.to_vec(),
            origin: OriginUrl::parse("http://127.0.0.1:50052").expect("a valid URL"),
            limits: Limits::default(),
            bot: BotPolicy::default(),
            difficulty: DifficultyPolicy::default(),
            bot_extra_bits: 4,
            breaker: BreakerConfig::default(),
            max_body: 4 * 1024,
            max_path: 1024,
            link_ttl_ms: 60_000,
            challenge_ttl_ms: 60_000,
            guest_ttl_ms: 3_600_000,
            sale_ttl_ms: 1_000,
            token_leeway_ms: 5_000,
            origin_timeout_ms: 3_000,
            platform_limit_window_ms: 10_000,
            sale_memory_ms: 10_000,
            directory_refresh_ms: 1_000,
            queue_refresh_ms: 1_000,
            queue_join_batch_ms: 1_000,
        }
    }

    /// Builds the configuration from variables named in [`vars`], looked up with `get` (the
    /// adapter's env or bindings). The keys and the origin URL are required; absent optional
    /// variables keep their defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let invalid = |name: &'static str| move |why: String| ConfigError::Invalid { name, why };
        let secret = |name: &'static str| {
            let value = required(name)?;
            if value.len() < crate::origin_auth::MIN_KEY_LEN {
                return Err(invalid(name)("shorter than 16 bytes".into()));
            }
            Ok(value.into_bytes())
        };
        let link_keys = KeyRing::parse(&required(vars::LINK_KEYS)?)
            .map_err(|e| invalid(vars::LINK_KEYS)(e.to_string()))?;
        let user_keys = user_keys(&get)?;
        let mut config = GateConfig::new(link_keys, user_keys.clone(), &secret(vars::ORIGIN_KEY)?);
        config.origin = OriginUrl::parse(&required(vars::ORIGIN_URL)?)
            .map_err(|e| invalid(vars::ORIGIN_URL)(e.to_string()))?;
        let demo = get(vars::DEMO_MODE).is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        let policy = TokenPolicy {
            leeway_ms: config.token_leeway_ms,
            ..TokenPolicy::default()
        };
        config.identity = Identity::new(user_keys, policy, demo);
        for (name, apply) in SETTINGS {
            if let Some(text) = get(name) {
                apply(&mut config, &text).map_err(invalid(name))?;
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
