"""Consumer groups rebalancing while records flow: members join and leave, commits hand over.

For each client (confluent-kafka and kafka-python) and each rebalance protocol (eager, the
default `range` assignor, and KIP-429 incremental `cooperative-sticky`), one scenario:

  a producer keeps sending numbered records to a 6-partition topic; member 1 joins, member 2
  joins (3/3), member 3 joins (2/2/2); member 1, the group leader, leaves (3/3); member 4 joins
  (2/2/2); the producer stops and the group drains.

Every member polls in its own thread and, after processing each poll, commits what it read
synchronously (at-least-once). A ledger records, in one order, what each member was assigned,
read and committed, and checks as it goes that:

- a member reads only partitions it owns, and no partition is assigned to two members at once;
- within one ownership, a member reads offsets one after another (no gap, no rewind);
- a member that takes a partition over starts exactly at the offset last committed for it, so
  duplicates arise only at a rebalance, and only what was read but not yet committed;
- committed offsets never go backwards.

At the end every acknowledged record was read at least once, and the group's committed offsets
(asked of the broker by a client outside the group) equal the partitions' end offsets. With
cooperative-sticky, a join also moves only the partitions the newcomer gets, and a leave only
the leaver's partitions.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import KafkaException, TopicPartition as CkTopicPartition
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError as KpKafkaError
from kafka.structs import OffsetAndMetadata

from support import (
    OPERATION_TIMEOUT_SECS,
    ck_consumer,
    ck_create_topic,
    ck_producer,
    index_of,
    record,
    unique_name,
)

PARTITION_COUNT = 6
# Short heartbeats so members learn of a rebalance quickly; the session timeout stays above
# Kafka's group.min.session.timeout.ms (6 s). As in test_groups.py.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 500
CK_FAST_GROUP = {"session.timeout.ms": SESSION_TIMEOUT_MS,
                 "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS}

# The producer sends BURST records every BURST_INTERVAL_SECS: a few hundred a second, enough
# that every partition has records in flight at every rebalance.
BURST = 5
BURST_INTERVAL_SECS = 0.02
POLL_TIMEOUT_SECS = 0.2
MAX_POLL_RECORDS = 500

# A rebalance takes a heartbeat or two plus a JoinGroup/SyncGroup round (two for cooperative).
REBALANCE_TIMEOUT_SECS = 20.0
# After each rebalance, every member reads this many records and commits before the next step.
PROGRESS_RECORDS = 50
PROGRESS_TIMEOUT_SECS = 15.0
DRAIN_TIMEOUT_SECS = 30.0
THREAD_STOP_TIMEOUT_SECS = 20.0


# ---- the ledger ------------------------------------------------------------------------------

class Ledger:
    """What every member was assigned, read and committed, in one order, checked as it arrives.

    Members call it from their own threads (kafka-python: from its IO thread while the member
    blocks in poll), always before acting on what they report: a member records a revocation
    before it rejoins, an assignment before it reads, a commit right after the broker accepts
    it, and `left` before it closes. So the order here is an order the broker saw too, and a
    rule broken here is a rule broken on the wire. Violations are collected, not raised: the
    member threads must keep running, and the test asserts on them at the end.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.events = []  # (member, kind, frozenset of partitions), kind assigned|revoked|lost
        self.owned = defaultdict(set)
        # Partitions a member was assigned and has not read from since: its next read of one
        # of them is a (re)start, which must be at the committed offset.
        self._fresh = defaultdict(set)
        self._next_offset = {}  # (member, partition) -> the offset it must read next
        self._last_reader = {}  # partition -> the member that read it last
        self.committed = {}  # partition -> the last offset the broker accepted for it
        self.consumed = defaultdict(dict)  # partition -> offset -> record index
        self.reads = Counter()  # member -> records read
        self.commits = Counter()  # member -> accepted commits
        self.commit_failures = []  # (member, error)
        self.handovers = []  # (partition, from member, to member, offset)
        self.duplicates = 0
        self.violations = []

    def _violation(self, message: str):
        self.violations.append(message)

    def mark(self) -> int:
        with self._lock:
            return len(self.events)

    def events_since(self, mark: int, member: str) -> list:
        with self._lock:
            return [e for e in self.events[mark:] if e[0] == member]

    def ownership(self, members=None) -> dict:
        """Member -> the partitions it owns now; every member ever seen when `members` is None."""
        with self._lock:
            names = sorted(self.owned) if members is None else members
            return {m: frozenset(self.owned[m]) for m in names}

    def progress(self) -> tuple[Counter, Counter]:
        with self._lock:
            return Counter(self.reads), Counter(self.commits)

    def committed_offsets(self) -> dict:
        with self._lock:
            return {p: self.committed.get(p, 0) for p in range(PARTITION_COUNT)}

    def assigned(self, member: str, partitions: set):
        with self._lock:
            self.events.append((member, "assigned", frozenset(partitions)))
            for p in sorted(partitions):
                holders = [m for m, owned in self.owned.items() if m != member and p in owned]
                if holders:
                    self._violation(f"partition {p} assigned to {member} while {holders} "
                                    "still own it")
            self.owned[member] |= partitions
            self._fresh[member] |= partitions

    def revoked(self, member: str, partitions: set, kind: str = "revoked"):
        with self._lock:
            self.events.append((member, kind, frozenset(partitions)))
            if kind == "lost":
                # Only a member the broker fenced (session expiry, UNKNOWN_MEMBER_ID,
                # ILLEGAL_GENERATION on a heartbeat) loses partitions; these members heartbeat
                # every 500 ms.
                self._violation(f"{member} lost partitions {sorted(partitions)}")
            self.owned[member] -= partitions
            self._fresh[member] -= partitions

    def left(self, member: str):
        with self._lock:
            self.owned[member].clear()
            self._fresh[member].clear()

    def read(self, member: str, partition: int, offset: int, index: int):
        with self._lock:
            self.reads[member] += 1
            if partition not in self.owned[member]:
                self._violation(f"{member} read partition {partition} offset {offset} "
                                f"without owning it (owns {sorted(self.owned[member])})")
            previous = self._last_reader.get(partition)
            own_next = self._next_offset.get((member, partition))
            if partition in self._fresh[member]:
                self._fresh[member].discard(partition)
                committed = self.committed.get(partition, 0)  # nothing committed: earliest
                if previous is not None and previous != member:
                    self.handovers.append((partition, previous, member, offset))
                # A member given back a partition it read last may also keep its position
                # (kafka-python keeps the state of partitions in both the old and new
                # assignment); any other (re)start is at the committed offset.
                if offset != committed and not (previous == member and offset == own_next):
                    self._violation(
                        f"partition {partition}: {member} started at offset {offset} when "
                        f"assigned it (last read by {previous}), but the committed offset "
                        f"was {committed}")
            elif offset != own_next:
                self._violation(
                    f"partition {partition}: {member} read offset {offset} right after "
                    f"{own_next - 1 if own_next is not None else None}, with no rebalance "
                    "in between")
            self._next_offset[(member, partition)] = offset + 1
            self._last_reader[partition] = member
            seen = self.consumed[partition].get(offset)
            if seen is not None:
                self.duplicates += 1
                if seen != index:
                    self._violation(f"partition {partition} offset {offset} read as record "
                                    f"{index}, earlier as record {seen}")
            self.consumed[partition][offset] = index

    def commit_accepted(self, member: str, offsets: dict):
        with self._lock:
            self.commits[member] += 1
            for partition, offset in offsets.items():
                before = self.committed.get(partition, 0)
                if offset < before:
                    self._violation(f"partition {partition}: {member} committed {offset}, "
                                    f"behind the committed {before}")
                self.committed[partition] = offset

    def commit_failed(self, member: str, error: str):
        with self._lock:
            self.commit_failures.append((member, error))


