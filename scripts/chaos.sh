#!/usr/bin/env bash
# scripts/chaos.sh — `make chaos`: kill -9, pauses, lost replies, delays and Redis/PostgreSQL
# restarts under load, then audit the books (the `chaos` tool, tools/src/bin/chaos.rs).
#
#   scripts/chaos.sh [CHAOS ARGS...]   e.g. --short (600 orders, every fault kind: what `make test`
#                                      runs), --orders 20000 --kills 100, --seed N (replay), --help
#
# Starts a private PostgreSQL and Redis under .state/chaos on free ports, builds the binaries, runs
# `chaos` against them (it starts its own services: 3 mediators and the five others, on free
# ports), and stops everything on exit, failure or Ctrl-C. Exit status: chaos's (1 = a violation).
# The stores are started here (lib.sh, the one place that says how); chaos gets their directories
# and restarts them with the same settings (redis.conf, pg_ctl restart).
#
# Environment: PROFILE release (default) or debug; SKIP_BUILD=1 to use the binaries already built;
# SAGA_STACK_RUST_LOG (default warn) for the services' logs, which are kept when a check fails.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SAGA_REPO_ROOT"

case "${1:-}" in
  -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

STATE="$SAGA_REPO_ROOT/.state/chaos"
PROFILE="${PROFILE:-release}"
case "$PROFILE" in
  release|debug) ;;
  *) err "PROFILE must be release or debug, not '$PROFILE'"; exit 2 ;;
esac
BIN_DIR="${CARGO_TARGET_DIR:-$SAGA_REPO_ROOT/target}/$PROFILE"

ensure_packages

stop_all "$STATE" 2>/dev/null || true   # leftovers of an interrupted run
rm -rf "$STATE"
STARTED=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if (( STARTED )); then stop_all "$STATE" >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --workspace --bins ($PROFILE)"
  build=(cargo build --workspace --bins)
  [[ $PROFILE == release ]] && build+=(--release)
  "${build[@]}"
fi
if [[ ! -x "$BIN_DIR/chaos" ]]; then
  hint="cargo build --workspace --bins"
  [[ $PROFILE == release ]] && hint+=" --release"
  err "missing $BIN_DIR/chaos (build it: $hint)"
  exit 1
fi

_mkstate "$SAGA_REPO_ROOT/.state"
_mkstate "$STATE"
STARTED=1
pg_port="$(pick_free_port)"
start_postgres "$STATE/pg" "$pg_port"
redis_port="$(pick_free_port)"
start_redis "$STATE/redis" "$redis_port"

log "chaos $* (PostgreSQL :$pg_port, Redis :$redis_port, $PROFILE binaries)"
"$BIN_DIR/chaos" \
  --database-url "postgres://postgres@127.0.0.1:$pg_port/postgres" \
  --redis-url "redis://127.0.0.1:$redis_port" \
  --redis-dir "$STATE/redis" \
  --pg-data "$(_pg_home "$STATE/pg")/data" \
  --pg-bin "$PG_BIN" \
  "$@"
