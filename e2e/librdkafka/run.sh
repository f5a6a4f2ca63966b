#!/usr/bin/env bash
# librdkafka's own integration test suite against chronik-server.
#
# Builds librdkafka and its tests/test-runner once into a cache directory outside the repo (from
# the librdkafka source vendored in the rdkafka-sys crate), starts two chronik-servers on free
# ports with temporary data directories (the suite's "default" scenario: auto-created topics
# with 4 partitions; and, if a listed test needs it, "noautocreate"), then runs every test named in allowlist.txt (next to
# this script) one at a time with a timeout. Prints PASS/FAIL per test and a closing line
# `N passed, M failed`; exits non-zero if any allow-listed test fails.
#
# Environment:
#   CHRONIK_SERVER_BIN        chronik-server binary (built with cargo if missing)
#   CHRONIK_LIBRDKAFKA_DIR    build cache (default ~/.cache/chronik-librdkafka-src)
#   LIBRDKAFKA_TEST_TIMEOUT   seconds per test (default 180)
#   LIBRDKAFKA_ALLOWLIST      test list (default allowlist.txt next to this script)
#   LIBRDKAFKA_TESTS          comma-separated allow-list lines to run instead (e.g. "0001,0038 quick")
#   LIBRDKAFKA_KEEP_LOGS=1    keep the per-test and broker logs when everything passed too
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RDKAFKA_SYS_VERSION="4.10.0+2.12.1"
BUILD_DIR="${CHRONIK_LIBRDKAFKA_DIR:-$HOME/.cache/chronik-librdkafka-src}"
TEST_TIMEOUT="${LIBRDKAFKA_TEST_TIMEOUT:-180}"
ALLOWLIST="${LIBRDKAFKA_ALLOWLIST:-$HERE/allowlist.txt}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chronik-target}"
SERVER="${CHRONIK_SERVER_BIN:-$CARGO_TARGET_DIR/debug/chronik-server}"

start_s=$SECONDS
log() { echo "librdkafka: $*" >&2; }

