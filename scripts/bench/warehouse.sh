#!/usr/bin/env bash
# The warehouse benchmark: Buy decisions/s, p50/p99, warehouse and Redis CPU per Buy at 50
# clients, one call per buy, batched and gathered (--batch off|on|both, --gather N buys per
# BuyMany, --durability relaxed|fsync),
# against the Redis ceiling (redis-benchmark EVALSHA of the same script) and the SQL hot-row
# baseline (pgbench), all in one run. Arguments go to flashgate-bench-warehouse (--help).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
need_cmd redis-server redis-server
need_cmd redis-benchmark redis-tools
need_cmd pgbench postgresql-client
say "building the release warehouse and the benchmark"
cargo build --release -q -p flashgate-core --features warehouse --bin flashgate-warehouse
cargo build --release -q -p flashgate-tests --bin flashgate-bench-warehouse
exec target/release/flashgate-bench-warehouse "$@"
