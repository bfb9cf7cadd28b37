//! kill -9 while producing: no acknowledged record is ever lost, moved or torn.
//!
//! Acceptance: "a producer with acks=all sends continuously while the broker process is killed
//! with SIGKILL at random moments (at least 10 times); after each restart every acknowledged
//! record is read back in order, no offset repeats, and no torn batch is served".
//!
//! Each round a fresh producer sends numbered values (`round:sequence`) to 2 partitions from a
//! task, recording every ack as (partition, offset, value). After a random delay the broker is
//! killed with SIGKILL, unacknowledged sends are purged (they may or may not have been written,
//! and Kafka promises nothing about them), and the broker restarts on the same data folder.
//! A fresh consumer, verifying CRCs, then reads both partitions from offset 0 to the high
//! watermark and the test checks:
//! - offsets are exactly 0, 1, 2, … (strictly increasing: no repeats, and no holes in a log
//!   that nothing compacts or deletes);
//! - every value is one this test sent (a torn record cannot parse);
//! - every acknowledged record of every round so far is at its acknowledged offset.
//!
//! The delays come from a seeded RNG; the seed is printed and `SLUICE_CRASH_SEED` replays it.
//! `SLUICE_CRASH_ROUNDS` runs more rounds than the default 10.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};
use sluice_testkit::BrokerProcess;
use tokio::sync::watch;

use crate::support::{create_topic, producer, read_all, start_broker, within};

const TOPIC: &str = "crashed";
const PARTITION_COUNT: i32 = 2;

/// SIGKILLs per run; the acceptance criterion asks for at least 10. `SLUICE_CRASH_ROUNDS`
/// raises it for a soak run.
const ROUND_COUNT_MIN: u32 = 10;

/// The broker is killed this long after the round's producer starts.
const KILL_DELAY_MS_MIN: u64 = 200;
const KILL_DELAY_MS_MAX: u64 = 1500;

/// Pause between sends: continuous traffic, but a bounded record count per round.
const SEND_INTERVAL: Duration = Duration::from_millis(1);

/// Sends awaiting their ack at once; past this the sender waits for acks first.
const SENDS_IN_FLIGHT_MAX: usize = 1000;

/// Time for the sender to wind down after the kill: purged sends fail at once, and
/// `message.timeout.ms` (5 s) bounds any that slip past the purge.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// Zero bytes the preallocate round checks at the end of each active segment: values here
/// are text, so a batch never ends with so many.
const ZEROS_AHEAD_SEEN: usize = 1024;

/// `segment.bytes` of the preallocate round: no zeros are written past it.
const SEGMENT_BYTES: usize = 16384;

/// Time to read both partitions back after a restart.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// What one round's sender saw.
#[derive(Debug, Default)]
struct SendOutcome {
    /// Acknowledged records as (partition, offset, value).
    acked: Vec<(i32, i64, String)>,
    /// Sends that failed: refused, timed out or purged after the kill.
    failed_count: u64,
}

impl SendOutcome {
    fn record(&mut self, partition: i32, value: String, result: DeliveryOutcome) {
        match result {
            Ok(Ok(delivery)) => {
                assert_eq!(delivery.partition, partition, "{value} was sent to {partition}");
                self.acked.push((partition, delivery.offset, value));
            }
            Ok(Err(_)) | Err(_) => self.failed_count += 1,
        }
    }
}

/// What a delivery future resolves to: the ack or the error, or `Canceled` if the producer
/// went away first.
type DeliveryOutcome = <DeliveryFuture as std::future::Future>::Output;

