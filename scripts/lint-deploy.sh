#!/usr/bin/env bash
# Lint the deployment files, offline once the linters are installed:
#   * kubernetes-validate --strict deploy-services.yml (schemas bundled in the package)
#   * deploy/kind-cluster.yaml keeps what the README's kind install relies on
#   * no Secret in deploy-services.yml (the install Job creates shop-secrets)
#   * hadolint Dockerfile (no warning of any severity)
# (The Ingress routes are checked where the local gateway is rendered from them: tools/src/gateway.rs.)
# The linters live in .state/venv, installed from deploy/requirements-lint.txt (PyPI).
#
# Env: K8S_VERSIONS   Kubernetes versions to validate against (default "1.30.0 1.37.0":
#                     the oldest and newest we care about; must be bundled, 1.25 .. 1.37)
#      PYTHON         interpreter for the venv (default python3)
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

echo "== deploy/kind-cluster.yaml"
"$VENV/bin/python" - deploy/kind-cluster.yaml <<'PY'
import sys, yaml
path = sys.argv[1]
c = yaml.safe_load(open(path))
errors = []
if (c.get("kind"), c.get("apiVersion")) != ("Cluster", "kind.x-k8s.io/v1alpha4"):
    errors.append("not a kind.x-k8s.io/v1alpha4 Cluster")
if (c.get("networking") or {}).get("disableDefaultCNI") is not True:
    errors.append("networking.disableDefaultCNI is not true (Calico replaces kindnet)")
nodes = c.get("nodes") or []
cp = [n for n in nodes if n.get("role") == "control-plane"]
if len(nodes) != 1 or len(cp) != 1:
    errors.append("not exactly one node, a control-plane (the controller's hostPorts must be the mapped ones)")
for n in cp:
    labels = [
        yaml.safe_load(p).get("nodeRegistration", {}).get("kubeletExtraArgs", {}).get("node-labels", "")
        for p in n.get("kubeadmConfigPatches") or []
        if yaml.safe_load(p).get("kind") == "InitConfiguration"
    ]
    if not any("ingress-ready=true" in l.split(",") for l in labels):
        errors.append("control-plane node not labelled ingress-ready=true")
    mapped = {(m.get("containerPort"), m.get("hostPort")) for m in n.get("extraPortMappings") or []}
    for port in (80, 443):
        if (port, port) not in mapped:
            errors.append(f"port {port} not mapped to host port {port}")
for e in errors:
    print(f"{path}: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
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

echo "lint-deploy: all checks passed"
