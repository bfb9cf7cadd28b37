"""ListOffsets: by timestamp, earliest and latest, through both clients.

Kafka's rule for a timestamp query: the answer is the earliest offset whose timestamp is at or
after the query; if no record is that late, offset -1 (kafka-python: None). Timestamps are the
producer's (CreateTime, the default `message.timestamp.type`).
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    TIMESTAMP_CREATE_TIME,
    TopicPartition as CkTopicPartition,
)
from confluent_kafka.admin import OffsetSpec
from kafka import KafkaConsumer, TopicPartition as KpTopicPartition

from support import (
    OPERATION_TIMEOUT_SECS,
    ck_admin,
    ck_consumer,
    ck_create_topic,
    ck_producer,
    unique_name,
)

# An hour ago: well inside the default retention (7 days) and clear of any limit on
# timestamps in the future (Kafka 4 rejects more than an hour ahead by default).
T0 = (int(time.time()) - 3600) * 1000
RECORDS_PER_PARTITION = 10
# Partition -> the timestamps of its records, in offset order.
TIMELINE = {
    0: [T0 + i * 1000 for i in range(RECORDS_PER_PARTITION)],  # one batch per record
    1: [T0 + 500 + i * 1000 for i in range(RECORDS_PER_PARTITION)],  # all in one batch
    2: [],  # empty
    3: [T0, T0 + 3000, T0 + 1000, T0 + 2000, T0 + 5000, T0 + 4000],  # out of order, one batch
}
# Queries around every record and past both ends.
QUERIES = sorted({T0 - 5000, T0 + 10_000, T0 + 20_000}
                 | {t + d for ts in TIMELINE.values() for t in ts for d in (-1, 0, 1)})


def expected_offset(partition: int, query_ms: int) -> int:
    for offset, timestamp in enumerate(TIMELINE[partition]):
        if timestamp >= query_ms:
            return offset
    return -1


@pytest.fixture(scope="module")
def timeline_topic(module_broker):
    topic = unique_name("offsets")
    ck_create_topic(module_broker.bootstrap, topic, len(TIMELINE))
    producer = ck_producer(module_broker.bootstrap, **{"linger.ms": 50})
    errors = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)

    for partition, timestamps in TIMELINE.items():
        for offset, timestamp in enumerate(timestamps):
            producer.produce(topic, key=b"k", value=f"{partition}/{offset}".encode(),
                             partition=partition, timestamp=timestamp, on_delivery=on_delivery)
            if partition == 0:
                producer.flush(OPERATION_TIMEOUT_SECS)  # a batch of its own
        producer.flush(OPERATION_TIMEOUT_SECS)
    assert not errors, errors
    return topic


def test_records_keep_their_create_time(module_broker, timeline_topic):
    want = {(p, o): (TIMESTAMP_CREATE_TIME, t) for p, ts in TIMELINE.items()
            for o, t in enumerate(ts)}
    consumer = ck_consumer(module_broker.bootstrap)
    seen = {}
    try:
        consumer.assign([CkTopicPartition(timeline_topic, p, OFFSET_BEGINNING) for p in TIMELINE])
        deadline = time.monotonic() + OPERATION_TIMEOUT_SECS
        while len(seen) < len(want):
            assert time.monotonic() < deadline, f"consumed {len(seen)} of {len(want)}"
            for message in consumer.consume(num_messages=100, timeout=0.5):
                assert message.error() is None, message.error()
                key = (message.partition(), message.offset())
                assert key not in seen, f"partition {key[0]} offset {key[1]} delivered twice"
                seen[key] = message.timestamp()
    finally:
        consumer.close()
    assert seen == want


def test_confluent_offsets_for_times(module_broker, timeline_topic):
    consumer = ck_consumer(module_broker.bootstrap)
    try:
        for query in QUERIES:
            answers = consumer.offsets_for_times(
                [CkTopicPartition(timeline_topic, p, query) for p in TIMELINE],
                timeout=OPERATION_TIMEOUT_SECS,
            )
            got = {tp.partition: tp.offset for tp in answers}
            for tp in answers:
                assert tp.error is None, tp.error
            want = {p: expected_offset(p, query) for p in TIMELINE}
            assert got == want, f"query T0{query - T0:+d}ms"
    finally:
        consumer.close()


def test_kafka_python_offsets_for_times(module_broker, timeline_topic):
    consumer = KafkaConsumer(bootstrap_servers=module_broker.bootstrap)
    try:
        partitions = [KpTopicPartition(timeline_topic, p) for p in TIMELINE]
        for query in QUERIES:
            answers = consumer.offsets_for_times({tp: query for tp in partitions},
                                                 timeout_ms=int(OPERATION_TIMEOUT_SECS * 1000))
            got = {tp.partition: (a.offset, a.timestamp) if a is not None else None
                   for tp, a in answers.items()}
            want = {}
            for p, timestamps in TIMELINE.items():
                offset = expected_offset(p, query)
                want[p] = (offset, timestamps[offset]) if offset >= 0 else None
            assert got == want, f"query T0{query - T0:+d}ms"
    finally:
        consumer.close()


def test_confluent_watermarks(module_broker, timeline_topic):
    consumer = ck_consumer(module_broker.bootstrap)
    try:
        for partition, timestamps in TIMELINE.items():
            tp = CkTopicPartition(timeline_topic, partition)
            # With a timeout this asks the broker (ListOffsets), not the fetcher's cache.
            assert consumer.get_watermark_offsets(tp, timeout=OPERATION_TIMEOUT_SECS) == (
                0, len(timestamps)
            ), f"partition {partition}"
    finally:
        consumer.close()


def test_confluent_admin_list_offsets(module_broker, timeline_topic):
    admin = ck_admin(module_broker.bootstrap)
    query = T0 + 1500
    cases = [
        ("earliest", OffsetSpec.earliest(), {p: 0 for p in TIMELINE}),
        ("latest", OffsetSpec.latest(), {p: len(ts) for p, ts in TIMELINE.items()}),
        ("T0+1500ms", OffsetSpec.for_timestamp(query),
         {p: expected_offset(p, query) for p in TIMELINE}),
    ]
    for name, spec, want in cases:
        futures = admin.list_offsets({CkTopicPartition(timeline_topic, p): spec for p in TIMELINE},
                                     request_timeout=OPERATION_TIMEOUT_SECS)
        got = {tp.partition: future.result(timeout=OPERATION_TIMEOUT_SECS).offset
               for tp, future in futures.items()}
        assert got == want, name


def test_confluent_admin_max_timestamp(module_broker, timeline_topic):
    """ListOffsets MAX_TIMESTAMP (KIP-734) answers with the first record carrying a
    partition's largest timestamp, as Kafka 3.8+ does, not its batch's last offset:
    partition 3's records arrive out of order in one batch."""
    admin = ck_admin(module_broker.bootstrap)
    futures = admin.list_offsets(
        {CkTopicPartition(timeline_topic, p): OffsetSpec.max_timestamp() for p in TIMELINE},
        request_timeout=OPERATION_TIMEOUT_SECS)
    got = {tp.partition: (f.result(timeout=OPERATION_TIMEOUT_SECS).offset,
                          f.result(timeout=OPERATION_TIMEOUT_SECS).timestamp)
           for tp, f in futures.items()}
    want = {}
    for p, timestamps in TIMELINE.items():
        if timestamps:
            want[p] = (timestamps.index(max(timestamps)), max(timestamps))
    assert {p: got[p] for p in want} == want
    assert got[3] == (4, T0 + 5000)
    assert got[2][0] == -1


