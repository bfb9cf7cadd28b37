//! A full disk: the broker's data folder on a small `tmpfs` fills up for real (ENOSPC from
//! the kernel) under a librdkafka producer with acks=all.
//!
//! What a user needs then, and what this checks:
//! - produces are refused with KAFKA_STORAGE_ERROR, each failure once, with no record lost
//!   and none torn: every acknowledged record reads back at its offset, while full too;
//! - the log says so once per partition when failures start, not once per refused produce;
//! - the broker restarts on a disk with no byte left and index files to rebuild (it keeps
//!   them in memory) and serves reads;
//! - an offset commit is refused with KAFKA_STORAGE_ERROR; once there is room again,
//!   commits and produces work without a restart (the metadata store, which redb refuses to
//!   use after an I/O error, is reopened), and all of it survives another restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice_testkit::{BrokerProcess, SmallDisk};

use crate::support::{client_config, create_topic, producer, read_all, SLUICE_BIN};

const TOPIC: &str = "full";
const PARTITION_COUNT: i32 = 2;
const GROUP: &str = "full-disk-group";

/// The disk: the store (about 1.5 MiB) and 1 MiB segments fill it within a few thousand
/// 1 KiB records.
const DISK_BYTES: u64 = 16 << 20;
/// Groups whose commits grow the store until the full disk refuses one.
const FILLER_GROUPS_MAX: usize = 1000;
/// A file that takes the disk's last bytes.
const BALLAST: &str = "ballast";
/// The disk once an operator made room.
const GROWN_DISK_BYTES: u64 = 64 << 20;

/// Sends per round, awaited together.
const ROUND_SENDS: usize = 200;
/// A round in which every send failed means the disk is full; this many rounds at most.
const ROUNDS_MAX: usize = 200;

/// Time to read both partitions back.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// A value: partition, sequence and padding to 1 KiB, so a torn one cannot parse.
fn value(partition: i32, sequence: usize) -> String {
    format!("{partition}:{sequence}:{}", "x".repeat(1000))
}

/// Acknowledged records: partition -> offset -> value.
type Acked = BTreeMap<i32, BTreeMap<i64, String>>;

/// Sends one round of `ROUND_SENDS` records spread over both partitions; returns how many
/// failed, with KAFKA_STORAGE_ERROR only (anything else fails the test).
async fn send_round(
    producer: &FutureProducer,
    round: usize,
    acked: &mut Acked,
    broker: &BrokerProcess,
) -> usize {
    let sends = (0..ROUND_SENDS).map(|n| {
        let sequence = round * ROUND_SENDS + n;
        let partition = i32::try_from(n).expect("small") % PARTITION_COUNT;
        let value = value(partition, sequence);
        async move {
            let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload(&value);
            let outcome = producer.send(record, Duration::from_secs(10)).await;
            (partition, value, outcome)
        }
    });
    let mut failed = 0;
    for (partition, value, outcome) in join_all(sends).await {
        match outcome {
            Ok(delivery) => {
                assert_eq!(delivery.partition, partition);
                let earlier = acked.entry(partition).or_default().insert(delivery.offset, value);
                assert!(earlier.is_none(), "offset {} acknowledged twice", delivery.offset);
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError), _)) => {
                failed += 1;
            }
            Err((error, _)) => {
                panic!(
                    "a produce failed with {error}, not KAFKA_STORAGE_ERROR; log:\n{}",
                    broker.log_tail()
                )
            }
        }
    }
    failed
}

/// Reads both partitions from offset 0: exactly the acknowledged records, each at its
/// offset, and nothing else (every send here was acknowledged or refused).
async fn assert_reads_back(broker: &BrokerProcess, acked: &Acked, when: &str) {
    let records = read_all(broker, TOPIC, PARTITION_COUNT, READ_LIMIT).await;
    for partition in 0..PARTITION_COUNT {
        let read: BTreeMap<i64, String> = records[&partition]
            .iter()
            .map(|record| {
                let value = record.value.as_deref().expect("every record has a value");
                (record.offset, String::from_utf8(value.to_vec()).expect("values are text"))
            })
            .collect();
        let expected = acked.get(&partition).cloned().unwrap_or_default();
        assert_eq!(read.len(), records[&partition].len(), "{when}: an offset served twice");
        assert!(
            read == expected,
            "{when}: partition {partition} holds {} records, {} acknowledged; first difference \
             at offset {:?}",
            read.len(),
            expected.len(),
            read.iter().zip(&expected).find(|(a, b)| a != b).map(|((offset, _), _)| *offset)
        );
    }
}

