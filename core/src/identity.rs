//! Who is asking: verification of the shop's user tokens, and guest identities in demo mode.
//!
//! The shop signs its users' sessions as HS256 JWTs. [`Identity::verify`] takes the `now` the
//! caller passes and accepts a token only when all of these hold:
//!
//! - the header says `alg: HS256`, and the MAC (checked in constant time) is that of the key
//!   the header's `kid` names in the [`UserKeys`] ring, or of the primary key when it names none;
//! - `sub` is the user id: 1 to [`MAX_SUB_LEN`] bytes, not starting with [`GUEST_PREFIX`];
//! - when the [`TokenPolicy`] names an issuer, `iss` is it; when it names an audience, `aud` (a
//!   string or an array of strings, RFC 7519 §4.1.3) contains it. A shop that signs other tokens
//!   with the same key (password resets, e-mail links) sets both, so those are no session here;
//! - `exp` has not passed; `nbf`, if present, and `iat` are not ahead of `now` (all three with
//!   the policy's leeway for clock skew); and `iat` is present and `exp − iat` is at most the
//!   policy's maximum lifetime (7 days by default), so no token is good for ever.
//!
//! In demo mode only, [`Identity::mint_guest`] signs a short-lived token for a guest id the
//! caller draws at random, so the storefront works without a shop login. A guest token is marked
//! three ways — header `kid` [`GUEST_KID`], `iss` and `aud` [`GUEST_ISSUER`], `sub` `guest:…` —
//! and is signed with the demo key derived from the primary key (see [`UserKeys`]), never with
//! the shop's key: no other service that verifies the shop's tokens accepts one, and with demo
//! mode off [`Identity::verify`] refuses it, however valid, before computing any MAC.
//!
//! The JWT crate is `jwt-compact` (with default features off), not `jsonwebtoken`: every
//! `jsonwebtoken` release depends on `getrandom` 0.2 and `js-sys` on all wasm32 targets, which
//! does not compile for `wasm32-unknown-unknown` without a JavaScript backend and reads the clock
//! through `Date.now()`. `jwt-compact` takes the clock as a function and needs neither.
//!
//! What it deliberately does not do: sessions, refresh, revocation lists, key sets fetched from
//! the shop (JWKS), or any algorithm but HS256 (a token naming another `alg` is refused, which
//! also closes the `alg: none` hole).

mod keys;
#[cfg(test)]
mod tests;

pub use keys::{UserKeyError, UserKeys, GUEST_KID, MAX_KID_LEN, MIN_KEY_LEN};

use chrono::{DateTime, Utc};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt as _, Claims, Header, TimeOptions, UntrustedToken};
use serde::{Deserialize, Serialize};

/// Longest token accepted, in bytes; larger ones are refused before parsing.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Prefix of guest user ids, so the shop and the warehouse can tell guests apart.
pub const GUEST_PREFIX: &str = "guest:";
/// Longest user id accepted, in bytes (the purchase link's bound).
pub const MAX_SUB_LEN: usize = crate::link::MAX_USER_LEN;
/// `iss` and `aud` of guest tokens.
pub const GUEST_ISSUER: &str = "flashgate-demo";
/// The default longest lifetime (`exp − iat`) of a user token: 7 days, in seconds.
pub const DEFAULT_MAX_LIFETIME_S: i64 = 7 * 24 * 60 * 60;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The `sub` claim.
    pub id: String,
    /// Whether it is a demo-mode guest (a token signed with the demo key).
    pub guest: bool,
    /// When the token expires, unix ms.
    pub expires_ms: i64,
}

