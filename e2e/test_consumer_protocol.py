"""KIP-848 consumer groups (`group.protocol=consumer`) with confluent-kafka (librdkafka 2.x):
the broker assigns partitions, members join, leave and join again while records are consumed
with synchronous commits, nothing is skipped and no partition is owned twice; the AdminClient
lists and describes the group; a broker SIGKILL loses no committed offset.

The server tells members to heartbeat every 500 ms (CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS)
so assignments converge in a test's time; Kafka's default is 5 s.
"""

import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupType, KafkaError, KafkaException

from clients import WAIT_S, admin, create_topic, produce_all

ENV = {
    "CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
    "CHRONIK_GROUP_CONSUMER_SESSION_TIMEOUT_MS": "6000",
    "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
}


@pytest.fixture(scope="module")
def server(start_server):
    return start_server(name="consumer-protocol", **ENV)


@pytest.fixture(scope="module")
def start_server():
    from conftest import ServerFactory

    factory = ServerFactory()
    yield factory
    factory.cleanup()


def group_name():
    return f"cg-{uuid.uuid4().hex[:8]}"


class Member:
    """A consumer-protocol member: its partitions as the incremental callbacks report them, and
    every record it processed (committed synchronously after processing)."""

    def __init__(self, server, group, topic, owners, **conf):
        base = {
            "bootstrap.servers": server.bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        base.update(conf)
        self.consumer = Consumer(base)
        self.owners = owners
        self.assigned = set()
        self.values = []
        self.commit_errors = []
        self.rebalance_events = 0
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer, partitions):
        self.rebalance_events += 1
        for p in partitions:
            holder = self.owners.get(p.partition)
            assert holder is None or holder is self, f"partition {p.partition} owned twice"
            self.owners[p.partition] = self
            self.assigned.add(p.partition)

    def _on_revoke(self, consumer, partitions):
        self.rebalance_events += 1
        for p in partitions:
            self.assigned.discard(p.partition)
            if self.owners.get(p.partition) is self:
                del self.owners[p.partition]

    def poll(self, timeout=0.05):
        msg = self.consumer.poll(timeout)
        if msg is None:
            return
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"consumer error: {msg.error()}")
            return
        self.values.append(int(msg.value()))
        try:
            self.consumer.commit(message=msg, asynchronous=False)
        except KafkaException as e:
            # A commit refused while the member's epoch moves on, or while the broker is down:
            # the record may be delivered again, which at-least-once allows.
            self.commit_errors.append(e.args[0].code())

    def close(self):
        self.consumer.close()
        for p in list(self.assigned):
            if self.owners.get(p) is self:
                del self.owners[p]


def poll_until(members, predicate, timeout=WAIT_S, what="condition", progress=None):
    """Poll every member until `predicate` holds. With `progress` (a count that grows while the
    members get somewhere), the wait is for a stall rather than for the whole: each member
    commits every record synchronously, so on a loaded machine whose fsyncs queue behind other
    writers, draining hundreds of records is slow without anything being wrong."""
    deadline = time.monotonic() + timeout
    last = progress() if progress else None
    while time.monotonic() < deadline:
        for m in members:
            m.poll()
        if predicate():
            return
        if progress and progress() != last:
            last = progress()
            deadline = time.monotonic() + timeout
    state = [sorted(m.assigned) for m in members]
    stalled = f"; stalled at {last}" if progress else ""
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}{stalled}; assignments: {state}"
    )


def produce_range(server, topic, start, end, partitions):
    produce_all(
        server, topic, [(f"k{i}".encode(), f"{i}".encode(), i % partitions) for i in range(start, end)]
    )


def consumed(members):
    return sorted(v for m in members for v in m.values)


def test_members_join_leave_and_nothing_is_skipped(server, topic_name):
    create_topic(server, topic_name, partitions=6)
    group = group_name()
    owners = {}
    members = [Member(server, group, topic_name, owners) for _ in range(3)]
    gone = []
    try:
        # Members joining one after another pass through intermediate targets (3/3, then
        # 2/2/2); the uniform assignor settles on an even split.
        poll_until(
            members,
            lambda: sorted(len(m.assigned) for m in members) == [2, 2, 2],
            what="three members to share six partitions evenly",
        )
        assert sorted(p for m in members for p in m.assigned) == list(range(6))
        produce_range(server, topic_name, 0, 300, 6)
        poll_until(members, lambda: len(set(consumed(members))) >= 150, what="half the records")

        # One member leaves mid-way; the other two take over its partitions.
        leaving = members.pop(0)
        leaving.close()
        gone.append(leaving)
        produce_range(server, topic_name, 300, 600, 6)
        poll_until(
            members,
            lambda: sorted(p for m in members for p in m.assigned) == list(range(6)),
            what="the two survivors to own all six partitions",
        )
        # A new member joins and gets a share back.
        members.append(Member(server, group, topic_name, owners))
        poll_until(
            members,
            lambda: all(m.assigned for m in members)
            and sorted(p for m in members for p in m.assigned) == list(range(6)),
            what="the newcomer to get partitions",
        )
        produce_range(server, topic_name, 600, 900, 6)
        everyone = members + gone
        poll_until(
            members,
            lambda: set(consumed(everyone)) == set(range(900)),
            what="every record",
            progress=lambda: len(set(consumed(everyone))),
        )
        # At least once: every record seen; duplicates only where a partition moved.
        assert set(consumed(everyone)) == set(range(900))

        def describe():
            return admin(server).describe_consumer_groups([group])[group].result(timeout=WAIT_S)

        # The last hand-over may still be finishing (a member's next heartbeat moves it on).
        deadline = time.monotonic() + WAIT_S
        described = describe()
        while not str(described.state).endswith("STABLE") and time.monotonic() < deadline:
            for m in members:
                m.poll()
            described = describe()
        assert described.type == ConsumerGroupType.CONSUMER
        assert str(described.state).endswith("STABLE"), described.state
        assert len(described.members) == 3
        assigned = sorted(
            tp.partition for m in described.members for tp in m.assignment.topic_partitions
        )
        assert assigned == list(range(6))
        listed = admin(server).list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(
            timeout=WAIT_S
        )
        assert group in {g.group_id for g in listed.valid}
        # Offsets committed by the members are the ends of every partition.
        committed = members[0].consumer.committed(
            [p for p in members[0].consumer.assignment()], timeout=WAIT_S
        )
        assert all(tp.offset >= 0 for tp in committed)
    finally:
        for m in members:
            m.close()


