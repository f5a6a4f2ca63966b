"""Consumer groups with real clients: confluent-kafka (librdkafka) eager and cooperative-sticky
groups, static membership, commits across a SIGKILL, kafka-python's group consumer, and the
AdminClient's group APIs.

The server runs with CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS=0 so a group's first rebalance does
not wait the Kafka default of 3 s; session timeouts are Kafka's minimum (6 s).
"""

import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition

from clients import WAIT_S, admin, create_topic, produce_all, wait_until
from conftest import ServerFactory

SESSION_MS = 6000
GROUP_ENV = {"CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS": "0"}


@pytest.fixture(scope="module")
def server():
    factory = ServerFactory()
    yield factory(name="groups", **GROUP_ENV)
    factory.cleanup()


def group_name():
    return f"g-{uuid.uuid4().hex[:8]}"


def group_consumer(server, group, **conf):
    base = {
        "bootstrap.servers": server.bootstrap,
        "group.id": group,
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 500,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    base.update(conf)
    return Consumer(base)


class Member:
    """A subscribed consumer, its assignment as the rebalance callbacks report it, and what it
    consumed."""

    def __init__(self, server, group, topic, **conf):
        self.consumer = group_consumer(server, group, **conf)
        self.cooperative = conf.get("partition.assignment.strategy") == "cooperative-sticky"
        self.assigned = set()
        self.assign_events = 0
        self.revoke_events = 0
        self.messages = []
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer, partitions):
        self.assign_events += 1
        if self.cooperative:
            self.assigned |= {p.partition for p in partitions}
        else:
            self.assigned = {p.partition for p in partitions}

    def _on_revoke(self, consumer, partitions):
        self.revoke_events += 1
        self.assigned -= {p.partition for p in partitions}

    def poll(self, timeout=0.1):
        msg = self.consumer.poll(timeout)
        if msg is not None and not msg.error():
            self.messages.append(msg)
        elif msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
            raise AssertionError(f"consumer error: {msg.error()}")
        return msg

    def close(self):
        self.consumer.close()


