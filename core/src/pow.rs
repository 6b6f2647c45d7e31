//! Stateless proof-of-work challenges: the traffic peak-shifting step (流量错峰), a captcha that
//! needs no third party.
//!
//! Before a user may get a purchase link, their browser spends a little CPU: the edge hands out
//! a challenge, a token MACed with a [`KeyRing`] key that binds {event, user, random seed,
//! difficulty bits, expiry}; the answer is a nonce such that
//!
//! ```text
//! SHA-256( challenge-token-as-ASCII ‖ nonce as 8 bytes big-endian )
//! ```
//!
//! starts with at least `difficulty` zero bits. Verifying costs one hash and one MAC and needs no
//! stored state, so any edge instance can check an answer to a challenge another issued. The
//! [`DifficultyPolicy`] turns the recent request rate and the remaining stock into bits: every
//! doubling of traffic above a calm rate adds a bit, and the scarcer the stock the more bits, so
//! a crowd is spread over seconds instead of arriving in one.
//!
//! Challenge token (URL-safe base64, no padding, of; integers big-endian):
//!
//! ```text
//! 0  1   version = 0x01          1  4   key id (u32)        5  8   event id (i64)
//! 13 1   difficulty bits         14 8   expiry, unix ms     22 16  seed (from the caller)
//! 38 1   L = user id length      39 L   user id, UTF-8      39+L 32 HMAC-SHA256(key,
//!                                                              "flashgate-pow-v1" ‖ bytes[0..39+L])
//! ```
//!
//! A challenge lives for a fixed time from when it is issued (the gate's `challenge_ttl`), also
//! when it is asked for before the sale opens, so no answer solved long before the start is
//! spendable at the start. One answer is one purchase: [`Challenge::link_nonce`] derives the
//! purchase link's nonce from the challenge, so every link minted from one answer carries the
//! same nonce, hence the same idempotency key at the warehouse, hence the same order.
//!
//! What it deliberately does not do: remember answered challenges (an answer can be replayed by
//! the same user for the same sale until the challenge expires, and every replay mints the same
//! purchase again), or draw seeds (the caller passes randomness in).

use crate::link::{KeyRing, Unsealed};
use sha2::{Digest, Sha256};

/// Longest challenge token accepted, in characters.
pub const MAX_CHALLENGE_LEN: usize = 300;
/// The most difficulty bits a challenge may carry (2^32 hashes is far beyond a browser).
pub const MAX_BITS: u8 = 32;

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"flashgate-pow-v1";
/// Domain separation for [`Challenge::link_nonce`]: no other hash in flashgate starts so.
const LINK_NONCE_DOMAIN: &[u8] = b"flashgate-link-nonce-v1";
const FIXED_LEN: usize = 39;

/// What a challenge binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The sale it is for.
    pub event_id: i64,
    /// The user it was issued to.
    pub user_id: String,
    /// Caller-supplied randomness, so no two challenges are alike.
    pub seed: [u8; 16],
    /// Leading zero bits the answer's hash needs.
    pub bits: u8,
    /// Unix ms from which the challenge is no longer accepted.
    pub expires_ms: i64,
}

impl Challenge {
    /// The nonce of every purchase link this challenge's answer buys: the first 16 bytes of
    /// SHA-256 over a domain label, the seed, the user (length-prefixed) and the sale. The seed
    /// makes each challenge's nonce its own; the user and sale bind it like the challenge does.
    /// Stateless: the edge mints as many links from one answer as it is asked to, and they are
    /// all one purchase.
    pub fn link_nonce(&self) -> [u8; 16] {
        let user = self.user_id.as_bytes();
        let hash = Sha256::new()
            .chain_update(LINK_NONCE_DOMAIN)
            .chain_update(self.seed)
            .chain_update((user.len() as u64).to_be_bytes())
            .chain_update(user)
            .chain_update(self.event_id.to_be_bytes())
            .finalize();
        hash[..16].try_into().expect("a SHA-256 is 32 bytes")
    }
}

/// Issues a challenge token, signed with the ring's signing key. `None` if the user id is empty
/// or longer than [`crate::link::MAX_USER_LEN`].
pub fn issue(ring: &KeyRing, challenge: &Challenge) -> Option<String> {
    let user = challenge.user_id.as_bytes();
    if user.is_empty() || user.len() > crate::link::MAX_USER_LEN {
        return None;
    }
    let mut body = Vec::with_capacity(FIXED_LEN + user.len() + 32);
    body.push(VERSION);
    body.extend_from_slice(&ring.signing_id().to_be_bytes());
    body.extend_from_slice(&challenge.event_id.to_be_bytes());
    body.push(challenge.bits.min(MAX_BITS));
    body.extend_from_slice(&challenge.expires_ms.to_be_bytes());
    body.extend_from_slice(&challenge.seed);
    body.push(user.len() as u8);
    body.extend_from_slice(user);
    Some(ring.seal(DOMAIN, body))
}

