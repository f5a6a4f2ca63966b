"""Transactions with confluent-kafka (librdkafka's transactional producer): committed records are
seen by read_committed consumers exactly once, aborted ones never (read_uncommitted still sees
them), offsets sent with send_offsets_to_transaction commit atomically with the output, a second
producer with the same transactional.id fences the first, a transaction left open past its
timeout is aborted by the coordinator, and all of it survives a SIGKILL of the broker. kafka-python's
transactional producer and read_committed consumer work too."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from clients import consume_to_end, create_topic, producer, wait_until
from conftest import ServerFactory

# A rebalance without the 3 s initial delay, so group tests stay short.
ENV = {"CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS": "0"}
WAIT_S = 30.0


@pytest.fixture(scope="module")
def server():
    factory = ServerFactory()
    yield factory(name="txn", CHRONIK_FLUSH="group", **ENV)
    factory.cleanup()


def txn_producer(server, transactional_id, **conf):
    return producer(
        server,
        **{
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "linger.ms": 5,
            **conf,
        },
    )


def values(messages):
    return [m.value().decode() for m in messages]


def read(server, topic, partitions, isolation):
    return consume_to_end(
        server, topic, partitions, timeout=WAIT_S, **{"isolation.level": isolation}
    )


def latest(server, topic, partition, isolation):
    """ListOffsets "latest" at the isolation level: the last stable offset for read_committed."""
    c = Consumer(
        {
            "bootstrap.servers": server.bootstrap,
            "group.id": "chronik-e2e-unused",
            "isolation.level": isolation,
        }
    )
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=WAIT_S)[1]
    finally:
        c.close()


def produce_in_txn(p, topic, items, partitions=1):
    for i, v in enumerate(items):
        p.produce(topic, value=v.encode(), partition=i % partitions)


def test_committed_transaction_is_read_exactly_once(server, topic_name):
    create_topic(server, topic_name, partitions=2)
    p = txn_producer(server, f"tx-{uuid.uuid4().hex[:8]}")
    p.init_transactions(WAIT_S)
    for round_ in range(3):
        p.begin_transaction()
        produce_in_txn(p, topic_name, [f"r{round_}-{i}" for i in range(40)], partitions=2)
        p.commit_transaction(WAIT_S)
    expected = sorted(f"r{r}-{i}" for r in range(3) for i in range(40))
    assert sorted(values(read(server, topic_name, [0, 1], "read_committed"))) == expected
    assert sorted(values(read(server, topic_name, [0, 1], "read_uncommitted"))) == expected


def test_aborted_transaction_is_hidden_from_read_committed_only(server, topic_name):
    create_topic(server, topic_name, partitions=2)
    p = txn_producer(server, f"tx-{uuid.uuid4().hex[:8]}")
    p.init_transactions(WAIT_S)
    p.begin_transaction()
    produce_in_txn(p, topic_name, [f"aborted-{i}" for i in range(30)], partitions=2)
    p.flush(WAIT_S)
    p.abort_transaction(WAIT_S)
    p.begin_transaction()
    produce_in_txn(p, topic_name, [f"committed-{i}" for i in range(10)], partitions=2)
    p.commit_transaction(WAIT_S)

    committed = values(read(server, topic_name, [0, 1], "read_committed"))
    assert sorted(committed) == sorted(f"committed-{i}" for i in range(10))
    everything = values(read(server, topic_name, [0, 1], "read_uncommitted"))
    assert sorted(everything) == sorted(
        [f"aborted-{i}" for i in range(30)] + [f"committed-{i}" for i in range(10)]
    )


def test_open_transaction_holds_back_read_committed_until_it_commits(server, topic_name):
    create_topic(server, topic_name)
    p = txn_producer(server, f"tx-{uuid.uuid4().hex[:8]}")
    p.init_transactions(WAIT_S)
    p.begin_transaction()
    produce_in_txn(p, topic_name, ["open-0", "open-1"])
    p.flush(WAIT_S)
    # A plain record after the open transaction is behind the last stable offset too.
    plain = producer(server)
    plain.produce(topic_name, value=b"plain", partition=0)
    assert plain.flush(WAIT_S) == 0
    assert values(read(server, topic_name, [0], "read_committed")) == []
    assert values(read(server, topic_name, [0], "read_uncommitted")) == ["open-0", "open-1", "plain"]
    p.commit_transaction(WAIT_S)
    assert values(read(server, topic_name, [0], "read_committed")) == ["open-0", "open-1", "plain"]


def group_consumer(server, group, **conf):
    return Consumer(
        {
            "bootstrap.servers": server.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **conf,
        }
    )


def poll_n(consumer, n, timeout=WAIT_S):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"got {len(out)} of {n} messages in {timeout}s"
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            raise AssertionError(f"consumer error: {msg.error()}")
        out.append(msg)
    return out


def committed_offsets(server, group, topic, partitions):
    c = group_consumer(server, group)
    try:
        tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=WAIT_S)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def test_consume_transform_produce_commits_offsets_with_the_output(server):
    suffix = uuid.uuid4().hex[:6]
    source, sink, group = f"ctp-in-{suffix}", f"ctp-out-{suffix}", f"ctp-{suffix}"
    create_topic(server, source, partitions=2)
    create_topic(server, sink, partitions=2)
    plain = producer(server)
    for i in range(60):
        plain.produce(source, value=f"in-{i}".encode(), partition=i % 2)
    assert plain.flush(WAIT_S) == 0

    c = group_consumer(server, group)
    c.subscribe([source])
    p = txn_producer(server, f"ctp-{suffix}")
    p.init_transactions(WAIT_S)

    def process(batch, commit):
        p.begin_transaction()
        for m in batch:
            p.produce(sink, value=b"out-" + m.value(), partition=m.partition())
        p.send_offsets_to_transaction(
            c.position(c.assignment()), c.consumer_group_metadata(), WAIT_S
        )
        if commit:
            p.commit_transaction(WAIT_S)
        else:
            # Delivered first, so the abort has stored records to hide (an abort purges what
            # is still queued in the client).
            assert p.flush(WAIT_S) == 0
            p.abort_transaction(WAIT_S)

    # First 20 processed and committed, the next 20 aborted: neither their output nor their
    # offsets may take effect.
    process(poll_n(c, 20), commit=True)
    first = committed_offsets(server, group, source, [0, 1])
    # A partition with nothing consumed yet has no offset (-1001).
    assert sum(max(o, 0) for o in first.values()) == 20, first
    process(poll_n(c, 20), commit=False)
    assert committed_offsets(server, group, source, [0, 1]) == first
    c.close()

    # A new member of the group resumes from the committed offsets and finishes the input.
    c = group_consumer(server, group)
    c.subscribe([source])
    process(poll_n(c, 40), commit=True)
    c.close()

    assert committed_offsets(server, group, source, [0, 1]) == {0: 30, 1: 30}
    out = values(read(server, sink, [0, 1], "read_committed"))
    assert sorted(out) == sorted(f"out-in-{i}" for i in range(60)), "each input once in the output"
    assert len(values(read(server, sink, [0, 1], "read_uncommitted"))) == 80


def test_group_on_a_transactional_topic_commits_up_to_the_end(server, topic_name):
    """Control markers must not leave a lag of 1: after consuming everything the committed
    offset equals the high watermark."""
    create_topic(server, topic_name)
    p = txn_producer(server, f"tx-{uuid.uuid4().hex[:8]}")
    p.init_transactions(WAIT_S)
    for round_ in range(3):
        p.begin_transaction()
        produce_in_txn(p, topic_name, [f"{round_}-{i}" for i in range(5)])
        if round_ == 1:
            p.flush(WAIT_S)
            p.abort_transaction(WAIT_S)
        else:
            p.commit_transaction(WAIT_S)
    group = f"lag-{uuid.uuid4().hex[:6]}"
    c = group_consumer(server, group)
    c.subscribe([topic_name])
    got = poll_n(c, 10)
    assert sorted(values(got)) == sorted(f"{r}-{i}" for r in (0, 2) for i in range(5))
    # The consumer's position moves past the final marker (offset 17) as it fetches on.
    def past_the_last_marker():
        assert c.poll(0.2) is None, "nothing more to consume"
        return c.position([TopicPartition(topic_name, 0)])[0].offset >= 18

    wait_until(past_the_last_marker, what="position past the last marker")
    c.commit(asynchronous=False)
    low, high = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=WAIT_S)
    c.close()
    assert high == 18  # 15 records and 3 markers
    assert committed_offsets(server, group, topic_name, [0]) == {0: high}


def expect_fenced(action):
    with pytest.raises(KafkaException) as info:
        action()
    err = info.value.args[0]
    assert err.fatal() or err.code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    ), f"expected a fencing error, got {err}"
    return err


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(server, topic_name):
    create_topic(server, topic_name)
    tid = f"fence-{uuid.uuid4().hex[:8]}"
    zombie = txn_producer(server, tid)
    zombie.init_transactions(WAIT_S)
    zombie.begin_transaction()
    produce_in_txn(zombie, topic_name, ["zombie-0", "zombie-1"])
    zombie.flush(WAIT_S)

    successor = txn_producer(server, tid)
    successor.init_transactions(WAIT_S)  # aborts the zombie's open transaction
    successor.begin_transaction()
    produce_in_txn(successor, topic_name, ["successor-0"])
    successor.commit_transaction(WAIT_S)

    def zombie_goes_on():
        zombie.produce(topic_name, value=b"zombie-2", partition=0)
        zombie.commit_transaction(WAIT_S)

    expect_fenced(zombie_goes_on)
    assert values(read(server, topic_name, [0], "read_committed")) == ["successor-0"]
    assert "zombie-2" not in values(read(server, topic_name, [0], "read_uncommitted"))


def test_a_transaction_past_its_timeout_is_aborted(server, topic_name):
    create_topic(server, topic_name)
    p = txn_producer(server, f"timeout-{uuid.uuid4().hex[:8]}", **{"transaction.timeout.ms": 2000})
    p.init_transactions(WAIT_S)
    p.begin_transaction()
    produce_in_txn(p, topic_name, ["late-0", "late-1"])
    p.flush(WAIT_S)
    started = time.monotonic()
    assert latest(server, topic_name, 0, "read_committed") == 0, "held at the open transaction"
    # The coordinator aborts it: an ABORT marker follows the two records and the last stable
    # offset moves past it.
    wait_until(
        lambda: latest(server, topic_name, 0, "read_committed") == 3,
        timeout=WAIT_S,
        what="the expired transaction to be aborted",
    )
    assert time.monotonic() - started > 1.0, "aborted only once the timeout passed"
    assert latest(server, topic_name, 0, "read_uncommitted") == 3
    assert values(read(server, topic_name, [0], "read_uncommitted")) == ["late-0", "late-1"]
    with pytest.raises(KafkaException):
        p.commit_transaction(WAIT_S)
    assert values(read(server, topic_name, [0], "read_committed")) == []


def test_transactions_survive_sigkill(start_server, topic_name):
    server = start_server(name="txn-kill", CHRONIK_FLUSH="group", **ENV)
    create_topic(server, topic_name, partitions=2)
    tid = f"kill-{uuid.uuid4().hex[:8]}"
    p = txn_producer(server, tid, **{"transaction.timeout.ms": 4000})
    p.init_transactions(WAIT_S)
    p.begin_transaction()
    produce_in_txn(p, topic_name, [f"committed-{i}" for i in range(20)], partitions=2)
    p.commit_transaction(WAIT_S)
    p.begin_transaction()
    produce_in_txn(p, topic_name, [f"open-{i}" for i in range(20)], partitions=2)
    p.flush(WAIT_S)

    server.restart(kill=True)

    # The committed transaction is there exactly once; the open one is aborted once its
    # timeout (counted from its start, which survived the crash) passes.
    expected = sorted(f"committed-{i}" for i in range(20))
    got = wait_until(
        lambda: sorted(
            values(consume_to_end(server, topic_name, [0, 1], **{"isolation.level": "read_committed"}))
        ),
        timeout=WAIT_S,
        what="the open transaction to be aborted after the restart",
    )
    assert got == expected
    assert len(values(read(server, topic_name, [0, 1], "read_uncommitted"))) == 40

    # The transactional id lives on: a new producer takes over and commits.
    successor = txn_producer(server, tid)
    successor.init_transactions(WAIT_S)
    successor.begin_transaction()
    produce_in_txn(successor, topic_name, ["after-0", "after-1"], partitions=2)
    successor.commit_transaction(WAIT_S)
    got = sorted(values(read(server, topic_name, [0, 1], "read_committed")))
    assert got == sorted(expected + ["after-0", "after-1"])


def test_kafka_python_transactional_producer_and_read_committed_consumer(server, topic_name):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KpTopicPartition

    create_topic(server, topic_name)
    p = KafkaProducer(
        bootstrap_servers=server.bootstrap,
        transactional_id=f"kp-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
    )
    try:
        p.init_transactions()
        p.begin_transaction()
        for i in range(5):
            p.send(topic_name, f"kept-{i}".encode(), partition=0)
        p.commit_transaction()
        p.begin_transaction()
        for i in range(5):
            p.send(topic_name, f"dropped-{i}".encode(), partition=0)
        p.flush()
        p.abort_transaction()
    finally:
        p.close()

    def kafka_python_values(isolation):
        c = KafkaConsumer(
            bootstrap_servers=server.bootstrap,
            isolation_level=isolation,
            auto_offset_reset="earliest",
            consumer_timeout_ms=3000,
        )
        try:
            c.assign([KpTopicPartition(topic_name, 0)])
            return [m.value.decode() for m in c]
        finally:
            c.close()

    kept = [f"kept-{i}" for i in range(5)]
    assert kafka_python_values("read_committed") == kept
    assert kafka_python_values("read_uncommitted") == kept + [f"dropped-{i}" for i in range(5)]
    # And librdkafka's consumer agrees.
    assert values(read(server, topic_name, [0], "read_committed")) == kept


def test_an_idle_transactional_id_expires(start_server):
    """transactional.id.expiration.ms: an id with nothing in flight and no activity for that
    long is forgotten (a tombstone in __transaction_state, so also after a restart); its next
    InitProducerId gets a new producer id instead of bumping the old one's epoch."""
    from test_replication import init_producer_id

    server = start_server(name="txnexpiry", CHRONIK_TRANSACTIONAL_ID_EXPIRATION_MS="1500", **ENV)
    error, pid, epoch = init_producer_id(server, "expiring")
    assert error == 0
    # Still known right away: the same producer id with a bumped epoch.
    error, again, next_epoch = init_producer_id(server, "expiring")
    assert (error, again, next_epoch) == (0, pid, epoch + 1)
    time.sleep(3.5)
    error, fresh, fresh_epoch = init_producer_id(server, "expiring")
    assert error == 0 and fresh != pid and fresh_epoch == 0, (pid, fresh, fresh_epoch)
    time.sleep(3.5)
    server.restart()
    error, after_restart, _ = init_producer_id(server, "expiring")
    assert error == 0 and after_restart not in (pid, fresh), "the tombstone survives a restart"
