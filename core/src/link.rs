//! Signed purchase links (秒杀连接加密): the only way to reach the buy path.
//!
//! The edge mints a link only once the sale has started and the user has passed the challenge,
//! so the buy URL cannot be known or scripted in advance. A link binds the sale, the SKU, the
//! user, the most units they may ask for and a validity window; it is MACed with HMAC-SHA256
//! under a key of a [`KeyRing`], so keys rotate without breaking links already handed out.
//!
//! # Token format, version 1
//!
//! The token is the URL-safe base64 (RFC 4648 §5, no padding) of these bytes, all integers
//! big-endian:
//!
//! ```text
//! offset  size  field
//! 0       1     version = 0x01
//! 1       4     key id (u32): which ring key made the MAC
//! 5       8     event id (i64)
//! 13      8     sku id (i64)
//! 21      2     max qty (u16)
//! 23      8     not-before, unix ms (i64) = the sale's start
//! 31      8     expiry, unix ms (i64), exclusive
//! 39      16    nonce (from the caller; the gate's is its challenge's, see below)
//! 55      1     L = user id length in bytes, 1..=128
//! 56      L     user id, UTF-8
//! 56+L    32    HMAC-SHA256(key, "flashgate-link-v1" ‖ bytes[0 .. 56+L])
//! ```
//!
//! A token is at most 288 characters; anything over [`MAX_TOKEN_LEN`] (512) is refused before
//! decoding. The MAC is checked with `verify_slice` (constant time) before any field is trusted.
//!
//! What it deliberately does not do: remember which links were used (the warehouse's idempotency
//! key, derived from the nonce, makes a replayed link return the same order), read a clock, or
//! generate nonces. The gate passes the solved challenge's
//! [`link_nonce`](crate::pow::Challenge::link_nonce), so every link minted from one answer is one
//! purchase.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest token string accepted, in characters.
pub const MAX_TOKEN_LEN: usize = 512;
/// Longest user id a link can bind, in bytes.
pub const MAX_USER_LEN: usize = 128;
/// Shortest accepted key, in bytes.
pub const MIN_KEY_LEN: usize = 16;

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"flashgate-link-v1";
const MAC_LEN: usize = 32;
const FIXED_LEN: usize = 56;

/// A set of HMAC keys by id: one signs, all verify. Rotation: add the new key, make it the
/// signing key, drop the old one once its links have expired.
#[derive(Clone)]
pub struct KeyRing {
    signing: u32,
    keys: Vec<(u32, Vec<u8>)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        let ids: Vec<u32> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("KeyRing")
            .field("signing", &self.signing)
            .field("ids", &ids)
            .finish()
    }
}

/// Why a key ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    /// The signing key id is not among the keys.
    #[error("signing key id {0} is not in the ring")]
    NoSigningKey(u32),
    /// A key is shorter than [`MIN_KEY_LEN`].
    #[error("key {0} is shorter than {MIN_KEY_LEN} bytes")]
    ShortKey(u32),
    /// Two keys share an id.
    #[error("key id {0} appears twice")]
    DuplicateId(u32),
    /// The text form could not be parsed.
    #[error("key ring text is malformed: expected `id:base64url,…`")]
    Malformed,
}

impl KeyRing {
    /// A ring from `(id, key)` pairs, signing with `signing`.
    pub fn new(signing: u32, keys: Vec<(u32, Vec<u8>)>) -> Result<Self, KeyRingError> {
        for (i, (id, key)) in keys.iter().enumerate() {
            if key.len() < MIN_KEY_LEN {
                return Err(KeyRingError::ShortKey(*id));
            }
            if keys[..i].iter().any(|(other, _)| other == id) {
                return Err(KeyRingError::DuplicateId(*id));
            }
        }
        if !keys.iter().any(|(id, _)| *id == signing) {
            return Err(KeyRingError::NoSigningKey(signing));
        }
        Ok(KeyRing { signing, keys })
    }

    /// A ring with a single key, id 1.
    pub fn single(key: &[u8]) -> Result<Self, KeyRingError> {
        KeyRing::new(1, vec![(1, key.to_vec())])
    }

