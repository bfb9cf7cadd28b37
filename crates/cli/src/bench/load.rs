//! `sluice bench broker`: a real broker process under load from rdkafka clients.
//!
//! In order: start the broker and read its idle RSS; create one topic of
//! `TOPIC_PARTITIONS` partitions; produce `--bytes` from one producer, then from one
//! idempotent producer, then from one transactional producer (transactions of
//! `TRANSACTION_RECORDS` records), then from `PARALLEL_PRODUCERS` producers in parallel; produce at `LATENCY_LOAD_FRACTION` of the
//! single producer's rate for `LATENCY_RUN_SECS`, then the same with `linger.ms=0` (not a
//! target: it shows how much of that latency is the client's linger); read the broker's
//! RSS; consume every record from the beginning with Kafka's default fetch sizes; read the
//! RSS; consume everything again with large fetches (not a target: it shows what they cost
//! the broker); read the RSS again, and the peak. (Group rebalances are timed on brokers of
//! their own: `rebalance`.)
//!
//! The broker runs with its defaults, so `log.flush=always`: every acknowledgement waits for
//! an fdatasync of each partition it wrote (shared by concurrent requests: group commit).
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde::Serialize;

use super::consume::{self, ConsumeRun, FetchBytes};
use super::disk::{self, PacedDisk, TransactionSyncs, TransactionsDisk};
use super::limits::{
    ADMIN_TIMEOUT_SECS, BROKER_IDLE_SETTLE_MS, CONSUMER_FETCH_DEFAULT, CONSUMER_FETCH_LARGE,
    DISK_TRANSACTIONS_SECS, LATENCY_LOAD_FRACTION, LATENCY_RUN_SECS, PARALLEL_PRODUCERS,
    PRODUCER_LINGER_MS, TOPIC_PARTITIONS, TRANSACTION_RECORDS, WIRE_WAITING_FETCHES,
    WIRE_WAITING_PARTITIONS,
};
use super::process::BrokerProcess;
use super::produce::{self, Plan, ProduceRun};
use super::wire::{self, WireConsumeRun, WireProduceRun};
use super::Progress;

/// The benchmark topic.
const TOPIC: &str = "sluice-bench";
/// The topic the waiting fetches read, which nothing writes.
const WAITING_TOPIC: &str = "sluice-bench-idle";

/// Results of the broker runs.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerResult {
    /// Partitions of the benchmark topic.
    pub partitions: i32,
    /// RSS after start, before any client connected, bytes.
    pub rss_idle_bytes: u64,
    /// The produce runs.
    pub produce: ProduceRuns,
    /// RSS after every produce run, bytes.
    pub rss_after_produce_bytes: u64,
    /// One consumer reading everything produced, Kafka's default fetch sizes.
    pub consume: ConsumeRun,
    /// RSS after that consume run, bytes.
    pub rss_after_consume_bytes: u64,
    /// One consumer reading everything again, large fetches.
    pub consume_large_fetches: ConsumeRun,
    /// RSS after that consume run, bytes.
    pub rss_after_large_fetches_bytes: u64,
    /// Peak RSS over the whole run (`VmHWM`), bytes.
    pub rss_peak_bytes: u64,
    /// The broker alone: the same loads from a client that costs almost nothing.
    pub wire: WireRuns,
}

/// The broker-only runs (`bench/wire.rs`), in the order they ran.
#[derive(Debug, Clone, Serialize)]
pub struct WireRuns {
    /// One connection, closed loop.
    pub single: WireProduceRun,
    /// The same with long-polling fetches of another topic waiting throughout.
    pub single_beside_waiting: WaitingRun,
    /// `PARALLEL_PRODUCERS` connections, closed loop.
    pub parallel: WireProduceRun,
    /// One transactional producer, transactions of `TRANSACTION_RECORDS` records.
    pub single_transactional: WireProduceRun,
    /// `PARALLEL_PRODUCERS` transactional producers, each with its own transactional id.
    pub parallel_transactional: WireProduceRun,
    /// One connection at half the single connection's request rate.
    pub paced: WireProduceRun,
    /// The disk alone at the paced run's load.
    pub paced_disk: PacedDisk,
    /// The disk alone in a transaction's pattern, for 1 and for `PARALLEL_PRODUCERS`
    /// producers: the limits of the two transactional runs.
    pub transactions_disk: [TransactionsDisk; 2],
    /// The same with one sync per transaction: for 1 producer, the least a log that appends
    /// to a growing file waits for per durable commit.
    pub transactions_disk_one_sync: [TransactionsDisk; 2],
    /// One consumer reading the whole topic, Kafka's default fetch sizes.
    pub consume: WireConsumeRun,
}

