//! The shop's user-token keys: a ring by `kid`, like the purchase-link ring, and the demo key
//! derived from it.
//!
//! Text form (`FLASHGATE_USER_TOKEN_KEYS`): `kid:base64url,kid:base64url,…`, the link ring's
//! form (`FLASHGATE_LINK_KEYS`) with the id as text, because a JWT's `kid` is a string. The
//! first key is the **primary**: it verifies tokens whose header names no `kid`. A token naming
//! a `kid` is verified with that key only. Rotation: add the new key with its `kid`, have the
//! shop sign with it, drop the old one once its tokens have expired. The one-key form
//! (`FLASHGATE_USER_TOKEN_KEY`, raw text) is a ring of one primary key without a `kid`.
//!
//! Every key is at least [`MIN_KEY_LEN`] bytes: RFC 7518 §3.2 asks for a key as long as the
//! hash, and a short HS256 key can be searched for offline from any one token.
//!
//! The **demo key** signs guest identities: HMAC-SHA256(primary key, `"flashgate demo guest
//! v1"`). It is derived, so demo mode needs no extra secret, and it is not the shop's key, so no
//! other service that verifies the shop's tokens accepts a guest token, and a guest token is
//! never a shop token here either.
//!
//! What it deliberately does not do: fetch keys (no JWKS), or hold asymmetric keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jwt_compact::alg::Hs256Key;
use sha2::Sha256;

/// Shortest accepted user-token key, in bytes (the HS256 hash length).
pub const MIN_KEY_LEN: usize = 32;
/// Longest accepted `kid`, in bytes.
pub const MAX_KID_LEN: usize = 128;
/// The `kid` of guest tokens, reserved: no shop key may use it.
pub const GUEST_KID: &str = "flashgate-demo-guest";

const GUEST_KEY_LABEL: &[u8] = b"flashgate demo guest v1";

/// Why a user-token key ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserKeyError {
    /// A key is shorter than [`MIN_KEY_LEN`] (`None`: the one-key form).
    #[error("{} is shorter than {MIN_KEY_LEN} bytes", key_name(.0.as_deref()))]
    ShortKey(Option<String>),
    /// Two keys share a `kid`.
    #[error("kid `{0}` appears twice")]
    DuplicateKid(String),
    /// A key uses [`GUEST_KID`], which marks guest tokens.
    #[error("kid `{GUEST_KID}` is reserved for demo guest tokens")]
    ReservedKid,
    /// The text form could not be parsed.
    #[error("key ring text is malformed: expected `kid:base64url,…` (kid: 1 to {MAX_KID_LEN} visible characters, no `,` or `:`)")]
    Malformed,
}

fn key_name(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("key `{kid}`"),
        None => "the key".to_owned(),
    }
}

#[derive(Clone)]
struct UserKey {
    kid: Option<String>,
    key: Hs256Key,
}

/// The shop's HS256 keys by `kid`, the primary first, and the demo key derived from the primary.
#[derive(Clone)]
pub struct UserKeys {
    /// Never empty; `keys[0]` is the primary.
    keys: Vec<UserKey>,
    guest: Hs256Key,
}

impl std::fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        let kids: Vec<Option<&str>> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("UserKeys").field("kids", &kids).finish()
    }
}

impl UserKeys {
    /// One primary key without a `kid` (the `FLASHGATE_USER_TOKEN_KEY` form).
    pub fn single(key: &[u8]) -> Result<Self, UserKeyError> {
        if key.len() < MIN_KEY_LEN {
            return Err(UserKeyError::ShortKey(None));
        }
        Ok(UserKeys::build(vec![(None, key)]))
    }

