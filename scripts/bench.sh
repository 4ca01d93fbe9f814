#!/usr/bin/env bash
# Load benchmark: tokenwarden's gateway and agent against nginx and HAProxy, in one run, on
# loopback, on this machine.
#   scripts/bench.sh                 every row; the table goes to target/bench/latest.md
#   scripts/bench.sh --profile ROW   one throughput row (1-7) with `perf record -g` on the
#                                    tokenwarden process: target/bench/profile-rowROW.txt
#                                    (perf report: top symbols), .callgraph.txt, and
#                                    .perf-script.gz (perf script, for flame graph tools)
#   scripts/bench.sh --help
# Environment:
#   TW_BIN             the tokenwarden binary (default: cargo build --release --locked -p tokenwarden)
#   TW_BENCH_SECONDS   length of each measured wrk run (default 10)
#   TW_BENCH_WARMUP    length of the warm-up run before each (default 2)
#   TW_BENCH_TOKENS    distinct tokens for rows 3 and 8 (default 100000)
#   TW_BENCH_ROUNDS    rounds of each throughput row, tokenwarden then peer (default 1); the
#                      table shows each side's median (a busy machine: try 3)
#   TW_BENCH_LOG_LEVEL log level of the tokenwarden servers (default info, as shipped)
#   TW_PERF_CALLGRAPH  perf's --call-graph mode with --profile (default fp; dwarf for binaries
#                      without frame pointers, at a much larger perf.data)
#   TW_BENCH_KEEP      set: keep the temporary directory (configs, server logs) and say where
# Every row runs `wrk -t1 -c32` against tokenwarden and against its peer in the same run; the
# ratio is tokenwarden's req/s over the peer's. The upstream of every proxy is one nginx returning
# a small JSON body. Tokens: Keycloak-shaped RS256 JWTs (about 1.3 KB) minted by
# scripts/lib/bench/mint_tokens.py (PyJWT and cryptography in a venv under target/bench/venv).
# A row whose runs saw a non-2xx answer or a socket error is reported invalid, not as a rate.
# Needs (as root, Debian's apt installs what is missing): nginx, haproxy (>= 2.5: jwt_verify),
# wrk, curl, python3-venv; linux-perf for --profile.
set -euo pipefail
# TW_BIN as given, from the caller's directory.
if [ -n "${TW_BIN:-}" ]; then TW_BIN=$(realpath -m -- "$TW_BIN"); fi
cd "$(dirname "$0")/.."
repo=$(pwd)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

profile_row=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --profile)
      [ $# -ge 2 ] || { echo "error: --profile needs a row (1-7)" >&2; exit 2; }
      profile_row=$2; shift 2 ;;
    --profile=*) profile_row=${1#--profile=}; shift ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$profile_row" ] && ! [[ "$profile_row" =~ ^[1-7]$ ]]; then
  echo "error: --profile takes a throughput row, 1 to 7" >&2
  exit 2
fi

seconds=${TW_BENCH_SECONDS:-10}
warmup=${TW_BENCH_WARMUP:-2}
ntokens=${TW_BENCH_TOKENS:-100000}
rounds=${TW_BENCH_ROUNDS:-1}
log_level=${TW_BENCH_LOG_LEVEL:-info}
conns=32

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/apt.sh
source scripts/lib/apt.sh
apt_install nginx haproxy wrk curl python3 python3-venv
if [ -n "$profile_row" ]; then apt_install linux-perf; fi

if [ -n "${TW_BIN:-}" ]; then
  tw=$TW_BIN
else
  log "cargo build --release --locked -p tokenwarden"
  cargo build --release --locked -p tokenwarden
  tw=$repo/target/release/tokenwarden
fi
[ -x "$tw" ] || die "no tokenwarden binary at $tw"

out=$repo/target/bench
raw=$out/raw
mkdir -p "$out"
# A full run replaces the raw output of the last one; a profile adds its own files.
if [ -z "$profile_row" ]; then rm -rf "$raw"; fi
mkdir -p "$raw"

# Everything this script starts, stopped on exit; its files in one temporary directory.
tmp=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${TW_BENCH_KEEP:-}" ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# nginx's workers (not root) read the static files below.
chmod 755 "$tmp"
started=$(date +%s)
# The machine's CPU use over one second (%): before the start, and once the servers are idle
# at the end; anything else busy then makes the figures noisier.
cpu_busy() {
  local a b
  a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0)}'
}
busy_start=$(cpu_busy)

