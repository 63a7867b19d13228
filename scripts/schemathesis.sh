#!/usr/bin/env bash
# schemathesis (pinned with its dependencies in deploy/requirements-fuzz.txt), installed from PyPI
# into .state/venv-fuzz on first use or when the pins change; the arguments go to its `st`.
# `shop fuzz` (make fuzz, the fuzz step of make test) calls this.
#
#   scripts/schemathesis.sh run http://127.0.0.1:8080/api/openapi.json ...
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.state/venv-fuzz
REQS=deploy/requirements-fuzz.txt
STAMP="$VENV/.requirements-fuzz.sha256"

want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "schemathesis: creating $VENV" >&2
    mkdir -p .state
    "${PYTHON:-python3}" -m venv "$VENV"
fi
if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]]; then
    echo "schemathesis: installing $REQS" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    echo "$want" > "$STAMP"
fi
exec "$VENV/bin/st" "$@"