/// The outcome of checking an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowVerdict {
    /// A genuine challenge for this user and sale, answered well enough.
    Valid(Challenge),
    /// Not a version-1 challenge.
    Malformed,
    /// Signed with a key the ring does not hold.
    UnknownKey,
    /// Forged or altered.
    BadSignature,
    /// The challenge has expired.
    Expired,
    /// Issued to another user.
    WrongUser,
    /// Issued for another sale.
    WrongEvent,
    /// The challenge asks for fewer bits than the caller now requires.
    TooEasy,
    /// The nonce's hash does not have enough leading zero bits.
    Insufficient,
}

fn decode(body: &[u8]) -> Option<Challenge> {
    if body.len() < FIXED_LEN {
        return None;
    }
    let user_len = body[38] as usize;
    if user_len == 0 || body.len() != FIXED_LEN + user_len || body[13] > MAX_BITS {
        return None;
    }
    Some(Challenge {
        event_id: i64::from_be_bytes(body[5..13].try_into().ok()?),
        bits: body[13],
        expires_ms: i64::from_be_bytes(body[14..22].try_into().ok()?),
        seed: body[22..38].try_into().ok()?,
        user_id: std::str::from_utf8(&body[FIXED_LEN..]).ok()?.to_owned(),
    })
}

/// Leading zero bits of SHA-256(`challenge` ‖ `nonce`): the work an answer proves.
pub fn work(challenge: &str, nonce: u64) -> u32 {
    let hash = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(nonce.to_be_bytes());
    leading_zero_bits(&hash.finalize())
}

fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for chunk in hash.chunks_exact(8) {
        let word = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
        bits += word.leading_zeros();
        if word != 0 {
            break;
        }
    }
    bits
}

/// Checks `nonce` as the answer to `token` for `user_id` and `event_id` at `now_ms`, requiring
/// the challenge to carry at least `min_bits`. Costs one hash and one MAC.
pub fn verify(
    ring: &KeyRing,
    token: &str,
    nonce: u64,
    user_id: &str,
    event_id: i64,
    min_bits: u8,
    now_ms: i64,
) -> PowVerdict {
    let body = match ring.open(DOMAIN, token, MAX_CHALLENGE_LEN, VERSION) {
        Ok(body) => body,
        Err(Unsealed::Malformed) => return PowVerdict::Malformed,
        Err(Unsealed::UnknownKey) => return PowVerdict::UnknownKey,
        Err(Unsealed::BadSignature) => return PowVerdict::BadSignature,
    };
    let Some(challenge) = decode(&body) else {
        return PowVerdict::Malformed;
    };
    if now_ms >= challenge.expires_ms {
        return PowVerdict::Expired;
    }
    if challenge.event_id != event_id {
        return PowVerdict::WrongEvent;
    }
    if challenge.user_id != user_id {
        return PowVerdict::WrongUser;
    }
    if challenge.bits < min_bits {
        return PowVerdict::TooEasy;
    }
    if work(token, nonce) < u32::from(challenge.bits) {
        return PowVerdict::Insufficient;
    }
    PowVerdict::Valid(challenge)
}

/// Finds an answer to `token` with at least `bits` leading zero bits, trying nonces from
/// `start` for at most `max_attempts`; the reference for the browser's solver and the load
/// generator. Expected cost: 2^bits hashes.
pub fn solve(token: &str, bits: u8, start: u64, max_attempts: u64) -> Option<u64> {
    let prefix = Sha256::new().chain_update(token.as_bytes());
    (0..max_attempts)
        .map(|i| start.wrapping_add(i))
        .find(|nonce| {
            let hash = prefix.clone().chain_update(nonce.to_be_bytes()).finalize();
            leading_zero_bits(&hash) >= u32::from(bits)
        })
}

/// Maps load and scarcity to difficulty bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DifficultyPolicy {
    /// Bits asked of everyone, even on a quiet sale.
    pub floor_bits: u8,
    /// Never more than this.
    pub cap_bits: u8,
    /// Requests per second below which load adds nothing; each doubling above adds a bit.
    pub calm_rate_per_s: u32,
    /// Bits added when the stock is gone, scaled linearly by the share already sold.
    pub scarcity_bits: u8,
}

impl Default for DifficultyPolicy {
    fn default() -> Self {
        // 14 bits ≈ 16k hashes ≈ tens of ms in a browser; 22 bits ≈ seconds.
        DifficultyPolicy {
            floor_bits: 14,
            cap_bits: 22,
            calm_rate_per_s: 200,
            scarcity_bits: 4,
        }
    }
}

impl DifficultyPolicy {
    /// Difficulty for a sale seeing `rate_per_s` requests with `remaining` of `pool` units left
    /// (`pool` 0 means unknown: no scarcity term).
    pub fn bits(&self, rate_per_s: u32, remaining: u32, pool: u32) -> u8 {
        let calm = self.calm_rate_per_s.max(1);
        let load = if rate_per_s > calm {
            (rate_per_s / calm).ilog2() + 1
        } else {
            0
        };
        let scarcity = if pool == 0 {
            0
        } else {
            let sold = pool.saturating_sub(remaining.min(pool));
            (u64::from(self.scarcity_bits) * u64::from(sold)).div_ceil(u64::from(pool)) as u32
        };
        let cap = self.cap_bits.min(MAX_BITS).max(self.floor_bits);
        let bits = u32::from(self.floor_bits)
            .saturating_add(load)
            .saturating_add(scarcity);
        bits.min(u32::from(cap)) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::single(b"pow-key-0123456789abcdef").unwrap()
    }

