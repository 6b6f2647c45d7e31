//! The user-token rules one by one, guests against demo mode, and the round-trip and refusal
//! properties over random rings, users and times.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};

const KEY_A: &[u8] = b"shop-user-token-key-a-0123456789";
const KEY_B: &[u8] = b"shop-user-token-key-b-0123456789";
const NOW: i64 = 1_764_064_800_000;
const SECS: i64 = NOW / 1000;
const WEEK: i64 = DEFAULT_MAX_LIFETIME_S;

fn shop() -> Identity {
    Identity::new(
        UserKeys::single(KEY_A).unwrap(),
        TokenPolicy::default(),
        false,
    )
}

/// Keys `a` (primary) and `b`, with `policy`, demo mode `demo`.
fn ring(policy: TokenPolicy, demo: bool) -> Identity {
    let keys = UserKeys::new(vec![
        ("a".into(), KEY_A.to_vec()),
        ("b".into(), KEY_B.to_vec()),
    ]);
    Identity::new(keys.unwrap(), policy, demo)
}

fn audited() -> TokenPolicy {
    TokenPolicy {
        audience: Some("shop-api".into()),
        issuer: Some("https://shop.example".into()),
        ..TokenPolicy::default()
    }
}

/// Any claims at all, with any `kid`, HS256-signed with `key`.
fn forge(key: &[u8], kid: Option<&str>, claims: Value) -> String {
    let header = match kid {
        Some(kid) => Header::empty().with_key_id(kid),
        None => Header::empty(),
    };
    Hs256
        .token(&header, &Claims::new(claims), &Hs256Key::new(key))
        .unwrap()
}

