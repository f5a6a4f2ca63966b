"""Vector search end to end: events produced with confluent-kafka into a topic with
vector.enabled (and searchable.enabled) are embedded by the in-process model and found by
meaning through POST /_vector/{topic}/search, fused with BM25 by /hybrid, kept across a SIGKILL,
and bad requests are 4xx answers that say why. POST /v1/embeddings serves the same model in
OpenAI's wire format."""

import json
import math
import os
import re
import shutil
import time

import pytest

from clients import WAIT_S, admin, create_topic, produce_all, wait_until
from test_search import http

FRESHNESS_S = 2.0
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = json.load(open(os.path.join(HERE, "data", "semantic_clusters.json")))
STOP = {"a", "an", "the", "of", "on", "for", "from", "to", "in", "and", "at", "by", "with", "i", "my", "do", "how", "when"}
SHARED = os.environ.get("CHRONIK_SHARED_DIR", os.path.join(HERE, "..", "..", "shared"))


def model_dir():
    return os.environ.get(
        "CHRONIK_EMBEDDING_MODEL_DIR",
        os.path.join(os.path.expanduser("~"), ".cache", "chronik-models", "all-minilm-l6-v2"),
    )


def sentences():
    """(label, text) for every fixture sentence, interleaved across labels."""
    out = []
    clusters = FIXTURE["clusters"]
    for i in range(max(len(v) for v in clusters.values())):
        for label, texts in clusters.items():
            if i < len(texts):
                out.append((label, texts[i]))
    return out


def vsearch(server, topic, body, status=200):
    got, out = http(server, "POST", f"/_vector/{topic}/search", body)
    assert got == status, (got, out)
    return out


def stats(server, topic):
    status, out = http(server, "GET", f"/_vector/{topic}/stats")
    assert status == 200, (status, out)
    return out


def vector_topic(server, name, partitions=2, **extra):
    config = {"vector.enabled": "true", "vector.field": "$.text", "searchable.enabled": "true"}
    config.update(extra)
    create_topic(server, name, partitions=partitions, config=config)


def produce_fixture(server, topic, partitions=2):
    msgs = [
        (f"{label}-{i}".encode(), json.dumps({"text": text, "label": label}).encode(), i % partitions)
        for i, (label, text) in enumerate(sentences())
    ]
    produce_all(server, topic, msgs)
    return len(msgs)


def wait_vectors(server, topic, n, timeout=WAIT_S * 4):
    wait_until(lambda: stats(server, topic)["total_vectors"] >= n, timeout=timeout, what=f"{n} vectors in {topic}")


def test_fixture_queries_share_no_word_with_the_documents():
    words = set()
    for texts in FIXTURE["clusters"].values():
        for t in texts:
            words |= set(re.findall(r"[a-z0-9]+", t.lower()))
    for label, queries in FIXTURE["queries"].items():
        for q in queries:
            overlap = (set(re.findall(r"[a-z0-9]+", q.lower())) & words) - STOP
            assert not overlap, (label, q, overlap)


