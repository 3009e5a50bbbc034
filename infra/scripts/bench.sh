#!/usr/bin/env bash
# The whole benchmark suite in one command (issue 10). Benchmarks, not tests: it fails only when
# a driver breaks, never on a slow figure.
#
#   bash infra/scripts/bench.sh            full run (release profile, about an hour on 2 cores);
#                                          rewrites the suite's section of docs/performance.md
#   bash infra/scripts/bench.sh --quick    every driver at a small size in the dev profile (a few
#                                          minutes; CI runs it); writes
#                                          $CARGO_TARGET_DIR/bench-quick/performance.md only
#
# Options (environment), for a machine too slow or too loaded for the full sizes; the report
# states the sizes used: BENCH_PROFILE (cargo profile of the drivers: release for a full run,
# dev for --quick), ENQUEUE_MESSAGES (3 Outbound Messages of 100 per app count), OVERHEAD_JOBS
# (2000), LATENCY_EVENTS (10000), LATENCY_RATE (events offered per second, 50), SCALE_USERS
# (100000), SKIP_LAMBDAS=1 (keep the Lambda figures of the last bench-lambdas.sh run instead of
# a release build of the three functions, which takes about 20 minutes cold).
#
# The figures and how each is measured: docs/performance.md, "The benchmark suite".
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
export CARGO_TARGET_DIR="$target"
if [ "$quick" = 1 ]; then
  profile="${BENCH_PROFILE:-dev}"; out="$target/bench-quick"; q="--quick"
else
  profile="${BENCH_PROFILE:-release}"; out="$target/bench"; q=""
fi
profile_dir="$profile"; [ "$profile" = dev ] && profile_dir=debug
bin="$target/$profile_dir"
rm -rf "$out"; mkdir -p "$out"
step() { printf '\n==> %s\n' "$*" >&2; }
# Every command that produces a figure is recorded, as run, for the report.
run() { printf '%s\n' "$*" | sed "s|$target/|\$CARGO_TARGET_DIR/|g" >> "$out/commands.txt"; "$@"; }
started=$(date +%s)
touch "$out/started"

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
# The load during the run, sampled every 10 s (the machine is shared with other builds).
( while :; do cut -d' ' -f1 /proc/loadavg >> "$out/load.txt"; sleep 10; done ) &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT

step "Build the drivers (profile $profile)"
drivers=(-p userprov-cli -p userprov-tests --bin userprov --bin perf_suite --bin rate_limit_bench)
# Quick mode probes the debug functions: one build, so the features are unified once.
[ "$quick" = 1 ] && drivers+=(-p userprov-webhook -p userprov-worker -p userprov-log-api
  --bin userprov-webhook --bin userprov-worker --bin userprov-log-api --bin lambda-probe)
cargo build --locked --profile "$profile" "${drivers[@]}"

step "(1) Webhook parse and normalise against the bare parse (the ingest bench)"
if [ "$quick" = 1 ]; then
  # A quick check that the bench builds and runs once per case: criterion's test mode when it
  # is a criterion bench; a plain timing loop cannot be shortened, so it is only built.
  if grep -q criterion shared/core/benches/ingest.rs; then
    run cargo bench --locked --profile "$profile" -p userprov-core --bench ingest -- --test | tee "$out/ingest.txt"
  else
    run cargo bench --locked --profile "$profile" -p userprov-core --bench ingest --no-run 2>&1 | tee "$out/ingest.txt"
  fi
  echo "quick" > "$out/ingest.mode"
else
  run cargo bench --locked -p userprov-core --bench ingest | tee "$out/ingest.txt"
  # Criterion's estimates of this run (none when the bench is a plain timing loop).
  if [ -d "$target/criterion" ]; then
    find "$target/criterion" -path '*/new/estimates.json' -newer "$out/started" | while read -r file; do
      rel="${file#"$target/criterion/"}"
      mkdir -p "$out/criterion/$(dirname "$rel")"
      cp "$file" "$out/criterion/$rel"
      [ -f "$(dirname "$file")/benchmark.json" ] && cp "$(dirname "$file")/benchmark.json" "$out/criterion/$(dirname "$rel")/"
    done
  fi
  echo "full" > "$out/ingest.mode"
