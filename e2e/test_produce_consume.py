"""Everyday produce and consume behaviour seen through confluent-kafka: long polls wake up on new
data, size limits are enforced per topic, auto-creation follows CHRONIK_AUTO_CREATE_TOPICS, and a
re-created topic starts empty."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from clients import WAIT_S, admin, consume_to_end, consumer, create_topic, producer, produce_all, wait_until, watermarks


def test_consumer_waiting_at_the_end_gets_new_records_without_waiting_out_max_wait(server, topic_name):
    create_topic(server, topic_name)
    c = consumer(server, **{"fetch.wait.max.ms": 5000, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        assert c.poll(1.0) is None  # parked in a long poll at the (empty) end
        p = producer(server, **{"linger.ms": 0})
        started = time.monotonic()
        p.produce(topic_name, value=b"wake up", partition=0)
        assert p.flush(WAIT_S) == 0

        msg = None
        while msg is None and time.monotonic() - started < WAIT_S:
            msg = c.poll(0.05)
        latency = time.monotonic() - started
    finally:
        c.close()

    assert msg is not None and msg.error() is None and msg.value() == b"wake up", msg
    assert latency < 2.0, f"record arrived after {latency:.2f}s; the long poll (5s) was not woken by the append"


def test_batch_larger_than_topic_max_message_bytes_is_refused_with_message_too_large(server, topic_name):
    create_topic(server, topic_name, config={"max.message.bytes": "2048"})
    p = producer(server, **{"linger.ms": 0})
    results = []
    p.produce(topic_name, value=b"x" * 8192, partition=0, on_delivery=lambda e, m: results.append(e))
    assert p.flush(WAIT_S) == 0  # its own batch: the next record must not share its fate
    p.produce(topic_name, value=b"fits", partition=0, on_delivery=lambda e, m: results.append(e))
    assert p.flush(WAIT_S) == 0

    assert results[0] is not None and results[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, results
    assert results[1] is None, results
    assert [m.value() for m in consume_to_end(server, topic_name, [0])] == [b"fits"]


def test_producing_to_an_unknown_topic_creates_it_when_auto_create_is_on(server, topic_name):
    produce_all(server, topic_name, [(b"k", b"v", 0)])

    md = admin(server).list_topics(topic=topic_name, timeout=WAIT_S)
    assert md.topics[topic_name].error is None
    assert len(md.topics[topic_name].partitions) == 1  # CHRONIK_DEFAULT_PARTITIONS default
    assert [m.value() for m in consume_to_end(server, topic_name, [0])] == [b"v"]


def test_producing_to_an_unknown_topic_fails_when_auto_create_is_off(start_server):
    server = start_server("no-auto-create", CHRONIK_AUTO_CREATE_TOPICS="false")
    p = producer(server, **{"message.timeout.ms": 1000, "linger.ms": 0})
    results = []
    p.produce("nobody-made-me", value=b"v", on_delivery=lambda e, m: results.append(e))
    p.flush(WAIT_S)

    assert len(results) == 1 and results[0] is not None, results
    assert results[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._MSG_TIMED_OUT), results[0]
    md = admin(server).list_topics(timeout=WAIT_S)
    assert "nobody-made-me" not in md.topics


def test_a_deleted_and_recreated_topic_starts_empty(server, topic_name):
    create_topic(server, topic_name)
    produce_all(server, topic_name, [(None, b"old-%d" % i, 0) for i in range(10)])
    admin(server).delete_topics([topic_name])[topic_name].result(timeout=WAIT_S)
    wait_until(lambda: topic_name not in admin(server).list_topics(timeout=WAIT_S).topics, what="deletion")

    create_topic(server, topic_name)
    produce_all(server, topic_name, [(None, b"new", 0)])

    assert watermarks(server, topic_name, 0) == (0, 1)
    assert [m.value() for m in consume_to_end(server, topic_name, [0])] == [b"new"]


def test_fetch_from_the_middle_of_a_compressed_batch_starts_at_the_requested_offset(server, topic_name):
    create_topic(server, topic_name)
    p = producer(server, **{"compression.type": "zstd", "linger.ms": 50})
    for i in range(100):
        p.produce(topic_name, value=b"%d" % i, partition=0)
    assert p.flush(WAIT_S) == 0

    got = consume_to_end(server, topic_name, [0], start=37)

    assert [(m.offset(), m.value()) for m in got] == [(i, b"%d" % i) for i in range(37, 100)]


def test_a_batch_larger_than_the_consumer_fetch_limit_is_still_delivered(server, topic_name):
    create_topic(server, topic_name)
    p = producer(server, **{"linger.ms": 0})
    values = [bytes([65 + i]) * 20_000 for i in range(5)]
    for v in values:
        p.produce(topic_name, value=v, partition=0)
        assert p.flush(WAIT_S) == 0

    got = consume_to_end(
        server, topic_name, [0], **{
            "fetch.max.bytes": 1024,
            "max.partition.fetch.bytes": 1024,
            "message.max.bytes": 1000,
            "receive.message.max.bytes": 100_000,
        }
    )

    assert [m.value() for m in got] == values, "a fetch returns at least one whole batch, however large"


def test_a_record_near_the_default_size_limit_round_trips(server, topic_name):
    create_topic(server, topic_name)
    big = bytes(range(256)) * (900 * 1024 // 256)
    produce_all(server, topic_name, [(b"big", big, 0)])

    (msg,) = consume_to_end(server, topic_name, [0])

    assert msg.key() == b"big" and msg.value() == big


def test_fetching_a_deleted_topic_is_unknown_topic_and_the_broker_stays_up(server, topic_name):
    create_topic(server, topic_name)
    produce_all(server, topic_name, [(None, b"v", 0)])
    c = consumer(server, **{"enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        first = None
        deadline = time.monotonic() + WAIT_S
        while first is None and time.monotonic() < deadline:
            first = c.poll(0.1)
        assert first is not None and first.value() == b"v"

        admin(server).delete_topics([topic_name])[topic_name].result(timeout=WAIT_S)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the consumer keeps fetching the vanished partition
            c.poll(0.1)
    finally:
        c.close()

    assert server.alive()
    with pytest.raises(KafkaException) as excinfo:
        watermarks(server, topic_name, 0)
    assert excinfo.value.args[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION), excinfo.value


def test_fetching_past_the_end_is_out_of_range_and_reset_latest_resumes_at_the_end(server, topic_name):
    create_topic(server, topic_name)
    produce_all(server, topic_name, [(None, b"%d" % i, 0) for i in range(10)])

    c = consumer(server, **{"enable.partition.eof": False, "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic_name, 0, 1000)])
        msg = None
        deadline = time.monotonic() + WAIT_S
        while msg is None and time.monotonic() < deadline:
            msg = c.poll(0.1)
    finally:
        c.close()
    assert msg is not None and msg.error() is not None, msg
    assert msg.error().code() == KafkaError._AUTO_OFFSET_RESET, msg.error()

    c = consumer(server, **{"enable.partition.eof": False, "auto.offset.reset": "latest"})
    try:
        c.assign([TopicPartition(topic_name, 0, 1000)])
        c.poll(1.0)  # reset to the end happens here
        produce_all(server, topic_name, [(None, b"after-reset", 0)])
        msg = None
        deadline = time.monotonic() + WAIT_S
        while msg is None and time.monotonic() < deadline:
            msg = c.poll(0.1)
    finally:
        c.close()
    assert msg is not None and msg.error() is None, msg and msg.error()
    assert (msg.offset(), msg.value()) == (10, b"after-reset")


def test_a_consumer_of_an_unknown_topic_does_not_create_it(server, topic_name):
    c = consumer(server, **{"enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            c.poll(0.1)
    finally:
        c.close()

    assert topic_name not in admin(server).list_topics(timeout=WAIT_S).topics, (
        "Metadata with allow_auto_topic_creation=false must not create the topic"
    )


def test_producing_to_an_invalid_topic_name_does_not_create_it(server):
    from kafka_wire import WireClient, record_batch

    with WireClient(server.port) as c:
        error_code, _ = c.produce_v3("bad/name", 0, record_batch([(None, b"v")]))

    assert error_code in (3, 17), f"error code {error_code}: UNKNOWN_TOPIC_OR_PARTITION or INVALID_TOPIC_EXCEPTION"
    assert "bad/name" not in admin(server).list_topics(timeout=WAIT_S).topics
