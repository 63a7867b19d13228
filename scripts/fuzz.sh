#!/usr/bin/env bash
# scripts/fuzz.sh — `make fuzz`: schemathesis against a release stack of its own, at least 10,000
# requests generated from /api/openapi.json (tools/src/fuzz.rs; `shop fuzz --help`).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec_shop fuzz "$@"
