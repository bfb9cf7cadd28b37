//! The produce runs: librdkafka producers with `acks=all` sending fixed-size records to the
//! benchmark topic, each timing every record from `send` to its delivery report.
//!
//! A run is either closed-loop (send as fast as librdkafka's queue accepts: throughput) or
//! paced (a fixed rate: latency at a given load). Each producer is a `ThreadedProducer`
//! sending from a thread of its own, whose polling thread timestamps each delivery report as
//! soon as librdkafka queues it. (Not a `BaseProducer` polled by the sender: its `poll`
//! spins for the sub-millisecond rest of every timeout, and a spinning client would take
//! CPU from the broker on a small machine.)
//!
//! The send time is taken when the record enters librdkafka's queue, so the latency
//! includes `linger.ms`, time queued behind earlier records, the broker's append and fsync,
//! and the response: what an application waiting on the ack sees.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use indicatif::ProgressBar;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use serde::Serialize;

use crate::native;

use super::disk::pattern;
use super::limits::{
    ADMIN_TIMEOUT_SECS, MIB, PRODUCER_BATCH_BYTES, PRODUCER_BATCH_RECORDS,
    PRODUCER_FLUSH_TIMEOUT_SECS, PRODUCER_QUEUE_KIB, PRODUCER_TICK_MS,
};
use super::process::{CpuMeter, CpuUse};
use super::stats::{Histogram, LatencyMs};

/// What every produce run shares.
pub struct Plan<'a> {
    /// `HOST:PORT` of the broker.
    pub bootstrap: &'a str,
    /// The benchmark topic.
    pub topic: &'a str,
    /// Payload bytes per record (no key, no headers).
    pub record_bytes: usize,
    /// librdkafka's `linger.ms`.
    pub linger_ms: u64,
    /// The broker's process id, to measure its CPU use.
    pub broker_pid: u32,
    /// librdkafka's `enable.idempotence`: producer ids and sequence numbers, checked by the
    /// broker for every batch.
    pub idempotent: bool,
    /// Records per transaction for a transactional producer (`transactional.id` set; each
    /// transaction is begun, filled and committed in turn), or `None`.
    pub transaction_records: Option<u64>,
}

/// Result of one produce run.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceRun {
    /// Producers sending in parallel.
    pub producers: usize,
    /// librdkafka's `linger.ms`.
    pub linger_ms: u64,
    /// Records acknowledged.
    pub records: u64,
    /// Records sent before the clock started (see `warm_up`), also in the topic.
    pub warm_up_records: u64,
    /// Payload bytes acknowledged.
    pub bytes: u64,
    /// The rate asked for, all producers together; `None` for a closed-loop run.
    pub target_records_per_s: Option<f64>,
    /// Wall time from the first send to the last delivery report, seconds.
    pub secs: f64,
    /// Payload bandwidth.
    pub mib_per_s: f64,
    /// Record rate.
    pub records_per_s: f64,
    /// Per-record latency, send to delivery report.
    pub latency_ms: LatencyMs,
    /// CPU used by the broker and by the producers.
    pub cpu: CpuUse,
}

