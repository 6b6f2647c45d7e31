#!/usr/bin/env bash
# Makes sure this machine has a Rust that builds flashgate for wasm32-unknown-unknown and
# wasm32-wasip2, and says which way it got one. Idempotent: on a warm machine it only checks.
#
#   route "rustup": the rustup toolchain already has both targets, or `rustup target add`
#                   can fetch them (normal developer machines).
#   route "debian": rustup cannot reach its server (these project machines): Debian's
#                   rustc-web/cargo-web (std built from source with -Zbuild-std), lld-22 and
#                   wasi-libc, plus wasm-component-ld for wasip2, installed with cargo into
#                   ~/.cache/flashgate/tools/wasm-component-ld-<version> (outside the work tree).
#
# FLASHGATE_WASM_ROUTE=rustup|debian forces a route (e.g. to exercise the Debian one).
#
# Writes nothing into the repository. Leaves ~/.cache/flashgate/wasm-route holding the route,
# which scripts/build/core-wasm.sh reads. Prints `wasm route: <route>` as its last line.
set -euo pipefail

WCL_VERSION="${WASM_COMPONENT_LD_VERSION:-0.5.31}"
CACHE="${FLASHGATE_CACHE:-$HOME/.cache/flashgate}"
WCL_ROOT="$CACHE/tools/wasm-component-ld-$WCL_VERSION"
DEBIAN_PACKAGES=(rustc-web cargo-web rust-web-src lld-22 wasi-libc)
TARGETS=(wasm32-unknown-unknown wasm32-wasip2)

say() { echo "wasm-toolchain: $*" >&2; }

finish() {
    mkdir -p "$CACHE"
    echo "$1" >"$CACHE/wasm-route"
    echo "wasm route: $1"
    exit 0
}

rustup_has_targets() {
    command -v rustup >/dev/null 2>&1 || return 1
    local installed
    installed="$(rustup target list --installed 2>/dev/null)" || return 1
    for t in "${TARGETS[@]}"; do grep -qx "$t" <<<"$installed" || return 1; done
}

debian_packages_present() {
    local status
    status="$(dpkg-query -W -f='${Status}\n' "${DEBIAN_PACKAGES[@]}" 2>/dev/null)" || return 1
    [ "$(grep -c '^install ok installed$' <<<"$status")" -eq "${#DEBIAN_PACKAGES[@]}" ]
}

debian_complete() {
    debian_packages_present && [ -x "$WCL_ROOT/bin/wasm-component-ld" ] \
        && [ -x /usr/bin/rustc ] && [ -x /usr/bin/wasm-ld-22 ]
}

FORCED="${FLASHGATE_WASM_ROUTE:-}"
case "$FORCED" in ""|rustup|debian) ;; *) say "FLASHGATE_WASM_ROUTE must be rustup or debian"; exit 2 ;; esac

# 1. Already set up either way: nothing to do.
if [ "$FORCED" != debian ] && rustup_has_targets; then
    say "rustup already has ${TARGETS[*]}"
    finish rustup
fi
if [ "$FORCED" != rustup ] && debian_complete; then
    say "Debian wasm toolchain and wasm-component-ld $WCL_VERSION already installed"
    finish debian
fi

# 2. Try rustup, bounded: without network to its server it hangs.
if [ "$FORCED" != debian ] && command -v rustup >/dev/null 2>&1; then
    say "trying: rustup target add ${TARGETS[*]} (20 s limit)"
    if timeout 20 rustup target add "${TARGETS[@]}" >&2 && rustup_has_targets; then
        finish rustup
    fi
    say "rustup could not add the targets; using the Debian route"
fi
[ "$FORCED" != rustup ] || { say "rustup route forced but unavailable"; exit 1; }

# 3. The Debian route.
if ! debian_packages_present; then
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    if ! apt-cache show rustc-web >/dev/null 2>&1; then
        say "apt-get update (package lists do not know rustc-web yet)"
        $SUDO apt-get update -qq >&2
    fi
    say "apt-get install -y ${DEBIAN_PACKAGES[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${DEBIAN_PACKAGES[@]}" >&2
fi
if [ ! -x "$WCL_ROOT/bin/wasm-component-ld" ]; then
    say "cargo install wasm-component-ld $WCL_VERSION into $WCL_ROOT (a few minutes, once)"
    # Built with Debian's newer cargo when the rustup one is older than the crate needs.
    CARGO_BIN=cargo
    if [ -x /usr/bin/cargo ]; then CARGO_BIN=/usr/bin/cargo; export RUSTC=/usr/bin/rustc; fi
    "$CARGO_BIN" install wasm-component-ld --version "$WCL_VERSION" --locked --root "$WCL_ROOT" >&2
fi
debian_complete || { say "Debian route incomplete after installing"; exit 1; }
finish debian
