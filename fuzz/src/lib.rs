//! The fuzz harness: one function per target, shared by the libFuzzer binaries in
//! `fuzz_targets/` and by `core/tests/fuzz_corpus.rs`, which replays the checked-in corpus and
//! proptest-generated inputs through the same functions on stable Rust.
#[path = "harness.rs"]
mod harness;
pub use harness::*;
