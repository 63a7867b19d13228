#!/usr/bin/env bash
# scripts/run.sh — `make run`: the whole saga shop on this machine.
#
#   scripts/run.sh                 start everything, print the URL, run until Ctrl-C / SIGTERM
#                                  (then stop everything it started and exit 0)
#   scripts/run.sh --background    start everything, write <state>/env, return 0 leaving it running
#                                  (stop it with scripts/stop.sh / `make stop`)
#
# Private PostgreSQL, Redis and nginx plus the six services, all on 127.0.0.1, all state under
# SAGA_STATE_DIR (default .state/run): data, logs (<state>/logs/<svc>.log), pids, secrets.env.
#
# Environment:
#   GATEWAY_PORT (8080) PG_PORT (55432) REDIS_PORT (56379) AUTH_PORT (8001) BILLING_PORT (8002)
#   ORDER_PORT (8003) MEDIATOR_PORT (8004) ITEMS_PORT (8005) SLOTS_PORT (8006)
#   SAGA_STATE_DIR  state dir (default <repo>/.state/run)
#   PROFILE         release (default) or debug: which cargo profile to build and run
#   SKIP_BUILD=1    do not run cargo build (use the binaries already in BIN_DIR)
#   BIN_DIR         where the binaries are (default ${CARGO_TARGET_DIR:-<repo>/target}/$PROFILE)
#   PG_UNIX_SOCKET=1 services reach Postgres over its Unix socket; PG_EXTRA_OPTS more server options
#   LOG_FORMAT, RUST_LOG and the services' own settings (ITEM_STOCK, ...) are passed through.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

MODE=foreground
case "${1:-}" in
  "") ;;
  --background|-b) MODE=background ;;
  -h|--help) usage; exit 0 ;;
  *) err "unknown argument: $1"; usage >&2; exit 2 ;;
esac

STATE="${SAGA_STATE_DIR:-$SAGA_REPO_ROOT/.state/run}"
PROFILE="${PROFILE:-release}"
case "$PROFILE" in
  release|debug) ;;
  *) err "PROFILE must be release or debug, not '$PROFILE'"; exit 2 ;;
esac
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-$SAGA_REPO_ROOT/target}/$PROFILE}"
BASE_URL="http://127.0.0.1:$GATEWAY_PORT"

ensure_packages

# ---- refuse to disturb a running stack -------------------------------------------------------
ports=(GATEWAY_PORT="$GATEWAY_PORT" PG_PORT="$PG_PORT" REDIS_PORT="$REDIS_PORT"
       AUTH_PORT="$AUTH_PORT" BILLING_PORT="$BILLING_PORT" ORDER_PORT="$ORDER_PORT"
       MEDIATOR_PORT="$MEDIATOR_PORT" ITEMS_PORT="$ITEMS_PORT" SLOTS_PORT="$SLOTS_PORT")
dups="$(printf '%s\n' "${ports[@]#*=}" | sort | uniq -d | tr '\n' ' ')"
if [[ -n "$dups" ]]; then
  err "the same port is configured twice: $dups(check GATEWAY_PORT, PG_PORT, REDIS_PORT, *_PORT)"
  exit 1
fi
require_ports_free "${ports[@]}" || exit 1

# One run.sh per state dir: a lock directory holding our pid (no fd, so nothing we start inherits
# it). Held for the whole foreground run, released once a --background start is done.
LOCK="$STATE/.run.lock"
LOCKED=0
_mkstate "$SAGA_REPO_ROOT/.state"
_mkstate "$STATE"
STATE="$(cd "$STATE" && pwd)"
LOCK="$STATE/.run.lock"
if ! mkdir "$LOCK" 2>/dev/null; then
  holder="$(cat "$LOCK/pid" 2>/dev/null || true)"
  lock_age=$(( $(date +%s) - $(stat -c %Y "$LOCK" 2>/dev/null || date +%s) ))
  if { [[ -z "$holder" ]] && (( lock_age < 10 )); } || { [[ -n "$holder" ]] && _pid_alive "$holder" && tr '\0' ' ' <"/proc/$holder/cmdline" 2>/dev/null | grep -q 'run\.sh'; }; then
    err "another scripts/run.sh${holder:+ (pid $holder)} is starting or running from $STATE — is \`make run\` already running? stop it (Ctrl-C or \`make stop\`) first"
    exit 1
  fi
  rm -rf "$LOCK"   # stale: its run.sh is gone
  mkdir "$LOCK" || { err "cannot take the lock $LOCK"; exit 1; }
fi
echo $$ >"$LOCK/pid"
LOCKED=1
release_lock() { if (( LOCKED )); then rm -rf "$LOCK"; LOCKED=0; fi; }
trap release_lock EXIT

if running="$(stack_running "$STATE")"; then
  err "a stack started from $STATE is already running ($(echo "$running" | tr '\n' ' ' | sed 's/ $//')) — is \`make run\` already running? stop it (Ctrl-C or \`make stop\`) first"
  exit 1
fi
require_ports_free "${ports[@]}" || exit 1

# ---- from here on, everything under $STATE is ours: clean up on failure / Ctrl-C -------------
RUNNING=0
CLEANUP=1
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if (( CLEANUP )); then
    [[ $MODE == foreground && $RUNNING == 1 ]] && log "stopping the saga shop"
    stop_all "$STATE" || true
    rm -f "$STATE/run.pid" "$STATE/env"
    if (( RUNNING )) && [[ $MODE == foreground ]]; then rc=0; fi
  fi
  release_lock
  exit "$rc"
}
on_signal() {
  # Ctrl-C / SIGTERM while running: a normal stop (exit 0); during start-up: 130
  if (( RUNNING )); then exit 0; else exit 130; fi
}
trap cleanup EXIT
trap on_signal INT TERM