    /// A ring of `(kid, key)` pairs; the first is the primary.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Result<Self, UserKeyError> {
        if keys.is_empty() {
            return Err(UserKeyError::Malformed);
        }
        for (i, (kid, key)) in keys.iter().enumerate() {
            let visible = kid
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b',' && b != b':');
            if kid.is_empty() || kid.len() > MAX_KID_LEN || !visible {
                return Err(UserKeyError::Malformed);
            }
            if kid == GUEST_KID {
                return Err(UserKeyError::ReservedKid);
            }
            if keys[..i].iter().any(|(other, _)| other == kid) {
                return Err(UserKeyError::DuplicateKid(kid.clone()));
            }
            if key.len() < MIN_KEY_LEN {
                return Err(UserKeyError::ShortKey(Some(kid.clone())));
            }
        }
        let pairs = keys
            .iter()
            .map(|(kid, key)| (Some(kid.as_str()), key.as_slice()))
            .collect();
        Ok(UserKeys::build(pairs))
    }

    /// Parses `"k2:base64url,k1:base64url"`: the first key is the primary (URL-safe base64,
    /// padding optional).
    pub fn parse(text: &str) -> Result<Self, UserKeyError> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kid, b64) = part.split_once(':').ok_or(UserKeyError::Malformed)?;
            let key = URL_SAFE_NO_PAD
                .decode(b64.trim().trim_end_matches('='))
                .map_err(|_| UserKeyError::Malformed)?;
            keys.push((kid.trim().to_owned(), key));
        }
        UserKeys::new(keys)
    }

    /// Validated pairs, primary first.
    fn build(pairs: Vec<(Option<&str>, &[u8])>) -> Self {
        let primary = pairs[0].1;
        let mut derive =
            <Hmac<Sha256> as Mac>::new_from_slice(primary).expect("HMAC accepts any key length");
        derive.update(GUEST_KEY_LABEL);
        let guest = Hs256Key::new(derive.finalize().into_bytes());
        let keys = pairs
            .into_iter()
            .map(|(kid, key)| UserKey {
                kid: kid.map(str::to_owned),
                key: Hs256Key::new(key),
            })
            .collect();
        UserKeys { keys, guest }
    }

    /// The primary key's `kid` (`None` in the one-key form).
    pub fn primary_kid(&self) -> Option<&str> {
        self.keys[0].kid.as_deref()
    }

    /// The key a token's header picks: by `kid`, or the primary without one. `None`: a `kid`
    /// the ring does not hold (retired, foreign, or the guest `kid`).
    pub(super) fn pick(&self, kid: Option<&str>) -> Option<&Hs256Key> {
        match kid {
            None => Some(&self.keys[0].key),
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| &k.key),
        }
    }

    /// The primary key, with its `kid`.
    pub(super) fn primary(&self) -> (Option<&str>, &Hs256Key) {
        (self.keys[0].kid.as_deref(), &self.keys[0].key)
    }

    /// The demo key guest tokens are signed with.
    pub(super) fn guest(&self) -> &Hs256Key {
        &self.guest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &[u8] = b"shop-user-token-key-a-0123456789";
    const KEY_B: &[u8] = b"shop-user-token-key-b-0123456789";

    fn b64(key: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(key)
    }

    #[test]
    fn the_first_key_is_the_primary_and_kids_pick_their_key() {
        let ring = UserKeys::parse(&format!("b:{}, a:{}", b64(KEY_B), b64(KEY_A))).unwrap();
        assert_eq!(ring.primary_kid(), Some("b"));
        let same = |a: &Hs256Key, b: &Hs256Key| a.as_ref() == b.as_ref();
        let (b, a) = (Hs256Key::new(KEY_B), Hs256Key::new(KEY_A));
        assert!(same(ring.pick(None).unwrap(), &b));
        assert!(same(ring.pick(Some("b")).unwrap(), &b));
        assert!(same(ring.pick(Some("a")).unwrap(), &a));
        assert!(ring.pick(Some("c")).is_none());
        assert!(ring.pick(Some(GUEST_KID)).is_none());
        // A link ring's text is a user-token ring's text too (kids "2" and "1").
        let numbered = UserKeys::parse(&format!("2:{}=,1:{}", b64(KEY_B), b64(KEY_A))).unwrap();
        assert_eq!(numbered.primary_kid(), Some("2"));
        assert_eq!(UserKeys::single(KEY_A).unwrap().primary_kid(), None);
    }

    #[test]
    fn short_keys_are_refused_naming_the_key() {
        let short = b"thirty-one-bytes-is-not-enough!";
        assert_eq!(short.len(), MIN_KEY_LEN - 1);
        assert_eq!(
            UserKeys::single(short).unwrap_err(),
            UserKeyError::ShortKey(None)
        );
        let err = UserKeys::parse(&format!("a:{},b:{}", b64(KEY_A), b64(short))).unwrap_err();
        assert_eq!(err, UserKeyError::ShortKey(Some("b".into())));
        assert_eq!(err.to_string(), "key `b` is shorter than 32 bytes");
        assert!(UserKeys::single(KEY_A).is_ok());
    }

    #[test]
    fn malformed_duplicate_and_reserved_kids_are_refused() {
        let a = b64(KEY_A);
        for bad in [
            String::new(),
            " , ".into(),
            a.clone(),
            format!(":{a}"),
            format!("a b:{a}"),
            format!("a:{a}*"),
            format!("{}:{a}", "k".repeat(MAX_KID_LEN + 1)),
        ] {
            assert_eq!(
                UserKeys::parse(&bad).unwrap_err(),
                UserKeyError::Malformed,
                "{bad}"
            );
        }
        assert_eq!(
            UserKeys::parse(&format!("a:{a},a:{}", b64(KEY_B))).unwrap_err(),
            UserKeyError::DuplicateKid("a".into())
        );
        assert_eq!(
            UserKeys::parse(&format!("{GUEST_KID}:{a}")).unwrap_err(),
            UserKeyError::ReservedKid
        );
    }

    #[test]
    fn the_demo_key_is_derived_from_the_primary_and_is_not_it() {
        let one = UserKeys::single(KEY_A).unwrap();
        let ring = UserKeys::parse(&format!("a:{},b:{}", b64(KEY_A), b64(KEY_B))).unwrap();
        let rotated = UserKeys::parse(&format!("b:{},a:{}", b64(KEY_B), b64(KEY_A))).unwrap();
        assert_eq!(one.guest().as_ref(), ring.guest().as_ref());
        assert_ne!(one.guest().as_ref(), rotated.guest().as_ref());
        for key in [KEY_A, KEY_B] {
            assert_ne!(ring.guest().as_ref(), Hs256Key::new(key).as_ref());
        }
        let mut expected = <Hmac<Sha256> as Mac>::new_from_slice(KEY_A).unwrap();
        expected.update(b"flashgate demo guest v1");
        let expected = Hs256Key::new(expected.finalize().into_bytes());
        assert_eq!(one.guest().as_ref(), expected.as_ref());
    }

    #[test]
    fn debug_output_shows_kids_never_keys() {
        let ring = UserKeys::parse(&format!("a:{}", b64(KEY_A))).unwrap();
        let text = format!("{ring:?}");
        assert!(
            text.contains("\"a\"") && !text.contains("0123456789"),
            "{text}"
        );
    }
}
