//! Consumer groups through rdkafka: the range assignor splits 6 partitions 2/2/2 over three
//! members, every record is consumed exactly once across them, commits survive a clean broker
//! restart, and a new member resumes from the committed offsets. The same runs with the
//! classic protocol (the client's range assignor) and with KIP-848's consumer protocol
//! (`group.protocol=consumer`, the coordinator's uniform assignor, default client settings).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice_testkit::BrokerProcess;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::support::{
    client_config, create_topic, eventually, producer, start_broker, within, ConsumedRecord,
    REQUEST_TIMEOUT,
};

const TOPIC: &str = "grouped";
const GROUP: &str = "group-under-test";
const PARTITION_COUNT: i32 = 6;
const MEMBER_COUNT: usize = 3;

/// Records per partition before the restart; after it, [`LATE_COUNT`] more per partition.
const EARLY_COUNT: i64 = 100;
const LATE_COUNT: i64 = 10;

/// Joining a group waits out Kafka's `group.initial.rebalance.delay.ms` (3 s) and a rebalance
/// per member; this leaves room for a slow debug build.
const REBALANCE_LIMIT: Duration = Duration::from_secs(60);

/// Time to consume one phase's records once assigned.
const CONSUME_LIMIT: Duration = Duration::from_secs(60);

/// Channel capacity between member tasks and the test: a few fetches' worth.
const RECORDS_IN_FLIGHT_MAX: usize = 1024;

/// Which group protocol the members speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// JoinGroup and SyncGroup; the client assigns.
    Classic,
    /// ConsumerGroupHeartbeat (KIP-848); the coordinator assigns.
    Consumer,
}

fn group_consumer(bootstrap: &str, protocol: Protocol) -> StreamConsumer {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "100");
    match protocol {
        Protocol::Classic => config
            .set("partition.assignment.strategy", "range")
            // Kafka's group.min.session.timeout.ms is 6 s; heartbeats well inside it.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500"),
        // The session and heartbeat timing are the coordinator's here (group configs).
        Protocol::Consumer => config.set("group.protocol", "consumer"),
    };
    config.create().expect("group consumer config is valid")
}

fn value_of(partition: i32, offset: i64) -> String {
    format!("p{partition}-o{offset}")
}

/// Produces offsets `from..to` to every partition, checking each ack's offset.
async fn produce_range(broker: &BrokerProcess, producer: &FutureProducer, from: i64, to: i64) {
    for offset in from..to {
        for partition in 0..PARTITION_COUNT {
            let value = value_of(partition, offset);
            let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload(&value);
            let delivery = within(
                REQUEST_TIMEOUT,
                "producing",
                broker,
                producer.send(record, Duration::from_secs(5)),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("{value}: {error}; log:\n{}", broker.log_tail()));
            assert_eq!((delivery.partition, delivery.offset), (partition, offset));
        }
    }
}

/// Polls `consumer` forever (so it takes part in rebalances), committing each record
/// asynchronously and forwarding it, tagged with `member`, to the test.
fn spawn_member(
    member: usize,
    consumer: Arc<StreamConsumer>,
    records: mpsc::Sender<Result<(usize, ConsumedRecord), String>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let forwarded = match consumer.recv().await {
                Ok(message) => {
                    let committed = consumer.commit_message(&message, CommitMode::Async);
                    committed.map_err(|error| format!("commit: {error}")).map(|()| {
                        let record = ConsumedRecord {
                            partition: message.partition(),
                            offset: message.offset(),
                            key: message.key().map(<[u8]>::to_vec),
                            value: message.payload().map(<[u8]>::to_vec),
                        };
                        (member, record)
                    })
                }
                Err(error) => Err(format!("member {member} recv: {error}")),
            };
            if records.send(forwarded).await.is_err() {
                return;
            }
        }
    })
}

/// The partitions `consumer` is assigned, or `None` if it cannot say.
fn assigned_partitions(consumer: &StreamConsumer) -> Option<BTreeSet<i32>> {
    let assignment = consumer.assignment().ok()?;
    Some(assignment.elements_for_topic(TOPIC).iter().map(|element| element.partition()).collect())
}

/// Waits until the members hold 2 partitions each, covering all 6; returns each one's set.
async fn await_even_split(
    broker: &BrokerProcess,
    members: &[Arc<StreamConsumer>],
) -> Vec<BTreeSet<i32>> {
    eventually(REBALANCE_LIMIT, || {
        let split: Vec<BTreeSet<i32>> =
            members.iter().map(|member| assigned_partitions(member)).collect::<Option<_>>()?;
        let union: BTreeSet<i32> = split.iter().flatten().copied().collect();
        let even = split.iter().all(|partitions| partitions.len() == 2);
        (even && union == (0..PARTITION_COUNT).collect()).then_some(split)
    })
    .await
    .unwrap_or_else(|| {
        let split: Vec<_> = members.iter().map(|member| assigned_partitions(member)).collect();
        panic!("no 2/2/2 split within {REBALANCE_LIMIT:?}: {split:?}; log:\n{}", broker.log_tail())
    })
}

/// Receives `count` records from the members' channel, failing on any consumer error.
async fn receive(
    broker: &BrokerProcess,
    records: &mut mpsc::Receiver<Result<(usize, ConsumedRecord), String>>,
    count: usize,
) -> Vec<(usize, ConsumedRecord)> {
    let mut received = Vec::with_capacity(count);
    within(CONSUME_LIMIT, "consuming", broker, async {
        while received.len() < count {
            let next = records.recv().await.expect("member tasks run until aborted");
            received
                .push(next.unwrap_or_else(|error| panic!("{error}; log:\n{}", broker.log_tail())));
        }
    })
    .await;
    received
}

