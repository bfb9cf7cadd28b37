"""kill -9: whatever the broker acknowledged survives the process dying without warning.

A killed process leaves its writes in the OS page cache, so Kafka keeps every acknowledged
record and commit across a process crash even without fsync; so must sluice.
"""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from support import (
    OPERATION_TIMEOUT_SECS,
    check_round_trip,
    ck_consume,
    ck_consumer,
    ck_create_topic,
    ck_produce,
    ck_producer,
    record,
    unique_name,
)

PARTITION_COUNT = 3


@pytest.mark.timeout(180)
def test_acknowledged_records_and_commits_survive_kill_9(broker):
    topic = unique_name("crash")
    group = unique_name("crash")
    ck_create_topic(broker.bootstrap, topic, PARTITION_COUNT)
    count = 20_000
    produced = ck_produce(ck_producer(broker.bootstrap, acks="all"), topic,
                          [record(i) for i in range(count)])

    committed = [TopicPartition(topic, p, len(produced.get(p, [])) // 2, f"half of {p}")
                 for p in range(PARTITION_COUNT)]
    consumer = ck_consumer(broker.bootstrap, group)
    try:
        consumer.commit(offsets=committed, asynchronous=False)
    finally:
        consumer.close()

    broker.kill()
    broker.start()

    consumer = ck_consumer(broker.bootstrap, group)
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(PARTITION_COUNT)],
                                 timeout=OPERATION_TIMEOUT_SECS)
        assert [(tp.partition, tp.offset, tp.metadata) for tp in got] == [
            (tp.partition, tp.offset, tp.metadata) for tp in committed
        ]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                         for p in range(PARTITION_COUNT)])
        check_round_trip(produced, ck_consume(consumer, count), count)
    finally:
        consumer.close()
