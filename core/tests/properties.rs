//! Property tests of the edge policy's invariants: tokens round-trip and resist tampering,
//! GCRA never admits more than its bound, the breaker never lets more than its probes through,
//! and gRPC-Web framing round-trips.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use flashgate_core::breaker::{Admission, Breaker, BreakerConfig, Outcome};
use flashgate_core::grpc_web::{self, Reply, StatusHeaders};
use flashgate_core::limit::{self, Decision, Quota, Tat};
use flashgate_core::link::{self, Expect, KeyRing, LinkClaims, LinkVerdict};
use flashgate_core::pow::{self, Challenge, PowVerdict};
use flashgate_core::proto::flashsale::{BuyReply, BuyReq};
use proptest::prelude::*;

fn ring() -> KeyRing {
    KeyRing::new(3, vec![(3, b"property-key-0123456789".to_vec())]).unwrap()
}

fn claims_strategy() -> impl Strategy<Value = LinkClaims> {
    (
        any::<i64>(),
        any::<i64>(),
        "[a-zA-Z0-9:_-]{1,128}",
        1u16..,
        0i64..1 << 50,
        1i64..1 << 30,
        any::<[u8; 16]>(),
    )
        .prop_map(
            |(event_id, sku_id, user_id, max_qty, start, ttl, nonce)| LinkClaims {
                event_id,
                sku_id,
                user_id,
                max_qty,
                not_before_ms: start,
                expires_ms: start + ttl,
                nonce,
            },
        )
}

fn flip_bit(token: &str, bit: usize) -> String {
    let mut bytes = URL_SAFE_NO_PAD.decode(token).unwrap();
    let bit = bit % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
    URL_SAFE_NO_PAD.encode(bytes)
}