    /// Parses `"2:base64url,1:base64url"`: the first key signs, all verify (URL-safe base64,
    /// padding optional).
    pub fn parse(text: &str) -> Result<Self, KeyRingError> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, b64) = part.split_once(':').ok_or(KeyRingError::Malformed)?;
            let id: u32 = id.trim().parse().map_err(|_| KeyRingError::Malformed)?;
            let key = URL_SAFE_NO_PAD
                .decode(b64.trim().trim_end_matches('='))
                .map_err(|_| KeyRingError::Malformed)?;
            keys.push((id, key));
        }
        let signing = keys
            .first()
            .map(|(id, _)| *id)
            .ok_or(KeyRingError::Malformed)?;
        KeyRing::new(signing, keys)
    }

    /// The id of the signing key.
    pub fn signing_id(&self) -> u32 {
        self.signing
    }

    fn key(&self, id: u32) -> Option<&[u8]> {
        self.keys
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, key)| key.as_slice())
    }

    fn mac(&self, id: u32, domain: &[u8], body: &[u8]) -> Option<Hmac<Sha256>> {
        let key = self.key(id)?;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(domain);
        mac.update(body);
        Some(mac)
    }

    /// Appends the MAC of `body` (whose bytes 1..5 must hold the signing key id) under the
    /// signing key and encodes the whole. Shared by links and PoW challenges.
    pub(crate) fn seal(&self, domain: &[u8], mut body: Vec<u8>) -> String {
        let tag = self
            .mac(self.signing, domain, &body)
            .expect("signing key is in the ring");
        body.extend_from_slice(&tag.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(body)
    }

    /// Decodes a sealed token and checks its MAC: the signed body on success.
    pub(crate) fn open(
        &self,
        domain: &[u8],
        token: &str,
        max_len: usize,
        version: u8,
    ) -> Result<Vec<u8>, Unsealed> {
        let (bytes, tag) = unseal(token, max_len, version).ok_or(Unsealed::Malformed)?;
        let id = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
        let mac = self.mac(id, domain, &bytes).ok_or(Unsealed::UnknownKey)?;
        mac.verify_slice(&tag).map_err(|_| Unsealed::BadSignature)?;
        Ok(bytes)
    }
}

/// A sealed token's body and MAC tag, unverified: its size, encoding, version and room for a
/// key id checked, nothing else. [`KeyRing::open`] verifies the tag before trusting the body.
pub(crate) fn unseal(token: &str, max_len: usize, version: u8) -> Option<(Vec<u8>, Vec<u8>)> {
    if token.len() > max_len {
        return None;
    }
    let mut bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    if bytes.len() < 5 + MAC_LEN || bytes[0] != version {
        return None;
    }
    let tag = bytes.split_off(bytes.len() - MAC_LEN);
    Some((bytes, tag))
}

/// Why a sealed token did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsealed {
    Malformed,
    UnknownKey,
    BadSignature,
}

/// What a link grants: the fields it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    /// The sale.
    pub event_id: i64,
    /// The SKU on sale.
    pub sku_id: i64,
    /// The user the link was minted for.
    pub user_id: String,
    /// The most units one buy through this link may ask for.
    pub max_qty: u16,
    /// Unix ms before which the link is not valid: the sale's start.
    pub not_before_ms: i64,
    /// Unix ms from which the link is no longer valid.
    pub expires_ms: i64,
    /// Keys the buy's idempotency: links with one nonce are one purchase (the gate derives it
    /// from the solved challenge, so one answer buys one order).
    pub nonce: [u8; 16],
}

/// Why a link was not minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintRefusal {
    /// `now` is before the sale's start (`not_before_ms`): the buy path must not exist yet.
    SaleNotStarted {
        /// Milliseconds until the start.
        wait_ms: u64,
    },
    /// The claims cannot be encoded: empty or over-long user id, zero quantity, or an expiry
    /// not after the start and `now`.
    InvalidClaims,
}

/// Mints a link for `claims` at `now_ms`, signed with the ring's signing key.
pub fn mint(ring: &KeyRing, claims: &LinkClaims, now_ms: i64) -> Result<String, MintRefusal> {
    if now_ms < claims.not_before_ms {
        return Err(MintRefusal::SaleNotStarted {
            wait_ms: claims.not_before_ms.abs_diff(now_ms),
        });
    }
    let user = claims.user_id.as_bytes();
    if user.is_empty()
        || user.len() > MAX_USER_LEN
        || claims.max_qty == 0
        || claims.expires_ms <= now_ms
        || claims.expires_ms <= claims.not_before_ms
    {
        return Err(MintRefusal::InvalidClaims);
    }
    let mut body = Vec::with_capacity(FIXED_LEN + user.len() + MAC_LEN);
    body.push(VERSION);
    body.extend_from_slice(&ring.signing.to_be_bytes());
    body.extend_from_slice(&claims.event_id.to_be_bytes());
    body.extend_from_slice(&claims.sku_id.to_be_bytes());
    body.extend_from_slice(&claims.max_qty.to_be_bytes());
    body.extend_from_slice(&claims.not_before_ms.to_be_bytes());
    body.extend_from_slice(&claims.expires_ms.to_be_bytes());
    body.extend_from_slice(&claims.nonce);
    body.push(user.len() as u8);
    body.extend_from_slice(user);
    Ok(ring.seal(DOMAIN, body))
}

