"""Bytes no client should send: a corrupt batch is refused with CORRUPT_MESSAGE and stores
nothing; oversized, truncated and random frames cost the sender its connection and nobody else
anything."""

import os
import random
import struct

from kafka_wire import WireClient, corrupt_payload, record_batch, request_frame
from clients import create_topic, watermarks

CORRUPT_MESSAGE = 2
MAX_REQUEST_BYTES = 100 << 20  # CHRONIK_MAX_REQUEST_BYTES default


def assert_serves_a_fresh_client(server):
    assert server.alive(), "chronik-server exited\n" + server.log_tail()
    with WireClient(server.port) as c:
        error_code, apis = c.api_versions()
    assert error_code == 0 and 0 in apis, (error_code, apis)


def test_hand_built_batch_with_correct_crc_is_stored(server, topic_name):
    create_topic(server, topic_name)
    with WireClient(server.port) as c:
        error_code, base_offset = c.produce_v3(topic_name, 0, record_batch([(b"k", b"v1"), (None, b"v2")]))

    assert (error_code, base_offset) == (0, 0)
    assert watermarks(server, topic_name, 0) == (0, 2)


def test_batch_with_wrong_crc_is_refused_with_corrupt_message_and_not_stored(server, topic_name):
    create_topic(server, topic_name)
    with WireClient(server.port) as c:
        assert c.produce_v3(topic_name, 0, record_batch([(b"a", b"first")]))[0] == 0
        before = watermarks(server, topic_name, 0)

        error_code, base_offset = c.produce_v3(
            topic_name, 0, corrupt_payload(record_batch([(b"a", b"second"), (b"b", b"third")]))
        )

        assert error_code == CORRUPT_MESSAGE, f"error code {error_code}, expected CORRUPT_MESSAGE (2)"
        assert base_offset == -1
        assert watermarks(server, topic_name, 0) == before == (0, 1)
        # The connection stays usable: the error is per partition, not per connection.
        assert c.produce_v3(topic_name, 0, record_batch([(b"c", b"fourth")])) == (0, 1)


def test_batch_with_wrong_crc_field_is_refused(server, topic_name):
    create_topic(server, topic_name)
    batch = bytearray(record_batch([(b"k", b"v")]))
    batch[17] ^= 0x01  # the stored CRC itself

    with WireClient(server.port) as c:
        error_code, _ = c.produce_v3(topic_name, 0, bytes(batch))

    assert error_code == CORRUPT_MESSAGE
    assert watermarks(server, topic_name, 0) == (0, 0)


def test_oversized_frame_closes_only_that_connection(server):
    with WireClient(server.port) as bystander, WireClient(server.port) as offender:
        assert bystander.api_versions()[0] == 0
        offender.send_raw(struct.pack(">i", MAX_REQUEST_BYTES + 1) + b"\x00\x12\x00\x00" * 16)

        assert offender.is_closed_by_peer(), "a frame over the size limit must close the connection"
        assert bystander.api_versions()[0] == 0, "other connections keep working"
    assert_serves_a_fresh_client(server)


def test_negative_frame_length_closes_the_connection(server):
    with WireClient(server.port) as c:
        c.send_raw(struct.pack(">i", -5) + b"junk")
        assert c.is_closed_by_peer()
    assert_serves_a_fresh_client(server)


def test_truncated_frame_does_not_crash_the_server(server):
    frame = request_frame(18, 0, 1, b"")
    with WireClient(server.port) as c:
        c.send_raw(struct.pack(">i", 1000) + frame[4:])  # promises 1000 bytes, sends a dozen
    with WireClient(server.port) as c:
        c.send_raw(frame[:7])  # stops inside the header
    assert_serves_a_fresh_client(server)


def test_well_framed_garbage_closes_the_connection_without_crashing(server):
    with WireClient(server.port) as c:
        # Produce v3 header followed by a body that does not decode.
        c.send_raw(request_frame(0, 3, 1, b"\xff" * 10))
        assert c.is_closed_by_peer()
    with WireClient(server.port) as c:
        c.send_raw(request_frame(4242, 0, 1, b""))  # no such API key
        assert c.is_closed_by_peer()
    assert_serves_a_fresh_client(server)


