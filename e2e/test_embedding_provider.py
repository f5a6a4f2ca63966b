"""The openai embedding provider against a real OpenAI-compatible server: a second
chronik-server's POST /v1/embeddings. A broker configured with CHRONIK_EMBEDDING_PROVIDER=openai
indexes and answers vector queries through it; while the endpoint is down, produce is still
acknowledged, the topic reports the error, and once the endpoint is back every acknowledged event
becomes searchable (nothing lost). A topic on a local-model broker can choose the provider
itself with vector.embedding.*."""

import json
import math
import os

import pytest
from confluent_kafka.admin import NewTopic

from clients import WAIT_S, admin, produce_all, wait_until
from conftest import ChronikServer
from test_search import http
from test_vector import FIXTURE, model_dir, produce_fixture, stats, vector_topic, vsearch, wait_vectors

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(model_dir(), "model.safetensors")),
    reason="the local embedding model is not installed (make model)",
)

MODEL = "all-MiniLM-L6-v2"


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def embed(server, text):
    status, out = http(server, "POST", "/v1/embeddings", {"input": text, "model": MODEL})
    assert status == 200, (status, out)
    return out["data"][0]["embedding"]


def mean_precision(server, topic):
    precisions = []
    for label, queries in FIXTURE["queries"].items():
        for q in queries:
            results = vsearch(server, topic, {"query": q, "k": 10})["results"]
            precisions.append([r["source"]["label"] for r in results].count(label) / 10)
    return sum(precisions) / len(precisions)


@pytest.fixture
def provider_and_broker():
    """An embedding server (not started) and a broker that embeds through it."""
    provider = ChronikServer("embedder")
    broker = ChronikServer(
        "openai-broker",
        CHRONIK_EMBEDDING_PROVIDER="openai",
        CHRONIK_EMBEDDING_ENDPOINT=f"http://127.0.0.1:{provider.http_port}/v1",
        CHRONIK_EMBEDDING_MODEL=MODEL,
        OPENAI_API_KEY="sk-e2e-not-checked",
        # Keep the unit's retry budget short of the test's patience.
        CHRONIK_EMBEDDING_TIMEOUT_MS="5000",
    )
    yield provider, broker
    broker.cleanup()
    provider.cleanup()


def test_openai_provider_indexes_through_another_server_and_loses_nothing_while_it_is_down(
    provider_and_broker, topic_name
):
    provider, broker = provider_and_broker
    broker.start()
    vector_topic(broker, topic_name)
    # The endpoint is not up: every event is still acknowledged...
    n = produce_fixture(broker, topic_name)
    # ...and the topic says why it is not searchable, naming the endpoint.
    where = f"127.0.0.1:{provider.http_port}"
    wait_until(
        lambda: where in (stats(broker, topic_name).get("error") or ""),
        what="the unreachable endpoint reported in the topic's stats",
    )
    status, out = http(broker, "POST", f"/_vector/{topic_name}/search", {"query": "rain", "k": 3})
    assert status == 503 and where in json.dumps(out), (status, out)

    provider.start()
    wait_vectors(broker, topic_name, n, timeout=WAIT_S * 6)
    s = stats(broker, topic_name)
    assert (s["model"], s["dimensions"], s["total_vectors"], s["error"]) == (MODEL, 384, n, None), s
    # Query texts are embedded by the same endpoint: meaning is found as with the local model.
    assert mean_precision(broker, topic_name) >= 0.9
    # The broker's own /v1/embeddings answers with the endpoint's model.
    assert cosine(embed(broker, "snow storm in the hills"), embed(provider, "snow storm in the hills")) > 0.9999

    # The endpoint dies (SIGKILL) while events keep coming: acknowledged all the same.
    rain = embed(provider, "rainy weather")
    provider.kill()
    later = [
        (f"late-{i}".encode(), json.dumps({"text": f"the espresso machine leaks water, ticket {i}", "label": "late"}).encode(), i % 2)
        for i in range(10)
    ]
    produce_all(broker, topic_name, later)
    # Raw-vector queries need no embedding and keep working meanwhile; text queries cannot.
    assert len(vsearch(broker, topic_name, {"vector": rain, "k": 5})["results"]) == 5
    status, out = http(broker, "POST", f"/_vector/{topic_name}/search", {"query": "rain", "k": 3})
    assert status == 503 and where in json.dumps(out), (status, out)
    # The broker itself crashes and comes back while the endpoint is still down: its indexes
    # open from their checkpoints (the vector length is the stored one) and raw-vector queries
    # answer. Checkpoints are periodic: wait until the first events are behind one.
    wait_until(
        lambda: sum(p["durable_offset"] for p in stats(broker, topic_name)["partitions"]) >= n,
        timeout=WAIT_S,
        what="the indexed events checkpointed",
    )
    broker.restart(kill=True)
    def raw_hits():
        status, out = http(broker, "POST", f"/_vector/{topic_name}/search", {"vector": rain, "k": 5})
        return status == 200 and len(out["results"]) == 5

    wait_until(raw_hits, what="raw-vector answers from the reopened index while the endpoint is down")
    provider.start()
    wait_vectors(broker, topic_name, n + len(later), timeout=WAIT_S * 6)
    hits = vsearch(broker, topic_name, {"query": "coffee maker dripping", "k": 10})["results"]
    assert sum(h["source"]["label"] == "late" for h in hits) >= 8, hits


def test_a_topic_chooses_its_provider_with_vector_embedding_settings(start_server, topic_name):
    server = start_server(name="local-default")
    # This broker serves the local model at /v1/embeddings; a topic can use it as a remote
    # OpenAI-compatible endpoint, which exercises the per-topic override end to end.
    vector_topic(
        server,
        topic_name,
        **{
            "vector.embedding.provider": "openai",
            "vector.embedding.endpoint": f"http://127.0.0.1:{server.http_port}/v1/embeddings",
            "vector.embedding.model": MODEL,
        },
    )
    n = produce_fixture(server, topic_name)
    wait_vectors(server, topic_name, n)
    assert stats(server, topic_name)["model"] == MODEL
    assert mean_precision(server, topic_name) >= 0.9

    # A model the local provider does not have: refused per topic, with the reason.
    other = topic_name + "-bge"
    vector_topic(server, other, partitions=1, **{"vector.embedding.provider": "local", "vector.embedding.model": "bge-large"})
    wait_until(
        lambda: "not the local provider's model" in (stats(server, other).get("error") or ""),
        what="the unsupported model reported",
    )

    # Settings that cannot be valid are refused when the topic is created.
    for key, value in [("vector.embedding.endpoint", "ftp://models"), ("vector.embedding.provider", "magic")]:
        fut = admin(server).create_topics(
            [NewTopic(topic_name + "-bad", num_partitions=1, replication_factor=1, config={key: value})],
            operation_timeout=10,
        )[topic_name + "-bad"]
        with pytest.raises(Exception) as err:
            fut.result(timeout=WAIT_S)
        assert key in str(err.value), err.value
