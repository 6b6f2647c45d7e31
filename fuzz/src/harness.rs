// The fuzz targets' bodies. Each takes arbitrary bytes, must never panic, and checks what must
// hold for any input. Included by the fuzz crate and by `core/tests/fuzz_corpus.rs`.

use flashgate_core::grpc_web::{self, Reply, StatusHeaders};
use flashgate_core::identity::{self, Identity, IdentityVerdict};
use flashgate_core::link::{self, Expect, KeyRing, LinkVerdict};
use flashgate_core::pow::{self, PowVerdict};
use flashgate_core::proto::flashsale::{BuyReply, EventState, Order};

/// The key the corpus seeds were made with (`fuzz/corpus/README.md`).
pub const FUZZ_KEY: &[u8] = b"fuzz-key-0123456789abcdef";

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

/// User tokens and `Authorization` headers.
pub fn jwt(data: &[u8]) {
    let raw = text(data);
    let identity = Identity::new(FUZZ_KEY, 0, false);
    let _ = identity::bearer(Some(&raw));
    if let IdentityVerdict::Valid(user) = identity.verify(Some(&raw), 1_764_064_800_000) {
        assert!(!user.id.is_empty() && user.id.len() <= identity::MAX_SUB_LEN);
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