# Free loopback ports, picked by the kernel.
read -r up_port oidc_port plain_port ret_port hap_port gw_port gwa_port dev_port agent_port proxy_port < <(
  /usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(10)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'
)

# --- tokens -----------------------------------------------------------------------------------
venv=$out/venv
if ! "$venv/bin/python" -c 'import jwt, cryptography' 2>/dev/null; then
  log "Python venv with PyJWT and cryptography ($venv)"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "PyJWT==2.10.1" "cryptography==44.0.0"
fi
issuer="http://127.0.0.1:$oidc_port/realms/bench"
# A profile of a row without distinct tokens needs only a few.
if [ -n "$profile_row" ] && [ "$profile_row" != 3 ]; then ntokens=100; fi
log "minting $ntokens RS256 tokens (RSA-2048 key of this run, issuer $issuer)"
keys=$tmp/keys
mkdir -m 700 "$keys"
"$venv/bin/python" scripts/lib/bench/mint_tokens.py --issuer "$issuer" --count "$ntokens" --out "$keys"
tokens=$keys/tokens.txt
token_bytes=$(head -n 1 "$tokens" | tr -d '\n' | wc -c)
www=$tmp/www
mkdir -p "$www/realms/bench/.well-known" "$www/realms/bench/protocol/openid-connect"
cp "$keys/openid-configuration" "$www/realms/bench/.well-known/openid-configuration"
cp "$keys/jwks.json" "$www/realms/bench/protocol/openid-connect/certs"
chmod -R a+rX "$www"

# --- servers ----------------------------------------------------------------------------------
wait_http() { # URL [status]: until URL answers that status (default 200), 20 s at most
  local code=""
  for _ in $(seq 1 400); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)
    [ "$code" = "${2:-200}" ] && return 0
    sleep 0.05
  done
  die "$1 did not answer ${2:-200} (last: $code)"
}

nginx_conf() { # DIR SERVERS...: an nginx.conf in DIR with these server blocks
  local d=$1; shift
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_requests 10000;
    $*
}
EOF
}

start_nginx() { # DIR
  nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log" </dev/null >"$1/stdout.log" 2>&1 &
  pids+=($!)
}

