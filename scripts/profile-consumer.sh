#!/usr/bin/env bash
# Profiles hookline-consumer during a benchmark drain (signing + JWE, one consumer process) with
# `perf record` (DWARF call graphs), then prints where its CPU time went by component
# (scripts/perf-breakdown.py). Sampling slows the consumer down (about half its throughput), so
# read the shares, not the speed. Needs perf (Debian: linux-perf) and `make bench`'s release build.
#   scripts/profile-consumer.sh [OUT_DIR]   (default /tmp/hookline-profile)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/hookline-profile}"
TARGET="${CARGO_TARGET_DIR:-target}"
mkdir -p "$OUT"
cargo build --release -p hookline-bench -p hookline-consumer -p hookline-publisher >&2
export TANSU_BIN="${TANSU_BIN:-$(scripts/ensure-tansu.sh)}"
"$TARGET/release/hookline-bench" --scenarios drain --sealing jwe --consumers 1 --runs 1 --no-write \
    >"$OUT/bench.log" 2>&1 &
bench=$!
pid=""
for _ in $(seq 1 600); do
    pid=$(pgrep -n -f "$TARGET/release/hookline-consumer" || true)
    [[ -n "$pid" ]] && break
    sleep 0.05
done
[[ -n "$pid" ]] || { echo "no hookline-consumer process appeared; see $OUT/bench.log" >&2; exit 1; }
perf record -F 999 --call-graph dwarf,16384 -p "$pid" -o "$OUT/consumer.data" 2>"$OUT/perf.log" || true
wait "$bench"
grep "deliveries in" "$OUT/bench.log" >&2 || true
perf script -i "$OUT/consumer.data" 2>/dev/null >"$OUT/consumer.script"
python3 scripts/perf-breakdown.py "$OUT/consumer.script"