/// The 1-connection wire run with long polls waiting on a topic nothing writes: a produce
/// must not wake them (`crates/broker/src/wakeups.rs`).
#[derive(Debug, Clone, Serialize)]
pub struct WaitingRun {
    /// Long-polling fetches started before the run.
    pub fetches: usize,
    /// Those still waiting when it ended (any other was answered early and did not wait
    /// throughout).
    pub still_waiting: usize,
    /// The run.
    pub run: WireProduceRun,
}

/// The wire results of `sluice bench wire`, which runs nothing else.
#[derive(Debug, Clone, Serialize)]
pub struct WireOnly {
    /// Partitions of the benchmark topic.
    pub partitions: i32,
    /// The runs.
    pub wire: WireRuns,
}

/// Every produce run, in the order they ran.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceRuns {
    /// One producer, closed loop.
    pub single: ProduceRun,
    /// One idempotent producer (`enable.idempotence=true`), closed loop.
    pub single_idempotent: ProduceRun,
    /// One transactional producer, transactions of `TRANSACTION_RECORDS` records.
    pub single_transactional: ProduceRun,
    /// `PARALLEL_PRODUCERS` producers, closed loop.
    pub parallel: ProduceRun,
    /// `PARALLEL_PRODUCERS` transactional producers, each with its own transactional id.
    pub parallel_transactional: ProduceRun,
    /// One producer at half the single producer's rate.
    pub paced: ProduceRun,
    /// The same with `linger.ms=0`: how much of the latency is the client's linger.
    pub paced_no_linger: ProduceRun,
}

impl ProduceRuns {
    /// Records acknowledged over all runs, warm-up records included: what the topic holds.
    pub fn records(&self) -> u64 {
        self.all().iter().map(|run| run.records + run.warm_up_records).sum()
    }

    /// Payload bytes acknowledged over all runs.
    pub fn bytes(&self) -> u64 {
        self.all().iter().map(|run| run.bytes).sum()
    }

    fn all(&self) -> [&ProduceRun; 7] {
        [
            &self.single,
            &self.single_idempotent,
            &self.single_transactional,
            &self.parallel,
            &self.parallel_transactional,
            &self.paced,
            &self.paced_no_linger,
        ]
    }
}

/// The benchmarks' broker on `dir`, with `--override` for each of `overrides`.
fn start_broker(dir: &Path, overrides: &[String]) -> Result<BrokerProcess> {
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    BrokerProcess::start_with(dir, &overrides)
}

/// Runs every broker measurement with the broker's data folder in `dir`.
pub fn run(
    dir: &Path,
    overrides: &[String],
    bytes: u64,
    record_bytes: usize,
    progress: &Progress,
) -> Result<BrokerResult> {
    let broker = start_broker(dir, overrides)?;
    std::thread::sleep(Duration::from_millis(BROKER_IDLE_SETTLE_MS));
    let rss_idle_bytes = broker.rss_bytes()?;
    create_topic(&broker.bootstrap)?;
    let plan = Plan {
        bootstrap: &broker.bootstrap,
        topic: TOPIC,
        record_bytes,
        linger_ms: PRODUCER_LINGER_MS,
        broker_pid: broker.pid(),
        idempotent: false,
        transaction_records: None,
    };
    let produce = produce_all(&plan, bytes / record_bytes as u64, progress)?;
    let target = wire_target(&broker, record_bytes);
    let wire_produced = wire_produce_all(&target, bytes / record_bytes as u64, dir, progress)?;
    let acknowledged = produce.records() + wire_produced.records();
    let rss_after_produce_bytes = broker.rss_bytes()?;
    let consume = consume_all(&broker, CONSUMER_FETCH_DEFAULT, progress, acknowledged)?;
    let rss_after_consume_bytes = broker.rss_bytes()?;
    let consume_large_fetches = consume_all(&broker, CONSUMER_FETCH_LARGE, progress, acknowledged)?;
    let rss_after_large_fetches_bytes = broker.rss_bytes()?;
    let wire = wire_produced.with_consume(wire_consume(&target, progress, acknowledged)?);
    let rss_peak_bytes = broker.peak_rss_bytes()?;
    Ok(BrokerResult {
        partitions: TOPIC_PARTITIONS,
        rss_idle_bytes,
        produce,
        rss_after_produce_bytes,
        consume,
        rss_after_consume_bytes,
        consume_large_fetches,
        rss_after_large_fetches_bytes,
        rss_peak_bytes,
        wire,
    })
}

