"""Retention and DeleteRecords as consumers see them: the log start moves forward, reading below
it is OFFSET_OUT_OF_RANGE, and auto.offset.reset=earliest resumes at the new start.

The server runs log maintenance every 200 ms (conftest)."""

import time

from confluent_kafka import KafkaError, TopicPartition

from clients import WAIT_S, admin, consume_to_end, consumer, create_topic, producer, wait_until, watermarks

SEGMENT_BYTES = 1024
RETENTION_KILL_ROUNDS = 5


def produce_small_batches(server, topic, count, timestamp=None, size=200):
    """`count` records of `size` bytes, one per batch, so segments roll every few records."""
    p = producer(server, **{"linger.ms": 0, "batch.num.messages": 1})
    for i in range(count):
        kwargs = {"timestamp": timestamp} if timestamp is not None else {}
        p.produce(topic, value=(b"%06d" % i).ljust(size, b"."), partition=0, **kwargs)
        p.poll(0)
    assert p.flush(WAIT_S) == 0


def first_error_or_message(server, topic, offset, reset):
    """What a consumer gets first when it starts at `offset` with auto.offset.reset=`reset`."""
    c = consumer(server, **{"auto.offset.reset": reset, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None:
                return msg
        raise AssertionError(f"nothing from {topic} at offset {offset} within {WAIT_S}s")
    finally:
        c.close()


def test_retention_bytes_moves_the_log_start_and_reading_below_it_is_out_of_range(server, topic_name):
    create_topic(
        server,
        topic_name,
        config={"segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(2 * SEGMENT_BYTES)},
    )
    produce_small_batches(server, topic_name, 60)

    start, end = wait_until(
        lambda: (lambda w: w if w[0] > 0 else None)(watermarks(server, topic_name, 0)),
        what="retention to delete the oldest segments",
    )

    assert end == 60, "retention never touches the log end"
    # retention.bytes bounds what stays (plus the active segment and one segment of slack).
    assert (end - start) * 200 <= 4 * SEGMENT_BYTES, (start, end)

    out_of_range = first_error_or_message(server, topic_name, 0, reset="error")
    assert out_of_range.error() is not None, f"read offset {out_of_range.offset()} below log start {start}"
    assert out_of_range.error().code() == KafkaError._AUTO_OFFSET_RESET, out_of_range.error()
    assert "out of range" in out_of_range.error().str().lower(), out_of_range.error()

    reset = first_error_or_message(server, topic_name, 0, reset="earliest")
    assert reset.error() is None, reset.error()
    assert reset.offset() >= start, (reset.offset(), start)
    assert reset.value().startswith(b"%06d" % reset.offset())


def test_retention_ms_deletes_sealed_segments_of_old_records(server, topic_name):
    create_topic(
        server,
        topic_name,
        config={"segment.bytes": str(SEGMENT_BYTES), "retention.ms": "60000"},
    )
    an_hour_ago = int(time.time() * 1000) - 3600_000
    produce_small_batches(server, topic_name, 30, timestamp=an_hour_ago)
    produce_small_batches(server, topic_name, 10)  # current: rolls the old ones out of the active segment

    start, end = wait_until(
        lambda: (lambda w: w if w[0] >= 25 else None)(watermarks(server, topic_name, 0)),
        what="retention.ms to delete the segments holding hour-old records",
    )

    assert end == 40
    remaining = consume_to_end(server, topic_name, [0], start=0, **{"auto.offset.reset": "earliest"})
    offsets = [m.offset() for m in remaining]
    # Retention keeps running while we read (every hour-old record is past retention.ms), so
    # the log start may have moved on from `start`: what is read is contiguous from there.
    assert offsets and offsets[0] >= start and offsets == list(range(offsets[0], 40)), offsets
    assert all(m.offset() >= 30 or m.timestamp()[1] == an_hour_ago for m in remaining)


def test_delete_records_moves_the_log_start_to_the_requested_offset(server, topic_name):
    create_topic(server, topic_name)
    produce_small_batches(server, topic_name, 20)
    tp = TopicPartition(topic_name, 0, 12)

    result = admin(server).delete_records([tp])[tp].result(timeout=WAIT_S)

    assert result.low_watermark == 12
    assert watermarks(server, topic_name, 0) == (12, 20)
    remaining = consume_to_end(server, topic_name, [0], start=0, **{"auto.offset.reset": "earliest"})
    assert [m.offset() for m in remaining] == list(range(12, 20))
    out_of_range = first_error_or_message(server, topic_name, 3, reset="error")
    assert out_of_range.error() is not None and out_of_range.error().code() == KafkaError._AUTO_OFFSET_RESET


def test_delete_records_beyond_the_end_is_offset_out_of_range(server, topic_name):
    create_topic(server, topic_name)
    produce_small_batches(server, topic_name, 5)
    tp = TopicPartition(topic_name, 0, 99)

    future = admin(server).delete_records([tp])[tp]

    try:
        future.result(timeout=WAIT_S)
        raise AssertionError("deleting records past the high watermark must fail")
    except Exception as e:  # KafkaException
        err = e.args[0]
        assert err.code() == KafkaError.OFFSET_OUT_OF_RANGE, err
    assert watermarks(server, topic_name, 0) == (0, 5)


def test_retention_set_later_with_incremental_alter_applies_to_the_existing_log(server, topic_name):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    create_topic(server, topic_name, config={"segment.bytes": str(SEGMENT_BYTES)})
    produce_small_batches(server, topic_name, 60)
    assert watermarks(server, topic_name, 0) == (0, 60)
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic_name,
        incremental_configs=[
            ConfigEntry("retention.bytes", str(2 * SEGMENT_BYTES), incremental_operation=AlterConfigOpType.SET)
        ],
    )

    admin(server).incremental_alter_configs([resource])[resource].result(timeout=WAIT_S)

    start, end = wait_until(
        lambda: (lambda w: w if w[0] > 0 else None)(watermarks(server, topic_name, 0)),
        what="the new retention.bytes to apply to the live log",
    )
    assert end == 60 and (end - start) * 200 <= 4 * SEGMENT_BYTES, (start, end)


def test_segment_bytes_set_later_applies_to_new_segments(server, topic_name):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    create_topic(server, topic_name, config={"retention.bytes": str(2 * SEGMENT_BYTES)})
    produce_small_batches(server, topic_name, 30)  # one 1 GiB segment: nothing to delete
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic_name,
        incremental_configs=[
            ConfigEntry("segment.bytes", str(SEGMENT_BYTES), incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin(server).incremental_alter_configs([resource])[resource].result(timeout=WAIT_S)

    produce_small_batches(server, topic_name, 60)

    start, end = wait_until(
        lambda: (lambda w: w if w[0] >= 30 else None)(watermarks(server, topic_name, 0)),
        what="small segments rolled after the alter, and retention deleting them",
    )
    assert end == 90


def test_log_start_never_goes_back_after_sigkill_following_retention(start_server):
    """Kafka's log start offset only moves forward. Each round kills the broker right after a
    retention pass is visible, which is when a non-durable deletion would show."""
    server = start_server("retention-restart", CHRONIK_FLUSH="group")
    create_topic(
        server, "shrinking",
        config={"segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(2 * SEGMENT_BYTES)},
    )
    regressions = []
    start = 0
    for round_ in range(RETENTION_KILL_ROUNDS):
        produce_small_batches(server, "shrinking", 60)
        seen = start
        start, end = wait_until(
            lambda: (lambda w: w if w[0] > seen else None)(watermarks(server, "shrinking", 0)),
            interval=0.02,
            what=f"retention to move the log start past {seen} (round {round_})",
        )

        server.kill()
        server._admin_client = None
        server.start()

        after_start, after_end = watermarks(server, "shrinking", 0)
        assert after_end == end
        if after_start < start:
            regressions.append((round_, start, after_start))
            start = after_start
    assert not regressions, f"(round, log start before SIGKILL, after restart): {regressions}"
