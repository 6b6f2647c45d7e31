//! Signed place tokens: a buyer's proof of their place in a sale's waiting room, kept by the
//! page (across reloads) and shown on every poll, so any edge instance can answer "where am I?"
//! from its cached snapshot of the line without asking the warehouse who the buyer is.
//!
//! The gate mints one when the warehouse gives the user a place (`Queue/JoinQueue`). It binds
//! the sale, the user, the place's [`Ticket`], the sale's end (it is worthless after) and the
//! link nonce of the solved challenge the place was joined with: the purchase link minted when
//! the place is admitted carries that nonce, so one place is one purchase however often the
//! admitted buyer asks. It is MACed with HMAC-SHA256 under the link [`KeyRing`] with its own
//! domain label (`flashgate-place-v1`), so it can never pass for a link or a challenge, nor
//! they for it.
//!
//! # Token format, version 1
//!
//! URL-safe base64 (no padding) of these bytes, integers big-endian:
//!
//! ```text
//! offset  size  field
//! 0       1     version = 0x01
//! 1       4     key id (u32)
//! 5       8     event id (i64)
//! 13      8     ticket (u64, admission::Ticket::get)
//! 21      8     expiry, unix ms (i64), exclusive: the sale's end
//! 29      16    link nonce (pow::Challenge::link_nonce of the join's challenge)
//! 45      1     L = user id length in bytes, 1..=128
//! 46      L     user id, UTF-8
//! 46+L    32    HMAC-SHA256(key, "flashgate-place-v1" ‖ bytes[0 .. 46+L])
//! ```
//!
//! A token is at most 275 characters; a longer one than [`MAX_TOKEN_LEN`] is refused before
//! decoding, and a body whose length is not exactly `46 + L` is malformed. The MAC is checked
//! with `verify_slice` (constant time) before any field is read.
//!
//! What it deliberately does not do: say whether the place is still waiting, admitted or
//! spent (the warehouse's line and the gate's snapshot of it do), read a clock, or make nonces.

use crate::admission::Ticket;
use crate::link::{KeyRing, Unsealed, MAX_USER_LEN};

/// Longest place token accepted, in characters.
pub const MAX_TOKEN_LEN: usize = 300;

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"flashgate-place-v1";
const FIXED_LEN: usize = 46;

/// What a place token binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceClaims {
    /// The sale.
    pub event_id: i64,
    /// The user whose place it is.
    pub user_id: String,
    /// The place in line.
    pub ticket: Ticket,
    /// Unix ms from which the token is no longer valid (the sale's end).
    pub expires_ms: i64,
    /// The nonce of the purchase link the place buys once admitted.
    pub link_nonce: [u8; 16],
}

/// Mints a token for `claims`, signed with the ring's signing key; `None` if the user id is
/// empty or longer than [`MAX_USER_LEN`].
pub fn mint(ring: &KeyRing, claims: &PlaceClaims) -> Option<String> {
    let user = claims.user_id.as_bytes();
    if user.is_empty() || user.len() > MAX_USER_LEN {
        return None;
    }
    let mut body = Vec::with_capacity(FIXED_LEN + user.len() + 32);
    body.push(VERSION);
    body.extend_from_slice(&ring.signing_id().to_be_bytes());
    body.extend_from_slice(&claims.event_id.to_be_bytes());
    body.extend_from_slice(&claims.ticket.get().to_be_bytes());
    body.extend_from_slice(&claims.expires_ms.to_be_bytes());
    body.extend_from_slice(&claims.link_nonce);
    body.push(user.len() as u8);
    body.extend_from_slice(user);
    Some(ring.seal(DOMAIN, body))
}

/// The outcome of verifying a place token. Only `Valid` carries claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceVerdict {
    /// Genuine, current, and this user's place in this sale.
    Valid(PlaceClaims),
    /// Not a version-1 place token (bad base64, wrong length, too long, bad field).
    Malformed,
    /// Signed with a key id the ring does not hold.
    UnknownKey,
    /// Forged or altered.
    BadSignature,
    /// The sale it was minted for is over.
    Expired,
    /// Another user's place.
    WrongUser,
    /// A place in another sale.
    WrongEvent,
}

