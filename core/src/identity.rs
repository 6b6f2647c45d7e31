//! Who is asking: verification of the shop's user token, and guest identities in demo mode.
//!
//! The shop signs its users' sessions as HS256 JWTs (`sub` = user id, `exp` required, `nbf`
//! optional, seconds since the epoch). [`Identity::verify`] checks the algorithm, the MAC (in
//! constant time), `exp` and `nbf` against the `now` the caller passes, with a small leeway for
//! clock skew, and yields the [`User`]. In demo mode only, [`Identity::mint_guest`] signs a
//! short-lived token for a guest id the caller draws at random, so the storefront works without a
//! shop login.
//!
//! The JWT crate is `jwt-compact` (with default features off), not `jsonwebtoken`: every
//! `jsonwebtoken` release depends on `getrandom` 0.2 and `js-sys` on all wasm32 targets, which
//! does not compile for `wasm32-unknown-unknown` without a JavaScript backend and reads the clock
//! through `Date.now()`. `jwt-compact` takes the clock as a function and needs neither.
//!
//! What it deliberately does not do: sessions, refresh, revocation lists, or any algorithm but
//! HS256 (a token naming another `alg` is refused, which also closes the `alg: none` hole).

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

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The `sub` claim.
    pub id: String,
    /// Whether it is a demo-mode guest.
    pub guest: bool,
    /// When the token expires, unix ms.
    pub expires_ms: i64,
}

/// The outcome of verifying a user token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityVerdict {
    /// A genuine, current token.
    Valid(User),
    /// No token was presented.
    Missing,
    /// Not a JWT, too long, not HS256, or without a usable `sub`/`exp`.
    Malformed,
    /// The MAC does not match.
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    NotYetValid,
}

/// Why a guest token was not minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestRefusal {
    /// Demo mode is off: only the shop issues identities.
    DemoModeOff,
    /// The random id is empty, too long, or not URL-safe text.
    BadId,
}

#[derive(Debug, Serialize, Deserialize)]
struct Subject {
    sub: String,
}

/// The verifier (and, in demo mode, guest issuer) of user tokens.
#[derive(Clone)]
pub struct Identity {
    key: Hs256Key,
    leeway_ms: i64,
    demo_mode: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("leeway_ms", &self.leeway_ms)
            .field("demo_mode", &self.demo_mode)
            .finish_non_exhaustive()
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
    /// A verifier for tokens MACed with `key`, tolerating `leeway_ms` of clock skew.
    pub fn new(key: &[u8], leeway_ms: i64, demo_mode: bool) -> Self {
        Identity {
            key: Hs256Key::new(key),
            leeway_ms: leeway_ms.max(0),
            demo_mode,
        }
    }

    /// Whether guest tokens may be minted.
    pub fn demo_mode(&self) -> bool {
        self.demo_mode
    }

