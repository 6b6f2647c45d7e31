#!/usr/bin/env bash
# Builds the Spin component (edge/spin) for wasm32-wasip2 with the size-tuned `wasm-release`
# profile, in target/wasm (its own target dir: the native target/ is never rebuilt by it), and
# copies the two builds to target/spin/:
#
#   flashgate_spin.wasm      standard WASI imports only: `wasmtime serve` (the tests) and Spin
#   flashgate_spin_kv.wasm   feature `kv`: keeps the gate's state in Spin key-value (Spin only;
#                            spin.toml deploys this one)
#
# and, when scripts/toolchain/spin.sh has installed jco, transpiles the kv build to JS for the
# local Node host (edge/spin/jco-host/build/, served by edge/spin/jco-host/serve.mjs).
#
# `spin build` runs this script (spin.toml's [component.flashgate.build]); scripts/test.sh runs
# it before the tests. On the Debian wasm route (scripts/toolchain/wasm.sh) it builds std from
# source with Debian's rustc and links with wasm-component-ld from the cache.
# Usage: scripts/build/spin.sh [plain|kv|all]   (default: all)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
# The storefront Spin's file server serves: hashed assets built from web/src (git-ignored output).
bash scripts/build/web.sh

need_rust
which="${1:-all}"
case "$which" in plain|kv|all) ;; *) die "usage: scripts/build/spin.sh [plain|kv|all]" ;; esac
export CARGO_TARGET_DIR="$ROOT/target/wasm"
PROFILE=wasm-release
TARGET=wasm32-wasip2
out="$ROOT/target/spin"
mkdir -p "$out"

route="$(cat "$FLASHGATE_CACHE/wasm-route" 2>/dev/null || true)"
if [ -z "$route" ]; then
  route="$(bash scripts/toolchain/wasm.sh | tail -n1 | sed 's/^wasm route: //')"
fi
CARGO=(cargo)
if [ "$route" = debian ]; then
  WCL_VERSION="${WASM_COMPONENT_LD_VERSION:-0.5.31}"
  export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort
  export PATH="$FLASHGATE_CACHE/tools/wasm-component-ld-$WCL_VERSION/bin:$PATH"
  export CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-L /usr/lib/wasm32-wasi -Clink-arg=--wasm-ld-path=/usr/bin/wasm-ld-22"
  CARGO=(/usr/bin/cargo)
fi

build() { # name, cargo feature args...
  local name="$1"; shift
  local started=$SECONDS
  "${CARGO[@]}" build -q -p flashgate-spin --lib --target "$TARGET" --profile "$PROFILE" "$@"
  cp "$CARGO_TARGET_DIR/$TARGET/$PROFILE/flashgate_spin.wasm" "$out/$name.wasm"
  local size gz
  size=$(stat -c %s "$out/$name.wasm")
  gz=$(gzip -9c "$out/$name.wasm" | wc -c)
  say "spin: target/spin/$name.wasm $size bytes ($gz gzipped), $((SECONDS - started)) s ($route wasm route)"
}

# The kv build first, so target/wasm's own copy ends as the plain build (the one wasmtime runs).
if [ "$which" != plain ]; then build flashgate_spin_kv --features kv; fi
if [ "$which" != kv ]; then build flashgate_spin; fi

jco_host="$ROOT/edge/spin/jco-host"
if [ "$which" != plain ] && [ -x "$jco_host/node_modules/.bin/jco" ]; then
  rm -rf "$jco_host/build"
  # JSPI for the async (WASI 0.3) exports and imports; spin:key-value from the in-memory module.
  PATH="$jco_host/node_modules/.bin:$PATH" jco transpile "$out/flashgate_spin_kv.wasm" \
    -o "$jco_host/build" --async-mode jspi --no-typescript -q \
    --map 'spin:key-value/key-value@3.0.0=../spin-kv.js'
  say "spin: the kv build transpiled for the Node host: edge/spin/jco-host/build/"
fi
