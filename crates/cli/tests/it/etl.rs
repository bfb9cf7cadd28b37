//! Exactly-once through a chain of consumer groups while members join and leave.
//!
//! Acceptance (Kafka parity): "3 groups of 3 consumers each run an ETL chain (consume topic
//! A, transactionally produce to B with offsets committed in the transaction, and so on)
//! while consumers join and leave: the final topic holds every input record exactly once
//! when read with read_committed, and no member ever gets UNKNOWN_MEMBER_ID while it is
//! still in the group."
//!
//! Each worker is a librdkafka consumer (read_committed) and a transactional producer. It
//! takes what it received, produces it to the next topic and sends its consumed offsets to
//! the same transaction (KIP-447: the group metadata fences a worker that lost its
//! partitions; it is taken before the records are received, see `forward`). A failed
//! commit aborts and rewinds to the committed offsets. The three
//! groups use the range, cooperative-sticky and roundrobin assignors. Every client logs
//! its group protocol (`debug=cgrp`); any line naming UNKNOWN_MEMBER_ID fails the test.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_testkit::BrokerProcess;
use tokio::sync::watch;

use crate::support::{client_config, create_topic, producer, read_isolated, SLUICE_BIN};

const TOPICS: [&str; 4] = ["etl-a", "etl-b", "etl-c", "etl-d"];
const ASSIGNORS: [&str; 3] = ["range", "cooperative-sticky", "roundrobin"];
const PARTITIONS: i32 = 3;
const RECORDS: usize = 3000;
const TXN_TIMEOUT: Duration = Duration::from_secs(10);
const BATCH_MAX: usize = 100;

/// Log lines that show a member being told it is unknown.
#[derive(Clone, Default)]
struct Watch {
    unknown_member: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Watch {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, line: &str) {
        if line.contains("UNKNOWN_MEMBER_ID") || line.contains("Unknown member") {
            self.unknown_member.lock().expect("no panics").push(format!("{fac}: {line}"));
        }
    }
}

impl ConsumerContext for Watch {}

struct Worker {
    consumer: StreamConsumer<Watch>,
    producer: FutureProducer,
    output: &'static str,
}

fn worker(broker: &BrokerProcess, stage: usize, name: &str, watch: &Watch) -> Worker {
    let mut config = client_config(&broker.bootstrap());
    config
        .set("group.id", format!("etl-group-{stage}"))
        .set("client.id", name)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("partition.assignment.strategy", ASSIGNORS[stage])
        .set("fetch.wait.max.ms", "50")
        .set("debug", "cgrp")
        .set_log_level(RDKafkaLogLevel::Debug);
    let consumer: StreamConsumer<Watch> =
        config.create_with_context(watch.clone()).expect("consumer config is valid");
    consumer.subscribe(&[TOPICS[stage]]).expect("subscribe");
    let mut config = client_config(&broker.bootstrap());
    config.set("transactional.id", name).set("linger.ms", "2");
    let producer: FutureProducer = config.create().expect("producer config is valid");
    tokio::task::block_in_place(|| producer.init_transactions(TXN_TIMEOUT)).expect("init");
    Worker { consumer, producer, output: TOPICS[stage + 1] }
}

