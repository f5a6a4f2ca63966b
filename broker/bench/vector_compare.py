"""Our HNSW index against hnswlib on the same vectors, in the same run (`make bench-vector`).

Writes the vectors, the queries and their exact top-10 (numpy, cosine) to files, runs the
chronik-vector `hnsw_recall --files` example and hnswlib (PyPI) over them with the same graph
shape (M=16, ef_construction=200, cosine; builds on every core, queries one at a time on one
thread) and an ef sweep, and prints one markdown table: build time, memory added by the index,
and recall@10, latency p50/p99 and QPS per ef, plus the QPS of each at the smallest ef reaching
recall@10 >= 0.95.

Data sets: `random` (uniform on the sphere: no structure, the hardest case for any graph index),
`clustered` (a Gaussian mixture of 1000 centres, closer to how sentence embeddings sit) and
`embedded` (real sentence embeddings: distinct sentences of Debian's English package
descriptions, embedded by our local model through the chronik-vector `embed_lines` example; the
queries are held-out sentences of the same corpus). The descriptions are downloaded once and the
vectors computed once (about ten minutes on two cores), both cached under --cache.
"""

import argparse
import hashlib
import json
import lzma
import re
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import hnswlib
import numpy as np

EFS = [16, 32, 64, 128, 256]
DEBIAN_DESCRIPTIONS = "http://deb.debian.org/debian/dists/bookworm/main/i18n/Translation-en.xz"


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dataset(kind, n, q, dims, rng):
    if kind == "random":
        return unit(rng.standard_normal((n, dims))), unit(rng.standard_normal((q, dims)))
    centres = unit(rng.standard_normal((1000, dims)))
    def draw(count):
        picks = rng.integers(0, len(centres), count)
        return unit(centres[picks] + rng.standard_normal((count, dims)) * (0.5 / np.sqrt(dims)))
    return draw(n), draw(q)


def description_sentences(cache):
    """Distinct sentences of 6 to 40 words from Debian's long package descriptions (about
    119,000 in bookworm), sorted so the set is the same on every run."""
    path = os.path.join(cache, "Translation-en.xz")
    if not os.path.exists(path):
        urllib.request.urlretrieve(DEBIAN_DESCRIPTIONS, path + ".partial")
        os.rename(path + ".partial", path)
    sentences = set()
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for record in f.read().split("\n\n"):
            # Continuation lines start with a space; " ." separates paragraphs.
            body = " ".join(l[1:] if l.strip() != "." else "" for l in record.split("\n") if l.startswith(" "))
            for sentence in re.split(r"(?<=[.!?])\s+", body):
                sentence = " ".join(sentence.split())
                if 6 <= len(sentence.split()) <= 40 and not sentence.startswith("*"):
                    sentences.add(sentence)
    return sorted(sentences)


def embedded_dataset(n, q, dims, cache, embed_example, model_dir):
    sentences = description_sentences(cache)
    # Its own generator: the same texts (and so the cached vectors) whichever data sets run first.
    rng = np.random.default_rng(7)
    if len(sentences) < n + q:
        sys.exit(f"only {len(sentences)} description sentences for {n} points and {q} queries")
    picked = [sentences[i] for i in rng.permutation(len(sentences))[:n + q]]
    text = "\n".join(picked) + "\n"
    key = hashlib.sha256((os.path.basename(os.path.normpath(model_dir)) + text).encode()).hexdigest()[:16]
    texts_path = os.path.join(cache, f"embedded-{key}.txt")
    vectors_path = os.path.join(cache, f"embedded-{key}.f32")
    if not os.path.exists(vectors_path):
        with open(texts_path, "w", encoding="utf-8") as f:
            f.write(text)
        subprocess.run([embed_example, model_dir, texts_path, vectors_path], check=True)
    vectors = np.fromfile(vectors_path, dtype="<f4").reshape(-1, dims)
    assert len(vectors) == n + q, f"{vectors_path}: {len(vectors)} rows, want {n + q}"
    return vectors[:n], vectors[n:]


def exact_top10(data, queries):
    out = np.empty((len(queries), 10), dtype=np.uint32)
    for start in range(0, len(queries), 100):
        scores = queries[start:start + 100] @ data.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        out[start:start + 100] = top
    return out


