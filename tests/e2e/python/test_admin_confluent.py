"""Topic administration through confluent-kafka's AdminClient (librdkafka).

The expectations are Kafka's: error codes from the protocol, Kafka's topic config defaults,
`num.partitions` for auto-created topics.
"""

from __future__ import annotations

import re

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from support import (
    DEFAULT_PARTITION_COUNT,
    INVALID_CONFIG,
    INVALID_REPLICATION_FACTOR,
    OPERATION_TIMEOUT_SECS,
    SINGLE_NODE_RE,
    TOPIC_ALREADY_EXISTS,
    TOPIC_CONFIG_DEFAULTS,
    ck_admin,
    unique_name,
    wait_until,
)

TIMEOUTS = {"operation_timeout": OPERATION_TIMEOUT_SECS, "request_timeout": OPERATION_TIMEOUT_SECS}


@pytest.fixture
def admin(module_broker):
    return ck_admin(module_broker.bootstrap)


def create(admin, *topics: NewTopic):
    futures = admin.create_topics(list(topics), **TIMEOUTS)
    return {name: future.exception(timeout=OPERATION_TIMEOUT_SECS)
            for name, future in futures.items()}


def kafka_error(exception) -> KafkaError:
    assert isinstance(exception, KafkaException), f"expected a KafkaException, got {exception!r}"
    return exception.args[0]


def describe_topic_configs(admin, name) -> dict:
    resource = ConfigResource(ResourceType.TOPIC, name)
    futures = admin.describe_configs([resource], request_timeout=OPERATION_TIMEOUT_SECS)
    return futures[resource].result(timeout=OPERATION_TIMEOUT_SECS)


def source(entry: ConfigEntry) -> ConfigSource:
    # librdkafka hands back the protocol's number; normalise to the enum either way.
    return ConfigSource(entry.source)


def test_creates_lists_describes_and_deletes_topics(admin):
    names = [unique_name("ck-admin"), unique_name("ck-admin")]
    errors = create(admin, *(NewTopic(n, num_partitions=3, replication_factor=1) for n in names))
    assert errors == {n: None for n in names}

    listed = admin.list_topics(timeout=10).topics
    for name in names:
        assert name in listed
        assert listed[name].error is None
        assert sorted(listed[name].partitions) == [0, 1, 2]

    descriptions = admin.describe_topics(TopicCollection(names),
                                         request_timeout=OPERATION_TIMEOUT_SECS)
    for name in names:
        description = descriptions[name].result(timeout=OPERATION_TIMEOUT_SECS)
        assert description.name == name
        assert sorted(p.id for p in description.partitions) == [0, 1, 2]
        for partition in description.partitions:
            # One node: it leads every partition and is the only replica, in sync.
            assert partition.leader is not None
            assert [r.id for r in partition.replicas] == [partition.leader.id]
            assert [r.id for r in partition.isr] == [partition.leader.id]

    deleted = admin.delete_topics(names, **TIMEOUTS)
    for name in names:
        deleted[name].result(timeout=OPERATION_TIMEOUT_SECS)
    wait_until(lambda: not set(names) & set(admin.list_topics(timeout=10).topics),
               OPERATION_TIMEOUT_SECS, f"{names} gone from the topic list")


def test_default_partition_count_and_replication_factor(admin):
    # -1 asks for the broker's defaults (KIP-464).
    name = unique_name("ck-defaults")
    assert create(admin, NewTopic(name)) == {name: None}
    topic = admin.list_topics(topic=name, timeout=10).topics[name]
    assert len(topic.partitions) == DEFAULT_PARTITION_COUNT


def test_replication_factor_above_one_is_rejected_as_single_node(admin):
    name = unique_name("ck-rf2")
    errors = create(admin, NewTopic(name, num_partitions=3, replication_factor=2))
    error = kafka_error(errors[name])
    assert error.code() == INVALID_REPLICATION_FACTOR, error
    assert re.search(SINGLE_NODE_RE, error.str()), error.str()
    assert name not in admin.list_topics(timeout=10).topics


def test_creating_an_existing_topic_fails_topic_already_exists(admin):
    name = unique_name("ck-exists")
    assert create(admin, NewTopic(name, num_partitions=3, replication_factor=1)) == {name: None}
    errors = create(admin, NewTopic(name, num_partitions=3, replication_factor=1))
    error = kafka_error(errors[name])
    assert error.code() == TOPIC_ALREADY_EXISTS, error
    # The first topic is untouched.
    assert len(admin.list_topics(topic=name, timeout=10).topics[name].partitions) == 3


def test_describe_configs_lists_topic_defaults(admin):
    name = unique_name("ck-configs")
    assert create(admin, NewTopic(name, num_partitions=3, replication_factor=1)) == {name: None}
    configs = describe_topic_configs(admin, name)
    for key, default in TOPIC_CONFIG_DEFAULTS.items():
        assert key in configs, f"{key} missing from DescribeConfigs: {sorted(configs)}"
        entry = configs[key]
        assert entry.value == default, f"{key} = {entry.value!r}, Kafka's default is {default!r}"
        assert source(entry) != ConfigSource.DYNAMIC_TOPIC_CONFIG, (
            f"{key} was never set on the topic, yet its source is {entry.source}"
        )
        assert not entry.is_read_only, f"{key} is a topic config, settable per topic"


def test_incremental_alter_configs_sets_retention_ms(admin):
    name = unique_name("ck-alter")
    assert create(admin, NewTopic(name, num_partitions=3, replication_factor=1)) == {name: None}
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
    ])
    futures = admin.incremental_alter_configs([resource], request_timeout=OPERATION_TIMEOUT_SECS)
    futures[resource].result(timeout=OPERATION_TIMEOUT_SECS)

    configs = describe_topic_configs(admin, name)
    assert configs["retention.ms"].value == "3600000"
    assert source(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    # SET touches only the named key.
    for key in ("cleanup.policy", "max.message.bytes", "segment.bytes"):
        assert configs[key].value == TOPIC_CONFIG_DEFAULTS[key], key

    # DELETE reverts it to the default.
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([resource])[resource].result(timeout=OPERATION_TIMEOUT_SECS)
    assert describe_topic_configs(admin, name)["retention.ms"].value == (
        TOPIC_CONFIG_DEFAULTS["retention.ms"]
    )


def test_incremental_alter_configs_rejects_an_unknown_config(admin):
    name = unique_name("ck-alter-unknown")
    assert create(admin, NewTopic(name, num_partitions=1, replication_factor=1)) == {name: None}
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
    ])
    future = admin.incremental_alter_configs([resource])[resource]
    error = kafka_error(future.exception(timeout=OPERATION_TIMEOUT_SECS))
    assert error.code() == INVALID_CONFIG, error


def test_metadata_for_an_unknown_topic_auto_creates_it(module_broker):
    # auto.create.topics.enable defaults to true in Kafka; the client must ask for it too.
    admin = ck_admin(module_broker.bootstrap, **{"allow.auto.create.topics": True})
    name = unique_name("ck-auto")

    def created():
        # The first answer may be LEADER_NOT_AVAILABLE while the topic is being created.
        topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
        return topic if topic is not None and topic.error is None and topic.partitions else None

    topic = wait_until(created, OPERATION_TIMEOUT_SECS, f"auto-created topic {name}")
    assert len(topic.partitions) == DEFAULT_PARTITION_COUNT