/// Sends `round:sequence` values round-robin over the partitions until `stop` turns true,
/// then waits for every outstanding send to be acked or to fail.
async fn send_until_stopped(
    producer: FutureProducer,
    round: u32,
    stop: watch::Receiver<bool>,
) -> SendOutcome {
    let mut outcome = SendOutcome::default();
    let mut in_flight = FuturesUnordered::new();
    let mut sequence = 0u64;
    while !*stop.borrow() {
        if in_flight.len() >= SENDS_IN_FLIGHT_MAX {
            if let Some((partition, value, result)) = in_flight.next().await {
                outcome.record(partition, value, result);
            }
            continue;
        }
        let partition_count = u64::try_from(PARTITION_COUNT).expect("positive");
        let partition = i32::try_from(sequence % partition_count).expect("below PARTITION_COUNT");
        let value = format!("{round}:{sequence}");
        sequence += 1;
        let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload(&value);
        match producer.send_result(record).map_err(|(error, _)| error) {
            Ok(delivery) => in_flight.push(async move { (partition, value, delivery.await) }),
            // The local queue is full or the producer is failing: that send is simply not acked.
            Err(_) => outcome.failed_count += 1,
        }
        while let Some(Some((partition, value, result))) = in_flight.next().now_or_never() {
            outcome.record(partition, value, result);
        }
        tokio::time::sleep(SEND_INTERVAL).await;
    }
    while let Some((partition, value, result)) = in_flight.next().await {
        outcome.record(partition, value, result);
    }
    outcome
}

/// The seed from `SLUICE_CRASH_SEED`, or a fresh one from the clock.
fn crash_seed() -> u64 {
    match std::env::var("SLUICE_CRASH_SEED") {
        Ok(seed) => seed.parse().expect("SLUICE_CRASH_SEED is a u64"),
        Err(_) => {
            let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
            u64::try_from(since_epoch.as_nanos() % u128::from(u64::MAX)).expect("reduced")
        }
    }
}

/// [`ROUND_COUNT_MIN`], or more if `SLUICE_CRASH_ROUNDS` asks for more.
fn round_count() -> u32 {
    let asked = std::env::var("SLUICE_CRASH_ROUNDS")
        .ok()
        .map(|rounds| rounds.parse::<u32>().expect("SLUICE_CRASH_ROUNDS is a round count"));
    asked.unwrap_or(ROUND_COUNT_MIN).max(ROUND_COUNT_MIN)
}