/// `sluice bench wire`: only the broker-only runs, on a broker of their own.
pub fn run_wire_only(
    dir: &Path,
    overrides: &[String],
    bytes: u64,
    record_bytes: usize,
    progress: &Progress,
) -> Result<WireOnly> {
    let broker = start_broker(dir, overrides)?;
    create_topic(&broker.bootstrap)?;
    let target = wire_target(&broker, record_bytes);
    let produced = wire_produce_all(&target, bytes / record_bytes as u64, dir, progress)?;
    let consume = wire_consume(&target, progress, produced.records())?;
    Ok(WireOnly { partitions: TOPIC_PARTITIONS, wire: produced.with_consume(consume) })
}

fn wire_target(broker: &BrokerProcess, record_bytes: usize) -> wire::Target<'_> {
    wire::Target {
        bootstrap: &broker.bootstrap,
        topic: TOPIC,
        partitions: TOPIC_PARTITIONS,
        record_bytes,
        broker_pid: broker.pid(),
    }
}

/// The wire produce runs and the disk at the paced load: [`WireRuns`] but the consume run.
struct WireProduced {
    single: WireProduceRun,
    single_beside_waiting: WaitingRun,
    parallel: WireProduceRun,
    single_transactional: WireProduceRun,
    parallel_transactional: WireProduceRun,
    paced: WireProduceRun,
    paced_disk: PacedDisk,
    transactions_disk: [TransactionsDisk; 2],
    transactions_disk_one_sync: [TransactionsDisk; 2],
}

impl WireProduced {
    /// Records acknowledged over all runs, warm-up records included.
    fn records(&self) -> u64 {
        [
            &self.single,
            &self.single_beside_waiting.run,
            &self.parallel,
            &self.single_transactional,
            &self.parallel_transactional,
            &self.paced,
        ]
        .iter()
        .map(|run| run.records + run.warm_up_records)
        .sum()
    }

    fn with_consume(self, consume: WireConsumeRun) -> WireRuns {
        WireRuns {
            single: self.single,
            single_beside_waiting: self.single_beside_waiting,
            parallel: self.parallel,
            single_transactional: self.single_transactional,
            parallel_transactional: self.parallel_transactional,
            paced: self.paced,
            paced_disk: self.paced_disk,
            transactions_disk: self.transactions_disk,
            transactions_disk_one_sync: self.transactions_disk_one_sync,
            consume,
        }
    }
}

