#!/usr/bin/env python3
"""Render suite.sh results (one JSON object per line) as markdown.

The generated section replaces whatever lies between the BEGIN/END markers of the output file;
text outside the markers is kept. The section is also printed on stdout. Only figures present in
the results file appear: nothing is estimated or filled in.
"""

import argparse
import json
import os
import platform
import re
import subprocess

BEGIN = "<!-- BEGIN GENERATED BENCHMARKS (broker/bench/suite.sh) -->"
END = "<!-- END GENERATED BENCHMARKS -->"

DEFAULT_INTRO = """# Benchmarks

Figures below are produced by `make bench` (`broker/bench/suite.sh`): it starts a release
`chronik-server` and, under the same load on the same machine, Tansu, then drives both with
`chronik-bench` (librdkafka through the rdkafka crate) and librdkafka's own
`rdkafka_performance`. Every produce run is verified: the high watermarks account for every
acknowledged record, and the records are read back and compared byte for byte.
"""

BROKERS = ("chronik", "tansu")


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "n/a"


def load(path):
    results = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                results[(row["broker"], row["case"])] = row
    return results


def fmt_rate(value):
    return f"{value:,.0f}" if value is not None else "–"


def fmt_ms(us):
    return f"{us / 1000:.2f}" if us is not None else "–"


def ratio(chronik, tansu, higher_is_better=True):
    if not chronik or not tansu:
        return "–"
    value = chronik / tansu if higher_is_better else tansu / chronik
    return f"{value:.2f}×"


def verified(row):
    if row is None:
        return "–"
    result = row["result"]
    verification = result.get("verification")
    if result.get("errors"):
        return f"**{result['errors']} errors**"
    if verification is None:
        return "n/a"
    if verification.get("ok"):
        how = ["read back"] if verification.get("readback") else []
        # Replicated acks=1 runs: the high watermark trails the last acknowledgement.
        if verification.get("waited_ms"):
            how.append(f"watermarks settled {verification['waited_ms'] / 1000:.1f} s after the run")
        return f"yes ({'; '.join(how)})" if how else "yes"
    readback = verification.get("readback") or {}
    if readback.get("missing") or readback.get("mismatched"):
        return (f"**FAILED**: {readback.get('missing', 0):,} of {readback['expected']:,} "
                f"acknowledged missing, {readback.get('mismatched', 0):,} wrong")
    return (f"**FAILED**: {verification.get('acknowledged', 0):,} acknowledged, "
            f"{verification.get('stored', 0):,} stored")


def get(results, broker, case, *path):
    row = results.get((broker, case))
    if row is None:
        return None
    value = row["result"]
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


def parse_dd(line):
    """'268435456 bytes (268 MB, 256 MiB) copied, 1.2 s, 223 MB/s' -> (seconds, rate text)."""
    match = re.search(r"copied, ([0-9.,]+) s, (.+)$", line or "")
    if not match:
        return None, line or "n/a"
    return float(match.group(1).replace(",", ".")), match.group(2)


