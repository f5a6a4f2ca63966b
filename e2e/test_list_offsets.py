"""ListOffsets answers earliest, latest and by-timestamp lookups the way consumers rely on when
they seek."""

from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec

from clients import WAIT_S, admin, consumer, create_topic, producer, watermarks

BASE_TS = 1_600_000_000_000
STEP_MS = 1000
COUNT = 30


def produce_with_timestamps(server, topic):
    """COUNT records on partition 0 with timestamps BASE_TS, BASE_TS+STEP_MS, ..."""
    p = producer(server, **{"linger.ms": 0, "batch.num.messages": 7})
    for i in range(COUNT):
        p.produce(topic, value=f"r{i}".encode(), partition=0, timestamp=BASE_TS + i * STEP_MS)
    assert p.flush(WAIT_S) == 0


def offsets_for_times(server, topic, timestamps):
    c = consumer(server)
    try:
        offsets = []
        for ts in timestamps:  # one lookup per call: a request names each partition once
            (tp,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=WAIT_S)
            assert tp.error is None, tp.error
            offsets.append(tp.offset)
        return offsets
    finally:
        c.close()


def test_earliest_and_latest_offsets_bound_the_log(server, topic_name):
    create_topic(server, topic_name, partitions=2)
    assert watermarks(server, topic_name, 0) == (0, 0), "an empty partition is 0..0"

    produce_with_timestamps(server, topic_name)

    assert watermarks(server, topic_name, 0) == (0, COUNT)
    assert watermarks(server, topic_name, 1) == (0, 0)


def test_offsets_for_times_returns_the_first_offset_at_or_after_the_timestamp(server, topic_name):
    create_topic(server, topic_name)
    produce_with_timestamps(server, topic_name)

    got = offsets_for_times(
        server,
        topic_name,
        [
            BASE_TS - 5000,  # before everything: the first record
            BASE_TS,  # exact match on the first
            BASE_TS + 10 * STEP_MS,  # exact match inside a later batch
            BASE_TS + 10 * STEP_MS + 1,  # between records: the next one
            BASE_TS + (COUNT - 1) * STEP_MS,  # the last record
            BASE_TS + COUNT * STEP_MS,  # after everything: no record (-1, i.e. "end")
        ],
    )

    assert got == [0, 0, 10, 11, COUNT - 1, -1]


def test_admin_list_offsets_reports_earliest_latest_and_max_timestamp(server, topic_name):
    create_topic(server, topic_name)
    produce_with_timestamps(server, topic_name)
    a = admin(server)
    tp = TopicPartition(topic_name, 0)

    def lookup(spec):
        result = a.list_offsets({tp: spec})[tp].result(timeout=WAIT_S)
        return result.offset, result.timestamp

    assert lookup(OffsetSpec.earliest())[0] == 0
    assert lookup(OffsetSpec.latest())[0] == COUNT
    assert lookup(OffsetSpec.max_timestamp()) == (COUNT - 1, BASE_TS + (COUNT - 1) * STEP_MS)
    assert lookup(OffsetSpec.for_timestamp(BASE_TS + 5 * STEP_MS)) == (5, BASE_TS + 5 * STEP_MS)


def test_offsets_for_times_with_out_of_order_timestamps_finds_the_first_record_at_or_after(server, topic_name):
    create_topic(server, topic_name)
    p = producer(server, **{"linger.ms": 0})
    for ts in [1000, 3000, 2000, 4000]:  # one batch each, offsets 0..3
        p.produce(topic_name, value=b"%d" % ts, partition=0, timestamp=BASE_TS + ts)
        assert p.flush(WAIT_S) == 0

    got = offsets_for_times(server, topic_name, [BASE_TS + t for t in (500, 1500, 2000, 2500, 3500, 4000)])

    # The first offset whose timestamp is >= the target, as Kafka answers it.
    assert got == [0, 1, 1, 1, 3, 3]


def test_offsets_for_times_spans_segments_and_survives_a_restart(start_server):
    server = start_server("time-index", CHRONIK_FLUSH="group")
    # The records carry 2020 timestamps: without retention.ms=-1, time retention (7 days)
    # would delete the closed segments under the test whenever maintenance runs first.
    create_topic(server, "timed", config={"segment.bytes": "1024", "retention.ms": "-1"})
    p = producer(server, **{"linger.ms": 0, "batch.num.messages": 1})
    for i in range(60):  # ~120-byte batches: a new segment every ~8 records
        p.produce("timed", value=b"%02d" % i + b"." * 50, partition=0, timestamp=BASE_TS + i * STEP_MS)
        p.poll(0)
    assert p.flush(WAIT_S) == 0
    targets = [BASE_TS + t for t in (-1, 0, 7 * STEP_MS, 8 * STEP_MS + 1, 33 * STEP_MS, 59 * STEP_MS, 60 * STEP_MS)]
    expected = [0, 0, 7, 9, 33, 59, -1]

    assert offsets_for_times(server, "timed", targets) == expected

    server.kill()
    server.start()
    assert offsets_for_times(server, "timed", targets) == expected, "after recovery"
