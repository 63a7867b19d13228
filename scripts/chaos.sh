#!/usr/bin/env bash
# scripts/chaos.sh — `make chaos`: kill -9, pauses, lost replies, delays and Redis/PostgreSQL
# restarts under load, then audit the books (the `chaos` tool, tools/src/bin/chaos.rs).
#
#   scripts/chaos.sh [CHAOS ARGS...]   e.g. --short (600 orders, every fault kind: what `make test`
#                                      runs), --orders 20000 --kills 100, --seed N (replay), --help
#
# Builds the binaries; `shop run --stores-only` starts a private PostgreSQL and Redis under
# .state/chaos on free ports (tools/src/stores.rs, the one place that says how a store starts);
# `chaos` gets their directories, restarts them with the same settings, and starts its own
# services (3 mediators and the five others, on free ports); everything is stopped on exit,
# failure or Ctrl-C. Exit status: chaos's (1 = a violation).
#
# Environment: PROFILE release (default) or debug; SKIP_BUILD=1 to use the binaries already built;
# SAGA_STACK_RUST_LOG (default warn) for the services' logs, which are kept when a check fails.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SAGA_REPO_ROOT"

case "${1:-}" in
  -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

STATE="$SAGA_REPO_ROOT/.state/chaos"
PROFILE="${PROFILE:-release}"
ensure_packages
build_bins "$PROFILE"
shop "$PROFILE" stop --state-dir "$STATE" --purge   # leftovers of an interrupted run

trap 'shop "$PROFILE" stop --state-dir "$STATE" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
SAGA_STATE_DIR="$STATE" PG_PORT=19432 REDIS_PORT=19379 shop "$PROFILE" run --stores-only --free-ports --background
# shellcheck disable=SC1091
set -a; . "$STATE/env"; set +a

log "chaos $* (PostgreSQL :$PG_PORT, Redis :$REDIS_PORT, $PROFILE binaries)"
"$(bin_dir "$PROFILE")/chaos" \
  --database-url "$PG_URL/postgres" \
  --redis-url "$REDIS_URL" \
  --redis-dir "$REDIS_DIR" \
  --pg-data "$PG_DATA" \
  --pg-bin "$PG_BIN" \
  "$@"
