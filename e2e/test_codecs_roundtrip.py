"""Records produced by confluent-kafka with every compression codec, keys, headers and explicit
timestamps come back identical, field by field, through two independent consumer
implementations (librdkafka and kafka-python)."""

import time

import pytest
from kafka import KafkaConsumer, TopicPartition as KpTopicPartition
from confluent_kafka import TIMESTAMP_CREATE_TIME

from clients import WAIT_S, consume_to_end, create_topic, producer

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 3
PER_PARTITION = 40
BASE_TS = 1_700_000_000_000  # fixed, far from "now": proves the broker keeps producer timestamps


def expected_records():
    """(partition, key, value, headers, timestamp) in produce order per partition."""
    records = []
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            key = None if i % 10 == 7 else f"k{p}-{i}".encode()
            value = b"" if i % 10 == 3 else (f"v{p}-{i}:".encode() + bytes(range(256)) * (i % 4))
            headers = [("h-index", str(i).encode()), ("h-bin", bytes([p, i, 0, 255]))]
            if i % 5 == 0:
                headers.append(("h-dup", b"first"))
                headers.append(("h-dup", b"second"))
            ts = BASE_TS + p * 1_000_000 + i * 1000
            records.append((p, key, value, headers, ts))
    return records


def produce_expected(server, topic, codec):
    p = producer(server, **{"compression.type": codec, "linger.ms": 20})
    acked = []
    errors = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    for partition, key, value, headers, ts in expected_records():
        p.produce(
            topic,
            value=value,
            key=key,
            partition=partition,
            headers=headers,
            timestamp=ts,
            on_delivery=on_delivery,
        )
    assert p.flush(WAIT_S) == 0
    assert not errors, errors
    return acked


def as_rows(records):
    """Expected rows keyed like consumed ones: (partition, offset, key, value, headers, ts)."""
    rows = []
    offsets = {}
    for partition, key, value, headers, ts in records:
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        rows.append((partition, offset, key, value, headers, ts))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def read_with_confluent(server, topic):
    rows = []
    for m in consume_to_end(server, topic, list(range(PARTITIONS))):
        ts_type, ts = m.timestamp()
        assert ts_type == TIMESTAMP_CREATE_TIME, f"offset {m.offset()}: timestamp type {ts_type}"
        rows.append((m.partition(), m.offset(), m.key(), m.value(), m.headers() or [], ts))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def read_with_kafka_python_from(server, topic, partition, expected_count):
    """{offset: (key, value, headers, timestamp)} of one partition, read with kafka-python."""
    c = KafkaConsumer(
        bootstrap_servers=server.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        tp = KpTopicPartition(topic, partition)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = {}
        deadline = time.monotonic() + WAIT_S
        while len(got) < expected_count:
            assert time.monotonic() < deadline, f"kafka-python read {len(got)} of {expected_count}"
            for _tp, batch in c.poll(timeout_ms=200).items():
                for r in batch:
                    got[r.offset] = (r.key, r.value, list(r.headers or []), r.timestamp)
        return got
    finally:
        c.close()


def read_with_kafka_python(server, topic, expected_count):
    c = KafkaConsumer(
        bootstrap_servers=server.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        tps = [KpTopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        rows = []
        deadline = time.monotonic() + WAIT_S
        while len(rows) < expected_count:
            assert time.monotonic() < deadline, f"kafka-python read {len(rows)} of {expected_count}"
            for _tp, batch in c.poll(timeout_ms=200).items():
                for r in batch:
                    assert r.timestamp_type == 0, f"offset {r.offset}: timestamp type {r.timestamp_type}"
                    rows.append(
                        (r.partition, r.offset, r.key, r.value, list(r.headers or []), r.timestamp)
                    )
        return sorted(rows, key=lambda r: (r[0], r[1]))
    finally:
        c.close()


@pytest.mark.parametrize("codec", CODECS)
def test_every_field_round_trips_byte_for_byte_with_codec(server, topic_name, codec):
    create_topic(server, topic_name, partitions=PARTITIONS)
    expected = as_rows(expected_records())

    acked = produce_expected(server, topic_name, codec)
    acked_offsets = sorted((p, o) for p, o, _k, _v in acked)
    assert acked_offsets == [(r[0], r[1]) for r in expected], "acknowledged offsets"

    via_librdkafka = read_with_confluent(server, topic_name)
    via_kafka_python = read_with_kafka_python(server, topic_name, len(expected))

    for name, got in (("confluent-kafka", via_librdkafka), ("kafka-python", via_kafka_python)):
        assert len(got) == len(expected), f"{name}: {len(got)} records, expected {len(expected)}"
        for want, have in zip(expected, got):
            assert have == want, f"{name}: record differs\n expected {want!r}\n got      {have!r}"
