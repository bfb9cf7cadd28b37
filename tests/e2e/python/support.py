"""Helpers shared by the end-to-end tests: names, waiting, records and client set-up.

Everything here talks to the broker only through the real client libraries.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from pathlib import Path

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic

# Kafka's defaults for a broker started with no overrides (Kafka's `server.properties` names).
DEFAULT_PARTITION_COUNT = 1  # num.partitions
# Topic config -> default value as DescribeConfigs reports it (all values are strings on the wire).
TOPIC_CONFIG_DEFAULTS = {
    "retention.ms": "604800000",  # 7 days (log.retention.hours=168)
    "cleanup.policy": "delete",
    "max.message.bytes": "1048588",  # message.max.bytes: 1 MiB plus the batch overhead
    "segment.bytes": "1073741824",  # 1 GiB
}

# Kafka error codes the tests expect, as the protocol numbers them.
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_ALREADY_EXISTS = 36
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40

# A message on INVALID_REPLICATION_FACTOR must tell the user why: sluice is one node.
SINGLE_NODE_RE = r"(?i)single[- ]?node"

OPERATION_TIMEOUT_SECS = 30.0


def unique_name(prefix: str) -> str:
    """A topic or group name no other test (or earlier run on the same broker) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_until(predicate, timeout_secs: float, what: str, interval_secs: float = 0.1):
    """Polls `predicate` until it returns something truthy, and returns that.

    Exceptions from `predicate` count as "not yet" (a topic may still be propagating); the last
    one is shown if time runs out.
    """
    deadline = time.monotonic() + timeout_secs
    last_error = None
    last_value = None
    while True:
        try:
            last_value = predicate()
            if last_value:
                return last_value
        except Exception as error:  # noqa: BLE001 - reported below if it never settles
            last_error = error
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_secs}s waiting for {what}; "
                f"last value {last_value!r}, last error {last_error!r}"
            )
        time.sleep(interval_secs)


# ---- records ----------------------------------------------------------------------------------

def record(index: int) -> tuple[bytes, bytes]:
    """The (key, value) of record `index`: keys repeat, so they spread over every partition
    and several records share a key; values are unique and compressible."""
    key = f"key-{index % 997:03d}".encode()
    value = f"value-{index:08d}-".encode() + b"sluice-e2e-payload " * 3
    return key, value


def index_of(value: bytes) -> int:
    """The index `record()` encoded into a value."""
    assert value.startswith(b"value-"), value
    return int(value[6:14])


def check_round_trip(produced: dict, consumed: dict, record_count: int):
    """Checks that every produced record came back exactly once, in order per partition.

    `produced` and `consumed` map partition -> list of (offset, key, value); `produced` holds
    the offsets the broker acknowledged. Consumed offsets must be exactly the acknowledged ones
    with the same key and value, and within a partition the send order is the offset order.
    """
    produced_count = sum(len(v) for v in produced.values())
    assert produced_count == record_count, f"{produced_count} acknowledged, {record_count} sent"
    consumed_count = sum(len(v) for v in consumed.values())
    for partition, records in produced.items():
        records.sort()
        offsets = [offset for offset, _, _ in records]
        assert len(set(offsets)) == len(offsets), f"partition {partition}: an offset acked twice"
        indexes = [index_of(value) for _, _, value in records]
        assert indexes == sorted(indexes), (
            f"partition {partition}: offsets do not follow send order"
        )
    for partition in sorted(set(produced) | set(consumed)):
        want = produced.get(partition, [])
        got = consumed.get(partition, [])
        if got != want:
            # Say which record differs first rather than dumping 100k tuples.
            for position, (g, w) in enumerate(zip(got, want, strict=False)):
                if g != w:
                    raise AssertionError(
                        f"partition {partition}, record {position}: consumed {g!r}, "
                        f"acknowledged {w!r}"
                    )
            raise AssertionError(
                f"partition {partition}: consumed {len(got)} records, acknowledged {len(want)}"
            )
    assert consumed_count == record_count


# ---- confluent-kafka --------------------------------------------------------------------------

def ck_admin(bootstrap: str, **extra) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **extra})


def ck_create_topic(bootstrap: str, name: str, partitions: int, config: dict | None = None):
    admin = ck_admin(bootstrap)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=OPERATION_TIMEOUT_SECS,
        request_timeout=OPERATION_TIMEOUT_SECS,
    )
    futures[name].result(timeout=OPERATION_TIMEOUT_SECS)
    wait_until(
        lambda: _ck_partition_count(admin, name) == partitions,
        OPERATION_TIMEOUT_SECS,
        f"topic {name} with {partitions} partitions in metadata",
    )