# ---- members and the producer ----------------------------------------------------------------

class Member(threading.Thread):
    """One group member in its own thread: poll, record what was read, commit it, repeat.

    It commits, after each poll, the next offset of every partition it read and still owns;
    a commit the broker refuses (a rebalance is under way) stays pending for the next round,
    and is dropped for partitions revoked meanwhile: their new owner reads those records again.
    """

    def __init__(self, name: str, ledger: Ledger, bootstrap: str, topic: str, group: str,
                 cooperative: bool):
        super().__init__(name=name, daemon=True)
        self.ledger = ledger
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.cooperative = cooperative
        self.stop_requested = threading.Event()
        self.error: BaseException | None = None
        self.owned: set[int] = set()
        self.pending: dict[int, int] = {}  # partition -> offset to commit
        self.closing = False

    def run(self):
        try:
            self._open()
            while not self.stop_requested.is_set():
                for partition, offset, value in self._poll():
                    self.ledger.read(self.name, partition, offset, index_of(value))
                    self.pending[partition] = offset + 1
                self.pending = {p: o for p, o in self.pending.items() if p in self.owned}
                if self.pending:
                    accepted, error = self._commit(dict(self.pending))
                    if accepted:
                        self.ledger.commit_accepted(self.name, accepted)
                        for partition, offset in accepted.items():
                            if self.pending.get(partition) == offset:
                                del self.pending[partition]
                    if error is not None:
                        self.ledger.commit_failed(self.name, error)
        except BaseException as error:  # noqa: BLE001 - the test thread reports it
            self.error = error
        finally:
            # Recorded before close() sends LeaveGroup, so before anyone takes these over.
            self.closing = True
            self.ledger.left(self.name)
            try:
                self._close()
            except BaseException as error:  # noqa: BLE001
                self.error = self.error or error

    def leave(self):
        """Stops polling and closes (LeaveGroup); waits until the thread has ended."""
        self.stop_requested.set()
        self.join(THREAD_STOP_TIMEOUT_SECS)
        assert not self.is_alive(), (
            f"{self.name} did not close within {THREAD_STOP_TIMEOUT_SECS}s")

    # Rebalance callbacks, from whichever thread the client calls them on.
    def _on_assigned(self, partitions: set[int]):
        if self.closing:
            return
        self.owned |= partitions
        self.ledger.assigned(self.name, partitions)

    def _on_revoked(self, partitions: set[int], kind: str = "revoked"):
        if self.closing:
            return
        self.owned -= partitions
        for partition in partitions:
            self.pending.pop(partition, None)
        self.ledger.revoked(self.name, partitions, kind)

    def _open(self):
        raise NotImplementedError

    def _poll(self) -> list[tuple[int, int, bytes]]:
        raise NotImplementedError

    def _commit(self, offsets: dict) -> tuple[dict, str | None]:
        """Commits synchronously; returns (the offsets the broker accepted, an error or None)."""
        raise NotImplementedError

    def _close(self):
        raise NotImplementedError


