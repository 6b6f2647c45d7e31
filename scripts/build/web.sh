#!/usr/bin/env bash
# Builds the storefront's hashed assets: web/src/{pow.js,line.js,app.js,style.css} → web/assets/
# NAME.<first 10 hex of SHA-256>.EXT, and web/src/index.html → web/index.html with those names
# (web/_headers caches /assets/* for a year, immutable; the page itself always revalidates).
# The output is git-ignored: build/worker.sh and build/spin.sh run this first, so every way the
# page is served (wrangler dev/deploy, spin build, run.sh, the tests) builds it from the sources.
# pow.js is named first because app.js refers to it. Idempotent: unchanged sources give the same
# files and names; stale hashed files are removed. `--check` changes nothing and fails when
# web/ is not what the sources build (tests/browser/assets.test.mjs checks the same).
set -euo pipefail
cd "$(dirname "$0")/../.."

check=0
[ "${1:-}" = "--check" ] && check=1
src=web/src
out=web/assets
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/assets"

subst=()
hashed() { # file → its hashed name, content copied into $tmp/assets
  local file="$1" base ext content hash
  base="$(basename "$file")"; ext="${base##*.}"; base="${base%.*}"
  content="$tmp/$base.$ext"
  cp "$file" "$content"
  for pair in "${subst[@]}"; do sed -i "s|{{${pair%%=*}}}|${pair#*=}|g" "$content"; done
  hash="$(sha256sum "$content" | cut -c1-10)"
  mv "$content" "$tmp/assets/$base.$hash.$ext"
  subst+=("$base.$ext=$base.$hash.$ext")
}
hashed "$src/pow.js"
hashed "$src/line.js"
hashed "$src/app.js"
hashed "$src/style.css"
cp "$src/index.html" "$tmp/index.html"
for pair in "${subst[@]}"; do sed -i "s|{{${pair%%=*}}}|${pair#*=}|g" "$tmp/index.html"; done
if grep -q '{{' "$tmp/index.html" "$tmp"/assets/*; then
  echo "build-web: an unresolved {{name}} placeholder is left" >&2; exit 1
fi

if [ "$check" = 1 ]; then
  diff -r "$tmp/assets" "$out" >/dev/null 2>&1 && cmp -s "$tmp/index.html" web/index.html \
    || { echo "web/ is out of date: run scripts/build/web.sh" >&2; exit 1; }
  exit 0
fi
mkdir -p "$out"
for f in "$out"/*; do [ -e "$f" ] && [ ! -e "$tmp/assets/$(basename "$f")" ] && rm -f "$f"; done
for f in "$tmp"/assets/*; do cmp -s "$f" "$out/$(basename "$f")" || cp "$f" "$out/"; done
cmp -s "$tmp/index.html" web/index.html || cp "$tmp/index.html" web/index.html
printf '%s\n' "${subst[@]}" | sed 's/^/build-web: /' >&2
