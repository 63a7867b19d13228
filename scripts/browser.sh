#!/usr/bin/env bash
# The shop page and the operations console, walked in headless Chromium by Playwright
# (browser/journey.mjs) against a running stack; screenshots land in .state/screenshots/.
#
#   BASE_URL=http://127.0.0.1:8080 ADMIN_USER=operator scripts/browser.sh
#
# ADMIN_USER must be one of the stack's ADMIN_USERS (`shop test` starts its e2e stack so).
# Installs Debian's chromium if missing and playwright-core (pinned in browser/package-lock.json;
# it never downloads a browser of its own).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_packages chromium

cd "$SAGA_REPO_ROOT/browser"
# npm ci writes node_modules/.package-lock.json after a successful install.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json \
      || package.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
exec node journey.mjs
