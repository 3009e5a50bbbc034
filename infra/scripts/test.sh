#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: installs the pinned test peers into local
# virtualenvs, then checks formatting, lints, the tests against real peers, and the demo.
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "Test peers (pinned, in .venv*/ at the repository root)"
bash infra/scripts/install-test-peers.sh

step "Formatting (cargo fmt --check)"
cargo fmt --all --check

step "Lints (clippy, warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Tests (unit, integration against moto and scim2-server, end to end, the stack deployed in ministack)"
# The deployed-stack test builds the functions with `sam build`; a debug build keeps CI well
# inside its time limit (a cold release build of the three functions takes several times longer).
SAM_BUILD_MODE=${SAM_BUILD_MODE:-debug} cargo test --workspace --locked --no-fail-fast

step "The SAM template (cfn-lint, sam validate --lint)"
.venv-sam/bin/cfn-lint template.yaml
SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam validate --lint --region us-east-1 -t template.yaml

step "The demo, as the README runs it"
cargo run --quiet --locked -p userprov-cli -- demo

step "The benchmark suite in quick mode (checks that every driver still works; no figure is judged)"
bash infra/scripts/bench.sh --quick

printf '\nAll checks passed in %ss.\n' "$(( $(date +%s) - started ))"
