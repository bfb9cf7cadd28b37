"""Consumer groups: assignment across members, commits, and resuming after a broker restart.

Committed offsets are durable: after a clean restart a consumer in the same group starts at the
committed offsets and sees only records produced since.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition as CkTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KpTopicPartition
from kafka.structs import OffsetAndMetadata

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

PARTITION_COUNT = 6
MEMBER_COUNT = 3
ASSIGNMENT_TIMEOUT_SECS = 30.0
# Short heartbeats so members learn of a rebalance quickly; the session timeout stays above
# Kafka's group.min.session.timeout.ms (6 s).
FAST_GROUP = {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 500}


def assigned(consumer) -> list[int]:
    return sorted(tp.partition for tp in consumer.assignment())


def await_even_assignment(consumers):
    """Polls every member until each owns PARTITION_COUNT / MEMBER_COUNT partitions and together
    they own each partition once. librdkafka runs rebalance callbacks only inside poll()."""
    share = PARTITION_COUNT // len(consumers)
    deadline = time.monotonic() + ASSIGNMENT_TIMEOUT_SECS
    while True:
        for consumer in consumers:
            message = consumer.poll(0.1)
            # The topic is empty until the assignment settles, so nothing should arrive.
            assert message is None or message.error() is not None, message
        assignments = [assigned(c) for c in consumers]
        owned = sorted(p for a in assignments for p in a)
        if owned == list(range(PARTITION_COUNT)) and all(len(a) == share for a in assignments):
            return assignments
        assert time.monotonic() < deadline, (
            f"no even assignment within {ASSIGNMENT_TIMEOUT_SECS}s: {assignments}"
        )


def consume_round_robin(consumers, count, timeout_secs=60.0):
    """Polls each member in turn until `count` records arrived in all; returns, per member,
    partition -> [(offset, key, value)]."""
    per_member = [dict() for _ in consumers]
    total = 0
    deadline = time.monotonic() + timeout_secs
    while total < count:
        assert time.monotonic() < deadline, f"consumed {total} of {count} in {timeout_secs}s"
        for consumer, got in zip(consumers, per_member, strict=True):
            for message in consumer.consume(num_messages=1000, timeout=0.1):
                assert message.error() is None, message.error()
                got.setdefault(message.partition(), []).append(
                    (message.offset(), message.key(), message.value())
                )
                total += 1
    return per_member


def committed_offsets(consumer, topic) -> dict:
    partitions = [CkTopicPartition(topic, p) for p in range(PARTITION_COUNT)]
    return {tp.partition: tp.offset
            for tp in consumer.committed(partitions, timeout=OPERATION_TIMEOUT_SECS)}


@pytest.mark.timeout(180)
def test_confluent_group_splits_partitions_and_resumes_after_restart(broker):
    topic = unique_name("ck-group")
    group = unique_name("ck-group")
    ck_create_topic(broker.bootstrap, topic, PARTITION_COUNT)

    members = [ck_consumer(broker.bootstrap, group, **FAST_GROUP) for _ in range(MEMBER_COUNT)]
    for member in members:
        member.subscribe([topic])
    try:
        assignments = await_even_assignment(members)

        first_count = 3_000
        produced = ck_produce(ck_producer(broker.bootstrap), topic,
                              [record(i) for i in range(first_count)])
        per_member = consume_round_robin(members, first_count)
        consumed = {}
        for assignment, got in zip(assignments, per_member, strict=True):
            # Each member reads only the partitions it owns.
            assert set(got) <= set(assignment), (assignment, sorted(got))
            consumed.update(got)
        check_round_trip(produced, consumed, first_count)

        for member in members:
            member.commit(asynchronous=False)
        ends = {p: len(produced.get(p, [])) for p in range(PARTITION_COUNT)}
        assert committed_offsets(members[0], topic) == ends
    finally:
        for member in members:
            member.close()

    broker.restart()

    second_count = 1_200
    produced_after = ck_produce(ck_producer(broker.bootstrap), topic,
                                [record(i) for i in range(first_count, first_count + second_count)])
    resumed = ck_consumer(broker.bootstrap, group, **FAST_GROUP)
    try:
        assert committed_offsets(resumed, topic) == ends, "commits lost across restart"
        resumed.subscribe([topic])
        consumed_after = ck_consume(resumed, second_count)
        # Only the new records: each partition resumes at its committed offset.
        check_round_trip(produced_after, consumed_after, second_count)
        for partition, records in consumed_after.items():
            assert records[0][0] == ends[partition], f"partition {partition}"
    finally:
        resumed.close()


@pytest.mark.timeout(180)
def test_kafka_python_group_resumes_after_restart(broker):
    topic = unique_name("kp-group")
    group = unique_name("kp-group")
    ck_create_topic(broker.bootstrap, topic, PARTITION_COUNT)

    def produce(indexes):
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
        try:
            records = [record(i) for i in indexes]
            futures = [((k, v), producer.send(topic, key=k, value=v)) for k, v in records]
            producer.flush(timeout=60)
            return kp_partitioned(futures)
        finally:
            producer.close()

    def consumer():
        return KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=10_000, heartbeat_interval_ms=500)

    first_count = 2_000
    produced = produce(range(first_count))
    first = consumer()
    try:
        check_round_trip(produced, kp_consume(first, first_count), first_count)
        first.commit()
        ends = {p: len(produced.get(p, [])) for p in range(PARTITION_COUNT)}
        for p in range(PARTITION_COUNT):
            assert first.committed(KpTopicPartition(topic, p)) == ends[p], f"partition {p}"
    finally:
        first.close(autocommit=False)

    broker.restart()

    second_count = 600
    produced_after = produce(range(first_count, first_count + second_count))
    resumed = consumer()
    try:
        consumed_after = kp_consume(resumed, second_count)
        check_round_trip(produced_after, consumed_after, second_count)
        for partition, records in consumed_after.items():
            assert records[0][0] == ends[partition], f"partition {partition}"
    finally:
        resumed.close(autocommit=False)


def test_confluent_assign_commits_offset_with_metadata(broker):
    topic = unique_name("ck-assign")
    group = unique_name("ck-assign")
    ck_create_topic(broker.bootstrap, topic, 2)
    ck_produce(ck_producer(broker.bootstrap), topic, [record(i) for i in range(20)],
               partition=0)

    consumer = ck_consumer(broker.bootstrap, group)
    try:
        consumer.assign([CkTopicPartition(topic, 0), CkTopicPartition(topic, 1)])
        consumer.commit(offsets=[CkTopicPartition(topic, 0, 7, "checkpoint 7 of run a")],
                        asynchronous=False)
        [p0, p1] = consumer.committed([CkTopicPartition(topic, 0), CkTopicPartition(topic, 1)],
                                      timeout=OPERATION_TIMEOUT_SECS)
        assert (p0.offset, p0.metadata) == (7, "checkpoint 7 of run a")
        assert p1.offset < 0, "partition 1 was never committed"  # OFFSET_INVALID
    finally:
        consumer.close()

    broker.restart()
    consumer = ck_consumer(broker.bootstrap, group)
    try:
        [p0] = consumer.committed([CkTopicPartition(topic, 0)], timeout=OPERATION_TIMEOUT_SECS)
        assert (p0.offset, p0.metadata) == (7, "checkpoint 7 of run a")
    finally:
        consumer.close()


def test_kafka_python_assign_commits_offset_with_metadata(module_broker):
    topic = unique_name("kp-assign")
    group = unique_name("kp-assign")
    ck_create_topic(module_broker.bootstrap, topic, 1)
    ck_produce(ck_producer(module_broker.bootstrap), topic, [record(i) for i in range(20)])

    tp = KpTopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=module_broker.bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(12, "checkpoint 12", -1)})
        committed = consumer.committed(tp, metadata=True)
        assert (committed.offset, committed.metadata) == (12, "checkpoint 12")
        assert consumer.committed(tp) == 12
    finally:
        consumer.close(autocommit=False)
