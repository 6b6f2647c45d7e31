#!/usr/bin/env bash
# Installs what the storefront's browser tests need, skipping what is there: Debian's chromium
# (driven headless by playwright-core from npm, see tests/browser/; `npx playwright install`
# cannot download browsers here) and the npm packages of package-lock.json (playwright-core,
# installed with the Worker's toolchain by `npm ci` in scripts/toolchain/worker.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

need_cmd chromium chromium
need_cmd node nodejs
say "chromium: $(chromium --version 2>/dev/null | head -1)"
if [ ! -f node_modules/playwright-core/package.json ]; then
  need_cmd npm npm
  say "npm ci (playwright-core and the Worker's npm packages, from package-lock.json)"
  npm ci --no-audit --no-fund >&2
fi
