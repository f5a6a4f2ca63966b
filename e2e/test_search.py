"""Full-text search end to end: events produced with confluent-kafka into a topic with
searchable.enabled are found through the Elasticsearch-shaped HTTP API within a second of their
acknowledgement; a SIGKILL loses nothing and duplicates nothing; compaction supersedes values in
the index; bad requests are 400s that say why."""

import json
import os
import time

from clients import (
    WAIT_S,
    admin,
    create_topic,
    http_request,
    produce_all,
    producer,
    wait_until,
    watermarks,
)

FRESHNESS_S = 1.0


def http(server, method, path, body=None, raw=None):
    """(status, parsed JSON or text) of one request to the unified API."""
    status, _, body = http_request(server, method, path, body, raw, timeout=WAIT_S)
    text = body.decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def search(server, topic, body=None):
    status, out = http(server, "POST", f"/{topic}/_search", body or {})
    assert status == 200, (status, out)
    return out


def total(server, topic, body=None):
    return search(server, topic, body)["hits"]["total"]["value"]


def events(n, start=0, partitions=2):
    return [
        (
            f"user-{i}".encode(),
            json.dumps({"id": i, "msg": f"payment {'failed' if i % 3 == 0 else 'settled'} for order {i}", "amount": i * 1.5}).encode(),
            i % partitions,
        )
        for i in range(start, start + n)
    ]


def test_events_are_searchable_within_a_second(server, topic_name):
    create_topic(server, topic_name, partitions=2, config={"searchable.enabled": "true"})
    produce_all(server, topic_name, events(60))
    acked = time.monotonic()
    while total(server, topic_name) < 60:
        assert time.monotonic() - acked < FRESHNESS_S, "not searchable within 1 s of the ack"
        time.sleep(0.02)
    r = search(server, topic_name, {"query": {"match": {"msg": "failed"}}, "size": 100})
    assert r["hits"]["total"] == {"value": 20, "relation": "eq"}
    assert r["_shards"]["total"] == 2
    hit = r["hits"]["hits"][0]
    assert hit["_index"] == topic_name
    assert hit["_id"] == f"{hit['_partition']}-{hit['_offset']}"
    assert "failed" in hit["_source"]["msg"]
    assert hit["_key"] == f"user-{hit['_source']['id']}"
    assert isinstance(hit["_timestamp"], int)
    assert {h["_source"]["id"] % 3 for h in r["hits"]["hits"]} == {0}
    # The same query through POST /_search with the index in the body, and a wildcard.
    status, r2 = http(server, "POST", "/_search", {"index": topic_name, "query": {"match": {"msg": "failed"}}})
    assert status == 200 and r2["hits"]["total"]["value"] == 20
    prefix = topic_name[:10]
    status, r3 = http(server, "POST", f"/{prefix}*/_search", {"query": {"term": {"id": 3}}})
    assert status == 200 and r3["hits"]["total"]["value"] >= 1
    status, c = http(server, "POST", f"/{topic_name}/_count", {"query": {"range": {"amount": {"gte": 30}}}})
    assert status == 200 and c["count"] == 40
    status, m = http(server, "GET", f"/{topic_name}/_mapping")
    assert status == 200
    props = m[topic_name]["mappings"]["properties"]
    assert props["msg"]["type"] == "text" and props["amount"]["type"] in ("double", "long")
    status, cat = http(server, "GET", "/_cat/indices?format=json")
    assert status == 200
    row = next(x for x in cat if x["index"] == topic_name)
    assert row["docs.count"] == "60"


def test_sigkill_restart_keeps_totals_and_indexes_new_events(start_server, topic_name):
    srv = start_server(name="search-crash")
    create_topic(srv, topic_name, partitions=2, config={"searchable": "true"})
    produce_all(srv, topic_name, events(50))
    wait_until(lambda: total(srv, topic_name) == 50, what="50 events searchable")
    srv.restart(kill=True)
    wait_until(lambda: total(srv, topic_name) == 50, what="the index back after SIGKILL")
    # Replay after the crash adds nothing twice: the total stays exactly 50.
    for _ in range(10):
        assert total(srv, topic_name) == 50
        time.sleep(0.05)
    produce_all(srv, topic_name, events(10, start=50))
    acked = time.monotonic()
    while total(srv, topic_name) < 60:
        assert time.monotonic() - acked < WAIT_S
        time.sleep(0.02)
    assert total(srv, topic_name) == 60
    assert total(srv, topic_name, {"query": {"term": {"id": 55}}}) == 1