proptest! {
    #[test]
    fn links_round_trip(claims in claims_strategy()) {
        let token = link::mint(&ring(), &claims, claims.not_before_ms).unwrap();
        prop_assert!(token.len() <= link::MAX_TOKEN_LEN);
        let expect = Expect { user_id: &claims.user_id, event_id: Some(claims.event_id), qty: 1 };
        prop_assert_eq!(
            link::verify(&ring(), &token, &expect, claims.not_before_ms),
            LinkVerdict::Valid(claims.clone())
        );
    }

    #[test]
    fn any_single_bit_change_or_wrong_key_is_refused(claims in claims_strategy(), bit in any::<usize>(), key in proptest::collection::vec(any::<u8>(), 16..64)) {
        let token = link::mint(&ring(), &claims, claims.not_before_ms).unwrap();
        let expect = Expect { user_id: &claims.user_id, event_id: Some(claims.event_id), qty: 1 };
        let now = claims.not_before_ms;
        let tampered = flip_bit(&token, bit);
        prop_assert!(!matches!(link::verify(&ring(), &tampered, &expect, now), LinkVerdict::Valid(_)));
        prop_assume!(key != b"property-key-0123456789");
        let wrong = KeyRing::new(3, vec![(3, key)]).unwrap();
        prop_assert_eq!(link::verify(&wrong, &token, &expect, now), LinkVerdict::BadSignature);
    }

    #[test]
    fn any_single_bit_change_of_a_challenge_is_refused(bit in any::<usize>(), seed in any::<[u8; 16]>()) {
        let c = Challenge { event_id: 7, user_id: "alice".into(), seed, bits: 0, expires_ms: 1_000 };
        let token = pow::issue(&ring(), &c).unwrap();
        prop_assert_eq!(pow::verify(&ring(), &token, 0, "alice", 7, 0, 0), PowVerdict::Valid(c));
        let tampered = flip_bit(&token, bit);
        prop_assert!(!matches!(pow::verify(&ring(), &tampered, 0, "alice", 7, 0, 0), PowVerdict::Valid(_)));
    }

    /// Over any window [t0, t1] of any arrival sequence, admissions ≤ burst + rate × (t1 − t0).
    #[test]
    fn gcra_never_admits_more_than_burst_plus_rate_times_elapsed(
        rate in 1u32..100,
        period_ms in prop_oneof![Just(1_000u64), Just(60_000u64)],
        burst in 1u32..50,
        gaps in proptest::collection::vec(0u64..200, 1..300),
    ) {
        let quota = Quota::new(rate, period_ms, burst).unwrap();
        let mut tat = Tat::default();
        let mut now = 1_000_000_000u64;
        let mut admitted_at = Vec::new();
        for gap in gaps {
            now += gap * 1_000_000; // ms → ns
            let (decision, next) = limit::check_ns(tat, now, &quota);
            if decision == Decision::Allow {
                admitted_at.push(now);
            }
            tat = next;
        }
        for (i, start) in admitted_at.iter().enumerate() {
            for (j, end) in admitted_at.iter().enumerate().skip(i) {
                let count = (j - i + 1) as u128;
                let elapsed = u128::from(end - start);
                // count ≤ burst + elapsed / T  ⇔  (count − burst) × T ≤ elapsed
                let bound_ok = count <= u128::from(burst)
                    || (count - u128::from(burst)) * u128::from(quota.interval_ns()) <= elapsed;
                prop_assert!(bound_ok, "{} admitted in {} ns", count, elapsed);
            }
        }
    }

    /// Whatever the outcomes and timing, from the moment the breaker opens until it closes again,
    /// each half-open episode forwards at most `probes` calls, and an open breaker none.
    #[test]
    fn breaker_never_forwards_more_than_the_probes_while_not_closed(
        steps in proptest::collection::vec((0i64..700, any::<bool>(), any::<bool>()), 1..400),
    ) {
        let config = BreakerConfig { window_ms: 1_000, min_calls: 4, failure_permille: 500, consecutive_failures: 2, cooldown_ms: 500, probes: 3 };
        let mut breaker = Breaker::default();
        let mut now = 0i64;
        let mut in_flight = 0u32;
        let mut episode: Option<i64> = None;
        let mut forwarded_in_episode = 0u32;
        for (gap, call, success) in steps {
            now += gap;
            if call {
                let before = breaker;
                let (admission, next) = breaker.admit(now, &config);
                breaker = next;
                match admission {
                    Admission::Forward => prop_assert!(before.is_closed()),
                    Admission::Probe => {
                        let since = match breaker { Breaker::HalfOpen { since_ms, .. } => since_ms, _ => unreachable!() };
                        if episode != Some(since) { episode = Some(since); forwarded_in_episode = 0; }
                        forwarded_in_episode += 1;
                        prop_assert!(forwarded_in_episode <= config.probes);
                    }
                    Admission::FailFast { retry_after_ms } => prop_assert!(retry_after_ms > 0),
                }
                if admission.forwards() { in_flight += 1; }
            } else if in_flight > 0 {
                in_flight -= 1;
                let outcome = if success { Outcome::Success } else { Outcome::Failure };
                breaker = breaker.record(outcome, now, &config);
            }
            if let Breaker::Open { until_ms } = breaker {
                prop_assert_eq!(breaker.admit(until_ms - 1, &config).0, Admission::FailFast { retry_after_ms: 1 });
            }
        }
    }

    #[test]
    fn grpc_web_round_trips(event_id in any::<i64>(), user in ".{0,64}", qty in any::<i32>(), message in ".{0,80}", code in 1i32..17) {
        let req = BuyReq { event_id, user_id: user.clone(), qty, request_id: user };
        let framed = grpc_web::encode_request(&req);
        let reply = BuyReply { outcome: qty.rem_euclid(7), order_no: message.clone(), remaining: qty };
        let body = grpc_web::encode_response(Some(&reply), 0, "");
        prop_assert_eq!(grpc_web::parse_response::<BuyReply>(200, StatusHeaders::default(), &body, 1 << 16), Ok(Reply::Message(reply)));
        // A request frame parses as a data frame too.
        let mut with_trailer = framed.clone();
        with_trailer.extend_from_slice(&grpc_web::encode_response::<BuyReq>(None, 0, "")[..]);
        prop_assert_eq!(grpc_web::parse_response::<BuyReq>(200, StatusHeaders::default(), &with_trailer, 1 << 16), Ok(Reply::Message(req)));
        let status = grpc_web::encode_response::<BuyReply>(None, code, &message);
        match grpc_web::parse_response::<BuyReply>(200, StatusHeaders::default(), &status, 1 << 16) {
            Ok(Reply::Status(s)) => prop_assert_eq!(s.message, message),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
