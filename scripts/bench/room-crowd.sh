#!/usr/bin/env bash
# A crowd through a waiting room, on one edge runtime, run several times: the figures
# BENCHMARKS.md's "A crowd through the waiting room" gives (bots' share of the units against their
# share of the drawn places, how long after the sell-out the last waiting buyer knew, poll
# latency, origin calls by method).
#
#   scripts/bench/room-crowd.sh worker   the Cloudflare Worker under `wrangler dev` (workerd)
#   scripts/bench/room-crowd.sh spin     the Spin component (plain build) under `wasmtime serve`
#
# Starts its own Redis (scratch), warehouse (release build, a random draw secret) and edge on free
# ports; each run is a sale of its own (`flashgate-load --put-sale`, a 20 s pre-queue), played by
# `flashgate-load --waiting-room` as the storefront plays it, with the payment side on the
# warehouse's internal listener. Settings: BENCH_RUNS (3), BENCH_BUYERS (500), BENCH_BOTS (100),
# BENCH_UNITS (100), BENCH_PREQUEUE_MS (20000), BENCH_THINK_MS (0: the longest a buyer takes to buy
# once admitted; bots buy at once).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

source scripts/bench/stack.sh
need_rust
need_cmd redis-server redis-server
prepare_edge "${1:-}"
runs="${BENCH_RUNS:-3}"
buyers="${BENCH_BUYERS:-500}"
bots="${BENCH_BOTS:-100}"
units="${BENCH_UNITS:-100}"
prequeue="${BENCH_PREQUEUE_MS:-20000}"
think="${BENCH_THINK_MS:-0}"
crowd=$((buyers + bots))
# Every actor holds a connection: more than the default 1,024 open files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

say "building the warehouse and flashgate-load (release)"
cargo build --release -q -p flashgate-core --features warehouse --bin flashgate-warehouse
cargo build --release -q -p flashgate-load

# The draw's secret: random per run.
start_scratch_warehouse FLASHGATE_QUEUE_SECRET="$(hex 32)"
edge_port=$(free_port)

# Demo mode: the crowd signs in as guests, as the storefront does.
start_edge "$edge_port" \
  FLASHGATE_ORIGIN_URL "http://127.0.0.1:$origin_port" FLASHGATE_ORIGIN_KEY "$origin_key" \
  FLASHGATE_USER_TOKEN_KEY "$(hex 32)" \
  FLASHGATE_LINK_KEYS "1:$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')" \
  FLASHGATE_DEMO_MODE 1
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$edge_port/api/ready" 2>/dev/null)" != 000 ] && break
  sleep 0.2
done

calls() {
  curl -s "http://127.0.0.1:$metrics_port/metrics" \
    | awk -F'[{}]' '/^flashgate_requests_total\{/ { split($2, kv, "method=\""); m = kv[2]; sub(/".*/, "", m); n[m] += $3 }
        END { for (m in n) printf "%s=%d ", m, n[m] }'
}
for ((run = 1; run <= runs; run++)); do
  event=$((100 + run))
  say "run $run of $runs: $buyers buyers + $bots bots on $units units, sale $event"
  before="$(calls)"
  target/release/flashgate-load --target "http://127.0.0.1:$edge_port" --event "$event" \
    --put-sale "$((9000 + run)):$units:1" --waiting-room "$prequeue" --patience-s 60 \
    --buyers "$buyers" --bots "$bots" --client-ips "$crowd" --concurrency "$crowd" \
    --admin "grpc://127.0.0.1:$grpc_port" --warehouse-metrics "http://127.0.0.1:$metrics_port/metrics" \
    --buyer-think-ms "$think" --label "room-$edge-$run-$$" | tee "$work/run-$run.txt"
  echo "  warehouse calls before: ${before:-none}"
  echo "  warehouse calls after:  $(calls)"
done
say "summary ($edge): bots' share of the units against their share of the drawn places"
for ((run = 1; run <= runs; run++)); do
  printf 'run %d: ' "$run"
  awk '/drawn places/ { d = $0; sub(/.*\(/, "", d); sub(/ bots.*/, "", d) }
       /units won .*bots \(/ { u = $0; sub(/.*units won +/, "", u) }
       /line.s front/ { f = $0; sub(/.*line.s front +/, "", f) }
       /told sold out/ { t = $0; sub(/.*the last /, "", t); sub(/ after.*/, "", t) }
       /polls .*p50/ { p = $0; sub(/.*not held, ms: p50 /, "", p); sub(/,.*/, "", p)
                       h = $0; sub(/.*back after ms: p50 /, "", h); sub(/,.*/, "", h) }
       END { printf "units %s; drawn %s bots; front: %s; sold out told %s after; unheld poll p50 %s ms, held poll back after p50 %s ms\n", u, d, f, t, p, h }' \
    "$work/run-$run.txt"
done