def test_server_side_range_assignor_and_classic_members_are_refused(server, topic_name):
    create_topic(server, topic_name, partitions=4)
    group = group_name()
    owners = {}
    members = [
        Member(server, group, topic_name, owners, **{"group.remote.assignor": "range"})
        for _ in range(2)
    ]
    try:
        poll_until(
            members,
            lambda: all(m.assigned for m in members)
            and sorted(p for m in members for p in m.assigned) == [0, 1, 2, 3],
            what="two members to split four partitions",
        )
        # Range gives contiguous ranges.
        assert sorted(sorted(m.assigned) for m in members) == [[0, 1], [2, 3]]
        described = admin(server).describe_consumer_groups([group])[group].result(timeout=WAIT_S)
        assert described.partition_assignor == "range"

        # A classic member cannot join a group the consumer protocol holds.
        classic = Consumer(
            {
                "bootstrap.servers": server.bootstrap,
                "group.id": group,
                "session.timeout.ms": 6000,
                "enable.auto.commit": False,
            }
        )
        try:
            classic.subscribe([topic_name])
            error = None
            deadline = time.monotonic() + WAIT_S
            while error is None and time.monotonic() < deadline:
                for m in members:
                    m.poll()
                msg = classic.poll(0.1)
                if msg is not None and msg.error():
                    error = msg.error()
            assert error is not None and error.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL
        finally:
            classic.close()
    finally:
        for m in members:
            m.close()


def test_unknown_assignor_is_refused_with_a_reason(server, topic_name):
    create_topic(server, topic_name, partitions=1)
    c = Consumer(
        {
            "bootstrap.servers": server.bootstrap,
            "group.id": group_name(),
            "group.protocol": "consumer",
            "group.remote.assignor": "no-such-assignor",
        }
    )
    try:
        c.subscribe([topic_name])
        deadline = time.monotonic() + WAIT_S
        error = None
        while error is None and time.monotonic() < deadline:
            try:
                msg = c.poll(0.2)
            except KafkaException as e:
                error = e.args[0]
                break
            if msg is not None and msg.error():
                error = msg.error()
        # librdkafka raises UNSUPPORTED_ASSIGNOR as a fatal error carrying the broker's text.
        assert error is not None, "no error for an unknown assignor"
        assert error.code() in (KafkaError.UNSUPPORTED_ASSIGNOR, KafkaError._FATAL), error
        assert "assignor" in error.str(), error
    finally:
        c.close()


def test_sigkill_keeps_the_group_its_assignments_and_committed_offsets(start_server, topic_name):
    server = start_server(name="consumer-protocol-restart", **ENV)
    create_topic(server, topic_name, partitions=3)
    group = group_name()
    owners = {}
    produce_range(server, topic_name, 0, 150, 3)
    members = [Member(server, group, topic_name, owners) for _ in range(2)]
    try:
        poll_until(
            members,
            lambda: len(set(consumed(members))) >= 60 and all(m.assigned for m in members),
            what="some records and both members assigned",
        )
        before = len(consumed(members))
        assignments = [sorted(m.assigned) for m in members]
        events = [m.rebalance_events for m in members]
        server.restart(kill=True)
        produce_range(server, topic_name, 150, 300, 3)
        poll_until(
            members,
            lambda: set(consumed(members)) == set(range(300)),
            timeout=60,
            what="every record after the restart",
            progress=lambda: len(set(consumed(members))),
        )
        # Committed offsets survived: had they been lost, the group would start again from the
        # earliest offset and read everything consumed before the kill a second time.
        values = consumed(members)
        duplicates = len(values) - len(set(values))
        assert duplicates < before / 2, (duplicates, before)
        # The group's state was stored: the members carried on with their epochs and partitions,
        # with no rebalance (no assign or revoke callback) across the kill.
        assert [sorted(m.assigned) for m in members] == assignments
        assert [m.rebalance_events for m in members] == events
    finally:
        for m in members:
            m.close()
