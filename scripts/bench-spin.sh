#!/usr/bin/env bash
# Measures the Spin component (plain build) under `wasmtime serve` with wrk: host start-up to the
# first 200, then requests/s and latency percentiles for three paths —
#   bot       a refused request (automation user agent: 403 at the edge, nothing else runs)
#   soldout   a buy through a valid link for a sold-out sale (410; the plain build keeps no
#             sold-out flag, so each costs one GetEvent at the warehouse, never a Buy)
#   buy       a forwarded buy (link verified, GetEvent for the sale view, then the origin-signed
#             Buy: 202)
# Starts its own Redis, warehouse (release build) and `wasmtime serve` on free ports; each request
# carries a random client address (spin-client-addr).
# Settings: BENCH_DURATION (10s), BENCH_THREADS (2), BENCH_CONNECTIONS (32).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

need_rust
need_cmd wrk wrk
need_cmd redis-server redis-server
wasmtime="$(bash scripts/spin-toolchain.sh | tail -n1)"
bash scripts/build-spin.sh plain

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

say "starting wasmtime serve on 127.0.0.1:$edge_port"
lots="1000000/s burst 1000000"
started_ns=$(date +%s%N)
setsid "$wasmtime" serve -S cli --addr "127.0.0.1:$edge_port" \
  --env "FLASHGATE_ORIGIN_URL=http://127.0.0.1:$grpc_port" --env "FLASHGATE_ORIGIN_KEY=$origin_key" \
  --env "FLASHGATE_USER_TOKEN_KEY=$user_key" --env "FLASHGATE_LINK_KEYS=$link_keys" \
  --env "FLASHGATE_LIMIT_USER=$lots" --env "FLASHGATE_LIMIT_EVENT=$lots" \
  --env "FLASHGATE_LIMIT_SKU=$lots" --env "FLASHGATE_LIMIT_GLOBAL=$lots" \
  target/spin/flashgate_spin.wasm >"$work/wasmtime.log" 2>&1 &
pids+=($!)
# The first 200: the sale view (the component asks the warehouse for it).
for _ in $(seq 1000); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'user-agent: Mozilla/5.0 Chrome/141.0' \
    -H 'accept-language: en' -H 'sec-fetch-site: same-origin' -H 'sec-fetch-mode: cors' \
    "http://127.0.0.1:$edge_port/api/events/1" 2>/dev/null)" = 200 ] && break
  sleep 0.01
done
startup_ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))

source scripts/wrk-edge.sh
wrk_edge_bench spin-client-addr '10.%d.%d.%d:443'
echo "wasmtime serve start-up to the first 200: ${startup_ms} ms"
echo "component: $(stat -c %s target/spin/flashgate_spin.wasm) bytes ($(gzip -9c target/spin/flashgate_spin.wasm | wc -c) gzipped)"
