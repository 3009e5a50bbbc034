# Build of the three Lambda functions for `sam build` (BuildMethod: makefile in template.yaml).
#
# sam calls `make build-<LogicalId>` once per function, with ARTIFACTS_DIR set. Every target
# runs the SAME cargo invocation for all three binaries: the first call compiles the shared
# dependency graph once (one feature resolution, one set of artifacts); the next two find
# everything up to date and only copy. Three separate `cargo lambda build --bin X` calls would
# each resolve features for one binary and rebuild the shared crates.
#
# sam does not pass the template's Architecture to make: LAMBDA_ARCH must match it.
#   sam build                                                    -> arm64 (template default)
#   LAMBDA_ARCH=x86_64 sam build --parameter-overrides Architecture=x86_64
# LAMBDA_PROFILE picks the cargo profile (release by default; `dev` builds faster for local runs).

LAMBDA_ARCH ?= arm64
LAMBDA_PROFILE ?= release
CARGO ?= cargo
BINARIES := userprov-webhook userprov-worker userprov-log-api

ifeq ($(LAMBDA_ARCH),arm64)
ARCH_FLAG := --arm64
else ifeq ($(LAMBDA_ARCH),x86_64)
ARCH_FLAG := --x86-64
else
$(error LAMBDA_ARCH must be arm64 or x86_64, not '$(LAMBDA_ARCH)')
endif

ifeq ($(LAMBDA_PROFILE),release)
PROFILE_FLAG := --release
else
PROFILE_FLAG := --profile $(LAMBDA_PROFILE)
endif

# cargo lambda writes <dir>/<binary>/bootstrap; a directory per architecture keeps an arm64
# binary from being shipped by an x86_64 build and the other way round.
LAMBDA_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/lambda-$(LAMBDA_ARCH)

.PHONY: lambdas build-WebhookFunction build-WorkerFunction build-LogApiFunction

lambdas:
	$(CARGO) lambda build $(PROFILE_FLAG) $(ARCH_FLAG) --lambda-dir $(LAMBDA_DIR) $(addprefix --bin ,$(BINARIES))

define copy-bootstrap
	test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: run this through sam build" >&2; exit 1; }
	mkdir -p "$(ARTIFACTS_DIR)"
	cp $(LAMBDA_DIR)/$(1)/bootstrap "$(ARTIFACTS_DIR)/bootstrap"
endef

build-WebhookFunction: lambdas
	$(call copy-bootstrap,userprov-webhook)

build-WorkerFunction: lambdas
	$(call copy-bootstrap,userprov-worker)

build-LogApiFunction: lambdas
	$(call copy-bootstrap,userprov-log-api)
