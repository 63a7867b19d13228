# shellcheck shell=bash
# scripts/lib.sh — shared helpers for the local stack (run.sh, stop.sh, test.sh, bench/chaos).
#
# Source it:   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It sets no shell options itself and is safe under `set -euo pipefail`; every function returns
# non-zero on failure (callers with `set -e` abort), after printing a clear message on stderr.
#
# Everything started here is private: bound to 127.0.0.1, with its data, config, logs and pid files
# under a state directory (by default under the git-ignored `.state/` at the repo root).
# Nothing here ever touches system services (no systemctl/service).
#
# Functions (see each for details):
#   ensure_packages                       install postgresql/redis-server/nginx if missing; exports PG_BIN
#   port_free PORT                        0 if nothing listens on / holds 127.0.0.1:PORT
#   require_ports_free NAME=PORT...       fail with a clear "is in use" message for the first busy one
#   pick_free_port                        prints a free TCP port on 127.0.0.1
#   wait_http URL [TIMEOUT_S]             wait until URL answers 2xx (default 30 s)
#   start_postgres DIR PORT               initdb (if needed) + start; waits until ready
#                                         (PG_EXTRA_OPTS: more `-c name=value` server options)
#   stop_postgres DIR
#   create_databases PORT DB...           create each database that does not exist yet
#   start_redis DIR PORT                  start a private redis-server (AOF on); waits for PING
#   stop_redis DIR
#   start_nginx DIR PORT BIN_DIR [name=host:port...]   render the gateway (routes: the Ingress) and start
#   stop_nginx DIR
#   ensure_secrets STATE_DIR              create STATE_DIR/secrets.env once (JWT_SECRET, INTERNAL_TOKEN)
#   start_services STATE_DIR BIN_DIR      start the six services, wait for each /health/ready
#                                         (PG_UNIX_SOCKET=1: to Postgres via STATE_DIR/pg's socket)
#   stop_services STATE_DIR               SIGTERM, up to 15 s, then SIGKILL
#   stack_running DIR                     0 (and prints what) if anything started under DIR is alive
#   stop_all DIR                          stop whatever of the above runs under DIR (tolerant)
#   purge_state DIR                       stop_all DIR, then delete DIR (and its /var/tmp PG fallback)
#
# Port variables (all overridable from the environment):
#   GATEWAY_PORT 8080, PG_PORT 55432, REDIS_PORT 56379,
#   AUTH_PORT 8001, BILLING_PORT 8002, ORDER_PORT 8003, MEDIATOR_PORT 8004, ITEMS_PORT 8005, SLOTS_PORT 8006

# ----------------------------------------------------------------------------------------------
# basics

SAGA_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SAGA_REPO_ROOT

: "${GATEWAY_PORT:=8080}"
: "${PG_PORT:=55432}"
: "${REDIS_PORT:=56379}"
: "${AUTH_PORT:=8001}"
: "${BILLING_PORT:=8002}"
: "${ORDER_PORT:=8003}"
: "${MEDIATOR_PORT:=8004}"
: "${ITEMS_PORT:=8005}"
: "${SLOTS_PORT:=8006}"
export GATEWAY_PORT PG_PORT REDIS_PORT AUTH_PORT BILLING_PORT ORDER_PORT MEDIATOR_PORT ITEMS_PORT SLOTS_PORT

# The six service binaries, in start order, and the database each one uses.
SAGA_SERVICES=(auth billing order mediator items slots)
# shellcheck disable=SC2034  # used by run.sh
SAGA_DATABASES=(auth billing orders items slots)

log()  { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
err()  { printf 'error: %s\n' "$*" >&2; }

# _svc_port SVC -> the port variable's value for that service
_svc_port() {
  case "$1" in
    auth) echo "$AUTH_PORT" ;;
    billing) echo "$BILLING_PORT" ;;
    order) echo "$ORDER_PORT" ;;
    mediator) echo "$MEDIATOR_PORT" ;;
    items) echo "$ITEMS_PORT" ;;
    slots) echo "$SLOTS_PORT" ;;
    *) err "unknown service $1"; return 1 ;;
  esac
}

