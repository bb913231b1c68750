#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60) and prints one line
# per target: executions, coverage, corpus size. Stops at the first crash, leaving the
# input under fuzz/artifacts/<target>/. The corpus grows in fuzz/corpus/<target>/ (not
# committed); the hand-written valid inputs in fuzz/seeds/<target>/ start it.
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets through the -Z flags cargo-fuzz
# passes to rustc (sanitizer, coverage instrumentation). Needs `cargo install cargo-fuzz`.
#
#   ./scripts/fuzz.sh            # 60 s per target
#   ./scripts/fuzz.sh 600 topics # 10 minutes on one target
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 2
fi
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -O >/dev/null
for t in "${targets[@]}"; do
  log=$(mktemp)
  dirs=("fuzz/corpus/$t")
  mkdir -p "${dirs[0]}"
  if [ -d "fuzz/seeds/$t" ]; then
    dirs+=("fuzz/seeds/$t")
  fi
  if ! cargo fuzz run -O "$t" "${dirs[@]}" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    echo "CRASH in $t: the input is under fuzz/artifacts/$t/" >&2
    rm -f "$log"
    exit 1
  fi
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$done_line")
  printf '%-24s %10s runs in %ss, coverage %s edges, corpus %s, no crash\n' "$t" "$runs" "$secs" "$cov" "$corp"
  rm -f "$log"
done
