"""Moving partition replicas between brokers. Removing a broker: `remove-node` drains it (its replicas move to the other brokers, each move
completing once the new replicas are in sync), then it leaves the Raft voters and is forgotten.

Real processes on loopback: three initial voters, a fourth added with `add-node`, then broker 1
removed while an acks=all producer keeps writing. Nothing acknowledged may be lost or
duplicated, consumer group offsets (in __consumer_offsets, whose partitions move too) survive,
and the removed broker's replicas are deleted from its disk.
"""

import json
import os
import signal
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition
from kafka import errors as kafka_errors

from clients import WAIT_S, http_request, wait_until
from conftest import ChronikCluster, ChronikServer, free_port
from test_cluster import cli, unique
from test_replication import (
    admin,
    consume,
    create_replicated,
    placement,
    produce,
    wait_for_placement,
)

DRAIN_ENV = {
    "CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "CHRONIK_OFFSETS_TOPIC_PARTITIONS": "6",
}


class BackgroundProducer:
    """acks=all, idempotent, round-robin over partitions until stopped; records every ack."""

    def __init__(self, bootstrap, topic, partitions):
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
            }
        )
        self.topic, self.partitions = topic, partitions
        self.acked, self.errors = {}, []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def on_delivery(self, err, msg):
        if err:
            self.errors.append(err)
        else:
            self.acked[msg.value()] = (msg.partition(), msg.offset())

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            value = f"v{i}".ljust(512, ".").encode()
            self.producer.produce(
                self.topic, value=value, partition=i % self.partitions, on_delivery=self.on_delivery
            )
            self.producer.poll(0)
            i += 1
            time.sleep(0.002)
        self.producer.flush(130)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(150)


def delete_node(node, node_id):
    status, _, body = http_request(node, "DELETE", f"/admin/cluster/nodes/{node_id}")
    return status, json.loads(body or b"{}")


