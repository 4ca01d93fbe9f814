#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs them all.
#   scripts/test.sh            everything (format, lints, unit and integration tests)
# Needs: a Rust toolchain (cargo), Node.js >= 20 with npm, and (as root) Debian's apt for
# anything missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-off build (CI) gains nothing from incremental compilation and its caches take gigabytes.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi

log() { printf '\n==> %s\n' "$*"; }

# apt_install: installs missing Debian packages, without starting their services.
# shellcheck source=scripts/lib/apt.sh
source scripts/lib/apt.sh

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
# nginx: the forward-auth tests run a real nginx with auth_request.
apt_install nginx
# curl and openssl: the README's commands, run as written by tests/readme_commands.rs.
apt_install curl openssl
# postgresql: the storage tests (tw-store) run the same scenarios on SQLite and a real PostgreSQL.
apt_install postgresql
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "error: Node.js >= 20 is needed for the test IdP (found $(node --version))" >&2
  exit 1
fi

log "installing the test IdP (oidc-provider, pinned by testing/idp/package-lock.json)"
(cd testing/idp && npm ci --no-audit --no-fund --loglevel=error)

log "test IdP self-test"
(cd testing/idp && npm test --silent)

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo check: the slim binary (no dev issuer, no demo) builds"
cargo check -p tokenwarden --no-default-features --locked

log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test (unit and integration tests; the IdP is started by the tests)"
cargo test --workspace --locked --no-fail-fast

log "fuzzing: every target in fuzz/ for ${TW_FUZZ_SECONDS:-20} s (scripts/fuzz.sh)"
scripts/fuzz.sh "${TW_FUZZ_SECONDS:-20}"

log "the README's main-job command, non-interactively (tokenwarden demo --once)"
demo_dir=$(mktemp -d)
cargo run -q --locked -p tokenwarden -- demo --once --base-port 0 --dir "$demo_dir"
rm -rf "$demo_dir"

log "the load benchmark, briefly (scripts/bench.sh with the debug binary: 1 s per row, 2,000 tokens)"
TW_BIN="${CARGO_TARGET_DIR:-target}/debug/tokenwarden" TW_BENCH_SECONDS=1 TW_BENCH_WARMUP=1 \
  TW_BENCH_TOKENS=2000 scripts/bench.sh >/dev/null

log "all tests passed"