def _ck_partition_count(admin: AdminClient, name: str) -> int:
    topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
    if topic is None or topic.error is not None:
        return -1
    return len(topic.partitions)


def ck_producer(bootstrap: str, **extra) -> confluent_kafka.Producer:
    return confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, **extra})


def ck_produce(producer: confluent_kafka.Producer, topic: str, records, **produce_args) -> dict:
    """Produces (key, value) pairs and returns partition -> [(offset, key, value)] as acked.

    Fails on any delivery error.
    """
    acked = defaultdict(list)
    errors = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)
        else:
            acked[message.partition()].append((message.offset(), message.key(), message.value()))

    sent = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery,
                                 **produce_args)
                break
            except BufferError:
                # The local queue is full: serve delivery reports to make room.
                producer.poll(0.05)
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    assert remaining == 0, f"{remaining} records still unacknowledged after flush(120)"
    assert not errors, f"{len(errors)} delivery errors, first {errors[0]!r}"
    return dict(acked)


def ck_consumer(bootstrap: str, group_id: str | None = None, **extra) -> confluent_kafka.Consumer:
    return confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group_id or unique_name("e2e-group"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **extra,
    })


def ck_consume(consumer: confluent_kafka.Consumer, count: int, timeout_secs: float = 90.0) -> dict:
    """Consumes until `count` records arrived; returns partition -> [(offset, key, value)]."""
    consumed = defaultdict(list)
    total = 0
    deadline = time.monotonic() + timeout_secs
    while total < count:
        assert time.monotonic() < deadline, (
            f"consumed {total} of {count} records in {timeout_secs}s"
        )
        for message in consumer.consume(num_messages=10_000, timeout=0.5):
            error = message.error()
            if error is not None:
                assert error.code() == confluent_kafka.KafkaError._PARTITION_EOF, error
                continue
            consumed[message.partition()].append(
                (message.offset(), message.key(), message.value())
            )
            total += 1
    return dict(consumed)


# ---- kafka-python -----------------------------------------------------------------------------

def kp_partitioned(futures_by_record) -> dict:
    """Resolves kafka-python send futures into partition -> [(offset, key, value)]."""
    acked = defaultdict(list)
    for (key, value), future in futures_by_record:
        metadata = future.get(timeout=OPERATION_TIMEOUT_SECS)
        acked[metadata.partition].append((metadata.offset, key, value))
    return dict(acked)


def kp_consume(consumer, count: int, timeout_secs: float = 120.0) -> dict:
    """Polls a kafka-python consumer until `count` records arrived."""
    consumed = defaultdict(list)
    total = 0
    deadline = time.monotonic() + timeout_secs
    while total < count:
        assert time.monotonic() < deadline, (
            f"consumed {total} of {count} records in {timeout_secs}s"
        )
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                consumed[tp.partition].append((r.offset, r.key, r.value))
                total += 1
    return dict(consumed)


BROKER_LINE = re.compile(r"^\s*broker\s+PLAINTEXT://(?P<address>\S+)$")
AWS_API_LINE = re.compile(r"^\s*aws api\s+(?P<url>http://\S+)$")


class Up:
    """`sluice up` on a solution file in `workdir`, stopped with SIGTERM.

    `bootstrap` is the broker's address and `aws_api` the Firehose API's URL (None without
    delivery streams); `env` adds environment variables (AWS settings for an S3 destination).
    """

    def __init__(self, workdir: Path, solution: str, env: dict | None = None):
        from conftest import SLUICE_BIN

        self.workdir = workdir
        (workdir / "solution.toml").write_text(solution)
        self.stderr = open(workdir / "up.stderr", "wb")
        self.process = subprocess.Popen(
            [SLUICE_BIN, "up", "solution.toml", "--data-dir", "data"],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr,
            env={**os.environ, **(env or {})},
        )
        self.aws_api = None
        self.bootstrap = self._await_up()

    def _await_up(self) -> str:
        address = None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            match = BROKER_LINE.match(line)
            if match:
                address = match.group("address")
            match = AWS_API_LINE.match(line)
            if match:
                self.aws_api = match.group("url")
            if line.startswith("Press Ctrl-C"):
                return address
        raise AssertionError(f"sluice up exited: {(self.workdir / 'up.stderr').read_text()}")

    def log(self, function: str) -> str:
        path = self.workdir / "data" / "functions" / f"{function}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr_text(self) -> str:
        return (self.workdir / "up.stderr").read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr.close()