def test_add_node_then_remove_node_under_load_loses_nothing():
    c = ChronikCluster(3, name="drain", **DRAIN_ENV)
    newcomer = None
    try:
        c.start()
        port = free_port()
        newcomer = ChronikServer(
            "drain-4",
            CHRONIK_NODE_ID=4,
            CHRONIK_PEERS=c.nodes[1].env_overrides["CHRONIK_PEERS"],
            CHRONIK_CLUSTER_PORT=port,
            **DRAIN_ENV,
        )
        newcomer.launch()
        added = cli(c.nodes[2], "add-node", "--node-id", "4", "--address", f"127.0.0.1:{port}")
        assert added.returncode == 0, added.stdout + added.stderr
        newcomer.wait_ready(timeout=30)
        wait_until(
            lambda: {n["id"] for n in c.status(1)["nodes"] if n.get("registered")} == {1, 2, 3, 4},
            what="node 4 registered as a broker",
        )
        # The broker removed is the Raft leader (the controller that runs the drain): it moves
        # its replicas away, removes itself from the voters, steps down, and the next leader
        # unregisters it.
        gone = c.status(2)["leader_id"]
        if gone not in (1, 2, 3):
            gone = 1
        nodes = {**c.nodes, 4: newcomer}
        stay = sorted(i for i in nodes if i != gone)
        ask = nodes[stay[0]]
        bootstrap = ",".join(nodes[i].bootstrap for i in stay)

        # Replicated over four brokers, and single-replica partitions (moved with no other copy).
        topic, single = unique("drained"), unique("single")
        create_replicated(c.nodes[2], topic, partitions=6, rf=3, min_isr=2)
        admin(c.nodes[2]).create_topics([NewTopic(single, 4, 1)])[single].result(timeout=30)
        before = placement(c.nodes[2], topic)
        assert any(gone in replicas for _, replicas, _ in before.values())

        # A group commits offsets before the drain; __consumer_offsets moves with it.
        group = unique("group")
        committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        committer.commit(
            offsets=[TopicPartition(topic, p, 7 + p) for p in range(6)], asynchronous=False
        )
        committer.close()

        single_producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        single_acked = {}
        for i in range(200):
            single_producer.produce(
                single,
                value=f"s{i}".encode(),
                partition=i % 4,
                on_delivery=lambda err, msg: err
                or single_acked.__setitem__(msg.value(), (msg.partition(), msg.offset())),
            )
        assert single_producer.flush(60) == 0
        assert len(single_acked) == 200

        with BackgroundProducer(bootstrap, topic, 6) as load:
            wait_until(lambda: len(load.acked) > 2000, timeout=60, what="acknowledged writes")
            removed = cli(ask, "remove-node", "--node-id", str(gone))
            assert removed.returncode == 0, removed.stdout + removed.stderr
            assert f"draining node {gone}" in removed.stdout, removed.stdout
            assert "has left the cluster" in removed.stdout, removed.stdout
            acked_during_drain = len(load.acked)
            time.sleep(1)
        assert load.errors == [], load.errors[:5]
        assert len(load.acked) > acked_during_drain > 2000

        # The broker is gone from every survivor's view: membership, brokers, replicas.
        for i in stay:
            status = json.loads(http_request(nodes[i], "GET", "/admin/cluster")[2])
            assert {n["id"] for n in status["nodes"]} == set(stay), status
            assert status["partitions"]["reassigning"] == 0
            assert status["leader_id"] in stay
        for t in (topic, single, "__consumer_offsets"):
            view = placement(ask, t)
            for p, (leader, replicas, isr) in view.items():
                assert gone not in replicas and leader in stay, (t, p, view)
                assert isr == replicas, (t, p, view)
        assert sorted(len(r) for _, r, _ in placement(ask, topic).values()) == [3] * 6

        # Every acknowledged record is there exactly once, at the offset it was acknowledged at.
        got, dups = consume(bootstrap, topic, 6, timeout=60)
        assert dups == []
        missing = {v: at for v, at in load.acked.items() if got.get(v) != at}
        assert not missing, f"{len(missing)} acknowledged records lost or moved, e.g. {list(missing.items())[:5]}"
        got_single, dups = consume(bootstrap, single, 4, timeout=60)
        assert dups == [] and all(got_single.get(v) == at for v, at in single_acked.items())

        # Committed offsets moved with __consumer_offsets.
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        try:
            committed = reader.committed([TopicPartition(topic, p) for p in range(6)], timeout=WAIT_S)
            assert {tp.partition: tp.offset for tp in committed} == {p: 7 + p for p in range(6)}
        finally:
            reader.close()

        # The removed broker deleted the replicas it gave away.
        logs = os.path.join(nodes[gone].data_dir, "data", "logs")
        left = [d for d in os.listdir(logs) if d.startswith((topic, single))]
        assert left == [], left

        # The three left cannot give up another broker: RF=3 partitions need all of them.
        status, body = delete_node(ask, stay[1])
        assert status == 409, body
        assert "replicas" in body["error"]["reason"]
        assert delete_node(ask, 9)[0] == 404
        assert delete_node(ask, "x")[0] == 400
        # A new topic is placed over the brokers that stayed.
        later = unique("later")
        create_replicated(ask, later, partitions=3, rf=3, min_isr=2)
        assert all(r == stay for _, r, _ in placement(ask, later).values())
    finally:
        if newcomer is not None:
            newcomer.cleanup()
        c.cleanup()


