#!/usr/bin/env bash
# scripts/bench.sh — `make bench`: throughput and latency of the whole shop, through the gateway.
# Installs the packages, builds the release binaries, then `shop bench` (tools/src/bench.rs)
# records the machine, starts a release stack tuned for this machine under .state/bench, runs
# loadgen twice — (a) maximum throughput, (b) latency at a fixed rate — prints the summaries and
# RESULT lines (also in .state/bench-last.txt) and stops the stack.
#
# Settings (BENCH_CONCURRENCY, BENCH_RATE, BENCH_DURATION, BENCH_USERS, BENCH_MIX,
# BENCH_WORKER_THREADS, BENCH_DB_CONNECTIONS, BENCH_PG_OPTS, RUST_LOG): `shop bench --help`.
# SKIP_BUILD=1 uses the release binaries already built.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROFILE=release exec_shop bench "$@"