/// The wire produce runs: one connection, `PARALLEL_PRODUCERS` connections, as many
/// transactional producers, and one connection at `LATENCY_LOAD_FRACTION` of the first's
/// request rate for `LATENCY_RUN_SECS`; then the disk alone at that paced load, in a folder
/// beside the broker's `dir`.
fn wire_produce_all(
    target: &wire::Target<'_>,
    records: u64,
    dir: &Path,
    progress: &Progress,
) -> Result<WireProduced> {
    let run = |label: &'static str, connections: usize, records: u64, rate: Option<f64>| {
        let bar = progress.bytes(label, records * target.record_bytes as u64);
        let run = wire::produce(target, connections, records, rate, &bar)
            .with_context(|| format!("the run {label:?} failed"))?;
        bar.finish_and_clear();
        anyhow::Ok(run)
    };
    let single = run("wire produce: 1 connection", 1, records, None)?;
    create_topic_named(target.bootstrap, WAITING_TOPIC, WIRE_WAITING_PARTITIONS)?;
    let waiting = wire::WaitingFetches::start(
        target.bootstrap,
        WAITING_TOPIC,
        WIRE_WAITING_PARTITIONS,
        WIRE_WAITING_FETCHES,
    )?;
    let label = "wire produce: 1 connection, fetches of another topic waiting";
    let beside = run(label, 1, records, None)?;
    let single_beside_waiting = WaitingRun {
        fetches: waiting.count(),
        still_waiting: waiting.still_waiting()?,
        run: beside,
    };
    waiting.release(target.bootstrap, WAITING_TOPIC, WIRE_WAITING_PARTITIONS)?;
    let parallel = run("wire produce: 8 connections", PARALLEL_PRODUCERS, records, None)?;
    let transactional = |label: &'static str, connections: usize| {
        let bar = progress.bytes(label, records * target.record_bytes as u64);
        let run = wire::produce_transactional(target, connections, records, &bar)
            .with_context(|| format!("the run {label:?} failed"))?;
        bar.finish_and_clear();
        anyhow::Ok(run)
    };
    let single_transactional = transactional("wire produce: 1 transactional producer", 1)?;
    let label = "wire produce: 8 transactional producers";
    let parallel_transactional = transactional(label, PARALLEL_PRODUCERS)?;
    let (batch, marker) = wire::transaction_on_disk(target.record_bytes);
    let payload_bytes = TRANSACTION_RECORDS * target.record_bytes as u64;
    let transactions_disk = |syncs: TransactionSyncs| {
        let [single, parallel] = [1, PARALLEL_PRODUCERS].map(|files| {
            let bar = progress.spinner("disk in a transaction's pattern");
            let run = disk::transactions(
                &dir.with_extension("txn-disk"),
                files,
                DISK_TRANSACTIONS_SECS,
                (&batch, &marker, payload_bytes),
                syncs,
                &bar,
            );
            bar.finish_and_clear();
            run
        });
        anyhow::Ok([single?, parallel?])
    };
    let two_syncs = transactions_disk(TransactionSyncs::RecordsThenMarker)?;
    let transactions_disk_one_sync = transactions_disk(TransactionSyncs::Once)?;
    let transactions_disk = two_syncs;
    let records_per_s = single.records as f64 / single.secs.max(f64::MIN_POSITIVE);
    let record_rate = records_per_s * LATENCY_LOAD_FRACTION;
    let request_records = (single.batch_records * TOPIC_PARTITIONS as usize) as f64;
    let paced_records = ((record_rate * LATENCY_RUN_SECS as f64) as u64).clamp(1, records);
    let label = "wire produce: 1 connection, half load";
    let requests_per_s = record_rate / request_records;
    let paced = run(label, 1, paced_records, Some(requests_per_s))?;
    let files = TOPIC_PARTITIONS as usize;
    let rounds = (requests_per_s * LATENCY_RUN_SECS as f64) as u64;
    let bar = progress.count("disk at the paced load", rounds.max(1) * files as u64);
    let batch_bytes = single.batch_records * target.record_bytes;
    let paced_disk = disk::paced(
        &dir.with_extension("paced-disk"),
        (requests_per_s, LATENCY_RUN_SECS),
        (files, batch_bytes),
        &bar,
    )?;
    bar.finish_and_clear();
    Ok(WireProduced {
        single,
        single_beside_waiting,
        parallel,
        single_transactional,
        parallel_transactional,
        paced,
        paced_disk,
        transactions_disk,
        transactions_disk_one_sync,
    })
}

/// The wire consume run, checked against the records acknowledged.
fn wire_consume(
    target: &wire::Target<'_>,
    progress: &Progress,
    acknowledged: u64,
) -> Result<WireConsumeRun> {
    let bar = progress.bytes("wire consume", acknowledged * target.record_bytes as u64);
    let run = wire::consume(target, &bar).context("the wire consume run failed")?;
    bar.finish_and_clear();
    if run.records != acknowledged {
        bail!(
            "the wire consumer read {} records but {acknowledged} were acknowledged",
            run.records
        );
    }
    Ok(run)
}

