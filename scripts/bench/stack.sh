# Sourced by the edge benchmarks (edge.sh, room-crowd.sh): an edge runtime built, a scratch
# Redis and a release warehouse on free ports, and the edge in front of them, cleaned up on exit.
#
#   prepare_edge worker|spin                   installs the runtime's toolchain and builds it (spin:
#                                              the plain build; sets wasmtime); sets edge
#   start_scratch_warehouse [NAME=value ...]   builds nothing (the caller builds the warehouse);
#                                              sets redis_port grpc_port origin_port metrics_port
#                                              origin_key work pids; NAME=value pairs are added to
#                                              the warehouse's environment
#   start_edge PORT [NAME value ...]           starts wrangler dev or wasmtime serve on PORT with
#                                              those settings (its log: $work/edge.log)
#
# The warehouse runs with --durability relaxed: a scratch Redis keeps nothing on disk, which
# fsync durability refuses.
#
# wrangler dev rebuilds and restarts the Worker when a file under core/src or edge/worker/src
# changes (wrangler.toml's watch_dir): do not edit those while a Worker run is measuring.

prepare_edge() {
  edge="$1"
  case "$edge" in
    worker) bash scripts/toolchain/worker.sh; bash scripts/build/worker.sh ;;
    spin)
      wasmtime="$(bash scripts/toolchain/spin.sh | tail -n1)"
      bash scripts/build/spin.sh plain
      ;;
    *) die "usage: $0 worker|spin" ;;
  esac
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

start_scratch_warehouse() {
  work="$(mktemp -d)"
  pids=()
  trap cleanup EXIT INT TERM
  # grpc_port: the warehouse's internal listener (admin calls); origin_port: its edge listener
  # (the edge's FLASHGATE_ORIGIN_URL).
  redis_port=$(free_port); grpc_port=$(free_port); origin_port=$(free_port); metrics_port=$(free_port)
  origin_key="$(hex 32)"
  setsid redis-server "$REDIS_SCRATCH_CONF" --port "$redis_port" >"$work/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  env FLASHGATE_ORIGIN_KEY="$origin_key" "$@" setsid target/release/flashgate-warehouse --store redis \
    --durability relaxed --redis-url "redis://127.0.0.1:$redis_port" --listen "127.0.0.1:$grpc_port" \
    --edge-listen "127.0.0.1:$origin_port" --metrics-listen "127.0.0.1:$metrics_port" \
    >"$work/warehouse.log" 2>&1 &
  pids+=($!)
  for port in "$grpc_port" "$origin_port" "$metrics_port"; do
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  done
}

start_edge() {
  local port="$1"
  shift
  local args=()
  while [ $# -ge 2 ]; do
    if [ "$edge" = worker ]; then args+=(--var "$1:$2"); else args+=(--env "$1=$2"); fi
    shift 2
  done
  if [ "$edge" = worker ]; then
    say "starting wrangler dev on 127.0.0.1:$port"
    PATH="$PWD/node_modules/.bin:$PATH" WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false \
      setsid wrangler dev --ip 127.0.0.1 --port "$port" --inspector-port "$(free_port)" \
      --persist-to "$work/state" --show-interactive-dev-session=false --log-level warn \
      "${args[@]}" >"$work/edge.log" 2>&1 &
  else
    say "starting wasmtime serve on 127.0.0.1:$port"
    setsid "$wasmtime" serve -S cli --addr "127.0.0.1:$port" "${args[@]}" \
      target/spin/flashgate_spin.wasm >"$work/edge.log" 2>&1 &
  fi
  pids+=($!)
}