# _svc_db SVC -> database name
_svc_db() {
  case "$1" in
    order|mediator) echo orders ;;
    auth|billing|items|slots) echo "$1" ;;
    *) err "unknown service $1"; return 1 ;;
  esac
}

# _proc_field PID N : field N of /proc/PID/stat counted after "pid (comm)" (1 = state, 20 = starttime)
_proc_field() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  awk -v n="$2" '{print $n}' <<<"$stat"
}

# _pid_alive PID [NAME...] : the process exists and is not a zombie (and, if names are given, its
# comm or argv[0] basename is one of them — protection against pid reuse).
_pid_alive() {
  local pid="$1"; shift
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [[ "$(_proc_field "$pid" 1)" != Z ]] || return 1
  [[ $# -eq 0 ]] && return 0
  local comm arg0 name
  comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
  arg0="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1 || true)"
  arg0="${arg0##*/}"
  for name in "$@"; do
    # comm is truncated to 15 chars; nginx/redis rewrite argv[0] ("nginx: master process ...").
    [[ "$comm" == "${name:0:15}" || "$arg0" == "$name" || "$arg0" == "$name:"* || "$arg0" == "$name "* ]] && return 0
  done
  return 1
}

# _read_pid FILE -> prints the pid in FILE (first token of the first line) or nothing
_read_pid() {
  [[ -f "$1" ]] || return 0
  local pid
  pid="$(awk 'NR == 1 {print $1}' "$1" 2>/dev/null)" || true
  [[ "$pid" =~ ^[0-9]+$ ]] && printf '%s' "$pid"
  return 0
}

# _svc_alive STATE_DIR SVC : the service whose pid file is STATE_DIR/pids/SVC.pid runs (the file
# holds "PID STARTTIME"; the start time guards against a reused pid).
_svc_alive() {
  local f="$1/pids/$2.pid" pid st
  [[ -f "$f" ]] || return 1
  read -r pid st _ <"$f" || true
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  _pid_alive "$pid" || return 1
  if [[ -n "${st:-}" ]]; then
    [[ "$(_proc_field "$pid" 20)" == "$st" ]]
  else
    _pid_alive "$pid" "$2"
  fi
}

# _wait_pid_gone PID TIMEOUT_S : 0 once the process is gone (or a zombie), 1 on timeout
_wait_pid_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while _pid_alive "$pid"; do
    (( SECONDS >= deadline )) && return 1
    sleep 0.2
  done
  return 0
}

# _tail_log FILE [N] : the last N (40) lines of FILE on stderr — for service logs, only the lines
# of the latest start (after its "===== ... starting" marker).
_tail_log() {
  local file="$1" n="${2:-40}"
  if [[ -f "$file" ]]; then
    printf -- '----- last lines of %s -----\n' "$file" >&2
    tac "$file" | sed '/^===== .* starting .* =====$/q' | tac | tail -n "$n" >&2 || true
    printf -- '-----\n' >&2
  fi
}

_mkstate() { # mkdir -p DIR, world-traversable (postgres must be able to walk through it)
  mkdir -p "$1" && chmod 755 "$1" || return 1
  # .state itself too: under umask 077 it would be unreachable for the postgres user
  if [[ -d "$SAGA_REPO_ROOT/.state" ]]; then chmod 755 "$SAGA_REPO_ROOT/.state" || true; fi
}

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

# ensure_packages : install what the local stack needs if missing (apt-get update only then).
# Exports PG_BIN (newest PostgreSQL bin dir).
ensure_packages() {
  local -a pkgs=()
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
# ports and HTTP

# port_free PORT : 0 if 127.0.0.1:PORT can be bound (nothing listens there), 1 otherwise.
port_free() {
  local port="$1"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$port" <<'PY' 2>/dev/null
import socket, sys
port = int(sys.argv[1])
# A listener on 0.0.0.0 or 127.0.0.1 makes this bind fail; SO_REUSEADDR ignores TIME_WAIT leftovers
# (the servers we start set it too).
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", port))
    s.listen(1)
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
    return $?
  fi
  # fallback: something accepts connections there
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 1; fi
  return 0
}

# require_ports_free NAME=PORT... : fail on the first busy port with a clear message.
require_ports_free() {
  local pair name port
  for pair in "$@"; do
    name="${pair%%=*}"; port="${pair#*=}"
    if ! port_free "$port"; then
      err "port $port ($name) is in use — is \`make run\` already running? stop it (Ctrl-C or \`make stop\`) or set $name to another port"
      return 1
    fi
  done
}

# pick_free_port : prints a currently free TCP port on 127.0.0.1 (ephemeral range).
pick_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL [TIMEOUT_S] : wait until URL answers with a 2xx status (default timeout 30 s).
wait_http() {
  local url="$1" timeout="${2:-30}" deadline
  deadline=$((SECONDS + timeout))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if (( SECONDS >= deadline )); then
      err "timed out after ${timeout}s waiting for $url"
      return 1
    fi
    sleep 0.25
  done
}

# _wait_port_answers PORT TIMEOUT_S : wait until an HTTP server answers anything on the port
_wait_port_answers() {
  local port="$1" deadline=$((SECONDS + $2))
  until curl -sS -o /dev/null --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null; do
    (( SECONDS >= deadline )) && return 1
    sleep 0.2
  done
}

# ----------------------------------------------------------------------------------------------
# PostgreSQL

# _pg_home DIR -> the directory that really holds data/, the socket and the log (DIR itself, or a
# fallback under /var/tmp when the postgres user cannot reach DIR, e.g. a repo under /root).
_pg_home() {
  if [[ -f "$1/.pg_home" ]]; then cat "$1/.pg_home"; else printf '%s' "$1"; fi
}

# start_postgres DIR PORT : private PostgreSQL on 127.0.0.1:PORT, data in DIR/data (initdb'd
# with trust auth, superuser postgres, on first use), unix socket and postgres.log in DIR.
start_postgres() {
  local dir="$1" port="$2"
  [[ -n "${PG_BIN:-}" ]] || PG_BIN="$(_find_pg_bin)"
  if [[ -z "$PG_BIN" ]]; then err "PostgreSQL binaries not found (run ensure_packages)"; return 1; fi
  if ! port_free "$port"; then
    err "port $port is in use — is another \`make run\` running? stop it or set PG_PORT"
    return 1
  fi
  _mkstate "$(dirname "$dir")" || return 1
  mkdir -p "$dir" || return 1
  dir="$(cd "$dir" && pwd)"
  echo postgres >"$dir/.component"

  local home="$dir"
  if [[ $EUID -eq 0 ]]; then
    chown postgres:postgres "$dir" || return 1
    chmod 700 "$dir"
    if ! runuser -u postgres -- test -w "$dir" 2>/dev/null; then
      # some parent of DIR is not traversable by postgres (e.g. the repo lives under /root)
      home="/var/tmp/saga-shop-pg-$(printf '%s' "$dir" | sha1sum | cut -c1-12)"
      warn "user postgres cannot reach $dir; keeping the PostgreSQL data in $home (linked as $dir/home)"
      mkdir -p "$home" && chown postgres:postgres "$home" && chmod 700 "$home" || return 1
      ln -sfn "$home" "$dir/home"
    fi
  fi
  printf '%s' "$home" >"$dir/.pg_home"
  echo "$port" >"$dir/.port"

  local -a as_pg=()
  [[ $EUID -eq 0 ]] && as_pg=(runuser -u postgres --)

  if [[ ! -f "$home/data/PG_VERSION" ]]; then
    log "initdb $home/data"
    if ! (cd "$home" && "${as_pg[@]}" "$PG_BIN/initdb" -D "$home/data" -A trust -U postgres -E UTF8 --no-locale \
            >"$home/initdb.log" 2>&1); then
      err "initdb failed"; _tail_log "$home/initdb.log"; return 1
    fi
  else
    local have want
    have="$(cat "$home/data/PG_VERSION")"
    want="$("$PG_BIN/pg_ctl" --version | awk '{print $NF}')"; want="${want%%.*}"
    if [[ "$have" != "$want" ]]; then
      err "$home/data was created by PostgreSQL $have but $PG_BIN is $want: remove it (make clean-state) or install $have"
      return 1
    fi
  fi

  local opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$home"
  opts+=" -c max_connections=300 -c shared_buffers=256MB -c fsync=on"
  # PG_EXTRA_OPTS: more server options (`-c name=value ...`), e.g. the benchmark's tuning or
  # pg_stat_statements for a profile; later -c options win over the ones above.
  opts+="${PG_EXTRA_OPTS:+ $PG_EXTRA_OPTS}"
  log "starting postgres on 127.0.0.1:$port ($home)"
  if ! (cd "$home" && "${as_pg[@]}" "$PG_BIN/pg_ctl" start -D "$home/data" -l "$home/postgres.log" \
          -w -t 60 -s -o "$opts" </dev/null >/dev/null 2>&1); then
    err "postgres did not start on port $port"
    _tail_log "$home/postgres.log"
    return 1
  fi
  local deadline=$((SECONDS + 30))
  until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -t 2; do
    if (( SECONDS >= deadline )); then
      err "postgres on port $port not ready after 30s"; _tail_log "$home/postgres.log"; return 1
    fi
    sleep 0.2
  done
}

# stop_postgres DIR : fast shutdown if running (tolerant).
stop_postgres() {
  local dir="$1" home
  [[ -d "$dir" ]] || return 0
  home="$(_pg_home "$dir")"
  [[ -f "$home/data/postmaster.pid" ]] || return 0
  [[ -n "${PG_BIN:-}" ]] || PG_BIN="$(_find_pg_bin)"
  local pid
  pid="$(_read_pid "$home/data/postmaster.pid")"
  _pid_alive "$pid" postgres || return 0
  log "stopping postgres ($home)"
  local -a as_pg=()
  [[ $EUID -eq 0 ]] && as_pg=(runuser -u postgres --)
  if [[ -n "$PG_BIN" ]] && (cd "$home" && "${as_pg[@]}" "$PG_BIN/pg_ctl" stop -D "$home/data" -m fast -w -t 60 -s \
        </dev/null >/dev/null 2>&1); then
    return 0
  fi
  kill -INT "$pid" 2>/dev/null || true   # SIGINT = fast shutdown
  _wait_pid_gone "$pid" 30 || { warn "postgres pid $pid did not stop; killing"; kill -KILL "$pid" 2>/dev/null || true; }
}

# create_databases PORT DB... : create each database that does not exist yet.
create_databases() {
  local port="$1"; shift
  local psql="${PG_BIN:-$(_find_pg_bin)}/psql" db exists
  [[ -x "$psql" ]] || psql="$(command -v psql)"
  for db in "$@"; do
    if [[ ! "$db" =~ ^[a-z_][a-z0-9_]*$ ]]; then err "bad database name: $db"; return 1; fi
    exists="$(PGCONNECT_TIMEOUT=5 "$psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
                "SELECT 1 FROM pg_database WHERE datname = '$db'")" || { err "cannot query postgres on port $port"; return 1; }
    if [[ "$exists" != "1" ]]; then
      PGCONNECT_TIMEOUT=5 "$psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE \"$db\"" >/dev/null || { err "CREATE DATABASE $db failed"; return 1; }
      log "created database $db"
    fi
  done
}

# ----------------------------------------------------------------------------------------------
# Redis

# start_redis DIR PORT : private redis-server on 127.0.0.1:PORT, config/AOF/log/pid in DIR.
start_redis() {
  local dir="$1" port="$2"
  if ! port_free "$port"; then
    err "port $port is in use — is another \`make run\` running? stop it or set REDIS_PORT"
    return 1
  fi
  _mkstate "$(dirname "$dir")" || return 1
  mkdir -p "$dir" || return 1
  dir="$(cd "$dir" && pwd)"
  echo redis >"$dir/.component"
  echo "$port" >"$dir/.port"
  cat >"$dir/redis.conf" <<EOF
# generated by scripts/lib.sh start_redis — private dev/test redis
bind 127.0.0.1
port $port
protected-mode yes
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
appendonly yes
appendfsync everysec
save ""
tcp-keepalive 60
EOF
  log "starting redis on 127.0.0.1:$port ($dir)"
  rm -f "$dir/redis.pid"
  if ! redis-server "$dir/redis.conf" </dev/null >>"$dir/redis.log" 2>&1; then
    err "redis-server failed to start"; _tail_log "$dir/redis.log"; return 1
  fi
  local deadline=$((SECONDS + 30))
  until [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]; do
    if (( SECONDS >= deadline )); then
      err "redis on port $port did not answer PING after 30s"; _tail_log "$dir/redis.log"; return 1
    fi
    sleep 0.2
  done
}

# stop_redis DIR : SHUTDOWN (AOF is flushed), else SIGTERM, else SIGKILL (tolerant).
stop_redis() {
  local dir="$1" pid port
  [[ -f "$dir/redis.pid" ]] || return 0
  pid="$(_read_pid "$dir/redis.pid")"
  if ! _pid_alive "$pid" redis-server; then rm -f "$dir/redis.pid"; return 0; fi
  port="$(cat "$dir/.port" 2>/dev/null || true)"
  log "stopping redis ($dir)"
  if [[ -n "$port" ]]; then
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  fi
  if ! _wait_pid_gone "$pid" 10; then
    kill -TERM "$pid" 2>/dev/null || true
    _wait_pid_gone "$pid" 10 || { warn "redis pid $pid did not stop; killing"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$dir/redis.pid"
}

# ----------------------------------------------------------------------------------------------
# nginx gateway

SAGA_GATEWAY_TEMPLATE="$SAGA_REPO_ROOT/deploy/gateway.nginx.conf.template"
SAGA_MANIFEST="$SAGA_REPO_ROOT/deploy-services.yml"

# start_nginx DIR PORT BIN_DIR [name=host:port...] : render the gateway config into DIR/nginx.conf
# with BIN_DIR/gateway-config — the routes are the Ingress rules of deploy-services.yml, everything
# else comes from deploy/gateway.nginx.conf.template — and start nginx (daemonized, pid/logs/temp
# in DIR). Each service listens on 127.0.0.1:<its port variable> unless name=host:port says otherwise.
start_nginx() {
  local dir="$1" port="$2" bin_dir="$3"; shift 3
  local renderer="$bin_dir/gateway-config" svc pair
  if [[ ! -x "$renderer" ]]; then
    err "missing $renderer (cargo build -p tools --bin gateway-config)"; return 1
  fi
  local -A addr=()
  for svc in "${SAGA_SERVICES[@]}"; do addr[$svc]="127.0.0.1:$(_svc_port "$svc")"; done
  for pair in "$@"; do
    svc="${pair%%=*}"
    if [[ "$pair" != *=* || -z "${addr[$svc]+set}" ]]; then
      err "start_nginx: bad upstream '$pair' (want name=host:port, name in ${SAGA_SERVICES[*]})"; return 1
    fi
    addr[$svc]="${pair#*=}"
  done
  local -a upstreams=()
  for svc in "${SAGA_SERVICES[@]}"; do upstreams+=(--upstream "$svc=${addr[$svc]}"); done
  if ! port_free "$port"; then
    err "port $port is in use — is another \`make run\` running? stop it or set GATEWAY_PORT"
    return 1
  fi
  _mkstate "$(dirname "$dir")" || return 1
  mkdir -p "$dir/logs" "$dir/tmp" || return 1
  dir="$(cd "$dir" && pwd)"
  echo nginx >"$dir/.component"

  # Workers run as the invoking user: as root, `user root` (the state dir may not be reachable
  # by nobody); as anyone else the directive is ignored anyway.
  local user_directive=""
  [[ $EUID -eq 0 ]] && user_directive="user root;"
  if ! "$renderer" --manifest "$SAGA_MANIFEST" render --template "$SAGA_GATEWAY_TEMPLATE" "${upstreams[@]}" \
         --set STATE_DIR="$dir" --set LISTEN="127.0.0.1:$port" --set USER_DIRECTIVE="$user_directive" \
         --output "$dir/nginx.conf"; then
    err "could not render the gateway config from $SAGA_MANIFEST"; return 1
  fi
  local nginx_bin
  nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
  echo "$nginx_bin" >"$dir/.nginx_bin"
  if ! "$nginx_bin" -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/logs/nginx-t.log" 2>&1; then
    err "nginx config test failed ($dir/nginx.conf)"; cat "$dir/logs/nginx-t.log" >&2; return 1
  fi
  log "starting nginx gateway on 127.0.0.1:$port ($dir)"
  rm -f "$dir/nginx.pid"
  # shellcheck disable=SC2094  # -e only names the file nginx appends to
  if ! "$nginx_bin" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" </dev/null >>"$dir/logs/error.log" 2>&1; then
    err "nginx failed to start"; _tail_log "$dir/logs/error.log"; return 1
  fi
  if ! _wait_port_answers "$port" 15; then
    err "nginx on port $port does not answer"; _tail_log "$dir/logs/error.log"; return 1
  fi
}

# stop_nginx DIR : graceful quit, then TERM, then KILL (tolerant).
stop_nginx() {
  local dir="$1" pid nginx_bin
  [[ -f "$dir/nginx.pid" ]] || return 0
  pid="$(_read_pid "$dir/nginx.pid")"
  if ! _pid_alive "$pid" nginx; then rm -f "$dir/nginx.pid"; return 0; fi
  log "stopping nginx ($dir)"
  kill -QUIT "$pid" 2>/dev/null || true
  if ! _wait_pid_gone "$pid" 10; then
    kill -TERM "$pid" 2>/dev/null || true
    _wait_pid_gone "$pid" 5 || { warn "nginx pid $pid did not stop; killing"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$dir/nginx.pid"
}

# ----------------------------------------------------------------------------------------------
# services

_random_hex32() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex 32
  else
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo
  fi
}

# ensure_secrets STATE_DIR : create STATE_DIR/secrets.env (mode 600) once; never prints the values.
ensure_secrets() {
  local dir="$1" f="$1/secrets.env"
  _mkstate "$dir" || return 1
  if [[ ! -s "$f" ]]; then
    ( umask 077
      { printf 'JWT_SECRET=%s\n' "$(_random_hex32)"
        printf 'INTERNAL_TOKEN=%s\n' "$(_random_hex32)"; } >"$f.tmp" && mv "$f.tmp" "$f" ) || return 1
  fi
  chmod 600 "$f"
}

# start_services STATE_DIR BIN_DIR : start auth billing order mediator items slots from BIN_DIR in
# the background (own session), logs in STATE_DIR/logs/<svc>.log, pids in STATE_DIR/pids/<svc>.pid;
# then wait up to 60 s for each /health/ready (on failure: tail of its log, return 1).
start_services() {
  local state="$1" bin_dir="$2" svc port db
  _mkstate "$state" || return 1
  state="$(cd "$state" && pwd)"
  mkdir -p "$state/logs" "$state/pids" || return 1
  if [[ ! -d "$bin_dir" ]]; then err "no such directory: $bin_dir (cargo build --release --workspace --bins)"; return 1; fi
  bin_dir="$(cd "$bin_dir" && pwd)"
  for svc in "${SAGA_SERVICES[@]}"; do
    if [[ ! -x "$bin_dir/$svc" ]]; then
      err "missing binary $bin_dir/$svc (cargo build --release --workspace --bins)"; return 1
    fi
  done
  ensure_secrets "$state" || return 1
  # PG_UNIX_SOCKET=1: the services reach the Postgres of STATE_DIR/pg through its Unix socket
  # (same machine: no loopback TCP stack on every round trip), else over 127.0.0.1:PG_PORT.
  local pg_socket_dir=""
  if [[ "${PG_UNIX_SOCKET:-0}" == 1 ]]; then
    pg_socket_dir="$(_pg_home "$state/pg")"
    if [[ ! -S "$pg_socket_dir/.s.PGSQL.$PG_PORT" ]]; then
      err "PG_UNIX_SOCKET=1 but there is no Postgres socket $pg_socket_dir/.s.PGSQL.$PG_PORT"; return 1
    fi
  fi
  local jwt internal
  jwt="$(sed -n 's/^JWT_SECRET=//p' "$state/secrets.env")"
  internal="$(sed -n 's/^INTERNAL_TOKEN=//p' "$state/secrets.env")"

  for svc in "${SAGA_SERVICES[@]}"; do
    port="$(_svc_port "$svc")"; db="$(_svc_db "$svc")"
    if ! port_free "$port"; then
      err "port $port ($svc) is in use — is \`make run\` already running? stop it or set ${svc^^}_PORT"
      return 1
    fi
    rm -f "$state/pids/$svc.pid"
    printf '\n===== %s starting %s on 127.0.0.1:%s =====\n' "$(date '+%F %T')" "$svc" "$port" >>"$state/logs/$svc.log"
    # setsid: own session, so a Ctrl-C in the terminal reaches run.sh's trap (which stops the
    # services in order) and not the services directly. The child writes "PID STARTTIME" to its
    # pid file, then execs the binary. Secrets travel in the environment, never on a command line.
    (
      cd "$SAGA_REPO_ROOT" || exit 1
      export LISTEN_ADDR="127.0.0.1:$port"
      if [[ -n "$pg_socket_dir" ]]; then
        export DATABASE_URL="postgres://postgres@localhost:$PG_PORT/$db?host=$pg_socket_dir"
      else
        export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$db"
      fi
      export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
      export JWT_SECRET="$jwt" INTERNAL_TOKEN="$internal"
      export BILLING_URL="http://127.0.0.1:$BILLING_PORT"
      export ITEMS_URL="http://127.0.0.1:$ITEMS_PORT"
      export SLOTS_URL="http://127.0.0.1:$SLOTS_PORT"
      export LOG_FORMAT="${LOG_FORMAT:-pretty}"
      export RUST_LOG="${RUST_LOG:-info}"
      # shellcheck disable=SC2016  # $$ and $@ belong to the inner bash
      exec setsid bash -c 'st="$(cut -d")" -f2- /proc/$$/stat | cut -d" " -f21)"; echo "$$ $st" >"$1"; shift; exec "$@"' \
        _ "$state/pids/$svc.pid" "$bin_dir/$svc"
    ) </dev/null >>"$state/logs/$svc.log" 2>&1 &
  done

  local deadline pid url
  for svc in "${SAGA_SERVICES[@]}"; do
    port="$(_svc_port "$svc")"
    url="http://127.0.0.1:$port/health/ready"
    deadline=$((SECONDS + 60))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
      pid="$(_read_pid "$state/pids/$svc.pid")"
      if [[ -n "$pid" ]] && ! _pid_alive "$pid"; then
        err "$svc exited during startup (see $state/logs/$svc.log)"; _tail_log "$state/logs/$svc.log"; return 1
      fi
      if (( SECONDS >= deadline )); then
        err "$svc not ready after 60s at $url (see $state/logs/$svc.log)"; _tail_log "$state/logs/$svc.log"; return 1
      fi
      sleep 0.25
    done
    log "$svc ready on 127.0.0.1:$port"
  done
}

# stop_services STATE_DIR : SIGTERM every running service, wait up to 15 s, then SIGKILL.
stop_services() {
  local state="$1" svc pid
  [[ -d "$state/pids" ]] || return 0
  local -a pids=() names=()
  for svc in "${SAGA_SERVICES[@]}"; do
    if _svc_alive "$state" "$svc"; then
      pid="$(_read_pid "$state/pids/$svc.pid")"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$svc")
    fi
  done
  if (( ${#pids[@]} > 0 )); then
    log "stopping services: ${names[*]}"
    local deadline=$((SECONDS + 15)) i alive
    while :; do
      alive=0
      for pid in "${pids[@]}"; do _pid_alive "$pid" && alive=1; done
      (( alive == 0 || SECONDS >= deadline )) && break
      sleep 0.2
    done
    for i in "${!pids[@]}"; do
      if _pid_alive "${pids[$i]}"; then
        warn "${names[$i]} (pid ${pids[$i]}) did not stop within 15s; SIGKILL"
        kill -KILL "${pids[$i]}" 2>/dev/null || true
      fi
    done
  fi
  for svc in "${SAGA_SERVICES[@]}"; do rm -f "$state/pids/$svc.pid"; done
}

# ----------------------------------------------------------------------------------------------
# everything

# stack_running DIR : 0 (and prints what) if any service, nginx, redis or postgres started under DIR
# (or its direct subdirectories) is still alive.
stack_running() {
  local dir="$1" d svc pid found=1 home
  [[ -d "$dir" ]] || return 1
  for svc in "${SAGA_SERVICES[@]}"; do
    if _svc_alive "$dir" "$svc"; then echo "$svc (pid $(_read_pid "$dir/pids/$svc.pid"))"; found=0; fi
  done
  for d in "$dir" "$dir"/*/; do
    d="${d%/}"
    [[ -f "$d/.component" ]] || continue
    case "$(cat "$d/.component")" in
      nginx) pid="$(_read_pid "$d/nginx.pid")"; _pid_alive "$pid" nginx && { echo "nginx (pid $pid)"; found=0; } ;;
      redis) pid="$(_read_pid "$d/redis.pid")"; _pid_alive "$pid" redis-server && { echo "redis (pid $pid)"; found=0; } ;;
      postgres)
        home="$(_pg_home "$d")"
        pid="$(_read_pid "$home/data/postmaster.pid")"
        _pid_alive "$pid" postgres && { echo "postgres (pid $pid)"; found=0; } ;;
    esac
  done
  return $found
}

# stop_all DIR : stop whatever runs under DIR (services in DIR/pids, then any nginx / redis /
# postgres component found in DIR or its direct subdirectories). Tolerant of things not running.
stop_all() {
  local dir="$1" d kind rc=0
  [[ -d "$dir" ]] || return 0
  local -a comps=()
  for d in "$dir" "$dir"/*/; do
    d="${d%/}"
    [[ -f "$d/.component" ]] && comps+=("$d")
  done
  # gateway first (stop taking traffic), then the services, then the stores
  for d in "${comps[@]}"; do
    [[ "$(cat "$d/.component")" == nginx ]] && { stop_nginx "$d" || rc=1; }
  done
  stop_services "$dir" || rc=1
  for d in "${comps[@]}"; do
    kind="$(cat "$d/.component")"
    case "$kind" in
      redis) stop_redis "$d" || rc=1 ;;
      postgres) stop_postgres "$d" || rc=1 ;;
    esac
  done
  return $rc
}

# purge_state DIR : stop_all DIR, then delete DIR and any PostgreSQL data kept outside it
# (the /var/tmp fallback of start_postgres).
purge_state() {
  local dir="$1" f home
  [[ -e "$dir" ]] || return 0
  stop_all "$dir" || { err "not removing $dir: something there did not stop"; return 1; }
  while IFS= read -r f; do
    home="$(cat "$f")"
    case "$home" in /var/tmp/saga-shop-pg-*) rm -rf -- "$home" ;; esac
  done < <(find "$dir" -maxdepth 3 -name .pg_home -type f 2>/dev/null)
  rm -rf -- "$dir"
}
