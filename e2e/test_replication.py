"""Partition replication (Kafka's ISR model) across three real chronik-server processes.

Topics with replication factor 3 and min.insync.replicas=2: followers fetch from the leader
over the cluster port, acks=all is answered once the high watermark passes the batch, a broker
that is SIGKILLed is fenced by the controller (the Raft leader) and its partitions get a new
leader from the ISR, a returning broker truncates to the last shared leader epoch and catches
up, and with two of three brokers down acks=all fails with NOT_ENOUGH_REPLICAS while reads
are still served. Replicas are compared byte for byte, from their segment files, up to the
high watermark.
"""

import glob
import os
import random
import signal
import struct
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clients import WAIT_S, wait_until
from conftest import ChronikCluster
from kafka_wire import WireClient, record_batch

NOT_ENOUGH_REPLICAS = 19
CLUSTER_ENV = {
    "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "CHRONIK_OFFSETS_TOPIC_PARTITIONS": "3",
}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin(node):
    client = getattr(node, "_admin_client", None)
    if client is None:
        client = AdminClient({"bootstrap.servers": node.bootstrap})
        node._admin_client = client
    return client


def create_replicated(node, name, partitions=3, rf=3, min_isr=2):
    futures = admin(node).create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=rf,
                config={"min.insync.replicas": str(min_isr)},
            )
        ],
        operation_timeout=15,
    )
    futures[name].result(timeout=30)


def placement(node, topic):
    """{partition: (leader, replicas, isr)} as one broker reports it."""
    md = admin(node).list_topics(topic, timeout=WAIT_S)
    t = md.topics[topic]
    return {
        p.id: (p.leader, sorted(p.replicas), sorted(p.isrs)) for p in t.partitions.values()
    }


def wait_for_placement(node, topic, check, what, timeout=40):
    def ok():
        try:
            view = placement(node, topic)
        except Exception:  # noqa: BLE001 - a broker mid-restart; try again
            return None
        return view if check(view) else None

    return wait_until(ok, timeout=timeout, what=what)


def full_isr(view, brokers=(1, 2, 3)):
    return all(isr == sorted(brokers) and leader in brokers for leader, _, isr in view.values())


def produce(bootstrap, topic, values, partitions, idempotent=False, timeout=60):
    """acks=all; returns {value: (partition, offset)} of every acknowledged record and the
    list of delivery errors."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": idempotent,
            "linger.ms": 2,
            "message.timeout.ms": int(timeout * 1000),
        }
    )
    acked, errors = {}, []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            acked[msg.value()] = (msg.partition(), msg.offset())

    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % partitions, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(timeout + 10) == 0
    return acked, errors


def consume(bootstrap, topic, partitions, timeout=40, isolation="read_uncommitted"):
    """Every record below the high watermark (the last stable offset for read_committed):
    {value: (partition, offset)} plus duplicates."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
        }
    )
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got, dups = {}, []
        eof = set()
        deadline = time.monotonic() + timeout
        while len(eof) < partitions:
            assert time.monotonic() < deadline, f"read {len(got)} records, eof {eof}"
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                if m.error().retriable():
                    continue
                raise AssertionError(m.error())
            eof.discard(m.partition())
            if m.value() in got:
                dups.append(m.value())
            got[m.value()] = (m.partition(), m.offset())
        return got, dups
    finally:
        c.close()


def high_watermarks(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=WAIT_S)[1]
            for p in range(partitions)
        }
    finally:
        c.close()


def stored_batches(node, topic, partition):
    """(base offset, last offset, bytes) of every whole batch in the partition's segment files."""
    pattern = os.path.join(node.data_dir, "data", "logs", f"{topic}-{partition}", "*.log")
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 61 <= len(data):
            base, length = struct.unpack_from(">qi", data, pos)
            end = pos + 12 + length
            if length <= 0 or end > len(data):
                break
            (last_delta,) = struct.unpack_from(">i", data, pos + 23)
            out.append((base, base + last_delta, data[pos:end]))
            pos = end
    return out