body='{"id":7,"name":"item","ok":true}'
log "upstream and OIDC nginx on :$up_port and :$oidc_port"
nginx_conf "$tmp/nginx-up" "
    server {
        listen 127.0.0.1:$up_port;
        default_type application/json;
        # The agent's proxy route comes here: it must have injected a bearer token.
        location /authd/ {
            if (\$http_authorization !~ \"^Bearer .\") { return 401 '{\"error\":\"no token\"}'; }
            return 200 '$body';
        }
        location / { return 200 '$body'; }
    }
    server {
        listen 127.0.0.1:$oidc_port;
        default_type application/json;
        location / { root $www; }
    }"
start_nginx "$tmp/nginx-up"
wait_http "http://127.0.0.1:$up_port/x"
wait_http "$issuer/.well-known/openid-configuration"

log "dev issuer on :$dev_port (the agent's token endpoint)"
"$tw" dev-issuer --realm-file examples/realms/demo-realm.json --listen "127.0.0.1:$dev_port" \
  --access-token-lifetime 1h >"$tmp/dev-issuer.log" 2>&1 &
pids+=($!)
dev_issuer="http://127.0.0.1:$dev_port/realms/demo"
wait_http "$dev_issuer/.well-known/openid-configuration"

# Configs with @PORT@ (the API) and @PORT2@ (the proxy), so scripts/lib/bench/startup.py can
# start more of the same on other ports.
cat >"$tmp/agent.toml.in" <<EOF
[log]
level = "$log_level"

[agent]
listen = "127.0.0.1:@PORT@"

[profiles.bench]
issuer = "$dev_issuer"
client_id = "demo-agent"
client_secret = { env = "TW_BENCH_AGENT_SECRET" }
eager = true

[agent.proxy]
listen = "127.0.0.1:@PORT2@"

[[agent.proxy.routes]]
prefix = "/up/"
upstream = "http://127.0.0.1:$up_port/authd/"
profile = "bench"
strip_prefix = true
EOF
cat >"$tmp/gateway.toml.in" <<EOF
[log]
level = "$log_level"

[gateway]
listen = "127.0.0.1:@PORT@"

[[gateway.issuers]]
issuer = "$issuer"
audiences = ["bench-api"]
allowed_azp = ["bench-agent"]
algorithms = ["RS256"]

[[gateway.routes]]
prefix = "/"
upstream = "http://127.0.0.1:$up_port/"
EOF
cat "$tmp/gateway.toml.in" - >"$tmp/gateway-authz.toml.in" <<'EOF'

[gateway.authz]
mode = "enforce"
sources = ["roles"]

[gateway.authz.roles]
"bench-reader" = ["items:read"]

[[gateway.authz.rules]]
name = "items-read"
methods = ["GET"]
paths = ["/api/items", "/api/items/**"]
require_all = ["items:read"]
EOF
# The demo realm's client secret, as the README gives it (a development fixture).
export TW_BENCH_AGENT_SECRET=demo-agent-secret

start_tw() { # NAME COMMAND TEMPLATE PORT [PORT2]: a tokenwarden server, its pid in $last_pid
  sed -e "s/@PORT@/$4/" -e "s/@PORT2@/${5:-0}/" "$3" >"$tmp/$1.toml"
  (cd "$tmp" && exec "$tw" "$2" --config "$tmp/$1.toml") >"$tmp/$1.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}

log "agent on :$agent_port (proxy :$proxy_port), gateways on :$gw_port and :$gwa_port (authz)"
start_tw agent agent "$tmp/agent.toml.in" "$agent_port" "$proxy_port"
agent_pid=$last_pid
start_tw gateway gateway "$tmp/gateway.toml.in" "$gw_port"
gw_pid=$last_pid
start_tw gateway-authz gateway "$tmp/gateway-authz.toml.in" "$gwa_port"
gwa_pid=$last_pid
wait_http "http://127.0.0.1:$agent_port/readyz"
wait_http "http://127.0.0.1:$gw_port/readyz"
wait_http "http://127.0.0.1:$gwa_port/readyz"
gw_rss_ready=$(awk '/^VmRSS:/ {print $2}' "/proc/$gw_pid/status")

# nginx's `return 200` peer of the token API answers a body as long as the agent's.
token_answer_bytes=$(curl -s "http://127.0.0.1:$agent_port/v1/token/bench" | wc -c)
ret_body=$(/usr/bin/python3 -c "
import sys
n = int(sys.argv[1]); head = '{\"access_token\":\"'; tail = '\",\"token_type\":\"Bearer\"}'
print(head + 'x' * max(0, n - len(head) - len(tail)) + tail)" "$token_answer_bytes")

log "front nginx on :$plain_port (plain proxy) and :$ret_port (return 200)"
nginx_conf "$tmp/nginx-front" "
    upstream up_pool {
        server 127.0.0.1:$up_port;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$plain_port;
        location / {
            proxy_pass http://up_pool;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }
    server {
        listen 127.0.0.1:$ret_port;
        default_type application/json;
        location / { return 200 '$ret_body'; }
    }"
start_nginx "$tmp/nginx-front"
wait_http "http://127.0.0.1:$plain_port/api/items"
wait_http "http://127.0.0.1:$ret_port/v1/token/bench"

# HAProxy: the gateway's claim checks that HAProxy's converters can express (alg, iss, azp, typ,
# aud among the first two entries: its JSON query reads no whole array; exp), cheapest first, then
# the RS256 signature (jwt_verify, which caches nothing), then the same upstream. Default threads.
log "HAProxy on :$hap_port (jwt_verify RS256)"
cat >"$tmp/haproxy.cfg" <<EOF
global
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend bench
    bind 127.0.0.1:$hap_port
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str $issuer }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.azp') -m str bench-agent }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.typ') -m str Bearer }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.aud[0]') -m str bench-api } || { var(txn.bearer),jwt_payload_query('\$.aud[1]') -m str bench-api }
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 unless { var(txn.exp),sub(txn.now) -m int gt 0 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$keys/public.pem") -m int 1 }
    default_backend upstream

backend upstream
    server up 127.0.0.1:$up_port
EOF
haproxy -c -q -f "$tmp/haproxy.cfg" || die "HAProxy refused its configuration"
haproxy -db -f "$tmp/haproxy.cfg" </dev/null >"$tmp/haproxy.log" 2>&1 &
hap_pid=$!
pids+=("$hap_pid")

# --- correctness --------------------------------------------------------------------------------
log "checking every endpoint: 200 with a valid token, 401 without"
token1=$(head -n 1 "$tokens")
other_token=$(sed -n '2p' "$tokens")
[ -n "$other_token" ] || other_token=$token1
# The token with one signature character changed (mid-signature: every bit of it counts).
c=${token1: -10:1}
tampered=${token1:0:${#token1}-10}$([ "$c" = A ] && echo B || echo A)${token1: -9}
status() { # URL [curl args...]: the HTTP status
  local url=$1; shift
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" || true
}
expect() { # WANT WHAT URL [curl args...]
  local want=$1 what=$2 url=$3 got; shift 3
  got=$(status "$url" "$@")
  [ "$got" = "$want" ] || die "$what: $url answered $got, expected $want"
  printf '  ok %s %s\n' "$got" "$what" >&2
}
auth=(-H "Authorization: Bearer $token1")
fa_headers=(-H "X-Original-URI: /api/items" -H "X-Original-Method: GET" -H "X-Forwarded-Host: 127.0.0.1")
for _ in $(seq 1 100); do [ "$(status "http://127.0.0.1:$hap_port/api/items")" = 401 ] && break; sleep 0.05; done
kill -0 "$hap_pid" 2>/dev/null || die "HAProxy stopped: $(cat "$tmp/haproxy.log")"
expect 200 "gateway, valid token" "http://127.0.0.1:$gw_port/api/items" "${auth[@]}"
expect 200 "gateway, another token" "http://127.0.0.1:$gw_port/api/items" -H "Authorization: Bearer $other_token"
expect 401 "gateway, no token" "http://127.0.0.1:$gw_port/api/items"
expect 401 "gateway, tampered token" "http://127.0.0.1:$gw_port/api/items" -H "Authorization: Bearer $tampered"
expect 200 "gateway with authz, valid token" "http://127.0.0.1:$gwa_port/api/items" "${auth[@]}"
expect 401 "gateway with authz, no token" "http://127.0.0.1:$gwa_port/api/items"
expect 403 "gateway with authz, a path no rule allows" "http://127.0.0.1:$gwa_port/api/other" "${auth[@]}"
expect 200 "forward-auth, valid token" "http://127.0.0.1:$gw_port/auth" "${auth[@]}" "${fa_headers[@]}"
expect 401 "forward-auth, no token" "http://127.0.0.1:$gw_port/auth" "${fa_headers[@]}"
expect 200 "HAProxy, valid token" "http://127.0.0.1:$hap_port/api/items" "${auth[@]}"
expect 200 "HAProxy, another token" "http://127.0.0.1:$hap_port/api/items" -H "Authorization: Bearer $other_token"
expect 401 "HAProxy, no token" "http://127.0.0.1:$hap_port/api/items"
expect 401 "HAProxy, tampered token" "http://127.0.0.1:$hap_port/api/items" -H "Authorization: Bearer $tampered"
expect 200 "agent token API" "http://127.0.0.1:$agent_port/v1/token/bench"
expect 404 "agent token API, unknown profile" "http://127.0.0.1:$agent_port/v1/token/nope"
expect 200 "agent proxy (token injected)" "http://127.0.0.1:$proxy_port/up/items"
expect 401 "upstream behind the agent's proxy, no token" "http://127.0.0.1:$up_port/authd/items"
expect 200 "nginx plain proxy" "http://127.0.0.1:$plain_port/api/items"
expect 200 "nginx return 200" "http://127.0.0.1:$ret_port/v1/token/bench"
curl -s "http://127.0.0.1:$agent_port/v1/token/bench" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["token_type"] == "Bearer" and d["access_token"].count(".") == 2, "not a JWT answer"' ||
  die "the agent's token API did not answer a bearer JWT"

# --- throughput -----------------------------------------------------------------------------------
# run_wrk NAME URL MODE [HEADERS]: a warm-up, then the measured run (raw output in $raw/NAME.txt);
# sets rate, reqs, bad (non-2xx answers plus socket errors).
run_wrk() {
  local name=$1 url=$2 mode=$3 headers=${4:-} d
  for d in warmup measure; do
    local secs=$seconds file=$raw/$name.txt
    if [ $d = warmup ]; then secs=$warmup; file=$raw/$name.warmup.txt; fi
    TW_WRK_MODE=$mode TW_WRK_TOKENS=$tokens TW_WRK_HEADERS=$headers \
      wrk -t1 -c"$conns" -d"${secs}s" --latency -s scripts/lib/bench/wrk.lua "$url" >"$file" 2>&1 ||
      die "wrk failed on $url (see $file)"
  done
  rate=$(awk '/^Requests\/sec:/ {print $2}' "$file")
  reqs=$(awk '/requests in/ {print $1; exit}' "$file")
  local non2xx sockerr
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$file")
  sockerr=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$file")
  bad=$(( ${non2xx:-0} + ${sockerr:-0} ))
  [ -n "$rate" ] || die "no rate in $file"
  printf '  %-24s %10.0f req/s  %8s requests  %s bad\n' "$name" "$rate" "$reqs" "$bad" >&2
}

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
declare -A tw_rate peer_rate tw_bad peer_bad
# row NUMBER TW_URL TW_MODE PEER_URL PEER_MODE [HEADERS]: $rounds rounds of tokenwarden then the
# peer; the median rate of each side, and every bad answer of all rounds.
row() {
  local n=$1 k tw_rates="" peer_rates="" tb=0 pb=0 suffix=""
  log "row $n"
  for k in $(seq 1 "$rounds"); do
    [ "$rounds" -gt 1 ] && suffix="-round$k"
    run_wrk "row$n-tokenwarden$suffix" "$2" "$3" "${6:-}"
    tw_rates+=" $rate"; tb=$((tb + bad))
    run_wrk "row$n-peer$suffix" "$4" "$5" "${6:-}"
    peer_rates+=" $rate"; pb=$((pb + bad))
  done
  tw_rate[$n]=$(median <<<"$tw_rates"); tw_bad[$n]=$tb
  peer_rate[$n]=$(median <<<"$peer_rates"); peer_bad[$n]=$pb
}

gw="http://127.0.0.1:$gw_port"
gwa="http://127.0.0.1:$gwa_port"
hap="http://127.0.0.1:$hap_port"
plain="http://127.0.0.1:$plain_port"
fa_wrk_headers="X-Original-URI: /api/items|X-Original-Method: GET|X-Forwarded-Host: 127.0.0.1"
row_args() { # the arguments of row N
  case $1 in
    1) echo "$gw/api/items same $plain/api/items same" ;;
    2) echo "$gwa/api/items same $plain/api/items same" ;;
    3) echo "$gw/api/items cycle $hap/api/items cycle" ;;
    4) echo "$gw/api/items same $hap/api/items same" ;;
    5) echo "$gw/auth same $plain/api/items same" ;;
    6) echo "http://127.0.0.1:$agent_port/v1/token/bench none http://127.0.0.1:$ret_port/v1/token/bench none" ;;
    7) echo "http://127.0.0.1:$proxy_port/up/items none $plain/items none" ;;
  esac
}
row_headers() { if [ "$1" = 5 ]; then echo "$fa_wrk_headers"; fi; }
row_pid() { case $1 in 2) echo "$gwa_pid" ;; 6 | 7) echo "$agent_pid" ;; *) echo "$gw_pid" ;; esac; }

