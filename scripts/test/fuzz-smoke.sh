#!/usr/bin/env bash
# Fuzz smoke test of the edge's parsers: runs each cargo-fuzz target in fuzz/ from its checked-in
# corpus for a bounded time (FUZZ_SECONDS each, default 10), so any panic fails. cargo-fuzz is
# installed once into ~/.cache/flashgate/tools/cargo-fuzz-<version> (outside the work tree);
# libFuzzer needs unstable compiler flags, which the stable toolchain accepts with
# RUSTC_BOOTSTRAP=1. No sanitizer: the core forbids unsafe code, so a panic is what we look for.
#
# New inputs the fuzzer finds go to a scratch directory, not into the checked-in corpus.
# The same targets also run on every `cargo test` as plain tests over the corpus plus
# proptest-generated inputs (core/tests/fuzz_corpus.rs), so this script is the deeper pass.
set -euo pipefail
cd "$(dirname "$0")/../.."

FUZZ_VERSION="${CARGO_FUZZ_VERSION:-0.13.2}"
SECONDS_EACH="${FUZZ_SECONDS:-10}"
CACHE="${FLASHGATE_CACHE:-$HOME/.cache/flashgate}"
ROOT="$CACHE/tools/cargo-fuzz-$FUZZ_VERSION"
TARGETS=(link_token pow_challenge jwt grpc_web route)

if [ ! -x "$ROOT/bin/cargo-fuzz" ]; then
    echo "fuzz-smoke: installing cargo-fuzz $FUZZ_VERSION into $ROOT (once)"
    cargo install cargo-fuzz --version "$FUZZ_VERSION" --locked --root "$ROOT"
fi
export PATH="$ROOT/bin:$PATH"
export RUSTC_BOOTSTRAP=1

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cd fuzz
echo "fuzz-smoke: building ${#TARGETS[@]} targets"
cargo fuzz build --sanitizer none --release
passed=0
failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$scratch/$t"
    echo "fuzz-smoke: $t for ${SECONDS_EACH} s from corpus/$t"
    # New finds go to the scratch dir (first corpus dir); the checked-in seeds are read only.
    if cargo fuzz run --sanitizer none --release "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        echo "fuzz-smoke: $t ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || echo '?') runs)"
        passed=$((passed + 1))
    else
        echo "fuzz-smoke: $t FAILED; last lines of its log:"
        tail -n 40 "$scratch/$t.log"
        failed=$((failed + 1))
    fi
done
echo "fuzz-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