/// Checks each partition's records are offsets `from..to` in order, each exactly once, with
/// the values produced there.
fn assert_exactly_once_in_order(records: &[(usize, ConsumedRecord)], from: i64, to: i64) {
    let mut by_partition: BTreeMap<i32, Vec<&ConsumedRecord>> = BTreeMap::new();
    for (_, record) in records {
        by_partition.entry(record.partition).or_default().push(record);
    }
    assert_eq!(by_partition.len(), usize::try_from(PARTITION_COUNT).expect("positive"));
    for (partition, records) in by_partition {
        let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, (from..to).collect::<Vec<_>>(), "offsets of partition {partition}");
        for record in records {
            let expected = value_of(partition, record.offset);
            assert_eq!(record.value.as_deref(), Some(expected.as_bytes()));
        }
    }
}

/// Commits `offset` for every partition `member` owns, synchronously, then reads it back.
fn commit_and_check(member: &StreamConsumer, partitions: &BTreeSet<i32>, offset: i64) {
    let mut commit = TopicPartitionList::new();
    for partition in partitions {
        commit.add_partition_offset(TOPIC, *partition, Offset::Offset(offset)).expect("valid");
    }
    member.commit(&commit, CommitMode::Sync).expect("OffsetCommit succeeds");
    let committed = member.committed(REQUEST_TIMEOUT).expect("OffsetFetch succeeds");
    for partition in partitions {
        let element = committed.find_partition(TOPIC, *partition).expect("assigned partition");
        assert_eq!(element.offset(), Offset::Offset(offset), "committed offset of {partition}");
    }
}

/// Three members join, split the partitions 2/2/2, consume offsets `0..EARLY_COUNT` of every
/// partition exactly once between them, commit, and leave the group.
async fn consume_and_commit_with_three_members(
    broker: &BrokerProcess,
    producer: &FutureProducer,
    protocol: Protocol,
) {
    let members: Vec<Arc<StreamConsumer>> = (0..MEMBER_COUNT)
        .map(|_| Arc::new(group_consumer(&broker.bootstrap(), protocol)))
        .collect();
    let (records_tx, mut records_rx) = mpsc::channel(RECORDS_IN_FLIGHT_MAX);
    let mut tasks = Vec::new();
    for (index, member) in members.iter().enumerate() {
        member.subscribe(&[TOPIC]).expect("subscribe takes any topic list");
        tasks.push(spawn_member(index, Arc::clone(member), records_tx.clone()));
    }
    drop(records_tx);
    let split = await_even_split(broker, &members).await;

    produce_range(broker, producer, 0, EARLY_COUNT).await;
    let early_total = usize::try_from(EARLY_COUNT * i64::from(PARTITION_COUNT)).expect("small");
    let early = receive(broker, &mut records_rx, early_total).await;
    for (member, record) in &early {
        let owned = &split[*member];
        assert!(
            owned.contains(&record.partition),
            "member {member} got {record:?}, owns {owned:?}"
        );
    }
    assert_exactly_once_in_order(&early, 0, EARLY_COUNT);
    for (member, partitions) in members.iter().zip(&split) {
        commit_and_check(member, partitions, EARLY_COUNT);
    }

    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    // Dropping the last handle closes each consumer, which leaves the group at once. Closing
    // blocks on the broker, so it runs off the async workers and within a limit.
    let closing = tokio::task::spawn_blocking(move || drop(members));
    within(REQUEST_TIMEOUT * 2, "closing the members", broker, closing)
        .await
        .expect("closing does not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_partitions_evenly_and_resumes_from_commits_after_restart() {
    splits_evenly_and_resumes(Protocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_partitions_evenly_and_resumes_with_the_consumer_protocol() {
    splits_evenly_and_resumes(Protocol::Consumer).await;
}

async fn splits_evenly_and_resumes(protocol: Protocol) {
    let mut broker = start_broker();
    create_topic(&broker, TOPIC, PARTITION_COUNT, &[]).await;
    let producer = producer(&broker.bootstrap(), &[]);
    consume_and_commit_with_three_members(&broker, &producer, protocol).await;
    produce_range(&broker, &producer, EARLY_COUNT, EARLY_COUNT + LATE_COUNT).await;
    drop(producer);

    let status = broker.stop().expect("the broker stops on SIGTERM");
    assert!(status.success(), "a clean stop exits 0, got {status}; log:\n{}", broker.log_tail());
    broker.restart().expect("the broker restarts on its data dir");

    let resumed = Arc::new(group_consumer(&broker.bootstrap(), protocol));
    resumed.subscribe(&[TOPIC]).expect("subscribe takes any topic list");
    let (records_tx, mut records_rx) = mpsc::channel(RECORDS_IN_FLIGHT_MAX);
    let task = spawn_member(0, Arc::clone(&resumed), records_tx);
    let late_total = usize::try_from(LATE_COUNT * i64::from(PARTITION_COUNT)).expect("small");
    // A member that ignored the commits would start at offset 0 and fail the order check.
    let late = receive(&broker, &mut records_rx, late_total).await;
    assert_exactly_once_in_order(&late, EARLY_COUNT, EARLY_COUNT + LATE_COUNT);
    let extra = tokio::time::timeout(Duration::from_secs(1), records_rx.recv()).await;
    assert!(extra.is_err(), "nothing past the produced records: {extra:?}");
    task.abort();
}