def test_semantic_queries_find_their_cluster(server, topic_name):
    vector_topic(server, topic_name)
    n = produce_fixture(server, topic_name)
    wait_vectors(server, topic_name, n)
    s = stats(server, topic_name)
    assert s["dimensions"] == 384 and s["model"] == "all-MiniLM-L6-v2" and s["metric"] == "cosine"
    assert s["total_vectors"] == n and s["skipped"] == 0 and s["error"] is None
    assert len(s["partitions"]) == 2
    # Every record is published (visible to queries): the offsets below it are each partition's.
    assert sum(p["published_offset"] for p in s["partitions"]) == n

    precisions = []
    for label, queries in FIXTURE["queries"].items():
        for q in queries:
            out = vsearch(server, topic_name, {"query": q, "k": 10})
            results = out["results"]
            assert len(results) == 10 and isinstance(out["took_ms"], int)
            scores = [r["score"] for r in results]
            assert scores == sorted(scores, reverse=True), "larger scores must come first"
            labels = [r["source"]["label"] for r in results]
            p = labels.count(label) / 10
            precisions.append(p)
            assert p >= 0.7, (q, labels)
    mean = sum(precisions) / len(precisions)
    assert mean >= 0.9, f"mean precision@10 {mean:.3f} ({precisions})"

    hit = vsearch(server, topic_name, {"query": "card payment declined", "k": 1})["results"][0]
    assert set(hit) >= {"partition", "offset", "score", "key", "timestamp", "source"}
    assert hit["key"].startswith("payments-") and hit["source"]["label"] == "payments"
    assert isinstance(hit["timestamp"], int) and hit["timestamp"] > 1_600_000_000_000

    # Filters: partitions and timestamp range.
    only1 = vsearch(server, topic_name, {"query": "rainy day", "k": 30, "filter": {"partitions": [1]}})["results"]
    assert len(only1) == 30 and {r["partition"] for r in only1} == {1}
    ts = sorted(r["timestamp"] for r in vsearch(server, topic_name, {"query": "x", "k": 60})["results"])
    none = vsearch(server, topic_name, {"query": "rain", "k": 5, "filter": {"timestamp": {"gt": ts[-1]}}})
    assert none["results"] == []
    some = vsearch(server, topic_name, {"query": "rain", "k": 100, "filter": {"timestamp": {"lte": ts[-1], "gte": ts[0]}}})
    assert len(some["results"]) == n

    # A raw vector (from /v1/embeddings) finds what its text finds.
    status, emb = http(server, "POST", "/v1/embeddings", {"input": "snow storm in the hills"})
    assert status == 200, emb
    by_text = vsearch(server, topic_name, {"query": "snow storm in the hills", "k": 5})["results"]
    by_vec = vsearch(server, topic_name, {"vector": emb["data"][0]["embedding"], "k": 5, "ef": 200})["results"]
    assert [(r["partition"], r["offset"]) for r in by_vec] == [(r["partition"], r["offset"]) for r in by_text]


def test_vectors_are_searchable_within_two_seconds(server, topic_name):
    vector_topic(server, topic_name, partitions=1)
    produce_all(server, topic_name, [(b"warm", json.dumps({"text": "warm up the model"}).encode(), 0)])
    wait_vectors(server, topic_name, 1)
    produce_all(server, topic_name, [(b"new", json.dumps({"text": "the espresso machine is leaking water"}).encode(), 0)])
    acked = time.monotonic()
    while True:
        results = vsearch(server, topic_name, {"query": "coffee maker dripping", "k": 1})["results"]
        if results and results[0]["key"] == "new":
            break
        assert time.monotonic() - acked < FRESHNESS_S, "not vector-searchable within 2 s of the ack"
        time.sleep(0.05)


def test_hybrid_fuses_bm25_and_vectors(server, topic_name):
    vector_topic(server, topic_name)
    n = produce_fixture(server, topic_name)
    wait_vectors(server, topic_name, n)
    wait_until(
        lambda: http(server, "POST", f"/{topic_name}/_count", {})[1].get("count") == n, what="search index"
    )
    status, out = http(server, "POST", f"/_vector/{topic_name}/hybrid", {"query": "postgres connections refused", "k": 10})
    assert status == 200, out
    results = out["results"]
    assert len(results) == 10 and out["fusion"] == "rrf"
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    # The lexical and semantic best match is first, ranked by both engines.
    top = results[0]
    assert top["source"]["text"] == "postgres refused new connections after the pool filled up"
    assert top["vector_rank"] is not None and top["search_rank"] is not None
    assert abs(top["score"] - (0.5 / (60 + top["vector_rank"]) + 0.5 / (60 + top["search_rank"]))) < 1e-9
    # Both engines agree on the top three (all database sentences, found by BM25 and vectors).
    assert all(r["source"]["label"] == "database" and r["search_rank"] for r in results[:3]), results[:3]
    assert sum(r["source"]["label"] == "database" for r in results) >= 6
    # A query with no word in common: BM25 finds nothing and the vector side still answers.
    out = http(server, "POST", f"/_vector/{topic_name}/hybrid", {"query": "rdbms performance problems", "k": 5})[1]
    assert all(r["search_rank"] is None for r in out["results"])
    assert sum(r["source"]["label"] == "database" for r in out["results"]) >= 4
    # Linear fusion of min-max normalised scores, weighted entirely to one side.
    out = http(server, "POST", f"/_vector/{topic_name}/hybrid",
               {"query": "card declined", "k": 5, "fusion": "linear", "vector_weight": 1.0})[1]
    assert out["fusion"] == "linear" and out["results"][0]["score"] == pytest.approx(1.0)
    vec_only = vsearch(server, topic_name, {"query": "card declined", "k": 5})["results"]
    assert out["results"][0]["offset"] == vec_only[0]["offset"]
    # Filters apply to both sides.
    out = http(server, "POST", f"/_vector/{topic_name}/hybrid",
               {"query": "postgres", "k": 10, "filter": {"partitions": [0]}})[1]
    assert out["results"] and {r["partition"] for r in out["results"]} == {0}


