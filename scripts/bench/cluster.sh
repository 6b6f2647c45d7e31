#!/usr/bin/env bash
# The Redis Cluster benchmark: one crowd's Buy throughput against
#   (a)  one Redis and one warehouse, the sale in one pool;
#   (a3) the same, the sale split in 3 sub-pools (all on that one Redis: the split's own cost);
#   (b)  a 3-master Redis Cluster (no replicas) and two warehouse processes sharing the crowd,
#        the sale split in 3 sub-pools whose shards sit on the 3 masters;
#   (b1) the same cluster and processes, the sale in one pool (one slot: one master takes it all);
# all in one run on this machine, the same crowd and concurrency each time (flashgate-load, the
# order workers off so the figures are the Buy path's). Prints req/s, p50/p99, units won, units
# oversold (must be 0) and the audit of each store, and the ratios b/a, b1/a and b/a3. Every Redis is
# persisted the same way (AOF, appendfsync everysec, as scripts/redis/cluster.sh runs a cluster).
# Everything listens on loopback on free ports and is stopped on exit.
#
#   scripts/bench/cluster.sh [--buyers N] [--bots N] [--pool N] [--concurrency N]
#   (defaults: 40000 buyers, buyers/10 bots of 5 buys each, pool buyers/2, 64 in flight)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

buyers=40000
bots=""
pool=""
concurrency=64
while [ $# -gt 0 ]; do
  case "$1" in
    --buyers) buyers="$2" ;;
    --bots) bots="$2" ;;
    --pool) pool="$2" ;;
    --concurrency) concurrency="$2" ;;
    *) die "usage: scripts/bench/cluster.sh [--buyers N] [--bots N] [--pool N] [--concurrency N]" ;;
  esac
  shift 2
done
bots="${bots:-$((buyers / 10))}"
pool="${pool:-$((buyers / 2))}"

need_cmd redis-server redis-server
need_cmd redis-cli redis-tools
need_cmd jq jq
need_cmd ss iproute2

say "building the release warehouse and load generator"
cargo build --release -q -p flashgate-core --features warehouse --bin flashgate-warehouse
cargo build --release -q -p flashgate-load
warehouse_bin="$PWD/target/release/flashgate-warehouse"
load_bin="$PWD/target/release/flashgate-load"

work="$(mktemp -d -t flashgate-bench-cluster.XXXXXX)"
pids=()
load_pid=""
cluster_base=""
cleanup() {
  local pid
  for pid in $load_pid "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$cluster_base" ]; then
    scripts/redis/cluster.sh stop "$work/cluster" "$cluster_base" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# is_free PORT — nothing listens on 127.0.0.1:PORT.
is_free() { [ -z "$(ss -ltnH "sport = :$1")" ]; }

# free_port — a free port in 20000..29999 (so a cluster bus port, +10000, stays below 40000).
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 10000))
    is_free "$port" && { echo "$port"; return 0; }
  done
  die "found no free port"
}

# free_base N — a port P with P..P+N-1 and their bus ports (+10000) free.
free_base() {
  local base ok i
  for _ in $(seq 200); do
    base=$((20000 + RANDOM % 9000))
    ok=1
    for ((i = 0; i < $1; i++)); do
      is_free $((base + i)) && is_free $((base + i + 10000)) || ok=0
    done
    [ "$ok" -eq 1 ] && { echo "$base"; return 0; }
  done
  die "found no $1 free consecutive ports"
}

