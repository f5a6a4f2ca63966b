"""ApiVersions advertises exactly the APIs the broker serves; asking for anything else costs the
client its connection, not the broker its life."""

import struct

from kafka import KafkaAdminClient

from kafka_wire import WireClient, request_frame

# api key -> name, for the APIs this build serves.
SERVED = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    18: "ApiVersions",
    19: "CreateTopics",
    20: "DeleteTopics",
    21: "DeleteRecords",
    22: "InitProducerId",
    24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn",
    26: "EndTxn",
    28: "TxnOffsetCommit",
    32: "DescribeConfigs",
    33: "AlterConfigs",
    37: "CreatePartitions",
    42: "DeleteGroups",
    44: "IncrementalAlterConfigs",
    45: "AlterPartitionReassignments",
    46: "ListPartitionReassignments",
    47: "OffsetDelete",
    60: "DescribeCluster",
    65: "DescribeTransactions",
    66: "ListTransactions",
    68: "ConsumerGroupHeartbeat",
    69: "ConsumerGroupDescribe",
}
# Kafka APIs with no handler here yet, in the order we would pick one to ask for.
UNSERVED_CANDIDATES = {
    10: struct.pack(">h", 5) + b"group",  # FindCoordinator v0: the group id
    22: struct.pack(">hi", -1, 60000),  # InitProducerId v0: no transactional id
    43: b"",  # ElectLeaders
    57: b"",  # UpdateFeatures
}


def test_api_versions_lists_exactly_the_served_apis(server):
    """A tripwire as much as a check: serving a new API means adding it to SERVED."""
    with WireClient(server.port) as c:
        error_code, apis = c.api_versions()

    assert error_code == 0
    advertised = {k: SERVED.get(k, f"unserved key {k}") for k in apis}
    assert advertised == SERVED
    for key, (lo, hi) in apis.items():
        assert 0 <= lo <= hi, f"{SERVED[key]}: {lo}..{hi}"


def test_flexible_api_versions_seen_by_kafka_python_match(server):
    admin = KafkaAdminClient(bootstrap_servers=server.bootstrap)
    try:
        versions = {int(k): v for k, v in admin.api_versions().items()}
    finally:
        admin.close()

    assert set(versions) == set(SERVED), sorted(set(versions) ^ set(SERVED))


def test_unknown_api_versions_version_is_answered_with_unsupported_version(server):
    with WireClient(server.port) as c:
        c.send_raw(request_frame(18, 99, 7, b""))
        cid, body = c.read_response()

    assert cid == 7
    (error_code,) = struct.unpack(">h", body[:2])
    assert error_code == 35, f"error code {error_code}, expected UNSUPPORTED_VERSION (35)"


def test_unadvertised_api_is_refused_without_crashing(server):
    with WireClient(server.port) as c:
        _, advertised = c.api_versions()
    key = next(k for k in UNSERVED_CANDIDATES if k not in advertised)
    with WireClient(server.port) as c:
        c.send_raw(request_frame(key, 0, 1, UNSERVED_CANDIDATES[key]))
        assert c.is_closed_by_peer(), f"a request for unadvertised API {key} must close the connection"

    assert server.alive()
    with WireClient(server.port) as c:
        assert c.api_versions()[0] == 0