def test_sigkill_keeps_the_index_and_catches_up(start_server, topic_name):
    s = start_server(name="vector-restart")
    vector_topic(s, topic_name, partitions=1)
    first = [(f"a{i}".encode(), json.dumps({"text": t}).encode(), 0) for i, (_, t) in enumerate(sentences()[:30])]
    produce_all(s, topic_name, first)
    wait_vectors(s, topic_name, 30)
    checkpoint = os.path.join(s.data_dir, "data", "index", "vector", topic_name, "0", "checkpoint.json")

    def persisted():
        try:
            return json.load(open(checkpoint))["next_offset"] == 30
        except (OSError, ValueError):
            return False

    wait_until(persisted, timeout=WAIT_S, what="vector checkpoint at offset 30")
    s.restart(kill=True)
    # The persisted index answers at once after the restart, before any new event.
    wait_until(lambda: stats(s, topic_name)["total_vectors"] == 30, what="index reloaded")
    rest = [(f"b{i}".encode(), json.dumps({"text": t}).encode(), 0) for i, (_, t) in enumerate(sentences()[30:])]
    produce_all(s, topic_name, rest)
    total = len(sentences())
    wait_vectors(s, topic_name, total)
    results = vsearch(s, topic_name, {"query": "anything", "k": 1000})["results"]
    offsets = sorted(r["offset"] for r in results)
    assert offsets == list(range(total)), "lost or duplicated vectors across the restart"

    # Killed again before the next checkpoint: the log replays the gap exactly once.
    more = [(b"c", json.dumps({"text": "a brand new sentence about volcanoes"}).encode(), 0)]
    produce_all(s, topic_name, more)
    wait_vectors(s, topic_name, total + 1)
    s.restart(kill=True)
    wait_vectors(s, topic_name, total + 1)
    results = vsearch(s, topic_name, {"query": "lava eruption", "k": 1000})["results"]
    assert sorted(r["offset"] for r in results) == list(range(total + 1))
    assert results[0]["key"] == "c"


def test_events_without_the_field_are_skipped_and_counted(server, topic_name):
    vector_topic(server, topic_name, partitions=1)
    produce_all(server, topic_name, [
        (b"1", json.dumps({"text": "has text"}).encode(), 0),
        (b"2", json.dumps({"other": "no text field"}).encode(), 0),
        (b"3", b"not json", 0),
        (b"4", json.dumps({"text": "also has text"}).encode(), 0),
    ])
    # Skipped events are counted as they are indexed; vectors count once published.
    wait_until(lambda: stats(server, topic_name)["total_vectors"] == 2, what="two vectors")
    s = stats(server, topic_name)
    assert s["skipped"] == 2 and s["partitions"][0]["indexed_offset"] == 4