/// A session of `sub` issued now for an hour, plus `extra` claims.
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({"sub": sub, "iat": SECS, "exp": SECS + 3600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn valid(verdict: IdentityVerdict) -> User {
    match verdict {
        IdentityVerdict::Valid(user) => user,
        other => panic!("refused: {other:?}"),
    }
}

#[test]
fn a_shop_token_verifies_until_it_expires() {
    let token = shop().mint("alice", NOW, 60_000);
    let user = valid(shop().verify(Some(&token), NOW + 1));
    assert_eq!(
        (user.id.as_str(), user.guest, user.expires_ms),
        ("alice", false, NOW + 60_000)
    );
    assert!(matches!(
        shop().verify(Some(&token), NOW + 65_000),
        IdentityVerdict::Valid(_)
    ));
    assert_eq!(
        shop().verify(Some(&token), NOW + 65_001),
        IdentityVerdict::Expired
    );
}

#[test]
fn forged_missing_and_malformed_tokens_are_told_apart() {
    let token = shop().mint("alice", NOW, 60_000);
    let other = UserKeys::single(b"another-shop-key-0123456789abcdef").unwrap();
    let other = Identity::new(other, TokenPolicy::default(), false);
    assert_eq!(
        other.verify(Some(&token), NOW),
        IdentityVerdict::BadSignature
    );
    assert_eq!(shop().verify(None, NOW), IdentityVerdict::Missing);
    assert_eq!(
        shop().verify(Some("a.b.c"), NOW),
        IdentityVerdict::Malformed
    );
    assert_eq!(
        shop().verify(Some(&"x".repeat(5000)), NOW),
        IdentityVerdict::Malformed
    );
    // alg "none", a classic downgrade: header {"alg":"none"} and an empty signature.
    let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
    assert_eq!(shop().verify(Some(none), NOW), IdentityVerdict::Malformed);
    // Claims of the wrong type.
    for bad in [json!({"sub": 7}), json!({"aud": 7}), json!({"iss": ["x"]})] {
        let token = forge(KEY_A, None, claims("alice", bad.clone()));
        assert_eq!(
            shop().verify(Some(&token), NOW),
            IdentityVerdict::Malformed,
            "{bad}"
        );
    }
}

#[test]
fn tokens_without_exp_or_sub_are_malformed_and_nbf_is_honoured() {
    let verify = |claims: Value| shop().verify(Some(&forge(KEY_A, None, claims)), NOW);
    assert_eq!(
        verify(json!({"sub": "alice", "iat": SECS})),
        IdentityVerdict::Malformed
    );
    assert_eq!(verify(claims("", json!({}))), IdentityVerdict::Malformed);
    assert_eq!(
        verify(claims(&"x".repeat(MAX_SUB_LEN + 1), json!({}))),
        IdentityVerdict::Malformed
    );
    let later = claims("alice", json!({"nbf": SECS + 30}));
    assert_eq!(verify(later.clone()), IdentityVerdict::NotYetValid);
    let token = forge(KEY_A, None, later);
    assert!(matches!(
        shop().verify(Some(&token), NOW + 25_000),
        IdentityVerdict::Valid(_)
    ));
}

#[test]
fn a_token_without_iat_or_living_too_long_is_refused() {
    let verify = |identity: &Identity, claims: Value| {
        identity.verify(Some(&forge(KEY_A, None, claims)), NOW)
    };
    let shop = shop();
    let lived = |seconds: i64| json!({"sub": "alice", "iat": SECS, "exp": SECS + seconds});
    assert_eq!(
        verify(&shop, json!({"sub": "alice", "exp": SECS + 60})),
        IdentityVerdict::TooLongLived
    );
    assert!(matches!(
        verify(&shop, lived(WEEK)),
        IdentityVerdict::Valid(_)
    ));
    assert_eq!(
        verify(&shop, lived(WEEK + 1)),
        IdentityVerdict::TooLongLived
    );
    // An `iat` ahead of the clock cannot stretch a token's life past the maximum.
    let ahead = json!({"sub": "alice", "iat": SECS + 3600, "exp": SECS + 3600 + WEEK});
    assert_eq!(verify(&shop, ahead), IdentityVerdict::NotYetValid);
    let skewed = json!({"sub": "alice", "iat": SECS + 5, "exp": SECS + 60});
    assert!(matches!(verify(&shop, skewed), IdentityVerdict::Valid(_)));
    // The maximum is the policy's.
    let mut hour = ring(TokenPolicy::default(), false);
    hour.policy_mut().max_lifetime_s = 3600;
    assert!(matches!(
        verify(&hour, lived(3600)),
        IdentityVerdict::Valid(_)
    ));
    assert_eq!(verify(&hour, lived(3601)), IdentityVerdict::TooLongLived);
}

#[test]
fn audience_and_issuer_are_checked_when_the_policy_names_them() {
    let strict = ring(audited(), false);
    let iss = "https://shop.example";
    let verify = |identity: &Identity, extra: Value| {
        identity.verify(Some(&forge(KEY_A, Some("a"), claims("alice", extra))), NOW)
    };
    for accepted in [
        json!({"iss": iss, "aud": "shop-api"}),
        json!({"iss": iss, "aud": ["mail", "shop-api"]}),
    ] {
        assert!(
            matches!(verify(&strict, accepted.clone()), IdentityVerdict::Valid(_)),
            "{accepted}"
        );
    }
    for (refused, verdict) in [
        (json!({"iss": iss}), IdentityVerdict::WrongAudience),
        (
            json!({"iss": iss, "aud": "password-reset"}),
            IdentityVerdict::WrongAudience,
        ),
        (
            json!({"iss": iss, "aud": []}),
            IdentityVerdict::WrongAudience,
        ),
        (
            json!({"iss": iss, "aud": ["mail"]}),
            IdentityVerdict::WrongAudience,
        ),
        (json!({"aud": "shop-api"}), IdentityVerdict::WrongIssuer),
        (
            json!({"iss": "https://evil.example", "aud": "shop-api"}),
            IdentityVerdict::WrongIssuer,
        ),
    ] {
        assert_eq!(verify(&strict, refused.clone()), verdict, "{refused}");
    }
    // Without them in the policy, neither claim is looked at.
    let lax = ring(TokenPolicy::default(), false);
    assert!(matches!(
        verify(&lax, json!({"iss": "anyone", "aud": ["anything"]})),
        IdentityVerdict::Valid(_)
    ));
    assert!(matches!(verify(&lax, json!({})), IdentityVerdict::Valid(_)));
}

#[test]
fn the_header_kid_picks_the_key_and_no_kid_means_the_primary() {
    let identity = ring(TokenPolicy::default(), false);
    let verify = |key: &[u8], kid: Option<&str>| {
        identity.verify(Some(&forge(key, kid, claims("alice", json!({})))), NOW)
    };
    assert!(matches!(
        verify(KEY_A, Some("a")),
        IdentityVerdict::Valid(_)
    ));
    assert!(matches!(
        verify(KEY_B, Some("b")),
        IdentityVerdict::Valid(_)
    ));
    assert!(matches!(verify(KEY_A, None), IdentityVerdict::Valid(_)));
    assert_eq!(verify(KEY_B, None), IdentityVerdict::BadSignature);
    assert_eq!(verify(KEY_A, Some("b")), IdentityVerdict::BadSignature);
    assert_eq!(verify(KEY_A, Some("c")), IdentityVerdict::UnknownKey);
    // The one-key form has no kid to name.
    let token = forge(KEY_A, Some("a"), claims("alice", json!({})));
    assert_eq!(
        shop().verify(Some(&token), NOW),
        IdentityVerdict::UnknownKey
    );
    // mint signs with the primary, naming its kid, and carries the policy's claims.
    let strict = ring(audited(), false);
    let token = strict.mint("alice", NOW, 60_000);
    let header = UntrustedToken::new(&token).unwrap().header().key_id.clone();
    assert_eq!(header.as_deref(), Some("a"));
    assert_eq!(valid(strict.verify(Some(&token), NOW)).id, "alice");
}

#[test]
fn guests_are_minted_only_in_demo_mode() {
    assert_eq!(
        shop().mint_guest("abcdefgh1234", NOW, 60_000),
        Err(GuestRefusal::DemoModeOff)
    );
    let demo = ring(TokenPolicy::default(), true);
    assert_eq!(
        demo.mint_guest("short", NOW, 60_000),
        Err(GuestRefusal::BadId)
    );
    assert_eq!(
        demo.mint_guest("has space 123", NOW, 60_000),
        Err(GuestRefusal::BadId)
    );
    let (user, token) = demo.mint_guest("abcdefgh1234", NOW, 60_000).unwrap();
    assert_eq!((user.id.as_str(), user.guest), ("guest:abcdefgh1234", true));
    assert_eq!(demo.verify(Some(&token), NOW), IdentityVerdict::Valid(user));
    // Marked as a guest's: its own kid, issuer and audience.
    let untrusted = UntrustedToken::new(&token).unwrap();
    assert_eq!(untrusted.header().key_id.as_deref(), Some(GUEST_KID));
    let claims: Claims<Value> = untrusted.deserialize_claims_unchecked().unwrap();
    assert_eq!(
        (&claims.custom["iss"], &claims.custom["aud"]),
        (&json!(GUEST_ISSUER), &json!(GUEST_ISSUER))
    );
    // A guest never outlives the maximum lifetime.
    let (user, token) = demo
        .mint_guest("abcdefgh1234", NOW, 30 * WEEK * 1000)
        .unwrap();
    assert_eq!(user.expires_ms, NOW + WEEK * 1000);
    assert!(matches!(
        demo.verify(Some(&token), NOW),
        IdentityVerdict::Valid(_)
    ));
}

#[test]
fn a_guest_token_does_not_verify_with_demo_mode_off() {
    let demo = ring(TokenPolicy::default(), true);
    let (_, token) = demo.mint_guest("abcdefgh1234", NOW, 60_000).unwrap();
    let off = ring(TokenPolicy::default(), false);
    assert_eq!(
        off.verify(Some(&token), NOW),
        IdentityVerdict::GuestOutsideDemo
    );
    assert_eq!(
        shop().verify(Some(&token), NOW),
        IdentityVerdict::GuestOutsideDemo
    );
}

#[test]
fn a_guest_token_does_not_verify_as_a_shop_token_under_the_plain_key() {
    let demo = ring(audited(), true);
    let (_, token) = demo.mint_guest("abcdefgh1234", NOW, 60_000).unwrap();
    // Another shop service, verifying with the shop's key whatever the kid says.
    let untrusted = UntrustedToken::new(&token).unwrap();
    for key in [KEY_A, KEY_B] {
        let plain = Hs256
            .validator::<Value>(&Hs256Key::new(key))
            .validate(&untrusted);
        assert!(
            matches!(plain, Err(jwt_compact::ValidationError::InvalidSignature)),
            "{plain:?}"
        );
    }
    // Here, in demo mode: the guest kid with the shop's key, or the demo key without the kid.
    let guest_claims = claims(
        "guest:abcdefgh1234",
        json!({"iss": GUEST_ISSUER, "aud": GUEST_ISSUER}),
    );
    let shop_signed = forge(KEY_A, Some(GUEST_KID), guest_claims.clone());
    assert_eq!(
        demo.verify(Some(&shop_signed), NOW),
        IdentityVerdict::BadSignature
    );
    let demo_key = demo.keys.guest().as_ref().to_vec();
    for kid in [None, Some("a")] {
        let unmarked = forge(&demo_key, kid, guest_claims.clone());
        assert_eq!(
            demo.verify(Some(&unmarked), NOW),
            IdentityVerdict::BadSignature
        );
    }
    // Even the shop's key cannot make a guest, nor the demo key a shop user.
    let fake_guest = forge(KEY_A, None, claims("guest:abcdefgh1234", json!({})));
    assert_eq!(
        ring(TokenPolicy::default(), true).verify(Some(&fake_guest), NOW),
        IdentityVerdict::Malformed
    );
    let fake_shopper = forge(
        &demo_key,
        Some(GUEST_KID),
        claims("alice", json!({"iss": GUEST_ISSUER, "aud": GUEST_ISSUER})),
    );
    assert_eq!(
        demo.verify(Some(&fake_shopper), NOW),
        IdentityVerdict::Malformed
    );
    let other_issuer = forge(
        &demo_key,
        Some(GUEST_KID),
        claims(
            "guest:abcdefgh1234",
            json!({"iss": "x", "aud": GUEST_ISSUER}),
        ),
    );
    assert_eq!(
        demo.verify(Some(&other_issuer), NOW),
        IdentityVerdict::WrongIssuer
    );
}

#[test]
fn a_shop_token_still_works_in_demo_mode() {
    let demo = ring(audited(), true);
    let token = demo.mint("alice", NOW, 60_000);
    let user = valid(demo.verify(Some(&token), NOW));
    assert_eq!((user.id.as_str(), user.guest), ("alice", false));
    let no_kid = forge(
        KEY_A,
        None,
        claims(
            "bob",
            json!({"iss": "https://shop.example", "aud": "shop-api"}),
        ),
    );
    assert!(!valid(demo.verify(Some(&no_kid), NOW)).guest);
}

#[test]
fn bearer_headers_are_parsed_leniently_but_not_blindly() {
    assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
    assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
    assert_eq!(bearer(Some("Basic abc")), None);
    assert_eq!(bearer(Some("Bearer ")), None);
    assert_eq!(bearer(None), None);
}

/// A ring of 1 to 4 keys with distinct kids, 32 to 64 bytes each.
fn ring_strategy() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::btree_map(
        "[A-Za-z0-9._-]{1,16}",
        proptest::collection::vec(any::<u8>(), MIN_KEY_LEN..=64),
        1..=4,
    )
    .prop_map(|keys| keys.into_iter().collect())
    .prop_shuffle()
}

/// A shop user id (never a guest's).
fn sub_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:_@.-]{1,128}".prop_filter("not a guest", |s| !s.starts_with(GUEST_PREFIX))
}

