#!/usr/bin/env python3
"""scripts/login-flood.py — a login flood against a running stack, and what it did to auth.

Sends TOTAL logins (POST /api/token/) for unknown users, CONCURRENCY at a time, to BASE (the
gateway, or auth's own port), while sampling auth's resident memory (VmRSS of /proc/<pid>/status)
every 50 ms; then a normal sign-up + login, retried on 429/503 for at most 2 s; then samples the
RSS for AFTER more seconds. Prints a summary and a JSON RESULT line, and exits 1 unless:
every answer is 401, 429 or 503 with a JSON body {"error": ..., "detail": ...}, the 503s are
`overloaded`/`unavailable` with Retry-After, the sign-up + login succeeded within 2 s, and the
RSS stayed below --max-rss-mib.

  scripts/login-flood.py --base http://127.0.0.1:28080 --state-dir .state/run
  scripts/login-flood.py --base http://127.0.0.1:28001 --auth-pid 12345

The auth pid is found from <state-dir>/env: the child named auth of its SUPERVISOR_PID (`shop run`).
Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def auth_pid_of(state_dir: Path) -> int:
    """The process named auth among the children of the stack's supervisor."""
    env = dict(
        line.split("=", 1) for line in (state_dir / "env").read_text().splitlines() if "=" in line
    )
    supervisor = env["SUPERVISOR_PID"]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(") ", 1)
        except OSError:
            continue
        if head.split(" (", 1)[1] == "auth" and rest.split()[1] == supervisor:
            return int(stat.parent.name)
    raise SystemExit(f"no auth process under the supervisor {supervisor} of {state_dir}")


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """VmRSS of `pid` every 50 ms, with the phase it was taken in."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.phase = "before"
        self.samples: list[tuple[str, float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            mib = rss_mib(self.pid)
            if mib is not None:
                self.samples.append((self.phase, time.monotonic(), mib))
            self.stop.wait(0.05)

    def peak(self, phase: str | None = None) -> float:
        values = [m for p, _, m in self.samples if phase is None or p == phase]
        return max(values, default=0.0)

    def last(self) -> float:
        return self.samples[-1][2] if self.samples else 0.0


def post(base: str, path: str, body: dict, timeout: float = 30.0) -> tuple[int, dict | None, dict]:
    """(status, JSON body or None if not JSON, headers)."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        base + path, data=data, method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw, headers = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), dict(e.headers)
    except (urllib.error.URLError, OSError) as e:
        return -1, {"transport_error": str(e)}, {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return status, parsed, {k.lower(): v for k, v in headers.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="gateway or auth base URL")
    ap.add_argument("--state-dir", help="stack state dir (reads its env: the supervisor's auth child)")
    ap.add_argument("--auth-pid", type=int, help="auth's pid (instead of --state-dir)")
    ap.add_argument("--total", type=int, default=1024)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--after", type=float, default=10.0, help="seconds of RSS sampling after the flood")
    ap.add_argument("--max-rss-mib", type=float, default=200.0)
    args = ap.parse_args()

    pid = args.auth_pid
    if pid is None:
        if not args.state_dir:
            ap.error("give --state-dir or --auth-pid")
        pid = auth_pid_of(Path(args.state_dir))
    base = args.base.rstrip("/")
    run_id = f"{int(time.time())}"

    sampler = Sampler(pid)
    sampler.start()
    time.sleep(0.3)
    baseline = sampler.last()

    sampler.phase = "flood"
    started = time.monotonic()
    credentials = [{"username": f"flood{run_id}n{i}", "password": "wrong-pass-1"} for i in range(args.total)]
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        answers = list(pool.map(lambda c: post(base, "/api/token/", c), credentials))
    flood_s = time.monotonic() - started

    # A normal user right after: sign-up then login, retried on 429/503 within 2 s.
    sampler.phase = "after"
    user = f"normal{run_id}"
    t0 = time.monotonic()
    attempts = 0
    normal_ok = False
    steps = [
        ("/api/auth/users/", {"username": user, "password": "secret-pass-1", "email": f"{user}@example.com"}, (201, 409)),
        ("/api/token/", {"username": user, "password": "secret-pass-1"}, (200,)),
    ]
    step = 0
    while time.monotonic() - t0 < 2.0 and step < len(steps):
        path, body, ok = steps[step]
        attempts += 1
        status, _, _ = post(base, path, body, timeout=2.0)
        if status in ok:
            step += 1
        elif status in (429, 503):
            time.sleep(0.1)
        else:
            break
    normal_s = time.monotonic() - t0
    normal_ok = step == len(steps) and normal_s <= 2.0

    time.sleep(args.after)
    sampler.stop.set()
    sampler.join()

    statuses = Counter(s for s, _, _ in answers)
    codes = Counter((s, (b or {}).get("error")) for s, b, _ in answers)
    bad = []
    for status, body, headers in answers:
        if status not in (401, 429, 503):
            bad.append(f"status {status}: {body}")
        elif not isinstance(body, dict) or "error" not in body or "detail" not in body:
            bad.append(f"status {status}: not a JSON error body")
        elif status == 503 and ("retry-after" not in headers or body["error"] not in ("overloaded", "unavailable")):
            bad.append(f"503 without Retry-After or with code {body['error']}")
    rss = {
        "baseline": round(baseline, 1),
        "peak_flood": round(sampler.peak("flood"), 1),
        "peak_after": round(sampler.peak("after"), 1),
        "end": round(sampler.last(), 1),
    }
    result = {
        "base": base,
        "total": args.total,
        "concurrency": args.concurrency,
        "flood_s": round(flood_s, 2),
        "answers": {f"{s} {c}": n for (s, c), n in sorted(codes.items(), key=str)},
        "bad_answers": len(bad),
        "rss_mib": rss,
        "normal_signup_login_s": round(normal_s, 3),
        "normal_attempts": attempts,
        "normal_ok": normal_ok,
    }
    print(f"login flood: {args.total} logins, {args.concurrency} at a time, against {base}: {flood_s:.1f} s")
    for (status, code), n in sorted(codes.items(), key=str):
        print(f"  {status} {code}: {n}")
    for line in bad[:10]:
        print(f"  BAD: {line}")
    print(f"auth RSS (MiB): before {rss['baseline']}, peak during {rss['peak_flood']}, "
          f"peak after {rss['peak_after']}, {args.after:.0f} s after {rss['end']}")
    print(f"normal sign-up + login after the flood: {'OK' if normal_ok else 'FAILED'} in {normal_s:.3f} s ({attempts} requests)")
    print("RESULT " + json.dumps(result, sort_keys=True))
    ok = not bad and normal_ok and max(rss["peak_flood"], rss["peak_after"]) < args.max_rss_mib
    ok = ok and sum(statuses.values()) == args.total
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