def one_partition_with_records(cluster, prefix):
    """A new topic with one partition on all three brokers, in sync, holding 50 acks=all
    records: (topic, its leader, {value: (partition, offset)})."""
    topic = unique(prefix)
    create_replicated(cluster.nodes[1], topic, partitions=1)
    view = wait_for_placement(cluster.nodes[1], topic, full_isr, "all replicas in sync")
    acked, errors = produce(cluster.bootstrap, topic, [b"a%d" % i for i in range(50)], 1)
    assert not errors and len(acked) == 50
    return topic, view[0][0], acked


def produce_through_a_new_leader(cluster, topic, old, prefix, what, timeout):
    """Once a broker other than `old` leads partition 0 with `old` out of its ISR, 50 acks=all
    records through the other brokers: {value: (partition, offset)}."""
    rest = [i for i in cluster.nodes if i != old]
    wait_for_placement(
        cluster.nodes[rest[0]],
        topic,
        lambda v: v[0][0] in rest and old not in v[0][2],
        what,
        timeout,
    )
    bootstrap = ",".join(cluster.nodes[i].bootstrap for i in rest)
    more, errors = produce(bootstrap, topic, [prefix + b"%d" % i for i in range(50)], 1)
    assert not errors and len(more) == 50
    return more


def assert_replicas_identical(cluster, topic, partitions, bootstrap):
    """Every replica holds the same bytes below the high watermark (which covers everything)."""
    hws = high_watermarks(bootstrap, topic, partitions)
    for p in range(partitions):
        views = {}
        for i, node in cluster.nodes.items():
            below = [b for b in stored_batches(node, topic, p) if b[1] < hws[p]]
            views[i] = b"".join(b[2] for b in below)
            last = below[-1][1] + 1 if below else 0
            assert last == hws[p], f"node {i} partition {p}: batches end at {last}, hw {hws[p]}"
        first = views[1]
        for i, v in views.items():
            assert v == first, f"partition {p}: node {i} differs from node 1 below hw {hws[p]}"


@pytest.fixture(scope="module")
def cluster():
    c = ChronikCluster(3, name="repl", **CLUSTER_ENV)
    try:
        yield c.start()
    finally:
        c.cleanup()


def test_replicated_topic_lists_replicas_and_isr_and_round_trips(cluster):
    topic = unique("rf3")
    create_replicated(cluster.nodes[2], topic)
    for node in cluster.nodes.values():
        view = wait_for_placement(node, topic, full_isr, "all replicas in sync")
        assert all(replicas == [1, 2, 3] for _, replicas, _ in view.values()), view
        # Leaders spread over the brokers.
        assert sorted(leader for leader, _, _ in view.values()) == [1, 2, 3], view
    values = [b"v%d" % i for i in range(300)]
    acked, errors = produce(cluster.bootstrap, topic, values, 3)
    assert not errors, errors[:3]
    assert len(acked) == 300
    got, dups = consume(cluster.bootstrap, topic, 3)
    assert not dups
    assert got == acked
    wait_until(
        lambda: all(
            sum(len(stored_batches(n, topic, p)) for p in range(3)) > 0
            for n in cluster.nodes.values()
        ),
        timeout=10,
        what="followers storing batches",
    )
    assert_replicas_identical(cluster, topic, 3, cluster.bootstrap)


def test_kafka_python_produces_acks_all_and_consumes_a_replicated_topic(cluster):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KpTopicPartition

    topic = unique("kp-rf3")
    create_replicated(cluster.nodes[3], topic, partitions=3)
    wait_for_placement(cluster.nodes[1], topic, full_isr, "all replicas in sync")
    p = KafkaProducer(bootstrap_servers=cluster.nodes[1].bootstrap, acks="all")
    futures = [p.send(topic, value=b"kp%d" % i, partition=i % 3) for i in range(90)]
    sent = {f.get(timeout=30).offset for f in futures[:3]}
    assert sent == {0}
    for f in futures:
        f.get(timeout=30)
    p.close()
    c = KafkaConsumer(
        bootstrap_servers=cluster.nodes[2].bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=10000,
    )
    c.assign([KpTopicPartition(topic, i) for i in range(3)])
    c.seek_to_beginning()
    got = set()
    for m in c:
        got.add(m.value)
        if len(got) == 90:
            break
    c.close()
    assert got == {b"kp%d" % i for i in range(90)}