threads_of() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
nginx_workers=$(pgrep -c -P "$(cat "$tmp/nginx-front/nginx.pid")" || true)
hap_threads=$(threads_of "$hap_pid")

if [ -n "$profile_row" ]; then
  r=$profile_row
  pid=$(row_pid "$r")
  read -r u1 m1 _ _ < <(row_args "$r")
  log "row $r under perf record (pid $pid, ${seconds}s)"
  TW_WRK_MODE=$m1 TW_WRK_TOKENS=$tokens TW_WRK_HEADERS=$(row_headers "$r") \
    wrk -t1 -c"$conns" -d"${warmup}s" -s scripts/lib/bench/wrk.lua "$u1" >/dev/null
  perf record -F 999 --call-graph "${TW_PERF_CALLGRAPH:-fp}" -p "$pid" -o "$tmp/perf.data" -- sleep "$seconds" \
    2>"$tmp/perf-record.log" &
  perf_pid=$!
  pids+=("$perf_pid")
  TW_WRK_MODE=$m1 TW_WRK_TOKENS=$tokens TW_WRK_HEADERS=$(row_headers "$r") \
    wrk -t1 -c"$conns" -d"${seconds}s" --latency -s scripts/lib/bench/wrk.lua "$u1" >"$raw/profile-row$r.wrk.txt"
  wait "$perf_pid" || die "perf record failed: $(cat "$tmp/perf-record.log")"
  perf report -i "$tmp/perf.data" --stdio --no-children --sort dso,symbol -g none --percent-limit 0.2 \
    2>/dev/null | sed -E 's/ +$//; s/ +- +-$//' >"$out/profile-row$r.txt"
  perf report -i "$tmp/perf.data" --stdio --no-children --sort symbol --percent-limit 1 \
    2>/dev/null | sed -E 's/ +$//; s/ +- +-$//' >"$out/profile-row$r.callgraph.txt"
  perf script -i "$tmp/perf.data" 2>/dev/null | gzip >"$out/profile-row$r.perf-script.gz"
  log "profile of row $r in $out: profile-row$r.txt (top symbols), profile-row$r.callgraph.txt, profile-row$r.perf-script.gz (perf script, for flame graph tools)"
  grep -v -e '^#' -e '^$' "$out/profile-row$r.txt" | sed -n '1,25p'
  grep -E 'Requests/sec|Non-2xx' "$raw/profile-row$r.wrk.txt" || true
  exit 0
