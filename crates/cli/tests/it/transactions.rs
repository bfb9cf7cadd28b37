//! Transactions (KIP-98) with librdkafka's transactional producer: commits become visible to
//! `read_committed` consumers, aborts never do, open transactions hold the last stable offset,
//! offsets sent to a transaction commit with it, timed-out transactions are aborted and their
//! producer fenced, and all of it survives a SIGKILL of the broker.
use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_testkit::BrokerProcess;

use crate::support::{
    client_config, create_topic, read_isolated, start_broker, within, SLUICE_BIN,
};

const TXN_TIMEOUT: Duration = Duration::from_secs(10);

fn transactional_producer(
    broker: &BrokerProcess,
    id: &str,
    extra: &[(&str, &str)],
) -> FutureProducer {
    let mut config = client_config(&broker.bootstrap());
    config.set("transactional.id", id).set("linger.ms", "1").set("message.timeout.ms", "30000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let producer: FutureProducer = config.create().expect("producer config is valid");
    tokio::task::block_in_place(|| producer.init_transactions(TXN_TIMEOUT))
        .unwrap_or_else(|e| panic!("init_transactions: {e}; log:\n{}", broker.log_tail()));
    producer
}

/// Sends `values` to `topic` partition `i % partitions` and waits for every ack.
async fn send_all(producer: &FutureProducer, topic: &str, partitions: i32, values: &[String]) {
    let mut deliveries = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let partition = i32::try_from(i).expect("small") % partitions;
        let record = FutureRecord::<(), _>::to(topic).partition(partition).payload(value);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).expect("queued"));
    }
    for delivery in deliveries {
        delivery.await.expect("not canceled").map_err(|(e, _)| e).expect("acknowledged");
    }
}

fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Every value in `topic` as a consumer with `isolation` sees it, up to each partition's
/// high watermark (see [`read_isolated`]); the read must get there.
async fn read_values(
    broker: &BrokerProcess,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<String> {
    let (values, reached_end) = read_isolated(broker, topic, partitions, isolation).await;
    assert!(reached_end, "reading {topic} ({isolation}) timed out at {values:?}");
    values
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_commits_and_never_aborts() {
    let broker = start_broker();
    create_topic(&broker, "txn", 2, &[]).await;
    let producer = transactional_producer(&broker, "txn-1", &[]);
    let mut expected = Vec::new();
    for (prefix, commit) in [("first", true), ("aborted", false), ("second", true)] {
        producer.begin_transaction().expect("begin");
        let batch = values(prefix, 10);
        send_all(&producer, "txn", 2, &batch).await;
        tokio::task::block_in_place(|| {
            if commit {
                producer.commit_transaction(TXN_TIMEOUT)
            } else {
                producer.abort_transaction(TXN_TIMEOUT)
            }
        })
        .unwrap_or_else(|e| panic!("ending {prefix}: {e}; log:\n{}", broker.log_tail()));
        if commit {
            expected.extend(batch);
        }
    }
    let committed = read_values(&broker, "txn", 2, "read_committed").await;
    assert_eq!(sorted(committed), sorted(expected), "read_committed sees exactly the commits");
    let all = read_values(&broker, "txn", 2, "read_uncommitted").await;
    assert_eq!(all.len(), 30, "read_uncommitted sees every data record: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_back_read_committed_until_it_commits() {
    let broker = start_broker();
    create_topic(&broker, "held", 1, &[]).await;
    let producer = transactional_producer(&broker, "held-1", &[]);
    producer.begin_transaction().expect("begin");
    send_all(&producer, "held", 1, &values("open", 5)).await;
    assert!(read_values(&broker, "held", 1, "read_committed").await.is_empty());
    assert_eq!(read_values(&broker, "held", 1, "read_uncommitted").await.len(), 5);
    tokio::task::block_in_place(|| producer.commit_transaction(TXN_TIMEOUT)).expect("commit");
    assert_eq!(read_values(&broker, "held", 1, "read_committed").await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_to_a_transaction_commit_with_it() {
    let broker = start_broker();
    create_topic(&broker, "source", 1, &[]).await;
    create_topic(&broker, "sink", 1, &[]).await;
    let mut config = client_config(&broker.bootstrap());
    config.set("group.id", "etl").set("enable.auto.commit", "false");
    let consumer: StreamConsumer = config.create().expect("consumer");
    let producer = transactional_producer(&broker, "etl-1", &[]);
    for (round, commit) in [(0, false), (1, true)] {
        producer.begin_transaction().expect("begin");
        send_all(&producer, "sink", 1, &values(&format!("r{round}"), 3)).await;
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset("source", 0, Offset::Offset(10 + round)).expect("valid");
        let metadata = consumer.group_metadata().expect("a consumer with a group.id has metadata");
        tokio::task::block_in_place(|| {
            producer.send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)?;
            if commit {
                producer.commit_transaction(TXN_TIMEOUT)
            } else {
                producer.abort_transaction(TXN_TIMEOUT)
            }
        })
        .unwrap_or_else(|e| panic!("round {round}: {e}; log:\n{}", broker.log_tail()));
    }
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition("source", 0);
    let committed = tokio::task::block_in_place(|| consumer.committed_offsets(wanted, TXN_TIMEOUT))
        .expect("OffsetFetch");
    let offset = committed.find_partition("source", 0).expect("asked for").offset();
    assert_eq!(offset, Offset::Offset(11), "the aborted round's offset 10 never committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let overrides = [("transaction.abort.timed.out.transaction.cleanup.interval.ms", "100")];
    let broker = BrokerProcess::start_with_overrides(std::path::Path::new(SLUICE_BIN), &overrides)
        .expect("broker starts");
    create_topic(&broker, "slow", 1, &[]).await;
    let producer = transactional_producer(
        &broker,
        "slow-1",
        &[
            ("transaction.timeout.ms", "1500"),
            ("socket.timeout.ms", "1500"),
            ("message.timeout.ms", "1500"),
        ],
    );
    producer.begin_transaction().expect("begin");
    send_all(&producer, "slow", 1, &values("late", 3)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let outcome = tokio::task::block_in_place(|| producer.commit_transaction(TXN_TIMEOUT));
    let error = outcome.expect_err("the coordinator aborted the transaction and fenced it");
    println!("commit after the timeout: {error}");
    assert!(matches!(error, KafkaError::Transaction(_)), "{error:?}");
    // The partition is stable again: another producer's commit is readable.
    let other = transactional_producer(&broker, "slow-2", &[]);
    other.begin_transaction().expect("begin");
    send_all(&other, "slow", 1, &values("fresh", 2)).await;
    tokio::task::block_in_place(|| other.commit_transaction(TXN_TIMEOUT)).expect("commit");
    let seen = read_values(&broker, "slow", 1, "read_committed").await;
    assert_eq!(sorted(seen), values("fresh", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_commits_and_aborts_what_was_open() {
    let mut broker = start_broker();
    create_topic(&broker, "crashy", 2, &[]).await;
    let producer = transactional_producer(&broker, "crashy-1", &[]);
    producer.begin_transaction().expect("begin");
    send_all(&producer, "crashy", 2, &values("kept", 6)).await;
    tokio::task::block_in_place(|| producer.commit_transaction(TXN_TIMEOUT)).expect("commit");
    producer.begin_transaction().expect("begin");
    send_all(&producer, "crashy", 2, &values("open", 6)).await;
    broker.kill9().expect("SIGKILL");
    drop(producer);
    broker.restart().expect("restart");
    // The same transactional id comes back: InitProducerId aborts what was left open.
    let producer = transactional_producer(&broker, "crashy-1", &[]);
    producer.begin_transaction().expect("begin");
    send_all(&producer, "crashy", 2, &values("after", 2)).await;
    tokio::task::block_in_place(|| producer.commit_transaction(TXN_TIMEOUT)).expect("commit");
    let seen = within(
        Duration::from_secs(60),
        "reading",
        &broker,
        read_values(&broker, "crashy", 2, "read_committed"),
    )
    .await;
    let mut expected = values("kept", 6);
    expected.extend(values("after", 2));
    assert_eq!(sorted(seen), sorted(expected));
}

/// What the producer knows of one transaction's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    Aborted,
    /// The commit call failed while the broker was down: it may have committed or not.
    Unknown,
}

/// Transactions of `RECORDS_PER_TXN` records run one after another while the broker is
/// killed with SIGKILL at random moments and restarted on its port. Afterwards a
/// read_committed reader must see every committed transaction whole and once (librdkafka
/// retries its Produce, AddPartitionsToTxn and EndTxn requests across the restart, so the
/// broker must deduplicate and answer retries of completed steps), no aborted one, and each
/// transaction whose outcome the producer could not learn either whole or not at all.
/// Each transaction writes to all 3 partitions (a stored decision, then markers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_stay_atomic_across_random_sigkills() {
    atomic_across_random_sigkills(3).await;
}

/// As above, with each transaction in one partition (the next one each time): its marker,
/// synced before EndTxn answers, is its only decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partition_transactions_stay_atomic_across_random_sigkills() {
    atomic_across_random_sigkills(1).await;
}

/// Runs transactions spread over `spread` of the topic's 3 partitions while the broker is
/// killed (see `transactions_stay_atomic_across_random_sigkills`).
async fn atomic_across_random_sigkills(spread: usize) {
    use rand::{Rng, SeedableRng};
    const RECORDS_PER_TXN: usize = 20;
    const KILLS: usize = 5;
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let overrides = [("transaction.abort.timed.out.transaction.cleanup.interval.ms", "500")];
    let started = BrokerProcess::start_with_overrides(std::path::Path::new(SLUICE_BIN), &overrides)
        .expect("broker starts");
    let broker = std::sync::Arc::new(tokio::sync::Mutex::new(started));
    let bootstrap_broker = broker.lock().await;
    create_topic(&bootstrap_broker, "atomic", 3, &[]).await;
    drop(bootstrap_broker);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let producer_broker = std::sync::Arc::clone(&broker);
    let runner = tokio::spawn(async move {
        let mut outcomes: Vec<Outcome> = Vec::new();
        let mut producer: Option<FutureProducer> = None;
        while !*stop_rx.borrow() {
            let active = match producer.take() {
                Some(p) => p,
                None => {
                    let guard = producer_broker.lock().await;
                    let mut config = client_config(&guard.bootstrap());
                    drop(guard);
                    config
                        .set("transactional.id", "atomic-1")
                        .set("linger.ms", "1")
                        .set("message.timeout.ms", "10000")
                        .set("transaction.timeout.ms", "10000");
                    let p: FutureProducer = config.create().expect("valid config");
                    let init = tokio::task::block_in_place(|| p.init_transactions(TXN_TIMEOUT));
                    if init.is_err() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    p
                }
            };
            let txn = outcomes.len();
            if active.begin_transaction().is_err() {
                continue; // recreate the producer
            }
            let mut deliveries = Vec::new();
            for i in 0..RECORDS_PER_TXN {
                let value = format!("{txn}:{i}");
                let partition = i32::try_from((txn + i % spread) % 3).expect("small");
                let record =
                    FutureRecord::<(), _>::to("atomic").partition(partition).payload(&value);
                if let Ok(delivery) = active.send_result(record).map_err(|(e, _)| e) {
                    deliveries.push(delivery);
                }
            }
            let mut sent = deliveries.len() == RECORDS_PER_TXN;
            for delivery in deliveries {
                sent &= matches!(delivery.await, Ok(Ok(_)));
            }
            let outcome = if sent {
                match tokio::task::block_in_place(|| active.commit_transaction(TXN_TIMEOUT)) {
                    Ok(()) => Outcome::Committed,
                    Err(_) => Outcome::Unknown,
                }
            } else {
                match tokio::task::block_in_place(|| active.abort_transaction(TXN_TIMEOUT)) {
                    Ok(()) => Outcome::Aborted,
                    Err(_) => Outcome::Unknown,
                }
            };
            outcomes.push(outcome);
            if outcome != Outcome::Unknown {
                producer = Some(active);
            }
        }
        outcomes
    });
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..900))).await;
        let mut guard = broker.lock().await;
        guard.kill9().expect("SIGKILL");
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
        tokio::task::block_in_place(|| guard.restart_on_same_port()).expect("restart");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_tx.send(true).expect("the runner listens");
    let outcomes =
        within(Duration::from_secs(60), "the transactions to end", &*broker.lock().await, runner)
            .await
            .expect("the runner does not panic");
    let guard = broker.lock().await;
    let seen = read_values(&guard, "atomic", 3, "read_committed").await;
    let mut per_txn: BTreeMap<usize, usize> = BTreeMap::new();
    for value in &seen {
        let txn: usize = value.split(':').next().and_then(|t| t.parse().ok()).expect("txn:i");
        *per_txn.entry(txn).or_default() += 1;
    }
    let committed = outcomes.iter().filter(|o| **o == Outcome::Committed).count();
    let unknown = outcomes.iter().filter(|o| **o == Outcome::Unknown).count();
    println!("{} transactions: {committed} committed, {unknown} unknown", outcomes.len());
    assert!(committed > 0, "no transaction committed (seed {seed})");
    for (txn, outcome) in outcomes.iter().enumerate() {
        let count = per_txn.get(&txn).copied().unwrap_or(0);
        match outcome {
            Outcome::Committed => {
                assert_eq!(count, RECORDS_PER_TXN, "txn {txn} committed (seed {seed})")
            }
            Outcome::Aborted => assert_eq!(count, 0, "txn {txn} aborted (seed {seed})"),
            Outcome::Unknown => assert!(
                count == 0 || count == RECORDS_PER_TXN,
                "txn {txn} is half visible: {count} records (seed {seed})"
            ),
        }
    }
    assert!(per_txn.keys().all(|t| *t < outcomes.len()), "records of unknown transactions");
}
