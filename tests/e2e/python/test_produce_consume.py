"""Produce and consume across partitions with every compression codec, through both clients,
and read back what a topic's compression.type rewrote.

Acceptance bar: confluent-kafka produces and consumes 100k keyed records over a 4-partition
topic with each codec; every record comes back exactly once, at the offset the broker acked,
in send order per partition.

kafka-python builds and parses every record in Python (about 3x confluent-kafka's time per
record here, with the C crc32c installed), so it moves 100k records with one codec (none) and
10k with each of the others: still many batches per partition, and the suite stays within its
budget of a few minutes on 2 cores against a debug build of the broker.
"""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition as CkTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KpTopicPartition

from support import (
    OPERATION_TIMEOUT_SECS,
    check_round_trip,
    ck_consume,
    ck_consumer,
    ck_create_topic,
    ck_produce,
    ck_producer,
    kp_consume,
    kp_partitioned,
    record,
    unique_name,
)

PARTITION_COUNT = 4
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CONFLUENT_RECORD_COUNT = 100_000
KAFKA_PYTHON_RECORD_COUNT = {"none": 100_000}
KAFKA_PYTHON_RECORD_COUNT_OTHER = 10_000


def check_watermarks(consumer, topic, produced):
    """Nothing beyond what was acked was stored: each log ends at its acked record count."""
    for partition in range(PARTITION_COUNT):
        low, high = consumer.get_watermark_offsets(CkTopicPartition(topic, partition),
                                                   timeout=OPERATION_TIMEOUT_SECS)
        assert (low, high) == (0, len(produced.get(partition, []))), f"partition {partition}"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("codec", CODECS)
def test_confluent_round_trips_100k_records(module_broker, codec):
    topic = unique_name(f"ck-{codec}")
    ck_create_topic(module_broker.bootstrap, topic, PARTITION_COUNT)
    records = [record(i) for i in range(CONFLUENT_RECORD_COUNT)]

    producer = ck_producer(module_broker.bootstrap, **{"compression.type": codec})
    produced = ck_produce(producer, topic, records)
    assert set(produced) == set(range(PARTITION_COUNT)), "keys should reach every partition"

    consumer = ck_consumer(module_broker.bootstrap)
    try:
        consumer.assign([CkTopicPartition(topic, p, OFFSET_BEGINNING)
                         for p in range(PARTITION_COUNT)])
        consumed = ck_consume(consumer, CONFLUENT_RECORD_COUNT)
        check_round_trip(produced, consumed, CONFLUENT_RECORD_COUNT)
        check_watermarks(consumer, topic, produced)
    finally:
        consumer.close()


def kp_produce(bootstrap: str, topic: str, records, codec: str | None) -> dict:
    """Sends `records` with kafka-python compressing with `codec`; the acked records by
    partition."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=codec,
        linger_ms=20,
        batch_size=256 * 1024,
    )
    try:
        futures = [((k, v), producer.send(topic, key=k, value=v)) for k, v in records]
        producer.flush(timeout=120)
        return kp_partitioned(futures)
    finally:
        producer.close()


def kp_read_back(bootstrap: str, topic: str, produced: dict, count: int):
    """Reads the topic from the beginning with kafka-python: exactly the acked records, at
    their offsets, and each log ends at its acked record count."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10_000,
    )
    try:
        partitions = [KpTopicPartition(topic, p) for p in range(PARTITION_COUNT)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        consumed = kp_consume(consumer, count)
        check_round_trip(produced, consumed, count)
        assert consumer.end_offsets(partitions) == {
            tp: len(produced.get(tp.partition, [])) for tp in partitions
        }
    finally:
        consumer.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_round_trips_records(module_broker, codec):
    count = KAFKA_PYTHON_RECORD_COUNT.get(codec, KAFKA_PYTHON_RECORD_COUNT_OTHER)
    topic = unique_name(f"kp-{codec}")
    ck_create_topic(module_broker.bootstrap, topic, PARTITION_COUNT)
    records = [record(i) for i in range(count)]
    produced = kp_produce(module_broker.bootstrap, topic, records,
                          None if codec == "none" else codec)
    assert set(produced) == set(range(PARTITION_COUNT)), "keys should reach every partition"
    kp_read_back(module_broker.bootstrap, topic, produced, count)


TOPIC_CODECS = [("gzip", None), ("snappy", None), ("lz4", None), ("zstd", None),
                ("uncompressed", "gzip")]
REWRITTEN_RECORD_COUNT = 5_000


@pytest.mark.timeout(240)
@pytest.mark.parametrize("topic_codec,sent_codec", TOPIC_CODECS)
def test_kafka_python_reads_batches_rewritten_in_the_topic_compression_type(
        module_broker, topic_codec, sent_codec):
    """A topic's compression.type rewrites what producers send in another codec: kafka-python,
    which decompresses every batch with its own Python codecs (not librdkafka's), reads back
    every record, so the frames sluice writes (xerial snappy, lz4 in independent blocks, zstd
    with its size) are ones an independent decoder takes."""
    topic = unique_name(f"kp-stored-{topic_codec}")
    ck_create_topic(module_broker.bootstrap, topic, PARTITION_COUNT,
                    {"compression.type": topic_codec})
    records = [record(i) for i in range(REWRITTEN_RECORD_COUNT)]
    produced = kp_produce(module_broker.bootstrap, topic, records, sent_codec)
    kp_read_back(module_broker.bootstrap, topic, produced, REWRITTEN_RECORD_COUNT)
