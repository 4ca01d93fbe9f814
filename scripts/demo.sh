#!/usr/bin/env bash
# The main job on a laptop with no Keycloak: a local IdP laid out like a Keycloak realm (the
# project's test IdP, oidc-provider), the tokenwarden agent with a file sink and the injecting
# proxy, and a sample API behind it. Shows each step, then keeps running until Ctrl-C.
#   scripts/demo.sh           run and keep running
#   scripts/demo.sh --once    run the story and exit (non-zero if a step misbehaves)
set -euo pipefail
cd "$(dirname "$0")/.."
once=false; [ "${1:-}" = "--once" ] && once=true

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "demo: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || fail "$1 is needed ($2)"; }
need cargo "install Rust from your package manager or rustup"
need node "Node.js >= 20 runs the local IdP"
need npm "npm installs the local IdP"
need python3 "Python 3 runs the sample API"
need curl "curl is used to show each step"

step "building tokenwarden"
cargo build -q -p tokenwarden
tw=target/debug/tokenwarden
[ -d testing/idp/node_modules ] || (cd testing/idp && npm ci --no-audit --no-fund --loglevel=error)

rm -rf .tw-demo && mkdir -p .tw-demo
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_http() { # URL NAME
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  fail "$2 did not come up at $1"
}

step "starting a local IdP (realm 'demo', client 'demo-agent', 60 s tokens)"
node testing/idp/server.mjs --config examples/demo-idp.json --no-exit-on-stdin-close > .tw-demo/idp.out 2> .tw-demo/idp.log &
pids+=($!)
wait_http http://127.0.0.1:8780/realms/demo/.well-known/openid-configuration "the IdP"
echo "issuer: http://127.0.0.1:8780/realms/demo"

step "starting a sample API on 127.0.0.1:8792 (it reports the token claims it receives)"
python3 scripts/demo_upstream.py 8792 &
pids+=($!)

step "starting the agent (examples/demo-agent.toml; the client secret comes from an env var)"
DEMO_AGENT_SECRET=demo-agent-secret $tw agent --config examples/demo-agent.toml 2> .tw-demo/agent.log &
pids+=($!)
wait_http http://127.0.0.1:8790/readyz "the agent"
echo "ready: every eager profile holds a token"

step "1. a script asks the agent for a token:  curl http://127.0.0.1:8790/v1/token/demo"
curl -fs http://127.0.0.1:8790/v1/token/demo | python3 -c '
import json,sys; t=json.load(sys.stdin); print("token_type=%s expires_in=%ss access_token=%s..." % (t["token_type"], t["expires_in"], t["access_token"][:16]))'

step "2. an app calls the API through the proxy, with no token logic:  curl http://127.0.0.1:8791/api/attributes"
out=$(curl -fs http://127.0.0.1:8791/api/attributes) || fail "the call through the proxy failed"
echo "$out"
echo "$out" | grep -q '"preferred_username": "service-account-demo-agent"' || fail "the API did not see the service account's token"

step "3. the file sink holds the same token, mode 0600:  .tw-demo/demo.token"
ls -l .tw-demo/demo.token
[ "$(stat -c %a .tw-demo/demo.token)" = "600" ] || fail "sink file mode is not 0600"

step "4. a forced refresh gets a new token:  curl -X POST http://127.0.0.1:8790/v1/token/demo/refresh"
before=$(cat .tw-demo/demo.token)
curl -fs -X POST http://127.0.0.1:8790/v1/token/demo/refresh > /dev/null
for _ in $(seq 1 50); do [ "$(cat .tw-demo/demo.token)" != "$before" ] && break; sleep 0.1; done
[ "$(cat .tw-demo/demo.token)" != "$before" ] || fail "the file sink was not updated after the refresh"
echo "the file sink was rewritten with the new token"

step "5. an unknown profile is a clear JSON error:  curl http://127.0.0.1:8790/v1/token/nope"
curl -s http://127.0.0.1:8790/v1/token/nope; echo

step "6. metrics:  curl http://127.0.0.1:8790/metrics | grep tokenwarden_token"
curl -fs http://127.0.0.1:8790/metrics | grep -E '^tokenwarden_token_(fetches_total|remaining_seconds)' || true

if $once; then
  step "demo finished: every step behaved as expected"
  exit 0
fi
step "the stack keeps running; try the commands above. Logs: .tw-demo/*.log. Ctrl-C to stop."
wait
