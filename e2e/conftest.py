"""Fixtures for the end-to-end suite: a real chronik-server process per test module (or per test
where state matters), real Kafka clients against it.

The binary comes from CHRONIK_SERVER_BIN (the Makefile exports it); a missing binary is an error,
not a skip, so a broken build can never pass this suite.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from kafka_wire import WireClient

STARTUP_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 60


def server_binary():
    path = os.environ.get("CHRONIK_SERVER_BIN")
    if not path:
        raise RuntimeError(
            "CHRONIK_SERVER_BIN is not set; run the suite through `make e2e` or export the path "
            "of a built chronik-server"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(f"CHRONIK_SERVER_BIN={path} is not an executable file; build it first")
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChronikServer:
    """One chronik-server process on a free loopback port with its own data directory.

    kill() and stop() end the process; restart() starts it again on the same port and data
    directory, as an operator restarting a crashed broker would.
    """

    def __init__(self, name="chronik", host="127.0.0.1", netns=None, **env):
        self.name = name
        # Address every port binds to and is reached at; `netns` runs the process in that
        # network namespace (see test_network_partition.py).
        self.host = host
        self.netns = netns
        self.binary = server_binary()
        self.data_dir = tempfile.mkdtemp(prefix=f"chronik-e2e-{name}-")
        self.log_path = os.path.join(self.data_dir, "..", os.path.basename(self.data_dir) + ".log")
        self.log_path = os.path.abspath(self.log_path)
        self.port = free_port()
        # Picked once, so restarts keep their ports, and distinct from the Kafka port (two calls
        # to free_port() can return the same port, and the server refuses equal ports).
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()
        self.env_overrides = {k: str(v) for k, v in env.items()}
        self.proc = None
        self.starts = 0

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def env(self):
        env = dict(os.environ)
        env.update(
            {
                "CHRONIK_DATA_DIR": os.path.join(self.data_dir, "data"),
                "CHRONIK_KAFKA_PORT": str(self.port),
                "CHRONIK_BIND_ADDR": self.host,
                # Free ports for the listeners this build may or may not open yet.
                "CHRONIK_UNIFIED_API_PORT": str(self.http_port),
                "CHRONIK_CLUSTER_PORT": str(free_port()),
                "CHRONIK_LOG_MAINTENANCE_MS": "200",
                "RUST_LOG": os.environ.get("CHRONIK_E2E_RUST_LOG", "info"),
                "NO_COLOR": "1",
            }
        )
        env.update(self.env_overrides)
        return env

    def start(self):
        self.launch()
        self.wait_ready()
        return self

    def launch(self):
        """Start the process without waiting for it to be ready (cluster members start together:
        none is ready before a quorum has formed)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts} =====\n".encode())
        log.flush()
        command = [self.binary, "start"]
        if self.netns:
            # `ip netns exec` execs the server in place: the pid is the server's.
            command = ["ip", "netns", "exec", self.netns, *command]
        self.proc = subprocess.Popen(
            command,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def wait_ready(self, timeout=STARTUP_TIMEOUT_S):
        """Until the Kafka port accepts and answers ApiVersions; fail with the log tail if not."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"chronik-server exited with {self.proc.returncode} during start-up\n"
                    + self.log_tail()
                )
            try:
                with WireClient(self.port, timeout=2.0, host=self.host) as c:
                    error_code, apis = c.api_versions()
                    if error_code == 0 and apis:
                        return
                    last_error = f"ApiVersions error_code={error_code}"
            except OSError as e:
                last_error = repr(e)
            time.sleep(0.05)
        raise RuntimeError(
            f"chronik-server not ready on {self.bootstrap} after {timeout}s ({last_error})\n"
            + self.log_tail()
        )

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: no chance to flush or close anything."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout=10.0):
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"chronik-server did not exit within {timeout}s of SIGTERM")

    def restart(self, kill=True):
        """Kill (or stop) and start again with the same port and data directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def cleanup(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        try:
            os.unlink(self.log_path)
        except FileNotFoundError:
            pass

    def log_tail(self, lines=LOG_TAIL_LINES):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no server log)"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.name} log ({self.log_path}) ---\n" + "\n".join(
            tail
        )


class ServerFactory:
    """Starts servers for one test; all are killed and their directories removed afterwards."""

    def __init__(self):
        self.servers = []

    def __call__(self, name="chronik", **env):
        server = ChronikServer(name, **env)
        self.servers.append(server)
        return server.start()

    def cleanup(self):
        for s in self.servers:
            s.cleanup()


class ChronikCluster:
    """`size` chronik-server processes on loopback forming one Raft cluster: node ids 1..size,
    each with its own Kafka, HTTP and cluster port, all given the same CHRONIK_PEERS.

    Nodes start together (none is ready before a quorum exists); kill/restart single nodes with
    their ChronikServer methods, which keep ports and data directories.
    """

    def __init__(self, size=3, name="cluster", hosts=None, netns=None, **env):
        """`hosts`/`netns`: per node id, the address it binds to and the network namespace
        it runs in (default: all on 127.0.0.1 in this namespace)."""
        hosts = hosts or {}
        netns = netns or {}
        taken = set()

        def distinct_port():
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            return port

        cluster_ports = {i: distinct_port() for i in range(1, size + 1)}
        peers = ",".join(
            f"{i}@{hosts.get(i, '127.0.0.1')}:{p}" for i, p in cluster_ports.items()
        )
        self.nodes = {}
        for i, cluster_port in cluster_ports.items():
            node = ChronikServer(
                f"{name}-{i}",
                host=hosts.get(i, "127.0.0.1"),
                netns=netns.get(i),
                CHRONIK_NODE_ID=i,
                CHRONIK_PEERS=peers,
                CHRONIK_CLUSTER_PORT=cluster_port,
                **env,
            )
            # ChronikServer picked its Kafka and HTTP ports alone; keep all of them distinct.
            while node.port in taken:
                node.port = free_port()
            taken.add(node.port)
            while node.http_port in taken:
                node.http_port = free_port()
            taken.add(node.http_port)
            self.nodes[i] = node

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes.values())

    def start(self, timeout=60.0):
        for node in self.nodes.values():
            node.launch()
        for node in self.nodes.values():
            node.wait_ready(timeout)
        return self

    def status(self, node_id):
        """GET /admin/cluster of one node (loopback needs no API key)."""
        import json
        import urllib.request

        node = self.nodes[node_id]
        url = f"http://{node.host}:{node.http_port}/admin/cluster"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    def cleanup(self):
        for node in self.nodes.values():
            node.cleanup()


@pytest.fixture
def start_server():
    """Call it (with env overrides as keyword arguments) to get a fresh, ready server."""
    factory = ServerFactory()
    yield factory
    factory.cleanup()


@pytest.fixture(scope="module")
def server():
    """One broker shared by the tests of a module; tests use unique topic names."""
    factory = ServerFactory()
    yield factory(name="shared")
    factory.cleanup()


@pytest.fixture
def topic_name(request):
    """A topic name unique to the test."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]
    return f"{base}-{uuid.uuid4().hex[:6]}"


def pytest_configure(config):
    """No binary, no suite: stop before collecting anything, saying why."""
    try:
        server_binary()
    except RuntimeError as e:
        raise pytest.UsageError(str(e))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the log tail of every server the test used to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        servers = []
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, ChronikServer):
                servers.append(value)
            elif isinstance(value, ServerFactory):
                servers.extend(value.servers)
            elif isinstance(value, ChronikCluster):
                servers.extend(value.nodes.values())
        for s in servers:
            report.sections.append((f"chronik-server log ({s.name})", s.log_tail()))
