# Chronik developer entry points. See README.md.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/chronik-target
CARGO ?= cargo
VENV ?= $(HOME)/.cache/chronik-venv
PY := $(VENV)/bin/python
SERVER := $(CARGO_TARGET_DIR)/release/chronik-server
export CHRONIK_SERVER_BIN ?= $(SERVER)

.PHONY: run build build-debug test unit e2e verify fix fmt-check clippy generate bench fuzz venv clean

## Build and start a single node with embedded defaults (data in ./data).
run: build
	$(SERVER) start

build:
	$(CARGO) build --release -p chronik-server

## Unit + conformance tests, then end-to-end tests with real Kafka clients.
test: unit e2e

unit:
	$(CARGO) nextest run --workspace --no-fail-fast

e2e: build venv
	$(PY) -m pytest -q e2e

venv:
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r e2e/requirements.txt

verify: fmt-check clippy test

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fix:
	$(CARGO) fmt --all
	$(CARGO) clippy --workspace --all-targets --fix --allow-dirty --allow-staged

bench: build
	bash broker/bench/suite.sh

clean:
	rm -rf $(CARGO_TARGET_DIR)
