"""SQL and search in a three-broker cluster of real chronik-server processes.

Every broker that hosts a replica of a partition (leader or follower) indexes it, so a topic
with a replica on every broker answers completely on any of them, also after a broker is
SIGKILLed. Queries do not fan out across brokers yet: where a broker hosts only some
partitions, /_sql refuses (501, naming the partitions) and a search reports the partitions it
could not see in `_shards.failed`, rather than passing a partial answer off as whole.
"""

import json
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from clients import admin, http_request, wait_until
from conftest import ChronikCluster

QUERY_CONFIG = {"columnar.enabled": "true", "searchable.enabled": "true"}


@pytest.fixture(scope="module")
def cluster():
    c = ChronikCluster(3, name="queries", CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS="0")
    try:
        yield c.start()
    finally:
        c.cleanup()


def create(node, rf, partitions=3):
    name = f"q-{uuid.uuid4().hex[:8]}"
    futures = admin(node).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=rf, config=QUERY_CONFIG)],
        operation_timeout=15,
    )
    futures[name].result(timeout=30)
    return name


def produce(bootstrap, topic, start, count, partitions=3):
    """`count` JSON events, spread over the partitions; {partition: events} acknowledged."""
    acked = {}
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.partition()] = acked.get(msg.partition(), 0) + 1

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 60000})
    for i in range(start, start + count):
        event = {"id": i, "city": ["Oslo", "Lima", "Pune"][i % 3], "note": f"order {i} shipped"}
        p.produce(topic, json.dumps(event).encode(), key=str(i).encode(),
                  partition=i % partitions, on_delivery=report)
        p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    return acked


def sql(node, query):
    status, _, body = http_request(node, "POST", "/_sql", {"query": query})
    return status, json.loads(body)


def count_everywhere(cluster, topic, nodes, want):
    """Wait until SQL and search on each of `nodes` see exactly `want` events."""
    for i in nodes:
        node = cluster.nodes[i]

        def sql_count():
            status, answer = sql(node, f'SELECT COUNT(*) AS n FROM "{topic.replace("-", "_")}"')
            return status == 200 and answer["rows"][0][0] == want

        wait_until(sql_count, timeout=60, interval=0.3, what=f"SQL count {want} on broker {i}")

        def search_count():
            status, _, body = http_request(node, "POST", f"/{topic}/_count", {})
            answer = json.loads(body)
            return status == 200 and answer["count"] == want and answer

        answer = wait_until(search_count, timeout=60, interval=0.3,
                            what=f"search count {want} on broker {i}")
        assert answer["_shards"] == {"total": 3, "successful": 3, "skipped": 0, "failed": 0}


def test_a_topic_replicated_to_every_broker_answers_completely_on_each(cluster):
    topic = create(cluster.nodes[1], rf=3)
    acked = produce(cluster.bootstrap, topic, 0, 600)
    assert sum(acked.values()) == 600
    count_everywhere(cluster, topic, [1, 2, 3], 600)
    for i in cluster.nodes:
        status, answer = sql(
            cluster.nodes[i],
            f'SELECT city, COUNT(*) FROM "{topic.replace("-", "_")}" GROUP BY city ORDER BY city',
        )
        assert status == 200, answer
        assert answer["rows"] == [["Lima", 200], ["Oslo", 200], ["Pune", 200]]


def test_a_partly_hosted_topic_is_refused_by_sql_and_reported_by_search(cluster):
    topic = create(cluster.nodes[1], rf=1)
    acked = produce(cluster.bootstrap, topic, 0, 300)
    md = admin(cluster.nodes[1]).list_topics(topic, timeout=15).topics[topic]
    leaders = {p.id: p.leader for p in md.partitions.values()}
    assert sorted(leaders.values()) == [1, 2, 3], leaders
    for i, node in cluster.nodes.items():
        here = [p for p, leader in leaders.items() if leader == i]
        status, answer = sql(node, f'SELECT COUNT(*) FROM "{topic.replace("-", "_")}"')
        assert status == 501, answer
        message = json.dumps(answer)
        assert "no replica on broker" in message and topic in message, message
        others = sorted(p for p in leaders if p not in here)
        assert "(" + ", ".join(map(str, others)) + ")" in message, message

        def searched():
            status, _, body = http_request(node, "POST", f"/{topic}/_search",
                                           {"query": {"match": {"note": "shipped"}}, "size": 0})
            answer = json.loads(body)
            hits = answer["hits"]["total"]["value"]
            return status == 200 and hits == sum(acked[p] for p in here) and answer

        answer = wait_until(searched, timeout=60, interval=0.3, what=f"search on broker {i}")
        shards = answer["_shards"]
        assert (shards["total"], shards["successful"], shards["failed"]) == (3, 1, 2), shards
        assert sorted(f["shard"] for f in shards["failures"]) == others, shards
        assert all(f["index"] == topic for f in shards["failures"]), shards


def test_followers_answer_for_a_sigkilled_broker_and_index_what_follows(cluster):
    topic = create(cluster.nodes[2], rf=3)
    produce(cluster.bootstrap, topic, 0, 300)
    count_everywhere(cluster, topic, [1, 2, 3], 300)
    cluster.nodes[3].kill()
    survivors = {i: n for i, n in cluster.nodes.items() if i != 3}
    bootstrap = ",".join(n.bootstrap for n in survivors.values())
    # Partitions it led move to a survivor, whose indexes were already following them.
    produce(bootstrap, topic, 300, 300)
    count_everywhere(cluster, topic, [1, 2], 600)