def test_a_draining_broker_killed_mid_drain_still_leaves_without_loss():
    """SIGKILL the broker being drained: its partitions fail over, the moves finish from the
    surviving replicas, and it leaves the membership although it never comes back."""
    c = ChronikCluster(4, name="drainkill", **DRAIN_ENV)
    try:
        c.start()
        topic = unique("dk")
        create_replicated(c.nodes[1], topic, partitions=8, rf=2, min_isr=1)
        bootstrap = ",".join(c.nodes[i].bootstrap for i in (1, 2, 3))
        with BackgroundProducer(bootstrap, topic, 8) as load:
            wait_until(lambda: len(load.acked) > 300, timeout=60, what="acknowledged writes")
            status, body = delete_node(c.nodes[1], 4)
            assert status == 202, body
            assert body["state"] == "draining"
            c.nodes[4].kill()
            wait_until(
                lambda: 4 not in {n["id"] for n in c.status(1)["nodes"]},
                timeout=90,
                what="node 4 leaving the cluster",
            )
            time.sleep(1)
        assert load.errors == [], load.errors[:5]
        view = placement(c.nodes[1], topic)
        assert all(4 not in replicas and len(replicas) == 2 for _, replicas, _ in view.values()), view
        got, dups = consume(bootstrap, topic, 8, timeout=60)
        assert dups == []
        missing = {v: at for v, at in load.acked.items() if got.get(v) != at}
        assert not missing, f"{len(missing)} acknowledged records lost or moved"
    finally:
        c.cleanup()


def test_kafka_python_reassigns_lists_and_cancels_partition_moves():
    """AlterPartitionReassignments / ListPartitionReassignments with kafka-python's admin
    client: a move that completes (replication factor 1 -> 2), one held in progress by a
    stopped target broker, listed and then cancelled, and the refusals."""
    c = ChronikCluster(4, name="reassign", **DRAIN_ENV)
    ka = None
    stopped = None
    try:
        c.start()
        topic = unique("ra")
        create_replicated(c.nodes[1], topic, partitions=2, rf=1, min_isr=1)
        acked, errors = produce(c.bootstrap, topic, [b"r%d" % i for i in range(200)], 2)
        assert not errors and len(acked) == 200
        view = placement(c.nodes[1], topic)
        (_, (r1,), _) = view[1]
        # Bootstrapped from r1 only, so the broker it asks as controller is alive below.
        ka = KafkaAdminClient(bootstrap_servers=c.nodes[r1].bootstrap)
        tp0, tp1 = KpTopicPartition(topic, 0), KpTopicPartition(topic, 1)

        # p0 moves from its one broker to the two others.
        (_, (r0,), _) = view[0]
        others = sorted(i for i in c.nodes if i != r0)
        assert ka.alter_partition_reassignments({tp0: others}) == {tp0: None}
        wait_for_placement(
            c.nodes[2],
            topic,
            lambda v: v[0][1] == others and v[0][2] == others and v[0][0] in others,
            "partition 0 on the two other brokers, in sync",
        )

        # p1 moves onto a broker that cannot fetch (stopped): the move stays in progress.
        # Not the Raft leader either: a proposal forwarded to a stopped leader waits out its
        # timeout (it may have been accepted), which is right but slow.
        raft_leader = c.status(r1)["leader_id"]
        x = next(i for i in c.nodes if i not in (r1, ka._controller_id, raft_leader))
        stopped = c.nodes[x]
        stopped.proc.send_signal(signal.SIGSTOP)
        assert ka.alter_partition_reassignments({tp1: [r1, x]}) == {tp1: None}
        listed = ka.list_partition_reassignments()
        assert listed == {
            tp1: {"replicas": [r1, x], "adding_replicas": [x], "removing_replicas": []}
        }, listed
        assert ka.list_partition_reassignments({topic: [0]}) == {}
        # Cancelled: back to the replica it had; nothing more to cancel after that.
        assert ka.alter_partition_reassignments({tp1: None}) == {tp1: None}
        assert ka.list_partition_reassignments() == {}
        assert ka.alter_partition_reassignments({tp1: None}) == {
            tp1: kafka_errors.NoReassignmentInProgressError
        }
        assert ka.alter_partition_reassignments({tp1: [r1, 9]}) == {
            tp1: kafka_errors.InvalidReplicationAssignmentError
        }
        stopped.proc.send_signal(signal.SIGCONT)
        stopped = None
        assert placement(c.nodes[r1], topic)[1][1] == [r1]

        got, dups = consume(c.bootstrap, topic, 2)
        assert dups == [] and all(got.get(v) == at for v, at in acked.items())
    finally:
        if stopped is not None:
            stopped.proc.send_signal(signal.SIGCONT)
        if ka is not None:
            ka.close()
        c.cleanup()
