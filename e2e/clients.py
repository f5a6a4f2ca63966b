"""Small helpers over the real clients. Consumers use manual assignment only (no group
coordination), producers are plain (no idempotence), so every test exercises just the APIs the
broker serves.
"""

import json
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

WAIT_S = 15.0


def admin(server):
    """The server's AdminClient, kept for its lifetime: a handle that is garbage collected fails
    its pending futures with _DESTROY."""
    client = getattr(server, "_admin_client", None)
    if client is None:
        client = AdminClient({"bootstrap.servers": server.bootstrap})
        server._admin_client = client
    return client


def create_topic(server, name, partitions=1, config=None):
    futures = admin(server).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
    )
    futures[name].result(timeout=WAIT_S)


def producer(server, **conf):
    base = {
        "bootstrap.servers": server.bootstrap,
        "enable.idempotence": False,
        "acks": "all",
        "linger.ms": 5,
    }
    base.update(conf)
    return Producer(base)


def produce_all(server, topic, messages, **conf):
    """Produce (key, value, partition) triples; returns the delivered messages in ack order.
    Any delivery error fails the caller."""
    p = producer(server, **conf)
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg)

    for key, value, partition in messages:
        p.produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery)
    remaining = p.flush(WAIT_S)
    assert remaining == 0, f"{remaining} messages not delivered within {WAIT_S}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    return delivered


def consumer(server, **conf):
    base = {
        "bootstrap.servers": server.bootstrap,
        # confluent-kafka insists on a group id, but with assign() and no commits the consumer
        # never talks to a group coordinator.
        "group.id": "chronik-e2e-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    }
    base.update(conf)
    return Consumer(base)


def consume_to_end(server, topic, partitions, start=0, timeout=WAIT_S, **conf):
    """Every message from `start` to the end of each partition, read with confluent-kafka.
    Returns the messages; the end is the partition EOF event, so gaps (compaction) are fine."""
    c = consumer(server, **conf)
    try:
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        at_eof = set()
        messages = []
        deadline = time.monotonic() + timeout
        while len(at_eof) < len(partitions):
            assert time.monotonic() < deadline, (
                f"did not reach the end of {topic} partitions {sorted(set(partitions) - at_eof)} "
                f"within {timeout}s ({len(messages)} messages read)"
            )
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    continue
                raise AssertionError(f"consumer error: {msg.error()}")
            at_eof.discard(msg.partition())
            messages.append(msg)
        return messages
    finally:
        c.close()


def watermarks(server, topic, partition):
    """(log start offset, high watermark) as ListOffsets reports them."""
    c = consumer(server)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=WAIT_S)
    finally:
        c.close()


def wait_until(predicate, timeout=WAIT_S, interval=0.1, what="condition"):
    """Poll `predicate` until it returns a truthy value; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http_request(server, method, path, body=None, raw=None, timeout=60):
    """(status, content type, body bytes) of one request to the server's HTTP API; `body` is
    sent as JSON, `raw` as given. HTTP errors are answers, not exceptions."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()
