#!/usr/bin/env bash
# scripts/test.sh — `make test` (and CI): every check, in order, failing fast.
#
#   1. packages     ensure_packages (postgresql, redis-server, nginx)
#   2. fmt          cargo fmt --all -- --check
#   3. clippy       cargo clippy --workspace --all-targets -- -D warnings
#   4. stores       builds the tests and binaries (cargo nextest run --no-run), then a private
#                   PostgreSQL + Redis for the tests under .state/test (`shop run --stores-only`,
#                   ports 19432/19379, a busy one replaced by a free one):
#                   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:<port>/postgres
#                   TEST_REDIS_URL=redis://127.0.0.1:<port>
#   5. nextest      cargo nextest run --workspace --no-fail-fast
#   6. lint-deploy  scripts/lint-deploy.sh, if present
#   7. e2e-stack    the full stack in the background (`shop run --background`), state in
#                   .state/e2e, on non-default ports (18080, 18001-18006, 18432, 18379; a busy one
#                   is replaced by a free port), plus a curl smoke test through the gateway
#   8. newman       scripts/newman.sh with BASE_URL, if present
#   9. chaos        scripts/chaos.sh --short, if present (it starts its own stack; ours is stopped first)
#
# Environment: E2E_PROFILE debug (default: reuses what nextest built, much faster on 2 cores) or
# release — the cargo profile of the e2e stack. `make run` and `make bench` always use release.
#              TEST_SKIP   space-separated step names to skip, e.g. TEST_SKIP="chaos newman"
#                          (for local iterations). With CI set (.ci/run sets it), any skipped
#                          step — by TEST_SKIP or a missing script — fails the run.
# Everything test.sh started is stopped on exit, failure or Ctrl-C included.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SAGA_REPO_ROOT"

TEST_STATE="$SAGA_REPO_ROOT/.state/test"
E2E_STATE="$SAGA_REPO_ROOT/.state/e2e"
E2E_PROFILE="${E2E_PROFILE:-debug}"

# ---- step bookkeeping ------------------------------------------------------------------------
if [[ -t 1 ]]; then B=$'\033[1m' R=$'\033[1;31m' G=$'\033[1;32m' N=$'\033[0m'; else B="" R="" G="" N=""; fi
STEP_NAMES=()
STEP_RESULTS=()
STEP_TIMES=()
CURRENT_STEP=""
STEP_START=0
TOTAL_START=$SECONDS
E2E_STARTED=0
STORES_STARTED=0

skipped() { [[ " ${TEST_SKIP:-} " == *" $1 "* ]]; }
step_begin() {
  CURRENT_STEP="$1"; STEP_START=$SECONDS
  printf '\n%s======== [%s] %s ========%s\n' "$B" "$1" "$2" "$N"
}
step_end() { # RESULT (PASS|SKIP)
  STEP_NAMES+=("$CURRENT_STEP"); STEP_RESULTS+=("$1"); STEP_TIMES+=($((SECONDS - STEP_START)))
  CURRENT_STEP=""
}
step_skip() { # NAME WHY
  printf '\n%s======== [%s] skipped: %s ========%s\n' "$B" "$1" "$2" "$N"
  if [[ -n "${CI:-}" ]]; then
    # A green CI run must mean every kind of check ran.
    err "CI=$CI: no step may be skipped, but [$1] was ($2)"
    STEP_NAMES+=("$1"); STEP_RESULTS+=("FAIL"); STEP_TIMES+=(0)
    exit 1
  fi
  STEP_NAMES+=("$1"); STEP_RESULTS+=("SKIP"); STEP_TIMES+=(0)
}

summary() {
  local rc="$1" i passed=0 failed=0 skipped=0
  printf '\n%s======== summary ========%s\n' "$B" "$N"
  for i in "${!STEP_NAMES[@]}"; do
    printf '  %-12s %-4s %5ss\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "${STEP_TIMES[$i]}"
    case "${STEP_RESULTS[$i]}" in PASS) passed=$((passed + 1)) ;; SKIP) skipped=$((skipped + 1)) ;; esac
  done
  if [[ -n "$CURRENT_STEP" ]]; then
    printf '  %-12s %-4s %5ss\n' "$CURRENT_STEP" FAIL $((SECONDS - STEP_START))
    failed=1
  elif (( rc != 0 )); then
    failed=1
  fi
  printf '  total %ss\n' $((SECONDS - TOTAL_START))
  if (( failed )); then
    printf '%smake test FAILED%s (exit %s)%s\n' "$R" "${CURRENT_STEP:+ at step $CURRENT_STEP}" "$rc" "$N"
  else
    printf '%smake test passed%s\n' "$G" "$N"
  fi
  printf 'steps: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if (( E2E_STARTED )); then shop "$E2E_PROFILE" stop --state-dir "$E2E_STATE" >/dev/null 2>&1; fi
  if (( STORES_STARTED )); then shop debug stop --state-dir "$TEST_STATE" >/dev/null 2>&1; fi
  (( rc == 0 )) && [[ -n "$CURRENT_STEP" ]] && rc=1
  summary "$rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1-3: packages, format, lints ------------------------------------------------------------
step_begin packages "ensure postgresql, redis-server, nginx"
ensure_packages
echo "PostgreSQL: $PG_BIN; $(redis-server --version | cut -d' ' -f1-3); $(nginx -v 2>&1)"
step_end PASS

if skipped fmt; then step_skip fmt "TEST_SKIP"; else
  step_begin fmt "cargo fmt --all -- --check"
  cargo fmt --all -- --check
  step_end PASS
fi

if skipped clippy; then step_skip clippy "TEST_SKIP"; else
  step_begin clippy "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
  step_end PASS
fi

