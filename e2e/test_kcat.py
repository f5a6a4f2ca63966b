"""kcat (librdkafka 2.0.2, the oldest librdkafka we serve) produces and consumes through the
broker and lists its topics."""

import subprocess

import pytest

from clients import create_topic

KCAT_TIMEOUT_S = 30


def kcat(server, *args, stdin=None):
    result = subprocess.run(
        ["kcat", "-b", server.bootstrap, "-X", "enable.idempotence=false", *args],
        input=stdin,
        capture_output=True,
        timeout=KCAT_TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"kcat {' '.join(args)} exited {result.returncode}\nstderr: {result.stderr.decode()}"
    )
    return result.stdout.decode()


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_produces_keyed_records_and_consumes_them_back_in_order(server, topic_name, codec):
    create_topic(server, topic_name, partitions=1)
    lines = [f"key-{i}:value {i} with spaces" for i in range(50)]

    kcat(
        server, "-P", "-t", topic_name, "-p", "0", "-K", ":", "-z", codec,
        stdin="\n".join(lines).encode() + b"\n",
    )
    out = kcat(
        server, "-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-e", "-f", "%o|%k|%s\n"
    )

    got = out.splitlines()
    expected = [f"{i}|key-{i}|value {i} with spaces" for i in range(50)]
    assert got == expected


def test_kcat_metadata_listing_shows_the_topic_and_its_partitions(server, topic_name):
    create_topic(server, topic_name, partitions=3)

    out = kcat(server, "-L", "-t", topic_name)

    assert f'topic "{topic_name}" with 3 partitions' in out, out
    for p in range(3):
        assert f"partition {p}, leader 1" in out, out