def test_bad_input_is_refused_with_a_reason(server, topic_name):
    vector_topic(server, topic_name, partitions=1)
    plain = topic_name + "-plain"
    create_topic(server, plain, partitions=1)
    cases = [
        (f"/_vector/{topic_name}/search", {"vector": [0.1, 0.2, 0.3], "k": 5}, 400, "dimensions"),
        (f"/_vector/{topic_name}/search", {"query": "x", "k": 0}, 400, "[k]"),
        (f"/_vector/{topic_name}/search", {"query": "x", "k": -3}, 400, "[k]"),
        (f"/_vector/{topic_name}/search", {"query": "x", "k": 10_000_000}, 400, "[k]"),
        (f"/_vector/{topic_name}/search", {"query": "x", "ef": 0}, 400, "[ef]"),
        (f"/_vector/{topic_name}/search", {"k": 5}, 400, "[query]"),
        (f"/_vector/{topic_name}/search", {"query": "x", "vector": [1.0] * 384}, 400, "not both"),
        (f"/_vector/{topic_name}/search", {"query": 42}, 400, "[query]"),
        (f"/_vector/{topic_name}/search", {"vector": ["a"]}, 400, "[vector]"),
        (f"/_vector/{topic_name}/search", {"query": "x", "filter": {"partitions": "0"}}, 400, "partitions"),
        (f"/_vector/{topic_name}/search", {"query": "x", "colour": 1}, 400, "colour"),
        (f"/_vector/{topic_name}/hybrid", {"query": "x", "fusion": "max"}, 400, "fusion"),
        (f"/_vector/{topic_name}/hybrid", {"query": "x", "vector_weight": 2}, 400, "vector_weight"),
        (f"/_vector/{topic_name}/hybrid", {"k": 3}, 400, "[query]"),
        ("/_vector/no-such-topic-at-all/search", {"query": "x"}, 404, "no-such-topic-at-all"),
        (f"/_vector/{plain}/search", {"query": "x"}, 404, "vector.enabled"),
        (f"/_vector/{plain}/hybrid", {"query": "x"}, 404, "vector.enabled"),
        ("/v1/embeddings", {"input": 3}, 400, "[input]"),
        ("/v1/embeddings", {"input": []}, 400, "[input]"),
        ("/v1/embeddings", {"input": "x", "model": "text-embedding-3-large"}, 400, "model"),
        ("/v1/embeddings", {"input": "x", "encoding_format": "base64"}, 400, "encoding_format"),
    ]
    for path, body, want, words in cases:
        status, out = http(server, "POST", path, body)
        assert status == want, (path, body, status, out)
        assert words in out["error"]["reason"], (path, body, out)
    status, out = http(server, "POST", f"/_vector/{topic_name}/search", raw=b"{not json")
    assert status == 400 and "JSON" in out["error"]["reason"]
    status, out = http(server, "GET", f"/_vector/{plain}/stats")
    assert status == 404
    # Bad vector.* topic configs are refused by name through the Kafka admin API.
    from confluent_kafka.admin import NewTopic

    for key, value in [("vector.metric", "hamming"), ("vector.field", "title"), ("vector.hnsw.m", "0"),
                       ("vector.embedding.dimensions", "100000")]:
        fut = admin(server).create_topics([NewTopic(topic_name + "-bad", 1, 1, config={"vector.enabled": "true", key: value})])
        with pytest.raises(Exception) as e:
            fut[topic_name + "-bad"].result(timeout=WAIT_S)
        assert key in str(e.value), (key, str(e.value))