    fn challenge(bits: u8) -> Challenge {
        Challenge {
            event_id: 7,
            user_id: "alice".into(),
            seed: [3; 16],
            bits,
            expires_ms: 10_000,
        }
    }

    #[test]
    fn a_solved_challenge_verifies_once_and_is_bound() {
        let token = issue(&ring(), &challenge(8)).unwrap();
        let nonce = solve(&token, 8, 0, 1 << 20).unwrap();
        assert!(work(&token, nonce) >= 8);
        let check = |user: &str, event: i64, min: u8, now: i64| {
            verify(&ring(), &token, nonce, user, event, min, now)
        };
        assert_eq!(check("alice", 7, 8, 0), PowVerdict::Valid(challenge(8)));
        assert_eq!(check("alice", 7, 8, 10_000), PowVerdict::Expired);
        assert_eq!(check("bob", 7, 8, 0), PowVerdict::WrongUser);
        assert_eq!(check("alice", 8, 8, 0), PowVerdict::WrongEvent);
        assert_eq!(check("alice", 7, 9, 0), PowVerdict::TooEasy);
    }

    #[test]
    fn a_wrong_nonce_is_insufficient() {
        let token = issue(&ring(), &challenge(16)).unwrap();
        let bad = (0..).find(|n| work(&token, *n) < 16).unwrap();
        assert_eq!(
            verify(&ring(), &token, bad, "alice", 7, 0, 0),
            PowVerdict::Insufficient
        );
    }

    #[test]
    fn forged_challenges_are_refused() {
        let token = issue(&ring(), &challenge(0)).unwrap();
        let other = KeyRing::single(b"other-key-0123456789abc").unwrap();
        assert_eq!(
            verify(&other, &token, 0, "alice", 7, 0, 0),
            PowVerdict::BadSignature
        );
        let rotated = KeyRing::new(2, vec![(2, b"other-key-0123456789abc".to_vec())]).unwrap();
        assert_eq!(
            verify(&rotated, &token, 0, "alice", 7, 0, 0),
            PowVerdict::UnknownKey
        );
        assert_eq!(
            verify(&ring(), "nope", 0, "alice", 7, 0, 0),
            PowVerdict::Malformed
        );
        assert_eq!(
            issue(
                &ring(),
                &Challenge {
                    user_id: String::new(),
                    ..challenge(1)
                }
            ),
            None
        );
    }

    #[test]
    fn solve_gives_up_after_its_attempt_bound() {
        let token = issue(&ring(), &challenge(30)).unwrap();
        assert_eq!(solve(&token, 30, 0, 100), None);
        assert_eq!(solve(&token, 0, 5, 1), Some(5));
    }

    #[test]
    fn a_challenge_names_one_link_nonce_of_its_own() {
        let nonce = challenge(8).link_nonce();
        // The difficulty and expiry do not enter: they do not make it another challenge's answer.
        let harder = Challenge {
            bits: 12,
            expires_ms: 20_000,
            ..challenge(8)
        };
        assert_eq!(harder.link_nonce(), nonce);
        for other in [
            Challenge {
                seed: [4; 16],
                ..challenge(8)
            },
            Challenge {
                user_id: "bob".into(),
                ..challenge(8)
            },
            Challenge {
                event_id: 8,
                ..challenge(8)
            },
        ] {
            assert_ne!(other.link_nonce(), nonce, "{other:?}");
        }
    }

    #[test]
    fn leading_zero_bits_counts_across_words() {
        let mut hash = [0u8; 32];
        assert_eq!(leading_zero_bits(&hash), 256);
        hash[9] = 0b0001_0000;
        assert_eq!(leading_zero_bits(&hash), 75);
        hash[0] = 0x80;
        assert_eq!(leading_zero_bits(&hash), 0);
    }

    #[test]
    fn difficulty_rises_with_load_and_scarcity_within_floor_and_cap() {
        let p = DifficultyPolicy {
            floor_bits: 10,
            cap_bits: 18,
            calm_rate_per_s: 100,
            scarcity_bits: 4,
        };
        assert_eq!(p.bits(0, 100, 100), 10);
        assert_eq!(p.bits(100, 100, 100), 10);
        assert_eq!(p.bits(200, 100, 100), 12);
        assert_eq!(p.bits(400, 100, 100), 13);
        assert_eq!(p.bits(0, 50, 100), 12);
        assert_eq!(p.bits(0, 0, 100), 14);
        assert_eq!(p.bits(u32::MAX, 0, 100), 18);
        assert_eq!(p.bits(0, 0, 0), 10);
        let mut last = 0;
        for rate in [0, 50, 150, 300, 1_000, 10_000, 1_000_000] {
            let b = p.bits(rate, 30, 100);
            assert!(b >= last);
            last = b;
        }
    }
}