/// The active (last) segment in `partition_dir` holds whole batches and nothing after them:
/// a refused write's bytes were cut, not left for the disk to hold or an open to find.
fn assert_ends_with_a_whole_batch(partition_dir: &Path) {
    let mut segments: Vec<_> = std::fs::read_dir(partition_dir)
        .expect("a partition folder lists")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let active = segments.last().expect("a partition has a segment");
    let bytes = std::fs::read(active).expect("the segment reads");
    let mut at = 0usize;
    // A batch: baseOffset (8 bytes), batchLength (4 bytes), then batchLength bytes.
    while let Some(length) = bytes.get(at + 8..at + 12) {
        let length = i32::from_be_bytes(length.try_into().expect("4 bytes"));
        assert!(length > 0, "{}: no batch at byte {at} of {}", active.display(), bytes.len());
        at += 12 + usize::try_from(length).expect("positive");
    }
    assert_eq!(at, bytes.len(), "{}: bytes after the last whole batch", active.display());
}

/// Removes every segment's `.index` and `.timeindex` under `log_dir`.
fn remove_index_files(log_dir: &Path) {
    for partition in std::fs::read_dir(log_dir).expect("the log folder lists") {
        let partition = partition.expect("an entry").path();
        for file in std::fs::read_dir(&partition).expect("a partition folder lists") {
            let path = file.expect("an entry").path();
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if extension == "index" || extension == "timeindex" {
                std::fs::remove_file(&path).expect("an index file goes");
            }
        }
    }
}

/// Each partition's log end, as offsets to commit.
fn log_ends(acked: &Acked) -> Vec<Offset> {
    (0..PARTITION_COUNT)
        .map(|p| {
            let last = acked.get(&p).and_then(|a| a.keys().last().copied());
            Offset::Offset(last.map_or(0, |last| last + 1))
        })
        .collect()
}

fn group_consumer(broker: &BrokerProcess) -> StreamConsumer {
    group_consumer_in(broker, GROUP)
}

fn group_consumer_in(broker: &BrokerProcess, group: &str) -> StreamConsumer {
    let mut config = client_config(&broker.bootstrap());
    config.set("group.id", group).set("enable.auto.commit", "false");
    config.create().expect("consumer config is valid")
}

/// Commits each partition's log end for the group (an `assign()`-style commit).
fn commit_ends(broker: &BrokerProcess, acked: &Acked) -> Result<(), KafkaError> {
    commit_ends_as(broker, acked, GROUP, "")
}

/// [`commit_ends`] for `group`, with `metadata` on each partition's offset.
fn commit_ends_as(
    broker: &BrokerProcess,
    acked: &Acked,
    group: &str,
    metadata: &str,
) -> Result<(), KafkaError> {
    let mut offsets = TopicPartitionList::new();
    for (partition, end) in (0..PARTITION_COUNT).zip(log_ends(acked)) {
        offsets.add_partition_offset(TOPIC, partition, end).expect("valid");
        if let Some(mut element) = offsets.find_partition(TOPIC, partition) {
            element.set_metadata(metadata);
        }
    }
    group_consumer_in(broker, group).commit(&offsets, CommitMode::Sync)
}