rm -f "$STATE/env"
[[ $MODE == foreground ]] && echo $$ >"$STATE/run.pid"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build ($PROFILE)"
  build=(cargo build --workspace --bins)
  [[ $PROFILE == release ]] && build+=(--release)
  (cd "$SAGA_REPO_ROOT" && "${build[@]}")
fi

# the six services, and the renderer of the gateway's config (start_nginx)
for bin in "${SAGA_SERVICES[@]}" gateway-config; do
  [[ -x "$BIN_DIR/$bin" ]] || { err "missing binary $BIN_DIR/$bin (build with: cargo build --release --workspace --bins)"; exit 1; }
done
BIN_DIR="$(cd "$BIN_DIR" && pwd)"

start_postgres "$STATE/pg" "$PG_PORT"
create_databases "$PG_PORT" "${SAGA_DATABASES[@]}"
start_redis "$STATE/redis" "$REDIS_PORT"
start_services "$STATE" "$BIN_DIR"
start_nginx "$STATE/nginx" "$GATEWAY_PORT" "$BIN_DIR"

# machine-readable description of the running stack (tests, bench, chaos: `set -a; . <state>/env`)
{
  echo "BASE_URL=$BASE_URL"
  echo "STATE_DIR=$STATE"
  echo "SECRETS_FILE=$STATE/secrets.env"
  echo "BIN_DIR=$BIN_DIR"
  for v in GATEWAY_PORT PG_PORT REDIS_PORT AUTH_PORT BILLING_PORT ORDER_PORT MEDIATOR_PORT ITEMS_PORT SLOTS_PORT; do
    echo "$v=${!v}"
  done
  for svc in "${SAGA_SERVICES[@]}"; do
    echo "${svc^^}_URL=http://127.0.0.1:$(_svc_port "$svc")"
  done
  echo "PG_URL=postgres://postgres@127.0.0.1:$PG_PORT"
  echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
} >"$STATE/env.tmp"
mv "$STATE/env.tmp" "$STATE/env"
RUNNING=1

if [[ $MODE == background ]]; then
  CLEANUP=0
  release_lock
  log "saga shop running in the background at $BASE_URL (env: $STATE/env; stop: make stop)"
  exit 0
fi

rel_state="${STATE#"$SAGA_REPO_ROOT"/}"
cat <<EOF

  Saga shop is running at $BASE_URL
  logs: $rel_state/logs/<service>.log, gateway: $rel_state/nginx/logs/   (Ctrl-C stops everything)

  Try it:
    BASE=$BASE_URL
    curl -s -X POST \$BASE/api/auth/users/ -H 'content-type: application/json' -d '{"username":"alice","password":"secret-pass-1","email":"alice@example.com"}'
    TOKEN=\$(curl -s -X POST \$BASE/api/token/ -H 'content-type: application/json' -d '{"username":"alice","password":"secret-pass-1"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access"])')
    curl -s \$BASE/api/accounts/alice -H "Authorization: Bearer \$TOKEN"

EOF

# Run until Ctrl-C / SIGTERM; report services that exit on their own (without stopping the rest).
declare -A reported=()
while :; do
  sleep 2 &
  wait $! || true
  for svc in "${SAGA_SERVICES[@]}"; do
    pid="$(_read_pid "$STATE/pids/$svc.pid")"
    if [[ -n "$pid" ]] && ! _svc_alive "$STATE" "$svc" && [[ -z "${reported[$svc]:-}" ]]; then
      reported[$svc]=1
      warn "$svc (pid $pid) has exited — see $rel_state/logs/$svc.log"
      _tail_log "$STATE/logs/$svc.log" 15
    fi
  done
done