def test_compacted_topic_supersedes_values_and_tombstones_delete(server, topic_name):
    create_topic(server, topic_name, config={"searchable.enabled": "true", "cleanup.policy": "compact"})
    produce_all(
        server,
        topic_name,
        [
            (b"k1", json.dumps({"name": "alpha old"}).encode(), 0),
            (b"k2", json.dumps({"name": "beta"}).encode(), 0),
            (b"k1", json.dumps({"name": "alpha new"}).encode(), 0),
            (b"k2", None, 0),
            (b"k3", json.dumps({"name": "gamma"}).encode(), 0),
        ],
    )
    wait_until(lambda: total(server, topic_name, {"query": {"match": {"name": "gamma"}}}) == 1, what="gamma indexed")
    r = search(server, topic_name, {"query": {"match": {"name": "alpha"}}})
    assert [h["_source"]["name"] for h in r["hits"]["hits"]] == ["alpha new"]
    assert total(server, topic_name) == 2, "k2 was deleted by its tombstone"


def test_bad_requests_are_400_with_a_reason(server, topic_name):
    create_topic(server, topic_name, config={"searchable.enabled": "true"})
    plain = topic_name + "-plain"
    create_topic(server, plain)
    cases = [
        ({"query": {"fuzzy_like_this": {"x": 1}}}, "fuzzy_like_this"),
        ({"query": {"match": {"msg": {"query": "x", "operator": 7}}}}, "operator"),
        ({"query": {"range": {"amount": {"gt": {"a": 1}}}}}, "range"),
        ({"size": 50000}, "Result window is too large"),
        ({"size": "many"}, "size"),
        ({"aggs": {"a": {"geo_bounds": {"field": "x"}}}}, "geo_bounds"),
    ]
    for body, needle in cases:
        status, out = http(server, "POST", f"/{topic_name}/_search", body)
        assert status == 400, (body, status, out)
        assert needle in out["error"]["reason"], (body, out)
        assert out["error"]["type"]
    status, out = http(server, "POST", f"/{topic_name}/_search", raw=b'{"query": {"match_all": {}')
    assert status == 400 and "JSON" in out["error"]["reason"], out
    status, out = http(server, "POST", f"/{plain}/_search", {})
    assert status == 400 and "searchable" in out["error"]["reason"], out
    status, out = http(server, "POST", "/no-such-topic-anywhere/_search", {})
    assert status == 404, out
    # The broker is still fine afterwards.
    assert search(server, topic_name)["hits"]["total"]["value"] == 0


def test_retention_removes_documents_below_the_log_start(server, topic_name):
    segment = 1024
    create_topic(
        server,
        topic_name,
        config={"searchable.enabled": "true", "segment.bytes": str(segment), "retention.bytes": str(2 * segment)},
    )
    p = producer(server, **{"linger.ms": 0, "batch.num.messages": 1})
    for i in range(60):
        p.produce(topic_name, value=json.dumps({"i": i, "pad": "x" * 180}).encode(), partition=0)
        p.poll(0)
    assert p.flush(WAIT_S) == 0
    wait_until(
        lambda: watermarks(server, topic_name, 0)[0] > 0, what="retention to delete the oldest segments"
    )

    def index_matches_log():
        start, end = watermarks(server, topic_name, 0)
        return total(server, topic_name) == end - start and start

    # The index follows the log start: exactly the records the log still has are found.
    start = wait_until(index_matches_log, what="the index to drop what retention deleted")
    assert total(server, topic_name, {"query": {"range": {"_offset": {"lt": start}}}}) == 0
    assert total(server, topic_name, {"query": {"term": {"i": 59}}}) == 1


def test_delete_topic_deletes_its_index(server, topic_name):
    create_topic(server, topic_name, config={"searchable.enabled": "true"})
    produce_all(server, topic_name, events(5, partitions=1))
    wait_until(lambda: total(server, topic_name) == 5, what="5 events searchable")
    index_dir = os.path.join(server.data_dir, "data", "index", "search", topic_name)
    assert os.path.isdir(index_dir)
    admin(server).delete_topics([topic_name], operation_timeout=10)[topic_name].result(timeout=WAIT_S)
    wait_until(lambda: not os.path.exists(index_dir), what="the index directory to be removed")
    status, out = http(server, "POST", f"/{topic_name}/_search", {})
    assert status == 404, out
    status, cat = http(server, "GET", "/_cat/indices?format=json")
    assert all(row["index"] != topic_name for row in cat)