/// Receives up to `BATCH_MAX` records, waiting at most 200 ms.
async fn receive_batch(consumer: &StreamConsumer<Watch>) -> Vec<(String, i32, i64, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut batch = Vec::new();
    while batch.len() < BATCH_MAX {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push((
                m.topic().to_string(),
                m.partition(),
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Ok(Err(error)) => {
                println!("consumer error (retried): {error}");
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

/// One transaction: produce the batch onward and commit the consumed offsets with it.
/// `metadata` is the group metadata from before the batch was received: librdkafka
/// rebalances in the background, so metadata taken now could name a generation newer than
/// the one the records were fetched in, and the broker could not fence a worker that lost
/// the partitions meanwhile.
async fn forward(
    worker: &Worker,
    batch: &[(String, i32, i64, Vec<u8>)],
    metadata: &rdkafka::consumer::ConsumerGroupMetadata,
) -> Result<(), String> {
    worker.producer.begin_transaction().map_err(|e| e.to_string())?;
    let mut deliveries = Vec::with_capacity(batch.len());
    for (_, partition, _, value) in batch {
        let record = FutureRecord::<(), _>::to(worker.output).partition(*partition).payload(value);
        deliveries.push(worker.producer.send_result(record).map_err(|(e, _)| e.to_string())?);
    }
    for delivery in deliveries {
        delivery.await.map_err(|e| e.to_string())?.map_err(|(e, _)| e.to_string())?;
    }
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, partition, offset, _) in batch {
        let entry = next.entry((topic.clone(), *partition)).or_insert(0);
        *entry = (*entry).max(offset + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        offsets
            .add_partition_offset(&topic, partition, Offset::Offset(offset))
            .map_err(|e| e.to_string())?;
    }
    tokio::task::block_in_place(|| {
        worker.producer.send_offsets_to_transaction(&offsets, metadata, TXN_TIMEOUT)?;
        worker.producer.commit_transaction(TXN_TIMEOUT)
    })
    .map_err(|e| e.to_string())
}

/// After an aborted transaction: back to the committed offsets of what is assigned now.
fn rewind(worker: &Worker) {
    let Ok(assignment) = worker.consumer.assignment() else { return };
    let committed =
        tokio::task::block_in_place(|| worker.consumer.committed_offsets(assignment, TXN_TIMEOUT));
    let Ok(committed) = committed else { return };
    for element in committed.elements() {
        let offset = match element.offset() {
            Offset::Offset(offset) => Offset::Offset(offset),
            _ => Offset::Beginning,
        };
        let _ = worker.consumer.seek(
            element.topic(),
            element.partition(),
            offset,
            Duration::from_secs(5),
        );
    }
}

async fn run_worker(worker: Worker, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        let Some(metadata) = worker.consumer.group_metadata() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let batch = receive_batch(&worker.consumer).await;
        if batch.is_empty() {
            continue;
        }
        if let Err(error) = forward(&worker, &batch, &metadata).await {
            println!("transaction aborted: {error}");
            let _ = tokio::task::block_in_place(|| worker.producer.abort_transaction(TXN_TIMEOUT));
            rewind(&worker);
        }
    }
    // close() leaves the group (LeaveGroup), as a consumer shutting down does.
    drop(worker);
}

/// Counts what read_committed sees in the final topic.
async fn final_values(broker: &BrokerProcess) -> Vec<String> {
    values_of(broker, TOPICS[3]).await
}

/// What read_committed sees in `topic`, as far as it gets in the reader's time limit.
async fn values_of(broker: &BrokerProcess, topic: &'static str) -> Vec<String> {
    read_isolated(broker, topic, PARTITIONS, "read_committed").await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_etl_chain_of_three_groups_delivers_each_record_once_through_churn() {
    let overrides = [("group.initial.rebalance.delay.ms", "300")];
    let broker = BrokerProcess::start_with_overrides(std::path::Path::new(SLUICE_BIN), &overrides)
        .expect("broker starts");
    for topic in TOPICS {
        create_topic(&broker, topic, PARTITIONS, &[]).await;
    }
    let watch = Watch::default();
    let mut running: BTreeMap<(usize, usize), (watch::Sender<bool>, tokio::task::JoinHandle<()>)> =
        BTreeMap::new();
    let start = |stage: usize, slot: usize, incarnation: usize| {
        let name = format!("etl-{stage}-{slot}-{incarnation}");
        let w = worker(&broker, stage, &name, &watch);
        let (tx, rx) = watch::channel(false);
        (tx, tokio::spawn(run_worker(w, rx)))
    };
    for stage in 0..3 {
        for slot in 0..2 {
            running.insert((stage, slot), start(stage, slot, 0));
        }
    }
    let input = producer(&broker.bootstrap(), &[("linger.ms", "5")]);
    let mut sent = 0usize;
    let churn_started = Instant::now();
    let mut churn_step = 0usize;
    while sent < RECORDS {
        let chunk = (RECORDS - sent).min(100);
        let mut deliveries = Vec::new();
        for i in sent..sent + chunk {
            let value = i.to_string();
            let partition = i32::try_from(i % 3).expect("small");
            let record = FutureRecord::<(), _>::to(TOPICS[0]).partition(partition).payload(&value);
            deliveries.push(input.send_result(record).map_err(|(e, _)| e).expect("queued"));
        }
        for delivery in deliveries {
            delivery.await.expect("not canceled").map_err(|(e, _)| e).expect("acked");
        }
        sent += chunk;
        // Churn every 500 records: a third member joins each group; next time it leaves and
        // the first member is replaced by a new instance (a leave and a join).
        if sent.is_multiple_of(500) {
            churn_step += 1;
            for stage in 0..3 {
                if churn_step % 2 == 1 {
                    running.insert((stage, 2), start(stage, 2, churn_step));
                    continue;
                }
                for slot in [2, 0] {
                    if let Some((tx, handle)) = running.remove(&(stage, slot)) {
                        let _ = tx.send(true);
                        handle.await.expect("worker ends");
                    }
                }
                running.insert((stage, 0), start(stage, 0, churn_step));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("input sent in {:?}, {churn_step} churn steps", churn_started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = final_values(&broker).await;
        if last.len() >= RECORDS {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (_, (tx, handle)) in running {
        let _ = tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
    }
    for topic in TOPICS {
        let values = values_of(&broker, topic).await;
        let unique: BTreeSet<&String> = values.iter().collect();
        println!("{topic}: {} records, {} distinct", values.len(), unique.len());
    }
    let unique: BTreeSet<&String> = last.iter().collect();
    let expected: BTreeSet<String> = (0..RECORDS).map(|i| i.to_string()).collect();
    let missing: Vec<&String> = expected.iter().filter(|v| !unique.contains(v)).take(10).collect();
    assert_eq!(unique.len(), last.len(), "duplicates in the final topic");
    assert!(
        missing.is_empty(),
        "missing from the final topic, e.g. {missing:?} ({} of {RECORDS} there)",
        unique.len()
    );
    assert_eq!(last.len(), RECORDS);
    let unknown = watch.unknown_member.lock().expect("no panics").clone();
    assert!(unknown.is_empty(), "a live member was told it is unknown:\n{}", unknown.join("\n"));
}
