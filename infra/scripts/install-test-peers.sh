#!/usr/bin/env bash
# Installs the test peers and tools into virtual environments at the repository root, pinned:
#
#   .venv            moto[server] (AWS APIs for the adapter tests), scim2-server (the SCIM target)
#   .venv-ministack  ministack (local AWS that runs the deployed stack) + aws-sam-translator
#   .venv-sam        aws-sam-cli, cfn-lint, cargo-lambda (with zig): build and check template.yaml
#   .venv-schemathesis  schemathesis: checks the log API's answers against infra/openapi/log-api.json
#   .tools/oidc-provider  oidc-provider from npm (the OAuth2 authorization server of the credential
#                    tests), installed from tests/peers/oidc-provider/package-lock.json with `npm ci`
#   chromium         Debian's headless-capable Chromium (the dashboard test drives it over the
#                    DevTools protocol); installed with apt-get only when `chromium` is missing
#
# Idempotent: a venv whose installed versions already match its pins is left alone (a stamp
# file records the pins it was made with). Every package, direct or not, is pinned: the lists
# below are the complete resolved sets, used as pip constraints.
#
#   bash infra/scripts/install-test-peers.sh            # all three
#   bash infra/scripts/install-test-peers.sh .venv-sam  # only the named ones (.venv, .venv-ministack,
#                                                       # .venv-sam, .venv-schemathesis, .tools/oidc-provider)
#
# USERPROV_PYTHON picks the interpreter (default python3, 3.10 or newer).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${USERPROV_PYTHON:-python3}
STAMP_NAME=.userprov-pins
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { printf '[install-test-peers] %s\n' "$*" >&2; }
die() { printf '[install-test-peers] error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set USERPROV_PYTHON)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
    die "$PYTHON is $("$PYTHON" --version 2>&1); 3.10 or newer is needed (set USERPROV_PYTHON)"

# True when every NAME==VERSION line of the constraints file is what the venv has installed.
pins_installed() {
    local venv=$1 constraints=$2
    "$venv/bin/python" - "$constraints" <<'EOF'
import re, sys
from importlib import metadata

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

installed = {norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
wrong = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    name, version = line.split("==")
    have = installed.get(norm(name.split("[")[0]))
    if have != version:
        wrong.append(f"{name}=={version} (have {have})")
if wrong:
    print("  differs: " + ", ".join(wrong[:5]) + (" ..." if len(wrong) > 5 else ""), file=sys.stderr)
    sys.exit(1)
EOF
}

# ensure_venv NAME REQUIREMENT... < constraints
ensure_venv() {
    local name=$1
    shift
    local dir=$REPO/$name constraints=$WORK/$name.constraints stamp want
    cat >"$constraints"
    want=$({ printf '%s\n' "$@"; cat "$constraints"; } | sha256sum | cut -c1-32)
    stamp=$dir/$STAMP_NAME

    if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && [[ -x $dir/bin/python ]]; then
        say "$name: up to date ($*)"
        return 0
    fi
    if [[ -x $dir/bin/python ]] && pins_installed "$dir" "$constraints"; then
        say "$name: already has the pinned versions ($*)"
        # A venv shared through a symlink belongs to another checkout: leave it as it is.
        [[ -L $dir ]] || echo "$want" >"$stamp"
        return 0
    fi

    if [[ -L $dir ]]; then
        say "$name: replacing the symlink $(readlink "$dir") (other versions) with a venv of its own"
        rm "$dir"
    elif [[ -e $dir ]]; then
        say "$name: exists with other versions; recreating it"
        rm -rf "$dir"
    fi
    say "$name: creating with $("$PYTHON" --version 2>&1) and installing $*"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --constraint "$constraints" "$@"
    pins_installed "$dir" "$constraints" || die "$name: installed versions differ from the pins"
    echo "$want" >"$stamp"
    say "$name: ready"
}

selected() {
    [[ ${#WANTED[@]} -eq 0 ]] && return 0
    local w
    for w in "${WANTED[@]}"; do [[ $w == "$1" ]] && return 0; done
    return 1
}

WANTED=("$@")
for w in "${WANTED[@]}"; do
    case $w in .venv | .venv-ministack | .venv-sam | .venv-schemathesis | .tools/oidc-provider | .tools/json-server | chromium) ;; *) die "unknown peer $w (.venv, .venv-ministack, .venv-sam, .venv-schemathesis, .tools/oidc-provider, .tools/json-server or chromium)" ;; esac
done

if selected .venv; then
    ensure_venv .venv 'moto[server]==5.2.5' 'scim2-server==0.8.3' <<'PINS'
annotated-types==0.8.0
antlr4-python3-runtime==4.13.2
attrs==26.1.0
aws-xray-sdk==2.15.0
blinker==1.9.0
boto3==1.44.8
botocore==1.44.8
certifi==2026.10.19.post1
cffi==2.1.1
cfn-lint==1.58.0
charset-normalizer==3.5.3
click==8.5.1
cryptography==50.0.2
dnspython==2.9.2
docker==7.2.0
email-validator==2.4.0
Flask==3.1.3
flask-cors==6.0.5
graphql-core==3.3.2
idna==3.20
itsdangerous==2.2.0
Jinja2==3.1.6
jmespath==1.1.0
joserfc==1.8.0
jsonpatch==1.48
jsonpath-ng==1.16.0
jsonpointer==3.12
jsonschema==4.26.0
jsonschema-path==0.5.0
jsonschema-specifications==2025.9.1
lark==1.3.1
lazy-object-proxy==1.13.0
MarkupSafe==3.0.4
moto==5.2.5
mpmath==1.3.0
networkx==3.6.1
openapi-schema-validator==0.9.0
openapi-spec-validator==0.9.0
pathable==0.6.0
py-partiql-parser==0.6.3
pycparser==3.12
pydantic==2.14.4
pydantic-settings==2.16.3
pydantic_core==2.50.5
pyparsing==3.3.3
python-dateutil==2.9.0.post0
python-dotenv==1.2.4
PyYAML==6.0.4
referencing==0.37.0
regex==2026.11.19
requests==2.34.2
responses==0.26.3
rfc3339-validator==0.1.4
rpds-py==2026.9.1
s3transfer==0.19.3
scim2-models==0.12.3
scim2-server==0.8.3
six==1.17.0
sympy==1.14.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
Werkzeug==3.1.9
wrapt==2.5.2
xmltodict==1.0.4
PINS
fi

if selected .venv-ministack; then
    ensure_venv .venv-ministack 'ministack==1.5.33' 'aws-sam-translator==1.115.0' <<'PINS'
annotated-types==0.8.0
attrs==26.1.0
aws-sam-translator==1.115.0
boto3==1.43.106
botocore==1.43.106
defusedxml==0.7.1
graphql-core==3.2.12
h11==0.16.0
h2==4.4.1
hpack==4.2.0
Hypercorn==0.18.0
hyperframe==6.1.0
jmespath==1.1.0
jsonata-python==0.7.1
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
ministack==1.5.33
priority==2.0.0
pydantic==2.13.5
pydantic_core==2.46.5
python-dateutil==2.9.0.post0
PyYAML==6.0.4
referencing==0.37.0
rpds-py==2026.9.1
s3transfer==0.19.3
six==1.17.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
wsproto==1.3.2
PINS
fi

if selected .venv-sam; then
    ensure_venv .venv-sam 'aws-sam-cli==1.170.0' 'cfn-lint==1.58.0' 'cargo-lambda==1.9.2' <<'PINS'
annotated-types==0.8.0
arrow==1.4.0
attrs==26.1.0
aws-sam-cli==1.170.0
aws-sam-translator==1.115.0
aws_lambda_builders==1.67.0
awscrt==0.38.0
binaryornot==0.6.0
blinker==1.9.0
boto3==1.43.108
boto3-stubs==1.43.126
botocore==1.43.127
botocore-stubs==1.43.126
cargo-lambda==1.9.2
certifi==2026.10.19.post1
cffi==2.1.1
cfn-lint==1.58.0
charset-normalizer==3.5.3
chevron==0.14.0
click==8.1.8
cookiecutter==2.7.1
cryptography==50.0.2
dateparser==1.5.0
docker==7.2.0
Flask==3.1.3
idna==3.20
itsdangerous==2.2.0
Jinja2==3.1.6
jmespath==1.1.0
jsonpatch==1.48
jsonpointer==3.12
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
mpmath==1.3.0
mypy-boto3-apigateway==1.43.100
mypy-boto3-cloudformation==1.43.110
mypy-boto3-ecr==1.43.119
mypy-boto3-iam==1.43.70
mypy-boto3-kinesis==1.43.101
mypy-boto3-lambda==1.43.118
mypy-boto3-s3==1.43.106
mypy-boto3-schemas==1.43.0
mypy-boto3-secretsmanager==1.43.0
mypy-boto3-signer==1.43.0
mypy-boto3-sqs==1.43.0
mypy-boto3-stepfunctions==1.43.117
mypy-boto3-sts==1.43.94
mypy-boto3-xray==1.43.115
networkx==3.6.1
packaging==26.4
pycparser==3.12
pydantic==2.13.5
pydantic_core==2.46.5
Pygments==2.21.0
pyOpenSSL==26.4.0
python-dateutil==2.9.0.post0
python-dotenv==1.2.4
python-slugify==9.2.0
pytz==2026.6
PyYAML==6.0.4
referencing==0.37.0
regex==2026.11.19
requests==2.34.2
rich==15.0.0
rpds-py==2026.9.1
ruamel.yaml==0.19.1
s3transfer==0.19.3
six==1.17.0
sympy==1.14.0
text-unidecode==1.3
tomlkit==0.15.1
types-s3transfer==0.19.3
typing-inspection==0.4.5
typing_extensions==4.16.0
tzdata==2026.6
tzlocal==5.4.4
urllib3==2.8.0
watchdog==4.0.2
Werkzeug==3.1.9
ziglang==0.17.1
PINS
fi

if selected .venv-schemathesis; then
    ensure_venv .venv-schemathesis 'schemathesis==4.32.5' <<'PINS'
anyio==4.16.0
certifi==2026.10.19.post1
charset-normalizer==3.5.3
click==8.5.1
graphql-core==3.3.2
harfile==0.6.0
hypothesis==6.170.17
hypothesis-graphql==0.13.5
idna==3.20
iniconfig==2.3.1
jsonschema_rs==0.60.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
packaging==26.4
pluggy==1.7.0
Pygments==2.21.0
pyrate-limiter==4.5.1
pytest==9.2.0
PyYAML==6.0.4
requests==2.34.2
rich==15.0.0
sortedcontainers==2.4.0
typing_extensions==4.16.0
urllib3==2.8.0
Werkzeug==3.1.9
PINS
fi

# ensure_npm_tools NAME: `npm ci` of tests/peers/NAME (package.json + package-lock.json, every
# version pinned by the lock) into .tools/NAME, unless its stamp says the lock is already there.
ensure_npm_tools() {
    local name=$1
    local source=$REPO/tests/peers/$name dir=$REPO/.tools/$name want
    command -v node >/dev/null || die "node not found: install Node.js 20 or newer (Debian: apt-get install nodejs npm)"
    command -v npm >/dev/null || die "npm not found (Debian: apt-get install npm)"
    want=$(cat "$source/package.json" "$source/package-lock.json" | sha256sum | cut -c1-32)
    if [[ -f $dir/$STAMP_NAME && $(cat "$dir/$STAMP_NAME") == "$want" && -d $dir/node_modules ]]; then
        say ".tools/$name: up to date"
        return 0
    fi
    say ".tools/$name: installing with npm ci ($(node --version))"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$source/package.json" "$source/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$dir/$STAMP_NAME"
    say ".tools/$name: ready"
}

if selected .tools/oidc-provider; then
    ensure_npm_tools oidc-provider
fi

if selected .tools/json-server; then
    ensure_npm_tools json-server
fi

# Chromium is a system package (Debian's build, updated with the OS), not pinned like the venvs.
if selected chromium; then
    if command -v chromium >/dev/null; then
        say "chromium: present ($(chromium --version 2>/dev/null | head -n 1))"
    else
        command -v apt-get >/dev/null || die "chromium is missing and there is no apt-get: install Chromium and put it on PATH (or set USERPROV_CHROMIUM)"
        say "chromium: installing with apt-get"
        SUDO=""
        [[ $(id -u) -eq 0 ]] || SUDO=sudo
        $SUDO apt-get update
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
    fi
fi

say "done: $(cd "$REPO" && ls -d .venv .venv-ministack .venv-sam .venv-schemathesis .tools/* 2>/dev/null | tr "\n" " ")"
