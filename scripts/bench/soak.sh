#!/usr/bin/env bash
# The soak: minutes of mixed traffic against the warehouse binary on Redis (AOF
# always), with the warehouse killed and Redis restarted at moments drawn from a seed, ending
# with the audit. SOAK_SECONDS (default 180) and SOAK_SEED (default: the time, printed) replay a
# run. The test command runs the same test for 8 seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
need_cmd redis-server redis-server
need_cmd redis-cli redis-tools
export SOAK_SECONDS="${SOAK_SECONDS:-180}"
cargo build -q -p flashgate-core --features warehouse --bin flashgate-warehouse
exec cargo test -q -p flashgate-tests --test faults soak_with_faults_at_random_moments -- --nocapture
