#!/usr/bin/env bash
# scripts/bench.sh — `make bench`: throughput and latency of the whole shop, through the gateway.
#
#   scripts/bench.sh
#
#   1. records the machine (CPU model, nproc, memory, kernel) and the commit;
#   2. starts the local stack in the background in release mode (`shop run --background`),
#      state in .state/bench, on ports 28080 (gateway), 28001-28006, 28432, 28379 (a busy one is
#      replaced by a free port), with ITEM_STOCK and SLOT_CAPACITY large enough that no
#      order fails for lack of stock, and tuned for ONE small machine that runs everything (the
#      profile behind each setting is in docs/PERFORMANCE.md, "Where the CPU goes"):
#        - each service and loadgen on one Tokio worker thread (BENCH_WORKER_THREADS, 1): eight
#          processes plus Postgres share the cores, and idle workers woken to steal tasks cost
#          more than they bring (in a pod with a CPU limit below 2, Tokio picks 1 by itself);
#        - services reach Postgres over its Unix socket, not loopback TCP (PG_UNIX_SOCKET=1);
#        - DB_MAX_CONNECTIONS=$BENCH_DB_CONNECTIONS (8) per service: fewer backends competing;
#        - Postgres group commit (BENCH_PG_OPTS, default commit_delay=200 commit_siblings=5);
#          fsync and synchronous_commit stay on: every commit is durable;
#   3. runs loadgen (tools/src/bin/loadgen.rs) twice, each with its own fresh users:
#        (a) maximum throughput: --concurrency $BENCH_CONCURRENCY (256) for $BENCH_DURATION (30s)
#        (b) latency at a fixed rate: --rate $BENCH_RATE (300/s) for $BENCH_DURATION
#   4. prints both summaries and their `RESULT {json}` lines (also saved in .state/bench-last.txt),
#      and stops the stack (also on failure or Ctrl-C).
#
# Environment: BENCH_CONCURRENCY, BENCH_RATE, BENCH_DURATION, BENCH_USERS (50), BENCH_MIX
# (success=90,no-money=4,no-item=3,no-slot=3), BENCH_WORKER_THREADS, BENCH_DB_CONNECTIONS,
# BENCH_PG_OPTS (see 2.), SKIP_BUILD=1, RUST_LOG (default warn: per-request logging is not what
# is measured). loadgen runs on the same machine and takes CPU from the shop.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SAGA_REPO_ROOT"

case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) err "unknown argument: $1"; exit 2 ;;
esac

STATE="$SAGA_REPO_ROOT/.state/bench"
OUT="$SAGA_REPO_ROOT/.state/bench-last.txt"
BIN_DIR="$(bin_dir release)"
CONCURRENCY="${BENCH_CONCURRENCY:-256}"
RATE="${BENCH_RATE:-300}"
DURATION="${BENCH_DURATION:-30s}"
USERS="${BENCH_USERS:-50}"
MIX="${BENCH_MIX:-success=90,no-money=4,no-item=3,no-slot=3}"
WORKER_THREADS="${BENCH_WORKER_THREADS:-1}"
DB_CONNECTIONS="${BENCH_DB_CONNECTIONS:-8}"
PG_OPTS="${BENCH_PG_OPTS:--c commit_delay=200 -c commit_siblings=5}"
SERVICE_LOG="${RUST_LOG:-warn}"

ensure_packages
build_bins release
[[ -x "$BIN_DIR/loadgen" ]] || { err "missing $BIN_DIR/loadgen (cargo build --release -p tools)"; exit 1; }
shop release stop --state-dir "$STATE" --purge   # leftovers

trap 'shop release stop --state-dir "$STATE" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$SAGA_REPO_ROOT/.state"
: >"$OUT"
say() { printf '%s\n' "$*" | tee -a "$OUT"; }

cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
mem="$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
say "== machine =="
say "cpu      ${cpu:-unknown} x $(nproc) (nproc)"
say "memory   $mem"
say "kernel   $(uname -sr)"
say "commit   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
say "date     $(date -u '+%F %T UTC')"
say "tuning   TOKIO_WORKER_THREADS=$WORKER_THREADS DB_MAX_CONNECTIONS=$DB_CONNECTIONS PG_UNIX_SOCKET=1 postgres: $PG_OPTS"

env SAGA_STATE_DIR="$STATE" \
  GATEWAY_PORT=28080 PG_PORT=28432 REDIS_PORT=28379 AUTH_PORT=28001 BILLING_PORT=28002 \
  ORDER_PORT=28003 MEDIATOR_PORT=28004 ITEMS_PORT=28005 SLOTS_PORT=28006 \
  ITEM_STOCK=100000000 SLOT_CAPACITY=100000000 RUST_LOG="$SERVICE_LOG" \
  TOKIO_WORKER_THREADS="$WORKER_THREADS" PG_UNIX_SOCKET=1 DB_MAX_CONNECTIONS="$DB_CONNECTIONS" \
  PG_EXTRA_OPTS="$PG_OPTS" \
  "$BIN_DIR/shop" run --background --free-ports
base_url="$(sed -n 's/^BASE_URL=//p' "$STATE/env")"

bench() { # TITLE LOADGEN-ARGS...
  local title="$1"; shift
  say ""
  say "== $title =="
  say "loadgen $*"
  # progress lines go to the terminal only; the summary and RESULT line to the terminal and $OUT
  TOKIO_WORKER_THREADS="$WORKER_THREADS" "$BIN_DIR/loadgen" --base-url "$base_url" --users "$USERS" --mix "$MIX" --duration "$DURATION" "$@" \
    | tee -a "$OUT"
}

bench "(a) maximum throughput: $CONCURRENCY orders in flight for $DURATION" --concurrency "$CONCURRENCY"
bench "(b) latency at a fixed $RATE orders/s for $DURATION" --rate "$RATE"

say ""
say "== RESULT lines =="
results="$(grep '^RESULT ' "$OUT" | sed 's/^RESULT //')"
say "$results"
log "saved in ${OUT#"$SAGA_REPO_ROOT"/}; stopping the stack"
