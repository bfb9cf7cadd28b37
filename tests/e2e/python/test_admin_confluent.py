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
    ck_producer,
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


def alter_incrementally(admin, resource_type, name, *entries):
    """IncrementalAlterConfigs on one resource; returns its exception (None on success)."""
    resource = ConfigResource(resource_type, name, incremental_configs=list(entries))
    future = admin.incremental_alter_configs([resource], request_timeout=OPERATION_TIMEOUT_SECS)
    return future[resource].exception(timeout=OPERATION_TIMEOUT_SECS)


def describe(admin, resource_type, name) -> dict:
    resource = ConfigResource(resource_type, name)
    futures = admin.describe_configs([resource], request_timeout=OPERATION_TIMEOUT_SECS)
    return futures[resource].result(timeout=OPERATION_TIMEOUT_SECS)


def produce_one(bootstrap: str, topic: str, size: int):
    """Produces one record of `size` bytes; returns the delivery error (None when acked)."""
    producer = ck_producer(bootstrap, **{"linger.ms": 0})
    outcome = []
    producer.produce(topic, value=b"v" * size, on_delivery=lambda error, _: outcome.append(error))
    assert producer.flush(OPERATION_TIMEOUT_SECS) == 0, "the record was not answered"
    return outcome[0]


def test_broker_config_set_at_run_time_applies_to_every_topic_and_is_kept(broker):
    # kafka-configs.sh --entity-type brokers --entity-name 1 --alter --add-config
    # message.max.bytes=5000: every topic without its own max.message.bytes follows at once.
    admin = ck_admin(broker.bootstrap)
    plain, roomy = unique_name("ck-broker-plain"), unique_name("ck-broker-roomy")
    assert create(admin, NewTopic(plain, num_partitions=1, replication_factor=1),
                  NewTopic(roomy, num_partitions=1, replication_factor=1,
                           config={"max.message.bytes": "100000"})) == {plain: None, roomy: None}
    broker_id = str(admin.list_topics(timeout=OPERATION_TIMEOUT_SECS).controller_id)
    assert alter_incrementally(admin, ResourceType.BROKER, broker_id, ConfigEntry(
        "message.max.bytes", "5000", incremental_operation=AlterConfigOpType.SET)) is None

    entry = describe_topic_configs(admin, plain)["max.message.bytes"]
    assert (entry.value, source(entry)) == ("5000", ConfigSource.DYNAMIC_BROKER_CONFIG)
    entry = describe(admin, ResourceType.BROKER, broker_id)["message.max.bytes"]
    assert (entry.value, source(entry)) == ("5000", ConfigSource.DYNAMIC_BROKER_CONFIG)
    assert not entry.is_read_only
    error = produce_one(broker.bootstrap, plain, 7000)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
    assert produce_one(broker.bootstrap, roomy, 7000) is None, "the topic's override wins"

    # Kept across a kill -9; DELETE brings back the default.
    broker.kill()
    broker.start()
    admin = ck_admin(broker.bootstrap)
    assert describe_topic_configs(admin, plain)["max.message.bytes"].value == "5000"
    assert alter_incrementally(admin, ResourceType.BROKER, broker_id, ConfigEntry(
        "message.max.bytes", None, incremental_operation=AlterConfigOpType.DELETE)) is None
    entry = describe_topic_configs(admin, plain)["max.message.bytes"]
    assert (entry.value, source(entry)) == (TOPIC_CONFIG_DEFAULTS["max.message.bytes"],
                                            ConfigSource.DEFAULT_CONFIG)
    assert produce_one(broker.bootstrap, plain, 7000) is None


def test_broker_configs_kafka_reads_only_at_start_are_refused(admin):
    broker_id = str(admin.list_topics(timeout=OPERATION_TIMEOUT_SECS).controller_id)
    error = kafka_error(alter_incrementally(admin, ResourceType.BROKER, broker_id, ConfigEntry(
        "log.dirs", "/elsewhere", incremental_operation=AlterConfigOpType.SET)))
    assert error.code() == KafkaError.INVALID_REQUEST, error
    assert "restart" in error.str(), error
    entry = describe(admin, ResourceType.BROKER, broker_id)["log.dirs"]
    assert entry.is_read_only


def test_group_configs_are_described_altered_and_checked(admin):
    group = unique_name("ck-group-configs")
    # A group with no members yet has the broker's defaults (Kafka 4.0 group configs).
    entry = describe(admin, ResourceType.GROUP, group)["consumer.session.timeout.ms"]
    assert (entry.value, source(entry)) == ("45000", ConfigSource.DEFAULT_CONFIG)
    assert alter_incrementally(admin, ResourceType.GROUP, group, ConfigEntry(
        "consumer.session.timeout.ms", "50000",
        incremental_operation=AlterConfigOpType.SET)) is None
    entry = describe(admin, ResourceType.GROUP, group)["consumer.session.timeout.ms"]
    assert (entry.value, source(entry)) == ("50000", ConfigSource.GROUP_CONFIG)
    # Outside the broker's bounds (group.consumer.max.session.timeout.ms = 60000).
    error = kafka_error(alter_incrementally(admin, ResourceType.GROUP, group, ConfigEntry(
        "consumer.session.timeout.ms", "90000", incremental_operation=AlterConfigOpType.SET)))
    assert error.code() == KafkaError.INVALID_CONFIG, error


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