/// The outcome of verifying a user token. Only `Valid` says anything about the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityVerdict {
    /// A genuine, current token.
    Valid(User),
    /// No token was presented.
    Missing,
    /// Not a JWT, too long, not HS256, without `exp`, without a usable `sub` (or a shop token
    /// whose `sub` claims to be a guest), or with claims of the wrong type.
    Malformed,
    /// The header's `kid` names no key of the ring (retired or foreign).
    UnknownKey,
    /// The MAC does not match.
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` or `iat` is still ahead (beyond the leeway).
    NotYetValid,
    /// Without `iat`, or `exp − iat` is longer than the policy's maximum lifetime.
    TooLongLived,
    /// The policy names an audience and `aud` does not contain it (or a guest token's `aud` is
    /// not [`GUEST_ISSUER`]).
    WrongAudience,
    /// The policy names an issuer and `iss` is another (or a guest token's `iss` is not
    /// [`GUEST_ISSUER`]).
    WrongIssuer,
    /// A guest token while demo mode is off.
    GuestOutsideDemo,
}

/// Why a guest token was not minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestRefusal {
    /// Demo mode is off: only the shop issues identities.
    DemoModeOff,
    /// The random id is empty, too long, or not URL-safe text.
    BadId,
}

/// What a user token must say besides its signature: the shop's settings
/// (`FLASHGATE_USER_TOKEN_AUDIENCE`, `…_ISSUER`, `…_MAX_LIFETIME_S`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// When set, `aud` must contain it.
    pub audience: Option<String>,
    /// When set, `iss` must be it.
    pub issuer: Option<String>,
    /// The longest `exp − iat` accepted, seconds.
    pub max_lifetime_s: i64,
    /// Tolerated clock skew for `exp`, `nbf` and `iat`, ms.
    pub leeway_ms: i64,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            audience: None,
            issuer: None,
            max_lifetime_s: DEFAULT_MAX_LIFETIME_S,
            leeway_ms: 5_000,
        }
    }
}

/// `aud`: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// The claims this verifier reads besides the times.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Subject {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
}

/// The verifier (and, in demo mode, guest issuer) of user tokens.
#[derive(Clone)]
pub struct Identity {
    keys: UserKeys,
    policy: TokenPolicy,
    demo_mode: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("keys", &self.keys)
            .field("policy", &self.policy)
            .field("demo_mode", &self.demo_mode)
            .finish()
    }
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// Extracts the token from an `Authorization: Bearer …` header value.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Identity {
    /// A verifier of tokens signed with `keys` under `policy`; `demo_mode` lets guests in.
    pub fn new(keys: UserKeys, policy: TokenPolicy, demo_mode: bool) -> Self {
        Identity {
            keys,
            policy,
            demo_mode,
        }
    }

    /// Whether guest tokens may be minted and are accepted.
    pub fn demo_mode(&self) -> bool {
        self.demo_mode
    }

    /// What tokens must say.
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// What tokens must say, to change (the configuration's table does).
    pub fn policy_mut(&mut self) -> &mut TokenPolicy {
        &mut self.policy
    }

    /// Verifies `token` (`None` when the request carried none) at `now_ms`.
    ///
    /// Checks run in this order, each only if the one before passed: size and shape, the key
    /// the header picks (a guest token only in demo mode), the MAC, `sub`, `iss`, `aud`, then
    /// the times (`exp`, `nbf`, `iat`, the lifetime).
    pub fn verify(&self, token: Option<&str>, now_ms: i64) -> IdentityVerdict {
        let Some(token) = token else {
            return IdentityVerdict::Missing;
        };
        if token.len() > MAX_TOKEN_LEN {
            return IdentityVerdict::Malformed;
        }
        let Ok(untrusted) = UntrustedToken::new(token) else {
            return IdentityVerdict::Malformed;
        };
        let kid = untrusted.header().key_id.as_deref();
        let guest = kid == Some(GUEST_KID);
        let key = if guest {
            if !self.demo_mode {
                return IdentityVerdict::GuestOutsideDemo;
            }
            self.keys.guest()
        } else {
            match self.keys.pick(kid) {
                Some(key) => key,
                None => return IdentityVerdict::UnknownKey,
            }
        };
        let token = match Hs256.validator::<Subject>(key).validate(&untrusted) {
            Ok(token) => token,
            Err(jwt_compact::ValidationError::InvalidSignature) => {
                return IdentityVerdict::BadSignature
            }
            Err(_) => return IdentityVerdict::Malformed,
        };
        self.check(token.claims(), guest, now_ms)
    }

    /// The claims of a token whose MAC verified, as a shop token or (`guest`) a guest token.
    fn check(&self, claims: &Claims<Subject>, guest: bool, now_ms: i64) -> IdentityVerdict {
        let Subject { sub, iss, aud } = &claims.custom;
        if sub.is_empty() || sub.len() > MAX_SUB_LEN || sub.starts_with(GUEST_PREFIX) != guest {
            return IdentityVerdict::Malformed;
        }
        let (issuer, audience) = if guest {
            (Some(GUEST_ISSUER), Some(GUEST_ISSUER))
        } else {
            (
                self.policy.issuer.as_deref(),
                self.policy.audience.as_deref(),
            )
        };
        if issuer.is_some_and(|issuer| iss.as_deref() != Some(issuer)) {
            return IdentityVerdict::WrongIssuer;
        }
        if audience.is_some_and(|audience| !aud.as_ref().is_some_and(|a| a.contains(audience))) {
            return IdentityVerdict::WrongAudience;
        }
        let leeway_ms = self.policy.leeway_ms.max(0);
        let options = TimeOptions::new(chrono::Duration::milliseconds(leeway_ms), || utc(now_ms));
        let Some(expiration) = claims.expiration else {
            return IdentityVerdict::Malformed;
        };
        if claims.validate_expiration(&options).is_err() {
            return IdentityVerdict::Expired;
        }
        if claims.not_before.is_some() && claims.validate_maturity(&options).is_err() {
            return IdentityVerdict::NotYetValid;
        }
        let Some(issued) = claims.issued_at else {
            return IdentityVerdict::TooLongLived;
        };
        // Without this, an `iat` set in the future would stretch the lifetime check's reach.
        if issued.timestamp_millis() > now_ms.saturating_add(leeway_ms) {
            return IdentityVerdict::NotYetValid;
        }
        if expiration.timestamp().saturating_sub(issued.timestamp()) > self.policy.max_lifetime_s {
            return IdentityVerdict::TooLongLived;
        }
        IdentityVerdict::Valid(User {
            id: sub.clone(),
            guest,
            expires_ms: expiration.timestamp_millis(),
        })
    }

    /// Mints a shop token for `sub`, issued at `now_ms` and valid for `ttl_ms`, signed with the
    /// primary key (its `kid` in the header) and carrying the policy's `iss` and `aud`. The
    /// shop's own login does this in production, so this is for tests and tools.
    pub fn mint(&self, sub: &str, now_ms: i64, ttl_ms: i64) -> String {
        let (kid, key) = self.keys.primary();
        let subject = Subject {
            sub: sub.to_owned(),
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone().map(Audience::One),
        };
        sign(key, kid, subject, now_ms, ttl_ms)
    }

    /// Demo mode only: mints a guest token for `random_id` (drawn by the caller, URL-safe
    /// text of 8 to 64 bytes), as user `guest:<random_id>`, valid for `ttl_ms` (at most the
    /// policy's maximum lifetime) and signed with the demo key.
    pub fn mint_guest(
        &self,
        random_id: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<(User, String), GuestRefusal> {
        if !self.demo_mode {
            return Err(GuestRefusal::DemoModeOff);
        }
        let ok = (8..=64).contains(&random_id.len())
            && random_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(GuestRefusal::BadId);
        }
        let ttl_ms = ttl_ms.min(self.policy.max_lifetime_s.saturating_mul(1000));
        let id = format!("{GUEST_PREFIX}{random_id}");
        let subject = Subject {
            sub: id.clone(),
            iss: Some(GUEST_ISSUER.to_owned()),
            aud: Some(Audience::One(GUEST_ISSUER.to_owned())),
        };
        let token = sign(self.keys.guest(), Some(GUEST_KID), subject, now_ms, ttl_ms);
        // JWT times are whole seconds.
        let expires_ms = now_ms.saturating_add(ttl_ms) / 1000 * 1000;
        Ok((
            User {
                id,
                guest: true,
                expires_ms,
            },
            token,
        ))
    }
}

/// An HS256 token with `iat = now_ms` and `exp = now_ms + ttl_ms`.
fn sign(key: &Hs256Key, kid: Option<&str>, subject: Subject, now_ms: i64, ttl_ms: i64) -> String {
    let mut claims = Claims::new(subject);
    claims.issued_at = Some(utc(now_ms));
    claims.expiration = Some(utc(now_ms.saturating_add(ttl_ms)));
    let header = match kid {
        Some(kid) => Header::empty().with_key_id(kid),
        None => Header::empty(),
    };
    Hs256
        .token(&header, &claims, key)
        .expect("string claims and timestamps serialise")
}
