#!/usr/bin/env bash
# The cost of a big waiting-room line (issue 14): on a private Redis, lines of 1,000, 10,000 and
# 100,000 places joined in the pre-queue, then per line the bytes per place (MEMORY USAGE of the
# room's keys, and used_memory's growth), the draw (the first move at the start) and admit steps
# (a unit comes back, one move admits the next place), timed from the client and inside Redis
# (SLOWLOG). Arguments go to flashgate-bench-room (--places, --pool, --factor, --steps,
# --concurrency, --id-len). FLASHGATE_BENCH_PROFILE=debug runs the debug build instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
need_cmd redis-server redis-server
profile="${FLASHGATE_BENCH_PROFILE:-release}"
say "building the benchmark ($profile)"
if [ "$profile" = release ]; then
  cargo build --release -q -p flashgate-tests --bin flashgate-bench-room
else
  cargo build -q -p flashgate-tests --bin flashgate-bench-room
fi
exec "${CARGO_TARGET_DIR:-target}/$profile/flashgate-bench-room" "$@"
