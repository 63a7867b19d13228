#!/usr/bin/env bash
# scripts/stop.sh — `make stop`: stop the local stack started by scripts/run.sh.
#
#   scripts/stop.sh          stop the stack of SAGA_STATE_DIR (default .state/run): a foreground
#                            `make run` is asked to stop (SIGTERM, it cleans up itself), then
#                            whatever is left (services, nginx, redis, postgres) is stopped
#   scripts/stop.sh --all    the same for every stack under .state/ (run, e2e, test, ...)
#   scripts/stop.sh --clean  --all, then remove .state/ (and PostgreSQL fallback dirs in /var/tmp)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# stop_stack DIR : signal a foreground run.sh owning DIR, then stop whatever is left
stop_stack() {
  local dir="$1" pid
  [[ -d "$dir" ]] || return 0
  pid="$(_read_pid "$dir/run.pid")"
  if [[ -n "$pid" ]] && _pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'run\.sh'; then
    log "asking scripts/run.sh (pid $pid) to stop"
    kill -TERM "$pid" 2>/dev/null || true
    _wait_pid_gone "$pid" 60 || warn "run.sh (pid $pid) still running after 60s"
  fi
  stop_all "$dir" || true
  rm -f "$dir/run.pid" "$dir/env"
  pid="$(_read_pid "$dir/.run.lock/pid")"
  if [[ -d "$dir/.run.lock" ]] && ! { [[ -n "$pid" ]] && _pid_alive "$pid"; }; then rm -rf "$dir/.run.lock"; fi
  if running="$(stack_running "$dir")"; then
    err "still running under $dir: $(echo "$running" | tr '\n' ' ')"
    return 1
  fi
}

case "${1:-}" in
  "")
    stop_stack "${SAGA_STATE_DIR:-$SAGA_REPO_ROOT/.state/run}"
    ;;
  --all|--clean)
    rc=0
    if [[ -d "$SAGA_REPO_ROOT/.state" ]]; then
      for d in "$SAGA_REPO_ROOT"/.state/*/; do
        if [[ -d "$d" ]]; then stop_stack "${d%/}" || rc=1; fi
      done
    fi
    if [[ $1 == --clean ]]; then
      (( rc == 0 )) || { err "not removing .state: something is still running"; exit 1; }
      if [[ -d "$SAGA_REPO_ROOT/.state" ]]; then
        for d in "$SAGA_REPO_ROOT"/.state/*/; do
          if [[ -d "$d" ]]; then purge_state "${d%/}"; fi
        done
        rm -rf -- "$SAGA_REPO_ROOT/.state"
        log "removed .state"
      fi
    fi
    exit $rc
    ;;
  -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
  *) err "unknown argument: $1"; exit 2 ;;
esac
