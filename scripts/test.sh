#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): setup, formatting, lints, docs,
# every test (unit, property, integration against real Redis and a real tonic server, process
# tests), the shared core's wasm builds, and the fuzz smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

bash scripts/setup.sh

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -q -- -D warnings

say "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps -q

say "the shared core builds for wasm32-unknown-unknown and wasm32-wasip2"
bash scripts/check-core-wasm.sh

say "fuzz smoke run"
bash scripts/fuzz-smoke.sh

say "building the warehouse binary the process and fault tests run"
cargo build -q -p flashgate-core --features warehouse --bin flashgate-warehouse

say "the Cloudflare Worker (edge/worker) builds for wrangler"
bash scripts/build-worker.sh

say "the Spin component (edge/spin) builds for wasmtime serve and Spin"
bash scripts/build-spin.sh

say "tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast
fi
