"""With CHRONIK_FLUSH=group an acknowledged record is on disk: a broker SIGKILLed and restarted
again and again, under a continuous acks=all producer, never loses a record it acknowledged."""

import threading
import time

from clients import WAIT_S, consume_to_end, create_topic, producer, wait_until

PARTITIONS = 3
KILLS = 5
ACKS_PER_LIFE = 2000
RESUME_TIMEOUT_S = 10.0


def test_acked_records_survive_repeated_sigkill(start_server):
    server = start_server("durability", CHRONIK_FLUSH="group")
    topic = "durable"
    create_topic(server, topic, partitions=PARTITIONS)

    acked = {}  # (partition, offset) -> value
    failed = []
    acked_twice = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err:
                failed.append(err)
            else:
                key = (msg.partition(), msg.offset())
                if key in acked:
                    acked_twice.append(key)
                acked[key] = msg.value()

    p = producer(
        server,
        **{
            "linger.ms": 2,
            "message.timeout.ms": 60000,
            "request.timeout.ms": 5000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 200,
        },
    )
    stop = threading.Event()
    sent = [0]

    def produce_continuously():
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, value=b"record-%08d" % i, partition=i % PARTITIONS, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.001)
        sent[0] = i

    thread = threading.Thread(target=produce_continuously, daemon=True)
    thread.start()
    acked_per_life = []
    resume_s = []
    try:
        for _ in range(KILLS + 1):
            # Each life of the broker must acknowledge new records before it is killed.
            before = len(acked)
            life_started = time.monotonic()
            wait_until(
                lambda: len(acked) > before, timeout=RESUME_TIMEOUT_S, interval=0.01, what="first ack"
            )
            resume_s.append(round(time.monotonic() - life_started, 2))
            wait_until(
                lambda: len(acked) >= before + ACKS_PER_LIFE,
                timeout=RESUME_TIMEOUT_S,
                interval=0.02,
                what=f"{ACKS_PER_LIFE} acks in broker life {server.starts} (acks per life so far: {acked_per_life})",
            )
            time.sleep(0.2)  # keep producing a little longer, so the kill lands mid-stream
            acked_per_life.append(len(acked) - before)
            if len(acked_per_life) <= KILLS:
                server.kill()
                server.start()
    finally:
        stop.set()
        thread.join(10)
    remaining = p.flush(WAIT_S * 2)

    stored = {
        (m.partition(), m.offset()): m.value()
        for m in consume_to_end(server, topic, list(range(PARTITIONS)), timeout=30)
    }
    lost = sorted(k for k in acked if k not in stored)
    changed = sorted(k for k in acked if k in stored and stored[k] != acked[k])
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged records lost, first: {lost[:10]}"
    assert not changed, (
        f"{len(changed)} acknowledged offsets hold another value, first: "
        f"{[(k, acked[k], stored[k]) for k in changed[:5]]}"
    )
    print(f"acks per life {acked_per_life}, seconds to first ack {resume_s}, total {len(acked)}")
    assert remaining == 0, f"{remaining} records still undelivered after the last restart"
    assert all(n > 0 for n in acked_per_life), f"acks per broker life: {acked_per_life}"
    assert not acked_twice, f"offsets acknowledged for two different records: {acked_twice[:5]}"
    assert not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]} (retries should cover a restart)"


def test_sigterm_stops_the_broker_cleanly_and_data_survives(start_server):
    server = start_server("sigterm", CHRONIK_FLUSH="os")
    create_topic(server, "kept", partitions=1)
    p = producer(server)
    for i in range(100):
        p.produce("kept", value=b"%d" % i, partition=0)
    assert p.flush(WAIT_S) == 0

    code = server.stop()

    assert code == 0, f"exit code {code} after SIGTERM"
    server.start()
    values = [m.value() for m in consume_to_end(server, "kept", [0])]
    assert values == [b"%d" % i for i in range(100)]


def test_topics_configs_and_log_start_survive_sigkill(start_server):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import ConfigResource, ResourceType

    from clients import admin, produce_all, watermarks

    server = start_server("metadata", CHRONIK_FLUSH="group")
    create_topic(server, "configured", partitions=3, config={"retention.ms": "123456789", "cleanup.policy": "compact"})
    produce_all(server, "configured", [(b"k%d" % i, b"v%d" % i, 1) for i in range(20)])
    tp = TopicPartition("configured", 1, 12)
    admin(server).delete_records([tp])[tp].result(timeout=WAIT_S)

    server.kill()
    server._admin_client = None
    server.start()

    md = admin(server).list_topics(topic="configured", timeout=WAIT_S)
    assert sorted(md.topics["configured"].partitions) == [0, 1, 2]
    resource = ConfigResource(ResourceType.TOPIC, "configured")
    configs = admin(server).describe_configs([resource])[resource].result(timeout=WAIT_S)
    assert configs["retention.ms"].value == "123456789"
    assert configs["cleanup.policy"].value == "compact"
    assert watermarks(server, "configured", 1) == (12, 20), "DeleteRecords' log start must survive"
    assert [m.offset() for m in consume_to_end(server, "configured", [1], start=12)] == list(range(12, 20))


def _last_segment(server, topic, partition):
    import glob
    import os

    segments = sorted(glob.glob(os.path.join(server.data_dir, "**", f"{topic}-{partition}", "*.log"), recursive=True))
    assert segments, f"no segment files for {topic}-{partition} under {server.data_dir}"
    return segments[-1]


def test_recovery_truncates_a_torn_tail_and_keeps_every_acked_record(start_server):
    import struct

    from clients import produce_all, watermarks
    from kafka_wire import record_batch

    server = start_server("torn-tail", CHRONIK_FLUSH="group")
    create_topic(server, "torn", partitions=1)
    produce_all(server, "torn", [(b"k%d" % i, b"v%d" % i, 0) for i in range(50)])
    server.kill()
    # What a crash mid-write leaves: a whole batch header promising more bytes than follow,
    # then a complete batch whose CRC does not match.
    batch = record_batch([(b"torn", b"never acknowledged")])
    with open(_last_segment(server, "torn", 0), "ab") as f:
        f.write(struct.pack(">qi", 50, 4000) + batch[12:40])

    server.start()

    assert watermarks(server, "torn", 0) == (0, 50)
    produce_all(server, "torn", [(b"after", b"restart", 0)])
    got = consume_to_end(server, "torn", [0])
    assert [(m.offset(), m.key(), m.value()) for m in got] == [
        (i, b"k%d" % i, b"v%d" % i) for i in range(50)
    ] + [(50, b"after", b"restart")]


def test_recovery_truncates_a_tail_batch_with_a_bad_crc(start_server):
    from clients import produce_all, watermarks
    from kafka_wire import corrupt_payload, record_batch
    import struct

    server = start_server("bad-crc-tail", CHRONIK_FLUSH="group")
    create_topic(server, "crc", partitions=1)
    produce_all(server, "crc", [(b"k%d" % i, b"v%d" % i, 0) for i in range(10)])
    server.kill()
    bad = bytearray(corrupt_payload(record_batch([(b"x", b"y")])))
    bad[0:8] = struct.pack(">q", 10)  # looks like the next batch
    with open(_last_segment(server, "crc", 0), "ab") as f:
        f.write(bytes(bad))

    server.start()

    assert watermarks(server, "crc", 0) == (0, 10)
    got = consume_to_end(server, "crc", [0])
    assert [(m.offset(), m.value()) for m in got] == [(i, b"v%d" % i) for i in range(10)]
