"""Just enough of the Kafka wire protocol, by hand, to send requests no well-behaved client would:
ApiVersions v0, Produce v3 with a hand-built v2 record batch (whose CRC we can break), and raw
frames. Kept independent of the client libraries on purpose: the broker must not trust them.
"""

import socket
import struct
import time

# --- CRC-32C (Castagnoli), table-driven, as the v2 record batch uses ------------------------------

_CRC32C_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC-32C check value"

# --- primitive encoders ---------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while True:
        if z & ~0x7F:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        else:
            out.append(z)
            return bytes(out)


def _string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _varbytes(b):
    if b is None:
        return _varint(-1)
    return _varint(len(b)) + b


# --- record batch v2 ------------------------------------------------------------------------------


def record_batch(records, base_timestamp_ms=None, base_offset=0, claimed_count=None):
    """A v2 record batch (uncompressed) of (key, value) pairs with a correct CRC. `claimed_count`
    makes the header lie about the number of records (the CRC still covers the lie)."""
    ts = int(time.time() * 1000) if base_timestamp_ms is None else base_timestamp_ms
    body = bytearray()
    for i, (key, value) in enumerate(records):
        rec = (
            b"\x00"  # attributes
            + _varint(0)  # timestamp delta
            + _varint(i)  # offset delta
            + _varbytes(key)
            + _varbytes(value)
            + _varint(0)  # headers
        )
        body += _varint(len(rec)) + rec
    after_crc = (
        struct.pack(
            ">hiqqqhii",
            0,
            len(records) - 1,
            ts,
            ts,
            -1,
            -1,
            -1,
            len(records) if claimed_count is None else claimed_count,
        )
        + bytes(body)
    )
    crc = crc32c(after_crc)
    # batchLength counts from partitionLeaderEpoch to the end.
    after_length = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", base_offset, len(after_length)) + after_length


CRC_OFFSET = 17  # baseOffset(8) + batchLength(4) + partitionLeaderEpoch(4) + magic(1)


def corrupt_payload(batch: bytes) -> bytes:
    """The same batch with one byte after the CRC flipped, so the stored CRC no longer matches."""
    b = bytearray(batch)
    b[-1] ^= 0xFF
    return bytes(b)


# --- requests -------------------------------------------------------------------------------------


def request_frame(api_key, api_version, correlation_id, body, client_id="chronik-e2e"):
    """A request with header v1 (non-flexible): size, key, version, correlation id, client id."""
    payload = struct.pack(">hhi", api_key, api_version, correlation_id) + _string(client_id) + body
    return struct.pack(">i", len(payload)) + payload


def produce_v3_body(topic, partition, batch, acks=-1, timeout_ms=5000):
    return (
        _string(None)  # transactional_id
        + struct.pack(">hi", acks, timeout_ms)
        + struct.pack(">i", 1)
        + _string(topic)
        + struct.pack(">i", 1)
        + struct.pack(">i", partition)
        + struct.pack(">i", len(batch))
        + batch
    )


def parse_produce_v3_response(body):
    """(error_code, base_offset) of the single partition in a Produce v3 response."""
    pos = 0
    (n_topics,) = struct.unpack_from(">i", body, pos)
    pos += 4
    assert n_topics == 1, n_topics
    (name_len,) = struct.unpack_from(">h", body, pos)
    pos += 2 + name_len
    (n_parts,) = struct.unpack_from(">i", body, pos)
    pos += 4
    assert n_parts == 1, n_parts
    _index, error_code, base_offset, _append_time = struct.unpack_from(">ihqq", body, pos)
    return error_code, base_offset


# --- a connection ---------------------------------------------------------------------------------


class WireClient:
    def __init__(self, port, timeout=10.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.correlation_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def read_response(self):
        """(correlation_id, body bytes) of the next response (header v0)."""
        (size,) = struct.unpack(">i", self.recv_exact(4))
        frame = self.recv_exact(size)
        (cid,) = struct.unpack(">i", frame[:4])
        return cid, frame[4:]

    def request(self, api_key, api_version, body):
        self.correlation_id += 1
        cid = self.correlation_id
        self.send_raw(request_frame(api_key, api_version, cid, body))
        got, body = self.read_response()
        assert got == cid, f"expected correlation id {cid}, got {got}"
        return body

    def api_versions(self):
        """ApiVersions v0: (error_code, {api_key: (min, max)})."""
        body = self.request(18, 0, b"")
        error_code, n = struct.unpack(">hi", body[:6])
        apis = {}
        for i in range(n):
            key, lo, hi = struct.unpack(">hhh", body[6 + 6 * i : 12 + 6 * i])
            apis[key] = (lo, hi)
        return error_code, apis

    def produce_v3(self, topic, partition, batch, acks=-1):
        """Produce v3 with one record set: (error_code, base_offset) of the single partition."""
        body = self.request(0, 3, produce_v3_body(topic, partition, batch, acks))
        return parse_produce_v3_response(body)

    def is_closed_by_peer(self, timeout=5.0):
        """True if the broker closes this connection (EOF or reset) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return data == b""
