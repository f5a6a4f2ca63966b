"""Topic and config administration through confluent-kafka's AdminClient: what Kafka users do
with kafka-topics.sh and kafka-configs.sh."""

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from clients import WAIT_S, admin, create_topic, wait_until


def kafka_error(future):
    """The KafkaError a failed admin future carries."""
    with pytest.raises(KafkaException) as excinfo:
        future.result(timeout=WAIT_S)
    return excinfo.value.args[0]


def topic_names(server):
    return set(admin(server).list_topics(timeout=WAIT_S).topics)


def describe_topic_configs(server, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin(server).describe_configs([resource])[resource].result(timeout=WAIT_S)


def test_create_topic_with_configs_is_described_with_override_source(server, topic_name):
    create_topic(
        server, topic_name, partitions=4, config={"retention.ms": "3600000", "cleanup.policy": "compact"}
    )

    configs = describe_topic_configs(server, topic_name)

    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "compact"
    assert configs["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # A key not set on the topic shows its default, marked as such.
    assert configs["segment.bytes"].value == str(1 << 30)
    assert configs["segment.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].is_default


def test_validate_only_create_checks_but_does_not_create(server, topic_name):
    futures = admin(server).create_topics(
        [NewTopic(topic_name, num_partitions=2, replication_factor=1)], validate_only=True
    )
    futures[topic_name].result(timeout=WAIT_S)

    assert topic_name not in topic_names(server)

    bad = admin(server).create_topics(
        [NewTopic(topic_name, 1, 1, config={"retention.ms": "soon"})], validate_only=True
    )
    err = kafka_error(bad[topic_name])
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert topic_name not in topic_names(server)


def test_describe_topics_shows_partitions_with_leader_replicas_and_isr(server, topic_name):
    create_topic(server, topic_name, partitions=3)

    futures = admin(server).describe_topics(TopicCollection([topic_name]))
    description = futures[topic_name].result(timeout=WAIT_S)

    assert description.name == topic_name
    assert [p.id for p in description.partitions] == [0, 1, 2]
    for p in description.partitions:
        assert p.leader is not None and p.leader.id == 1, p
        assert [n.id for n in p.replicas] == [1], p
        assert [n.id for n in p.isr] == [1], p


def test_describe_cluster_names_this_single_broker(server):
    cluster = admin(server).describe_cluster().result(timeout=WAIT_S)

    assert cluster.cluster_id, "cluster id must be set"
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(1, "127.0.0.1", server.port)]
    assert cluster.controller is not None and cluster.controller.id == 1


def test_incremental_alter_configs_sets_and_deletes_overrides(server, topic_name):
    create_topic(server, topic_name, config={"retention.ms": "3600000"})
    a = admin(server)
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic_name,
        incremental_configs=[
            ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )

    a.incremental_alter_configs([resource])[resource].result(timeout=WAIT_S)

    configs = describe_topic_configs(server, topic_name)
    assert configs["retention.bytes"].value == "1048576"
    assert configs["retention.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert configs["retention.ms"].is_default


@pytest.mark.parametrize(
    "key,value",
    [("no.such.config", "1"), ("retention.ms", "not-a-number"), ("cleanup.policy", "shred")],
)
def test_create_topic_refuses_unknown_config_or_bad_value_naming_the_key(server, topic_name, key, value):
    futures = admin(server).create_topics([NewTopic(topic_name, 1, 1, config={key: value})])

    err = kafka_error(futures[topic_name])

    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert key in err.str(), f"error message should name {key!r}: {err.str()!r}"
    assert topic_name not in topic_names(server)


@pytest.mark.parametrize("key,value", [("no.such.config", "1"), ("segment.bytes", "12")])
def test_incremental_alter_refuses_unknown_config_or_bad_value_naming_the_key(server, topic_name, key, value):
    create_topic(server, topic_name)
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic_name,
        incremental_configs=[ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)],
    )

    err = kafka_error(admin(server).incremental_alter_configs([resource])[resource])

    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert key in err.str(), f"error message should name {key!r}: {err.str()!r}"
    configs = describe_topic_configs(server, topic_name)
    assert key not in configs or configs[key].is_default


def test_creating_an_existing_topic_gives_topic_already_exists(server, topic_name):
    create_topic(server, topic_name, partitions=2)

    futures = admin(server).create_topics([NewTopic(topic_name, 5, 1)])

    err = kafka_error(futures[topic_name])
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err
    md = admin(server).list_topics(topic=topic_name, timeout=WAIT_S)
    assert len(md.topics[topic_name].partitions) == 2, "the existing topic is unchanged"


@pytest.mark.parametrize("name", ["has/slash", "has space", "x" * 250, ".", ".."])
def test_invalid_topic_name_is_refused(server, name):
    futures = admin(server).create_topics([NewTopic(name, 1, 1)])

    err = kafka_error(futures[name])

    assert err.code() == KafkaError.TOPIC_EXCEPTION, err
    assert name not in topic_names(server)


def test_create_partitions_grows_the_topic_and_refuses_shrinking(server, topic_name):
    create_topic(server, topic_name, partitions=2)
    a = admin(server)

    a.create_partitions([NewPartitions(topic_name, 5)])[topic_name].result(timeout=WAIT_S)

    md = a.list_topics(topic=topic_name, timeout=WAIT_S)
    assert sorted(md.topics[topic_name].partitions) == [0, 1, 2, 3, 4]
    err = kafka_error(a.create_partitions([NewPartitions(topic_name, 3)])[topic_name])
    assert err.code() == KafkaError.INVALID_PARTITIONS, err


def test_delete_topics_removes_the_topic(server, topic_name):
    create_topic(server, topic_name, partitions=2)
    assert topic_name in topic_names(server)

    admin(server).delete_topics([topic_name], operation_timeout=10)[topic_name].result(timeout=WAIT_S)

    wait_until(lambda: topic_name not in topic_names(server), what=f"{topic_name} to disappear")
    err = kafka_error(admin(server).delete_topics([topic_name])[topic_name])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


def test_legacy_alter_configs_replaces_the_whole_set_of_overrides(server, topic_name):
    create_topic(server, topic_name, config={"retention.ms": "3600000", "segment.bytes": "1048576"})
    resource = ConfigResource(ResourceType.TOPIC, topic_name, set_config={"retention.bytes": "999999"})

    admin(server).alter_configs([resource])[resource].result(timeout=WAIT_S)

    configs = describe_topic_configs(server, topic_name)
    assert configs["retention.bytes"].value == "999999"
    assert configs["retention.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # AlterConfigs is not incremental: keys left out go back to their defaults.
    assert configs["retention.ms"].is_default and configs["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert configs["segment.bytes"].is_default


def test_legacy_alter_configs_refuses_a_bad_value_and_changes_nothing(server, topic_name):
    create_topic(server, topic_name, config={"retention.ms": "3600000"})
    resource = ConfigResource(
        ResourceType.TOPIC, topic_name, set_config={"retention.bytes": "100", "segment.bytes": "-1"}
    )

    err = kafka_error(admin(server).alter_configs([resource])[resource])

    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert "segment.bytes" in err.str(), err.str()
    configs = describe_topic_configs(server, topic_name)
    assert configs["retention.ms"].value == "3600000", "a refused alter changes nothing"
    assert configs["retention.bytes"].is_default


def test_describe_configs_of_an_unknown_topic_is_unknown_topic(server):
    resource = ConfigResource(ResourceType.TOPIC, "no-such-topic-anywhere")

    err = kafka_error(admin(server).describe_configs([resource])[resource])

    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


def test_describe_configs_of_the_broker_is_read_only(server):
    resource = ConfigResource(ResourceType.BROKER, "1")

    configs = admin(server).describe_configs([resource])[resource].result(timeout=WAIT_S)

    assert configs, "the broker describes its settings"
    assert all(c.is_read_only for c in configs.values()), [c.name for c in configs.values() if not c.is_read_only]
