#!/usr/bin/env bash
# Installs what building and running the Cloudflare Worker needs, skipping what is there, and
# says what it does. Idempotent; on a warm machine it only checks (a second or two).
#
#   worker-build       the version of the `worker` crate in Cargo.lock   ~/.cache/flashgate/tools/worker-build-<v>
#   wasm-bindgen-cli   the version of `wasm-bindgen` in Cargo.lock       ~/.cache/flashgate/tools/wasm-bindgen-cli-<v>
#   npm packages       package-lock.json: wrangler 4 (workerd), Node 22 for it (the machines
#                      have Node 20; wrangler needs >= 22.12), binaryen 132 (wasm-opt) and
#                      esbuild, into node_modules/ with `npm ci`
#
# worker-build would download wasm-bindgen, wasm-opt and esbuild itself, from GitHub, which these
# machines cannot reach; scripts/build/worker.sh points it at the ones installed here instead.
# The Rust side for wasm32-unknown-unknown comes from scripts/toolchain/wasm.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

need_rust
lock_version() {
  # The version of package $1 in Cargo.lock.
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}
WORKER_VERSION="$(lock_version worker)"
BINDGEN_VERSION="$(lock_version wasm-bindgen)"
[ -n "$WORKER_VERSION" ] && [ -n "$BINDGEN_VERSION" ] || die "Cargo.lock names no worker / wasm-bindgen version"
TOOLS="$FLASHGATE_CACHE/tools"

# Installs into a scratch root first, so an interrupted install is never taken for a cached one.
install_crate() { # crate version root [cargo install flags]
  local crate="$1" version="$2" root="$3"; shift 3
  say "cargo install $crate $version into $root (a few minutes, once)"
  nice cargo install "$crate" --version "$version" --root "$root.partial" "$@" >&2
  rm -rf "$root" && mv "$root.partial" "$root"
}

wb_root="$TOOLS/worker-build-$WORKER_VERSION"
if [ -x "$wb_root/bin/worker-build" ]; then
  say "worker-build $WORKER_VERSION: cached"
else
  install_crate worker-build "$WORKER_VERSION" "$wb_root" --locked
fi

bg_root="$TOOLS/wasm-bindgen-cli-$BINDGEN_VERSION"
if [ -x "$bg_root/bin/wasm-bindgen" ]; then
  say "wasm-bindgen-cli $BINDGEN_VERSION: cached"
else
  # Without --locked: its lockfile pins a webpki-roots that no longer builds.
  install_crate wasm-bindgen-cli "$BINDGEN_VERSION" "$bg_root"
fi

need_cmd npm npm
stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ -x node_modules/.bin/wrangler ]; then
  say "npm packages: installed (node_modules is newer than package-lock.json)"
else
  say "npm ci (wrangler, node 22, binaryen, esbuild)"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
say "worker toolchain ready: worker-build $WORKER_VERSION, wasm-bindgen $BINDGEN_VERSION, wrangler $(PATH="$PWD/node_modules/.bin:$PATH" WRANGLER_SEND_METRICS=false wrangler --version 2>/dev/null | tail -n1)"