/// The four produce runs, each `records` records except the paced ones, which last
/// `LATENCY_RUN_SECS` (at most `records` records).
fn produce_all(plan: &Plan<'_>, records: u64, progress: &Progress) -> Result<ProduceRuns> {
    let single = produce_run(plan, progress, "produce: 1 producer", 1, records, None)?;
    let idempotent = Plan { idempotent: true, ..*plan };
    let label = "produce: 1 idempotent producer";
    let single_idempotent = produce_run(&idempotent, progress, label, 1, records, None)?;
    // The plain run's linger.ms: librdkafka's commit sends a transaction's queued records
    // at once, whatever the linger (see `send_in_transactions`).
    let transactional =
        Plan { transaction_records: Some(TRANSACTION_RECORDS), idempotent: true, ..*plan };
    let label = "produce: 1 transactional producer";
    let single_transactional = produce_run(&transactional, progress, label, 1, records, None)?;
    let label = "produce: 8 producers";
    let parallel = produce_run(plan, progress, label, PARALLEL_PRODUCERS, records, None)?;
    let label = "produce: 8 transactional producers";
    let parallel_transactional =
        produce_run(&transactional, progress, label, PARALLEL_PRODUCERS, records, None)?;
    let rate = single.records_per_s * LATENCY_LOAD_FRACTION;
    let paced_records = ((rate * LATENCY_RUN_SECS as f64) as u64).clamp(1, records);
    let label = "produce: 1 producer, half load";
    let paced = produce_run(plan, progress, label, 1, paced_records, Some(rate))?;
    let no_linger = Plan { linger_ms: 0, ..*plan };
    let label = "produce: 1 producer, half load, linger.ms=0";
    let paced_no_linger = produce_run(&no_linger, progress, label, 1, paced_records, Some(rate))?;
    Ok(ProduceRuns {
        single,
        single_idempotent,
        single_transactional,
        parallel,
        parallel_transactional,
        paced,
        paced_no_linger,
    })
}

/// One produce run with its own progress bar.
fn produce_run(
    plan: &Plan<'_>,
    progress: &Progress,
    label: &'static str,
    producers: usize,
    records: u64,
    rate: Option<f64>,
) -> Result<ProduceRun> {
    let bar = progress.count(label, records);
    let run = produce::run(plan, producers, records, rate, &bar)
        .with_context(|| format!("the run {label:?} failed"))?;
    bar.finish_and_clear();
    Ok(run)
}

/// Consumes the whole topic and checks that every acknowledged record came back.
fn consume_all(
    broker: &BrokerProcess,
    fetch_bytes: FetchBytes,
    progress: &Progress,
    acknowledged: u64,
) -> Result<ConsumeRun> {
    let bar = progress.count("consume: 1 consumer", 0);
    let endpoint = (broker.bootstrap.as_str(), broker.pid());
    let run = consume::run(endpoint, (TOPIC, TOPIC_PARTITIONS), fetch_bytes, &bar)
        .with_context(|| format!("the consume run with {fetch_bytes:?} failed"))?;
    bar.finish_and_clear();
    if run.records != acknowledged {
        bail!("consumed {} records but {acknowledged} were acknowledged", run.records);
    }
    Ok(run)
}

/// Creates the benchmark topic with `TOPIC_PARTITIONS` partitions.
fn create_topic(bootstrap: &str) -> Result<()> {
    create_topic_named(bootstrap, TOPIC, TOPIC_PARTITIONS)
}

/// Creates `name` with `partitions` partitions.
pub(super) fn create_topic_named(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "sluice-bench")
        .create()
        .map_err(|e| anyhow!("cannot create an admin client: {e}"))?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let timeout = Duration::from_secs(ADMIN_TIMEOUT_SECS);
    let options =
        AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    // The admin client's own thread drives the future, so blocking on it here is safe.
    let results = futures::executor::block_on(admin.create_topics([&topic], &options))
        .map_err(|e| anyhow!("cannot create topic {name}: {e}"))?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("cannot create topic {name}: {code}");
        }
    }
    Ok(())
}
