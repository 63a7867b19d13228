#!/usr/bin/env bash
# scripts/test.sh — `make test` (and CI): installs what the checks need, builds the tests and every
# binary once, then hands over to `shop test` (tools/src/checks.rs), which runs the checks in
# order, failing fast — fmt, clippy, nextest (private PostgreSQL + Redis), lint-deploy, e2e (the
# whole stack behind its gateway), newman, browser (Chromium), fuzz (schemathesis), chaos --short —
# and prints a summary.
#
# Environment (read by `shop test`, see `target/debug/shop test --help`):
#   TEST_SKIP    steps to skip, e.g. TEST_SKIP="chaos newman" (local iterations; with CI set, as
#                .ci/run sets it, a skipped step fails the run)
#   E2E_PROFILE  debug (default: the binaries this build made) or release — the cargo profile of
#                the e2e stack and of chaos. `make run` and `make bench` always use release.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SAGA_REPO_ROOT"

# The packages (with the browser step's Chromium, the slowest) install while the build runs: the
# build needs none of them.
ensure_packages chromium &
installing=$!
if ! cargo nextest --version >/dev/null 2>&1; then
  log "cargo-nextest missing: cargo install cargo-nextest --locked"
  cargo install cargo-nextest --locked
fi
started=$SECONDS
log "cargo nextest run --workspace --no-run (the tests, and every binary the checks start)"
cargo nextest run --workspace --no-run
log "built in $((SECONDS - started)) s"
if ! wait "$installing"; then
  err "installing the packages failed (see above)"
  exit 1
fi
ensure_packages # all there now: only exports PG_BIN
exec "$(bin_dir debug)/shop" test "$@"