def test_kafka_python_beginning_and_end_offsets(module_broker, timeline_topic):
    consumer = KafkaConsumer(bootstrap_servers=module_broker.bootstrap)
    try:
        partitions = [KpTopicPartition(timeline_topic, p) for p in TIMELINE]
        assert consumer.beginning_offsets(partitions) == {tp: 0 for tp in partitions}
        assert consumer.end_offsets(partitions) == {
            tp: len(TIMELINE[tp.partition]) for tp in partitions
        }
    finally:
        consumer.close()


def partition_0_watermarks(bootstrap, topic):
    """The low and high watermarks of the topic's partition 0."""
    consumer = ck_consumer(bootstrap)
    try:
        return consumer.get_watermark_offsets(CkTopicPartition(topic, 0),
                                              timeout=OPERATION_TIMEOUT_SECS)
    finally:
        consumer.close()


def test_timestamps_out_of_range_are_refused(module_broker):
    """KIP-937: under CreateTime, a record more than `message.timestamp.after.max.ms` ahead
    of the broker's clock (Kafka 4's default: one hour) or more than
    `message.timestamp.before.max.ms` behind it is refused with INVALID_TIMESTAMP, and
    nothing of it is stored."""
    topic = unique_name("timestamps")
    ck_create_topic(module_broker.bootstrap, topic, 1,
                    config={"message.timestamp.before.max.ms": "600000"})
    producer = ck_producer(module_broker.bootstrap, **{"linger.ms": 0})
    outcomes = {}

    def on_delivery(error, message):
        outcomes[message.value()] = error

    now = int(time.time() * 1000)
    hour = 3_600_000
    cases = {
        b"now": now,
        b"five minutes ago": now - 300_000,
        b"two hours ahead": now + 2 * hour,
        b"one day ago": now - 24 * hour,
    }
    for value, timestamp in cases.items():
        producer.produce(topic, value=value, timestamp=timestamp, on_delivery=on_delivery)
        producer.flush(OPERATION_TIMEOUT_SECS)
    assert outcomes[b"now"] is None and outcomes[b"five minutes ago"] is None, outcomes
    for refused in (b"two hours ahead", b"one day ago"):
        assert outcomes[refused] is not None, refused
        assert outcomes[refused].code() == KafkaError.INVALID_TIMESTAMP, outcomes[refused]
    assert partition_0_watermarks(module_broker.bootstrap, topic) == (0, 2)


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_compressed_batch_is_checked_record_by_record(module_broker, codec):
    """A record one day old behind a first record of now, in one compressed batch: its
    header (first timestamp now, max timestamp now) shows nothing wrong, so only a broker
    that decompresses the batch and checks every record, as Kafka does, refuses it. The
    whole batch is refused (INVALID_TIMESTAMP for both records) and nothing is stored.
    The values are 4 KiB of one byte: librdkafka sends a batch uncompressed when
    compression would not make it smaller."""
    topic = unique_name(f"timestamps-{codec}")
    ck_create_topic(module_broker.bootstrap, topic, 1,
                    config={"message.timestamp.before.max.ms": "600000"})
    producer = ck_producer(module_broker.bootstrap,
                           **{"linger.ms": 200, "compression.type": codec})
    outcomes = {}

    def on_delivery(error, message):
        outcomes[message.value().split(b"|")[0]] = error

    now = int(time.time() * 1000)
    pad = b"|" + b"x" * 4096
    producer.produce(topic, value=b"now" + pad, timestamp=now, on_delivery=on_delivery)
    producer.produce(topic, value=b"one day ago" + pad, timestamp=now - 24 * 3_600_000,
                     on_delivery=on_delivery)
    producer.flush(OPERATION_TIMEOUT_SECS)
    for value in (b"now", b"one day ago"):
        assert outcomes[value] is not None, value
        assert outcomes[value].code() == KafkaError.INVALID_TIMESTAMP, outcomes[value]
    assert partition_0_watermarks(module_broker.bootstrap, topic) == (0, 0)
