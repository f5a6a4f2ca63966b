"""A real network partition of a partition leader, with Linux network namespaces.

Each broker runs in its own network namespace, joined to the others (and to this test, which
stays in the root namespace) by a veth pair on one bridge. Taking a broker's veth down cuts it
off from every peer and client while the process runs on, believing it still leads: the
others fence it (its port times out, so they wait out the lease) and elect a new leader from
the ISR. Inside its namespace it still takes an acks=1 write, the divergent tail Kafka's
design allows, and never acknowledges an acks=all one. Once the link is back it learns the new
epoch, truncates that tail and follows the new leader; the replicas end byte-identical.

Needs CAP_NET_ADMIN and CAP_SYS_ADMIN (root in a privileged container, as CI runs); without
them the module is skipped and test_replication.py's SIGSTOP test is the stand-in.
"""

import json
import os
import random
import subprocess
import sys
import uuid

import pytest

from clients import wait_until
from conftest import ChronikCluster
from test_replication import (
    CLUSTER_ENV,
    assert_replicas_identical,
    consume,
    full_isr,
    one_partition_with_records,
    placement,
    produce_through_a_new_leader,
    wait_for_placement,
)


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Namespaces:
    """A bridge in this namespace (the test's side, 10.x.y.1) and one namespace per broker
    (10.x.y.(10+i)) attached to it by a veth pair."""

    def __init__(self, size):
        tag = uuid.uuid4().hex[:4]
        self.subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        self.bridge = f"chb{tag}"
        self.names = {i: f"chr{tag}{i}" for i in range(1, size + 1)}
        self.host_ends = {i: f"ch{tag}{i}h" for i in range(1, size + 1)}
        self.hosts = {i: f"{self.subnet}.{10 + i}" for i in range(1, size + 1)}

    def create(self):
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i, ns in self.names.items():
            inner = f"{self.host_ends[i][:-1]}n"
            ip("netns", "add", ns)
            ip("link", "add", self.host_ends[i], "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", ns)
            ip("link", "set", self.host_ends[i], "master", self.bridge)
            ip("link", "set", self.host_ends[i], "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{self.hosts[i]}/24", "dev", inner)
            ip("netns", "exec", ns, "ip", "link", "set", inner, "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def cut(self, i):
        ip("link", "set", self.host_ends[i], "down")

    def heal(self, i):
        ip("link", "set", self.host_ends[i], "up")

    def destroy(self):
        for i, ns in self.names.items():
            ip("link", "del", self.host_ends[i], check=False)
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.bridge, check=False)


def namespaces_available():
    probe = f"chrprobe{uuid.uuid4().hex[:4]}"
    if ip("netns", "add", probe, check=False).returncode != 0:
        return False
    ip("netns", "del", probe, check=False)
    probe_link = f"chp{uuid.uuid4().hex[:4]}"
    if ip("link", "add", probe_link, "type", "bridge", check=False).returncode != 0:
        return False
    ip("link", "del", probe_link, check=False)
    return True


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not namespaces_available(),
    reason="network namespaces need root with CAP_NET_ADMIN and CAP_SYS_ADMIN",
)


def produce_inside(ns, host, port, topic, value, acks, timeout_ms):
    """Produce v3 from inside a namespace (the cut-off broker is reachable only there):
    the partition's error code."""
    e2e = os.path.dirname(os.path.abspath(__file__))
    script = (
        "import json, struct, sys\n"
        "from kafka_wire import WireClient, produce_v3_body, parse_produce_v3_response, record_batch\n"
        f"with WireClient({port}, timeout={timeout_ms / 1000 + 10}, host={host!r}) as w:\n"
        f"    body = w.request(0, 3, produce_v3_body({topic!r}, 0, record_batch([(b'k', {value!r})]), {acks}, {timeout_ms}))\n"
        "    print(json.dumps(parse_produce_v3_response(body)))\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=e2e,
        env=dict(os.environ, PYTHONPATH=e2e),
        timeout=timeout_ms / 1000 + 30,
        check=True,
    )
    return json.loads(out.stdout)[0]


def test_a_partitioned_leader_is_replaced_and_truncates_its_divergent_tail():
    net = Namespaces(3)
    net.create()
    c = None
    try:
        c = ChronikCluster(3, name="netsplit", hosts=net.hosts, netns=net.names, **CLUSTER_ENV)
        c.start()
        topic, old, acked = one_partition_with_records(c, "netsplit")
        rest = [i for i in c.nodes if i != old]

        net.cut(old)
        cut_off = c.nodes[old]
        # Cut off, it still believes it leads: acks=1 is taken (and will be lost, as Kafka
        # allows for acks=1), acks=all is never acknowledged.
        code = produce_inside(net.names[old], cut_off.host, cut_off.port, topic, b"divergent", 1, 5000)
        assert code == 0, code
        code = produce_inside(net.names[old], cut_off.host, cut_off.port, topic, b"stale", -1, 3000)
        assert code != 0, "a cut-off leader acknowledged an acks=all write"

        more = produce_through_a_new_leader(
            c, topic, old, b"b", "a new leader while the old one is cut off", 40
        )

        net.heal(old)
        wait_for_placement(c.nodes[rest[0]], topic, full_isr, "the old leader back in the ISR", 60)
        got, dups = consume(c.bootstrap, topic, 1)
        assert not dups
        assert b"divergent" not in got and b"stale" not in got
        for v, where in list(acked.items()) + list(more.items()):
            assert got.get(v) == where, (v, where, got.get(v))
        # The healed broker serves the same data as the others.
        wait_until(
            lambda: placement(cut_off, topic)[0][0] in rest,
            timeout=30,
            what="the healed broker knowing the new leader",
        )
        assert_replicas_identical(c, topic, 1, c.bootstrap)
    finally:
        if c is not None:
            c.cleanup()
        net.destroy()