class CkMember(Member):
    def _open(self):
        strategy = "cooperative-sticky" if self.cooperative else "range"
        self.consumer = ck_consumer(self.bootstrap, self.group, **CK_FAST_GROUP,
                                    **{"partition.assignment.strategy": strategy})
        # confluent-kafka calls (incremental_)assign / unassign itself after these callbacks.
        self.consumer.subscribe(
            [self.topic],
            on_assign=lambda _, tps: self._on_assigned({tp.partition for tp in tps}),
            on_revoke=lambda _, tps: self._on_revoked({tp.partition for tp in tps}),
            on_lost=lambda _, tps: self._on_revoked({tp.partition for tp in tps}, "lost"),
        )

    def _poll(self):
        messages = self.consumer.consume(num_messages=MAX_POLL_RECORDS, timeout=POLL_TIMEOUT_SECS)
        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
        return [(m.partition(), m.offset(), m.value()) for m in messages]

    def _commit(self, offsets):
        try:
            result = self.consumer.commit(
                offsets=[CkTopicPartition(self.topic, p, o) for p, o in offsets.items()],
                asynchronous=False)
        except KafkaException as error:
            return {}, error.args[0].name()
        accepted = {tp.partition: tp.offset for tp in result if tp.error is None}
        errors = sorted({tp.error.name() for tp in result if tp.error is not None})
        return accepted, ",".join(errors) or None

    def _close(self):
        if hasattr(self, "consumer"):
            self.consumer.close()


