# shellcheck shell=bash
# scripts/lib.sh — what the scripts share: installing the packages the local stack needs, and
# finding and building `shop`, the program that starts and stops it (tools/src/bin/shop.rs,
# tools/src/local.rs). Nothing here starts, watches or stops a process: `shop` does.
#
# Source it:   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It sets no shell options itself and is safe under `set -euo pipefail`; every function returns
# non-zero on failure (callers with `set -e` abort), after printing a clear message on stderr.
#
# Functions:
#   ensure_packages [PKG...] install postgresql/redis-server/nginx (and the Debian packages named)
#                            if missing; exports PG_BIN
#   build_bins PROFILE       cargo build --workspace --bins (release or debug), unless SKIP_BUILD=1
#   exec_shop ARGS...        ensure_packages, build_bins $PROFILE (release by default), then
#                            exec target/$PROFILE/shop ARGS (tools/src/bin/shop.rs)

SAGA_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SAGA_REPO_ROOT

log()  { printf '==> %s\n' "$*" >&2; }
err()  { printf 'error: %s\n' "$*" >&2; }

# ----------------------------------------------------------------------------------------------
# packages

# _find_pg_bin -> newest /usr/lib/postgresql/*/bin that has pg_ctl
_find_pg_bin() {
  local d best="" best_v=0 v
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/pg_ctl" && -x "$d/initdb" ]] || continue
    v="${d#/usr/lib/postgresql/}"; v="${v%%/*}"; v="${v%%.*}"
    [[ "$v" =~ ^[0-9]+$ ]] || continue
    if (( v > best_v )); then best_v=$v; best="$d"; fi
  done
  printf '%s' "$best"
}

# ensure_packages [PKG...] : install what the local stack needs, and the Debian packages named, if
# missing (apt-get update only then). Exports PG_BIN (newest PostgreSQL bin dir).
ensure_packages() {
  local -a pkgs=()
  local extra
  for extra in "$@"; do
    dpkg-query -W -f='${Status}' "$extra" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$extra")
  done
  [[ -n "$(_find_pg_bin)" ]] || pkgs+=(postgresql)
  command -v psql >/dev/null 2>&1 || [[ -n "$(_find_pg_bin)" ]] || pkgs+=(postgresql-client)
  command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || pkgs+=(nginx)
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
  command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
  command -v runuser >/dev/null 2>&1 || pkgs+=(util-linux)

  if (( ${#pkgs[@]} > 0 )); then
    if [[ $EUID -ne 0 ]]; then
      err "missing packages: ${pkgs[*]} (run as root, or: sudo apt-get install -y ${pkgs[*]})"
      return 1
    fi
    log "installing missing packages: ${pkgs[*]}"
    # Keep apt from starting system daemons (no systemd here anyway): a temporary policy-rc.d,
    # only if the machine has none of its own.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq || rc=$?
    if (( rc == 0 )); then
      apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${pkgs[@]}" </dev/null || rc=$?
    fi
    (( made_policy )) && rm -f /usr/sbin/policy-rc.d
    if (( rc != 0 )); then
      err "apt-get failed (exit $rc) installing: ${pkgs[*]}"
      return 1
    fi
  fi

  PG_BIN="$(_find_pg_bin)"
  if [[ -z "$PG_BIN" ]]; then
    err "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin after install"
    return 1
  fi
  export PG_BIN
  if ! command -v nginx >/dev/null 2>&1 && [[ -x /usr/sbin/nginx ]]; then
    PATH="$PATH:/usr/sbin"; export PATH
  fi
}

# ----------------------------------------------------------------------------------------------
# the shop program

# bin_dir PROFILE -> where cargo puts that profile's binaries
bin_dir() { printf '%s/%s' "${CARGO_TARGET_DIR:-$SAGA_REPO_ROOT/target}" "$1"; }

# build_bins PROFILE : the services, shop and the tools, unless SKIP_BUILD=1
build_bins() {
  case "$1" in
    release|debug) ;;
    *) err "PROFILE must be release or debug, not '$1'"; return 2 ;;
  esac
  [[ "${SKIP_BUILD:-0}" == 1 ]] && return 0
  log "cargo build --workspace --bins ($1)"
  local -a build=(cargo build --workspace --bins)
  [[ $1 == release ]] && build+=(--release)
  (cd "$SAGA_REPO_ROOT" && "${build[@]}")
}

# exec_shop ARGS... : installs, builds and becomes `shop ARGS` (tools/src/bin/shop.rs). exec: the
# supervisor gets Ctrl-C and SIGTERM itself (its own handlers), even when the calling script was
# started in the background with SIGINT ignored.
exec_shop() {
  local profile="${PROFILE:-release}"
  ensure_packages
  build_bins "$profile"
  exec "$(bin_dir "$profile")/shop" "$@"
}
