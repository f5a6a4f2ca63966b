"""Several clients at once: concurrent producers to one partition get distinct offsets, admin
changes under load keep the broker consistent."""

import threading

from confluent_kafka import TopicPartition

from clients import WAIT_S, admin, consume_to_end, create_topic, producer, produce_all, watermarks

PRODUCERS = 4
PER_PRODUCER = 2000


def test_concurrent_producers_to_one_partition_get_distinct_offsets_and_nothing_is_lost(server, topic_name):
    create_topic(server, topic_name, partitions=2)
    acked = {}
    lock = threading.Lock()
    errors = []
    twice = []

    def run(n):
        p = producer(server, **{"linger.ms": 1, "compression.type": ["none", "lz4", "zstd", "gzip"][n % 4]})

        def on_delivery(err, msg):
            with lock:
                if err:
                    errors.append(err)
                else:
                    if (msg.partition(), msg.offset()) in acked:
                        twice.append((msg.partition(), msg.offset()))
                    acked[(msg.partition(), msg.offset())] = msg.value()

        for i in range(PER_PRODUCER):
            p.produce(topic_name, value=b"p%d-%d" % (n, i), partition=i % 2, on_delivery=on_delivery)
            p.poll(0)
        assert p.flush(WAIT_S) == 0

    threads = [threading.Thread(target=run, args=(n,)) for n in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert not errors, errors[:5]
    assert not twice, f"offsets acknowledged to two records: {twice[:5]}"
    assert len(acked) == PRODUCERS * PER_PRODUCER, "every acknowledgement names its own offset"
    per_partition = PRODUCERS * PER_PRODUCER // 2
    assert sorted(acked) == [(p, o) for p in range(2) for o in range(per_partition)]
    stored = {(m.partition(), m.offset()): m.value() for m in consume_to_end(server, topic_name, [0, 1])}
    assert stored == acked


def test_delete_records_inside_a_batch_starts_consumers_at_that_record(server, topic_name):
    create_topic(server, topic_name)
    p = producer(server, **{"linger.ms": 100})
    for i in range(10):  # one batch
        p.produce(topic_name, value=b"%d" % i, partition=0)
    assert p.flush(WAIT_S) == 0
    tp = TopicPartition(topic_name, 0, 5)

    admin(server).delete_records([tp])[tp].result(timeout=WAIT_S)

    assert watermarks(server, topic_name, 0) == (5, 10)
    got = consume_to_end(server, topic_name, [0], start=0, **{"auto.offset.reset": "earliest"})
    assert [(m.offset(), m.value()) for m in got] == [(i, b"%d" % i) for i in range(5, 10)]


def test_added_partitions_take_records_and_survive_a_restart(start_server):
    from confluent_kafka.admin import NewPartitions

    server = start_server("grow")
    create_topic(server, "grown", partitions=1)
    admin(server).create_partitions([NewPartitions("grown", 4)])["grown"].result(timeout=WAIT_S)
    produce_all(server, "grown", [(None, b"to-%d" % p, p) for p in range(4)])

    server.kill()
    server._admin_client = None
    server.start()

    got = consume_to_end(server, "grown", [0, 1, 2, 3])
    assert sorted((m.partition(), m.value()) for m in got) == [(p, b"to-%d" % p) for p in range(4)]


def test_many_topics_are_created_and_listed(server):
    from confluent_kafka.admin import NewTopic

    names = [f"many-{i:03d}" for i in range(100)]
    futures = admin(server).create_topics([NewTopic(n, 3, 1) for n in names])
    for n in names:
        futures[n].result(timeout=WAIT_S)

    md = admin(server).list_topics(timeout=WAIT_S)
    assert set(names) <= set(md.topics)
    assert all(len(md.topics[n].partitions) == 3 for n in names)
