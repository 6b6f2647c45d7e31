#!/usr/bin/env bash
# The main command: a local flash sale. Installs/builds what is missing, starts a Redis of its
# own (AOF on, in a fresh data directory) — or, when no Redis can be had, the warehouse's embedded
# memory store — the warehouse with a demo sale that opens 30 s after start, and the Cloudflare
# Worker under `wrangler dev` in front of it (static page + /api). Ctrl-C stops everything.
#
# Settings (environment): FLASHGATE_LISTEN (127.0.0.1:50051, the warehouse's internal listener:
# native gRPC for grpcurl and the crowd's admin calls), FLASHGATE_EDGE_LISTEN (127.0.0.1:50052, its
# edge listener: the Worker's FLASHGATE_ORIGIN_URL), FLASHGATE_METRICS_LISTEN (127.0.0.1:9464),
# FLASHGATE_RUN_REDIS_PORT (6390), FLASHGATE_DEMO_SALE (1001:100:10:30), FLASHGATE_EDGE_PORT (8787),
# FLASHGATE_DEMO_PAYMENTS (true), FLASHGATE_DEMO_ROOM (true: the demo sale has a waiting room whose
# line opens at once and is drawn at the start), FLASHGATE_DURABILITY (fsync; its Redis runs appendfsync always).
# With Redis it also starts the order sink (flashgate-orders) into a private PostgreSQL
# (FLASHGATE_RUN_PG_PORT, 5440) or the one FLASHGATE_ORDERS_DB names; FLASHGATE_SINK_LISTEN
# (127.0.0.1:9187), FLASHGATE_SINK_MAX_ROWS_PER_S (0: unlimited).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

need_rust
need_cmd cc build-essential
need_cmd curl curl
redis_ok=1
command -v redis-server >/dev/null 2>&1 || apt_install redis-server || redis_ok=0
command -v redis-server >/dev/null 2>&1 || redis_ok=0

say "installing the edge toolchain (wasm target, worker-build, wrangler) where missing"
bash scripts/toolchain/wasm.sh >/dev/null
bash scripts/toolchain/worker.sh

say "building the warehouse (release; the first build takes a few minutes)"
cargo build --release -p flashgate-core --features warehouse --bin flashgate-warehouse
say "building the Cloudflare Worker"
bash scripts/build/worker.sh

listen="${FLASHGATE_LISTEN:-127.0.0.1:50051}"
edge_listen="${FLASHGATE_EDGE_LISTEN:-127.0.0.1:50052}"
metrics="${FLASHGATE_METRICS_LISTEN:-127.0.0.1:9464}"
demo="${FLASHGATE_DEMO_SALE:-1001:100:10:30}"
run_dir="$FLASHGATE_CACHE/run"
mkdir -p "$run_dir"
# A development origin key, generated per run: never committed, never reused in production.
origin_key="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'FLASHGATE_ORIGIN_KEY=%s\n' "$origin_key" > "$run_dir/origin.env"
chmod 600 "$run_dir/origin.env"