/// What the holder of a link is asking for, to check the link's binding against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect<'a> {
    /// The authenticated user making the request.
    pub user_id: &'a str,
    /// The sale the request names, when it names one.
    pub event_id: Option<i64>,
    /// Units asked for.
    pub qty: u32,
}

/// The outcome of verifying a link. Only `Valid` carries claims: nothing of a refused token is
/// trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkVerdict {
    /// Genuine, current, and bound to this request.
    Valid(LinkClaims),
    /// Not a version-1 token: bad base64, wrong length, bad field, too long.
    Malformed,
    /// Signed with a key id the ring does not hold (retired or forged).
    UnknownKey,
    /// The MAC does not match: forged or altered.
    BadSignature,
    /// Genuine, but the sale has not started.
    NotYetValid {
        /// Milliseconds until it becomes valid.
        wait_ms: u64,
    },
    /// Genuine, but expired.
    Expired,
    /// Minted for another user.
    WrongUser,
    /// Minted for another sale.
    WrongEvent,
    /// Asks for more units than the link grants (or none).
    QtyTooLarge,
}

fn decode(body: &[u8]) -> Option<LinkClaims> {
    let be8 = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    if body.len() < FIXED_LEN {
        return None;
    }
    let user_len = body[55] as usize;
    if user_len == 0 || user_len > MAX_USER_LEN || body.len() != FIXED_LEN + user_len {
        return None;
    }
    let user_id = std::str::from_utf8(&body[FIXED_LEN..]).ok()?.to_owned();
    Some(LinkClaims {
        event_id: be8(5),
        sku_id: be8(13),
        max_qty: u16::from_be_bytes([body[21], body[22]]),
        not_before_ms: be8(23),
        expires_ms: be8(31),
        nonce: body[39..55].try_into().expect("16 bytes"),
        user_id,
    })
}