fi

for r in 1 2 3 4 5 6 7; do
  read -r u1 m1 u2 m2 < <(row_args "$r")
  row "$r" "$u1" "$m1" "$u2" "$m2" "$(row_headers "$r")"
done
agent_rss_loaded=$(rss_kb "$agent_pid")

# --- memory and start-up ----------------------------------------------------------------------------
log "row 8: every one of the $ntokens distinct tokens sent to the gateway once more"
TW_WRK_MODE=once TW_WRK_TOKENS=$tokens TW_WRK_DONE=$tmp/once.done \
  wrk -t1 -c"$conns" -d600s -s scripts/lib/bench/wrk.lua "$gw/api/items" >"$raw/row8-once.txt" 2>&1 &
wrk_pid=$!
pids+=("$wrk_pid")
while kill -0 "$wrk_pid" 2>/dev/null && [ ! -e "$tmp/once.done" ]; do sleep 0.2; done
kill -INT "$wrk_pid" 2>/dev/null || true
wait "$wrk_pid" || die "wrk failed (see $raw/row8-once.txt)"
once_reqs=$(awk '/requests in/ {print $1; exit}' "$raw/row8-once.txt")
once_bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$raw/row8-once.txt")
sleep 1
gw_rss=$(rss_kb "$gw_pid")
gw_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$gw_pid/status")
gw_threads=$(threads_of "$gw_pid")
agent_threads=$(threads_of "$agent_pid")
printf '  gateway VmRSS %s kB (peak %s kB) after %s requests, %s bad\n' "$gw_rss" "$gw_hwm" "$once_reqs" "${once_bad:-0}" >&2

