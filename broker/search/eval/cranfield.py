"""Search quality end to end on the Cranfield collection (make eval-search).

Starts a chronik-server (CHRONIK_SERVER_BIN) on free ports with a fresh data directory,
creates a searchable topic, produces the 1,400 documents through Kafka (confluent-kafka), waits
until all are searchable, runs each judged query as a multi_match over title and text through
POST /_search, and prints NDCG@10 beside the reference BM25 figure from the collection's
README. The metric is the README's: graded gains, discount 1/log2(rank+1), ideal DCG from all
of a query's judged documents, averaged over queries with judgements.
"""

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from confluent_kafka import Producer

REFERENCE_BM25 = 0.3705
TOPIC = "cranfield"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    sys.exit(f"eval-search: timed out waiting for {what}")


def ndcg_at_10(ranked, gains):
    dcg = sum(gains.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(gains.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("CRANFIELD_DIR", "../shared/data/cranfield"))
    ap.add_argument("--server", default=os.environ.get("CHRONIK_SERVER_BIN"))
    ap.add_argument("--type", default="cross_fields", help="multi_match type")
    ap.add_argument("--fields", default="title^3,text")
    args = ap.parse_args()
    if not args.server or not os.access(args.server, os.X_OK):
        sys.exit("eval-search: set CHRONIK_SERVER_BIN to a built chronik-server")

    docs = [json.loads(l) for l in open(os.path.join(args.data, "docs.jsonl")) if l.strip()]
    queries = [json.loads(l) for l in open(os.path.join(args.data, "queries.jsonl")) if l.strip()]
    qrels = {}
    with open(os.path.join(args.data, "qrels.tsv")) as f:
        next(f)
        for line in f:
            q, d, g = line.split()
            qrels.setdefault(int(q), {})[int(d)] = float(g)

    data_dir = tempfile.mkdtemp(prefix="chronik-eval-search-")
    kafka, api = free_port(), free_port()
    while api == kafka:
        api = free_port()
    env = dict(os.environ)
    env.update(
        {
            "CHRONIK_DATA_DIR": os.path.join(data_dir, "data"),
            "CHRONIK_BIND_ADDR": "127.0.0.1",
            "CHRONIK_KAFKA_PORT": str(kafka),
            "CHRONIK_UNIFIED_API_PORT": str(api),
            "CHRONIK_CLUSTER_PORT": str(free_port()),
            "RUST_LOG": "warn",
        }
    )
    log = open(os.path.join(data_dir, "server.log"), "wb")
    proc = subprocess.Popen([args.server, "start"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait(lambda: http(api, "GET", "/ready")[0] == 200, 30, "the broker to be ready")
        status, out = http(
            api, "POST", "/topics",
            {"name": TOPIC, "partitions": 1, "replication_factor": 1, "config": {"searchable.enabled": "true"}},
        )
        if status not in (200, 201):
            sys.exit(f"eval-search: cannot create the topic: {status} {out}")
        p = Producer({"bootstrap.servers": f"127.0.0.1:{kafka}", "acks": "all", "linger.ms": 5})
        for d in docs:
            p.produce(TOPIC, key=str(d["doc_id"]).encode(), value=json.dumps(d).encode())
            p.poll(0)
        if p.flush(60) != 0:
            sys.exit("eval-search: not every document was acknowledged")
        del p  # close the client's connections before the broker stops
        wait(lambda: http(api, "POST", f"/{TOPIC}/_count", {})[1]["count"] == len(docs), 60, "every document to be searchable")

        fields = args.fields.split(",")
        scores, took = [], []
        for q in queries:
            gains = qrels.get(q["query_id"])
            if not gains:
                continue
            body = {
                "index": TOPIC,
                "size": 10,
                "_source": ["doc_id"],
                "query": {"multi_match": {"query": q["text"], "fields": fields, "type": args.type}},
            }
            status, out = http(api, "POST", "/_search", body)
            if status != 200:
                sys.exit(f"eval-search: query {q['query_id']} failed: {status} {out}")
            took.append(out["took"])
            ranked = [h["_source"]["doc_id"] for h in out["hits"]["hits"]]
            scores.append(ndcg_at_10(ranked, gains))
        ndcg = sum(scores) / len(scores)
        print(
            f"Cranfield NDCG@10 = {ndcg:.4f}  (reference BM25 {REFERENCE_BM25}; "
            f"{len(scores)} queries; multi_match {args.type} over {', '.join(fields)}; "
            f"{len(docs)} documents produced through Kafka, queried over HTTP; "
            f"median took {sorted(took)[len(took) // 2]} ms)"
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
