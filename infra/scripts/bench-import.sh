#!/usr/bin/env bash
# Benchmark (not a test): onboarding at scale, end to end in embedded mode. N generated users go
# through `userprov import` into the embedded queue, then `userprov serve --mock-target` (the
# built-in mock SCIM target) provisions them until the queue is empty. Figures: elapsed time and
# peak memory of each step, jobs per second, and the load average around each step (the
# machine is shared: read the figures with it).
#
#   infra/scripts/bench-import.sh [--quick] [N] [path/to/userprov]
#
#   N          users (default 100000; --quick: 2000, which CI runs in well under a minute)
#   userprov   default: $CARGO_TARGET_DIR/release/userprov if it exists, else .../debug/userprov
#              (build it with `cargo build --release -p userprov-cli`; figures for a debug
#              binary are not comparable)
#
# Environment: WORKERS (serve --workers, default: serve's own), KEEP=1 keeps the work directory.
#
# The run fails (exit 1) when the mock target does not end with exactly N accounts, or when a
# job was dead-lettered: a figure for a run that did not provision everyone is worthless. No
# time is asserted. The last line is one machine-readable summary (`result key=value ...`).
# Figures and what the profile showed: docs/performance.md, "Onboarding at scale".
set -euo pipefail

quick=0
if [ "${1:-}" = "--quick" ]; then
  quick=1
  shift
fi
n="${1:-$([ "$quick" = 1 ] && echo 2000 || echo 100000)}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ -n "${2:-}" ]; then
  binary="$2"
elif [ -x "$target_dir/release/userprov" ]; then
  binary="$target_dir/release/userprov"
else
  binary="$target_dir/debug/userprov"
fi
[ -x "$binary" ] || {
  echo "no userprov binary at $binary: build it with 'cargo build --release -p userprov-cli'" >&2
  exit 2
}
for tool in /usr/bin/time curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install time curl python3)" >&2; exit 2; }
done

work="$(mktemp -d)"
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill -TERM "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = "1" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }
seconds() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
# GNU time's report: elapsed seconds and peak RSS (KiB) of a finished command.
time_field() { awk -F': ' -v k="$2" '$1 ~ k { print $2 }' "$1" | tail -1; }
elapsed_of() {
  local wall; wall="$(time_field "$1" 'Elapsed \\(wall clock\\)')"
  python3 -c "import sys; p=[float(x) for x in sys.argv[1].split(':')]; s=0
for x in p: s=s*60+x
print(f'{s:.1f}')" "$wall"
}

echo "userprov: $binary"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(load)"

# 15-character User ids: 0058a + 10 digits. The built-in example app "slack" requires
# Username, LastName and Email. awk streams the file: nothing here holds N rows in memory.
awk -v n="$n" 'BEGIN {
  print "Id,Username,FirstName,LastName,Email,Title,Department,IsActive";
  for (i = 1; i <= n; i++)
    printf "0058a%010d,user%d@acme.example,First%d,Last%d,user%d@acme.example,Engineer,R&D,true\n", i, i, i, i, i;
}' > "$work/users.csv"
echo "generated $n users: $(du -h "$work/users.csv" | cut -f1)"

if [ "$quick" = 0 ]; then
  echo "--- dry run (check + plan against the links, nothing queued)"
  /usr/bin/time -v -o "$work/dry.time" "$binary" import --app slack "$work/users.csv" \
    --data-dir "$work/data" --dry-run | tail -3
  echo "dry run: $(elapsed_of "$work/dry.time") s, peak RSS $(time_field "$work/dry.time" 'Maximum resident') KiB"
fi

echo "--- import (check pass + queue pass, no rate limit)"
import_load="$(load)"
/usr/bin/time -v -o "$work/import.time" "$binary" import --app slack "$work/users.csv" \
  --data-dir "$work/data" --rate 0
import_s="$(elapsed_of "$work/import.time")"
import_kib="$(time_field "$work/import.time" 'Maximum resident')"
echo "import: $import_s s, peak RSS $import_kib KiB (load before: $import_load)"
echo "queue database: $(du -h "$work/data/userprov.redb" | cut -f1)"

echo "--- drain: userprov serve --mock-target until the queue is empty"
drain_load="$(load)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
workers=()
[ -n "${WORKERS:-}" ] && workers=(--workers "$WORKERS")
started="$(date +%s.%N)"
"$binary" serve --mock-target --data-dir "$work/data" --port "$port" "${workers[@]}" \
  >"$work/serve.log" 2>&1 &
serve_pid=$!
depth=""
while :; do
  depth="$(curl -fsS "http://127.0.0.1:$port/queue" 2>/dev/null || true)"
  if [ -n "$depth" ] && python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["visible"]+d["in_flight"]+d["delayed"]==0 else 1)' "$depth"; then
    break
  fi
  kill -0 "$serve_pid" 2>/dev/null || { echo "serve exited:"; tail -20 "$work/serve.log"; exit 1; }
  sleep 0.5
done
ended="$(date +%s.%N)"
drain_s="$(seconds "$started" "$ended")"
serve_kib="$(awk '/VmHWM/ { print $2 }' "/proc/$serve_pid/status")"
# The mock target accepts any bearer token; count=0 asks only for totalResults.
accounts="$(curl -fsS -H 'Authorization: Bearer bench' \
  "http://127.0.0.1:$port/mock-target/v2/Users?count=0" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["totalResults"])')"
dead="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["dead_lettered"])' "$depth")"
drain_end_load="$(load)"
kill -TERM "$serve_pid"
wait "$serve_pid" || true
serve_pid=""

rate="$(python3 -c "import sys; print(round(int(sys.argv[1]) / max(float(sys.argv[2]), 0.001), 1))" "$n" "$drain_s")"
total="$(python3 -c "import sys; print(f'{float(sys.argv[1]) + float(sys.argv[2]):.1f}')" "$import_s" "$drain_s")"
echo "drain: $drain_s s (serve start included), $rate jobs/s, serve peak RSS $serve_kib KiB; accounts in the mock target: $accounts; dead-lettered: $dead (load before: $drain_load, after: $drain_end_load)"
echo "result users=$n import_s=$import_s import_peak_kib=$import_kib drain_s=$drain_s jobs_per_s=$rate serve_peak_kib=$serve_kib total_s=$total accounts=$accounts dead_lettered=$dead load_before_import=\"$import_load\" load_before_drain=\"$drain_load\" load_after=\"$drain_end_load\""
if [ "$accounts" != "$n" ] || [ "$dead" != "0" ]; then
  echo "FAILED: expected $n accounts and no dead letter" >&2
  exit 1
fi