log "rows 9 and 10: start to ready (5 starts each), agent RSS after its first token"
startup() { # COMMAND TEMPLATE [--rss-after S]
  "$venv/bin/python" scripts/lib/bench/startup.py --bin "$tw" --command "$1" --template "$2" \
    --dir "$tmp" --reps 5 "${@:3}"
}
agent_start=$(startup agent "$tmp/agent.toml.in" --rss-after 1)
gw_start=$(startup gateway "$tmp/gateway.toml.in")
echo "$agent_start" >"$raw/start-agent.json"
echo "$gw_start" >"$raw/start-gateway.json"

# --- the table ---------------------------------------------------------------------------------------
elapsed=$(( $(date +%s) - started ))
busy_end=$(cpu_busy)
report=$out/latest.md
{
  echo "# tokenwarden load benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $("$tw" --version 2>/dev/null | head -n 1), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "wrk -t1 -c$conns, ${seconds} s per run after a ${warmup} s warm-up, loopback; peers measured in the same run; $rounds round(s) per row (median). CPU use of the machine with the benchmark idle: ${busy_start} % before the start, ${busy_end} % at the end."
  echo "nginx $(nginx -v 2>&1 | sed 's|.*/||'): worker_processes auto ($nginx_workers workers); HAProxy $(haproxy -v | awk 'NR==1 {print $3}'): default thread count ($hap_threads threads); tokenwarden: gateway $gw_threads threads, agent $agent_threads threads (log level $log_level)."
  echo "Tokens: Keycloak-shaped RS256 JWTs of $token_bytes bytes, $ntokens distinct (jti). Upstream of every proxy: one nginx returning a ${#body}-byte JSON body."
  echo
  echo "| # | tokenwarden | Peer (same run) | tokenwarden | Peer | Ratio | Goal | Met |"
  echo "|---|---|---|---|---|---|---|---|"
  names=(
    ""
    "Gateway: verify (cached, same token) + proxy|nginx plain reverse proxy (no auth)|1.0"
    "Gateway: verify + authorize (role map rule) + proxy|nginx plain reverse proxy (no auth)|1.0"
    "Gateway: a distinct token per request (${ntokens} cycled) + proxy|HAProxy jwt_verify RS256 + proxy, distinct tokens|1.2"
    "Gateway: same token + proxy|HAProxy jwt_verify RS256 + proxy, same token|1.8"
    "Forward-auth decision (GET /auth, same token)|nginx plain reverse proxy (no auth)|1.2"
    "Agent: token from the local API (GET /v1/token/bench)|nginx return 200 (body as long as the agent's)|0.8"
    "Agent: injecting proxy|nginx plain reverse proxy (no auth)|1.0"
  )
  for r in 1 2 3 4 5 6 7; do
    IFS='|' read -r what peer goal <<<"${names[$r]}"
    if [ "${tw_bad[$r]}" != 0 ] || [ "${peer_bad[$r]}" != 0 ]; then
      printf '| %s | %s | %s | invalid (%s bad answers) | invalid (%s bad answers) | - | >= %s | invalid |\n' \
        "$r" "$what" "$peer" "${tw_bad[$r]}" "${peer_bad[$r]}" "$goal"
      continue
    fi
    awk -v r="$r" -v what="$what" -v peer="$peer" -v t="${tw_rate[$r]}" -v p="${peer_rate[$r]}" -v g="$goal" 'BEGIN {
      ratio = t / p
      printf "| %s | %s | %s | %.0f req/s | %.0f req/s | %.2f | >= %s | %s |\n", r, what, peer, t, p, ratio, g, (ratio >= g ? "met" : "not met")
    }'
  done
  awk -v kb="$gw_rss" -v n="$ntokens" -v hwm="$gw_hwm" -v bad="${once_bad:-0}" -v ready="$gw_rss_ready" 'BEGIN {
    mb = kb / 1024
    if (bad > 0) { printf "| 8 | Gateway RSS after %d distinct tokens verified | - | invalid (%d bad answers) | | | <= 64 MB | invalid |\n", n, bad; exit }
    printf "| 8 | Gateway RSS (VmRSS) after %d distinct tokens verified | - | %.1f MB (peak %.1f MB; %.1f MB once ready) | | | <= 64 MB | %s |\n", n, mb, hwm / 1024, ready / 1024, (mb <= 64 ? "met" : "not met")
  }'
  /usr/bin/python3 - "$agent_start" "$gw_start" "$agent_rss_loaded" <<'EOF'