# ---- 4-5: unit and integration tests against private stores ----------------------------------
if skipped nextest; then step_skip stores "TEST_SKIP nextest"; step_skip nextest "TEST_SKIP"; else
  step_begin stores "build the tests; private PostgreSQL + Redis for them (.state/test)"
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest missing: cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked
  fi
  # The tests and every binary (shop among them), built once for the steps that follow.
  cargo nextest run --workspace --no-run
  shop debug stop --state-dir "$TEST_STATE" --purge   # leftovers: start from a fresh cluster
  STORES_STARTED=1
  SAGA_STATE_DIR="$TEST_STATE" PG_PORT=19432 REDIS_PORT=19379 \
    shop debug run --stores-only --free-ports --background
  TEST_DATABASE_URL="$(sed -n 's/^PG_URL=//p' "$TEST_STATE/env")/postgres"
  TEST_REDIS_URL="$(sed -n 's/^REDIS_URL=//p' "$TEST_STATE/env")"
  export TEST_DATABASE_URL TEST_REDIS_URL
  echo "TEST_DATABASE_URL=$TEST_DATABASE_URL"
  echo "TEST_REDIS_URL=$TEST_REDIS_URL"
  step_end PASS

  step_begin nextest "cargo nextest run --workspace --no-fail-fast"
  cargo nextest run --workspace --no-fail-fast
  step_end PASS

  shop debug stop --state-dir "$TEST_STATE"
  STORES_STARTED=0
  unset TEST_DATABASE_URL TEST_REDIS_URL
fi

# ---- 6: deployment lint ----------------------------------------------------------------------
if skipped lint-deploy; then step_skip lint-deploy "TEST_SKIP"
elif [[ ! -f scripts/lint-deploy.sh ]]; then step_skip lint-deploy "scripts/lint-deploy.sh not present"
else
  step_begin lint-deploy "scripts/lint-deploy.sh"
  bash scripts/lint-deploy.sh
  step_end PASS
fi

# ---- 7-8: end to end through the gateway -----------------------------------------------------
smoke_fail() { err "smoke: $*"; exit 1; }

if skipped e2e; then step_skip e2e-stack "TEST_SKIP e2e"; step_skip newman "TEST_SKIP e2e"; else
  step_begin e2e-stack "full stack in the background (.state/e2e, $E2E_PROFILE build)"
  build_bins "$E2E_PROFILE"    # debug: already built by the stores step
  shop "$E2E_PROFILE" stop --state-dir "$E2E_STATE" --purge   # leftovers; fresh databases
  E2E_STARTED=1
  env SAGA_STATE_DIR="$E2E_STATE" \
    GATEWAY_PORT=18080 PG_PORT=18432 REDIS_PORT=18379 AUTH_PORT=18001 BILLING_PORT=18002 \
    ORDER_PORT=18003 MEDIATOR_PORT=18004 ITEMS_PORT=18005 SLOTS_PORT=18006 \
    "$(bin_dir "$E2E_PROFILE")/shop" run --background --free-ports
  BASE_URL="$(sed -n 's/^BASE_URL=//p' "$E2E_STATE/env")"
  export BASE_URL
  echo "BASE_URL=$BASE_URL"

  # smoke: the gateway hides /internal/; sign-up -> token -> account works through it
  code="$(curl -s -o "$E2E_STATE/smoke.out" -w '%{http_code}' "$BASE_URL/internal/charges/x")"
  if [[ "$code" != 404 ]] || ! grep -q '"not_found"' "$E2E_STATE/smoke.out"; then
    smoke_fail "/internal/ through the gateway gave $code, want 404 not_found"
  fi
  user="smoke$(date +%s)$RANDOM"
  curl -fsS -X POST "$BASE_URL/api/auth/users/" -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"secret-pass-1\",\"email\":\"$user@example.com\"}" >/dev/null \
    || smoke_fail "sign-up failed"
  token="$(curl -fsS -X POST "$BASE_URL/api/token/" -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"secret-pass-1\"}" \
    | python3 -c 'import sys,json;print(json.load(sys.stdin)["access"])')" || smoke_fail "token failed"
  for i in 1 2 3 4 5 6 7 8 9 10; do   # the billing account may be created just after sign-up
    curl -fsS "$BASE_URL/api/accounts/$user" -H "Authorization: Bearer $token" >/dev/null 2>&1 && break
    (( i == 10 )) && smoke_fail "account read failed: $(curl -sS "$BASE_URL/api/accounts/$user" -H "Authorization: Bearer $token")"
    sleep 0.5
  done
  # (every Ingress route, with and without its trailing slash, against the services' own answers:
  # tools/tests/gateway.rs, in the nextest step)
  echo "smoke: /internal/ is a 404 at the gateway; sign-up -> token -> account OK"
  step_end PASS

  if skipped newman; then step_skip newman "TEST_SKIP"
  elif [[ ! -f scripts/newman.sh ]]; then step_skip newman "scripts/newman.sh not present"
  else
    step_begin newman "scripts/newman.sh (BASE_URL=$BASE_URL)"
    BASE_URL="$BASE_URL" bash scripts/newman.sh
    step_end PASS
  fi

  log "stopping the e2e stack"
  shop "$E2E_PROFILE" stop --state-dir "$E2E_STATE"
  E2E_STARTED=0
fi

# ---- 9: chaos --------------------------------------------------------------------------------
if skipped chaos; then step_skip chaos "TEST_SKIP"
elif [[ ! -f scripts/chaos.sh ]]; then step_skip chaos "scripts/chaos.sh not present"
else
  step_begin chaos "scripts/chaos.sh --short ($E2E_PROFILE build)"
  PROFILE="$E2E_PROFILE" bash scripts/chaos.sh --short
  step_end PASS
fi
