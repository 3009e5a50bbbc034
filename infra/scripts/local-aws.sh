#!/usr/bin/env bash
# The SAM application deployed into a local AWS emulator (ministack), with the real function
# binaries running as processes. No AWS account, no Docker.
#
#   infra/scripts/local-aws.sh up [--port N] [--no-build] [--build-dir DIR]
#       start ministack on 127.0.0.1 (port N, else 4566 when free, else any free port), build the
#       functions for x86_64 (sam build), deploy template.yaml into it (sam deploy), apply what
#       the emulator skips, and print the local URLs.
#   infra/scripts/local-aws.sh deploy --endpoint URL [--build-dir DIR] [--out FILE]
#       deploy an already built application into a running ministack (used by the test suite,
#       which starts ministack itself) and write the deployment description as JSON to FILE.
#   infra/scripts/local-aws.sh urls      the local webhook and log API URLs of the running stack
#   infra/scripts/local-aws.sh sample    POST the 3-user Outbound Message (infra/events) to the webhook
#   infra/scripts/local-aws.sh env [webhook|worker|log-api]
#       `export` lines pointing an AWS SDK or CLI at ministack (and a deployed function's variables)
#   infra/scripts/local-aws.sh down      stop ministack (its state is in memory and goes with it)
#
# What ministack does differently from AWS, and what this script does about it:
#   - It runs provided.al2023 bootstraps as host processes and does not extract layers for them,
#     so /opt/userprov.toml does not exist: the ConfigFile parameter points the functions at
#     infra/config/userprov.toml on this machine instead.
#   - It ignores TimeToLiveSpecification and PointInTimeRecoverySpecification on deploy: TTL is
#     switched on with UpdateTimeToLive (PITR is irrelevant locally).
#   - HTTP APIs are reached through the gateway port: http://127.0.0.1:PORT/_aws/execute-api/
#     <apiId>/$default/<path>. AWS_IAM routes need an Authorization header (any SigV4 signature
#     with the test credentials; signatures are not verified).
#   - The webhook token secret gets a known value (USERPROV_LOCAL_WEBHOOK_TOKEN, default
#     local-test-token, the token in infra/events/webhook-outbound-3-users.json).
#
# State (pid, port, log, deployment JSON) lives in .data/local-aws/ (USERPROV_LOCAL_AWS_DIR).
# USERPROV_LOCAL_PARAMETERS adds template parameters, e.g. "MaxReceiveCount=2 VisibilityTimeout=5"
# to see retries and dead-lettering in seconds; USERPROV_LOCAL_LOG_LEVEL sets RUST_LOG;
# USERPROV_LOCAL_CONFIG deploys another config file (default infra/config/userprov.toml), e.g.
# one whose app points at a SCIM server on this machine.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${USERPROV_LOCAL_AWS_DIR:-$REPO/.data/local-aws}
STACK=${USERPROV_STACK:-userprov}
REGION=us-east-1
LOCAL_TOKEN=${USERPROV_LOCAL_WEBHOOK_TOKEN:-local-test-token}
LOCAL_CONFIG=${USERPROV_LOCAL_CONFIG:-$REPO/infra/config/userprov.toml}
VENV_ROOT=${USERPROV_VENV_ROOT:-$REPO}
MINISTACK=$VENV_ROOT/.venv-ministack/bin/ministack
PYTHON=$VENV_ROOT/.venv-ministack/bin/python
SAM_BIN=$VENV_ROOT/.venv-sam/bin

say() { printf '[local-aws] %s\n' "$*" >&2; }
die() { printf '[local-aws] error: %s\n' "$*" >&2; exit 1; }

need() {
    [[ -x $1 ]] || die "$1 is missing. Install the tools with: bash infra/scripts/install-test-peers.sh"
}

