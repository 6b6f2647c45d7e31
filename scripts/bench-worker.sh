#!/usr/bin/env bash
# Measures the Cloudflare Worker under `wrangler dev` (workerd on this machine) with wrk:
# requests/s and latency percentiles for three paths —
#   bot       a refused request (automation user agent: 403 at the edge, nothing else runs)
#   soldout   a buy through a valid link for a sold-out sale (410 from the edge's memory)
#   buy       a forwarded buy (link verified, origin-signed gRPC-Web to the warehouse, 202)
# — then the core's own CPU cost per decision (criterion, `cargo bench --bench edge`).
#
# Starts its own Redis, warehouse (release build) and wrangler dev on free ports; each wrk
# request comes from a random client address (CF-Connecting-IP) so the per-network binding does
# not turn the run into a 429 benchmark; the per-user/sale limits are raised for the same reason.
# Settings: BENCH_DURATION (10s), BENCH_THREADS (2), BENCH_CONNECTIONS (32), BENCH_SKIP_CRITERION.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

need_rust
need_cmd wrk wrk
need_cmd redis-server redis-server
bash scripts/worker-toolchain.sh
bash scripts/build-worker.sh

duration="${BENCH_DURATION:-10s}"
threads="${BENCH_THREADS:-2}"
conns="${BENCH_CONNECTIONS:-32}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

say "building the warehouse (release) and the bench fixture"
cargo build --release -q -p flashgate-core --features warehouse --bin flashgate-warehouse
cargo build --release -q -p flashgate-tests --example worker_bench_fixture

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

redis_port=$(free_port); grpc_port=$(free_port); metrics_port=$(free_port); edge_port=$(free_port)
origin_key="$(hex 32)"; user_key="$(hex 32)"
link_keys="1:$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"

setsid redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
FLASHGATE_ORIGIN_KEY="$origin_key" setsid target/release/flashgate-warehouse --store redis \
  --redis-url "redis://127.0.0.1:$redis_port" --listen "127.0.0.1:$grpc_port" \
  --metrics-listen "127.0.0.1:$metrics_port" >"$work/warehouse.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$grpc_port") 2>/dev/null && break; sleep 0.1; done
eval "$(target/release/examples/worker_bench_fixture "127.0.0.1:$grpc_port" "$user_key" "$link_keys")"

say "starting wrangler dev on 127.0.0.1:$edge_port"
lots="1000000/s burst 1000000"
PATH="$PWD/node_modules/.bin:$PATH" WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false \
  setsid wrangler dev --ip 127.0.0.1 --port "$edge_port" --inspector-port "$(free_port)" \
  --persist-to "$work/state" --show-interactive-dev-session=false --log-level warn \
  --var "FLASHGATE_ORIGIN_URL:http://127.0.0.1:$grpc_port" --var "FLASHGATE_ORIGIN_KEY:$origin_key" \
  --var "FLASHGATE_USER_TOKEN_KEY:$user_key" --var "FLASHGATE_LINK_KEYS:$link_keys" \
  --var "FLASHGATE_LIMIT_USER:$lots" --var "FLASHGATE_LIMIT_EVENT:$lots" \
  --var "FLASHGATE_LIMIT_SKU:$lots" --var "FLASHGATE_LIMIT_GLOBAL:$lots" >"$work/wrangler.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$edge_port/api/ready" 2>/dev/null)" = 404 ] && break
  sleep 0.2
done

source scripts/wrk-edge.sh
wrk_edge_bench cf-connecting-ip '10.%d.%d.%d'
echo "wasm: $(stat -c %s edge/worker/build/index_bg.wasm) bytes ($(gzip -9c edge/worker/build/index_bg.wasm | wc -c) gzipped)"

if [ -z "${BENCH_SKIP_CRITERION:-}" ]; then
  say "CPU per decision in the core (criterion, native)"
  cargo bench -q -p flashgate-core --bench edge 2>&1 | grep -E "^gate|^[a-z].*time:|time:" || true
fi
