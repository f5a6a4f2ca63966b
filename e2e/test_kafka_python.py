"""kafka-python, a protocol implementation independent of librdkafka, produces and consumes
through the broker."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from clients import WAIT_S


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_kafka_python_producer_and_consumer_round_trip(server, topic_name, compression):
    admin = KafkaAdminClient(bootstrap_servers=server.bootstrap)
    admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=server.bootstrap, acks="all",
        compression_type=compression,
        linger_ms=5,
        enable_idempotence=False,  # InitProducerId is not served yet
    )
    sent = []
    for i in range(100):
        future = producer.send(
            topic_name,
            key=b"k%d" % i,
            value=b"v%d" % i * (i % 7),
            headers=[("n", str(i).encode())],
            partition=i % 2,
            timestamp_ms=1_650_000_000_000 + i,
        )
        sent.append((i, future))
    producer.flush(WAIT_S)
    expected = {}
    for i, future in sent:
        meta = future.get(timeout=WAIT_S)
        expected[(meta.partition, meta.offset)] = (
            b"k%d" % i,
            b"v%d" % i * (i % 7),
            [("n", str(i).encode())],
            1_650_000_000_000 + i,
        )
    producer.close()
    assert sorted(expected) == [(p, o) for p in range(2) for o in range(50)]

    consumer = KafkaConsumer(
        bootstrap_servers=server.bootstrap, group_id=None, enable_auto_commit=False
    )
    tps = [TopicPartition(topic_name, p) for p in range(2)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = {}
    deadline = time.monotonic() + WAIT_S
    while len(got) < len(expected) and time.monotonic() < deadline:
        for _tp, records in consumer.poll(timeout_ms=200).items():
            for r in records:
                got[(r.partition, r.offset)] = (r.key, r.value, list(r.headers), r.timestamp)
    assert consumer.end_offsets(tps) == {tps[0]: 50, tps[1]: 50}
    consumer.close()

    assert got == expected