/// Verifies `token` for a request described by `expect`, at `now_ms`.
///
/// Checks run in this order, each only if the one before passed: size and encoding, key id,
/// MAC, validity window, then the binding (event, user, quantity).
pub fn verify(ring: &KeyRing, token: &str, expect: &Expect<'_>, now_ms: i64) -> LinkVerdict {
    let body = match ring.open(DOMAIN, token, MAX_TOKEN_LEN, VERSION) {
        Ok(body) => body,
        Err(Unsealed::Malformed) => return LinkVerdict::Malformed,
        Err(Unsealed::UnknownKey) => return LinkVerdict::UnknownKey,
        Err(Unsealed::BadSignature) => return LinkVerdict::BadSignature,
    };
    // A MACed body that does not decode was made by a buggy minter, not an attacker.
    let Some(claims) = decode(&body) else {
        return LinkVerdict::Malformed;
    };
    if now_ms < claims.not_before_ms {
        return LinkVerdict::NotYetValid {
            wait_ms: claims.not_before_ms.abs_diff(now_ms),
        };
    }
    if now_ms >= claims.expires_ms {
        return LinkVerdict::Expired;
    }
    if expect.event_id.is_some_and(|e| e != claims.event_id) {
        return LinkVerdict::WrongEvent;
    }
    if expect.user_id != claims.user_id {
        return LinkVerdict::WrongUser;
    }
    if expect.qty == 0 || expect.qty > u32::from(claims.max_qty) {
        return LinkVerdict::QtyTooLarge;
    }
    LinkVerdict::Valid(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(
            2,
            vec![
                (1, b"old-key-0123456789".to_vec()),
                (2, b"new-key-0123456789".to_vec()),
            ],
        )
        .unwrap()
    }

    fn claims() -> LinkClaims {
        LinkClaims {
            event_id: 7,
            sku_id: 42,
            user_id: "alice".into(),
            max_qty: 2,
            not_before_ms: 1_000,
            expires_ms: 61_000,
            nonce: [9; 16],
        }
    }

    const ALICE: Expect<'static> = Expect {
        user_id: "alice",
        event_id: Some(7),
        qty: 1,
    };

    #[test]
    fn a_minted_link_verifies_within_its_window() {
        let token = mint(&ring(), &claims(), 1_000).unwrap();
        assert!(token.len() <= 288);
        assert_eq!(
            verify(&ring(), &token, &ALICE, 1_000),
            LinkVerdict::Valid(claims())
        );
        assert_eq!(
            verify(&ring(), &token, &ALICE, 60_999),
            LinkVerdict::Valid(claims())
        );
        assert_eq!(
            verify(&ring(), &token, &ALICE, 61_000),
            LinkVerdict::Expired
        );
    }

    #[test]
    fn mint_refuses_before_the_sale_starts() {
        assert_eq!(
            mint(&ring(), &claims(), 400),
            Err(MintRefusal::SaleNotStarted { wait_ms: 600 })
        );
        let token = mint(&ring(), &claims(), 1_000).unwrap();
        assert_eq!(
            verify(&ring(), &token, &ALICE, 999),
            LinkVerdict::NotYetValid { wait_ms: 1 }
        );
    }

    #[test]
    fn mint_refuses_claims_it_cannot_encode() {
        for bad in [
            LinkClaims {
                user_id: String::new(),
                ..claims()
            },
            LinkClaims {
                user_id: "x".repeat(129),
                ..claims()
            },
            LinkClaims {
                max_qty: 0,
                ..claims()
            },
            LinkClaims {
                expires_ms: 1_000,
                ..claims()
            },
        ] {
            assert_eq!(mint(&ring(), &bad, 1_000), Err(MintRefusal::InvalidClaims));
        }
    }

    #[test]
    fn the_binding_is_checked() {
        let token = mint(&ring(), &claims(), 1_000).unwrap();
        let check = |e: Expect<'_>| verify(&ring(), &token, &e, 2_000);
        assert_eq!(
            check(Expect {
                user_id: "bob",
                ..ALICE
            }),
            LinkVerdict::WrongUser
        );
        assert_eq!(
            check(Expect {
                event_id: Some(8),
                ..ALICE
            }),
            LinkVerdict::WrongEvent
        );
        assert_eq!(check(Expect { qty: 3, ..ALICE }), LinkVerdict::QtyTooLarge);
        assert_eq!(check(Expect { qty: 0, ..ALICE }), LinkVerdict::QtyTooLarge);
        assert_eq!(
            check(Expect {
                event_id: None,
                qty: 2,
                ..ALICE
            }),
            LinkVerdict::Valid(claims())
        );
    }

    #[test]
    fn keys_rotate_by_id() {
        let old = KeyRing::new(1, vec![(1, b"old-key-0123456789".to_vec())]).unwrap();
        let token = mint(&old, &claims(), 1_000).unwrap();
        assert!(matches!(
            verify(&ring(), &token, &ALICE, 1_000),
            LinkVerdict::Valid(_)
        ));
        let retired = KeyRing::new(2, vec![(2, b"new-key-0123456789".to_vec())]).unwrap();
        assert_eq!(
            verify(&retired, &token, &ALICE, 1_000),
            LinkVerdict::UnknownKey
        );
        let forged = KeyRing::new(1, vec![(1, b"forged-key-0123456".to_vec())]).unwrap();
        assert_eq!(
            verify(&forged, &token, &ALICE, 1_000),
            LinkVerdict::BadSignature
        );
    }

    #[test]
    fn junk_and_oversized_tokens_are_malformed() {
        for junk in [
            "",
            "*",
            "AQ",
            &"A".repeat(513),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(
                verify(&ring(), junk, &ALICE, 1_000),
                LinkVerdict::Malformed,
                "{junk}"
            );
        }
    }

    #[test]
    fn key_rings_parse_from_text_and_refuse_weak_keys() {
        let text = format!(
            "2:{},1:{}",
            URL_SAFE_NO_PAD.encode(b"new-key-0123456789"),
            URL_SAFE_NO_PAD.encode(b"old-key-0123456789")
        );
        let parsed = KeyRing::parse(&text).unwrap();
        assert_eq!(parsed.signing_id(), 2);
        let token = mint(&parsed, &claims(), 1_000).unwrap();
        assert!(matches!(
            verify(&ring(), &token, &ALICE, 1_000),
            LinkVerdict::Valid(_)
        ));
        assert_eq!(
            KeyRing::parse("1:c2hvcnQ").unwrap_err(),
            KeyRingError::ShortKey(1)
        );
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyRingError::Malformed);
        assert_eq!(
            KeyRing::parse("x:abc").unwrap_err(),
            KeyRingError::Malformed
        );
        assert!(!format!("{parsed:?}").contains("key-0123"));
    }
}