# A crowd through wrangler dev is one workerd process with a socket per connection: the default
# limit of 1,024 open files crashes it under a few thousand actors ("Too many open files").
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pids=()
cleanup() {
  trap - INT TERM EXIT
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

store_args=(--store memory)
if [ "$redis_ok" = 1 ]; then
  port="${FLASHGATE_RUN_REDIS_PORT:-6390}"
  data="$run_dir/redis"
  rm -rf "$data" && mkdir -p "$data"
  # appendfsync always: what the warehouse's default --durability fsync needs on Redis 7.0 (no
  # WAITAOF): every acknowledged buy and payment is on disk before it is answered.
  say "starting redis-server on 127.0.0.1:$port (AOF on, fsync per write, data in $data)"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$data" --appendonly yes --appendfsync always \
    --save "" --maxmemory-policy noeviction --logfile "$run_dir/redis.log" &
  pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" ping >/dev/null 2>&1 || die "redis-server did not start (see $run_dir/redis.log)"
  store_args=(--store redis --redis-url "redis://127.0.0.1:$port")
else
  warn "no redis-server could be installed: using the warehouse's embedded memory store (not durable)"
fi

# The page's "Pay now" is the demo payment; FLASHGATE_DEMO_PAYMENTS=false runs the warehouse as
# production does (only PayOrder on the internal listener pays), e.g. for flashgate-load --scalper.
demo_payments="${FLASHGATE_DEMO_PAYMENTS:-true}"
demo_room="${FLASHGATE_DEMO_ROOM:-true}"
say "starting the warehouse: internal listener $listen, edge listener $edge_listen (metrics on http://$metrics/metrics)"
# The waiting rooms' draw secret: random per run (never committed), unless one is given.
queue_secret="${FLASHGATE_QUEUE_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
FLASHGATE_ORIGIN_KEY="$origin_key" FLASHGATE_QUEUE_SECRET="$queue_secret" target/release/flashgate-warehouse \
  --listen "$listen" --edge-listen "$edge_listen" --metrics-listen "$metrics" \
  "${store_args[@]}" --demo-sale "$demo" --demo-payments "$demo_payments" --demo-room "$demo_room" &
pids+=($!)

# The order sink (flashgate-orders): the warehouse's order changes into PostgreSQL at a set pace.
# FLASHGATE_ORDERS_DB names a running PostgreSQL to use; otherwise a private one is started
# (its own data directory under the cache, port FLASHGATE_RUN_PG_PORT, 5440).
orders_db=""
if [ "$redis_ok" = 1 ]; then
  need_postgres
  say "building the order sink (release)"
  cargo build --release -p flashgate-orders --bin flashgate-orders
  orders_db="${FLASHGATE_ORDERS_DB:-}"
  if [ -z "$orders_db" ]; then
    pg_port="${FLASHGATE_RUN_PG_PORT:-5440}"
    say "starting a private PostgreSQL on 127.0.0.1:$pg_port"
    start_private_postgres "$run_dir/postgres" "$pg_port"
    pids+=("$PG_PID")
    orders_db="postgres://postgres@127.0.0.1:$pg_port/postgres"
  fi
  sink_listen="${FLASHGATE_SINK_LISTEN:-127.0.0.1:9187}"
  say "starting the order sink: $orders_db (health on http://$sink_listen/healthz)"
  target/release/flashgate-orders --redis-url "redis://127.0.0.1:$port" --orders-db "$orders_db" \
    --listen "$sink_listen" --max-rows-per-s "${FLASHGATE_SINK_MAX_ROWS_PER_S:-0}" \
    2>"$run_dir/orders.log" &
  pids+=($!)
fi

edge_port="${FLASHGATE_EDGE_PORT:-8787}"
# The Worker's secrets for wrangler dev: random, git-ignored, with this run's origin key.
bash scripts/build/dev-vars.sh "$origin_key" >/dev/null
say "starting the Cloudflare Worker under wrangler dev on http://127.0.0.1:$edge_port"
PATH="$PWD/node_modules/.bin:$PATH" WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false \
  node_modules/.bin/wrangler dev --ip 127.0.0.1 --port "$edge_port" \
  --var "FLASHGATE_ORIGIN_URL:http://$edge_listen" > "$run_dir/wrangler.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$edge_port/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$edge_port/" >/dev/null 2>&1 \
  || die "wrangler dev did not come up (see $run_dir/wrangler.log)"

IFS=: read -r sku stock pool starts <<<"$demo"
# A demo user token (demo mode mints guest identities; the page mints its own per tab).
token="$(curl -s -X POST -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0' \
  -H 'Accept-Language: en' -H 'Sec-Fetch-Site: same-origin' -H 'Sec-Fetch-Mode: cors' \
  "http://127.0.0.1:$edge_port/api/session/guest" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
room_note="" crowd_note="" crowd_sale="--event 1"
if [ "$demo_room" = true ]; then
  room_note="
  The sale has a waiting room (FLASHGATE_DEMO_ROOM=false: none): its line is open now; everyone
  who joins before the start is drawn in a random order at the start, then admitted as the stock
  allows (2 x remaining at once). Open a second tab to see two places in line."
  crowd_note=" (on a sale of its own, event 2, with a 20 s line)"
  crowd_sale="--event 2 --put-sale 2002:50:1 --waiting-room 20000"
fi
cat <<MSG

  flashgate is running a local flash sale: event 1 sells SKU $sku, $pool of $stock units at
  19.99 EUR, opening in ${starts}s, one unit per user, 5 minutes to pay (demo payments: $demo_payments).

  Open http://127.0.0.1:$edge_port/?event=1 in a browser: the storefront counts down on the
  server's clock, solves its proof-of-work puzzle in the background and lets you buy at the start
  (a guest identity is minted per tab).$room_note
  A demo user token: $token
  Through the edge, as a browser would:
    browser=(-H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0' -H 'Accept-Language: en' -H 'Sec-Fetch-Mode: cors')
    curl -s "\${browser[@]}" http://127.0.0.1:$edge_port/api/events/1
    curl -s "\${browser[@]}" -X POST http://127.0.0.1:$edge_port/api/session/guest   # a demo user token
  A crowd through the edge$crowd_note:
    cargo run --release -p flashgate-load -- --target http://127.0.0.1:$edge_port \\
      --admin grpc://$listen --warehouse-metrics http://$metrics/metrics --buyers 200 --bots 50 \\
      $crowd_sale

  The warehouse's internal listener directly (native gRPC, the back office's door; grpcurl with
  server reflection — its edge listener, $edge_listen, answers only the edge's signed calls)${FLASHGATE_INTERNAL_TOKEN:+;
  FLASHGATE_INTERNAL_TOKEN is set, so add -H \"authorization: Bearer \$FLASHGATE_INTERNAL_TOKEN\"}:
    grpcurl -plaintext -d '{"id":1}' $listen flashsale.Admin/GetEvent
    grpcurl -plaintext -d '{"event_id":1,"user_id":"ann","qty":1,"request_id":"r1"}' $listen flashsale.Seckill/Buy
    grpcurl -plaintext -d '{"order_no":"1-1","payment_id":"psp-1","amount":1999}' $listen flashsale.Seckill/PayOrder
    grpcurl -plaintext -d '{"id":$sku}' $listen warehouse.Warehouse/GetSkuStock
  Metrics: curl -s http://$metrics/metrics | grep flashgate_

MSG
if [ -n "$orders_db" ]; then
  cat <<MSG
  The demo sale's orders in PostgreSQL (written by the order sink, flashgate-orders):
    psql "$orders_db" -c "select order_no, user_id, status, amount, currency, payment_id from orders where event_id = 1 order by created_ms"
    target/release/flashgate-orders audit --redis-url redis://127.0.0.1:$port --orders-db "$orders_db"
    curl -s http://$sink_listen/healthz; curl -s http://$sink_listen/metrics | grep flashgate_sink_

MSG
fi
cat <<MSG
  Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
