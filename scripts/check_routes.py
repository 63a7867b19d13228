#!/usr/bin/env python3
"""Check that the Kubernetes Ingress and the local nginx gateway route the same paths.

Compares
  * deploy-services.yml: the Ingress rules, as {path prefix -> backend Service}, and
  * deploy/gateway.nginx.conf.template: the `location` blocks that proxy_pass, as
    {path prefix -> upstream}, with `location = /api/x` and `location /api/x/` both
    counted as the prefix `/api/x`,
and fails (exit 1, with a diff) unless both sets are equal. It also fails if either
routes anything under /internal/ (or /health/, /metrics), e.g. through a catch-all
`location /` or Ingress path `/`, or routes outside /api/. Where the gateway config lists
its routes in `# public-route: <prefix> <service>` comment lines, those must agree too.

Upstream names are matched to services tolerantly: `order`, `order_upstream`,
`${ORDER_UPSTREAM}`, `orders_api` all mean the service `order`; failing that, an
upstream or proxy_pass target whose port is a service's local port
(docs/ARCHITECTURE.md: 8001 auth ... 8006 slots) names that service.

Usage: scripts/check_routes.py [--manifest FILE] [--gateway FILE]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - only without the lint venv
    sys.exit("check_routes.py: PyYAML is missing (run scripts/lint-deploy.sh, which installs it)")

ROOT = Path(__file__).resolve().parent.parent

SERVICES = ("auth", "billing", "order", "mediator", "items", "slots")
# Other spellings that may appear in upstream names.
ALIASES = {"orders": "order"}
# Local ports from docs/ARCHITECTURE.md.
LOCAL_PORTS = {8001: "auth", 8002: "billing", 8003: "order", 8004: "mediator", 8005: "items", 8006: "slots"}
# Paths that must never be reachable from outside.
FORBIDDEN = ("/internal", "/health", "/metrics")
PUBLIC_ROOT = "/api"


def norm(path: str) -> str:
    """`/api/orders/` and `/api/orders` are the same prefix."""
    path = path.strip()
    if len(path) > 1:
        path = path.rstrip("/")
    return path or "/"


def covers(prefix: str, path: str) -> bool:
    """Whether the routed prefix would match `path` (element-wise, like Ingress Prefix)."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


# --------------------------------------------------------------------------- Ingress


def ingress_routes(manifest: Path, errors: list[str]) -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    found = False
    with manifest.open(encoding="utf-8") as fh:
        for doc in yaml.safe_load_all(fh):
            if not isinstance(doc, dict) or doc.get("kind") != "Ingress":
                continue
            found = True
            name = (doc.get("metadata") or {}).get("name", "?")
            spec = doc.get("spec") or {}
            if spec.get("defaultBackend"):
                errors.append(f"Ingress {name}: has a defaultBackend (routes every path)")
            for rule in spec.get("rules") or []:
                for p in (rule.get("http") or {}).get("paths") or []:
                    path = p.get("path", "/")
                    svc = ((p.get("backend") or {}).get("service") or {}).get("name")
                    if not svc:
                        errors.append(f"Ingress {name}: path {path} has no service backend")
                        continue
                    if p.get("pathType") == "ImplementationSpecific":
                        errors.append(
                            f"Ingress {name}: path {path} uses pathType ImplementationSpecific "
                            "(may be a regex): use Prefix or Exact"
                        )
                    routes.add((norm(path), svc))
    if not found:
        errors.append(f"{manifest}: no Ingress found")
    return routes


# --------------------------------------------------------------------------- nginx

LOCATION_RE = re.compile(r"\blocation\s+(?:(=|\^~|~\*|~)\s*)?(\"[^\"]*\"|'[^']*'|[^\s{]+)\s*\{")
UPSTREAM_RE = re.compile(r"\bupstream\s+([^\s{]+)\s*\{")
SERVER_RE = re.compile(r"\bserver\s+([^\s;]+)")
PROXY_PASS_RE = re.compile(r"\bproxy_pass\s+([^;]+);")


