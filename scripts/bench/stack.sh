# Sourced by the edge benchmarks (edge.sh, room-crowd.sh): a scratch Redis and a release
# warehouse on free ports, cleaned up on exit, for an edge runtime to be started in front of.
#
#   start_scratch_warehouse [NAME=value ...]   builds nothing (the caller builds the warehouse);
#                                              sets redis_port grpc_port origin_port metrics_port
#                                              origin_key work pids; NAME=value pairs are added to
#                                              the warehouse's environment
#
# The warehouse runs with --durability relaxed: a scratch Redis keeps nothing on disk, which
# fsync durability refuses.

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