/// Runs one round: produce, SIGKILL after `kill_delay`, drain, restart.
async fn run_round(broker: &mut BrokerProcess, round: u32, kill_delay: Duration) -> SendOutcome {
    let producer = producer(
        &broker.bootstrap(),
        &[("message.timeout.ms", "5000"), ("linger.ms", "2"), ("request.timeout.ms", "5000")],
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let sender = tokio::spawn(send_until_stopped(producer.clone(), round, stop_rx));
    tokio::time::sleep(kill_delay).await;
    broker.kill9().expect("SIGKILL reaches our own child");
    stop_tx.send(true).expect("the sender holds the receiver until it ends");
    // Nothing in flight can be acked by a dead broker; purging fails those sends now rather
    // than after message.timeout.ms.
    producer.purge(PurgeConfig::default().queue().inflight());
    let outcome = within(DRAIN_LIMIT, "draining the sender", broker, sender)
        .await
        .expect("the sender does not panic");
    drop(producer);
    broker
        .restart()
        .unwrap_or_else(|error| panic!("restart after SIGKILL in round {round}: {error}"));
    outcome
}

/// Reads both partitions and checks them against every ack so far (see the module docs).
async fn assert_log_holds(
    broker: &BrokerProcess,
    acked: &BTreeMap<(i32, i64), String>,
    round: u32,
) {
    let records = read_all(broker, TOPIC, PARTITION_COUNT, READ_LIMIT).await;
    let mut stored = BTreeMap::new();
    for (partition, records) in records {
        for (position, record) in records.into_iter().enumerate() {
            let expected_offset = i64::try_from(position).expect("fits i64");
            assert_eq!(
                record.offset, expected_offset,
                "round {round}: partition {partition} must hold offsets 0, 1, 2, … exactly once"
            );
            let value = record.value.unwrap_or_default();
            let value = String::from_utf8(value).unwrap_or_else(|error| {
                panic!("round {round}: {partition}@{expected_offset} is not a sent value: {error}")
            });
            let parts: Option<(u32, u64)> = value
                .split_once(':')
                .and_then(|(round, sequence)| Some((round.parse().ok()?, sequence.parse().ok()?)));
            assert!(
                parts.is_some(),
                "round {round}: {partition}@{expected_offset} holds {value:?}"
            );
            stored.insert((partition, expected_offset), value);
        }
    }
    for ((partition, offset), value) in acked {
        let found = stored.get(&(*partition, *offset));
        assert_eq!(
            found,
            Some(value),
            "round {round}: acked {value:?} at {partition}@{offset} must still be there; log:\n{}",
            broker.log_tail()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_every_acknowledged_record_across_sigkill() {
    keeps_acknowledged_records_across_sigkill(&[]).await;
}

/// The same with `preallocate` (zeros written ahead of the active segment, trimmed when it
/// rolls) and segments small enough that several roll in each round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_every_acknowledged_record_across_sigkill_with_preallocate() {
    keeps_acknowledged_records_across_sigkill(&[
        ("preallocate", "true"),
        ("segment.bytes", "16384"), // SEGMENT_BYTES
    ])
    .await;
}

/// The rounds, on a topic created with `configs`.
async fn keeps_acknowledged_records_across_sigkill(configs: &[(&str, &str)]) {
    let seed = crash_seed();
    println!("crash seed {seed} (replay with SLUICE_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut broker = start_broker();
    create_topic(&broker, TOPIC, PARTITION_COUNT, configs).await;

    let mut acked: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for round in 0..round_count() {
        let kill_delay =
            Duration::from_millis(rng.gen_range(KILL_DELAY_MS_MIN..=KILL_DELAY_MS_MAX));
        let outcome = run_round(&mut broker, round, kill_delay).await;
        println!(
            "round {round}: killed after {kill_delay:?}, {} acked, {} failed",
            outcome.acked.len(),
            outcome.failed_count
        );
        for (partition, offset, value) in outcome.acked {
            if let Some(earlier) = acked.insert((partition, offset), value.clone()) {
                panic!("{partition}@{offset} was acked twice: {earlier:?}, then {value:?}");
            }
        }
        assert_log_holds(&broker, &acked, round).await;
    }
    assert!(!acked.is_empty(), "no send was ever acked, so nothing was tested (seed {seed})");
    if configs.contains(&("preallocate", "true")) {
        assert_zeros_ahead(&broker).await;
    }
}

/// With `preallocate`, after one more record per partition, each partition's active segment
/// ends with zeros written ahead of its last batch (recovery cut them at the last restart).
async fn assert_zeros_ahead(broker: &BrokerProcess) {
    let producer = producer(&broker.bootstrap(), &[]);
    for partition in 0..PARTITION_COUNT {
        let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload("after:0");
        producer.send(record, Duration::from_secs(5)).await.expect("a send after the rounds");
    }
    for partition in 0..PARTITION_COUNT {
        let dir = broker.data_dir().join("log").join(format!("{TOPIC}-{partition}"));
        let mut logs: Vec<_> = std::fs::read_dir(&dir)
            .expect("the partition folder")
            .map(|entry| entry.expect("a folder entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        let active = std::fs::read(logs.last().expect("an active segment")).expect("readable");
        // Where the last whole batch ends: zeros follow it, up to `segment.bytes` at most, so
        // a segment nearly full has fewer than `ZEROS_AHEAD_SEEN` of them.
        let mut end = 0usize;
        while let Ok(header) =
            sluice_wire::batch::parse_header(active.get(end..).unwrap_or_default())
        {
            if header.total_bytes == 0 || end + header.total_bytes > active.len() {
                break;
            }
            end += header.total_bytes;
        }
        let zeros = active.get(end..).unwrap_or_default();
        let wanted = ZEROS_AHEAD_SEEN.min(SEGMENT_BYTES - end.min(SEGMENT_BYTES));
        assert!(
            end > 0 && zeros.len() >= wanted && zeros.iter().all(|byte| *byte == 0),
            "partition {partition}: the active segment ({} bytes, batches end at {end}) ends with zeros",
            active.len()
        );
    }
}
