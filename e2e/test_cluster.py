"""A three-broker Raft cluster of real chronik-server processes on loopback.

Metadata (brokers, topics, placement) is replicated by Raft. These tests use topics with
replication factor 1 spread over the brokers (partition replication has its own suite,
test_replication.py) and check that every broker agrees on the metadata, that any broker takes admin requests
(followers forward them to the Raft leader), that clients produce and consume through each
partition's leader, that consumer groups work when __consumer_offsets is spread over brokers,
and that the metadata quorum survives losing its leader and a full restart.
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from clients import WAIT_S, admin, wait_until
from conftest import ChronikCluster, ChronikServer, free_port
from kafka_wire import WireClient, record_batch

NOT_LEADER_OR_FOLLOWER = 6
CLUSTER_ENV = {
    "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
    "CHRONIK_OFFSETS_TOPIC_PARTITIONS": "6",
}


@pytest.fixture(scope="module")
def cluster():
    c = ChronikCluster(3, name="raft", **CLUSTER_ENV)
    try:
        yield c.start()
    finally:
        c.cleanup()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin_for(node):
    # Kept on the node: a collected AdminClient fails its pending futures with _DESTROY.
    return admin(node)


def create_topic(node, name, partitions, replication_factor=1):
    futures = admin_for(node).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)],
        operation_timeout=15,
    )
    futures[name].result(timeout=30)


def leader_id(cluster, among=None, other_than=None, timeout=30):
    """The Raft leader every live node agrees on (waits until they do)."""
    among = among or list(cluster.nodes)

    def agreed():
        seen = set()
        for i in among:
            try:
                seen.add(cluster.status(i)["leader_id"])
            except OSError:
                return None
        leader = seen.pop() if len(seen) == 1 else None
        return leader if leader not in (None, other_than) else None

    return wait_until(agreed, timeout=timeout, what="nodes agreeing on a raft leader")


def topic_metadata(node, topic):
    """(broker ids, {partition: leader}) as this one node reports them."""
    md = admin_for(node).list_topics(topic, timeout=WAIT_S)
    t = md.topics[topic]
    assert t.error is None, t.error
    return set(md.brokers), {p.id: p.leader for p in t.partitions.values()}


def consume_all(bootstrap, topic, partitions, expected, timeout=30):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = []
        eof = set()
        deadline = time.monotonic() + timeout
        while len(got) < expected or len(eof) < partitions:
            assert time.monotonic() < deadline, f"read {len(got)} of {expected}"
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise AssertionError(m.error())
            eof.discard(m.partition())
            got.append(m)
        return got
    finally:
        c.close()


def test_cluster_forms_with_one_raft_leader(cluster):
    leader = leader_id(cluster)
    assert leader in cluster.nodes
    for i in cluster.nodes:
        status = cluster.status(i)
        nodes = {n["id"]: n for n in status["nodes"]}
        assert set(nodes) == {1, 2, 3}, status
        assert all(n["role"] == "voter" and n["state"] == "active" for n in nodes.values())
        assert [n["id"] for n in nodes.values() if n["raft_state"] == "leader"] == [leader]
        # Every broker registered itself through Raft.
        assert all(n.get("registered") for n in nodes.values()), status
    # The leader knows how far each voter is behind.
    lags = [n["lag"] for n in cluster.status(leader)["nodes"]]
    assert all(lag is not None and lag >= 0 for lag in lags), lags


def test_create_topic_on_a_follower_is_visible_everywhere(cluster):
    leader = leader_id(cluster)
    follower = next(i for i in cluster.nodes if i != leader)
    topic = unique("placed")
    create_topic(cluster.nodes[follower], topic, partitions=6)
    views = [topic_metadata(node, topic) for node in cluster.nodes.values()]
    for brokers, leaders in views:
        assert brokers == {1, 2, 3}
        assert leaders == views[0][1]
    # Balanced: two partition leaders on each broker.
    per_broker = sorted(list(views[0][1].values()).count(b) for b in (1, 2, 3))
    assert per_broker == [2, 2, 2], views[0][1]


def test_produce_to_a_non_leader_is_not_leader_or_follower(cluster):
    topic = unique("wrong-broker")
    create_topic(cluster.nodes[1], topic, partitions=3)
    _, leaders = topic_metadata(cluster.nodes[1], topic)
    for partition, leader in leaders.items():
        other = next(i for i in cluster.nodes if i != leader)
        batch = record_batch([(b"k", b"v")])
        with WireClient(cluster.nodes[other].port) as c:
            code, _ = c.produce_v3(topic, partition, batch)
        assert code == NOT_LEADER_OR_FOLLOWER, (partition, leader, other, code)
        with WireClient(cluster.nodes[leader].port) as c:
            code, _ = c.produce_v3(topic, partition, batch)
        assert code == 0


def test_confluent_kafka_produces_and_consumes_through_every_leader(cluster):
    topic = unique("ck")
    create_topic(cluster.nodes[2], topic, partitions=6)
    from confluent_kafka import Producer

    # Bootstrap from one broker only: the client learns the others from Metadata.
    p = Producer({"bootstrap.servers": cluster.nodes[3].bootstrap, "acks": "all"})
    delivered, errors = [], []
    for i in range(600):
        p.produce(
            topic,
            key=f"k{i}".encode(),
            value=f"v{i}".encode(),
            partition=i % 6,
            on_delivery=lambda err, msg: (errors if err else delivered).append(err or msg),
        )
    assert p.flush(30) == 0
    assert not errors, errors[:3]
    assert {m.partition() for m in delivered} == set(range(6))
    got = consume_all(cluster.nodes[1].bootstrap, topic, 6, 600)
    assert sorted(m.value() for m in got) == sorted(f"v{i}".encode() for i in range(600))
    for m in got:
        assert int(m.value()[1:]) % 6 == m.partition()


def test_kafka_python_produces_and_consumes_through_every_leader(cluster):
    topic = unique("kp")
    create_topic(cluster.nodes[1], topic, partitions=3)
    producer = KafkaProducer(bootstrap_servers=cluster.nodes[2].bootstrap, acks="all")
    futures = [
        producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % 3)
        for i in range(150)
    ]
    producer.flush(30)
    offsets = [f.get(timeout=30) for f in futures]
    assert {o.partition for o in offsets} == {0, 1, 2}
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.nodes[3].bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    consumer.assign([KpTopicPartition(topic, p) for p in range(3)])
    consumer.seek_to_beginning()
    values = []
    deadline = time.monotonic() + 30
    while len(values) < 150 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()
    assert sorted(values) == sorted(b"v%d" % i for i in range(150))


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_consumer_group_across_brokers(cluster, protocol):
    topic = unique("grp")
    group = unique("g")
    create_topic(cluster.nodes[1], topic, partitions=6)
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": cluster.bootstrap})
    for i in range(60):
        p.produce(topic, value=b"%d" % i, partition=i % 6)
    assert p.flush(30) == 0

    def member(node):
        conf = {
            "bootstrap.servers": cluster.nodes[node].bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "group.protocol": protocol,
        }
        if protocol == "classic":
            # With the consumer protocol (KIP-848) the broker sets these.
            conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        c = Consumer(conf)
        c.subscribe([topic])
        return c

    members = [member(1), member(3)]
    seen = {}
    deadline = time.monotonic() + 45
    while len(seen) < 60:
        assert time.monotonic() < deadline, f"group consumed {len(seen)} of 60"
        for c in members:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen[(m.partition(), m.offset())] = m.value()
                c.commit(message=m, asynchronous=False)
    assignments = [set(tp.partition for tp in c.assignment()) for c in members]
    for c in members:
        c.close()
    assert sorted(int(v) for v in seen.values()) == list(range(60))
    assert assignments[0].isdisjoint(assignments[1])

    # Every broker names the same coordinator, and the committed offsets are there.
    coordinators = set()
    for node in cluster.nodes.values():
        groups = admin_for(node).describe_consumer_groups([group])
        coordinators.add(groups[group].result(timeout=WAIT_S).coordinator.id)
    assert len(coordinators) == 1, coordinators
    c = Consumer({"bootstrap.servers": cluster.nodes[2].bootstrap, "group.id": group})
    committed = c.committed([TopicPartition(topic, p) for p in range(6)], timeout=WAIT_S)
    c.close()
    assert [tp.offset for tp in committed] == [10] * 6


def test_admin_status_shape(cluster):
    status = cluster.status(2)
    assert set(status) >= {"leader_id", "nodes", "partitions"}
    assert set(status["partitions"]) >= {"total", "under_replicated", "offline"}
    assert status["partitions"]["under_replicated"] == 0
    json.dumps(status)


def test_raft_leader_loss_restart_and_full_restart():
    c = ChronikCluster(3, name="failover", **CLUSTER_ENV)
    try:
        c.start()
        before = unique("before")
        create_topic(c.nodes[1], before, partitions=3)
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
        for i in range(30):
            p.produce(before, value=b"%d" % i, partition=i % 3)
        assert p.flush(30) == 0

        old = leader_id(c)
        killed_at = time.monotonic()
        c.nodes[old].kill()
        rest = [i for i in c.nodes if i != old]
        new = leader_id(c, among=rest, other_than=old, timeout=15)
        elected_after = time.monotonic() - killed_at
        assert new in rest
        # Election timeout is 1-2 s after the last heartbeat.
        assert elected_after < 6, f"new raft leader after {elected_after:.1f}s"

        # Metadata still changes, through either survivor.
        after = unique("after")
        create_topic(c.nodes[rest[0]], after, partitions=2)
        _, leaders = topic_metadata(c.nodes[rest[1]], after)
        assert set(leaders) == {0, 1}

        # The old leader rejoins from its disk and learns what happened without it.
        c.nodes[old].start()
        assert leader_id(c) in c.nodes
        wait_until(
            lambda: after in admin_for(c.nodes[old]).list_topics(timeout=WAIT_S).topics,
            timeout=30,
            what="rejoined node seeing the topic created while it was down",
        )
        roles = {n["id"]: n["raft_state"] for n in c.status(old)["nodes"]}
        assert sorted(roles.values()).count("leader") == 1, roles

        # Full-cluster restart: topics, placement and data survive. The rejoined broker was
        # fenced while down (its single-replica partitions had no leader) and is unfenced on
        # its first heartbeats: take the placement once every partition is led again.
        placement = wait_until(
            lambda: (lambda pl: pl if -1 not in pl.values() else None)(
                topic_metadata(c.nodes[1], before)[1]
            ),
            timeout=30,
            what="every partition led again after the rejoin",
        )
        for node in c.nodes.values():
            node.kill()
        c.start()
        leader_id(c)
        # A broker killed while the others still ran was fenced by them; it is unfenced on its
        # first heartbeat after the restart, so its partitions may be briefly unled.
        for node_id, node in c.nodes.items():
            brokers, leaders = wait_until(
                lambda: (lambda md: md if -1 not in md[1].values() else None)(topic_metadata(node, before)),
                timeout=15,
                what=f"every partition led again after the full restart, seen by broker {node_id}",
            )
            assert brokers == {1, 2, 3}
            assert leaders == placement
            assert after in admin_for(node).list_topics(timeout=WAIT_S).topics
        got = consume_all(c.bootstrap, before, 3, 30)
        assert sorted(int(m.value()) for m in got) == list(range(30))
        create_topic(c.nodes[3], unique("post-restart"), partitions=1)
    finally:
        c.cleanup()


def cli(node, *args):
    """Run `chronik-server cluster ...` against `node`'s HTTP API."""
    env = dict(os.environ, CHRONIK_UNIFIED_API_PORT=str(node.http_port), CHRONIK_BIND_ADDR="127.0.0.1")
    return subprocess.run(
        [node.binary, "cluster", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_add_node_joins_as_learner_then_becomes_a_voter():
    c = ChronikCluster(3, name="grow", **CLUSTER_ENV)
    newcomer = None
    try:
        c.start()
        peers = c.nodes[1].env_overrides["CHRONIK_PEERS"]
        port = free_port()
        newcomer = ChronikServer(
            "grow-4",
            CHRONIK_NODE_ID=4,
            CHRONIK_PEERS=peers,
            CHRONIK_CLUSTER_PORT=port,
            **CLUSTER_ENV,
        )
        newcomer.launch()
        # Not in the initial voters: it waits to be added and serves no Kafka clients yet.
        time.sleep(1.5)
        assert newcomer.alive()
        with pytest.raises(RuntimeError):
            newcomer.wait_ready(timeout=0.5)

        status = cli(c.nodes[2], "status")
        assert status.returncode == 0, status.stderr
        assert "raft leader" in status.stdout

        added = cli(c.nodes[2], "add-node", "--node-id", "4", "--address", f"127.0.0.1:{port}")
        assert added.returncode == 0, added.stdout + added.stderr
        newcomer.wait_ready(timeout=30)
        for i in (1, 2, 3):
            nodes = {n["id"]: n for n in c.status(i)["nodes"]}
            assert set(nodes) == {1, 2, 3, 4}
            assert nodes[4]["role"] == "voter"
        wait_until(
            lambda: {n["id"] for n in c.status(1)["nodes"] if n.get("registered")} == {1, 2, 3, 4},
            what="node 4 registered as a broker",
        )

        # Placement now spreads over four brokers, as every node (the newcomer included) says.
        topic = unique("four")
        create_topic(newcomer, topic, partitions=8)
        for node in [*c.nodes.values(), newcomer]:
            brokers, leaders = topic_metadata(node, topic)
            assert brokers == {1, 2, 3, 4}
            assert sorted(leaders.values()) == [1, 1, 2, 2, 3, 3, 4, 4]

        # Adding a member twice is a conflict; a malformed body is a bad request.
        url = f"http://127.0.0.1:{c.nodes[1].http_port}/admin/cluster/nodes"
        for body, code in [
            ({"node_id": 4, "address": f"127.0.0.1:{port}"}, 409),
            ({"node_id": 5}, 400),
        ]:
            req = urllib.request.Request(
                url, data=json.dumps(body).encode(), method="POST",
                headers={"Content-Type": "application/json"},
            )
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=30)
            assert e.value.code == code, e.value.read()
    finally:
        if newcomer is not None:
            newcomer.cleanup()
        c.cleanup()