def test_replication_factor_above_live_brokers_is_refused(cluster):
    with pytest.raises(Exception) as e:
        create_replicated(cluster.nodes[1], unique("rf4"), rf=4, min_isr=1)
    err = e.value.args[0]
    assert err.code() == KafkaError.INVALID_REPLICATION_FACTOR, err


def test_min_insync_above_replication_factor_is_refused(cluster):
    with pytest.raises(Exception) as e:
        create_replicated(cluster.nodes[1], unique("minisr"), rf=2, min_isr=3)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_killing_a_partition_leader_elects_a_new_one_without_losing_acks():
    c = ChronikCluster(3, name="failover", **CLUSTER_ENV)
    try:
        c.start()
        topic = unique("failover")
        create_replicated(c.nodes[1], topic)
        before = wait_for_placement(c.nodes[1], topic, full_isr, "all replicas in sync")
        acked, errors = produce(c.bootstrap, topic, [b"a%d" % i for i in range(200)], 3)
        assert not errors and len(acked) == 200

        victim = before[0][0]
        c.nodes[victim].kill()
        rest = [i for i in c.nodes if i != victim]
        survivor = c.nodes[rest[0]]

        def moved(view):
            return all(
                leader in rest and victim not in isr and len(isr) == 2
                for leader, _, isr in view.values()
            )

        after = wait_for_placement(survivor, topic, moved, "new leaders from the ISR", 30)
        assert after[0][0] != victim
        bootstrap = ",".join(c.nodes[i].bootstrap for i in rest)
        more, errors = produce(bootstrap, topic, [b"b%d" % i for i in range(200)], 3)
        assert not errors and len(more) == 200, errors[:3]
        got, dups = consume(bootstrap, topic, 3)
        assert not dups
        for v, where in list(acked.items()) + list(more.items()):
            assert got.get(v) == where, (v, where, got.get(v))

        # The old leader returns as a follower, truncates to the shared epoch and catches up.
        c.nodes[victim].start()
        wait_for_placement(survivor, topic, full_isr, "the returning broker back in the ISR", 40)
        assert_replicas_identical(c, topic, 3, c.bootstrap)
    finally:
        c.cleanup()


def test_a_paused_leader_is_replaced_and_cannot_acknowledge_after_it_resumes():
    """SIGSTOP stands in for a network partition of the leader: it stops heartbeating and
    fetching, the controller fences it and the ISR elects a new leader. When it resumes it
    still believes it leads until it applies the new metadata: an acks=all write it takes then
    is never acknowledged (no follower fetches from it), and once it learns it truncates
    whatever it wrote alone and follows the new leader."""
    c = ChronikCluster(3, name="paused", **CLUSTER_ENV)
    try:
        c.start()
        topic, old, acked = one_partition_with_records(c, "paused")
        # The Raft quorum stays with the others.
        c.nodes[old].proc.send_signal(signal.SIGSTOP)
        try:
            more = produce_through_a_new_leader(
                c, topic, old, b"q", "a new leader while the old one is paused", 30
            )
        finally:
            c.nodes[old].proc.send_signal(signal.SIGCONT)
        with WireClient(c.nodes[old].port, timeout=20) as w:
            code, _ = w.produce_v3(topic, 0, record_batch([(b"k", b"stale")]), acks=-1)
        assert code != 0, "a deposed leader acknowledged an acks=all write"
        wait_for_placement(c.nodes[old], topic, full_isr, "the old leader back in the ISR", 40)
        got, dups = consume(c.bootstrap, topic, 1)
        assert not dups and b"stale" not in got
        for v, where in list(acked.items()) + list(more.items()):
            assert got.get(v) == where, (v, where, got.get(v))
        assert_replicas_identical(c, topic, 1, c.bootstrap)
    finally:
        for node in c.nodes.values():
            if node.alive():
                node.proc.send_signal(signal.SIGCONT)
        c.cleanup()