fi

step "(2) Enqueue efficiency against moto"
run "$bin/perf_suite" enqueue $q ${ENQUEUE_MESSAGES:+--count "$ENQUEUE_MESSAGES"} > "$out/enqueue.json"
cat "$out/enqueue.json"

step "(3) Worker overhead per job"
run "$bin/perf_suite" overhead $q ${OVERHEAD_JOBS:+--count "$OVERHEAD_JOBS"} > "$out/overhead.json"
cat "$out/overhead.json"

step "(4) Event-to-account latency"
latency_args=()
[ -n "${LATENCY_EVENTS:-}" ] && latency_args+=(--count "$LATENCY_EVENTS")
[ -n "${LATENCY_RATE:-}" ] && latency_args+=(--rate "$LATENCY_RATE")
run "$bin/perf_suite" latency $q "${latency_args[@]}" > "$out/latency.json"
cat "$out/latency.json"

step "(5) Rate-limit utilisation (rate_limit_bench)"
if [ "$quick" = 1 ]; then rl_runs="20:3"; else rl_runs="20:10 50:10"; fi
: > "$out/rate_limit.txt"
for limit_seconds in $rl_runs; do
  run "$bin/rate_limit_bench" "${limit_seconds%%:*}" "${limit_seconds##*:}" 16 | tee -a "$out/rate_limit.txt"
done

step "(6) Lambda functions: size, cold init, peak memory"
if [ "$quick" = 1 ]; then
  # The debug functions through the same probe, one spawn each: checks the probe, not figures.
  run "$bin/lambda-probe" --spawns 1 --webhook "$bin/userprov-webhook" \
    --worker "$bin/userprov-worker" --log-api "$bin/userprov-log-api" > "$out/lambdas.md"
  echo "quick (debug binaries, one spawn)" > "$out/lambdas.mode"
else
  if [ "${SKIP_LAMBDAS:-0}" = 1 ]; then
    echo "earlier run of bench-lambdas.sh (SKIP_LAMBDAS=1)" > "$out/lambdas.mode"
  else
    run bash infra/scripts/bench-lambdas.sh
    echo "this run" > "$out/lambdas.mode"
  fi
  sed -n '/<!-- bench-lambdas:begin/,/<!-- bench-lambdas:end/p' docs/performance.md > "$out/lambdas.md"
fi
test -s "$out/lambdas.md" || { echo "no Lambda figures (bench-lambdas section of docs/performance.md)" >&2; exit 1; }

step "(7) Scale: users imported and provisioned end to end (bench-import.sh)"
if [ "$quick" = 1 ]; then
  if grep -q -- '--quick' infra/scripts/bench-import.sh; then
    run env DRAIN=1 bash infra/scripts/bench-import.sh --quick 2>&1 | tee "$out/scale.txt"
  else
    run env DRAIN=1 bash infra/scripts/bench-import.sh 300 "$bin/userprov" 2>&1 | tee "$out/scale.txt"
  fi
else
  run env DRAIN=1 WORKERS=4 bash infra/scripts/bench-import.sh "${SCALE_USERS:-100000}" "$bin/userprov" 2>&1 | tee "$out/scale.txt"
fi

echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.env"
echo "seconds=$(( $(date +%s) - started ))" >> "$out/machine.env"

step "Report"
if [ "$quick" = 1 ]; then
  cp docs/performance.md "$out/performance.md"
  python3 infra/scripts/bench_report.py "$out" "$out/performance.md"
  echo "quick run: report in $out/performance.md (docs/performance.md left as it is)" >&2
else
  python3 infra/scripts/bench_report.py "$out" docs/performance.md
  echo "docs/performance.md updated" >&2
fi
