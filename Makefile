# Hookline: `make demo` runs the main job on the embedded default (no install needed);
# `make test` installs the test broker if absent and runs every test.

CARGO ?= cargo
COMPOSE ?= docker compose -f docker/compose.yaml
CONSUMERS ?= 1
export HOOKLINE_TOOLS_DIR ?= $(HOME)/.cache/hookline/tools

.PHONY: all build test test-unit lint fmt demo bench tools interop browser clean-tools up down

all: build

build:
	$(CARGO) build --workspace --all-targets

## Installs tansu (the Kafka-protocol broker the integration tests start) if absent.
tools:
	@scripts/ensure-tansu.sh >/dev/null

## Installs the npm packages (standardwebhooks, jose) the wire-format interop tests run, if absent.
interop:
	@scripts/ensure-interop.sh >/dev/null

## Installs Debian's chromium (the portal's tests drive it headless) if absent.
browser:
	@scripts/ensure-chromium.sh >/dev/null

## Every test: unit tests, integration tests against real tansu broker processes, the
## wire-format interop tests against off-the-shelf libraries, and the portal in a real browser.
test: tools interop browser
	TANSU_BIN="$$(scripts/ensure-tansu.sh)" HOOKLINE_INTEROP_DIR="$$(scripts/ensure-interop.sh)" \
		HOOKLINE_CHROMIUM="$$(scripts/ensure-chromium.sh)" $(CARGO) test --workspace --all-targets

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
	$(CARGO) run --release -p hookline-demo -- $(DEMO_ARGS)

## Benchmarks (BENCHMARKS.md): release binaries against a tansu broker and a fast receiver on
## loopback, every figure the median of BENCH_RUNS runs; the results table goes between the
## markers of BENCHMARKS.md and into bench/results.json. `make bench BENCH_ARGS="--scenarios drain"`
## runs a part; `hookline-bench --help` lists the settings.
bench: tools
	$(CARGO) build --release -p hookline-bench -p hookline-consumer -p hookline-publisher
	TANSU_BIN="$$(scripts/ensure-tansu.sh)" $(CARGO) run --release -p hookline-bench -- $(BENCH_ARGS)

## The Docker stack (docker/README.md): Kafka, Schema Registry, setup, publisher, CONSUMERS
## consumer replicas (`make up CONSUMERS=3`), demo receiver, Grafana LGTM on localhost:3000.
up:
	$(COMPOSE) up --build --detach --scale consumer=$(CONSUMERS)

## Stops the stack and removes its containers and network (Kafka keeps no volume).
down:
	$(COMPOSE) down --remove-orphans

clean-tools:
	rm -rf "$(HOOKLINE_TOOLS_DIR)"
