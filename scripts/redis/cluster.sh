#!/usr/bin/env bash
# A local Redis Cluster on loopback, the kind the tests' TestCluster (tests/src/cluster.rs)
# starts: one redis-server per node on ports BASE_PORT.. (cluster bus on port + 10000), each with
# its own data directory under DIR, configured by scripts/redis/cluster-node.conf (the file
# TestCluster starts its nodes from: AOF on, node timeout 1.5 s), joined by
# `redis-cli --cluster create`.
#
#   scripts/redis/cluster.sh start DIR BASE_PORT [MASTERS] [REPLICAS_PER_MASTER]   (default 3 1)
#   scripts/redis/cluster.sh stop DIR BASE_PORT [NODES]         (default: the nodes DIR holds)
#
# start waits until every node reports cluster_state:ok and prints the seed list (the masters'
# redis:// URLs, separated by commas) as its last line on stdout. It is idempotent: a cluster
# already ok on those ports is left running and its seed printed; a DIR holding a stopped cluster
# (nodes files and AOF) brings that cluster back with its data. stop shuts down the nodes on those
# ports that run from DIR (a Redis with another data directory is left alone), then removes DIR.
set -euo pipefail
# Absolute and physical (it is compared with the `dir` each node reports), and resolved before
# the cd below so a relative DIR means the caller's.
[ $# -ge 2 ] && dir="$(realpath -m "$2")"
cd "$(dirname "$0")/../.."
source scripts/lib.sh

usage() {
  die "usage: scripts/redis/cluster.sh start DIR BASE_PORT [MASTERS] [REPLICAS_PER_MASTER]
       scripts/redis/cluster.sh stop DIR BASE_PORT [NODES]"
}
is_number() { [[ "$1" =~ ^[0-9]+$ ]]; }

[ $# -ge 3 ] || usage
action="$1"
base="$3"
is_number "$base" || usage
# Marks DIR as this script's, so stop never removes a directory it did not make.
marker="$dir/.flashgate-redis-cluster"

need_cmd redis-server redis-server
need_cmd redis-cli redis-tools

# cli PORT ARGS... — one redis-cli call, carriage returns dropped; fails if the node is down.
cli() {
  local port="$1"
  shift
  redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null | tr -d '\r'
}

# node_ok PORT NODES — the node sees the whole cluster: state ok, every slot assigned, NODES
# nodes known, and (if it is a replica) its link to its master up.
node_ok() {
  local info repl
  info="$(cli "$1" cluster info)" || return 1
  grep -qx 'cluster_state:ok' <<<"$info" || return 1
  grep -qx 'cluster_slots_assigned:16384' <<<"$info" || return 1
  grep -qx "cluster_known_nodes:$2" <<<"$info" || return 1
  repl="$(cli "$1" info replication)" || return 1
  grep -qx 'role:slave' <<<"$repl" || return 0
  grep -qx 'master_link_status:up' <<<"$repl"
}

# cluster_ok NODES — every node on BASE.. is ok.
cluster_ok() {
  local port
  for ((port = base; port < base + $1; port++)); do
    node_ok "$port" "$1" || return 1
  done
}

# seed — the URLs of the masters serving slots, asked from the first node that answers.
seed() {
  local port nodes
  for ((port = base; port < base + node_count; port++)); do
    nodes="$(cli "$port" cluster nodes)" || continue
    # `id 127.0.0.1:PORT@BUS flags master ping pong epoch link slot...`: a master serving slots.
    awk '$3 ~ /master/ && $3 !~ /fail/ && NF >= 9 { split($2, a, "[:@]"); print a[2] }' \
      <<<"$nodes" | sort -n | sed 's|^|redis://127.0.0.1:|' | paste -sd, -
    return 0
  done
  die "no node on ports $base.. answers CLUSTER NODES"
}

node_down() { ! cli "$1" ping >/dev/null; }

# wait_until TRIES WHAT CMD... — polls CMD every 0.1 s, at most TRIES times.
wait_until() {
  local tries="$1" what="$2" i
  shift 2
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  die "timed out waiting for $what (node logs: $dir/*/redis.log)"
}

start() {
  local masters="${1:-3}" replicas="${2:-1}"
  is_number "$masters" && is_number "$replicas" || usage
  [ "$masters" -ge 3 ] || die "a Redis Cluster needs at least 3 masters, not $masters"
  node_count=$((masters * (1 + replicas)))
  local last=$((base + node_count - 1))
  [ "$base" -ge 1024 ] && [ $((last + 10000)) -le 65535 ] ||
    die "ports $base..$last and their cluster bus ports (+10000) must lie in 1024..65535"

  if cluster_ok "$node_count"; then
    say "a Redis Cluster of $node_count nodes is already ok on 127.0.0.1:$base..$last: left running"
    seed
    return 0
  fi
  local port
  for ((port = base; port <= last; port++)); do
    if cli "$port" ping >/dev/null; then
      die "port $port already runs a Redis, but ports $base..$last are not an ok $node_count-node cluster (a node down?); stop them first (scripts/redis/cluster.sh stop $dir $base)"
    fi
  done

  local kept=0
  for ((port = base; port <= last; port++)); do
    [ -f "$dir/$port/nodes-$port.conf" ] && kept=$((kept + 1))
  done
  if [ "$kept" -ne 0 ] && [ "$kept" -ne "$node_count" ]; then
    die "$dir holds the nodes files of $kept of $node_count nodes: not a cluster of this shape; remove it (scripts/redis/cluster.sh stop $dir $base)"
  fi
  if [ -e "$dir" ] && [ ! -f "$marker" ]; then
    die "$dir exists and was not made by this script: choose another directory"
  fi

  mkdir -p "$dir"
  touch "$marker"
  say "starting $node_count redis-server nodes on 127.0.0.1:$base..$last (data in $dir)"
  for ((port = base; port <= last; port++)); do
    mkdir -p "$dir/$port"
    redis-server "$REDIS_CLUSTER_NODE_CONF" --port "$port" --daemonize yes \
      --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" \
      --cluster-config-file "nodes-$port.conf" --dir "$dir/$port"
  done
  for ((port = base; port <= last; port++)); do
    wait_until 100 "redis-server on port $port to answer PING" cli "$port" ping >/dev/null
  done

  if [ "$kept" -eq "$node_count" ]; then
    say "$dir holds a stopped cluster of $node_count nodes: brought back with its data"
  else
    local addrs=()
    for ((port = base; port <= last; port++)); do addrs+=("127.0.0.1:$port"); done
    say "creating the cluster: $masters masters, $replicas replica(s) each"
    if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$replicas" --cluster-yes \
      >"$dir/create.log" 2>&1; then
      cat "$dir/create.log" >&2
      die "redis-cli --cluster create failed (output above; node logs in $dir/*/redis.log)"
    fi
  fi
  wait_until 300 "cluster_state:ok on every node" cluster_ok "$node_count"
  say "Redis Cluster ok: $node_count nodes on 127.0.0.1:$base..$last"
  seed
}

stop() {
  local nodes="${1:-}"
  if [ -z "$nodes" ]; then
    # The nodes this script started in DIR, one directory per port.
    nodes="$(find "$dir" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' 2>/dev/null | wc -l)"
    [ "$nodes" -gt 0 ] || nodes=6
  fi
  is_number "$nodes" || usage
  local port stopped=0 node_dir
  for ((port = base; port < base + nodes; port++)); do
    node_dir="$(cli "$port" config get dir | sed -n 2p)" || continue
    [ -n "$node_dir" ] || continue
    if [ "$node_dir" != "$dir/$port" ]; then
      warn "port $port runs a Redis with data in $node_dir, not $dir/$port: left alone"
      continue
    fi
    cli "$port" shutdown nosave >/dev/null || true
    wait_until 100 "redis-server on port $port to exit" node_down "$port"
    stopped=$((stopped + 1))
  done
  say "stopped $stopped node(s) on 127.0.0.1:$base..$((base + nodes - 1))"
  if [ -f "$marker" ]; then
    rm -rf "$dir"
    say "removed $dir"
  elif [ -e "$dir" ]; then
    warn "$dir was not made by this script: not removed"
  fi
}

case "$action" in
  start) start "${@:4}" ;;
  stop) stop "${@:4}" ;;
  *) usage ;;
esac
