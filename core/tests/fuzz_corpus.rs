//! The fuzz targets as plain tests on stable Rust: every checked-in corpus file, then
//! proptest-generated inputs (random bytes and single-byte mutations of the seeds), go through
//! the same harness functions libFuzzer drives (`fuzz/src/harness.rs`). A panic fails the test.

#[path = "../../fuzz/src/harness.rs"]
mod harness;

use proptest::prelude::*;
use std::path::PathBuf;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 5] = [
    ("link_token", harness::link_token),
    ("pow_challenge", harness::pow_challenge),
    ("jwt", harness::jwt),
    ("grpc_web", harness::grpc_web),
    ("route", harness::route),
];

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).expect("readable seed"))
        .collect()
}

#[test]
fn every_target_survives_its_corpus() {
    for (name, target) in TARGETS {
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for seed in &seeds {
            target(seed);
        }
    }
}

#[test]
fn the_link_seed_is_a_valid_token_for_the_harness_key() {
    use flashgate_core::link::{self, Expect, KeyRing, LinkVerdict};
    let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/link_token/valid");
    let token = std::fs::read_to_string(seed).unwrap();
    let ring = KeyRing::single(harness::FUZZ_KEY).unwrap();
    let expect = Expect {
        user_id: "alice",
        event_id: Some(7),
        qty: 2,
    };
    assert!(matches!(
        link::verify(&ring, &token, &expect, 1_764_064_860_000),
        LinkVerdict::Valid(_)
    ));
}

#[test]
fn the_jwt_seeds_are_what_their_names_say_for_the_harness_identity() {
    use flashgate_core::identity::IdentityVerdict;
    let seed = |name: &str| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/jwt")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    };
    let identity = harness::fuzz_identity();
    let verify = |name: &str| identity.verify(Some(&seed(name)), harness::FUZZ_NOW_MS);
    for name in ["valid", "primary_no_kid", "guest"] {
        assert!(
            matches!(verify(name), IdentityVerdict::Valid(_)),
            "{name}: {:?}",
            verify(name)
        );
    }
    assert_eq!(verify("nbf_future"), IdentityVerdict::NotYetValid);
    assert_eq!(verify("alg_none"), IdentityVerdict::Malformed);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn targets_survive_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        for (_, target) in TARGETS {
            target(&data);
        }
    }

    #[test]
    fn targets_survive_mutated_seeds(which in any::<usize>(), at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        for (name, target) in TARGETS {
            let seeds = corpus(name);
            let mut seed = seeds[which % seeds.len()].clone();
            if !seed.is_empty() {
                let i = at % seed.len();
                seed[i] = byte;
                seed.truncate(cut % (seed.len() + 1));
            }
            target(&seed);
        }
    }
}
