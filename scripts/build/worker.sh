#!/usr/bin/env bash
# Builds the Cloudflare Worker (edge/worker) into edge/worker/build/ — wrangler's `[build]`
# command, also run by scripts/test.sh before the tests. worker-build compiles the crate with the
# size-tuned `wasm-release` profile into target/worker (its own target dir: the native target/
# is never rebuilt by it), runs wasm-bindgen, wasm-opt and esbuild — the ones
# scripts/toolchain/worker.sh installed, never downloads — and writes index.js + index.wasm.
#
# Fast path: when cargo's wasm is unchanged since the last bundle, it stops after `cargo build`
# (about a second), so `wrangler dev` starts quickly. FLASHGATE_FORCE_BUILD=1 always bundles.
#
# On the Debian wasm route (scripts/toolchain/wasm.sh) it builds std from source with Debian's
# rustc (-Zbuild-std) and puts a rustc shim first on PATH that answers worker-build's
# target-libdir probe (edge/worker/shim/).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
# The storefront the Worker serves: hashed assets built from web/src (git-ignored output).
bash scripts/build/web.sh

need_rust
lock_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}
TOOLS="$FLASHGATE_CACHE/tools"
WB="$TOOLS/worker-build-$(lock_version worker)/bin/worker-build"
export WASM_BINDGEN_BIN="$TOOLS/wasm-bindgen-cli-$(lock_version wasm-bindgen)/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/binaryen/bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
for tool in "$WB" "$WASM_BINDGEN_BIN" "$WASM_OPT_BIN" "$ESBUILD_BIN"; do
  [ -x "$tool" ] || die "$tool is missing: run scripts/toolchain/setup.sh (or scripts/toolchain/worker.sh)"
done
# wasm-opt is a Node script of binaryen's: give it the Node 22 that npm installed.
export PATH="$ROOT/node_modules/.bin:$PATH"
export CARGO_TARGET_DIR="$ROOT/target/worker"
# The env var worker-build sets for wasm-bindgen's proc-macro; set it here too, so the fast
# path's cargo build sees the same environment and does not rebuild.
export WASM_BINDGEN_USE_JS_SYS=1

route="$(cat "$FLASHGATE_CACHE/wasm-route" 2>/dev/null || true)"
if [ -z "$route" ]; then
  route="$(bash scripts/toolchain/wasm.sh | tail -n1 | sed 's/^wasm route: //')"
fi
if [ "$route" = debian ]; then
  export PATH="$ROOT/edge/worker/shim:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
  export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
fi

PROFILE=worker-release
cd edge/worker
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/$PROFILE/flashgate_worker.wasm"
if [ -z "${FLASHGATE_FORCE_BUILD:-}" ] && [ -f build/index.js ] && [ -f build/index_bg.wasm ]; then
  cargo build --lib --profile "$PROFILE" --target wasm32-unknown-unknown -q
  if [ build/index_bg.wasm -nt "$wasm" ]; then
    say "worker: build/ is up to date ($(stat -c %s build/index_bg.wasm) bytes of wasm)"
    exit 0
  fi
fi
say "worker: worker-build --profile $PROFILE ($route wasm route)"
started=$SECONDS
"$WB" --profile "$PROFILE"
# worker-build keeps the wasm name section (readable panic traces in workerd's log) at about a
# fifth of the module; drop it unless asked to keep it (FLASHGATE_WORKER_NAMES=1).
if [ -z "${FLASHGATE_WORKER_NAMES:-}" ]; then
  features=(mutable-globals sign-ext nontrapping-float-to-int bulk-memory multivalue reference-types exception-handling)
  "$WASM_OPT_BIN" build/index_bg.wasm --strip-debug "${features[@]/#/--enable-}" -o build/index_bg.wasm.stripped
  mv build/index_bg.wasm.stripped build/index_bg.wasm
fi
size=$(stat -c %s build/index_bg.wasm)
gz=$(gzip -9c build/index_bg.wasm | wc -c)
say "worker: built in $((SECONDS - started)) s: edge/worker/build/index_bg.wasm $size bytes ($gz gzipped)"