/// Sends `records` records split over `producers` producers, at `rate` records per second
/// in all if given, and waits for every acknowledgement.
pub fn run(
    plan: &Plan<'_>,
    producers: usize,
    records: u64,
    rate: Option<f64>,
    bar: &ProgressBar,
) -> Result<ProduceRun> {
    assert!(producers > 0, "a run needs a producer");
    assert!(records >= producers as u64, "{records} records cannot feed {producers} producers");
    let clients: Vec<ThreadedProducer<Tracker>> =
        (0..producers).map(|_| create(plan, bar)).collect::<Result<_>>()?;
    // Connect and learn the partition leaders before the clock starts: the run measures
    // steady-state sending, not client start-up.
    let timeout = Duration::from_secs(ADMIN_TIMEOUT_SECS);
    let payload = pattern(plan.record_bytes);
    let mut warm_up_records = 0;
    for client in &clients {
        client
            .client()
            .fetch_metadata(Some(plan.topic), timeout)
            .map_err(|e| anyhow!("cannot read the metadata of {}: {e}", plan.topic))?;
        if plan.idempotent && plan.transaction_records.is_none() {
            warm_up(client, plan.topic, &payload)?;
            warm_up_records += 1;
        }
    }
    let share =
        |index: u64| records / producers as u64 + u64::from(index < records % producers as u64);
    let rate_each = rate.map(|rate| rate / producers as f64);
    let meter = CpuMeter::start(plan.broker_pid)?;
    let started = Instant::now();
    let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
        let threads: Vec<_> = clients
            .iter()
            .zip(0u64..)
            .map(|(client, index)| {
                let payload = &payload;
                let records = share(index);
                scope.spawn(move || match plan.transaction_records {
                    Some(per_txn) => {
                        send_in_transactions(client, plan.topic, payload, records, per_txn)
                    }
                    None => send(client, plan.topic, payload, records, rate_each),
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a producer thread panicked"))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu = meter.stop()?;
    outcomes.into_iter().collect::<Result<()>>()?;
    let mut latencies = Histogram::default();
    for client in &clients {
        client.context().check()?;
        latencies.merge(&client.context().latencies.lock().expect("no holder panics"));
    }
    let acked = latencies.summary().count;
    assert_eq!(acked, records, "every record must be acknowledged once");
    let bytes = acked * plan.record_bytes as u64;
    Ok(ProduceRun {
        producers,
        linger_ms: plan.linger_ms,
        records: acked,
        warm_up_records,
        bytes,
        target_records_per_s: rate,
        secs,
        mib_per_s: bytes as f64 / MIB as f64 / secs,
        records_per_s: acked as f64 / secs,
        latency_ms: latencies.summary(),
        cpu,
    })
}

/// A producer configured as the benchmark brief fixes it: acks=all, no compression, the
/// plan's linger.ms, idempotence and transactions.
fn create(plan: &Plan<'_>, bar: &ProgressBar) -> Result<ThreadedProducer<Tracker>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", plan.bootstrap)
        .set("client.id", "sluice-bench")
        .set("acks", "all")
        .set("enable.idempotence", plan.idempotent.to_string())
        .set("compression.type", "none")
        .set("linger.ms", plan.linger_ms.to_string())
        .set("batch.size", PRODUCER_BATCH_BYTES.to_string())
        .set("batch.num.messages", PRODUCER_BATCH_RECORDS.to_string())
        .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KIB.to_string());
    if plan.transaction_records.is_some() {
        config.set("transactional.id", format!("sluice-bench-{}", uuid_like()));
    }
    let tracker = Tracker {
        started: Instant::now(),
        latencies: Mutex::new(Histogram::default()),
        failures: AtomicU64::new(0),
        first_failure: Mutex::new(None),
        bar: bar.clone(),
    };
    let producer: ThreadedProducer<Tracker> = config
        .create_with_context(tracker)
        .map_err(|e| anyhow!("cannot create a producer: {e}"))?;
    if plan.transaction_records.is_some() {
        producer
            .init_transactions(Duration::from_secs(ADMIN_TIMEOUT_SECS))
            .map_err(|e| anyhow!("cannot initialise transactions: {e}"))?;
    }
    Ok(producer)
}

/// An idempotent producer fetches its producer id when it first has a record to send (and
/// librdkafka waits 500 ms for the connection before asking): send one record and wait for
/// its ack, then forget it, so the run measures sending and not that start-up.
fn warm_up(producer: &ThreadedProducer<Tracker>, topic: &str, payload: &[u8]) -> Result<()> {
    enqueue(producer, topic, payload)?;
    let deadline = Instant::now() + Duration::from_secs(ADMIN_TIMEOUT_SECS);
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            bail!("the warm-up record was not acknowledged in {ADMIN_TIMEOUT_SECS} s");
        }
        std::thread::sleep(Duration::from_millis(PRODUCER_TICK_MS));
    }
    producer.context().check()?;
    *producer.context().latencies.lock().expect("no holder panics") = Histogram::default();
    producer.context().bar.set_position(0);
    Ok(())
}

/// A transactional id unique to this process and moment.
pub(super) fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// Sends `records` records in transactions of `per_txn` records: begin, enqueue, commit.
/// The commit is librdkafka's own, as a librdkafka application's: it sends the queued
/// records at once (whatever `linger.ms`), waits for their acks, then ends the transaction.
fn send_in_transactions(
    producer: &ThreadedProducer<Tracker>,
    topic: &str,
    payload: &[u8],
    records: u64,
    per_txn: u64,
) -> Result<()> {
    let timeout_ms = i32::try_from(PRODUCER_FLUSH_TIMEOUT_SECS * 1000).unwrap_or(i32::MAX);
    let mut sent = 0u64;
    while sent < records {
        let count = per_txn.min(records - sent);
        producer.begin_transaction().map_err(|e| anyhow!("cannot begin a transaction: {e}"))?;
        for _ in 0..count {
            enqueue(producer, topic, payload)?;
        }
        native::commit_transaction(producer.client(), timeout_ms)
            .map_err(|e| anyhow!("cannot commit a transaction: {e}"))?;
        sent += count;
    }
    Ok(())
}

/// Sends `records` records (paced at `rate` per second if given), then waits until every
/// delivery report is in.
fn send(
    producer: &ThreadedProducer<Tracker>,
    topic: &str,
    payload: &[u8],
    records: u64,
    rate: Option<f64>,
) -> Result<()> {
    let started = Instant::now();
    let tick = Duration::from_millis(PRODUCER_TICK_MS);
    for index in 0..records {
        if let Some(rate) = rate {
            // Sleep at least a tick, so records due by then go out together: bursts of at
            // most a tick's worth, well inside linger.ms, and no sleep per record.
            let due = Duration::from_secs_f64(index as f64 / rate);
            let elapsed = started.elapsed();
            if elapsed < due {
                std::thread::sleep((due - elapsed).max(tick));
            }
        }
        enqueue(producer, topic, payload)?;
    }
    let deadline = Instant::now() + Duration::from_secs(PRODUCER_FLUSH_TIMEOUT_SECS);
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            bail!("records still unacknowledged after {PRODUCER_FLUSH_TIMEOUT_SECS} s");
        }
        std::thread::sleep(tick);
    }
    Ok(())
}