def test_two_brokers_down_refuses_acks_all_but_serves_reads():
    lag_ms = 2000
    env = dict(CLUSTER_ENV, CHRONIK_REPLICA_LAG_TIME_MAX_MS=str(lag_ms))
    c = ChronikCluster(3, name="minisr", **env)
    try:
        c.start()
        topic = unique("minisr")
        create_replicated(c.nodes[1], topic, partitions=1)
        wait_for_placement(c.nodes[1], topic, full_isr, "all replicas in sync")
        acked, errors = produce(c.bootstrap, topic, [b"x%d" % i for i in range(50)], 1)
        assert not errors and len(acked) == 50

        # The partition leader survives. First the broker that is neither it nor the Raft
        # leader dies (the quorum fences it: the ISR shrinks to two), then the last other one:
        # the metadata quorum is gone with it, so the committed ISR cannot shrink to one, but
        # once the follower has been silent for replica.lag.time.max.ms the leader counts it
        # out and refuses acks=all before writing anything.
        pl = placement(c.nodes[1], topic)[0][0]
        rl = c.status(pl)["leader_id"]
        order = sorted((i for i in c.nodes if i != pl), key=lambda i: i == rl)
        c.nodes[order[0]].kill()
        wait_for_placement(
            c.nodes[pl],
            topic,
            lambda v: v[0][0] == pl and order[0] not in v[0][2],
            "first victim out of the ISR",
            30,
        )
        c.nodes[order[1]].kill()
        time.sleep(lag_ms / 1000 + 1)
        survivor = c.nodes[pl]
        with WireClient(survivor.port, timeout=20) as w:
            code, _ = w.produce_v3(topic, 0, record_batch([(b"k", b"never")]), acks=-1)
        assert code == NOT_ENOUGH_REPLICAS, code
        got, dups = consume(survivor.bootstrap, topic, 1)
        assert not dups and set(acked) <= set(got)
        assert b"never" not in got

        for i in order:
            c.nodes[i].launch()
        for i in order:
            c.nodes[i].wait_ready(60)
        wait_for_placement(survivor, topic, full_isr, "both brokers back in the ISR", 60)
        more, errors = produce(c.bootstrap, topic, [b"y%d" % i for i in range(50)], 1)
        assert not errors and len(more) == 50
        assert_replicas_identical(c, topic, 1, c.bootstrap)
    finally:
        c.cleanup()


def test_acks_all_fails_with_not_enough_replicas_when_the_isr_is_too_small():
    """Two of three down with the Raft quorum intact is impossible on three nodes, so the
    NOT_ENOUGH_REPLICAS path is checked with min.insync.replicas=3 and one broker down."""
    c = ChronikCluster(3, name="notenough", **CLUSTER_ENV)
    try:
        c.start()
        topic = unique("notenough")
        create_replicated(c.nodes[1], topic, partitions=1, min_isr=3)
        view = wait_for_placement(c.nodes[1], topic, full_isr, "all replicas in sync")
        with WireClient(c.nodes[view[0][0]].port) as w:
            code, base = w.produce_v3(topic, 0, record_batch([(b"k", b"ok")]), acks=-1)
        assert (code, base) == (0, 0)
        leader = view[0][0]
        raft_leader = c.status(leader)["leader_id"]
        victim = next(i for i in c.nodes if i not in (leader, raft_leader))
        c.nodes[victim].kill()
        wait_for_placement(
            c.nodes[leader], topic, lambda v: len(v[0][2]) == 2, "ISR shrunk to two", 30
        )
        with WireClient(c.nodes[leader].port) as w:
            code, _ = w.produce_v3(topic, 0, record_batch([(b"k", b"refused")]), acks=-1)
            assert code == NOT_ENOUGH_REPLICAS
            # acks=1 does not wait for the ISR.
            code, _ = w.produce_v3(topic, 0, record_batch([(b"k", b"one")]), acks=1)
            assert code == 0
        got, _ = consume(c.nodes[leader].bootstrap, topic, 1)
        assert b"ok" in got and b"refused" not in got
        c.nodes[victim].start()
        wait_for_placement(c.nodes[leader], topic, full_isr, "the broker back in the ISR", 40)
        with WireClient(c.nodes[leader].port) as w:
            code, _ = w.produce_v3(topic, 0, record_batch([(b"k", b"again")]), acks=-1)
        assert code == 0
        assert_replicas_identical(c, topic, 1, c.bootstrap)
    finally:
        c.cleanup()


