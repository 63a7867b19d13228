#!/usr/bin/env bash
# Lint the deployment files, offline once the linters are installed:
#   * kubernetes-validate --strict deploy-services.yml (schemas bundled in the package)
#   * no Secret in deploy-services.yml (the install Job creates shop-secrets)
#   * hadolint Dockerfile (no warning of any severity)
#   * scripts/check_routes.py (Ingress paths == local gateway locations, no /internal/)
# The linters live in .state/venv, installed from deploy/requirements-lint.txt (PyPI).
#
# Env: K8S_VERSIONS   Kubernetes versions to validate against (default "1.30.0 1.37.0":
#                     the oldest and newest we care about; must be bundled, 1.25 .. 1.37)
#      PYTHON         interpreter for the venv (default python3)
#      GATEWAY_CONF   nginx gateway config to compare with (default
#                     deploy/gateway.nginx.conf.template)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.state/venv
REQS=deploy/requirements-lint.txt
STAMP="$VENV/.requirements-lint.sha256"
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}

want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "lint-deploy: creating $VENV"
    mkdir -p .state
    "${PYTHON:-python3}" -m venv "$VENV"
fi
if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]]; then
    echo "lint-deploy: installing $REQS"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    echo "$want" > "$STAMP"
fi

echo "== kubernetes-validate --strict deploy-services.yml (${K8S_VERSIONS})"
for v in $K8S_VERSIONS; do
    "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$v" deploy-services.yml
done
echo "ok"

echo "== no kind: Secret in deploy-services.yml"
if grep -nE '^kind:[[:space:]]*"?Secret"?[[:space:]]*$' deploy-services.yml; then
    echo "lint-deploy: deploy-services.yml must hold no Secret (the Job shop-secrets-init creates it)" >&2
    exit 1
fi
echo "ok"

echo "== hadolint Dockerfile"
"$VENV/bin/hadolint" --failure-threshold style Dockerfile
echo "ok"

echo "== check_routes.py"
"$VENV/bin/python" scripts/check_routes.py --gateway "${GATEWAY_CONF:-deploy/gateway.nginx.conf.template}"

echo "lint-deploy: all checks passed"
