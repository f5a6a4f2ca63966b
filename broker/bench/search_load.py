"""Full-text search under load (`make bench-search`).

Starts a release chronik-server with a fresh data dir, then:

1. produces the same 1 KB JSON records (chronik-bench `--payload json`) into a plain topic and
   into a `searchable.enabled=true` topic, one after the other, and compares produce throughput;
2. produces `--docs` JSON records of 256 B into a searchable topic of 6 partitions and reports
   indexing throughput: documents over the time from the first send until `_count` sees all;
3. runs `hey` (Debian package) against `POST /{topic}/_search` with a broad match query (one
   common word) and a selective one (a city and that word) at 1, 10 and 100 concurrent clients
   for `--duration` seconds each, and reports latency p50/p99 and requests per second. Before
   the load, each query must answer 200 with the match count `_count` gives, else the run
   fails; under load every answer must be a 200.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from local_server import LocalServer, produce_cost_table, wait

TOPIC = "searchbench"
QUERY = {"query": {"match": {"text": "refund"}}, "size": 10}
# Selective: one city of the sixteen and one word of the texts, about 3% of the documents.
SELECTIVE = {"query": {"bool": {"must": [{"match": {"city": "Tallinn"}}, {"match": {"text": "refund"}}]}},
             "size": 10}


def searchable(server, topic):
    """Documents `_count` sees in `topic` (0 until its index exists)."""
    status, out = server.http("POST", f"/{topic}/_count", {})
    if status == 404:
        return 0
    if status != 200:
        raise RuntimeError(f"_count {status}: {out}")
    return out["count"]


def hey(url, body_path, concurrency, duration):
    out = subprocess.run(
        ["hey", "-z", f"{duration}s", "-c", str(concurrency), "-m", "POST",
         "-T", "application/json", "-D", body_path, url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {int(p): float(s) * 1000 for p, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = re.search(r"Error distribution:(.*)", out, re.S)
    return rps, pct, codes, errors.group(1).strip() if errors else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=os.environ.get("CHRONIK_SERVER_BIN"))
    ap.add_argument("--bench", default=os.environ.get("CHRONIK_BENCH_BIN"))
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--doc-size", type=int, default=256)
    ap.add_argument("--throughput-count", type=int, default=200_000, help="1 KB records per produce case")
    ap.add_argument("--duration", type=int, default=15, help="seconds of load per concurrency")
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    args = ap.parse_args()
    if not shutil.which("hey"):
        sys.exit("bench-search: `hey` is not installed (apt-get install hey)")

    with LocalServer(args.server, args.bench, keep=args.keep) as server:
        lines = [f"bench-search: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, "
                 f"{os.cpu_count()} CPUs, server {args.server}", ""]
        lines += produce_cost_table(server, args.throughput_count, "searchable.enabled=true",
                                    "search indexing", indexed=lambda topic: searchable(server, topic))

        started = time.monotonic()
        load = server.produce(TOPIC, args.docs, args.doc_size, ["searchable.enabled=true"])

        def count(query=None):
            status, out = server.http("POST", f"/{TOPIC}/_count", {"query": query} if query else {})
            if status != 200:
                raise RuntimeError(f"_count {status}: {out}")
            return out["count"]

        wait(lambda: count() == args.docs, 3600, f"_count to reach {args.docs}", prefix="bench-search")
        indexed_after = time.monotonic() - started
        lines.append("")
        lines.append(f"load: {args.docs:,} documents of {args.doc_size} B JSON produced at "
                     f"{load['msgs_per_sec']:,.0f} msg/s; all searchable {indexed_after:.1f} s after the "
                     f"first send: {args.docs / indexed_after:,.0f} documents/s indexed")

        matches = {}
        for name, query in (("broad", QUERY), ("selective", SELECTIVE)):
            matches[name] = count(query["query"])
            status, first = server.http("POST", f"/{TOPIC}/_search", query)
            if status != 200 or first["hits"]["total"]["value"] != matches[name] or len(first["hits"]["hits"]) != 10:
                sys.exit(f"bench-search: the {name} query answers {status} {str(first)[:500]}, "
                         f"_count says {matches[name]}")
        lines.append("")
        lines.append(f"`POST /{TOPIC}/_search`, BM25 top 10, `hey -z {args.duration}s -c N`; broad: a match "
                     f"query for one word of the texts ({matches['broad']:,} of {args.docs:,} documents "
                     f"match); selective: a bool of two matches, one city and that word "
                     f"({matches['selective']:,} match):")
        lines.append("")
        lines.append("| query | hits.total | clients | requests/s | p50 ms | p90 ms | p99 ms | non-200 |")
        lines.append("|---|---|---|---|---|---|---|---|")
        failed = False
        # Exact totals visit every match; without them the top 10 can skip blocks that cannot
        # make it (Tantivy's block-max WAND), which is Elasticsearch's default past 10,000.
        cases = (("broad", "exact (default)", QUERY),
                 ("broad", "`track_total_hits: false`", {**QUERY, "track_total_hits": False}),
                 ("selective", "exact (default)", SELECTIVE))
        for name, label, query in cases:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(query, f)
                body = f.name
            try:
                for clients in (1, 10, 100):
                    rps, pct, codes, errors = hey(f"http://127.0.0.1:{server.http_port}/{TOPIC}/_search",
                                                  body, clients, args.duration)
                    bad = sum(n for c, n in codes.items() if c != 200)
                    if bad or errors or not codes:
                        failed = True
                    lines.append(f"| {name} | {label} | {clients} | {rps:,.1f} | {pct.get(50, float('nan')):.2f} | "
                                 f"{pct.get(90, float('nan')):.2f} | {pct.get(99, float('nan')):.2f} | "
                                 f"{bad}{' ' + errors[:200] if errors else ''} |")
            finally:
                os.unlink(body)
        print("\n".join(lines))
        if failed:
            sys.exit("bench-search: some requests failed")


if __name__ == "__main__":
    main()