class CkConsumerProtocolMember(CkMember):
    """A confluent-kafka member of a KIP-848 group (`group.protocol=consumer`): the
    coordinator assigns, and times heartbeats and sessions (Kafka's defaults: 5 s, 45 s)."""

    def _open(self):
        self.consumer = ck_consumer(self.bootstrap, self.group, **{"group.protocol": "consumer"})
        self.consumer.subscribe(
            [self.topic],
            on_assign=lambda _, tps: self._on_assigned({tp.partition for tp in tps}),
            on_revoke=lambda _, tps: self._on_revoked({tp.partition for tp in tps}),
            on_lost=lambda _, tps: self._on_revoked({tp.partition for tp in tps}, "lost"),
        )


class KpMember(Member):
    def _open(self):
        member = self

        class Listener(ConsumerRebalanceListener):
            # kafka-python calls these on its IO thread while the member blocks in poll().
            def on_partitions_assigned(self, assigned):
                member._on_assigned({tp.partition for tp in assigned})

            def on_partitions_revoked(self, revoked):
                member._on_revoked({tp.partition for tp in revoked})

            def on_partitions_lost(self, lost):
                member._on_revoked({tp.partition for tp in lost}, "lost")

        assignor = CooperativeStickyAssignor if self.cooperative else RangePartitionAssignor
        self.consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            partition_assignment_strategy=(assignor,))
        self.consumer.subscribe([self.topic], listener=Listener())

    def _poll(self):
        batches = self.consumer.poll(timeout_ms=int(POLL_TIMEOUT_SECS * 1000),
                                     max_records=MAX_POLL_RECORDS)
        return [(tp.partition, r.offset, r.value) for tp, records in batches.items()
                for r in records]

    def _commit(self, offsets):
        try:
            self.consumer.commit({KpTopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                                  for p, o in offsets.items()})
        except KpKafkaError as error:
            # CommitFailedError wraps the broker's error (RebalanceInProgress, ...).
            return {}, f"{type(error).__name__}{error.args!r}"
        return offsets, None

    def _close(self):
        if hasattr(self, "consumer"):
            self.consumer.close(autocommit=False)


