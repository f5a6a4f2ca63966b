"""Transactions on a three-broker cluster. The transaction coordinator of an id is one broker;
the partitions a transaction writes, and the __consumer_offsets partition of a group it commits
offsets for, are led by others. Their COMMIT/ABORT markers travel to those leaders over the
cluster port (Kafka's WriteTxnMarkers), so read_committed consumers everywhere see exactly the
committed records and the last stable offset catches up with the high watermark.
"""

import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clients import WAIT_S, wait_until
from conftest import ChronikCluster
from kafka_wire import WireClient
from test_cluster import CLUSTER_ENV
from test_replication import consume, create_replicated, placement


@pytest.fixture(scope="module")
def cluster():
    c = ChronikCluster(3, name="txncluster", **CLUSTER_ENV)
    try:
        yield c.start()
    finally:
        c.cleanup()


def find_coordinator(node, key, key_type):
    """FindCoordinator v1 asked of `node` (key type 0 group, 1 transaction): its node id."""
    raw = key.encode()
    body = struct.pack(">h", len(raw)) + raw + struct.pack(">b", key_type)
    with WireClient(node.port) as w:
        resp = w.request(10, 1, body)
    _throttle, error = struct.unpack_from(">ih", resp, 0)
    assert error == 0, error
    (msg_len,) = struct.unpack_from(">h", resp, 6)
    (node_id,) = struct.unpack_from(">i", resp, 8 + max(msg_len, 0))
    return node_id


def read_all(bootstrap, topic, partitions, isolation):
    """The values read at the isolation level, sorted (each record once: duplicates fail)."""
    got, dups = consume(bootstrap, topic, partitions, timeout=WAIT_S, isolation=isolation)
    assert dups == []
    return sorted(v.decode() for v in got)


def stable_everywhere(bootstrap, topic, partitions):
    """read_committed "latest" (the last stable offset) equals the high watermark on every
    partition: no transaction is left open on any of them."""
    rc = Consumer({"bootstrap.servers": bootstrap, "group.id": "u", "isolation.level": "read_committed"})
    ru = Consumer({"bootstrap.servers": bootstrap, "group.id": "u"})
    try:
        for p in range(partitions):
            tp = TopicPartition(topic, p)
            if rc.get_watermark_offsets(tp, timeout=WAIT_S)[1] != ru.get_watermark_offsets(tp, timeout=WAIT_S)[1]:
                return False
        return True
    finally:
        rc.close()
        ru.close()


def test_commit_and_abort_reach_partitions_led_by_every_broker(cluster):
    suffix = uuid.uuid4().hex[:6]
    single, replicated = f"txs-{suffix}", f"txr-{suffix}"
    create_replicated(cluster.nodes[1], single, partitions=6, rf=1, min_isr=1)
    create_replicated(cluster.nodes[1], replicated, partitions=3, rf=3, min_isr=2)
    leaders = {leader for leader, _, _ in placement(cluster.nodes[1], single).values()}
    assert leaders == {1, 2, 3}, "the transaction spans partitions led by every broker"

    p = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "transactional.id": f"tx-{suffix}",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    p.init_transactions(WAIT_S)

    def txn(prefix, commit):
        p.begin_transaction()
        for i in range(30):
            p.produce(single, value=f"{prefix}-{i}".encode(), partition=i % 6)
            p.produce(replicated, value=f"{prefix}-{i}".encode(), partition=i % 3)
        if commit:
            p.commit_transaction(WAIT_S)
        else:
            assert p.flush(WAIT_S) == 0
            p.abort_transaction(WAIT_S)

    txn("one", commit=True)
    txn("gone", commit=False)
    txn("two", commit=True)

    expected = sorted([f"one-{i}" for i in range(30)] + [f"two-{i}" for i in range(30)])
    for topic, partitions in ((single, 6), (replicated, 3)):
        wait_until(
            lambda: stable_everywhere(cluster.bootstrap, topic, partitions),
            what=f"every partition of {topic} stable",
        )
        assert read_all(cluster.bootstrap, topic, partitions, "read_committed") == expected
        assert len(read_all(cluster.bootstrap, topic, partitions, "read_uncommitted")) == 90


def test_offsets_committed_in_a_transaction_reach_a_group_coordinator_on_another_broker(cluster):
    suffix = uuid.uuid4().hex[:6]
    source, sink = f"cin-{suffix}", f"cout-{suffix}"
    create_replicated(cluster.nodes[2], source, partitions=3, rf=1, min_isr=1)
    create_replicated(cluster.nodes[2], sink, partitions=3, rf=1, min_isr=1)
    txn_id = f"ctp-{suffix}"
    txn_coordinator = find_coordinator(cluster.nodes[1], txn_id, 1)
    group = next(
        g
        for g in (f"g-{suffix}-{i}" for i in range(100))
        if find_coordinator(cluster.nodes[1], g, 0) != txn_coordinator
    )

    plain = Producer({"bootstrap.servers": cluster.bootstrap})
    for i in range(30):
        plain.produce(source, value=f"in-{i}".encode(), partition=i % 3)
    assert plain.flush(WAIT_S) == 0

    c = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    p = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "transactional.id": txn_id,
            "enable.idempotence": True,
        }
    )
    p.init_transactions(WAIT_S)
    try:
        c.subscribe([source])
        batch = []
        deadline = time.monotonic() + WAIT_S
        while len(batch) < 30:
            assert time.monotonic() < deadline, f"consumed {len(batch)}"
            m = c.poll(0.2)
            if m is not None and not m.error():
                batch.append(m)
        p.begin_transaction()
        for m in batch:
            p.produce(sink, value=b"out-" + m.value(), partition=m.partition())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), WAIT_S)
        p.commit_transaction(WAIT_S)
    finally:
        c.close()

    reader = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    try:
        committed = reader.committed([TopicPartition(source, q) for q in range(3)], timeout=WAIT_S)
        assert {tp.partition: tp.offset for tp in committed} == {0: 10, 1: 10, 2: 10}
    finally:
        reader.close()
    assert read_all(cluster.bootstrap, sink, 3, "read_committed") == sorted(
        f"out-in-{i}" for i in range(30)
    )
