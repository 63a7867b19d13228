#!/usr/bin/env bash
# scripts/run.sh — `make run`: the whole saga shop on this machine.
#
#   scripts/run.sh                 build, then start everything and print the URL; runs until
#                                  Ctrl-C / SIGTERM, then stops everything it started and exits 0
#   scripts/run.sh --background    the same, detached: returns once the stack is ready, <state>/env
#                                  describes it (stop it with `make stop`)
#
# Installs the packages and builds; `shop run` (tools/src/bin/shop.rs) starts and supervises the
# private PostgreSQL, Redis and nginx plus the six services, all on 127.0.0.1, all state under
# SAGA_STATE_DIR (default .state/run). Its settings: `target/release/shop run --help`.
#
# Environment:
#   GATEWAY_PORT (8080) PG_PORT (55432) REDIS_PORT (56379) AUTH_PORT (8001) BILLING_PORT (8002)
#   ORDER_PORT (8003) MEDIATOR_PORT (8004) ITEMS_PORT (8005) SLOTS_PORT (8006)
#   SAGA_STATE_DIR  state dir (default <repo>/.state/run)
#   PROFILE         release (default) or debug: which cargo profile to build and run
#   SKIP_BUILD=1    do not run cargo build (use the binaries already built)
#   PG_UNIX_SOCKET=1 services reach Postgres over its Unix socket; PG_EXTRA_OPTS more server options
#   LOG_FORMAT, RUST_LOG and the services' own settings (ITEM_STOCK, ...) are passed through.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  "" | --background | -b) ;;
  -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) err "unknown argument: $1"; exit 2 ;;
esac

exec_shop run "$@"
