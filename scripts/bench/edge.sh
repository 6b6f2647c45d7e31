#!/usr/bin/env bash
# Measures one edge runtime with wrk: requests/s and latency percentiles for three paths —
#   bot       a refused request (automation user agent: 403 at the edge, nothing else runs)
#   soldout   a buy through a valid link for a sold-out sale (worker: 410 from the edge's memory;
#             spin's plain build keeps no sold-out flag, so each costs one GetEvent at the
#             warehouse, never a Buy)
#   buy       a forwarded buy (link verified, origin-signed gRPC-Web to the warehouse, 202; spin
#             asks for the sale view with a GetEvent first)
#
#   scripts/bench/edge.sh worker   the Cloudflare Worker under `wrangler dev` (workerd), then the
#                                  core's own CPU cost per decision (criterion, `cargo bench
#                                  --bench edge`; BENCH_SKIP_CRITERION=1 skips it)
#   scripts/bench/edge.sh spin     the Spin component (plain build) under `wasmtime serve`, with
#                                  the host's start-up time to the first 200
#
# Starts its own Redis, warehouse (release build) and edge on free ports; each wrk request comes
# from a random client address (CF-Connecting-IP / spin-client-addr) so the per-network limit does
# not turn the run into a 429 benchmark; the per-user/sale limits are raised for the same reason.
# Settings: BENCH_DURATION (10s), BENCH_THREADS (2), BENCH_CONNECTIONS (32).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

source scripts/bench/stack.sh
need_rust
need_cmd wrk wrk
need_cmd redis-server redis-server
prepare_edge "${1:-}"

duration="${BENCH_DURATION:-10s}"
threads="${BENCH_THREADS:-2}"
conns="${BENCH_CONNECTIONS:-32}"

say "building the warehouse (release) and the bench fixture"
cargo build --release -q -p flashgate-core --features warehouse --bin flashgate-warehouse
cargo build --release -q -p flashgate-tests --example worker_bench_fixture

start_scratch_warehouse
edge_port=$(free_port)
user_key="$(hex 32)"
link_keys="1:$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
eval "$(target/release/examples/worker_bench_fixture "127.0.0.1:$grpc_port" "$user_key" "$link_keys")"

lots="1000000/s burst 1000000"
settings=(
  FLASHGATE_ORIGIN_URL "http://127.0.0.1:$origin_port" FLASHGATE_ORIGIN_KEY "$origin_key"
  FLASHGATE_USER_TOKEN_KEY "$user_key" FLASHGATE_LINK_KEYS "$link_keys"
  FLASHGATE_LIMIT_USER "$lots" FLASHGATE_LIMIT_EVENT "$lots"
  FLASHGATE_LIMIT_SKU "$lots" FLASHGATE_LIMIT_GLOBAL "$lots"
)

source scripts/bench/wrk.sh
if [ "$edge" = worker ]; then
  start_edge "$edge_port" "${settings[@]}"
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$edge_port/api/ready" 2>/dev/null)" = 404 ] && break
    sleep 0.2
  done
  wrk_edge_bench cf-connecting-ip '10.%d.%d.%d'
  echo "wasm: $(stat -c %s edge/worker/build/index_bg.wasm) bytes ($(gzip -9c edge/worker/build/index_bg.wasm | wc -c) gzipped)"
  if [ -z "${BENCH_SKIP_CRITERION:-}" ]; then
    say "CPU per decision in the core (criterion, native)"
    cargo bench -q -p flashgate-core --bench edge 2>&1 | grep -E "^gate|^[a-z].*time:|time:" || true
  fi
else
  started_ns=$(date +%s%N)
  start_edge "$edge_port" "${settings[@]}"
  # The first 200: the sale view (the component asks the warehouse for it).
  for _ in $(seq 1000); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'user-agent: Mozilla/5.0 Chrome/141.0' \
      -H 'accept-language: en' -H 'sec-fetch-site: same-origin' -H 'sec-fetch-mode: cors' \
      "http://127.0.0.1:$edge_port/api/events/1" 2>/dev/null)" = 200 ] && break
    sleep 0.01
  done
  startup_ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
  wrk_edge_bench spin-client-addr '10.%d.%d.%d:443'
  echo "wasmtime serve start-up to the first 200: ${startup_ms} ms"
  echo "component: $(stat -c %s target/spin/flashgate_spin.wasm) bytes ($(gzip -9c target/spin/flashgate_spin.wasm | wc -c) gzipped)"
fi
