#!/usr/bin/env bash
# Run the Postman collection (postman/saga-shop.postman_collection.json) with newman,
# twice in a row against the same stack: the collection must pass on repeated runs.
#
#   BASE_URL=http://arch.homework scripts/newman.sh      # default: http://127.0.0.1:8080
#   NEWMAN_RUNS=1 scripts/newman.sh --verbose             # extra args go to `newman run`
#
# Exits non-zero on any failed assertion or request error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_URL="${BASE_URL:-http://127.0.0.1:8080}"
RUNS="${NEWMAN_RUNS:-2}"

cd "$ROOT/postman"

# (Re)install newman only when node_modules is missing or older than the manifests.
# npm ci writes node_modules/.package-lock.json after a successful install.
if [[ ! -x node_modules/.bin/newman || ! -f node_modules/.package-lock.json \
      || package-lock.json -nt node_modules/.package-lock.json \
      || package.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi

for ((run = 1; run <= RUNS; run++)); do
  echo "=== newman run ${run}/${RUNS} against ${BASE_URL} ==="
  node_modules/.bin/newman run saga-shop.postman_collection.json \
    --env-var "baseUrl=${BASE_URL}" \
    --reporters cli \
    --timeout-request 15000 \
    "$@"
done
echo "=== newman: ${RUNS} run(s) passed against ${BASE_URL} ==="
