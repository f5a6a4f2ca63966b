"""SQL over a columnar topic against DuckDB on the same Parquet files (`make bench-sql`).

Starts a release chronik-server with a fresh data dir, then:

1. produces the same 1 KB JSON records (chronik-bench `--payload json`) into a plain topic and
   into a `columnar.enabled=true` topic, one after the other, and compares produce throughput
   (indexing tails the log after the write, so what it costs shows as CPU taken from produce);
2. produces `--rows` JSON records of `--row-size` bytes into a columnar topic of 6 partitions,
   waits until SQL counts all of them and every row is sealed into Parquet (the server runs with
   a short seal age, so the whole table is cold), and reports bytes on disk per row beside the
   raw JSON size;
3. times `SELECT city, COUNT(*), AVG(amount) FROM t GROUP BY city ORDER BY city` through
   `POST /_sql` and through DuckDB (PyPI `duckdb`, one process, its default threads) over the
   topic's own Parquet files, `--repeat` times each after one warm-up, checks that both return
   the same groups, counts and averages, and prints the medians.

Every run verifies what it measured: chronik-bench reads back what was acknowledged, and the
SQL count must equal the produced rows.
"""

import argparse
import glob
import os
import statistics
import sys
import time

import duckdb

from local_server import LocalServer, produce_cost_table, wait

QUERY = "SELECT city, COUNT(*) AS n, AVG(amount) AS avg_amount FROM {table} GROUP BY city ORDER BY city"


def sql(server, query):
    status, out = server.http("POST", "/_sql", {"query": query, "limit": 100000, "timeout_ms": 600000})
    if status != 200:
        raise RuntimeError(f"/_sql {status}: {out}")
    return out


def countable(server, topic):
    """Rows SQL counts in `topic` (0 until its table exists; tables name dashes `_`)."""
    table = topic.replace("-", "_").replace(".", "_")
    status, out = server.http("POST", "/_sql", {"query": f"SELECT COUNT(*) FROM {table}"})
    if status == 404:
        return 0
    if status != 200:
        raise RuntimeError(f"/_sql {status}: {out}")
    return out["rows"][0][0]


def timed(fn, repeat):
    fn()  # warm-up: file metadata and page cache, for both engines alike
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=os.environ.get("CHRONIK_SERVER_BIN"))
    ap.add_argument("--bench", default=os.environ.get("CHRONIK_BENCH_BIN"))
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--row-size", type=int, default=128, help="JSON bytes per row (at least 128)")
    ap.add_argument("--throughput-count", type=int, default=200_000, help="1 KB records per produce case")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    args = ap.parse_args()

    # Everything ends up in Parquet a few seconds after the last record, so DuckDB reads the
    # whole table; sealing by row count (the default 1M) happens during the load as usual.
    with LocalServer(args.server, args.bench, keep=args.keep, CHRONIK_SQL_SEAL_AGE_MS=3000) as server:
        lines = [f"bench-sql: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, "
                 f"{os.cpu_count()} CPUs, server {args.server}", ""]
        lines += produce_cost_table(
            server, args.throughput_count, "columnar.enabled=true", "SQL indexing",
            indexed=lambda topic: countable(server, topic))

        loaded_at = time.monotonic()
        load = server.produce("sqlbench", args.rows, args.row_size, ["columnar.enabled=true"])
        wait(lambda: sql(server, "SELECT COUNT(*) FROM sqlbench")["rows"][0][0] == args.rows,
             1800, f"SQL to count {args.rows} rows")
        queryable_after = time.monotonic() - loaded_at
        wait(lambda: sql(server, "SELECT COUNT(*) FROM sqlbench_hot")["rows"][0][0] == 0,
             600, "every row sealed into Parquet")
        files = sorted(glob.glob(os.path.join(server.data_dir, "**", "*.parquet"), recursive=True))
        files = [f for f in files if "sqlbench" in f]
        if not files:
            sys.exit(f"bench-sql: no Parquet files of sqlbench under {server.data_dir}")
        parquet_bytes = sum(os.path.getsize(f) for f in files)
        lines.append("")
        lines.append(f"load: {args.rows:,} rows of {args.row_size} B JSON produced at "
                     f"{load['msgs_per_sec']:,.0f} msg/s; all countable by SQL {queryable_after:.1f} s "
                     f"after the first send; {len(files)} Parquet files, {parquet_bytes / 1e6:,.1f} MB, "
                     f"{parquet_bytes / args.rows:.1f} bytes per row on disk vs {args.row_size} B of raw JSON "
                     f"({parquet_bytes / args.rows / args.row_size:.2f}x)")

        ours = lambda: sql(server, QUERY.format(table="sqlbench"))  # noqa: E731
        ours_median, ours_best, ours_out = timed(ours, args.repeat)
        con = duckdb.connect()
        file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        theirs = lambda: con.execute(QUERY.format(table=f"read_parquet({file_list})")).fetchall()  # noqa: E731
        duck_median, duck_best, duck_out = timed(theirs, args.repeat)

        got = [(r[0], int(r[1]), float(r[2])) for r in ours_out["rows"]]
        want = [(r[0], int(r[1]), float(r[2])) for r in duck_out]
        same = len(got) == len(want) and all(
            a[0] == b[0] and a[1] == b[1] and abs(a[2] - b[2]) <= 1e-9 * max(1.0, abs(b[2]))
            for a, b in zip(got, want)
        )
        if sum(r[1] for r in got) != args.rows:
            same = False
        lines.append("")
        lines.append(f"`{QUERY.format(table='<table>')}` over {args.rows:,} rows, median of "
                     f"{args.repeat} after a warm-up:")
        lines.append("")
        lines.append("| engine | median s | best s | groups | same answer |")
        lines.append("|---|---|---|---|---|")
        lines.append(f"| Chronik `POST /_sql` (table `sqlbench`) | {ours_median:.3f} | {ours_best:.3f} | {len(got)} | {'yes' if same else 'NO'} |")
        lines.append(f"| DuckDB {duckdb.__version__} over the same Parquet files | {duck_median:.3f} | {duck_best:.3f} | {len(want)} | {'yes' if same else 'NO'} |")
        lines.append(f"\nChronik / DuckDB time: {ours_median / duck_median:.2f}x")
        print("\n".join(lines))
        if not same:
            print(f"bench-sql: answers differ\nours: {got}\nduckdb: {want}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
