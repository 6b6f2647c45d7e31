# Shared helpers for flashgate's scripts (sourced, not run).
# Every installer here is idempotent: it checks first, says what it does, and caches long
# installs outside the work tree (under $FLASHGATE_CACHE, default ~/.cache/flashgate).

FLASHGATE_CACHE="${FLASHGATE_CACHE:-$HOME/.cache/flashgate}"
export FLASHGATE_CACHE

# How a redis-server is configured, one file per kind, shared with the tests (tests/src/redis.rs,
# tests/src/cluster.rs): a scratch one (loopback, nothing on disk) and a cluster node.
REDIS_SCRATCH_CONF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/redis/scratch.conf"
REDIS_CLUSTER_NODE_CONF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/redis/cluster-node.conf"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[33mwarning: %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }

# Runs a command as root (directly when we are root, else through sudo).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_apt_updated=""
# apt_install PKG... — installs the Debian packages not installed yet (apt-get update once).
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "need Debian packages ${missing[*]} but apt-get is not available"
  if [ -z "$_apt_updated" ]; then
    say "apt-get update (once)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _apt_updated=1
  fi
  say "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# need_cmd CMD PKG — makes sure CMD is on PATH, installing Debian package PKG when it is not.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
  command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

# need_rust — cargo and rustc (the machines ship rustup's; a bare Debian gets Debian's).
need_rust() {
  [ -d "$HOME/.cargo/bin" ] && case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) PATH="$HOME/.cargo/bin:$PATH" ;; esac
  if ! command -v cargo >/dev/null 2>&1; then
    apt_install cargo rustc
  fi
  export PATH
}

# need_postgres — PostgreSQL's server programs (initdb, postgres) and psql, from the
# distribution's packages when missing: the order sink's tests start a private server of their
# own (tests/src/postgres.rs), and scripts/run.sh one for the demo. Fast when present.
need_postgres() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || die "initdb still missing after installing postgresql"
  need_cmd psql postgresql-client
}

# pg_bin — the newest installed server's bin directory.
pg_bin() {
  ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1
}

# start_private_postgres DIR PORT — a PostgreSQL of its own in DIR (created fresh), on
# 127.0.0.1:PORT, trust authentication, as the postgres user when run as root; its pid is left
# in PG_PID (a child of the calling shell, so the caller can wait for it).
# As root, a DIR the postgres user cannot reach (under /root, say) is replaced by one under
# /tmp, and the log says so.
start_private_postgres() {
  local dir="$1" port="$2" bin run=()
  bin="$(pg_bin)"
  rm -rf "$dir" && mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    run=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    chown postgres:postgres "$dir"
    if ! "${run[@]}" test -w "$dir"; then
      rmdir "$dir"
      dir="${TMPDIR:-/tmp}/flashgate-postgres-$port"
      rm -rf "$dir" && mkdir -p "$dir" && chown postgres:postgres "$dir"
      say "PostgreSQL runs as the postgres user, who cannot reach $1: data in $dir instead" >&2
    fi
  fi
  "${run[@]}" "$bin/initdb" -U postgres --auth=trust -E UTF8 --no-sync -D "$dir/data" >"$dir/initdb.log" 2>&1 \
    || die "initdb failed (see $dir/initdb.log)"
  "${run[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$dir" >"$dir/server.log" 2>&1 &
  PG_PID=$!
  for _ in $(seq 1 100); do
    psql -h 127.0.0.1 -p "$port" -U postgres -Atc 'select 1' >/dev/null 2>&1 && break
    sleep 0.1
  done
  psql -h 127.0.0.1 -p "$port" -U postgres -Atc 'select 1' >/dev/null 2>&1 \
    || die "postgres did not start (see $dir/server.log)"
}