usage() {
    sed -n '2,/^# What ministack/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

port_in_use() {
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running_pid() {
    [[ -f $STATE/pid ]] || return 1
    local pid
    pid=$(cat "$STATE/pid")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

sdk_env() {
    export AWS_ENDPOINT_URL=$1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
        AWS_REGION=$REGION AWS_DEFAULT_REGION=$REGION
}

wait_healthy() {
    local url=$1 pid=$2 log=$3
    for _ in $(seq 1 150); do
        if "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/_ministack/health', timeout=1)" "$url" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; die "ministack exited before it was ready (log: $log)"; }
        sleep 0.2
    done
    die "ministack did not answer on $url within 30 s (log: $log)"
}

start_ministack() {
    local port=$1
    need "$MINISTACK"
    mkdir -p "$STATE"
    if pid=$(running_pid); then
        say "ministack already running (pid $pid, port $(cat "$STATE/port"))"
        return 0
    fi
    if [[ -z $port ]]; then
        if port_in_use 4566; then port=$(free_port); else port=4566; fi
    elif port_in_use "$port"; then
        die "port $port is in use"
    fi
    local url=http://127.0.0.1:$port
    say "starting ministack on $url (log: $STATE/ministack.log)"
    # Its own session (setsid), so `down` can stop it with the function processes it spawned.
    (
        cd "$STATE"
        BIND_HOST=127.0.0.1 GATEWAY_PORT=$port MINISTACK_HOST=127.0.0.1 AWS_ENDPOINT_URL=$url \
            setsid "$MINISTACK" >"$STATE/ministack.log" 2>&1 </dev/null &
        echo $! >"$STATE/pid"
    )
    echo "$port" >"$STATE/port"
    wait_healthy "$url" "$(cat "$STATE/pid")" "$STATE/ministack.log"
    say "ministack ready (pid $(cat "$STATE/pid"))"
}

build() {
    need "$SAM_BIN/sam"
    need "$SAM_BIN/cargo-lambda"
    say "building the functions for x86_64 (sam build)"
    local started=$SECONDS
    (
        cd "$REPO"
        PATH=$SAM_BIN:$PATH SAM_CLI_TELEMETRY=0 \
            "$SAM_BIN/sam" build --parameter-overrides Architecture=x86_64 >&2
    )
    say "built in $((SECONDS - started)) s"
}

# deploy ENDPOINT BUILD_DIR OUT_FILE
deploy() {
    local endpoint=$1 build_dir=$2 out=$3
    need "$SAM_BIN/sam"
    need "$PYTHON"
    [[ -f $build_dir/template.yaml ]] || die "$build_dir/template.yaml is missing: build first (sam build, or drop --no-build)"
    [[ -f $LOCAL_CONFIG ]] || die "config file $LOCAL_CONFIG is missing (USERPROV_LOCAL_CONFIG)"
    # The functions run as host processes from another directory: they need an absolute path.
    local config
    config=$(cd "$(dirname "$LOCAL_CONFIG")" && pwd)/$(basename "$LOCAL_CONFIG")
    sdk_env "$endpoint"
    local started=$SECONDS
    say "deploying stack $STACK into $endpoint"
    # Run from the repository root so sam reads samconfig.toml; the flags override its
    # interactive defaults. A short poll delay: the emulator answers at once.
    (
        cd "$REPO"
        SAM_CLI_TELEMETRY=0 SAM_CLI_POLL_DELAY=${SAM_CLI_POLL_DELAY:-1} "$SAM_BIN/sam" deploy \
            --template-file "$build_dir/template.yaml" \
            --stack-name "$STACK" --region "$REGION" \
            --resolve-s3 --capabilities CAPABILITY_IAM \
            --no-confirm-changeset --no-fail-on-empty-changeset --no-progressbar \
            --parameter-overrides Architecture=x86_64 "ConfigFile=$config" \
            "LogLevel=${USERPROV_LOCAL_LOG_LEVEL:-info}" ${USERPROV_LOCAL_PARAMETERS:-} >&2
    ) || die "sam deploy failed (ministack log: $STATE/ministack.log)"
    say "deployed in $((SECONDS - started)) s; applying what the emulator skips"
    mkdir -p "$(dirname "$out")"
    "$PYTHON" - "$STACK" "$endpoint" "$LOCAL_TOKEN" "$out" <<'EOF'
import json, sys
import boto3

stack, endpoint, token, out = sys.argv[1:5]
session = boto3.session.Session()
cfn = session.client("cloudformation")
ddb = session.client("dynamodb")
secrets = session.client("secretsmanager")

outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])}
resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
             for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]}

log_table = outputs["LogTableName"]
ttl = ddb.describe_time_to_live(TableName=log_table)["TimeToLiveDescription"]
if ttl.get("TimeToLiveStatus") != "ENABLED":
    ddb.update_time_to_live(TableName=log_table,
                            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})

secrets.put_secret_value(SecretId=outputs["WebhookTokenSecretArn"], SecretString=token)

def execute_api(api_id):
    return f"{endpoint}/_aws/execute-api/{api_id}/$default"

webhook_base = execute_api(outputs["WebhookApiId"])
deployment = {
    "stack": stack,
    "endpoint": endpoint,
    "region": session.region_name,
    "webhook_base_url": webhook_base,
    "webhook_token": token,
    "webhook_url": f"{webhook_base}/salesforce/outbound/{token}",
    "log_api_base_url": execute_api(outputs["LogApiId"]),
    "queue_url": outputs["QueueUrl"],
    "dlq_url": outputs["DlqUrl"],
    "links_table": outputs["LinksTableName"],
    "log_table": log_table,
    "webhook_token_secret": outputs["WebhookTokenSecretArn"],
    "webhook_function": resources["WebhookFunction"],
    "worker_function": resources["WorkerFunction"],
    "log_api_function": resources["LogApiFunction"],
    "event_relay_function": resources.get("EventRelayFunction"),
    "outputs": outputs,
}
with open(out, "w") as f:
    json.dump(deployment, f, indent=2)
    f.write("\n")
EOF
    say "ready in $((SECONDS - started)) s"
}

