#!/usr/bin/env bash
# scripts/stop.sh — `make stop`: stop the local stack started by `make run`.
#
#   scripts/stop.sh          stop the stack of SAGA_STATE_DIR (default .state/run): its supervisor
#                            is asked to stop (SIGTERM; it stops what it started), then whatever is
#                            left (nginx, redis, postgres) is stopped
#   scripts/stop.sh --all    the same for every stack under .state/ (run, e2e, test, ...)
#   scripts/stop.sh --clean  --all, then remove .state/ (and PostgreSQL fallback dirs in /var/tmp)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  "" | --all | --clean) ;;
  -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) err "unknown argument: $1"; exit 2 ;;
esac

# The shop of whichever profile was built (both stop any stack).
for profile in release debug; do
  if [[ -x "$(bin_dir "$profile")/shop" ]]; then
    exec "$(bin_dir "$profile")/shop" stop "$@"
  fi
done
PROFILE=debug SKIP_BUILD=0 build_bins debug
exec "$(bin_dir debug)/shop" stop "$@"