class Feeder(threading.Thread):
    """Sends record(0), record(1), ... at a steady rate until stopped, then flushes; keeps
    partition -> offset -> record index for every record the broker acknowledged."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(name="feeder", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.stop_requested = threading.Event()
        self.error: BaseException | None = None
        self.sent = 0
        self._lock = threading.Lock()
        self.acked = defaultdict(dict)
        self.delivery_errors = []

    def ack(self, partition: int, offset: int, index: int):
        with self._lock:
            self.acked[partition][offset] = index

    def fail(self, error):
        with self._lock:
            self.delivery_errors.append(error)

    def acked_count(self) -> int:
        with self._lock:
            return sum(len(offsets) for offsets in self.acked.values())

    def run(self):
        try:
            send, flush = self._open()
            while not self.stop_requested.is_set():
                for _ in range(BURST):
                    send(self.sent)
                    self.sent += 1
                time.sleep(BURST_INTERVAL_SECS)
            flush()
        except BaseException as error:  # noqa: BLE001 - the test thread reports it
            self.error = error

    def finish(self) -> dict:
        """Stops sending, waits for every acknowledgement; returns partition -> end offset."""
        self.stop_requested.set()
        self.join(THREAD_STOP_TIMEOUT_SECS + OPERATION_TIMEOUT_SECS)
        assert not self.is_alive(), "the producer did not flush in time"
        assert self.error is None, f"the producer failed: {self.error!r}"
        assert not self.delivery_errors, (
            f"{len(self.delivery_errors)} delivery errors, first {self.delivery_errors[0]!r}")
        assert self.acked_count() == self.sent, f"{self.acked_count()} acked of {self.sent}"
        ends = {}
        for partition in range(PARTITION_COUNT):
            offsets = sorted(self.acked.get(partition, {}))
            assert offsets == list(range(len(offsets))), (
                f"partition {partition}: acknowledged offsets are not 0, 1, 2, ...")
            ends[partition] = len(offsets)
        return ends

    def _open(self):
        raise NotImplementedError


class CkFeeder(Feeder):
    def _open(self):
        producer = ck_producer(self.bootstrap)

        def on_delivery(error, message):
            if error is not None:
                self.fail(error)
            else:
                self.ack(message.partition(), message.offset(), index_of(message.value()))

        def send(index):
            key, value = record(index)
            producer.produce(self.topic, key=key, value=value, on_delivery=on_delivery)
            producer.poll(0)

        def flush():
            remaining = producer.flush(OPERATION_TIMEOUT_SECS)
            assert remaining == 0, f"{remaining} records unacknowledged after flush"

        return send, flush


class KpFeeder(Feeder):
    def _open(self):
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=20)

        def send(index):
            key, value = record(index)
            future = producer.send(self.topic, key=key, value=value)
            future.add_callback(lambda md, i=index: self.ack(md.partition, md.offset, i))
            future.add_errback(self.fail)

        def flush():
            try:
                producer.flush(timeout=OPERATION_TIMEOUT_SECS)
            finally:
                producer.close()

        return send, flush


# ---- waiting and checking --------------------------------------------------------------------

def await_state(predicate, timeout_secs: float, what: str, ledger: Ledger, threads):
    """Polls `predicate` until it returns something truthy and returns that; fails at once if
    a member or the producer thread died, and with the ledger's violations on timeout."""
    deadline = time.monotonic() + timeout_secs
    while True:
        for thread in threads:
            assert thread.error is None, f"{thread.name} failed: {thread.error!r}"
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, (
            f"timed out after {timeout_secs}s waiting for {what}; last value {value!r}; "
            f"ownership {ledger.ownership()}; "
            f"violations so far {ledger.violations[:5]}")
        time.sleep(0.05)


def await_even(ledger: Ledger, members, feeder) -> dict:
    """Waits until each member owns PARTITION_COUNT / len(members) partitions and together
    they own each once; returns member name -> partitions."""
    names = [m.name for m in members]
    share = PARTITION_COUNT // len(members)

    def even():
        owned = ledger.ownership(names)
        every = sorted(p for partitions in owned.values() for p in partitions)
        settled = every == list(range(PARTITION_COUNT)) and all(
            len(partitions) == share for partitions in owned.values())
        return owned if settled else None

    return await_state(even, REBALANCE_TIMEOUT_SECS,
                       f"{'/'.join([str(share)] * len(names))} assignment over {names}",
                       ledger, [*members, feeder])


def await_progress(ledger: Ledger, members, feeder):
    """Waits until every member read PROGRESS_RECORDS more records and committed since now, so
    the next rebalance hands over partitions with commits behind them."""
    reads, commits = ledger.progress()

    def progressed():
        now_reads, now_commits = ledger.progress()
        return all(now_reads[m.name] - reads[m.name] >= PROGRESS_RECORDS
                   and now_commits[m.name] > commits[m.name] for m in members)

    await_state(progressed, PROGRESS_TIMEOUT_SECS,
                f"{PROGRESS_RECORDS} records read and a commit by each of "
                f"{[m.name for m in members]}", ledger, [*members, feeder])


def check_incremental_join(ledger: Ledger, mark: int, before: dict, after: dict, newcomer: str):
    """Cooperative: on a join, members keep what they had and give up only what the newcomer
    gets; nothing is revoked and handed back, nothing moves between old members."""
    handed = set()
    for member, had in before.items():
        gained = [p for m, kind, ps in ledger.events_since(mark, member)
                  if kind == "assigned" for p in ps]
        revoked = {p for m, kind, ps in ledger.events_since(mark, member)
                   if kind == "revoked" for p in ps}
        assert not gained, f"{member} was assigned {gained} when {newcomer} joined"
        assert after[member] <= had, f"{member}: {sorted(had)} -> {sorted(after[member])}"
        assert revoked == had - after[member], (
            f"{member} revoked {sorted(revoked)} but kept {sorted(after[member])} of "
            f"{sorted(had)}")
        handed |= revoked
    assert handed == after[newcomer], (
        f"old members gave up {sorted(handed)}, {newcomer} got {sorted(after[newcomer])}")


