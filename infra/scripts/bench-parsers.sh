#!/usr/bin/env bash
# The webhook parsers against their bare baselines (issue 6), in one run of
# `cargo bench -p userprov-core --bench ingest`:
#   - a 100-notification Outbound Message, parsed and normalised, against a bare quick-xml scan
#     of the same bytes that reads every event and every start tag's attributes, as the parser
#     must (goal: at most 2x); the ratio to an events-only scan is printed too;
#   - a 100-event JSON batch against serde_json::from_slice::<Value> of the same bytes (goal: at
#     most 1.5x).
#
# Usage: infra/scripts/bench-parsers.sh [time|instructions|both]   (default: both)
#   time          wall-clock ratios from the bench (best of five rounds; swings on a loaded machine)
#   instructions  instruction-count ratios under callgrind: repeatable on a shared, noisy machine.
#                 Each operation runs alone in the bench binary (`--only`), N times and 0 times;
#                 the difference divided by N is its cost per message.
# Prints `ratio <name> <x>` lines (time) and `instructions <name> <x>` lines (callgrind).
# Environment: ITERATIONS (time, default 2000), CALLGRIND_ITERATIONS (default 40).
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=${1:-both}
case "$mode" in
time | instructions | both) ;;
*)
    echo "usage: $0 [time|instructions|both]" >&2
    exit 2
    ;;
esac

if [[ $mode == time || $mode == both ]]; then
    echo "== time (cargo bench -p userprov-core --bench ingest), load: $(cut -d' ' -f1-3 /proc/loadavg)"
    cargo bench -p userprov-core --bench ingest -- --iterations "${ITERATIONS:-2000}"
fi

if [[ $mode == instructions || $mode == both ]]; then
    if ! command -v valgrind >/dev/null; then
        echo "valgrind is not installed: apt-get install valgrind" >&2
        exit 1
    fi
    binary=$(cargo bench -p userprov-core --bench ingest --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "ingest":
        print(m["executable"])')
    if [[ -z $binary ]]; then
        echo "could not find the ingest bench binary" >&2
        exit 1
    fi
    n=${CALLGRIND_ITERATIONS:-40}
    # Instructions of a run of `--only $1 --iterations $2`, from callgrind's summary.
    count() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" --only "$1" --iterations "$2" 2>&1 |
            sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
    }
    declare -A per
    for operation in xml-parse xml-read xml-webhook xml-webhook-owned xml-bare-attributes xml-bare json-parse json-bare; do
        base=$(count "$operation" 0)
        full=$(count "$operation" "$n")
        per[$operation]=$(((full - base) / n))
        printf '%-20s %12d instructions per message\n' "$operation" "${per[$operation]}"
    done
    ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
    echo "instructions outbound_owned $(ratio "${per[xml-parse]}" "${per[xml-bare-attributes]}") (goal <= 2)"
    echo "instructions outbound_borrowed $(ratio "${per[xml-read]}" "${per[xml-bare-attributes]}") (goal <= 2)"
    echo "instructions outbound_borrowed_vs_events_only $(ratio "${per[xml-read]}" "${per[xml-bare]}")"
    echo "instructions outbound_webhook_vs_events_only $(ratio "${per[xml-webhook]}" "${per[xml-bare]}") (reference: the read plus every job's JSON)"
    echo "instructions outbound_webhook_owned_vs_events_only $(ratio "${per[xml-webhook-owned]}" "${per[xml-bare]}") (reference: the same jobs through owned users, as the webhook wrote them before)"
    echo "instructions json $(ratio "${per[json-parse]}" "${per[json-bare]}") (goal <= 1.5)"
fi