def poll_until(members, predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            m.poll(0.05)
        if predicate():
            return
    state = [(sorted(m.assigned), m.assign_events, m.revoke_events) for m in members]
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; members: {state}")


def produce_numbers(server, topic, count, partitions):
    produce_all(
        server,
        topic,
        [(f"k{i}".encode(), f"{i}".encode(), i % partitions) for i in range(count)],
    )


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_two_consumers_share_a_topic_and_the_survivor_takes_all(server, topic_name, strategy):
    create_topic(server, topic_name, partitions=4)
    group = group_name()
    a = Member(server, group, topic_name, **{"partition.assignment.strategy": strategy})
    b = Member(server, group, topic_name, **{"partition.assignment.strategy": strategy})
    try:
        poll_until(
            [a, b],
            lambda: a.assigned and b.assigned and a.assigned | b.assigned == {0, 1, 2, 3},
            what="both consumers to own partitions",
        )
        assert not a.assigned & b.assigned, "a partition is owned twice"
        b.close()
        b = None
        poll_until([a], lambda: a.assigned == {0, 1, 2, 3}, what="the survivor to own all")
        produce_numbers(server, topic_name, 40, 4)
        poll_until([a], lambda: len(a.messages) >= 40, what="the survivor to read everything")
        assert sorted(int(m.value()) for m in a.messages) == list(range(40))
    finally:
        a.close()
        if b is not None:
            b.close()


def test_committed_offsets_survive_sigkill_and_the_consumer_resumes(start_server, topic_name):
    server = start_server(name="groups-restart", **GROUP_ENV)
    create_topic(server, topic_name, partitions=1)
    produce_numbers(server, topic_name, 10, 1)
    group = group_name()
    m = Member(server, group, topic_name)
    try:
        poll_until([m], lambda: len(m.messages) >= 6, what="six messages")
        sixth = m.messages[5]
        committed = m.consumer.commit(
            offsets=[TopicPartition(topic_name, 0, sixth.offset() + 1)], asynchronous=False
        )
        assert committed[0].error is None
    finally:
        m.close()

    server.restart(kill=True)

    m = Member(server, group, topic_name)
    try:
        poll_until([m], lambda: m.messages, what="the first message after the restart")
        assert m.messages[0].offset() == 6, "resumes from the committed offset"
        got = m.consumer.committed([TopicPartition(topic_name, 0)], timeout=WAIT_S)
        assert got[0].offset == 6
    finally:
        m.close()


def test_static_member_restart_does_not_rebalance_the_group(server, topic_name):
    create_topic(server, topic_name, partitions=4)
    group = group_name()
    static = {"session.timeout.ms": 20000}
    a = Member(server, group, topic_name, **{"group.instance.id": "static-a"}, **static)
    b = Member(server, group, topic_name, **{"group.instance.id": "static-b"}, **static)
    try:
        poll_until(
            [a, b],
            lambda: a.assigned and b.assigned and a.assigned | b.assigned == {0, 1, 2, 3},
            what="both static members to own partitions",
        )
        # Let any trailing rebalance settle before counting b's callbacks.
        settle_deadline = time.monotonic() + 2.0
        while time.monotonic() < settle_deadline:
            a.poll(0.05)
            b.poll(0.05)
        a_before = set(a.assigned)
        b_events = (b.assign_events, b.revoke_events)

        # A static member's close sends no LeaveGroup: the group keeps its slot.
        a.close()
        a = Member(server, group, topic_name, **{"group.instance.id": "static-a"}, **static)
        poll_until([a, b], lambda: a.assigned, what="the restarted static member's assignment")
        assert a.assigned == a_before, "the restarted member gets its old partitions back"
        for _ in range(20):
            b.poll(0.05)
        assert (b.assign_events, b.revoke_events) == b_events, "the other member saw a rebalance"

        desc = admin(server).describe_consumer_groups([group])[group].result(timeout=WAIT_S)
        assert desc.state.name == "STABLE"
        assert sorted(m.group_instance_id for m in desc.members) == ["static-a", "static-b"]
    finally:
        a.close()
        b.close()


def test_kafka_python_group_consumer_reads_and_commits(server, topic_name):
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition as KTopicPartition

    create_topic(server, topic_name, partitions=2)
    produce_numbers(server, topic_name, 20, 2)
    group = group_name()
    c = KafkaConsumer(
        topic_name,
        bootstrap_servers=server.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=500,
        consumer_timeout_ms=20000,
    )
    try:
        values = []
        for msg in c:
            values.append(int(msg.value))
            if len(values) == 20:
                break
        assert sorted(values) == list(range(20))
        c.commit()
        assert c.committed(KTopicPartition(topic_name, 0)) == 10
        assert c.committed(KTopicPartition(topic_name, 1)) == 10
    finally:
        c.close()


def test_admin_client_lists_describes_alters_and_deletes_groups(server, topic_name):
    create_topic(server, topic_name, partitions=2)
    produce_numbers(server, topic_name, 10, 2)
    group = group_name()
    m = Member(server, group, topic_name)
    try:
        poll_until([m], lambda: len(m.messages) >= 10, what="all ten messages")
        m.consumer.commit(asynchronous=False)
        a = admin(server)

        listed = a.list_consumer_groups().result(timeout=WAIT_S)
        assert group in {g.group_id for g in listed.valid}

        desc = a.describe_consumer_groups([group])[group].result(timeout=WAIT_S)
        assert desc.state.name == "STABLE"
        assert len(desc.members) == 1
        assigned = {tp.partition for tp in desc.members[0].assignment.topic_partitions}
        assert assigned == {0, 1}

        with pytest.raises(Exception) as refused:
            a.delete_consumer_groups([group])[group].result(timeout=WAIT_S)
        assert "NON_EMPTY_GROUP" in str(refused.value)
    finally:
        m.close()

    offsets = (
        a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        .result(timeout=WAIT_S)
        .topic_partitions
    )
    assert sorted((tp.partition, tp.offset) for tp in offsets) == [(0, 5), (1, 5)]

    a.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic_name, 0, 2)])]
    )[group].result(timeout=WAIT_S)
    offsets = (
        a.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic_name, 0)])]
        )[group]
        .result(timeout=WAIT_S)
        .topic_partitions
    )
    assert offsets[0].offset == 2

    a.delete_consumer_groups([group])[group].result(timeout=WAIT_S)
    wait_until(
        lambda: group not in {g.group_id for g in a.list_consumer_groups().result().valid},
        what="the deleted group to disappear",
    )
    offsets = (
        a.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic_name, 0)])]
        )[group]
        .result(timeout=WAIT_S)
        .topic_partitions
    )
    assert offsets[0].offset < 0, "a deleted group has no offsets"