/// Decodes segment `part` of a JWT, flips one bit, encodes it again.
fn tamper(token: &str, part: usize, bit: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let part = part % parts.len();
    let mut bytes = URL_SAFE_NO_PAD.decode(&parts[part]).unwrap();
    let bit = bit % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
    parts[part] = URL_SAFE_NO_PAD.encode(bytes);
    parts.join(".")
}

proptest! {
    #[test]
    fn tokens_minted_with_any_key_of_the_ring_round_trip(
        keys in ring_strategy(),
        which in any::<prop::sample::Index>(),
        name_the_primary in any::<bool>(),
        sub in sub_strategy(),
        lifetime in 1i64..=WEEK,
        age in 0i64..=WEEK,
        strict in any::<bool>(),
    ) {
        let policy = if strict { audited() } else { TokenPolicy::default() };
        let identity = Identity::new(UserKeys::new(keys.clone()).unwrap(), policy, false);
        let i = which.index(keys.len());
        let (kid, key) = &keys[i];
        let kid = (i > 0 || name_the_primary).then_some(kid.as_str());
        let iat = SECS - age.min(lifetime - 1);
        let mut claims = json!({"sub": sub, "iat": iat, "exp": iat + lifetime});
        if strict {
            claims["iss"] = json!("https://shop.example");
            claims["aud"] = json!(["other", "shop-api"]);
        }
        let token = forge(key, kid, claims);
        prop_assert_eq!(
            identity.verify(Some(&token), NOW),
            IdentityVerdict::Valid(User { id: sub, guest: false, expires_ms: (iat + lifetime) * 1000 })
        );
    }

    #[test]
    fn tampered_and_foreign_key_tokens_are_refused(
        keys in ring_strategy(),
        which in any::<prop::sample::Index>(),
        sub in sub_strategy(),
        part in 0usize..3,
        bit in any::<usize>(),
        foreign in proptest::collection::vec(any::<u8>(), MIN_KEY_LEN..=64),
    ) {
        let identity = Identity::new(UserKeys::new(keys.clone()).unwrap(), TokenPolicy::default(), true);
        let (kid, key) = &keys[which.index(keys.len())];
        let token = forge(key, Some(kid), claims(&sub, json!({})));
        prop_assert!(matches!(identity.verify(Some(&token), NOW), IdentityVerdict::Valid(_)));
        let tampered = tamper(&token, part, bit);
        prop_assert!(!matches!(identity.verify(Some(&tampered), NOW), IdentityVerdict::Valid(_)));
        prop_assume!(keys.iter().all(|(_, k)| *k != foreign));
        let forged = forge(&foreign, Some(kid), claims(&sub, json!({})));
        prop_assert_eq!(identity.verify(Some(&forged), NOW), IdentityVerdict::BadSignature);
        let guest = forge(&foreign, Some(GUEST_KID), claims("guest:abcdefgh", json!({"iss": GUEST_ISSUER, "aud": GUEST_ISSUER})));
        prop_assert_eq!(identity.verify(Some(&guest), NOW), IdentityVerdict::BadSignature);
    }

    #[test]
    fn expired_over_lifetime_wrong_audience_and_wrong_issuer_tokens_are_refused(
        sub in sub_strategy(),
        late_s in 6i64..1 << 30,
        over_s in 1i64..1 << 30,
        other in "[a-z:/.-]{0,24}",
    ) {
        let identity = ring(audited(), true);
        let (iss, aud) = ("https://shop.example", "shop-api");
        let verify = |claims: Value| identity.verify(Some(&forge(KEY_B, Some("b"), claims)), NOW);
        let expired = json!({"sub": sub, "iss": iss, "aud": aud, "iat": SECS - 60 - late_s, "exp": SECS - late_s});
        prop_assert_eq!(verify(expired), IdentityVerdict::Expired);
        let long = json!({"sub": sub, "iss": iss, "aud": aud, "iat": SECS, "exp": SECS + WEEK + over_s});
        prop_assert_eq!(verify(long), IdentityVerdict::TooLongLived);
        prop_assume!(other != iss && other != aud);
        prop_assert_eq!(verify(claims(&sub, json!({"iss": iss, "aud": [other.clone()]}))), IdentityVerdict::WrongAudience);
        prop_assert_eq!(verify(claims(&sub, json!({"iss": other.clone(), "aud": aud}))), IdentityVerdict::WrongIssuer);
    }
}
