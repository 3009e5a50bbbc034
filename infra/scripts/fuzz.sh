#!/usr/bin/env bash
# Runs the mutation fuzzer of the Salesforce inputs (shared/core/tests/fuzz_inputs.rs) for longer
# than CI does: the SOAP parser, the JSON events parser and both webhook routes, fed mutants of
# the fixtures, checked for panics, unbounded answers and unclassified refusals.
#
#   bash infra/scripts/fuzz.sh              # 10 minutes
#   bash infra/scripts/fuzz.sh 3600         # an hour
#   FUZZ_SEED=12345 bash infra/scripts/fuzz.sh 60   # repeat a run
#
# CI runs the same test with its default of 8 seconds. A failing input is written to
# $CARGO_TARGET_DIR/tmp/fuzz-failure-<seed>.bin and the seed is printed to repeat it.
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ_SECONDS=${1:-600} cargo test --locked -p userprov-core --test fuzz_inputs -- --nocapture