def test_full_cluster_restart_keeps_every_acknowledged_record():
    c = ChronikCluster(3, name="restart", **CLUSTER_ENV)
    try:
        c.start()
        topic = unique("restart")
        create_replicated(c.nodes[1], topic)
        wait_for_placement(c.nodes[1], topic, full_isr, "all replicas in sync")
        acked, errors = produce(c.bootstrap, topic, [b"r%d" % i for i in range(300)], 3)
        assert not errors and len(acked) == 300
        for node in c.nodes.values():
            node.kill()
        c.start()
        wait_for_placement(c.nodes[2], topic, full_isr, "all replicas back in sync", 60)
        got, dups = consume(c.bootstrap, topic, 3)
        assert not dups
        for v, where in acked.items():
            assert got.get(v) == where, (v, where, got.get(v))
        more, errors = produce(c.bootstrap, topic, [b"s%d" % i for i in range(30)], 3)
        assert not errors and len(more) == 30
        assert_replicas_identical(c, topic, 3, c.bootstrap)
    finally:
        c.cleanup()


def test_chaos_sigkill_random_brokers_loses_no_acknowledged_record():
    rounds = int(os.environ.get("CHRONIK_CHAOS_ROUNDS", "10"))
    c = ChronikCluster(3, name="chaos", **CLUSTER_ENV)
    rng = random.Random(7)
    try:
        c.start()
        topic = unique("chaos")
        create_replicated(c.nodes[1], topic)
        wait_for_placement(c.nodes[1], topic, full_isr, "all replicas in sync")
        acked, errors = {}, []
        stop = threading.Event()

        def run_producer():
            p = Producer(
                {
                    "bootstrap.servers": c.bootstrap,
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "message.timeout.ms": 120000,
                }
            )

            def on_delivery(err, msg):
                if err:
                    errors.append(err)
                else:
                    acked[msg.value()] = (msg.partition(), msg.offset())

            i = 0
            while not stop.is_set():
                try:
                    p.produce(topic, value=b"c%d" % i, partition=i % 3, on_delivery=on_delivery)
                    i += 1
                except BufferError:
                    pass
                p.poll(0.01)
            p.flush(150)

        producer = threading.Thread(target=run_producer)
        producer.start()
        try:
            for _ in range(rounds):
                time.sleep(rng.uniform(1.5, 3.0))
                victim = rng.choice(list(c.nodes))
                c.nodes[victim].kill()
                time.sleep(rng.uniform(1.0, 3.0))
                c.nodes[victim].start()
        finally:
            time.sleep(3)
            stop.set()
            producer.join(200)
        assert not producer.is_alive()
        assert len(acked) > 100, len(acked)
        assert not errors, errors[:5]
        wait_for_placement(c.nodes[1], topic, full_isr, "every replica back in sync", 60)
        got, dups = consume(c.bootstrap, topic, 3, timeout=60)
        assert not dups, dups[:5]
        lost = [(v, w) for v, w in acked.items() if got.get(v) != w]
        assert not lost, lost[:5]
        assert_replicas_identical(c, topic, 3, c.bootstrap)
        # The rounds really moved leadership and made followers truncate or catch up.
        logs = "".join(open(n.log_path, errors="replace").read() for n in c.nodes.values())
        print(
            f"chaos: {rounds} rounds, {len(acked)} acknowledged, "
            f"{logs.count('broker liveness changed')} liveness changes, "
            f"{logs.count('leading partition')} leaderships, "
            f"{logs.count('truncating')} truncations"
        )
        assert logs.count("leading partition") > 3
    finally:
        c.cleanup()


