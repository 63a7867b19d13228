#!/usr/bin/env bash
# scripts/bench.sh — `make bench`: throughput and latency of the whole shop, through the gateway.
# Installs the packages, builds the release binaries, then `shop bench` (tools/src/bench.rs)
# records the machine, starts a release stack tuned for this machine under .state/bench, measures
# its floor (pgbench, tools/src/floor.pgbench), runs rounds of floor, (a) maximum throughput and
# (b) latency at a fixed rate, prints every run and the RESULT lines of the medians (also in
# .state/bench-last.txt) and stops the stack.
#
# Settings (BENCH_RUNS, BENCH_CONCURRENCY, BENCH_RATE, BENCH_DURATION, BENCH_USERS, BENCH_MIX,
# BENCH_BATCH, BENCH_PROFILE, BENCH_TWO_REQUESTS, BENCH_WORKER_THREADS, BENCH_DB_CONNECTIONS,
# BENCH_PG_OPTS, RUST_LOG):
# `shop bench --help`.
# SKIP_BUILD=1 uses the release binaries already built.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROFILE=release exec_shop bench "$@"