def test_embeddings_endpoint_matches_sentence_transformers(server):
    ref = json.load(open(os.path.join(SHARED, "data", "minilm", "reference_vectors.json")))
    status, out = http(server, "POST", "/v1/embeddings", {"input": ref["texts"], "model": "all-MiniLM-L6-v2"})
    assert status == 200, out
    assert out["object"] == "list" and out["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in out["data"]] == list(range(len(ref["texts"])))
    assert out["usage"]["prompt_tokens"] > 0
    for d, want in zip(out["data"], ref["vectors"]):
        got = d["embedding"]
        assert d["object"] == "embedding" and len(got) == 384
        cos = sum(a * b for a, b in zip(got, want)) / (
            math.sqrt(sum(a * a for a in got)) * math.sqrt(sum(b * b for b in want))
        )
        assert cos >= 0.999


def test_missing_model_is_reported_and_events_are_embedded_once_it_appears(start_server, topic_name, tmp_path):
    missing = tmp_path / "model-not-here"
    s = start_server(name="vector-no-model", CHRONIK_EMBEDDING_MODEL_DIR=str(missing))
    vector_topic(s, topic_name, partitions=1)
    produce_all(s, topic_name, [(b"k", json.dumps({"text": "the kettle is boiling"}).encode(), 0)])

    def reported():
        err = stats(s, topic_name)["error"]
        return err is not None and str(missing) in err

    wait_until(reported, what="missing model reported in stats")
    status, out = http(s, "POST", f"/_vector/{topic_name}/search", {"query": "tea", "k": 1})
    assert status == 503 and str(missing) in out["error"]["reason"], out
    status, out = http(s, "POST", "/v1/embeddings", {"input": "tea"})
    assert status == 503 and str(missing) in out["error"]["reason"], out
    # The broker itself works, and once the files are there the event is embedded: nothing lost.
    missing.mkdir()
    for f in ("model.safetensors", "tokenizer.json", "config.json"):
        os.symlink(os.path.join(model_dir(), f), missing / f)
    wait_vectors(s, topic_name, 1, timeout=WAIT_S * 3)
    assert stats(s, topic_name)["error"] is None
    assert vsearch(s, topic_name, {"query": "hot water for tea", "k": 1})["results"][0]["key"] == "k"


def test_query_fans_out_across_topics_and_backends(server, topic_name):
    both = topic_name + "-both"
    only_vec = topic_name + "-vec"
    vector_topic(server, both, partitions=1)
    create_topic(server, only_vec, partitions=1, config={"vector.enabled": "true", "vector.field": "$.text"})
    produce_all(server, both, [(f"b{i}".encode(), json.dumps({"text": t}).encode(), 0)
                               for i, t in enumerate(FIXTURE["clusters"]["database"])])
    produce_all(server, only_vec, [(f"v{i}".encode(), json.dumps({"text": t}).encode(), 0)
                                   for i, t in enumerate(FIXTURE["clusters"]["weather"] + FIXTURE["clusters"]["database"][:3])])
    wait_vectors(server, both, 15)
    wait_vectors(server, only_vec, 18)
    wait_until(lambda: http(server, "POST", f"/{both}/_count", {})[1].get("count") == 15, what="search index")
    status, out = http(server, "POST", "/_query", {
        "query": "postgres connections", "topics": [both, only_vec], "backends": ["search", "vector", "sql"], "k": 20})
    assert status == 200, out
    report = {(b["topic"], b["backend"]): b for b in out["backends"]}
    assert report[(both, "search")]["status"] == "ok" and report[(both, "vector")]["status"] == "ok"
    assert report[(only_vec, "vector")]["status"] == "ok"
    # A backend a topic does not have, and SQL (not in this build), are reported, not fatal.
    assert report[(only_vec, "search")]["status"] == "error" and "searchable" in report[(only_vec, "search")]["error"]
    assert all(report[(t, "sql")]["status"] == "error" for t in (both, only_vec))
    results = out["results"]
    assert len(results) == 20
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    top = results[0]
    assert top["topic"] == both and set(top["ranks"]) == {"search", "vector"}
    assert "postgres" in top["source"]["text"]
    assert {r["topic"] for r in results} == {both, only_vec}
    # RRF is rank-based per list: each list's best hits lead, and they are database sentences.
    db = set(FIXTURE["clusters"]["database"])
    assert all(r["source"]["text"] in db for r in results[:3]), results[:3]
    for body, want in [({"query": "x", "topics": ["nope-" + topic_name]}, 404),
                       ({"query": "x", "topics": [both], "backends": ["graph"]}, 400),
                       ({"query": "x"}, 400), ({"topics": [both]}, 400),
                       ({"query": "x", "topics": [both], "k": 0}, 400)]:
        status, out = http(server, "POST", "/_query", body)
        assert status == want, (body, status, out)
