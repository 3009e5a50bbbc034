#!/usr/bin/env bash
# Benchmark (not a test): `userprov import` of N generated users into the embedded queue, with
# elapsed time and peak memory (GNU time's "Maximum resident set size").
#
#   infra/scripts/bench-import.sh [N] [path/to/userprov]
#
# Default N = 100000 and the debug binary of $CARGO_TARGET_DIR (or target/); build it first with
# `cargo build -p userprov-cli` (or --release and pass target/release/userprov).
# With DRAIN=1 the queued jobs are then provisioned by `userprov serve --mock-target` (the
# built-in mock SCIM target), timed until the queue is empty, with the server's peak RSS (VmHWM).
#
# Measured on the shared 2-core build machine (load ~5), debug binary:
#   10,000 users:  import 8.7 s, peak RSS 35 MiB (dry run 2.4 s, 25 MiB)
#   100,000 users: import 104 s, peak RSS 105 MiB (dry run 17 s, 31 MiB); queue file 159 MiB
#   drain of 10,000 jobs through serve --mock-target (4 workers): ~9,900 in ~9.5 min (~17 jobs/s)
set -euo pipefail
n="${1:-100000}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
binary="${2:-${CARGO_TARGET_DIR:-$root/target}/debug/userprov}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 15-character User ids: 0058a + 10 digits. The built-in example app "slack" requires
# Username, LastName and Email.
awk -v n="$n" 'BEGIN {
  print "Id,Username,FirstName,LastName,Email,Title,Department,IsActive";
  for (i = 1; i <= n; i++)
    printf "0058a%010d,user%d@acme.example,First%d,Last%d,user%d@acme.example,Engineer,R&D,true\n", i, i, i, i, i;
}' > "$work/users.csv"
echo "generated $n users: $(du -h "$work/users.csv" | cut -f1)"

measure() {
  /usr/bin/time -f 'elapsed %e s, peak RSS %M KiB' "$@"
}
echo "--- dry run (check + plan against the links, nothing queued)"
measure "$binary" import --app slack "$work/users.csv" --data-dir "$work/data" --dry-run | tail -3
echo "--- import (check pass + queue pass, no rate limit)"
measure "$binary" import --app slack "$work/users.csv" --data-dir "$work/data" --rate 0
echo "--- again (the checkpoint says done)"
measure "$binary" import --app slack "$work/users.csv" --data-dir "$work/data" --rate 0
du -h "$work/data/userprov.redb" | sed 's/^/queue database: /'

if [ "${DRAIN:-0}" = "1" ]; then
  echo "--- drain: userprov serve --mock-target until the queue is empty"
  port=$((20000 + RANDOM % 20000))
  started=$(date +%s.%N)
  "$binary" serve --mock-target --data-dir "$work/data" --port "$port" --workers "${WORKERS:-4}" \
    >"$work/serve.log" 2>&1 &
  serve_pid=$!
  trap 'kill -TERM "$serve_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
  while :; do
    depth="$(curl -fsS "http://127.0.0.1:$port/queue" 2>/dev/null || true)"
    if [ -n "$depth" ] && python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["visible"]+d["in_flight"]+d["delayed"]==0 else 1)' "$depth"; then
      break
    fi
    kill -0 "$serve_pid" || { echo "serve exited:"; tail -20 "$work/serve.log"; exit 1; }
    sleep 1
  done
  ended=$(date +%s.%N)
  hwm="$(grep VmHWM /proc/$serve_pid/status | awk '{print $2, $3}')"
  kill -TERM "$serve_pid"; wait "$serve_pid" || true
  echo "drained in $(python3 -c "print(round($ended - $started, 1))") s (serve start included), serve peak RSS $hwm; final depth $depth"
fi
