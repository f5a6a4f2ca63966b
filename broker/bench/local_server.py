"""A release chronik-server on loopback with a fresh data dir, for the by-hand benchmark
scripts (`make bench-sql`, `make bench-search`), and the chronik-bench produce runs they use.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout, what, prefix="bench"):
    """Poll `predicate` until it returns a truthy value; exit naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, urllib.error.URLError, RuntimeError) as e:
            last = e
        time.sleep(0.5)
    sys.exit(f"{prefix}: timed out after {timeout}s waiting for {what} (last: {last!r})")


class LocalServer:
    """`with LocalServer(binary, bench, **env) as s:` starts the server and waits for /ready;
    leaving stops it and removes its data dir unless `keep`."""

    def __init__(self, binary, bench, keep=False, **env):
        for name, path in (("server", binary), ("chronik-bench", bench)):
            if not path or not os.access(path, os.X_OK):
                sys.exit(f"bench: the {name} binary is not built ({path!r})")
        self.binary, self.bench, self.keep = binary, bench, keep
        self.data_dir = tempfile.mkdtemp(prefix="chronik-bench-")
        self.kafka_port, self.http_port = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.env = dict(
            os.environ,
            CHRONIK_DATA_DIR=self.data_dir,
            CHRONIK_BIND_ADDR="127.0.0.1",
            CHRONIK_KAFKA_PORT=str(self.kafka_port),
            CHRONIK_UNIFIED_API_PORT=str(self.http_port),
            CHRONIK_CLUSTER_PORT=str(free_port()),
            CHRONIK_FLUSH="group",
            RUST_LOG=os.environ.get("RUST_LOG", "warn"),
            **{k: str(v) for k, v in env.items()},
        )
        self.proc = None

    def __enter__(self):
        self.log = open(self.data_dir.rstrip("/") + ".log", "w")
        self.proc = subprocess.Popen([self.binary, "start"], env=self.env, stdout=self.log, stderr=self.log)
        wait(lambda: self.http("GET", "/ready")[0] == 200, 60, "the server to be ready")
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def http(self, method, path, body=None, timeout=600):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def produce(self, topic, count, size, configs=(), partitions=6):
        """chronik-bench JSON records into `topic` (created with `configs`), acks=1, read back;
        returns its report and exits if anything acknowledged is missing."""
        cmd = [self.bench, "--bootstrap", self.bootstrap, "--json", "--mode", "produce",
               "--payload", "json", "--topic", topic, "--partitions", str(partitions),
               "--linger-ms", "5", "--acks", "1", "--message-size", str(size),
               "--count", str(count), "--verify-readback"]
        for c in configs:
            cmd += ["--topic-config", c]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"bench: chronik-bench failed for {topic}: {out.stderr[-2000:]}")
        report = json.loads(out.stdout)
        if not (report.get("verification") or {}).get("ok"):
            sys.exit(f"bench: verification failed for {topic}: {report.get('verification')}")
        return report


def produce_cost_table(server, count, index_config, label, indexed, rounds=3, settle_s=3.0):
    """Markdown rows: the same 1 KB JSON records into a plain topic and into one with
    `index_config`, alternating for `rounds` rounds (a single sub-second run on two cores
    swings by a third), and what the index costs produce throughput, from the medians.
    `indexed(topic) -> int` counts the records the index answers for: each indexed run is
    followed until all are queryable, and how long that took after the run ended is reported
    (indexing that lags a burst shows there rather than in the throughput); each run then
    starts after a `settle_s` pause."""
    plain, with_index, lags = [], [], []
    for i in range(rounds):
        time.sleep(settle_s)
        plain.append(server.produce(f"plain-1kb-{i}", count, 1024))
        time.sleep(settle_s)
        topic = f"indexed-1kb-{i}"
        with_index.append(server.produce(topic, count, 1024, [index_config]))
        # The next run starts only once this one is fully indexed, so runs do not overlap.
        ended = time.monotonic()
        while indexed(topic) < count:
            if time.monotonic() - ended > 900:
                sys.exit(f"bench: {topic} not fully indexed 900 s after its run")
            time.sleep(0.02)
        lags.append(time.monotonic() - ended)
    indexed_runs = with_index

    def median(reports, key):
        return statistics.median(r[key] for r in reports)

    def runs(reports):
        return ", ".join(f"{r['msgs_per_sec']:,.0f}" for r in reports)

    cost = 1 - median(indexed_runs, "msgs_per_sec") / median(plain, "msgs_per_sec")
    lines = [
        f"| topic (1 KB JSON, acks=1, {count:,} records, median of {rounds} alternating runs) | msg/s | MB/s | runs (msg/s) |",
        "|---|---|---|---|",
        f"| plain | {median(plain, 'msgs_per_sec'):,.0f} | {median(plain, 'mb_per_sec'):.2f} | {runs(plain)} |",
        f"| {index_config} | {median(indexed_runs, 'msgs_per_sec'):,.0f} | {median(indexed_runs, 'mb_per_sec'):.2f} | {runs(indexed_runs)} |",
        "",
        f"{label} cost: {cost * 100:.1f}% of plain produce throughput",
    ]
    lines.append("")
    lines.append("last record queryable after each indexed run ended (the client's read-back "
                 "verification included): " + ", ".join(f"{lag:.2f} s" for lag in lags))
    return lines