def strip_comments(text: str) -> str:
    # nginx comments start with # outside quotes; `${VAR}` placeholders contain no '#'.
    return "\n".join(re.sub(r"(^|\s)#.*$", r"\1", line) for line in text.splitlines())


def _unquoted(text: str, start: int):
    """Yield (index, char) from start; braces in quoted strings and in `${VAR}` don't count."""
    quote = None
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
            yield i, " "
        elif ch in "\"'":
            quote = ch
            yield i, " "
        elif ch == "$" and text.startswith("{", i + 1):
            # `${VAR}`: a variable (or an envsubst placeholder), not a block
            end = text.find("}", i)
            end = len(text) - 1 if end < 0 else end
            for j in range(i, end + 1):
                yield j, "v"
            i = end + 1
            continue
        else:
            yield i, ch
        i += 1


def block_body(text: str, open_brace: int) -> str:
    """Text between the `{` at open_brace and its matching `}` (nested blocks included)."""
    depth = 0
    for i, ch in _unquoted(text, open_brace):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : i]
    return text[open_brace + 1 :]


def own_directives(body: str) -> str:
    """The body without its nested blocks: a proxy_pass in a nested location is its own."""
    out, depth = [], 0
    for i, ch in _unquoted(body, 0):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(body[i])
    return "".join(out)


def service_of(target: str, upstream_ports: dict[str, list[int]]) -> str | None:
    """Map a proxy_pass target (`http://order`, `http://${ORDER_UPSTREAM}/`, ...) to a service."""
    host = re.sub(r"^[a-z]+://", "", target.strip().strip("\"'"))
    host = re.split(r"[/?]", host, maxsplit=1)[0]
    name = re.sub(r"[${}]", "", host)
    bare = name.split(":")[0].lower()
    words = [ALIASES.get(w, w) for w in re.split(r"[^a-z0-9]+", bare) if w]
    hits = {w for w in words if w in SERVICES}
    if len(hits) == 1:
        return hits.pop()
    ports = list(upstream_ports.get(bare, []))
    m = re.search(r":(\d+)$", name)
    if m:
        ports.append(int(m.group(1)))
    named = {LOCAL_PORTS[p] for p in ports if p in LOCAL_PORTS}
    if len(named) == 1:
        return named.pop()
    return None


PUBLIC_ROUTE_RE = re.compile(r"^\s*#\s*public-route:\s*(\S+)\s+(\S+)\s*$", re.MULTILINE)


def declared_routes(conf: Path) -> set[tuple[str, str]]:
    """The optional `# public-route: <prefix> <service>` comment lines of the gateway config."""
    text = conf.read_text(encoding="utf-8")
    return {(norm(p), ALIASES.get(s, s)) for p, s in PUBLIC_ROUTE_RE.findall(text)}