fn decode(body: &[u8]) -> Option<PlaceClaims> {
    if body.len() < FIXED_LEN {
        return None;
    }
    let user_len = usize::from(body[45]);
    if user_len == 0 || user_len > MAX_USER_LEN || body.len() != FIXED_LEN + user_len {
        return None;
    }
    let be8 = |at: usize| -> [u8; 8] { body[at..at + 8].try_into().expect("8 bytes") };
    Some(PlaceClaims {
        event_id: i64::from_be_bytes(be8(5)),
        ticket: Ticket::from_raw(u64::from_be_bytes(be8(13))),
        expires_ms: i64::from_be_bytes(be8(21)),
        link_nonce: body[29..45].try_into().expect("16 bytes"),
        user_id: std::str::from_utf8(&body[FIXED_LEN..]).ok()?.to_owned(),
    })
}

/// The ticket `token` says it carries, read without verifying anything: what a client may read
/// of its own token (whether its place was drawn, [`Ticket::is_drawn`]). Nothing the edge decides
/// reads a token this way: [`verify`] does.
pub fn ticket_of(token: &str) -> Option<Ticket> {
    let (body, _) = crate::link::unseal(token, MAX_TOKEN_LEN, VERSION)?;
    decode(&body).map(|claims| claims.ticket)
}

