# Hookline: `make demo` runs the main job on the embedded default (no install needed);
# `make test` installs the test broker if absent and runs every test.

CARGO ?= cargo
export HOOKLINE_TOOLS_DIR ?= $(HOME)/.cache/hookline/tools

.PHONY: all build test test-unit lint fmt demo tools clean-tools

all: build

build:
	$(CARGO) build --workspace --all-targets

## Installs tansu (the Kafka-protocol broker the integration tests start) if absent.
tools:
	@scripts/ensure-tansu.sh >/dev/null

## Every test: unit tests, and integration tests against real tansu broker processes.
test: tools
	TANSU_BIN="$$(scripts/ensure-tansu.sh)" $(CARGO) test --workspace --all-targets

## Unit tests only (no broker needed).
test-unit:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## The demo: in-process mock Kafka cluster, publisher, a consumer group, demo receivers.
demo:
	$(CARGO) run --release -p hookline-demo

clean-tools:
	rm -rf "$(HOOKLINE_TOOLS_DIR)"
