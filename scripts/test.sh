#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): setup, formatting, lints, docs,
# every test (unit, property, integration against real Redis and a real tonic server, process
# tests), the shared core's wasm builds, and the fuzz smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

bash scripts/toolchain/setup.sh

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -q -- -D warnings

say "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps -q

say "the shared core builds for wasm32-unknown-unknown and wasm32-wasip2"
bash scripts/build/core-wasm.sh

say "fuzz smoke run"
bash scripts/test/fuzz-smoke.sh

say "building the warehouse binary the process and fault tests run"
cargo build -q -p flashgate-core --features warehouse --bin flashgate-warehouse
cargo build -q -p flashgate-orders --bin flashgate-orders

say "the Cloudflare Worker (edge/worker) builds for wrangler"
bash scripts/build/worker.sh

say "the Spin component (edge/spin) builds for wasmtime serve and Spin"
bash scripts/build/spin.sh

# The suites that take their Redis from TestRedis::start run twice: against a Redis of their own,
# then against a local Redis Cluster (3 masters) that this script starts and stops. The tests
# written for the cluster (cluster_*.rs) start clusters of their own in the first pass.
cluster_suites=(warehouse_api model split_model concurrency order_worker crowd queue_room queue_model)
log="$(mktemp)"
cluster_dir="$(mktemp -d)"
cleanup() {
  bash scripts/redis/cluster.sh stop "$cluster_dir/nodes" "$cluster_port" >/dev/null 2>&1 || true
  rm -rf "$log" "$cluster_dir"
}
trap cleanup EXIT
# A base port whose three client ports and cluster-bus ports (+10000) are all free.
cluster_port=""
for base in 7601 7701 7801 7901 8101; do
  busy=""
  for ((p = base; p < base + 3; p++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
      busy=1
    fi
  done
  [ -z "$busy" ] && { cluster_port="$base"; break; }
done
[ -n "$cluster_port" ] || die "no free ports for the test Redis Cluster (tried 7601..8103)"

if command -v cargo-nextest >/dev/null 2>&1; then
  say "tests"
  status=0
  cargo nextest run --workspace --all-features --no-fail-fast 2>&1 | tee "$log" || status=1
  say "the warehouse suites again, against a local Redis Cluster of 3 masters (${cluster_suites[*]})"
  seed="$(bash scripts/redis/cluster.sh start "$cluster_dir/nodes" "$cluster_port" 3 0 | tail -n 1)"
  filter="$(printf 'binary(%s) | ' "${cluster_suites[@]}")"
  FLASHGATE_TEST_REDIS_CLUSTER="$seed" cargo nextest run --workspace --all-features --no-fail-fast \
    -E "${filter% | }" 2>&1 | tee -a "$log" || status=1
  # One closing line for both passes: nextest's own summaries each count one pass.
  awk '/Summary \[/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i - 1); if ($i ~ /^failed/) f += $(i - 1) } }
       END { printf "all passes: %d passed, %d failed\n", p, f }' "$log"
  exit "$status"
else
  say "tests"
  cargo test --workspace --all-features --no-fail-fast
  say "the warehouse suites again, against a local Redis Cluster of 3 masters"
  seed="$(bash scripts/redis/cluster.sh start "$cluster_dir/nodes" "$cluster_port" 3 0 | tail -n 1)"
  suite_args=()
  for suite in "${cluster_suites[@]}"; do suite_args+=(--test "$suite"); done
  FLASHGATE_TEST_REDIS_CLUSTER="$seed" cargo test -p flashgate-tests -p flashgate-load --all-features \
    --no-fail-fast "${suite_args[@]}"
fi