def hnswlib_child(paths, dims):
    """Runs in its own process (as the Rust example does), so the memory the index adds is
    measured from a baseline that already holds the vectors and nothing else of this script."""
    data = np.fromfile(paths[0], dtype="<f4").reshape(-1, dims)
    queries = np.fromfile(paths[1], dtype="<f4").reshape(-1, dims)
    truth = np.fromfile(paths[2], dtype="<u4").reshape(-1, 10)
    for row in run_hnswlib(data, queries, truth):
        print(json.dumps(row))


def run_hnswlib(data, queries, truth):
    before = rss_bytes()
    index = hnswlib.Index(space="cosine", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=16, ef_construction=200, random_seed=1)
    t = time.perf_counter()
    index.add_items(data, np.arange(len(data)), num_threads=os.cpu_count())
    build_s = time.perf_counter() - t
    memory = rss_bytes() - before
    rows = []
    index.set_num_threads(1)
    for ef in EFS:
        index.set_ef(ef)
        latencies, hits = [], 0
        began = time.perf_counter()
        for q, want in zip(queries, truth):
            t = time.perf_counter()
            labels, _ = index.knn_query(q, k=10)
            latencies.append((time.perf_counter() - t) * 1e3)
            hits += len(set(labels[0].tolist()) & set(want.tolist()))
        total = time.perf_counter() - began
        latencies.sort()
        rows.append({
            "index": "hnswlib", "points": len(data), "build_s": build_s, "memory_bytes": memory, "ef": ef,
            "recall": hits / (10 * len(queries)),
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[int((len(latencies) - 1) * 0.99)],
            "qps": len(queries) / total,
        })
    return rows


def run_child(command):
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def run_chronik(example, paths, dims):
    return run_child([example, "--files", *paths, str(dims), ",".join(map(str, EFS))])


def run_hnswlib_child(paths, dims):
    return run_child([sys.executable, os.path.abspath(__file__), "--hnswlib-child", *paths, "--dims", str(dims)])


def at_recall(rows, target=0.95):
    ok = [r for r in rows if r["recall"] >= target]
    return min(ok, key=lambda r: r["ef"]) if ok else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", help="the built hnsw_recall example")
    ap.add_argument("--hnswlib-child", nargs=3, metavar=("DATA", "QUERIES", "TRUTH"), help=argparse.SUPPRESS)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--datasets", default="clustered,random,embedded")
    ap.add_argument("--embed-example", help="the built embed_lines example (for `embedded`)")
    ap.add_argument("--model-dir", default=os.path.expanduser("~/.cache/chronik-models/all-minilm-l6-v2"))
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/chronik-bench"))
    args = ap.parse_args()
    if args.hnswlib_child:
        return hnswlib_child(args.hnswlib_child, args.dims)
    if not args.example:
        ap.error("--example is required")
    rng = np.random.default_rng(7)
    print(f"| data | index | build (s) | index memory (MB) | ef | recall@10 | p50 (ms) | p99 (ms) | QPS (1 thread) |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.datasets.split(","):
            if kind == "embedded":
                if not args.embed_example:
                    ap.error("--embed-example is required for the embedded data set")
                os.makedirs(args.cache, exist_ok=True)
                data, queries = embedded_dataset(args.points, args.queries, args.dims, args.cache,
                                                 args.embed_example, args.model_dir)
            else:
                data, queries = dataset(kind, args.points, args.queries, args.dims, rng)
            truth = exact_top10(data, queries)
            paths = [os.path.join(tmp, n) for n in ("data.f32", "queries.f32", "truth.u32")]
            data.astype("<f4").tofile(paths[0])
            queries.astype("<f4").tofile(paths[1])
            truth.astype("<u4").tofile(paths[2])
            for rows in (run_chronik(args.example, paths, args.dims), run_hnswlib_child(paths, args.dims)):
                for r in rows:
                    print(f"| {kind} | {r['index']} | {r['build_s']:.1f} | {r['memory_bytes'] / 1e6:.0f} | {r['ef']} | "
                          f"{r['recall']:.4f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['qps']:.0f} |")
                best = at_recall(rows)
                summary.append((kind, rows[0]["index"], best))
                sys.stdout.flush()
    print()
    print("| data | index | smallest ef with recall@10 >= 0.95 | recall@10 | QPS (1 thread) | p99 (ms) |")
    print("|---|---|---|---|---|---|")
    for kind, index, best in summary:
        if best is None:
            print(f"| {kind} | {index} | not reached (ef <= {EFS[-1]}) | | | |")
        else:
            print(f"| {kind} | {index} | {best['ef']} | {best['recall']:.4f} | {best['qps']:.0f} | {best['p99_ms']:.3f} |")


if __name__ == "__main__":
    main()
