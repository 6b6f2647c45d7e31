// The fuzz targets' bodies. Each takes arbitrary bytes, must never panic, and checks what must
// hold for any input. Included by the fuzz crate and by `core/tests/fuzz_corpus.rs`.

use flashgate_core::grpc_web::{self, Reply, StatusHeaders};
use flashgate_core::identity::{self, Identity, IdentityVerdict, TokenPolicy, UserKeys};
use flashgate_core::link::{self, Expect, KeyRing, LinkVerdict};
use flashgate_core::pow::{self, PowVerdict};
use flashgate_core::proto::flashsale::{BuyReply, EventState, Order};

/// The key the corpus seeds were made with (`fuzz/corpus/README.md`).
pub const FUZZ_KEY: &[u8] = b"fuzz-key-0123456789abcdef";

/// The user-token ring the JWT seeds were signed with: kids `a` (primary) and `b`, the keys
/// `fuzz-user-token-key-a-0123456789` and `fuzz-user-token-key-b-0123456789`.
pub const FUZZ_USER_KEYS: &str =
    "a:ZnV6ei11c2VyLXRva2VuLWtleS1hLTAxMjM0NTY3ODk,b:ZnV6ei11c2VyLXRva2VuLWtleS1iLTAxMjM0NTY3ODk";
/// The moment the JWT seeds are current at.
pub const FUZZ_NOW_MS: i64 = 1_764_064_800_000;

/// The verifier the JWT seeds were made for: the ring above, an audience and an issuer, demo
/// mode on (so guest tokens are explored too).
pub fn fuzz_identity() -> Identity {
    let keys = UserKeys::parse(FUZZ_USER_KEYS).expect("32-byte keys");
    let policy = TokenPolicy {
        audience: Some("shop-api".into()),
        issuer: Some("https://shop.example".into()),
        leeway_ms: 0,
        ..TokenPolicy::default()
    };
    Identity::new(keys, policy, true)
}

fn ring() -> KeyRing {
    KeyRing::single(FUZZ_KEY).expect("a 25-byte key")
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Purchase-link tokens: verification of any string never panics, and only a token the ring
/// minted can be valid, so anything valid re-mints to itself.
pub fn link_token(data: &[u8]) {
    let token = text(data);
    let expect = Expect {
        user_id: "alice",
        event_id: None,
        qty: 1,
    };
    if let LinkVerdict::Valid(claims) = link::verify(&ring(), &token, &expect, 1_764_064_860_000) {
        let again = link::mint(&ring(), &claims, claims.not_before_ms).expect("valid claims mint");
        assert_eq!(again, token, "a valid token is canonical");
    }
}

/// PoW challenges: the first 8 bytes are the nonce, the rest the token.
pub fn pow_challenge(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let nonce = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
    let token = text(&data[8..]);
    if let PowVerdict::Valid(c) = pow::verify(&ring(), &token, nonce, "alice", 7, 0, 0) {
        assert!(pow::work(&token, nonce) >= u32::from(c.bits));
    }
}

/// User tokens and `Authorization` headers: a valid token has a bounded id, and is a guest's
/// exactly when its id says so.
pub fn jwt(data: &[u8]) {
    let raw = text(data);
    let _ = identity::bearer(Some(&raw));
    if let IdentityVerdict::Valid(user) = fuzz_identity().verify(Some(&raw), FUZZ_NOW_MS) {
        assert!(!user.id.is_empty() && user.id.len() <= identity::MAX_SUB_LEN);
        assert_eq!(user.guest, user.id.starts_with(identity::GUEST_PREFIX));
    }
}

/// gRPC-Web responses: the first byte picks the HTTP status and whether status headers are
/// present; the rest is the body, parsed as each reply type the edge reads.
pub fn grpc_web(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = [200, 200, 200, 502, 503, 404, 200, 500][usize::from(selector & 7)];
    let headers = if selector & 8 != 0 {
        StatusHeaders {
            grpc_status: Some("14"),
            grpc_message: Some("down%20for%20now"),
        }
    } else {
        StatusHeaders::default()
    };
    let max = 1 << (8 + (selector >> 4));
    if let Ok(Reply::Message(m)) = grpc_web::parse_response::<BuyReply>(status, headers, body, max)
    {
        let again = grpc_web::encode_response(Some(&m), 0, "");
        let parsed =
            grpc_web::parse_response::<BuyReply>(200, StatusHeaders::default(), &again, usize::MAX);
        assert_eq!(parsed, Ok(Reply::Message(m)));
    }
    let _ = grpc_web::parse_response::<EventState>(status, headers, body, max);
    let _ = grpc_web::parse_response::<Order>(status, headers, body, max);
}

/// Route parsing: the first byte picks the method, the rest is the path.
pub fn route(data: &[u8]) {
    let Some((&m, path)) = data.split_first() else {
        return;
    };
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(m & 3)];
    let path = text(path);
    let _ = flashgate_core::gate::route(method, &path);
}