import json, statistics, sys
agent, gw = json.loads(sys.argv[1]), json.loads(sys.argv[2])
loaded = int(sys.argv[3]) / 1024
mb = agent["rss_kb"] / 1024
print(f"| 9 | Agent RSS (VmRSS) idle, one profile, after its first token | - | {mb:.1f} MB "
      f"(the benchmarked agent after rows 6-7: {loaded:.1f} MB) | | | <= 12 MB | {'met' if mb <= 12 else 'not met'} |")
for name, d in (("agent", agent), ("gateway", gw)):
    med = statistics.median(d["ms"])
    print(f"| 10 | Start to ready ({name}: spawn to /readyz 200), median of {len(d['ms'])} | - | "
          f"{med:.1f} ms (min {min(d['ms']):.1f}, max {max(d['ms']):.1f}) | | | <= 50 ms | "
          f"{'met' if med <= 50 else 'not met'} |")
EOF
  echo
  echo "Ratio: tokenwarden's req/s over the peer's. Row 8: after rows 1-7 and a pass sending each of the $ntokens tokens once ($once_reqs requests). Run took ${elapsed} s; raw wrk output in target/bench/raw/."
} >"$report"
log "done in ${elapsed} s: $report"
cat "$report"
# A row that saw a wrong answer measured nothing: the run fails.
if grep -q '| invalid' "$report"; then
  echo "error: some rows saw answers other than 2xx (see $raw)" >&2
  exit 1
fi
