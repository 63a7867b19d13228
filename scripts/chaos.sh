#!/usr/bin/env bash
# scripts/chaos.sh — `make chaos`: kill -9, pauses, lost replies, delays and Redis/PostgreSQL
# restarts under load, then audit the books (the `chaos` tool, tools/src/bin/chaos.rs).
#
#   scripts/chaos.sh [CHAOS ARGS...]   e.g. --short (600 orders, every fault kind: what `make test`
#                                      runs), --orders 20000 --kills 100, --seed N (replay)
#
# Builds the binaries, then `shop chaos` (tools/src/checks.rs) starts a private PostgreSQL and
# Redis under .state/chaos on free ports (tools/src/stores.rs, the one place that says how a store
# starts) and runs `chaos` against them; chaos restarts them with the same settings and starts
# its own services (3 mediators and the five others, on free ports). Everything is stopped on
# exit, failure or Ctrl-C. Exit status: chaos's (1 = a violation).
#
# Environment: PROFILE release (default) or debug; SKIP_BUILD=1 to use the binaries already built;
# SAGA_STACK_RUST_LOG (default warn) for the services' logs, which are kept when a check fails.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SAGA_REPO_ROOT"

exec_shop chaos "$@"