/// Verifies `token` as `user_id`'s place in sale `event_id` at `now_ms`: size and encoding, key
/// id, MAC, expiry, then the binding, each only if the one before passed.
pub fn verify(
    ring: &KeyRing,
    token: &str,
    user_id: &str,
    event_id: i64,
    now_ms: i64,
) -> PlaceVerdict {
    let body = match ring.open(DOMAIN, token, MAX_TOKEN_LEN, VERSION) {
        Ok(body) => body,
        Err(Unsealed::Malformed) => return PlaceVerdict::Malformed,
        Err(Unsealed::UnknownKey) => return PlaceVerdict::UnknownKey,
        Err(Unsealed::BadSignature) => return PlaceVerdict::BadSignature,
    };
    let Some(claims) = decode(&body) else {
        return PlaceVerdict::Malformed;
    };
    if now_ms >= claims.expires_ms {
        return PlaceVerdict::Expired;
    }
    if claims.event_id != event_id {
        return PlaceVerdict::WrongEvent;
    }
    if claims.user_id != user_id {
        return PlaceVerdict::WrongUser;
    }
    PlaceVerdict::Valid(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use proptest::prelude::*;

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

    fn claims() -> PlaceClaims {
        PlaceClaims {
            event_id: 7,
            user_id: "alice".into(),
            ticket: Ticket::arrival(41),
            expires_ms: 61_000,
            link_nonce: [9; 16],
        }
    }

    #[test]
    fn a_minted_place_verifies_until_the_sale_ends_for_its_user_and_sale_only() {
        let token = mint(&ring(), &claims()).unwrap();
        let check = |user: &str, event: i64, now: i64| verify(&ring(), &token, user, event, now);
        assert_eq!(check("alice", 7, 60_999), PlaceVerdict::Valid(claims()));
        assert_eq!(check("alice", 7, 61_000), PlaceVerdict::Expired);
        assert_eq!(check("bob", 7, 1_000), PlaceVerdict::WrongUser);
        assert_eq!(check("alice", 8, 1_000), PlaceVerdict::WrongEvent);
    }

    #[test]
    fn a_client_reads_its_ticket_from_its_token_and_nothing_from_garbage() {
        for (ticket, drawn) in [
            (Ticket::arrival(41), false),
            (Ticket::draw(b"secret", 7, "alice"), true),
        ] {
            let token = mint(&ring(), &PlaceClaims { ticket, ..claims() }).unwrap();
            assert_eq!(ticket_of(&token), Some(ticket));
            assert_eq!(ticket.is_drawn(), drawn);
        }
        let token = mint(&ring(), &claims()).unwrap();
        for bad in [
            "",
            "!!!",
            &token[..token.len() - 4],
            &"A".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(ticket_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_longest_user_gives_the_longest_token() {
        let long = PlaceClaims {
            user_id: "u".repeat(MAX_USER_LEN),
            ..claims()
        };
        let token = mint(&ring(), &long).unwrap();
        assert_eq!(token.len(), 275);
        assert!(token.len() <= MAX_TOKEN_LEN);
        for bad in ["", &"u".repeat(MAX_USER_LEN + 1)] {
            let claims = PlaceClaims {
                user_id: bad.to_owned(),
                ..claims()
            };
            assert_eq!(mint(&ring(), &claims), None);
        }
    }

    #[test]
    fn links_and_challenges_are_not_places() {
        // The same ring seals links and challenges: their domains differ, so their MACs do not
        // verify here even where the bytes would decode.
        let link = crate::link::LinkClaims {
            event_id: 7,
            sku_id: 42,
            user_id: "alice".into(),
            max_qty: 1,
            not_before_ms: 0,
            expires_ms: 61_000,
            nonce: [9; 16],
        };
        let token = crate::link::mint(&ring(), &link, 0).unwrap();
        assert_ne!(
            verify(&ring(), &token, "alice", 7, 0),
            PlaceVerdict::Valid(claims())
        );
        // Re-sealed under the place domain, a body of the wrong length is malformed.
        let mut body = URL_SAFE_NO_PAD.decode(&token).unwrap();
        body.truncate(body.len() - 32);
        let resealed = ring().seal(DOMAIN, body);
        assert_eq!(
            verify(&ring(), &resealed, "alice", 7, 0),
            PlaceVerdict::Malformed
        );
    }

    #[test]
    fn keys_rotate_and_junk_is_malformed() {
        let old = KeyRing::new(1, vec![(1, b"old-key-0123456789".to_vec())]).unwrap();
        let token = mint(&old, &claims()).unwrap();
        assert_eq!(
            verify(&ring(), &token, "alice", 7, 0),
            PlaceVerdict::Valid(claims())
        );
        let retired = KeyRing::new(2, vec![(2, b"new-key-0123456789".to_vec())]).unwrap();
        assert_eq!(
            verify(&retired, &token, "alice", 7, 0),
            PlaceVerdict::UnknownKey
        );
        for junk in ["", "*", "AQ", &"A".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(
                verify(&ring(), junk, "alice", 7, 0),
                PlaceVerdict::Malformed
            );
        }
    }

    fn any_claims() -> impl Strategy<Value = PlaceClaims> {
        (
            any::<i64>(),
            "[a-zA-Z0-9_.@-]{1,128}",
            any::<u64>(),
            any::<i64>(),
            any::<[u8; 16]>(),
        )
            .prop_map(
                |(event_id, user_id, ticket, expires_ms, link_nonce)| PlaceClaims {
                    event_id,
                    user_id,
                    ticket: Ticket::from_raw(ticket),
                    expires_ms,
                    link_nonce,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_place_round_trips(claims in any_claims()) {
            let token = mint(&ring(), &claims).unwrap();
            prop_assert!(token.len() <= MAX_TOKEN_LEN);
            let now = claims.expires_ms.saturating_sub(1);
            let verdict = verify(&ring(), &token, &claims.user_id, claims.event_id, now);
            if claims.expires_ms == i64::MIN {
                prop_assert_eq!(verdict, PlaceVerdict::Expired);
            } else {
                prop_assert_eq!(verdict, PlaceVerdict::Valid(claims));
            }
        }

        #[test]
        fn any_changed_byte_or_length_is_refused(
            claims in any_claims(),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
            cut in 1usize..8,
        ) {
            let token = mint(&ring(), &claims).unwrap();
            let now = claims.expires_ms.saturating_sub(1);
            let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            let altered = URL_SAFE_NO_PAD.encode(&bytes);
            let verdict = verify(&ring(), &altered, &claims.user_id, claims.event_id, now);
            prop_assert!(!matches!(verdict, PlaceVerdict::Valid(_)), "{verdict:?}");
            bytes[i] ^= flip;
            bytes.truncate(bytes.len() - cut);
            let short = URL_SAFE_NO_PAD.encode(&bytes);
            let verdict = verify(&ring(), &short, &claims.user_id, claims.event_id, now);
            prop_assert!(!matches!(verdict, PlaceVerdict::Valid(_)), "{verdict:?}");
        }
    }
}
