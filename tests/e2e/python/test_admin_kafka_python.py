"""Topic administration through kafka-python's KafkaAdminClient (pure Python, its own codecs).

The expectations are Kafka's: error codes from the protocol, Kafka's topic config defaults,
`num.partitions` for auto-created topics.
"""

from __future__ import annotations

import re

import kafka.errors as Errors
import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from support import (
    DEFAULT_PARTITION_COUNT,
    INVALID_REPLICATION_FACTOR,
    OPERATION_TIMEOUT_SECS,
    SINGLE_NODE_RE,
    TOPIC_ALREADY_EXISTS,
    TOPIC_CONFIG_DEFAULTS,
    UNKNOWN_TOPIC_OR_PARTITION,
    unique_name,
    wait_until,
)


@pytest.fixture
def admin(module_broker):
    client = KafkaAdminClient(bootstrap_servers=module_broker.bootstrap,
                              request_timeout_ms=int(OPERATION_TIMEOUT_SECS * 1000))
    yield client
    client.close()


def spec(partitions=3, replication_factor=1):
    return {"num_partitions": partitions, "replication_factor": replication_factor}


def topic_results(result) -> dict:
    """CreateTopics results by name: {name: (error_code, error_message)}."""
    return {t["name"]: (t["error_code"], t.get("error_message")) for t in result["topics"]}


def describe_topic_configs(admin, name) -> dict:
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)],
                                    config_filter="all")
    return result["topic"][name]


def test_creates_lists_describes_and_deletes_topics(admin):
    names = [unique_name("kp-admin"), unique_name("kp-admin")]
    result = admin.create_topics({n: spec() for n in names})
    assert {name: code for name, (code, _) in topic_results(result).items()} == {
        n: 0 for n in names
    }

    assert set(names) <= set(admin.list_topics())
    described = {t["name"]: t for t in admin.describe_topics(names)}
    for name in names:
        assert described[name]["error_code"] == 0
        partitions = described[name]["partitions"]
        assert sorted(p["partition_index"] for p in partitions) == [0, 1, 2]
        for p in partitions:
            assert p["error_code"] == 0
            assert p["leader_id"] >= 0
            assert p["replica_nodes"] == [p["leader_id"]]
            assert p["isr_nodes"] == [p["leader_id"]]

    admin.delete_topics(names)
    wait_until(lambda: not set(names) & set(admin.list_topics()),
               OPERATION_TIMEOUT_SECS, f"{names} gone from the topic list")
    # Describing a deleted topic (auto-creation off) is UNKNOWN_TOPIC_OR_PARTITION.
    for topic in admin.describe_topics(names):
        assert topic["error_code"] == UNKNOWN_TOPIC_OR_PARTITION, topic


def test_created_topic_has_a_null_error_message(admin):
    # CreateTopicsResponse.ErrorMessage: "The error message, or null if there was no error."
    name = unique_name("kp-null-message")
    assert topic_results(admin.create_topics({name: spec()})) == {name: (0, None)}


def test_replication_factor_above_one_is_rejected_as_single_node(admin):
    name = unique_name("kp-rf2")
    result = admin.create_topics({name: spec(replication_factor=2)}, raise_errors=False)
    code, message = topic_results(result)[name]
    assert code == INVALID_REPLICATION_FACTOR, result
    assert message and re.search(SINGLE_NODE_RE, message), message
    assert name not in admin.list_topics()
    # Raised by default, as the protocol error's own class.
    with pytest.raises(Errors.InvalidReplicationFactorError):
        admin.create_topics({name: spec(replication_factor=2)})


def test_creating_an_existing_topic_fails_topic_already_exists(admin):
    name = unique_name("kp-exists")
    admin.create_topics({name: spec()})
    result = admin.create_topics({name: spec()}, raise_errors=False)
    code, _ = topic_results(result)[name]
    assert code == TOPIC_ALREADY_EXISTS, result
    with pytest.raises(Errors.TopicAlreadyExistsError):
        admin.create_topics({name: spec()})