def test_committed_offsets_survive_the_loss_of_the_group_coordinator():
    """__consumer_offsets is replicated like any topic: offsets committed through one
    coordinator are answered by the next after the first is SIGKILLed."""
    c = ChronikCluster(3, name="groups", **CLUSTER_ENV)
    try:
        c.start()
        topic = unique("grp")
        create_replicated(c.nodes[1], topic)
        offsets_view = wait_for_placement(
            c.nodes[1], "__consumer_offsets", full_isr, "__consumer_offsets in sync"
        )
        assert all(replicas == [1, 2, 3] for _, replicas, _ in offsets_view.values())
        group = unique("g")
        consumer = Consumer(
            {
                "bootstrap.servers": c.bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
            }
        )
        committed = [TopicPartition(topic, p, 10 + p) for p in range(3)]
        consumer.commit(offsets=committed, asynchronous=False)
        consumer.close()
        described = admin(c.nodes[1]).describe_consumer_groups([group])[group].result(timeout=30)
        coordinator = described.coordinator.id
        c.nodes[coordinator].kill()
        rest = [i for i in c.nodes if i != coordinator]
        bootstrap = ",".join(c.nodes[i].bootstrap for i in rest)

        def answered():
            fresh = Consumer(
                {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
            )
            try:
                got = fresh.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
            except Exception:  # noqa: BLE001 - the coordinator is moving; ask again
                return None
            finally:
                fresh.close()
            return got if all(tp.offset >= 0 for tp in got) else None

        got = wait_until(answered, timeout=40, what="committed offsets from the new coordinator")
        assert [(tp.partition, tp.offset) for tp in got] == [(p, 10 + p) for p in range(3)]
        # The group keeps working on the new coordinator.
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        consumer.commit(offsets=[TopicPartition(topic, 0, 42)], asynchronous=False)
        consumer.close()
        c.nodes[coordinator].start()
        wait_for_placement(
            c.nodes[coordinator], "__consumer_offsets", full_isr, "__consumer_offsets in sync", 40
        )
    finally:
        c.cleanup()


def find_transaction_coordinator(node, transactional_id):
    """FindCoordinator v1 (key type 1) asked of `node`: (error code, coordinator node id)."""
    key = transactional_id.encode()
    body = struct.pack(">h", len(key)) + key + struct.pack(">b", 1)
    with WireClient(node.port) as w:
        resp = w.request(10, 1, body)
    _throttle, error = struct.unpack_from(">ih", resp, 0)
    pos = 6
    (msg_len,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + max(msg_len, 0)
    (node_id,) = struct.unpack_from(">i", resp, pos)
    return error, node_id


def init_producer_id(node, transactional_id):
    """InitProducerId v1: (error code, producer id, epoch)."""
    key = transactional_id.encode()
    body = struct.pack(">h", len(key)) + key + struct.pack(">i", 60000)
    with WireClient(node.port, timeout=20) as w:
        resp = w.request(22, 1, body)
    _throttle, error, pid, epoch = struct.unpack_from(">ihqh", resp, 0)
    return error, pid, epoch


def test_transactional_ids_survive_the_loss_of_their_coordinator():
    """__transaction_state is replicated: after its coordinator is SIGKILLed, the next
    coordinator knows the id, so InitProducerId keeps the producer id and bumps the epoch
    (fencing the previous producer) instead of starting over."""
    c = ChronikCluster(3, name="txn", **CLUSTER_ENV)
    try:
        c.start()
        tid = unique("tx")

        def coordinator(nodes):
            for i in nodes:
                try:
                    error, node_id = find_transaction_coordinator(c.nodes[i], tid)
                except OSError:
                    continue
                if error == 0 and node_id in nodes:
                    return node_id
            return None

        first = wait_until(lambda: coordinator(list(c.nodes)), timeout=30, what="a coordinator")
        error, pid, epoch = wait_until(
            lambda: (lambda r: r if r[0] == 0 else None)(init_producer_id(c.nodes[first], tid)),
            timeout=30,
            what="InitProducerId",
        )
        assert epoch == 0
        view = wait_for_placement(
            c.nodes[first], "__transaction_state", full_isr, "__transaction_state in sync"
        )
        assert all(replicas == [1, 2, 3] for _, replicas, _ in view.values())
        c.nodes[first].kill()
        rest = [i for i in c.nodes if i != first]
        second = wait_until(lambda: coordinator(rest), timeout=40, what="a new coordinator")

        def reinit():
            try:
                r = init_producer_id(c.nodes[second], tid)
            except OSError:
                return None
            return r if r[0] == 0 else None

        _, pid2, epoch2 = wait_until(reinit, timeout=40, what="InitProducerId on the new one")
        assert (pid2, epoch2) == (pid, 1)
    finally:
        c.cleanup()


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_a_consumer_group_keeps_consuming_when_its_coordinator_dies(protocol):
    # The consumer protocol's group state (epochs, assignments) is replicated with
    # __consumer_offsets like the classic group's generation.
    env = dict(CLUSTER_ENV, CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS="500")
    c = ChronikCluster(3, name=f"grpfail-{protocol}", **env)
    try:
        c.start()
        topic = unique("grpfail")
        create_replicated(c.nodes[1], topic)
        wait_for_placement(c.nodes[1], topic, full_isr, "all replicas in sync")
        first, errors = produce(c.bootstrap, topic, [b"f%d" % i for i in range(300)], 3)
        assert not errors and len(first) == 300
        group = unique("g")
        conf = {
            "bootstrap.servers": c.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "group.protocol": protocol,
        }
        if protocol == "classic":
            conf["session.timeout.ms"] = 30000
        consumer = Consumer(conf)
        seen = set()

        def consume_until(expected, timeout):
            deadline = time.monotonic() + timeout
            while not expected <= seen:
                assert time.monotonic() < deadline, f"{len(expected - seen)} records never came"
                for m in consumer.consume(100, 0.5):
                    if m.error():
                        continue
                    seen.add(m.value())
                try:
                    consumer.commit(asynchronous=False)
                except Exception:  # noqa: BLE001 - nothing to commit, or coordinator moving
                    pass

        try:
            consumer.subscribe([topic])
            consume_until(set(first), 60)
            coordinator = (
                admin(c.nodes[1]).describe_consumer_groups([group])[group].result(30).coordinator.id
            )
            c.nodes[coordinator].kill()
            rest = [i for i in c.nodes if i != coordinator]
            bootstrap = ",".join(c.nodes[i].bootstrap for i in rest)
            wait_for_placement(
                c.nodes[rest[0]],
                "__consumer_offsets",
                lambda v: all(leader in rest for leader, _, _ in v.values()),
                "__consumer_offsets led by the survivors",
                30,
            )
            more, errors = produce(bootstrap, topic, [b"m%d" % i for i in range(100)], 3)
            assert not errors and len(more) == 100
            consume_until(set(more), 90)
        finally:
            consumer.close()
        # The group's committed offsets, kept by the new coordinator, cover everything read.
        fresh = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        try:
            committed = fresh.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)
        finally:
            fresh.close()
        hws = high_watermarks(bootstrap, topic, 3)
        assert {tp.partition: tp.offset for tp in committed} == hws
    finally:
        c.cleanup()
