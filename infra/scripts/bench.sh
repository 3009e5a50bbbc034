#!/usr/bin/env bash
# The whole benchmark suite in one command (issue 10). Benchmarks, not tests: it fails only when
# a driver breaks, never on a slow figure.
#
#   infra/scripts/bench.sh            full run; rewrites the suite section of docs/performance.md
#   infra/scripts/bench.sh --quick    small sizes (a few minutes, for CI); writes
#                                     $CARGO_TARGET_DIR/bench-quick/performance.md only
#
# Options (environment): BENCH_PROFILE (cargo profile of the drivers: `perf` by default for a
# full run, `dev` for --quick), SCALE_USERS (100000), WITH_LAMBDAS=1 (re-run
# bench-lambdas.sh, a release build of the three functions, before reading its figures).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
  esac
done
target="${CARGO_TARGET_DIR:-$root/target}"
if [ "$quick" = 1 ]; then
  profile="${BENCH_PROFILE:-dev}"; out="$target/bench-quick"; scale="${SCALE_USERS:-300}"; q="--quick"
else
  profile="${BENCH_PROFILE:-perf}"; out="$target/bench"; scale="${SCALE_USERS:-100000}"; q=""
fi
profile_dir="$profile"; [ "$profile" = dev ] && profile_dir=debug
rm -rf "$out"; mkdir -p "$out"
step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "cores=$(nproc)"
  echo "memory=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -sr) $(uname -m)"
  echo "rustc=$(rustc -V)"
  echo "profile=$profile"
  echo "quick=$quick"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.env"

step "Build the drivers (profile $profile)"
cargo build --locked --profile "$profile" -p userprov-cli -p userprov-tests \
  --bin userprov --bin perf_suite --bin rate_limit_bench
bin="$target/$profile_dir"

step "(1) Ingest parse ratios (cargo bench --bench ingest)"
cargo bench --locked --profile "$profile" -p userprov-core --bench ingest | tee "$out/ingest.txt"

step "(2) Enqueue efficiency against moto (perf_suite enqueue)"
"$bin/perf_suite" enqueue $q | tee "$out/enqueue.json"

step "(3) Worker overhead per job (perf_suite overhead)"
"$bin/perf_suite" overhead $q | tee "$out/overhead.json"

step "(4) Event-to-account latency (perf_suite latency)"
"$bin/perf_suite" latency $q | tee "$out/latency.json"

step "(5) Rate-limit utilisation (rate_limit_bench)"
if [ "$quick" = 1 ]; then rl_runs="20:3"; else rl_runs="20:20 50:20"; fi
: > "$out/rate_limit.txt"
for run in $rl_runs; do
  "$bin/rate_limit_bench" "${run%%:*}" "${run##*:}" 8 | tee -a "$out/rate_limit.txt"
done

step "(6) Lambda cost figures (docs/performance.md, written by bench-lambdas.sh)"
if [ "${WITH_LAMBDAS:-0}" = 1 ]; then
  bash infra/scripts/bench-lambdas.sh
fi
sed -n '/<!-- bench-lambdas:begin/,/<!-- bench-lambdas:end/p' docs/performance.md > "$out/lambdas.md"
test -s "$out/lambdas.md" || { echo "no bench-lambdas section in docs/performance.md" >&2; exit 1; }

step "(7) Scale: $scale users imported and provisioned (bench-import.sh, DRAIN=1)"
DRAIN=1 WORKERS=4 bash infra/scripts/bench-import.sh "$scale" "$bin/userprov" | tee "$out/scale.txt"

echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.env"
echo "seconds=$(( $(date +%s) - started ))" >> "$out/machine.env"

step "Report"
if [ "$quick" = 1 ]; then
  python3 infra/scripts/bench_report.py "$out" "$out/performance.md"
  echo "quick run: report in $out/performance.md (docs/performance.md left as it is)"
else
  python3 infra/scripts/bench_report.py "$out" docs/performance.md
  echo "docs/performance.md updated"
fi
