#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ with libFuzzer on stable Rust (coverage-guided: the targets are
# built with LLVM's sanitizer-coverage instrumentation, as cargo-fuzz does, without a nightly
# toolchain or AddressSanitizer; Rust's own checks catch what they catch: panics, overflow,
# out-of-bounds).
#   scripts/fuzz.sh                 every target for 20 s each (what scripts/test.sh runs)
#   scripts/fuzz.sh 300             every target for 300 s each
#   scripts/fuzz.sh --runs 10000000 every target for 10 million executions
#   FUZZ_TARGETS="canonical_path" scripts/fuzz.sh 60
# Seeds: fuzz/seeds/<target>/ (committed) and the repository's own examples; new interesting
# inputs go to target/fuzz-corpus/<target>/ (kept between runs, not committed). A crash leaves
# its input in target/fuzz-artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

number() { [[ "$1" =~ ^[1-9][0-9]*$ ]] || { echo "error: '$1' is not a positive whole number" >&2; exit 2; }; }
if [ "${1:-}" = "--runs" ]; then
  number "${2:-}"; limit=(-runs="$2")
else
  number "${1:-20}"; limit=(-max_total_time="${1:-20}")
fi

# The flags cargo-fuzz passes for coverage, without its nightly-only sanitizer flags.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$root/target/fuzz-build"
# An explicit --target keeps the instrumentation out of build scripts and proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
echo "==> building the fuzz targets (release, instrumented)"
cargo build --manifest-path fuzz/Cargo.toml --release --locked --bins --target "$host" -q

targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^tokenwarden-fuzz$')}
seeds_for() {
  case "$1" in
    config_load) echo "$root/examples" ;;
    realm_export) echo "$root/examples/realms $root/testing/fixtures/keycloak" ;;
  esac
}
status=0
for t in $targets; do
  corpus="$root/target/fuzz-corpus/$t" artifacts="$root/target/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  dirs=("$corpus")
  [ -d "fuzz/seeds/$t" ] && dirs+=("$root/fuzz/seeds/$t")
  for d in $(seeds_for "$t"); do dirs+=("$d"); done
  echo "==> fuzzing $t (${limit[*]})"
  log="$root/target/fuzz-artifacts/$t.log"
  if "$CARGO_TARGET_DIR/$host/release/$t" "${limit[@]}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" "${dirs[@]}" >"$log" 2>&1; then
    { grep -E '^stat::number_of_executed_units|^Done ' "$log" || true; } | sed "s/^/    $t: /"
  else
    echo "    $t: CRASH or failure; input in $artifacts/, log:" >&2
    tail -40 "$log" >&2
    status=1
  fi
done
exit $status