fn committed(broker: &BrokerProcess) -> Vec<Offset> {
    let mut wanted = TopicPartitionList::new();
    for partition in 0..PARTITION_COUNT {
        wanted.add_partition(TOPIC, partition);
    }
    let found = group_consumer(broker)
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("OffsetFetch: {error}; log:\n{}", broker.log_tail()));
    found.elements().iter().map(|element| element.offset()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_produces_loses_nothing_and_recovers_when_there_is_room() {
    let disk = SmallDisk::mount(DISK_BYTES).expect("a small tmpfs mounts");
    let mut broker = BrokerProcess::start_in(Path::new(SLUICE_BIN), disk.path().join("data"))
        .unwrap_or_else(|error| panic!("the broker must start: {error}"));
    create_topic(&broker, TOPIC, PARTITION_COUNT, &[("segment.bytes", "1048576")]).await;
    // A commit made while there is room, to read back once there is none.
    let empty = Acked::new();
    commit_ends(&broker, &empty).unwrap_or_else(|error| {
        panic!("a commit on an empty disk: {error}; log:\n{}", broker.log_tail())
    });
    let ends_before_full = log_ends(&empty);

    // Fill the disk: librdkafka must not retry, so each refusal reaches the test.
    let sender = producer(
        &broker.bootstrap(),
        &[("message.send.max.retries", "0"), ("linger.ms", "5"), ("batch.size", "65536")],
    );
    let mut acked = Acked::new();
    let mut refused = 0;
    let mut round = 0;
    loop {
        assert!(round < ROUNDS_MAX, "{DISK_BYTES} bytes never filled; log:\n{}", broker.log_tail());
        let failed = send_round(&sender, round, &mut acked, &broker).await;
        refused += failed;
        round += 1;
        if failed == ROUND_SENDS {
            break;
        }
    }
    drop(sender);
    assert!(acked.values().map(BTreeMap::len).sum::<usize>() > 1000, "the disk held too little");
    let log = broker.log_tail();
    let starts = log.matches("appends to this partition fail").count();
    let ends_logged = log.matches("appends to this partition work again").count();
    assert!(starts >= 1, "no line says appends fail; log:\n{log}");
    // One line when a run of failures starts (and one when it ends), not one per refused
    // produce: each partition's last run is still going.
    assert!(
        starts <= ends_logged + usize::try_from(PARTITION_COUNT).expect("small"),
        "{starts} runs started, {ends_logged} ended; log:\n{log}"
    );
    eprintln!("{refused} records refused; {starts} runs of failures logged");
    assert!(!log.contains("produce rejected"), "a line per refused produce; log:\n{log}");
    for partition in 0..PARTITION_COUNT {
        let dir = disk.path().join("data").join("log").join(format!("{TOPIC}-{partition}"));
        assert_ends_with_a_whole_batch(&dir);
    }
    assert_reads_back(&broker, &acked, "full").await;

    // A restart on a disk with no byte left, the indexes to rebuild (as after a crash that
    // lost them): it starts, with its indexes in memory, and serves every record.
    broker.stop().expect("the broker stops on SIGTERM");
    remove_index_files(&disk.path().join("data").join("log"));
    disk.fill(BALLAST).expect("the ballast fills the disk");
    broker.restart().unwrap_or_else(|error| panic!("the broker restarts on a full disk: {error}"));
    assert_reads_back(&broker, &acked, "restarted while full").await;

    // Offset commits: the store reuses pages it freed, so a few fit; commits of new groups
    // with long metadata grow it until one is refused, saying why.
    let filler = "m".repeat(4000);
    let refused_at = (0..FILLER_GROUPS_MAX).find(|n| {
        match commit_ends_as(&broker, &acked, &format!("filler-{n}"), &filler) {
            Ok(()) => false,
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::KafkaStorageError)) => true,
            Err(error) => panic!("a commit on a full disk: {error}; log:\n{}", broker.log_tail()),
        }
    });
    assert!(refused_at.is_some(), "{FILLER_GROUPS_MAX} groups' commits fit on a full disk");
    // After a refused write the store keeps serving reads (redb refuses only writes).
    assert_eq!(committed(&broker), ends_before_full, "OffsetFetch on a full disk");

    // Room again: commits and produces work without a restart (the store is reopened).
    std::fs::remove_file(disk.path().join(BALLAST)).expect("the ballast goes");
    disk.resize(GROWN_DISK_BYTES).expect("the tmpfs grows");
    commit_ends(&broker, &acked).unwrap_or_else(|error| {
        panic!("a commit once there is room: {error}; log:\n{}", broker.log_tail())
    });
    let ends = log_ends(&acked);
    assert_eq!(committed(&broker), ends);
    let sender = producer(&broker.bootstrap(), &[("linger.ms", "5")]);
    let failed = send_round(&sender, round, &mut acked, &broker).await;
    assert_eq!(failed, 0, "produces still refused once there is room; log:\n{}", broker.log_tail());
    drop(sender);
    commit_ends(&broker, &acked).unwrap_or_else(|error| {
        panic!("a commit once there is room: {error}; log:\n{}", broker.log_tail())
    });
    let ends = log_ends(&acked);
    assert_eq!(committed(&broker), ends);
    assert_reads_back(&broker, &acked, "with room again").await;

    broker.stop().expect("the broker stops on SIGTERM");
    broker.restart().unwrap_or_else(|error| panic!("the broker restarts: {error}"));
    assert_reads_back(&broker, &acked, "restarted with room").await;
    assert_eq!(committed(&broker), ends, "committed offsets survive the restart");
    broker.stop().expect("the broker stops on SIGTERM");
}