# The librdkafka source ships inside the rdkafka-sys crate; fetch the crate with cargo if it is
# not in the registry cache yet (a throwaway package outside the repo, nothing added here).
find_librdkafka_src() {
    local d
    for d in "$HOME"/.cargo/registry/src/*/rdkafka-sys-"$RDKAFKA_SYS_VERSION"/librdkafka; do
        [[ -f "$d/configure" ]] && { echo "$d"; return 0; }
    done
    return 1
}

build_suite() {
    local src tmp
    if ! src="$(find_librdkafka_src)"; then
        log "fetching rdkafka-sys $RDKAFKA_SYS_VERSION with cargo"
        tmp="$(mktemp -d)"
        (cd "$tmp" && cargo init -q --name fetch_rdkafka_sys . &&
            cargo add -q "rdkafka-sys@=$RDKAFKA_SYS_VERSION" && cargo fetch -q) || return 1
        rm -rf "$tmp"
        src="$(find_librdkafka_src)" || return 1
    fi
    if ! command -v g++ >/dev/null || [[ ! -e /usr/include/openssl/ssl.h || ! -e /usr/include/zlib.h ]]; then
        log "installing build dependencies"
        apt-get update -qq && apt-get install -y -qq g++ make python3 libssl-dev zlib1g-dev >/dev/null || return 1
    fi
    log "building librdkafka and its test-runner in $BUILD_DIR (once)"
    rm -rf "$BUILD_DIR" && mkdir -p "$(dirname "$BUILD_DIR")" && cp -r "$src" "$BUILD_DIR" || return 1
    chmod -R u+w "$BUILD_DIR"
    (
        cd "$BUILD_DIR" && ./configure &&
            make -j"$(nproc)" libs && make -C tests -j"$(nproc)" build
    ) >"$BUILD_DIR.build.log" 2>&1 || { log "build failed, see $BUILD_DIR.build.log"; return 1; }
}

if [[ ! -x "$BUILD_DIR/tests/test-runner" ]]; then
    build_suite || exit 1
fi
if [[ ! -x "$SERVER" ]]; then
    log "building chronik-server"
    (cd "$REPO" && cargo build --workspace --all-targets) || exit 1
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d -t chronik-librdkafka-XXXXXX)"
BROKER_PIDS=()
failed=0
cleanup() {
    local pid
    for pid in "${BROKER_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    if [[ $failed == 0 && "${LIBRDKAFKA_KEEP_LOGS:-0}" != 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'failed=1; exit 130' INT TERM

# start_broker NAME [ENV=VALUE...]: one chronik-server on a free port, configured like the
# suite's scenario NAME (tests/scenarios/NAME.json); writes $WORK/NAME/test.conf.
start_broker() {
    local name=$1 pid port
    shift
    port="$(free_port)"
    mkdir -p "$WORK/$name"
    env CHRONIK_DATA_DIR="$WORK/$name/data" CHRONIK_KAFKA_PORT="$port" \
        CHRONIK_BIND_ADDR=127.0.0.1 CHRONIK_UNIFIED_API_PORT="$(free_port)" \
        CHRONIK_CLUSTER_PORT="$(free_port)" CHRONIK_DEFAULT_PARTITIONS=4 \
        CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS=1000 \
        RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 "$@" \
        "$SERVER" start >"$WORK/$name/chronik.log" 2>&1 &
    pid=$!
    BROKER_PIDS+=("$pid")
    for _ in $(seq 1 100); do
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        if ! kill -0 "$pid" 2>/dev/null; then
            log "chronik-server ($name) exited at startup:"
            tail -n 30 "$WORK/$name/chronik.log" >&2
            failed=1
            exit 1
        fi
        sleep 0.2
    done
    printf 'bootstrap.servers=127.0.0.1:%s\ntest.topic.random=true\n' "$port" >"$WORK/$name/test.conf"
}
# Allow-list lines: `NNNN [quick] [noautocreate]  # comment`. TESTS matches on the four-digit
# number, so every broker-touching variant with that number runs; -L skips the local-only ones.
# `quick` passes -Q (less data; it also skips the sub-tests not marked quick);
# `noautocreate` runs the test in that scenario against the broker with auto-creation off;
# `consumer` runs it with the KIP-848 consumer group protocol (TEST_CONSUMER_GROUP_PROTOCOL),
# against a broker that tells members to heartbeat every second (Kafka's default is 5 s).
if [[ -n "${LIBRDKAFKA_TESTS:-}" ]]; then
    mapfile -t lines < <(tr ',' '\n' <<<"$LIBRDKAFKA_TESTS")
else
    mapfile -t lines < <(sed -e 's/#.*//' "$ALLOWLIST" | grep -v '^[[:space:]]*$')
fi

start_broker default
DEFAULT_PID=${BROKER_PIDS[-1]}
NOAUTO_PID=
if printf '%s\n' "${lines[@]}" | grep -qw noautocreate; then
    start_broker noautocreate CHRONIK_AUTO_CREATE_TOPICS=false
    NOAUTO_PID=${BROKER_PIDS[-1]}
fi

passed=0
cd "$BUILD_DIR/tests" || exit 1
export LD_LIBRARY_PATH="../src:../src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for line in "${lines[@]}"; do
    read -r -a words <<<"$line"
    t=${words[0]}
    flags=(-L)
    scenario=default
    pid=$DEFAULT_PID
    protocol=classic
    for w in "${words[@]:1}"; do
        case $w in
            quick) flags+=(-Q) ;;
            consumer) protocol=consumer ;;
            noautocreate) scenario=noautocreate pid=$NOAUTO_PID ;;
            *) log "unknown allow-list word '$w' for $t"; failed=1; exit 2 ;;
        esac
    done
    out="$WORK/$t-$protocol.log"
    t0=$SECONDS
    RDKAFKA_TEST_CONF="$WORK/$scenario/test.conf" TEST_SCENARIO=$scenario TEST_KAFKA_VERSION=3.9.0 \
        TEST_CONSUMER_GROUP_PROTOCOL=$protocol TESTS="$t" timeout -k 10 "$TEST_TIMEOUT" ./test-runner "${flags[@]}" >"$out" 2>&1
    rc=$?
    dt=$((SECONDS - t0))
    # The summary table: `| name | PASSED/FAILED/SKIPPED | time | reason |`. Local-only variants
    # filtered out by -L show as SKIPPED "Filtered due to negative test flags"; variants of the
    # number that belong to the other scenario (e.g. 0045_subscribe_update_topic_remove is
    # "noautocreate") are skipped silently and show as SKIPPED with an empty reason: list the
    # number once per scenario to run them all. Any other skip means the allow-listed test no
    # longer runs here, which counts as a failure (and so does a line with nothing run).
    table=$(sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -a '^| ' | grep -v '<MAIN>' |
        grep -v 'Filtered due to negative test flags' | grep -Ev '\| *SKIPPED \|[^|]*\| *$')
    ran=$(grep -c '| *PASSED |' <<<"$table")
    bad=$(grep -v '^$' <<<"$table" | grep -cv '| *PASSED |')
    if [[ $rc == 0 && $ran -gt 0 && $bad == 0 ]]; then
        passed=$((passed + 1))
        echo "PASS $t $protocol (${dt}s)"
    else
        failed=$((failed + 1))
        if [[ $rc == 124 || $rc == 137 ]]; then
            why="timed out after ${TEST_TIMEOUT}s"
        elif [[ -z $table && $rc == 0 ]]; then
            why="no test ran"
        elif grep -q '| *SKIPPED |' <<<"$table"; then
            why="skipped: $(grep '| *SKIPPED |' <<<"$table" | head -n 1 | awk -F'|' '{print $5}' | xargs)"
        else
            why="exit $rc"
        fi
        echo "FAIL $t $protocol (${dt}s, $why; log: $out)"
        sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -a -A1 '^### Test ' | grep -av '^--' | head -n 6 | sed 's/^/    /'
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "chronik-server ($scenario) died during $t; log: $WORK/$scenario/chronik.log"
        failed=$((failed + 1))
        break
    fi
done

echo "librdkafka suite: $((SECONDS - start_s))s; logs in $WORK"
echo "${passed} passed, ${failed} failed"
[[ $failed == 0 ]]
