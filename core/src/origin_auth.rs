//! The origin signature: how the warehouse knows a gRPC-Web request came from our edge.
//!
//! The edge signs each forwarded request with a key it shares with the warehouse: an
//! HMAC-SHA256 over a canonical string of the method, the path, a unix-millisecond timestamp and
//! the SHA-256 digest of the body. The warehouse recomputes it, compares in constant time and
//! refuses timestamps outside a clock-skew window, so a captured request cannot be replayed later
//! or against another method, and a changed body breaks the signature.
//!
//! Wire form, two headers:
//!
//! ```text
//! x-flashgate-timestamp: 1764064800123
//! x-flashgate-signature: v1=<base64url, no padding, of HMAC-SHA256(key, canonical)>
//! canonical = "flashgate-origin-v1\n" METHOD "\n" PATH "\n" TIMESTAMP "\n" hex(SHA-256(body))
//! ```
//!
//! What it does not do: it is not replay protection inside the window (the warehouse's own
//! idempotency keys cover that) and it does not encrypt anything (TLS does).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Header carrying the signing time, unix milliseconds in decimal.
pub const TIMESTAMP_HEADER: &str = "x-flashgate-timestamp";
/// Header carrying the versioned signature.
pub const SIGNATURE_HEADER: &str = "x-flashgate-signature";
/// Default tolerated difference between the edge's and the warehouse's clocks.
pub const DEFAULT_MAX_SKEW_MS: i64 = 30_000;
/// Shortest accepted key, in bytes: shorter keys are guessable.
pub const MIN_KEY_LEN: usize = 16;

const VERSION_PREFIX: &str = "v1=";
const DOMAIN: &str = "flashgate-origin-v1";

/// Why a request's origin signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginAuthError {
    /// One of the two headers is absent.
    #[error("origin signature missing")]
    Missing,
    /// A header is present but not in the documented form.
    #[error("origin signature malformed")]
    Malformed,
    /// The timestamp is further from the verifier's clock than the window allows.
    #[error("origin signature stale by {skew_ms} ms")]
    Stale {
        /// Signed distance `now - timestamp`, in milliseconds.
        skew_ms: i64,
    },
    /// The MAC does not match: wrong key, or the request was changed.
    #[error("origin signature does not match")]
    BadSignature,
}

/// The two header values to attach to a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSignature {
    /// Value of [`TIMESTAMP_HEADER`].
    pub timestamp: String,
    /// Value of [`SIGNATURE_HEADER`].
    pub signature: String,
}

fn mac(key: &[u8], method: &str, path: &str, timestamp_ms: i64, body: &[u8]) -> Hmac<Sha256> {
    let digest = Sha256::digest(body);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(DOMAIN.as_bytes());
    for part in [
        method.as_bytes(),
        path.as_bytes(),
        timestamp_ms.to_string().as_bytes(),
    ] {
        mac.update(b"\n");
        mac.update(part);
    }
    mac.update(b"\n");
    mac.update(crate::hex(&digest).as_bytes());
    mac
}

/// Signs a request about to be forwarded at `now_ms`.
pub fn sign(key: &[u8], method: &str, path: &str, now_ms: i64, body: &[u8]) -> OriginSignature {
    let tag = mac(key, method, path, now_ms, body).finalize().into_bytes();
    OriginSignature {
        timestamp: now_ms.to_string(),
        signature: format!("{VERSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(tag)),
    }
}

/// Verifies a received request's headers (`None` when absent) against `now_ms`.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    key: &[u8],
    method: &str,
    path: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_ms: i64,
    max_skew_ms: i64,
) -> Result<(), OriginAuthError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(OriginAuthError::Missing);
    };
    let timestamp_ms: i64 = timestamp.parse().map_err(|_| OriginAuthError::Malformed)?;
    let tag = signature
        .strip_prefix(VERSION_PREFIX)
        .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
        .ok_or(OriginAuthError::Malformed)?;
    let skew_ms = now_ms.saturating_sub(timestamp_ms);
    if skew_ms.unsigned_abs() > max_skew_ms.unsigned_abs() {
        return Err(OriginAuthError::Stale { skew_ms });
    }
    mac(key, method, path, timestamp_ms, body)
        .verify_slice(&tag)
        .map_err(|_| OriginAuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef-test-key";
    const PATH: &str = "/flashsale.Seckill/Buy";

    fn check(sig: &OriginSignature, body: &[u8], now: i64) -> Result<(), OriginAuthError> {
        verify(
            KEY,
            "POST",
            PATH,
            Some(&sig.timestamp),
            Some(&sig.signature),
            body,
            now,
            30_000,
        )
    }

    #[test]
    fn a_fresh_signature_verifies() {
        let sig = sign(KEY, "POST", PATH, 1_000_000, b"body");
        assert_eq!(check(&sig, b"body", 1_000_500), Ok(()));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let sig = sign(KEY, "POST", PATH, 1_000_000, b"body");
        assert_eq!(
            check(&sig, b"body", 1_030_001),
            Err(OriginAuthError::Stale { skew_ms: 30_001 })
        );
        assert_eq!(
            check(&sig, b"body", 969_999),
            Err(OriginAuthError::Stale { skew_ms: -30_001 })
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        let sig = sign(KEY, "POST", PATH, 1_000, b"");
        let verify_with =
            |ts: Option<&str>, s: Option<&str>| verify(KEY, "POST", PATH, ts, s, b"", 1_000, 10);
        assert_eq!(
            verify_with(None, Some(&sig.signature)),
            Err(OriginAuthError::Missing)
        );
        assert_eq!(
            verify_with(Some("1000"), None),
            Err(OriginAuthError::Missing)
        );
        assert_eq!(
            verify_with(Some("soon"), Some(&sig.signature)),
            Err(OriginAuthError::Malformed)
        );
        assert_eq!(
            verify_with(Some("1000"), Some("v2=abc")),
            Err(OriginAuthError::Malformed)
        );
        assert_eq!(
            verify_with(Some("1000"), Some("v1=***")),
            Err(OriginAuthError::Malformed)
        );
    }

    proptest! {
        #[test]
        fn any_change_to_the_request_breaks_the_signature(
            body in proptest::collection::vec(any::<u8>(), 0..64),
            flip in any::<usize>(),
            ts in 0i64..i64::MAX / 2,
        ) {
            let sig = sign(KEY, "POST", PATH, ts, &body);
            prop_assert_eq!(check(&sig, &body, ts), Ok(()));
            let mut changed = body.clone();
            if changed.is_empty() { changed.push(0) } else { let i = flip % changed.len(); changed[i] ^= 1 }
            prop_assert_eq!(check(&sig, &changed, ts), Err(OriginAuthError::BadSignature));
            prop_assert_eq!(
                verify(KEY, "POST", "/flashsale.Seckill/PayOrder", Some(&sig.timestamp), Some(&sig.signature), &body, ts, 0),
                Err(OriginAuthError::BadSignature)
            );
            prop_assert_eq!(
                verify(b"another-key-of-16+bytes", "POST", PATH, Some(&sig.timestamp), Some(&sig.signature), &body, ts, 0),
                Err(OriginAuthError::BadSignature)
            );
        }
    }
}