def test_describe_configs_lists_topic_defaults(admin):
    name = unique_name("kp-configs")
    admin.create_topics({name: spec()})
    configs = describe_topic_configs(admin, name)
    for key, default in TOPIC_CONFIG_DEFAULTS.items():
        assert key in configs, f"{key} missing from DescribeConfigs: {sorted(configs)}"
        assert configs[key]["value"] == default, (
            f"{key} = {configs[key]['value']!r}, Kafka's default is {default!r}"
        )
        assert configs[key]["config_source"] != "DYNAMIC_TOPIC_CONFIG", configs[key]
        assert not configs[key]["read_only"], f"{key} is a topic config, settable per topic"


def test_alter_configs_sets_retention_ms(admin):
    # The plain AlterConfigs API (not incremental): kafka-python sends every modified key.
    name = unique_name("kp-alter")
    admin.create_topics({name: spec()})
    resource = ConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": "3600000"})
    result = admin.alter_configs([resource], incremental=False)
    assert result == {"topic": {name: "OK"}}

    configs = describe_topic_configs(admin, name)
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    for key in ("cleanup.policy", "max.message.bytes", "segment.bytes"):
        assert configs[key]["value"] == TOPIC_CONFIG_DEFAULTS[key], key


def test_incremental_alter_configs_sets_retention_ms(admin):
    name = unique_name("kp-incremental")
    admin.create_topics({name: spec()})
    resource = ConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": "7200000"})
    assert admin.alter_configs([resource], incremental=True) == {"topic": {name: "OK"}}
    assert describe_topic_configs(admin, name)["retention.ms"]["value"] == "7200000"


def test_broker_and_group_configs_change_at_run_time(broker):
    # kafka-python first checks each key is dynamic (DescribeConfigs: not read-only), then
    # sends IncrementalAlterConfigs to the broker the resource names.
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap,
                             request_timeout_ms=int(OPERATION_TIMEOUT_SECS * 1000))
    try:
        name = unique_name("kp-broker-default")
        admin.create_topics({name: spec()})
        broker_id = str(admin.describe_cluster()["controller_id"])
        resource = ConfigResource(ConfigResourceType.BROKER, broker_id,
                                  configs={"log.retention.ms": "7200000"})
        assert admin.alter_configs([resource]) == {"broker": {broker_id: "OK"}}
        entry = describe_topic_configs(admin, name)["retention.ms"]
        assert (entry["value"], entry["config_source"]) == ("7200000", "DYNAMIC_BROKER_CONFIG")
        with pytest.raises(ValueError, match="log.dirs"):
            admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, broker_id,
                                                configs={"log.dirs": "/elsewhere"})])

        group = unique_name("kp-group-configs")
        resource = ConfigResource(ConfigResourceType.GROUP, group,
                                  configs={"consumer.heartbeat.interval.ms": "6000"})
        assert admin.alter_configs([resource]) == {"group": {group: "OK"}}
        described = admin.describe_configs([ConfigResource(ConfigResourceType.GROUP, group)],
                                           config_filter="all")["group"][group]
        entry = described["consumer.heartbeat.interval.ms"]
        assert (entry["value"], entry["config_source"]) == ("6000", "DYNAMIC_GROUP_CONFIG")
    finally:
        admin.close()


def test_producing_to_an_unknown_topic_auto_creates_it(module_broker, admin):
    name = unique_name("kp-auto")
    producer = KafkaProducer(bootstrap_servers=module_broker.bootstrap)
    try:
        metadata = producer.send(name, b"first").get(timeout=OPERATION_TIMEOUT_SECS)
    finally:
        producer.close()
    [topic] = admin.describe_topics([name])
    assert topic["error_code"] == 0
    assert len(topic["partitions"]) == DEFAULT_PARTITION_COUNT
    assert (metadata.topic, metadata.partition, metadata.offset) == (name, 0, 0)
