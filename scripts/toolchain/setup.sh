#!/usr/bin/env bash
# Installs what building, running and testing flashgate needs, skipping what is there:
# a Rust toolchain, a C compiler, redis-server (tests start their own on free ports), PostgreSQL's
# server programs (the order sink's tests start a private instance too) and the
# wasm toolchain the shared core's wasm builds need. Safe to run again; fast when warm.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

need_rust
need_cmd cc build-essential
need_cmd redis-server redis-server
need_cmd redis-cli redis-tools
# PostgreSQL's server package: the order sink's tests start a private instance per run.
need_postgres
if [ "${1:-}" != "--native-only" ]; then
  bash scripts/toolchain/wasm.sh
  bash scripts/toolchain/worker.sh
  bash scripts/toolchain/spin.sh
  bash scripts/toolchain/browser.sh
fi
say "setup done (cache: $FLASHGATE_CACHE)"