def check_incremental_leave(ledger: Ledger, mark: int, before: dict, after: dict, leaver: str):
    """Cooperative: on a leave, the others keep what they had and take only the leaver's."""
    taken = set()
    for member, partitions in after.items():
        revoked = [p for m, kind, ps in ledger.events_since(mark, member)
                   if kind != "assigned" for p in ps]
        assert not revoked, f"{member} gave up {revoked} when {leaver} left"
        assert before[member] <= partitions, (
            f"{member}: {sorted(before[member])} -> {sorted(partitions)}")
        taken |= partitions - before[member]
    assert taken == before[leaver], (
        f"{leaver} owned {sorted(before[leaver])}, the others took {sorted(taken)}")


def run_scenario(bootstrap: str, new_member, feeder: Feeder, cooperative: bool,
                 broker_view) -> None:
    """Joins, leaves and rejoins while `feeder` produces, drains, and checks everything.

    `new_member(name, ledger)` makes a member thread; `broker_view()` returns, asked of the
    broker from outside the group, (partition -> committed offset, partition -> end offset).
    """
    ledger = Ledger()
    members = []
    active = []

    def join(name: str) -> Member:
        member = new_member(name, ledger)
        members.append(member)
        before = ledger.ownership([m.name for m in active])
        mark = ledger.mark()
        member.start()
        active.append(member)
        after = await_even(ledger, active, feeder)
        if cooperative and before:
            check_incremental_join(ledger, mark, before, after, name)
        await_progress(ledger, active, feeder)
        return member

    feeder.start()
    try:
        await_state(lambda: feeder.acked_count() > 0, OPERATION_TIMEOUT_SECS,
                    "the first acknowledged record", ledger, [feeder])
        leader = join("member-1")  # 6 partitions
        join("member-2")  # 3/3
        join("member-3")  # 2/2/2

        # The first member, the group leader, leaves: the others take over all six.
        before = ledger.ownership([m.name for m in active])
        mark = ledger.mark()
        leader.leave()
        active.remove(leader)
        after = await_even(ledger, active, feeder)
        if cooperative:
            check_incremental_leave(ledger, mark, before, after, leader.name)
        await_progress(ledger, active, feeder)

        join("member-4")  # 2/2/2 again

        ends = feeder.finish()
        # Drain: the members read the rest and commit up to the end of every partition.
        await_state(lambda: ledger.committed_offsets() == ends, DRAIN_TIMEOUT_SECS,
                    f"commits up to the end offsets {ends}", ledger, [*active, feeder])
    finally:
        feeder.stop_requested.set()
        for member in members:
            member.stop_requested.set()
        for member in members:
            member.join(THREAD_STOP_TIMEOUT_SECS)

    for member in members:
        assert not member.is_alive(), f"{member.name} did not close"
        assert member.error is None, f"{member.name} failed: {member.error!r}"
    assert not ledger.violations, (
        f"{len(ledger.violations)} violations, first ones:\n" + "\n".join(ledger.violations[:10]))
    # Refusals while a rebalance is under way (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION) are
    # part of at-least-once; UNKNOWN_MEMBER_ID is not: these members never stop heartbeating.
    fenced = [(member, error) for member, error in ledger.commit_failures
              if "unknownmemberid" in error.lower().replace("_", "")]
    assert not fenced, f"commits refused as from an unknown member: {fenced}"

    # At least once: every acknowledged record was read, and at its acknowledged offset.
    for partition in range(PARTITION_COUNT):
        acked = feeder.acked.get(partition, {})
        read = ledger.consumed.get(partition, {})
        missing = sorted(set(acked) - set(read))
        assert not missing, (
            f"partition {partition}: {len(missing)} of {len(acked)} acknowledged offsets "
            f"never read, first {missing[:10]}")
        wrong = [o for o in acked if read[o] != acked[o]]
        assert not wrong, f"partition {partition}: offsets {wrong[:10]} read as other records"
        assert set(read) <= set(acked), f"partition {partition}: read offsets never acked"
    # Member 1 owned every partition and left, so each one changed hands at least once.
    handed_over = {partition for partition, *_ in ledger.handovers}
    assert handed_over == set(range(PARTITION_COUNT)), (
        f"only partitions {sorted(handed_over)} were read by a new owner")

    committed, end_offsets = broker_view()
    assert end_offsets == ends, f"broker end offsets {end_offsets}, acknowledged {ends}"
    assert committed == ends, f"broker committed offsets {committed}, end offsets {ends}"