print_urls() {
    local file=$STATE/deployment.json
    [[ -f $file ]] || die "no deployment yet: run '$0 up'"
    "$PYTHON" - "$file" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"""ministack          {d['endpoint']}
webhook URL       {d['webhook_url']}
log API URL       {d['log_api_base_url']}/   (AWS_IAM: send a SigV4 Authorization header)
job queue         {d['queue_url']}
dead letters      {d['dlq_url']}
tables            {d['links_table']}, {d['log_table']}

Try it:
  infra/scripts/local-aws.sh sample          # POSTs infra/events/webhook-outbound-3-users.json's body
  eval "$(infra/scripts/local-aws.sh env)"   # then any AWS SDK or CLI talks to ministack""")
EOF
}

cmd_up() {
    local port="" build_dir="$REPO/.aws-sam/build" do_build=1
    while [[ $# -gt 0 ]]; do
        case $1 in
            --port) port=${2:?--port needs a value}; shift 2 ;;
            --build-dir) build_dir=${2:?--build-dir needs a value}; do_build=0; shift 2 ;;
            --no-build) do_build=0; shift ;;
            -h | --help) usage 0 ;;
            *) die "unknown option for up: $1" ;;
        esac
    done
    port=${port:-${GATEWAY_PORT:-}}
    start_ministack "$port"
    [[ $do_build == 1 ]] && build
    deploy "http://127.0.0.1:$(cat "$STATE/port")" "$build_dir" "$STATE/deployment.json"
    print_urls
}

cmd_deploy() {
    local endpoint="" build_dir="$REPO/.aws-sam/build" out=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --endpoint) endpoint=${2:?--endpoint needs a value}; shift 2 ;;
            --build-dir) build_dir=${2:?--build-dir needs a value}; shift 2 ;;
            --out) out=${2:?--out needs a value}; shift 2 ;;
            -h | --help) usage 0 ;;
            *) die "unknown option for deploy: $1" ;;
        esac
    done
    [[ -n $endpoint ]] || die "deploy needs --endpoint http://127.0.0.1:PORT"
    out=${out:-$STATE/deployment.json}
    deploy "$endpoint" "$build_dir" "$out"
    cat "$out"
}

cmd_down() {
    local pid
    if pid=$(running_pid); then
        say "stopping ministack (pid $pid) and the function processes it started"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    else
        say "ministack is not running"
    fi
    if [[ -f $STATE/port ]]; then
        # ministack's extracted function code, keyed by its port.
        rm -rf "/tmp/ministack-provided-code-$(cat "$STATE/port")"
    fi
    rm -f "$STATE/pid" "$STATE/port" "$STATE/deployment.json"
}

cmd_sample() {
    local file=$STATE/deployment.json
    [[ -f $file ]] || die "no deployment yet: run '$0 up'"
    "$PYTHON" - "$file" "$REPO/infra/events/webhook-outbound-3-users.json" <<'EOF'
import json, sys, urllib.error, urllib.request
deployment = json.load(open(sys.argv[1]))
event = json.load(open(sys.argv[2]))
request = urllib.request.Request(deployment["webhook_url"], data=event["body"].encode(), method="POST",
                                 headers={"content-type": event["headers"]["content-type"]})
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        status, body = response.status, response.read().decode()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read().decode()
print(f"HTTP {status}\n{body}")
sys.exit(0 if status == 200 else 1)
EOF
}

cmd_env() {
    [[ -f $STATE/port ]] || die "ministack is not running: run '$0 up'"
    local url=http://127.0.0.1:$(cat "$STATE/port") function=${1:-}
    cat <<EOF
export AWS_ENDPOINT_URL=$url
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=$REGION
export AWS_DEFAULT_REGION=$REGION
EOF
    [[ -n $function ]] || return 0
    # The deployed function's own variables, e.g. for
    #   cargo lambda watch --env-file <(infra/scripts/local-aws.sh env worker)
    [[ -f $STATE/deployment.json ]] || die "no deployment yet: run '$0 up'"
    sdk_env "$url"
    "$PYTHON" - "$STATE/deployment.json" "$function" <<'EOF'
import json, shlex, sys
import boto3
deployment = json.load(open(sys.argv[1]))
key = {"webhook": "webhook_function", "worker": "worker_function", "log-api": "log_api_function"}.get(sys.argv[2])
if key is None:
    sys.exit(f"unknown function {sys.argv[2]}: webhook, worker or log-api")
config = boto3.client("lambda").get_function_configuration(FunctionName=deployment[key])
for name, value in sorted(config.get("Environment", {}).get("Variables", {}).items()):
    print(f"export {name}={shlex.quote(value)}")
EOF
}

[[ $# -ge 1 ]] || usage
command=$1
shift
case $command in
    up) cmd_up "$@" ;;
    deploy) cmd_deploy "$@" ;;
    down) cmd_down ;;
    urls) print_urls ;;
    sample) cmd_sample ;;
    env) cmd_env "$@" ;;
    -h | --help | help) usage 0 ;;
    *) die "unknown command: $command" ;;
esac