def gateway_routes(conf: Path, errors: list[str]) -> set[tuple[str, str]]:
    text = strip_comments(conf.read_text(encoding="utf-8"))

    upstream_ports: dict[str, list[int]] = {}
    for m in UPSTREAM_RE.finditer(text):
        body = block_body(text, m.end() - 1)
        ports = []
        for s in SERVER_RE.finditer(body):
            pm = re.search(r":(\d+)$", s.group(1))
            if pm:
                ports.append(int(pm.group(1)))
        upstream_ports[re.sub(r"[${}]", "", m.group(1)).lower()] = ports

    routes: set[tuple[str, str]] = set()
    per_prefix: dict[str, set[str]] = {}
    forms: dict[str, set[str]] = {}
    for m in LOCATION_RE.finditer(text):
        modifier, raw = m.group(1) or "", m.group(2).strip("\"'")
        directives = own_directives(block_body(text, m.end() - 1))
        pp = PROXY_PASS_RE.search(directives)
        if not pp:
            continue  # return 404, a named location, ... : routes nothing
        target = pp.group(1).strip()
        if modifier in ("~", "~*"):
            errors.append(
                f"gateway: regex location `{modifier} {raw}` proxies to {target}: "
                "can't be compared with the Ingress, use `location = /x` + `location /x/`"
            )
            continue
        if raw.startswith("@"):
            continue  # named location: only reachable via error_page/try_files
        svc = service_of(target, upstream_ports)
        if svc is None:
            errors.append(f"gateway: location {raw}: can't tell which service `proxy_pass {target}` is")
            continue
        prefix = norm(raw)
        if modifier == "=":
            form = "exact"
        elif raw.endswith("/") or prefix == "/":
            form = "subtree"
        else:
            form = "bare"
        forms.setdefault(prefix, set()).add(form)
        per_prefix.setdefault(prefix, set()).add(svc)
        routes.add((prefix, svc))
    for prefix, svcs in sorted(per_prefix.items()):
        if len(svcs) > 1:
            errors.append(f"gateway: {prefix} and {prefix}/ go to different services: {sorted(svcs)}")
    # Ingress `Prefix` /x matches /x and /x/..., never /xY: in nginx that is exactly the pair
    # `location = /x` + `location /x/`.
    for prefix, seen in sorted(forms.items()):
        if prefix == "/":
            continue  # reported by check_exposure
        if "bare" in seen:
            errors.append(
                f"gateway: `location {prefix}` also matches {prefix}X...; "
                f"use `location = {prefix}` + `location {prefix}/` (Ingress Prefix semantics)"
            )
        for form, loc in (("exact", f"location = {prefix}"), ("subtree", f"location {prefix}/")):
            if form not in seen and "bare" not in seen:
                errors.append(f"gateway: {prefix} is routed but `{loc}` is missing (Ingress Prefix covers both)")
    if not routes:
        errors.append(f"{conf}: no `location ... {{ proxy_pass ...; }}` found")
    return routes


# --------------------------------------------------------------------------- main


def check_exposure(label: str, routes: set[tuple[str, str]], errors: list[str]) -> None:
    for prefix, svc in sorted(routes):
        for bad in FORBIDDEN:
            if covers(prefix, bad) or covers(bad, prefix) or bad[1:] in prefix.split("/"):
                errors.append(f"{label}: {prefix} -> {svc} routes {bad}/ (must never be public)")
        if not covers(PUBLIC_ROOT, prefix):
            errors.append(f"{label}: {prefix} -> {svc} is outside {PUBLIC_ROOT}/")
        if svc == "mediator":
            errors.append(f"{label}: {prefix} -> mediator (the mediator has no public API)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=ROOT / "deploy-services.yml")
    ap.add_argument("--gateway", type=Path, default=ROOT / "deploy" / "gateway.nginx.conf.template")
    args = ap.parse_args()

    errors: list[str] = []
    for f in (args.manifest, args.gateway):
        if not f.is_file():
            print(f"check_routes: FAIL: {f} not found", file=sys.stderr)
            return 1

    ing = ingress_routes(args.manifest, errors)
    gw = gateway_routes(args.gateway, errors)
    check_exposure("Ingress", ing, errors)
    check_exposure("gateway", gw, errors)

    only_ing, only_gw = sorted(ing - gw), sorted(gw - ing)
    if only_ing or only_gw:
        errors.append(f"routes differ between {args.manifest.name} (Ingress) and {args.gateway.name} (locations):")
        errors.extend(f"  - only in Ingress: {p} -> {s}" for p, s in only_ing)
        errors.extend(f"  + only in gateway: {p} -> {s}" for p, s in only_gw)

    # The gateway's `# public-route:` lines, where it has them, must say the same.
    declared = declared_routes(args.gateway)
    if declared and declared != gw:
        errors.append(f"{args.gateway.name}: `# public-route:` lines differ from its locations:")
        errors.extend(f"  - only in public-route lines: {p} -> {s}" for p, s in sorted(declared - gw))
        errors.extend(f"  + only in locations: {p} -> {s}" for p, s in sorted(gw - declared))

    if errors:
        print("check_routes: FAIL", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    print(f"check_routes: OK, {len(ing)} public routes agree:")
    for p, s in sorted(ing):
        print(f"  {p} -> {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
