"""Log compaction as consumers see it: after the cleaner has run, reading a compacted topic from
the start yields only the latest record of each key, at its original offset; tombstones stay for
delete.retention.ms and then disappear.

The server runs log maintenance every 200 ms (conftest); only sealed segments are compacted, so
each test produces filler afterwards to roll the interesting records out of the active segment."""

import glob
import os
import time

from clients import WAIT_S, consume_to_end, create_topic, producer, watermarks

SEGMENT_BYTES = 1024
KEYS = [f"key-{i}".encode() for i in range(8)]
ROUNDS = 5
DEAD_KEY = KEYS[3]


def produce_history(server, topic):
    """ROUNDS values per key, then a tombstone for DEAD_KEY, then filler with unique keys.
    Returns {offset: (key, value)} of everything acknowledged."""
    p = producer(server, **{"linger.ms": 0, "batch.num.messages": 1})
    acked = {}

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.offset()] = (msg.key(), msg.value())

    for r in range(ROUNDS):
        for key in KEYS:
            p.produce(topic, key=key, value=b"%s=round-%d" % (key, r) + b"." * 100, partition=0, on_delivery=on_delivery)
            p.poll(0)
    p.produce(topic, key=DEAD_KEY, value=None, partition=0, on_delivery=on_delivery)
    for i in range(40):
        p.produce(topic, key=b"filler-%d" % i, value=b"f" * 150, partition=0, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(WAIT_S) == 0
    return acked


def latest_per_key(acked):
    latest = {}
    for offset in sorted(acked):
        key, _value = acked[offset]
        latest[key] = offset
    return {offset: acked[offset] for offset in latest.values()}


def read_all(server, topic, timeout=WAIT_S):
    return {
        m.offset(): (m.key(), m.value())
        for m in consume_to_end(server, topic, [0], start=0, timeout=timeout, **{"auto.offset.reset": "earliest"})
    }


def wait_for_compaction(server, topic, done, timeout=20.0):
    """Read the topic from the start until `done(records)` holds; returns the records."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_all(server, topic)
        if done(records):
            return records
        if time.monotonic() > deadline:
            counts = {k: sum(1 for kk, _ in records.values() if kk == k) for k in KEYS}
            raise AssertionError(
                f"compaction did not converge within {timeout}s; records per key: {counts}"
            )
        time.sleep(0.3)


def keyed_history(records):
    return {o: kv for o, kv in records.items() if kv[0] in KEYS}


def test_compaction_keeps_only_the_latest_value_per_key_at_its_original_offset(server, topic_name):
    create_topic(
        server,
        topic_name,
        config={"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES)},
    )
    acked = produce_history(server, topic_name)
    expected = latest_per_key(acked)

    records = wait_for_compaction(
        server,
        topic_name,
        lambda r: len(keyed_history(r)) == len(KEYS),
    )

    assert keyed_history(records) == keyed_history(expected)
    # The tombstone is younger than delete.retention.ms (default 1 day): consumers still see it.
    tombstones = [o for o, (k, v) in records.items() if k == DEAD_KEY]
    assert len(tombstones) == 1 and records[tombstones[0]] == (DEAD_KEY, None)
    # Records with unique keys are never removed, and every survivor keeps its offset and bytes.
    for offset, kv in records.items():
        assert acked[offset] == kv, f"offset {offset}: {kv!r} was produced as {acked[offset]!r}"
    fillers = [o for o, (k, _v) in acked.items() if k.startswith(b"filler-")]
    assert set(fillers) <= set(records), "unique-key records must survive compaction"


def test_tombstones_disappear_after_delete_retention_ms(server, topic_name):
    create_topic(
        server,
        topic_name,
        config={
            "cleanup.policy": "compact",
            "segment.bytes": str(SEGMENT_BYTES),
            "delete.retention.ms": "0",
        },
    )
    acked = produce_history(server, topic_name)
    expected = {o: kv for o, kv in latest_per_key(acked).items() if kv[0] != DEAD_KEY}

    records = wait_for_compaction(
        server,
        topic_name,
        lambda r: len(keyed_history(r)) == len(KEYS) - 1,
    )

    assert keyed_history(records) == keyed_history(expected)
    assert all(k != DEAD_KEY for k, _v in records.values()), "the deleted key must be gone entirely"


def test_compaction_rewrites_compressed_batches_without_changing_surviving_records(server, topic_name, codec="zstd"):
    """Batches where only some records survive are re-encoded; the survivors keep key, value,
    headers, timestamp and offset, as both librdkafka and kafka-python read them."""
    from test_codecs_roundtrip import read_with_kafka_python_from

    create_topic(
        server, topic_name, config={"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES)}
    )
    p = producer(server, **{"compression.type": codec, "linger.ms": 50, "batch.num.messages": 6})
    acked = {}
    headers_of = {}

    def on_delivery(err, msg):
        assert err is None, err
        # Delivery reports carry no headers: take them from what was produced.
        acked[msg.offset()] = (msg.key(), msg.value(), headers_of.get(msg.value(), []), msg.timestamp()[1])

    # Keys a..c, each batch of six mixes superseded and surviving records.
    for i in range(36):
        key = b"abc"[i % 3 : i % 3 + 1]
        headers_of[b"%s-%d" % (key, i) + b"~" * 40] = [("i", b"%d" % i)]
        p.produce(topic_name, key=key, value=b"%s-%d" % (key, i) + b"~" * 40, partition=0,
                  headers=[("i", b"%d" % i)], timestamp=1_690_000_000_000 + i, on_delivery=on_delivery)
    assert p.flush(WAIT_S) == 0
    for i in range(30):
        p.produce(topic_name, key=b"f%d" % i, value=b"x" * 150, partition=0, on_delivery=on_delivery)
        assert p.flush(WAIT_S) == 0

    latest = {}
    for offset in sorted(acked):
        latest[acked[offset][0]] = offset
    expected = {o: acked[o] for o in latest.values()}

    def converged(records):
        return all(sum(1 for k, _ in records.values() if k == key) == 1 for key in (b"a", b"b", b"c"))

    wait_for_compaction(server, topic_name, converged)

    via_librdkafka = {
        m.offset(): (m.key(), m.value(), m.headers() or [], m.timestamp()[1])
        for m in consume_to_end(server, topic_name, [0], start=0, **{"auto.offset.reset": "earliest"})
    }
    via_kafka_python = read_with_kafka_python_from(server, topic_name, 0, len(via_librdkafka))
    for name, got in (("confluent-kafka", via_librdkafka), ("kafka-python", via_kafka_python)):
        diff = [(o, expected.get(o), got.get(o)) for o in sorted(set(got) | set(expected)) if got.get(o) != expected.get(o)]
        assert not diff, f"{name}: (offset, expected, got) differ: {diff[:6]}"


def test_compacted_log_reads_the_same_after_sigkill(start_server):
    server = start_server("compacted-restart", CHRONIK_FLUSH="group")
    topic = "compacted"
    create_topic(server, topic, config={"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES)})
    acked = produce_history(server, topic)
    before = wait_for_compaction(server, topic, lambda r: len(keyed_history(r)) == len(KEYS))

    server.kill()
    server.start()
    produce_all_more = producer(server)
    produce_all_more.produce(topic, key=b"after", value=b"restart", partition=0)
    assert produce_all_more.flush(WAIT_S) == 0

    after = read_all(server, topic)
    next_offset = max(acked) + 1
    assert after == {**before, next_offset: (b"after", b"restart")}


def test_switching_an_existing_topic_to_compact_compacts_its_log(server, topic_name):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    from clients import admin

    create_topic(server, topic_name, config={"segment.bytes": str(SEGMENT_BYTES)})
    acked = produce_history(server, topic_name)
    assert len(keyed_history(read_all(server, topic_name))) == len(KEYS) * ROUNDS + 1
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic_name,
        incremental_configs=[ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)],
    )

    admin(server).incremental_alter_configs([resource])[resource].result(timeout=WAIT_S)

    records = wait_for_compaction(server, topic_name, lambda r: len(keyed_history(r)) == len(KEYS))
    assert keyed_history(records) == keyed_history(latest_per_key(acked))


def test_compact_delete_policy_both_compacts_and_applies_retention(server, topic_name):
    create_topic(
        server,
        topic_name,
        config={
            "cleanup.policy": "compact,delete",
            "segment.bytes": str(SEGMENT_BYTES),
            "retention.bytes": str(3 * SEGMENT_BYTES),
        },
    )
    produce_history(server, topic_name)

    def retained_and_compacted(records):
        return min(records) > 0 and len(set(k for k, _ in records.values())) == len(records)

    records = wait_for_compaction(server, topic_name, retained_and_compacted)
    assert max(records) == len(KEYS) * ROUNDS + 1 + 40 - 1, "the newest record is always kept"


def test_sigkill_during_compaction_never_loses_the_latest_value_of_a_key(start_server):
    """Kill the broker while the cleaner is busy (maintenance every 20 ms); after each restart
    every key's latest acknowledged value is still there, at its offset."""
    import random

    server = start_server("compaction-crash", CHRONIK_FLUSH="group", CHRONIK_LOG_MAINTENANCE_MS="20")
    topic = "crashy"
    create_topic(server, topic, config={"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES)})
    rng = random.Random(7)
    latest = {}  # key -> (offset, value)
    for round_ in range(5):
        p = producer(server, **{"linger.ms": 0, "batch.num.messages": 3})

        def on_delivery(err, msg):
            assert err is None, err
            if msg.offset() > latest.get(msg.key(), (-1, None))[0]:
                latest[msg.key()] = (msg.offset(), msg.value())

        for i in range(150):
            key = b"key-%d" % rng.randrange(12)
            p.produce(topic, key=key, value=b"r%d-%d" % (round_, i) + b"." * 60, partition=0, on_delivery=on_delivery)
            p.poll(0)
        assert p.flush(WAIT_S) == 0
        time.sleep(rng.uniform(0.0, 0.15))  # land somewhere inside cleaning

        server.kill()
        server._admin_client = None
        server.start()

        records = read_all(server, topic, timeout=5)
        missing = {
            k: (o, v) for k, (o, v) in latest.items() if records.get(o) != (k, v)
        }
        assert not missing, f"round {round_}: latest values lost or changed: {sorted(missing.items())[:5]}"


def test_fetch_skips_consecutive_empty_segments_left_by_a_crash(start_server):
    """Empty sealed segment files are what a SIGKILL during compaction leaves behind (seen in
    test_sigkill_during_compaction_...); reads must step over them to the next data."""
    server = start_server("empty-segments", CHRONIK_FLUSH="group")
    create_topic(server, "holes", config={"segment.bytes": str(SEGMENT_BYTES)})
    p = producer(server, **{"linger.ms": 0, "batch.num.messages": 1})
    for i in range(40):
        p.produce("holes", key=b"k%d" % i, value=b"v%d" % i + b"." * 100, partition=0)
        p.poll(0)
    assert p.flush(WAIT_S) == 0
    server.kill()
    segments = sorted(glob.glob(os.path.join(server.data_dir, "**", "holes-0", "*.log"), recursive=True))
    assert len(segments) >= 5, segments
    emptied_bases = [int(os.path.basename(s).split(".")[0]) for s in segments[1:3]]
    for path in segments[1:3]:
        open(path, "wb").close()
    server._admin_client = None
    server.start()

    got = [m.offset() for m in consume_to_end(server, "holes", [0], timeout=5)]

    hole = set(range(emptied_bases[0], int(os.path.basename(segments[3]).split(".")[0])))
    assert got == [o for o in range(40) if o not in hole]


def test_compacted_topic_keeps_its_log_start_across_a_restart(start_server):
    server = start_server("compacted-start", CHRONIK_FLUSH="group")
    create_topic(server, "kept-start", config={"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES)})
    p = producer(server, **{"linger.ms": 0, "batch.num.messages": 1})
    for i in range(120):  # three keys: early segments end up wholly superseded
        p.produce("kept-start", key=b"k%d" % (i % 3), value=b"v%d" % i + b"." * 80, partition=0)
        p.poll(0)
    assert p.flush(WAIT_S) == 0
    wait_for_compaction(server, "kept-start", lambda r: len(r) < 20)
    before = watermarks(server, "kept-start", 0)

    assert server.stop() == 0
    server._admin_client = None
    server.start()

    assert watermarks(server, "kept-start", 0) == before