def test_random_bytes_do_not_crash_the_server(server):
    rng = random.Random(20240601)
    for _ in range(20):
        with WireClient(server.port) as c:
            size = rng.randrange(1, 4096)
            try:
                c.send_raw(bytes(rng.randrange(256) for _ in range(size)))
            except (BrokenPipeError, ConnectionResetError):
                pass
        # Random bytes after a valid size prefix, too.
        with WireClient(server.port) as c:
            body = os.urandom(rng.randrange(1, 512))
            try:
                c.send_raw(struct.pack(">i", len(body)) + body)
            except (BrokenPipeError, ConnectionResetError):
                pass
    assert_serves_a_fresh_client(server)


INVALID_RECORD = 87
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REQUIRED_ACKS = 21


def test_a_corrupt_batch_after_a_good_one_rejects_the_whole_partition_write(server, topic_name):
    create_topic(server, topic_name)
    good = record_batch([(b"k", b"good")])
    bad = corrupt_payload(record_batch([(b"k", b"bad")]))

    with WireClient(server.port) as c:
        error_code, _ = c.produce_v3(topic_name, 0, good + bad)

    assert error_code == CORRUPT_MESSAGE
    assert watermarks(server, topic_name, 0) == (0, 0), "a rejected record set is stored not at all"


def test_batch_whose_record_count_lies_is_refused_and_not_stored(server, topic_name):
    create_topic(server, topic_name)
    lying = record_batch([(b"a", b"1"), (b"b", b"2")], claimed_count=3)

    with WireClient(server.port) as c:
        error_code, _ = c.produce_v3(topic_name, 0, lying)

    assert error_code in (CORRUPT_MESSAGE, INVALID_RECORD), f"error code {error_code}"
    assert watermarks(server, topic_name, 0) == (0, 0)


def test_broker_assigns_offsets_whatever_base_offset_the_client_sends(server, topic_name):
    create_topic(server, topic_name)
    with WireClient(server.port) as c:
        assert c.produce_v3(topic_name, 0, record_batch([(b"a", b"1")], base_offset=1000)) == (0, 0)
        assert c.produce_v3(topic_name, 0, record_batch([(b"b", b"2"), (b"c", b"3")], base_offset=-7)) == (0, 1)

    assert watermarks(server, topic_name, 0) == (0, 3)


def test_produce_to_a_missing_partition_or_with_bad_acks_is_refused(server, topic_name):
    create_topic(server, topic_name, partitions=2)
    batch = record_batch([(b"k", b"v")])

    with WireClient(server.port) as c:
        assert c.produce_v3(topic_name, 2, batch)[0] == UNKNOWN_TOPIC_OR_PARTITION
        assert c.produce_v3(topic_name, -1, batch)[0] == UNKNOWN_TOPIC_OR_PARTITION
        assert c.produce_v3(topic_name, 0, batch, acks=2)[0] == INVALID_REQUIRED_ACKS

    assert watermarks(server, topic_name, 0) == (0, 0)


def test_pipelined_requests_are_answered_in_order_and_acks_0_gets_no_answer(server, topic_name):
    from kafka_wire import produce_v3_body

    create_topic(server, topic_name)
    with WireClient(server.port) as c:
        c.send_raw(
            request_frame(18, 0, 101, b"")
            + request_frame(0, 3, 102, produce_v3_body(topic_name, 0, record_batch([(None, b"a")]), acks=0))
            + request_frame(0, 3, 103, produce_v3_body(topic_name, 0, record_batch([(None, b"b")])))
            + request_frame(18, 0, 104, b"")
        )
        answered = [c.read_response()[0] for _ in range(3)]

    assert answered == [101, 103, 104]
    assert watermarks(server, topic_name, 0) == (0, 2)