/// Hands one record to librdkafka, waiting while its queue is full.
fn enqueue(producer: &ThreadedProducer<Tracker>, topic: &str, payload: &[u8]) -> Result<()> {
    let sent_us = producer.context().now_us();
    let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, sent_us).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_millis(PRODUCER_TICK_MS));
                // The clock starts when librdkafka takes the record, not when we first tried.
                record.delivery_opaque = producer.context().now_us();
            }
            Err((error, _)) => return Err(anyhow!("cannot send to {topic}: {error}")),
        }
    }
}

/// Records the latency of every delivery report of one producer.
struct Tracker {
    /// The zero of the send timestamps carried as delivery opaques.
    started: Instant,
    latencies: Mutex<Histogram>,
    failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
    bar: ProgressBar,
}

impl Tracker {
    /// Microseconds since `started`; fits a `usize` on every 64-bit target.
    fn now_us(&self) -> usize {
        self.started.elapsed().as_micros() as usize
    }

    /// Fails if any record was not acknowledged.
    fn check(&self) -> Result<()> {
        let failures = self.failures.load(Ordering::Relaxed);
        if failures == 0 {
            return Ok(());
        }
        let first = self.first_failure.lock().expect("no holder panics").clone();
        let first = first.unwrap_or_default();
        bail!("the broker did not acknowledge {failures} records; the first error: {first}")
    }
}

impl ClientContext for Tracker {}

impl ProducerContext for Tracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        let now_us = self.now_us();
        match result {
            Ok(_) => {
                let latency_us = now_us.saturating_sub(sent_us) as u64;
                self.latencies.lock().expect("no holder panics").record(latency_us);
                self.bar.inc(1);
            }
            Err((error, _)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_failure.lock().expect("no holder panics");
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}