def render(results, args):
    brokers = [b for b in BROKERS if any(k[0] == b for k in results)]
    out = []
    out.append(f"## Latest run ({args.started})")
    out.append("")
    out.append(f"Command: `{args.command}`. Machine: {sh('nproc')} CPUs "
               f"({platform.processor() or platform.machine()}), kernel {platform.release()}, "
               f"run started {args.started}.")
    out.append("")
    out.append("```")
    out.append("$ free -g")
    out.append(sh("free", "-g"))
    out.append("```")
    out.append("")
    peers = []
    if "chronik" in brokers:
        peers.append("Chronik: release `chronik-server`, single node, `CHRONIK_FLUSH=group` "
                     "(fsync before acknowledging), fresh data dir in the temp directory")
    if "tansu" in brokers:
        peers.append(f"Tansu: `{args.tansu_version}`, `--storage-engine memory://tansu/` "
                     "(in memory: it never touches the disk)")
    for p in peers:
        out.append(f"- {p}.")
    out.append(f"- Brokers run one after the other on loopback, each with a fresh state; topics "
               f"have 6 partitions; clients use linger.ms=5 and librdkafka defaults otherwise. "
               f"100 B cases send {args.small:,} messages, 1 KB cases {args.large:,}.")
    out.append("- MB/s counts payload bytes (10^6). Latency is send-to-acknowledgement, measured "
               "in the delivery callback; at unlimited rate it includes time queued in the "
               "client.")
    out.append("")

    cases = [
        ("produce-100B-acks1", "chronik-bench", "produce 100 B, acks=1"),
        ("produce-100B-acksall", "chronik-bench", "produce 100 B, acks=all"),
        ("produce-1KB-acks1", "chronik-bench", "produce 1 KB, acks=1"),
        ("produce-1KB-acksall", "chronik-bench", "produce 1 KB, acks=all"),
        ("produce-1KB-txn100", "chronik-bench",
         "produce 1 KB, 16 producers, transactions of 100 records, linger.ms=1"),
        ("consume-100B", "chronik-bench", "consume 100 B from the beginning"),
        ("consume-1KB", "chronik-bench", "consume 1 KB from the beginning"),
        ("consume-100B-qbackoff10", "chronik-bench",
         "consume 100 B, client fetch.queue.backoff.ms=10"),
        ("consume-1KB-qbackoff10", "chronik-bench",
         "consume 1 KB, client fetch.queue.backoff.ms=10"),
        ("rdkperf-100B-acks1", "rdkafka_performance", "produce 100 B, acks=1"),
        ("rdkperf-1KB-acksall", "rdkafka_performance", "produce 1 KB, acks=all"),
        ("rdkperf-consume-100B", "rdkafka_performance",
         "consume 100 B from the beginning (group consumer)"),
        ("rdkperf-consume-1KB", "rdkafka_performance",
         "consume 1 KB from the beginning (group consumer)"),
    ]
    out.append("### Throughput")
    out.append("")
    header = ["case", "tool"]
    for b in brokers:
        header += [f"{b.capitalize()} msg/s", f"{b.capitalize()} MB/s"]
    if len(brokers) == 2:
        header.append("Chronik / Tansu")
    for b in brokers:
        header += [f"{b.capitalize()} p50 / p99 ms"]
    for b in brokers:
        header.append(f"{b.capitalize()} verified")
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    for case, tool, label in cases:
        if not any((b, case) in results for b in brokers):
            continue
        row = [label, tool]
        for b in brokers:
            row += [fmt_rate(get(results, b, case, "msgs_per_sec")),
                    f"{get(results, b, case, 'mb_per_sec') or 0:.2f}"
                    if get(results, b, case, "mb_per_sec") is not None else "–"]
        if len(brokers) == 2:
            row.append(ratio(get(results, "chronik", case, "msgs_per_sec"),
                             get(results, "tansu", case, "msgs_per_sec")))
        for b in brokers:
            p50 = get(results, b, case, "produce_latency", "p50_us")
            p99 = get(results, b, case, "produce_latency", "p99_us")
            row.append(f"{fmt_ms(p50)} / {fmt_ms(p99)}" if p50 is not None else "–")
        for b in brokers:
            row.append(verified(results.get((b, case))))
        out.append("| " + " | ".join(row) + " |")
    out.append("")

    case = "rebalance-3x12"
    if any((b, case) in results for b in brokers):
        out.append("### Consumer group rebalance (3 members, 12 partitions, eager assignor)")
        out.append("")
        out.append("Join: the three members subscribe at once, until each holds partitions and "
                   "together they hold all 12 once (includes the broker's "
                   "group.initial.rebalance.delay.ms, 3 s by default in both). Leave: one "
                   "member closes, until the other two hold all 12.")
        out.append("")
        out.append("| broker | join ms | leave ms | ok |")
        out.append("|---|---|---|---|")
        rows = [(b.capitalize(), b, case) for b in brokers]
        rows.append(("Chronik, consumer protocol (KIP-848: broker-side assignment, no join "
                     "delay; 5 s heartbeat interval)", "chronik", case + "-consumer"))
        for label, b, c in rows:
            if (b, c) not in results and c != case:
                continue
            r = get(results, b, c, "rebalance") or {}
            join, leave = r.get("join_ms"), r.get("leave_ms")
            out.append(f"| {label} | {join:,.0f} | {leave:,.0f} | {verified(results.get((b, c)))} |"
                       if join is not None else f"| {label} | – | – | {verified(results.get((b, c)))} |")
        out.append("")
        txn = get(results, "chronik", "produce-1KB-txn100", "msgs_per_sec")
        plain = get(results, "chronik", "produce-1KB-acksall", "msgs_per_sec")
        if txn and plain:
            out.append(f"Chronik transactional produce (16 producers, 100 records per transaction) is "
                       f"{txn / plain * 100:.0f}% of acks=all produce in the same run.")
            out.append("")

    case = "latency-1KB-10k-acksall"
    if any((b, case) in results for b in brokers):
        out.append(f"### Produce latency at a fixed 10,000 msg/s "
                   f"(1 KB, acks=all, linger.ms=5, {args.latency_count:,} messages)")
        out.append("")
        out.append("| broker | achieved msg/s | p50 ms | p99 ms | p99.9 ms | max ms | verified |")
        out.append("|---|---|---|---|---|---|---|")
        for b in brokers:
            lat = lambda key: get(results, b, case, "produce_latency", key)  # noqa: E731
            out.append(f"| {b.capitalize()} | {fmt_rate(get(results, b, case, 'msgs_per_sec'))} "
                       f"| {fmt_ms(lat('p50_us'))} | {fmt_ms(lat('p99_us'))} "
                       f"| {fmt_ms(lat('p999_us'))} | {fmt_ms(lat('max_us'))} "
                       f"| {verified(results.get((b, case)))} |")
        if len(brokers) == 2:
            c = get(results, "chronik", case, "produce_latency", "p99_us")
            t = get(results, "tansu", case, "produce_latency", "p99_us")
            out.append("")
            out.append(f"p99 ratio (Tansu p99 / Chronik p99, above 1 means Chronik is faster): "
                       f"{ratio(c, t, higher_is_better=False)}")
        slow = get(results, "chronik", "latency-1KB-10k-slow-syncs", "slow_syncs")
        if slow is not None:
            out.append("")
            out.append(f"fsync rounds of 100 ms or more that Chronik reported during this case "
                       f"(`slow fsync round`, each delays every acks=all producer of the "
                       f"partition): {slow}")
        out.append("")

    fresh_cases = [
        ("freshness-search-half", "half of the plain JSON produce rate"),
        ("freshness-search-low", "a low fixed rate"),
    ]
    if any(("chronik", c) in results for c, _ in fresh_cases):
        plain = get(results, "chronik", "produce-json-256B-acks1", "msgs_per_sec")
        out.append("### Produce-to-queryable freshness (full-text search)")
        out.append("")
        out.append("JSON records of 256 B (`seq`, `sent_ns`, `city`, `amount`, `text`), acks=1, "
                   "6 partitions, into a topic with `searchable.enabled=true`. A poller asks "
                   "`POST /{topic}/_search` every 5 ms for each partition's highest visible "
                   "`_offset` (terms aggregation on `_partition`, max of `_offset`, restricted "
                   "to offsets not yet seen); a record's freshness is the answer that first "
                   "covers its offset minus its acknowledgement in the producer. Figures are "
                   "upper bounds with a resolution of one poll interval plus one poll round trip. "
                   f"The same records on a plain topic: {fmt_rate(plain)} msg/s "
                   f"({verified(results.get(('chronik', 'produce-json-256B-acks1')))}).")
        out.append("")
        out.append("| rate | achieved msg/s | records | freshness p50 ms | p99 ms | max ms "
                   "| not visible | polls (mean ms) | verified |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for case, label in fresh_cases:
            if ("chronik", case) not in results:
                continue
            f = lambda *k: get(results, "chronik", case, "freshness", *k)  # noqa: E731
            target = get(results, "chronik", case, "parameters", "rate")
            out.append(f"| {label} ({fmt_rate(target)} msg/s) "
                       f"| {fmt_rate(get(results, 'chronik', case, 'msgs_per_sec'))} "
                       f"| {fmt_rate(get(results, 'chronik', case, 'messages'))} "
                       f"| {fmt_ms(f('latency', 'p50_us'))} | {fmt_ms(f('latency', 'p99_us'))} "
                       f"| {fmt_ms(f('latency', 'max_us'))} | {fmt_rate(f('not_visible'))} "
                       f"| {fmt_rate(f('polls'))} ({f('mean_poll_ms') or 0:.2f}) "
                       f"| {verified(results.get(('chronik', case)))} |")
        out.append("")

    if any(k[0] == "cluster" for k in results):
        out.append("### Three-node cluster (RF=3, min.insync.replicas=2)")
        out.append("")
        out.append("Three release `chronik-server` processes on loopback (one Raft cluster, "
                   "`CHRONIK_FLUSH=group`, separate data dirs on the same disk), started after "
                   "the single-node runs above. The client bootstraps from all three; 6 "
                   f"partitions, 1 KB, {args.large:,} messages, linger.ms=5. The single-node row "
                   "is the `produce 1 KB, acks=1` run of the same suite.")
        out.append("")
        out.append("| case | msg/s | MB/s | p50 / p99 ms | vs single node acks=1 | verified |")
        out.append("|---|---|---|---|---|---|")
        single = get(results, "chronik", "produce-1KB-acks1", "msgs_per_sec")
        rows = [("chronik", "produce-1KB-acks1", "single node, acks=1"),
                ("cluster", "produce-1KB-rf3-acks1", "3 nodes RF=3, acks=1"),
                ("cluster", "produce-1KB-rf3-acksall", "3 nodes RF=3, acks=all")]
        for broker, case, label in rows:
            if (broker, case) not in results:
                continue
            rate = get(results, broker, case, "msgs_per_sec")
            mb = get(results, broker, case, "mb_per_sec")
            p50 = get(results, broker, case, "produce_latency", "p50_us")
            p99 = get(results, broker, case, "produce_latency", "p99_us")
            out.append(f"| {label} | {fmt_rate(rate)} | {mb or 0:.2f} "
                       f"| {fmt_ms(p50)} / {fmt_ms(p99)} | {ratio(rate, single)} "
                       f"| {verified(results.get((broker, case)))} |")
        out.append("")
        failover = get(results, "cluster", "failover-rf3", "failover")
        if failover is not None:
            lat = failover.get("latency") or {}
            rounds = failover.get("rounds") or []
            out.append(f"Leader failover, {len(rounds)} kills: each round SIGKILLs the leader of "
                       f"partition {failover['partition']} while a producer (acks=all, "
                       f"linger.ms=0) sends a probe record to it every "
                       f"{failover['probe_interval_ms']} ms; failover time is from the kill to the "
                       "acknowledgement of the first probe sent after it (a new leader accepting "
                       "writes with two in-sync replicas, as the client sees it, including its "
                       "metadata refresh). The killed node is restarted and back in every ISR "
                       "before the next round.")
            out.append("")
            out.append("| kills | p50 ms | p99 ms | max ms | each kill (ms) | rejoin p50 s "
                       "| verified |")
            out.append("|---|---|---|---|---|---|---|")
            each = ", ".join(f"{r['failover_ms']:.0f}" for r in rounds)
            rejoin = sorted(r["rejoin_ms"] for r in rounds)
            rejoin_p50 = f"{rejoin[len(rejoin) // 2] / 1000:.1f}" if rejoin else "–"
            out.append(f"| {len(rounds)} | {fmt_ms(lat.get('p50_us'))} "
                       f"| {fmt_ms(lat.get('p99_us'))} | {fmt_ms(lat.get('max_us'))} "
                       f"| {each} | {rejoin_p50} "
                       f"| {verified(results.get(('cluster', 'failover-rf3')))} |")
            out.append("")

    out.append("### Machine and idle footprint")
    out.append("")
    out.append("dd writes into the temp directory that holds Chronik's data dir.")
    out.append("")
    out.append("| figure | value |")
    out.append("|---|---|")
    direct = get(results, "host", "dd-direct-1M", "line")
    if direct is not None:
        _, rate = parse_dd(direct)
        out.append(f"| `dd if=/dev/zero bs=1M count=256 oflag=direct conv=fsync` | {rate} |")
    dsync = get(results, "host", "dd-dsync-64K", "line")
    if dsync is not None:
        secs, rate = parse_dd(dsync)
        per_sec = f", {2000 / secs:,.0f} writes/s" if secs else ""
        out.append(f"| `dd bs=64k count=2000 oflag=dsync` (64 KiB synchronous writes) "
                   f"| {rate}{per_sec} |")
    for b in brokers:
        rss = get(results, b, "idle-rss-100-partitions", "rss_mib")
        if rss is not None:
            out.append(f"| {b.capitalize()} idle RSS with a 100-partition topic | {rss} MiB |")
    out.append("")
    failures = [f"{b}/{c}" for (b, c), row in results.items()
                if (b in brokers or b == "cluster") and verified(row).startswith("**")]
    if failures:
        out.append("Runs with errors or failed verification: " + ", ".join(sorted(failures))
                   + ". Their throughput figures are not valid measurements.")
        out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--started", required=True)
    parser.add_argument("--small", type=int, required=True)
    parser.add_argument("--large", type=int, required=True)
    parser.add_argument("--latency-count", type=int, required=True)
    parser.add_argument("--command", default="make bench")
    parser.add_argument("--tansu-version", default="n/a")
    args = parser.parse_args()

    section = render(load(args.results), args)
    block = f"{BEGIN}\n{section}\n{END}"
    text = open(args.output).read() if os.path.exists(args.output) else DEFAULT_INTRO
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