# wait_listening PORT WHAT — polls (0.1 s, at most 20 s) until something accepts on PORT.
wait_listening() {
  local i
  for ((i = 0; i < 200; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "timed out waiting for $2 on port $1"
}

# warehouse URLS NAME — starts a release warehouse on a free port (order worker off) and sets
# `target` to its grpc:// URL. (Not run in $(…): the process must stay this shell's child.)
warehouse() {
  local port
  port="$(free_port)"
  # --durability relaxed: the bench cluster's nodes run appendfsync everysec, which fsync refuses.
  RUST_LOG=warn "$warehouse_bin" --store redis --redis-url "$1" --redis-prefix bench --durability relaxed \
    --listen "127.0.0.1:$port" --metrics-listen off --order-worker false --consumer "$2" \
    >/dev/null 2>"$work/$2.log" &
  pids+=($!)
  wait_listening "$port" "warehouse $2"
  target="grpc://127.0.0.1:$port"
}

# crowd NAME TARGETS EVENT SKU SUBPOOLS — one crowd run; its JSON report goes to NAME.json.
crowd() {
  say "crowd $1: $buyers buyers + $bots bots x 5, pool $pool in $5 sub-pool(s), $concurrency in flight -> $2"
  # In the background and waited for, so a signal reaches the trap (which stops it) at once.
  "$load_bin" --target "$2" --event "$3" --put-sale "$4:$pool:$5" --buyers "$buyers" \
    --bots "$bots" --concurrency "$concurrency" --label "$1" --json >"$work/$1.json" &
  load_pid=$!
  wait "$load_pid"
  load_pid=""
}

# audit URLS NAME — the audit of the bench prefix; its verdict goes to NAME.audit.
audit() {
  if "$warehouse_bin" --store redis --redis-url "$1" --redis-prefix bench audit \
    >"$work/$2.audit" 2>&1; then
    echo clean >>"$work/$2.audit"
  fi
}

# master_of_key KEY — the port of the master serving KEY's slot (asked from the first node).
master_of_key() {
  local slot
  slot="$(redis-cli -p "$cluster_base" cluster keyslot "$1")"
  redis-cli -p "$cluster_base" cluster nodes | awk -v s="$slot" '$3 ~ /master/ {
    for (i = 9; i <= NF; i++) {
      n = split($i, r, "-"); if (n == 1) r[2] = r[1]
      if (s + 0 >= r[1] + 0 && s + 0 <= r[2] + 0) { split($2, a, "[:@]"); print a[2] }
    }
  }'
}

# --- (a) one Redis, one warehouse ---------------------------------------------------------
redis_port="$(free_port)"
mkdir -p "$work/single"
say "(a) redis-server on 127.0.0.1:$redis_port and one warehouse"
redis-server "$REDIS_SCRATCH_CONF" --port "$redis_port" --dir "$work/single" \
  --appendonly yes --appendfsync everysec --logfile "$work/single/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
wait_listening "$redis_port" "redis-server"
single="redis://127.0.0.1:$redis_port"
warehouse "$single" a
crowd a "$target" 1 1 1
crowd a3 "$target" 4 2 3
audit "$single" a
# Stop (a) before (b) starts: the two setups never share the cores.
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
pids=()

# --- (b) a 3-master cluster, two warehouses -----------------------------------------------
cluster_base="$(free_base 3)"
say "(b) a 3-master Redis Cluster on 127.0.0.1:$cluster_base.. and two warehouses"
seed="$(scripts/redis/cluster.sh start "$work/cluster" "$cluster_base" 3 0 | tail -n 1)"
# The split sale's SKU: its shards {sku:ID}, {sku:ID:1}, {sku:ID:2} on three masters.
split_sku=""
for sku in $(seq 2 500); do
  masters="$(for sub in "" ":1" ":2"; do master_of_key "bench:{sku:$sku$sub}:stock"; done | sort -u | wc -l)"
  if [ "$masters" -eq 3 ]; then split_sku="$sku"; break; fi
done
[ -n "$split_sku" ] || die "no SKU up to 500 has its 3 sub-pools on 3 masters"
warehouse "$seed" b1
targets="$target"
warehouse "$seed" b2
targets="$targets,$target"
crowd b "$targets" 2 "$split_sku" 3
crowd b1 "$targets" 3 1001 1
audit "$seed" b

# --- the table ------------------------------------------------------------------------------
row() {
  jq -r --arg name "$2" --arg audit "$3" \
    '"| \($name) | \(.requests) | \(.throughput_rps | round) | \(.p50_ms * 100 | round / 100) | \(.p99_ms * 100 | round / 100) | \(.won) of \(.sale.pool) | \(.oversold) | \($audit) |"' \
    "$work/$1.json"
}
verdict() { if grep -qx clean "$work/$1.audit"; then echo clean; else echo VIOLATIONS; fi; }
rps() { jq -r '.throughput_rps' "$work/$1.json"; }
echo
echo "flashgate on a Redis Cluster: one crowd of $buyers buyers + $bots bots (5 buys each), pool $pool, $concurrency in flight, $(nproc) cores"
echo
echo "| setup | requests | req/s | p50 ms | p99 ms | units won | oversold | audit |"
echo "|---|---|---|---|---|---|---|---|"
row a "(a) 1 Redis, 1 warehouse, one pool" "$(verdict a)"
row a3 "(a3) 1 Redis, 1 warehouse, 3 sub-pools" "$(verdict a)"
row b "(b) 3-master cluster, 2 warehouses, 3 sub-pools" "$(verdict b)"
row b1 "(b1) 3-master cluster, 2 warehouses, one pool" "$(verdict b)"
echo
awk -v a="$(rps a)" -v a3="$(rps a3)" -v b="$(rps b)" -v b1="$(rps b1)" \
  'BEGIN { printf "ratio b/a  = %.2f\nratio b1/a = %.2f\nratio b/a3 = %.2f\n", b / a, b1 / a, b / a3 }'

bad=0
for run in a a3 b b1; do
  [ "$(jq -r '.oversold' "$work/$run.json")" = "0" ] || { warn "$run: units oversold"; bad=1; }
done
for run in a b; do
  grep -qx clean "$work/$run.audit" || { cat "$work/$run.audit" >&2; warn "$run: the audit found violations"; bad=1; }
done
[ "$bad" -eq 0 ] || die "the benchmark saw oversold units or audit violations"
