#!/usr/bin/env bash
# Benchmarks the three Lambda functions on this machine and records the figures in
# docs/performance.md (between the bench-lambdas markers; the rest of the file is left alone).
#
#   bash infra/scripts/bench-lambdas.sh            # 20 spawns per function
#   SPAWNS=5 bash infra/scripts/bench-lambdas.sh
#
# 1. builds the functions in release for the host (the workspace [profile.release]);
# 2. copies each binary to $CARGO_TARGET_DIR/bench-lambdas/<function>/bootstrap and strips it;
# 3. runs the Lambda probe (tests/src/bin/lambda-probe.rs) on the stripped binaries: each is
#    spawned behind a local Lambda Runtime API, with moto server as AWS and scim2-server as the
#    target app (.venv, from infra/scripts/install-test-peers.sh), and handles one checked event
#    per spawn;
# 4. writes the machine, the commands and the results into docs/performance.md.
#
# Not part of CI: a cold release build takes tens of minutes on a small machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

SPAWNS=${SPAWNS:-20}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TARGET_DIR=$TARGET_DIR
OUT=$TARGET_DIR/bench-lambdas
DOC=docs/performance.md
BEGIN_MARK='<!-- bench-lambdas:begin (written by infra/scripts/bench-lambdas.sh; edit the script, not this section) -->'
END_MARK='<!-- bench-lambdas:end -->'
FUNCTIONS=(webhook worker log-api)

step() { printf '\n==> %s\n' "$*" >&2; }

for tool in cargo rustc strip; do
    command -v "$tool" >/dev/null || { echo "bench-lambdas: $tool is missing" >&2; exit 1; }
done
[ -x .venv/bin/moto_server ] && [ -x .venv/bin/scim2-server ] || {
    echo "bench-lambdas: moto server and scim2-server are missing; run: bash infra/scripts/install-test-peers.sh .venv" >&2
    exit 1
}

step "Release build for the host ($(uname -m)), target dir $TARGET_DIR"
build_started=$(date +%s)
cargo build --release --locked -p userprov-webhook -p userprov-worker -p userprov-log-api
build_seconds=$(( $(date +%s) - build_started ))
echo "release build: ${build_seconds}s (a no-op when nothing changed)" >&2

step "Copy and strip the binaries into $OUT/<function>/bootstrap"
for function in "${FUNCTIONS[@]}"; do
    mkdir -p "$OUT/$function"
    cp "$TARGET_DIR/release/userprov-$function" "$OUT/$function/bootstrap"
    strip "$OUT/$function/bootstrap"
    printf '  %-8s %10d bytes stripped\n' "$function" "$(stat -c %s "$OUT/$function/bootstrap")" >&2
done

step "Build the Lambda probe (debug; it only starts processes and serves the Runtime API)"
cargo build --locked -p userprov-tests --bin lambda-probe

step "Probe: $SPAWNS spawns per function, each handling one event (progress below)"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"$TARGET_DIR/debug/lambda-probe" --spawns "$SPAWNS" \
    --webhook "$OUT/webhook/bootstrap" \
    --worker "$OUT/worker/bootstrap" \
    --log-api "$OUT/log-api/bootstrap" >"$OUT/table.md"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$OUT/table.md" >&2

step "Write $DOC"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
profile=$(awk '/^\[profile.release\]/{on=1; next} /^\[/{on=0} on && NF && !/^#/' Cargo.toml | paste -sd';' - | sed 's/;/; /g')
{
    echo "$BEGIN_MARK"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores of ${cpu:-an unknown CPU}"
    echo "(Linux $(uname -r), $(uname -m)), $(rustc -V). Load average (1, 5, 15 min) before the"
    echo "probe: $load_before; after: $load_after. Release profile: \`$profile\`."
    echo
    cat "$OUT/table.md"
    echo
    echo "Commands (the script runs exactly these):"
    echo
    echo '```sh'
    echo "cargo build --release --locked -p userprov-webhook -p userprov-worker -p userprov-log-api"
    echo "cp \$CARGO_TARGET_DIR/release/userprov-<function> \$CARGO_TARGET_DIR/bench-lambdas/<function>/bootstrap"
    echo "strip \$CARGO_TARGET_DIR/bench-lambdas/<function>/bootstrap"
    echo "cargo build --locked -p userprov-tests --bin lambda-probe"
    echo "\$CARGO_TARGET_DIR/debug/lambda-probe --spawns $SPAWNS --webhook .../webhook/bootstrap --worker .../worker/bootstrap --log-api .../log-api/bootstrap"
    echo '```'
    echo
    echo "$END_MARK"
} >"$OUT/section.md"

mkdir -p docs
if [ ! -f "$DOC" ]; then
    printf '# Performance\n\n%s\n%s\n' "$BEGIN_MARK" "$END_MARK" >"$DOC"
fi
if ! grep -qF "$BEGIN_MARK" "$DOC"; then
    printf '\n%s\n%s\n' "$BEGIN_MARK" "$END_MARK" >>"$DOC"
fi
# Replace what lies between the markers (markers included) with the new section.
awk -v begin="$BEGIN_MARK" -v end="$END_MARK" -v section="$OUT/section.md" '
    $0 == begin { while ((getline line < section) > 0) print line; skipping = 1; next }
    skipping && $0 == end { skipping = 0; next }
    !skipping { print }
' "$DOC" >"$OUT/performance.md"
mv "$OUT/performance.md" "$DOC"
echo "bench-lambdas: wrote $DOC" >&2
