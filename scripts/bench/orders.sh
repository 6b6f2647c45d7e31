#!/usr/bin/env bash
# The order sink benchmark (peak shaving): a spike of wins (20,000 by default, 50 clients)
# against a private Redis and PostgreSQL; the accept rate with the sink (Buy decides in Redis,
# the worker and flashgate-orders' batches carry the rows into PostgreSQL afterwards) against the
# synchronous way (each Buy inserts its own row in the request path), their ratio, and the sink's
# drain rate, batch size, maximum lag and time to drain. Arguments go to flashgate-bench-orders
# (--wins, --clients, --batch, --pace ROWS_PER_S for the live sink).
# FLASHGATE_BENCH_PROFILE=debug runs the debug build instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
need_cmd redis-server redis-server
need_postgres
profile="${FLASHGATE_BENCH_PROFILE:-release}"
say "building the benchmark ($profile)"
if [ "$profile" = release ]; then
  cargo build --release -q -p flashgate-tests --bin flashgate-bench-orders
else
  cargo build -q -p flashgate-tests --bin flashgate-bench-orders
fi
exec "${CARGO_TARGET_DIR:-target}/$profile/flashgate-bench-orders" "$@"