    /// Verifies `token` (`None` when the request carried none) at `now_ms`.
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
        let token = match Hs256.validator::<Subject>(&self.key).validate(&untrusted) {
            Ok(token) => token,
            Err(jwt_compact::ValidationError::InvalidSignature) => {
                return IdentityVerdict::BadSignature
            }
            Err(_) => return IdentityVerdict::Malformed,
        };
        let claims = token.claims();
        let options = TimeOptions::new(chrono::Duration::milliseconds(self.leeway_ms), || {
            utc(now_ms)
        });
        let Some(expiration) = claims.expiration else {
            return IdentityVerdict::Malformed;
        };
        if claims.validate_expiration(&options).is_err() {
            return IdentityVerdict::Expired;
        }
        if claims.not_before.is_some() && claims.validate_maturity(&options).is_err() {
            return IdentityVerdict::NotYetValid;
        }
        let sub = &claims.custom.sub;
        if sub.is_empty() || sub.len() > MAX_SUB_LEN {
            return IdentityVerdict::Malformed;
        }
        IdentityVerdict::Valid(User {
            id: sub.clone(),
            guest: sub.starts_with(GUEST_PREFIX),
            expires_ms: expiration.timestamp_millis(),
        })
    }

    /// Mints a token for `sub` valid from `now_ms` for `ttl_ms`; the shop's own login does this
    /// in production, so this is for tests, tools and [`Identity::mint_guest`].
    pub fn mint(&self, sub: &str, now_ms: i64, ttl_ms: i64) -> String {
        let mut claims = Claims::new(Subject {
            sub: sub.to_owned(),
        });
        claims.issued_at = Some(utc(now_ms));
        claims.expiration = Some(utc(now_ms.saturating_add(ttl_ms)));
        Hs256
            .token(&Header::empty(), &claims, &self.key)
            .expect("a string claim and timestamps serialise")
    }

    /// Demo mode only: mints a guest token for `random_id` (drawn by the caller, URL-safe
    /// text of 8 to 64 bytes), as user `guest:<random_id>`.
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
        let id = format!("{GUEST_PREFIX}{random_id}");
        let token = self.mint(&id, now_ms, ttl_ms);
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"shop-session-key-0123456789";
    const NOW: i64 = 1_764_064_800_000;

    fn identity() -> Identity {
        Identity::new(KEY, 5_000, false)
    }

    #[test]
    fn a_shop_token_verifies_until_it_expires() {
        let token = identity().mint("alice", NOW, 60_000);
        let IdentityVerdict::Valid(user) = identity().verify(Some(&token), NOW + 1) else {
            panic!("valid token refused")
        };
        assert_eq!(
            (user.id.as_str(), user.guest, user.expires_ms),
            ("alice", false, NOW + 60_000)
        );
        assert!(matches!(
            identity().verify(Some(&token), NOW + 65_000),
            IdentityVerdict::Valid(_)
        ));
        assert_eq!(
            identity().verify(Some(&token), NOW + 65_001),
            IdentityVerdict::Expired
        );
    }

    #[test]
    fn forged_missing_and_malformed_tokens_are_told_apart() {
        let token = identity().mint("alice", NOW, 60_000);
        let other = Identity::new(b"another-key-0123456789", 0, false);
        assert_eq!(
            other.verify(Some(&token), NOW),
            IdentityVerdict::BadSignature
        );
        assert_eq!(identity().verify(None, NOW), IdentityVerdict::Missing);
        assert_eq!(
            identity().verify(Some("a.b.c"), NOW),
            IdentityVerdict::Malformed
        );
        assert_eq!(
            identity().verify(Some(&"x".repeat(5000)), NOW),
            IdentityVerdict::Malformed
        );
        // alg "none", a classic downgrade: header {"alg":"none"} and an empty signature.
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert_eq!(
            identity().verify(Some(none), NOW),
            IdentityVerdict::Malformed
        );
    }

    #[test]
    fn tokens_without_exp_or_sub_are_malformed_and_nbf_is_honoured() {
        let key = Hs256Key::new(KEY);
        let mut no_exp = Claims::new(Subject {
            sub: "alice".into(),
        });
        let t = Hs256.token(&Header::empty(), &no_exp, &key).unwrap();
        assert_eq!(identity().verify(Some(&t), NOW), IdentityVerdict::Malformed);
        no_exp.expiration = Some(utc(NOW + 60_000));
        no_exp.not_before = Some(utc(NOW + 30_000));
        let t = Hs256.token(&Header::empty(), &no_exp, &key).unwrap();
        assert_eq!(
            identity().verify(Some(&t), NOW),
            IdentityVerdict::NotYetValid
        );
        assert!(matches!(
            identity().verify(Some(&t), NOW + 25_000),
            IdentityVerdict::Valid(_)
        ));
        let empty = Claims::new(Subject { sub: String::new() }).set_not_before(utc(0));
        let mut empty = empty;
        empty.expiration = Some(utc(NOW + 60_000));
        let t = Hs256.token(&Header::empty(), &empty, &key).unwrap();
        assert_eq!(identity().verify(Some(&t), NOW), IdentityVerdict::Malformed);
    }

    #[test]
    fn guests_are_minted_only_in_demo_mode() {
        assert_eq!(
            identity().mint_guest("abcdefgh1234", NOW, 60_000),
            Err(GuestRefusal::DemoModeOff)
        );
        let demo = Identity::new(KEY, 0, true);
        assert_eq!(
            demo.mint_guest("short", NOW, 60_000),
            Err(GuestRefusal::BadId)
        );
        assert_eq!(
            demo.mint_guest("has space 123", NOW, 60_000),
            Err(GuestRefusal::BadId)
        );
        let (user, token) = demo.mint_guest("abcdefgh1234", NOW, 60_000).unwrap();
        assert_eq!(user.id, "guest:abcdefgh1234");
        assert_eq!(demo.verify(Some(&token), NOW), IdentityVerdict::Valid(user));
    }

    #[test]
    fn bearer_headers_are_parsed_leniently_but_not_blindly() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
