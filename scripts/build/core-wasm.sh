#!/usr/bin/env bash
# Proves the sans-IO core builds for the edges: `flashgate-core` with default features for
# wasm32-unknown-unknown (Cloudflare Workers) and wasm32-wasip2 (Spin), in target/wasm so the
# native target/ is not rebuilt. Uses the toolchain route scripts/toolchain/wasm.sh sets up
# (rustup targets, or Debian's rustc-web with -Zbuild-std). Extra args go to cargo build.
set -euo pipefail
cd "$(dirname "$0")/../.."

route="$(bash scripts/toolchain/wasm.sh | tail -n1 | sed 's/^wasm route: //')"
CACHE="${FLASHGATE_CACHE:-$HOME/.cache/flashgate}"
WCL_VERSION="${WASM_COMPONENT_LD_VERSION:-0.5.31}"
export CARGO_TARGET_DIR="$PWD/target/wasm"

build() {
    local target="$1"; shift
    echo "core-wasm: $route route: building flashgate-core for $target"
    local started=$SECONDS
    "$@" build -p flashgate-core --target "$target" "${EXTRA[@]}"
    echo "core-wasm: $target ok in $((SECONDS - started)) s"
}

EXTRA=("$@")
case "$route" in
rustup)
    build wasm32-unknown-unknown cargo
    build wasm32-wasip2 cargo
    ;;
debian)
    # Debian's compiler (no prebuilt std for wasm: build it), and its cargo, which knows -Z.
    export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
    EXTRA+=(-Zbuild-std=std,panic_abort)
    build wasm32-unknown-unknown /usr/bin/cargo
    PATH="$CACHE/tools/wasm-component-ld-$WCL_VERSION/bin:$PATH" \
    CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-L /usr/lib/wasm32-wasi -Clink-arg=--wasm-ld-path=/usr/bin/wasm-ld-22" \
        build wasm32-wasip2 /usr/bin/cargo
    ;;
*)
    echo "core-wasm: unknown route '$route'" >&2
    exit 1
    ;;
esac
echo "core-wasm: flashgate-core builds for wasm32-unknown-unknown and wasm32-wasip2"