# ---- the tests --------------------------------------------------------------------------------

def ck_broker_view(bootstrap: str, topic: str, group: str):
    def view():
        outsider = ck_consumer(bootstrap, group)  # never subscribes: OffsetFetch only
        try:
            partitions = [CkTopicPartition(topic, p) for p in range(PARTITION_COUNT)]
            committed = {tp.partition: tp.offset for tp in
                         outsider.committed(partitions, timeout=OPERATION_TIMEOUT_SECS)}
            ends = {tp.partition: outsider.get_watermark_offsets(
                tp, timeout=OPERATION_TIMEOUT_SECS)[1] for tp in partitions}
            return committed, ends
        finally:
            outsider.close()

    return view


def kp_broker_view(bootstrap: str, topic: str, group: str):
    def view():
        outsider = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                 enable_auto_commit=False)
        try:
            partitions = [KpTopicPartition(topic, p) for p in range(PARTITION_COUNT)]
            committed = {tp.partition: outsider.committed(tp) for tp in partitions}
            ends = {tp.partition: offset for tp, offset in outsider.end_offsets(partitions).items()}
            return committed, ends
        finally:
            outsider.close(autocommit=False)

    return view


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cooperative", [False, True], ids=["eager-range", "cooperative-sticky"])
def test_confluent_group_rebalances_on_join_and_leave(module_broker, cooperative):
    bootstrap = module_broker.bootstrap
    topic = unique_name("ck-rebalance")
    group = unique_name("ck-rebalance")
    ck_create_topic(bootstrap, topic, PARTITION_COUNT)
    run_scenario(
        bootstrap,
        lambda name, ledger: CkMember(name, ledger, bootstrap, topic, group, cooperative),
        CkFeeder(bootstrap, topic),
        cooperative,
        ck_broker_view(bootstrap, topic, group),
    )


# KIP-848's consumer protocol moves partitions incrementally, as cooperative-sticky does, so
# the scenario checks that a join or leave moves only the partitions that change hands. A
# rebalance takes up to two of the coordinator's 5 s heartbeat intervals here.
@pytest.mark.timeout(240)
def test_confluent_group_rebalances_with_the_consumer_protocol(module_broker):
    bootstrap = module_broker.bootstrap
    topic = unique_name("ck-kip848")
    group = unique_name("ck-kip848")
    ck_create_topic(bootstrap, topic, PARTITION_COUNT)
    run_scenario(
        bootstrap,
        lambda name, ledger: CkConsumerProtocolMember(name, ledger, bootstrap, topic, group, True),
        CkFeeder(bootstrap, topic),
        True,
        ck_broker_view(bootstrap, topic, group),
    )


# kafka-python 3 has a KIP-429 assignor (kafka.coordinator.assignors.cooperative_sticky), so
# kafka-python runs the cooperative variant too.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("cooperative", [False, True], ids=["eager-range", "cooperative-sticky"])
def test_kafka_python_group_rebalances_on_join_and_leave(module_broker, cooperative):
    bootstrap = module_broker.bootstrap
    topic = unique_name("kp-rebalance")
    group = unique_name("kp-rebalance")
    ck_create_topic(bootstrap, topic, PARTITION_COUNT)
    run_scenario(
        bootstrap,
        lambda name, ledger: KpMember(name, ledger, bootstrap, topic, group, cooperative),
        KpFeeder(bootstrap, topic),
        cooperative,
        kp_broker_view(bootstrap, topic, group),
    )
