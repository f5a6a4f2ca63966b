"""Idempotent producers: a retried batch is stored once, also when the retry reaches a broker that
was SIGKILLed and restarted in between, and a real idempotent producer (confluent-kafka and
kafka-python) pushed through broker crashes leaves every partition with each record exactly once,
in order."""

import struct
import threading
import time

from kafka_wire import WireClient, _string, crc32c, record_batch

from clients import consume_to_end, create_topic, producer, wait_until

INIT_PRODUCER_ID = 22

# Header positions of a v2 record batch (see broker/log/src/batch.rs).
CRC_AT, CRC_FROM, PRODUCER_AT = 17, 21, 43


def init_producer_id(client, transactional_id=None):
    """InitProducerId v0: (error_code, producer_id, epoch)."""
    body = client.request(INIT_PRODUCER_ID, 0, _string(transactional_id) + struct.pack(">i", 60000))
    _throttle, error_code, producer_id, epoch = struct.unpack(">ihqh", body[:16])
    return error_code, producer_id, epoch


def idempotent_batch(values, producer_id, epoch, base_sequence):
    """A batch as an idempotent producer sends it: producer id, epoch and base sequence set, CRC
    recomputed over them."""
    b = bytearray(record_batch([(None, v) for v in values]))
    b[PRODUCER_AT : PRODUCER_AT + 14] = struct.pack(">qhi", producer_id, epoch, base_sequence)
    b[CRC_AT:CRC_FROM] = struct.pack(">I", crc32c(bytes(b[CRC_FROM:])))
    return bytes(b)


def test_transactional_apis_are_advertised_and_a_transactional_id_gets_an_epoch(start_server):
    server = start_server("idem-txn")
    with WireClient(server.port) as c:
        _, apis = c.api_versions()
        assert INIT_PRODUCER_ID in apis
        # AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit; markers are written by
        # the coordinator itself, so WriteTxnMarkers (27) is not served.
        assert {24, 25, 26, 28} <= set(apis)
        assert 27 not in apis
        error, pid, epoch = init_producer_id(c, "tx")
        assert (error, epoch) == (0, 0)
        assert init_producer_id(c, "tx") == (0, pid, 1)


def test_a_resent_batch_is_stored_once_across_a_sigkill(start_server):
    server = start_server("idem-wire", CHRONIK_FLUSH="group")
    topic = "idem-wire"
    create_topic(server, topic)
    with WireClient(server.port) as c:
        error, pid, epoch = init_producer_id(c)
        assert (error, epoch) == (0, 0)
        first = idempotent_batch([b"a", b"b"], pid, 0, 0)
        assert c.produce_v3(topic, 0, first) == (0, 0)
        assert c.produce_v3(topic, 0, first) == (0, 0), "a duplicate is acked with its first offset"
        second = idempotent_batch([b"c"], pid, 0, 2)
        assert c.produce_v3(topic, 0, second) == (0, 2)
        gap = idempotent_batch([b"x"], pid, 0, 7)
        assert c.produce_v3(topic, 0, gap)[0] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER

    server.restart(kill=True)
    with WireClient(server.port) as c:
        assert c.produce_v3(topic, 0, second) == (0, 2), "still a duplicate after the restart"
        assert c.produce_v3(topic, 0, first) == (0, 0)
        third = idempotent_batch([b"d"], pid, 0, 3)
        assert c.produce_v3(topic, 0, third) == (0, 3)
        error, new_pid, _ = init_producer_id(c)
        assert error == 0 and new_pid != pid, "producer ids are not reused after a restart"

    values = [m.value() for m in consume_to_end(server, topic, [0])]
    assert values == [b"a", b"b", b"c", b"d"]


def check_exactly_once_in_order(messages, partitions, per_partition):
    """Every partition holds values 0..per_partition-1 once each, in order."""
    by_partition = {p: [] for p in range(partitions)}
    for m in messages:
        by_partition[m.partition()].append(int(m.value().split(b"-")[1]))
    for p, seen in by_partition.items():
        duplicates = len(seen) - len(set(seen))
        missing = sorted(set(range(per_partition)) - set(seen))
        assert duplicates == 0, f"partition {p}: {duplicates} duplicates"
        assert not missing, f"partition {p}: {len(missing)} missing, first {missing[:5]}"
        assert seen == sorted(seen), f"partition {p}: order broken"


def test_confluent_idempotent_producer_through_repeated_sigkill(start_server):
    server = start_server("idem-confluent", CHRONIK_FLUSH="group")
    topic = "idem-confluent"
    partitions, per_partition, kills = 3, 8000, 5
    create_topic(server, topic, partitions=partitions)

    errors, delivered = [], [0]
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err:
                errors.append(err)
            else:
                delivered[0] += 1

    p = producer(
        server,
        **{
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 200,
            "message.timeout.ms": 120000,
            "request.timeout.ms": 5000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 200,
        },
    )
    total = partitions * per_partition

    def produce_all():
        for i in range(per_partition):
            for part in range(partitions):
                while True:
                    try:
                        p.produce(topic, value=b"v-%d" % i, partition=part, on_delivery=on_delivery)
                        break
                    except BufferError:
                        p.poll(0.01)
            if i % 50 == 0:
                p.poll(0)
                time.sleep(0.002)  # spread the stream over the broker's lives

    thread = threading.Thread(target=produce_all, daemon=True)
    thread.start()
    def delivered_at_least(n):
        p.poll(0.01)  # serve delivery callbacks
        return delivered[0] >= n

    for k in range(kills):
        # Kill mid-stream, with batches in flight that the producer must retry.
        target = (k + 1) * total // (kills + 2)
        wait_until(
            lambda: delivered_at_least(target),
            timeout=60,
            interval=0.01,
            what=f"{target} deliveries before kill {k + 1}",
        )
        server.restart(kill=True)
    thread.join(timeout=120)
    remaining = p.flush(120)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert not errors, f"delivery errors: {errors[:5]}"

    messages = consume_to_end(server, topic, list(range(partitions)), timeout=60)
    assert len(messages) == total, f"expected {total} records, the log holds {len(messages)}"
    check_exactly_once_in_order(messages, partitions, per_partition)


def test_kafka_python_idempotent_producer_across_a_sigkill(start_server):
    from kafka import KafkaProducer

    server = start_server("idem-kafka-python", CHRONIK_FLUSH="group")
    topic = "idem-kafka-python"
    partitions, per_partition = 2, 1500
    create_topic(server, topic, partitions=partitions)
    p = KafkaProducer(
        bootstrap_servers=server.bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        retries=1000,
        retry_backoff_ms=50,
        request_timeout_ms=5000,
        delivery_timeout_ms=120000,
        reconnect_backoff_ms=20,
        reconnect_backoff_max_ms=200,
    )
    futures = []
    try:
        for i in range(per_partition):
            for part in range(partitions):
                futures.append(p.send(topic, value=b"v-%d" % i, partition=part))
            if i == per_partition // 2:
                # Batches are in flight: they fail with the connection and are retried against
                # the restarted broker with their original sequence numbers.
                server.restart(kill=True)
        p.flush(timeout=120)
        failed = [f.exception for f in futures if f.failed()]
        assert not failed, f"send failures: {failed[:5]}"
        assert all(f.succeeded() for f in futures)
    finally:
        p.close(timeout=5)

    messages = consume_to_end(server, topic, list(range(partitions)), timeout=60)
    assert len(messages) == partitions * per_partition
    check_exactly_once_in_order(messages, partitions, per_partition)
