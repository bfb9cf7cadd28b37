//! What `sluice bench` prints: the results of every run that ran, as markdown tables or one
//! JSON object, and, when all three ran, each result as a ratio to the machine's limit next
//! to the acceptance target.
use std::fmt::Write;

use serde::Serialize;

use super::consume::ConsumeRun;
use super::disk::{DiskResult, TransactionsDisk};
use super::functions::FunctionsResult;
use super::limits::{
    MIB, TARGET_CONSUME_RATIO_MIN, TARGET_DELIVERY_GZIP_FRACTION, TARGET_IDEMPOTENT_RATIO_MIN,
    TARGET_LATENCY_RATIO_MAX, TARGET_PRODUCE_RATIO_MIN, TARGET_REBALANCE_SECS_MAX,
    TARGET_RSS_IDLE_BYTES_MAX, TARGET_RSS_LOADED_BYTES_MAX, TARGET_TRANSACTIONAL_RATIO_MIN,
    TARGET_VALIDATE_FRACTION, TARGET_VALIDATE_UNCOMPRESSED_FRACTION, TRANSACTION_RECORDS,
};
use super::limits::{TARGET_FUNCTION_INVOCATIONS_PER_S, TARGET_FUNCTION_RECORDS_PER_S};
use super::load::{BrokerResult, WireOnly, WireRuns};
use super::loopback::LoopbackResult;
use super::machine::Machine;
use super::process::CpuUse;
use super::produce::ProduceRun;
use super::rebalance::{GroupsResult, Join, RebalanceRun};
use super::stats::LatencyMs;
use super::wire::{WireConsumeRun, WireProduceRun};

/// Everything one `sluice bench` invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// `--fill-page-cache`: the fill before the broker ran.
    pub page_cache: Option<super::page_cache::PageCacheFill>,
    /// `--broker-override` settings of the benchmarks' broker.
    pub broker_overrides: Vec<String>,
    /// Payload bytes per produce run.
    pub produce_bytes: u64,
    /// Payload bytes per record.
    pub record_bytes: usize,
    /// `sluice bench disk`.
    pub disk: Option<DiskResult>,
    /// `sluice bench loopback`.
    pub loopback: Option<LoopbackResult>,
    /// `sluice bench broker`.
    pub broker: Option<BrokerResult>,
    /// `sluice bench wire`.
    pub wire_only: Option<WireOnly>,
    /// `sluice bench groups`.
    pub groups: Option<GroupsResult>,
    /// `sluice bench functions`.
    pub functions: Option<FunctionsResult>,
    /// `sluice bench delivery`.
    pub delivery: Option<super::delivery::DeliveryResult>,
    /// `sluice bench validate`.
    pub validate: Option<super::validate::ValidateResult>,
    /// Results against limits; empty unless every run ran.
    pub targets: Vec<Target>,
}

/// One result against the machine's limit and its acceptance target.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What was measured.
    pub measure: String,
    /// The result, with units.
    pub result: String,
    /// The limit it is compared with, with units.
    pub limit: String,
    /// Result divided by limit.
    pub ratio: f64,
    /// The acceptance target for the ratio.
    pub target: String,
    /// Whether the target is met.
    pub met: bool,
}

/// Compares the broker's results with the disk and loopback limits.
/// `filled`: the page cache was filled before the broker ran (`--fill-page-cache`).
pub fn targets(
    disk: &DiskResult,
    loopback: &LoopbackResult,
    broker: &BrokerResult,
    filled: bool,
) -> Vec<Target> {
    let runs = &broker.produce;
    let mut targets = vec![
        produce_target(disk, "1 producer", &runs.single, filled),
        idempotent_target(&runs.single, &runs.single_idempotent),
        transactional_target(
            &runs.single,
            &runs.single_transactional,
            Some(&broker.wire.transactions_disk_one_sync[0]),
        ),
        transactional_target(&runs.parallel, &runs.parallel_transactional, None),
        produce_target(disk, "8 producers", &runs.parallel, filled),
        latency_target(disk, &runs.paced),
        consume_target(loopback, &broker.consume),
    ];
    targets.extend(wire_targets(disk, loopback, &broker.wire, filled));
    let produced = gib(runs.bytes());
    let rss = [
        ("broker RSS, idle".to_string(), broker.rss_idle_bytes, TARGET_RSS_IDLE_BYTES_MAX),
        (
            format!("broker RSS after {produced} produced"),
            broker.rss_after_produce_bytes,
            TARGET_RSS_LOADED_BYTES_MAX,
        ),
        (
            format!("broker RSS after {produced} produced and consumed twice"),
            broker.rss_after_large_fetches_bytes,
            TARGET_RSS_LOADED_BYTES_MAX,
        ),
    ];
    for (measure, bytes, limit) in rss {
        targets.push(Target {
            measure,
            result: megabytes(bytes),
            limit: megabytes(limit),
            ratio: bytes as f64 / limit as f64,
            target: "< 1.0x".into(),
            met: bytes < limit,
        });
    }
    targets
}

/// The broker-only results against the same limits and targets.
/// `filled`: as for [`targets`].
pub fn wire_targets(
    disk: &DiskResult,
    loopback: &LoopbackResult,
    wire: &WireRuns,
    filled: bool,
) -> Vec<Target> {
    let produce = |name: &str, run: &WireProduceRun| {
        let measure = format!("broker alone (wire client), {name}");
        durable_target(disk, &measure, run.mib_per_s, run.records_per_s, filled)
    };
    let paced = &wire.paced;
    let latency_ratio = paced.latency_ms.p99 / disk.sync_ms.p99;
    let consume_ratio = wire.consume.mib_per_s / loopback.mib_per_s;
    vec![
        produce("1 connection", &wire.single),
        produce("8 connections", &wire.parallel),
        wire_transactional_target(
            &wire.single,
            &wire.single_transactional,
            [&wire.transactions_disk[0], &wire.transactions_disk_one_sync[0]],
        ),
        wire_transactional_target(
            &wire.parallel,
            &wire.parallel_transactional,
            [&wire.transactions_disk[1], &wire.transactions_disk_one_sync[1]],
        ),
        Target {
            measure: format!(
                "p99 produce latency at half load, broker alone ({:.1} MiB/s in requests of {})",
                paced.mib_per_s,
                gib((paced.batch_records * 8 * 1024) as u64)
            ),
            result: format!("{:.2} ms (p50 {:.2} ms)", paced.latency_ms.p99, paced.latency_ms.p50),
            limit: format!(
                "{:.2} ms one-fsync p99 (the disk alone at this load: p99 {:.2} ms)",
                disk.sync_ms.p99, wire.paced_disk.latency_ms.p99
            ),
            ratio: latency_ratio,
            target: format!("<= {TARGET_LATENCY_RATIO_MAX:.1}x"),
            met: latency_ratio <= TARGET_LATENCY_RATIO_MAX,
        },
        Target {
            measure: "consume, broker alone (wire client), fetches of 50 MiB (1 MiB per partition)"
                .into(),
            result: format!(
                "{:.1} MiB/s ({:.1} MiB/s of batches)",
                wire.consume.mib_per_s, wire.consume.batch_mib_per_s
            ),
            limit: format!("{:.1} MiB/s loopback", loopback.mib_per_s),
            ratio: consume_ratio,
            target: format!(">= {TARGET_CONSUME_RATIO_MIN:.2}x"),
            met: consume_ratio >= TARGET_CONSUME_RATIO_MIN,
        },
    ]
}

fn produce_target(disk: &DiskResult, name: &str, run: &ProduceRun, filled: bool) -> Target {
    durable_target(disk, name, run.mib_per_s, run.records_per_s, filled)
}

/// Durable produce against the naive fsync-per-MiB limit. The naive limit into fresh
/// memory (a growing log's condition) is named beside it, with its ratio only when the
/// broker also wrote into a growing page cache (not `filled`); the target is judged on the
/// first, the higher one wherever the two differ.
fn durable_target(
    disk: &DiskResult,
    name: &str,
    mib_per_s: f64,
    records_per_s: f64,
    filled: bool,
) -> Target {
    let ratio = mib_per_s / disk.naive_mib_per_s;
    let fresh = match (filled, disk.fresh_mib_per_s > 0.0) {
        (false, true) => format!(
            "into fresh memory, as a log grows: {:.1} MiB/s, {:.2}x",
            disk.fresh_mib_per_s,
            mib_per_s / disk.fresh_mib_per_s
        ),
        (true, _) => format!(
            "into fresh memory: {:.1} MiB/s, not this run's condition: the page cache was filled",
            disk.fresh_mib_per_s
        ),
        (false, false) => "into fresh memory: not measured".to_string(),
    };
    Target {
        measure: format!("durable produce, {name}, acks=all"),
        result: format!("{mib_per_s:.1} MiB/s ({records_per_s:.0} records/s)"),
        limit: format!("{:.1} MiB/s naive fsync-per-MiB ({fresh})", disk.naive_mib_per_s),
        ratio,
        target: format!(">= {TARGET_PRODUCE_RATIO_MIN:.1}x"),
        met: ratio >= TARGET_PRODUCE_RATIO_MIN,
    }
}

fn idempotent_target(plain: &ProduceRun, idempotent: &ProduceRun) -> Target {
    let ratio = idempotent.mib_per_s / plain.mib_per_s;
    Target {
        measure: "idempotent produce, 1 producer, acks=all".into(),
        result: format!("{:.1} MiB/s", idempotent.mib_per_s),
        limit: format!("{:.1} MiB/s plain produce, 1 producer", plain.mib_per_s),
        ratio,
        target: format!(">= {TARGET_IDEMPOTENT_RATIO_MIN:.1}x"),
        met: ratio >= TARGET_IDEMPOTENT_RATIO_MIN,
    }
}

/// Transactional against plain produce, with as many producers on each side. `ceiling`:
/// for one producer, the disk alone at one sync per transaction, named with its ratio, and
/// librdkafka's own cap: it registers a transaction's partitions from a 1 ms timer, so one
/// producer ends at most one transaction a millisecond.
fn transactional_target(
    plain: &ProduceRun,
    transactional: &ProduceRun,
    ceiling: Option<&TransactionsDisk>,
) -> Target {
    let ratio = transactional.mib_per_s / plain.mib_per_s;
    let producers = match transactional.producers {
        1 => "1 producer".to_string(),
        n => format!("{n} producers"),
    };
    let ceiling = ceiling
        .map(|disk| {
            let record_bytes = transactional.bytes as f64 / transactional.records.max(1) as f64;
            let timer_cap = TRANSACTION_RECORDS as f64 * record_bytes * 1000.0 / MIB as f64;
            format!(
                " ({}; librdkafka's own cap, one transaction per 1 ms timer: {timer_cap:.1} \
                 MiB/s, {:.2}x)",
                one_sync_ceiling(disk, plain.mib_per_s),
                timer_cap / plain.mib_per_s.max(f64::MIN_POSITIVE)
            )
        })
        .unwrap_or_default();
    Target {
        measure: format!(
            "transactional produce, {producers}, {TRANSACTION_RECORDS} records per transaction"
        ),
        result: format!("{:.1} MiB/s", transactional.mib_per_s),
        limit: format!("{:.1} MiB/s plain produce, {producers}{ceiling}", plain.mib_per_s),
        ratio,
        target: format!(">= {TARGET_TRANSACTIONAL_RATIO_MIN:.1}x"),
        met: ratio >= TARGET_TRANSACTIONAL_RATIO_MIN,
    }
}

/// The broker alone: transactional against plain produce over as many connections.
/// The disk alone in the transactions' pattern (two syncs per transaction) and at one sync
/// per transaction, each with as many files as producers, are named beside the limit (as the
/// latency target names the disk at its load).
fn wire_transactional_target(
    plain: &WireProduceRun,
    transactional: &WireProduceRun,
    [disk, one_sync]: [&TransactionsDisk; 2],
) -> Target {
    let ratio = transactional.mib_per_s / plain.mib_per_s;
    let producers = match transactional.connections {
        1 => "1 producer".to_string(),
        n => format!("{n} producers"),
    };
    let connections = match plain.connections {
        1 => "1 connection".to_string(),
        n => format!("{n} connections"),
    };
    Target {
        measure: format!(
            "transactional produce, broker alone (wire client), {producers}, \
             {TRANSACTION_RECORDS} records per transaction"
        ),
        result: format!("{:.1} MiB/s", transactional.mib_per_s),
        limit: format!(
            "{:.1} MiB/s broker-alone produce, {connections} (the disk alone in the \
             transactions' pattern: {:.1} MiB/s; {})",
            plain.mib_per_s,
            disk.mib_per_s,
            one_sync_ceiling(one_sync, plain.mib_per_s)
        ),
        ratio,
        target: format!(">= {TARGET_TRANSACTIONAL_RATIO_MIN:.1}x"),
        met: ratio >= TARGET_TRANSACTIONAL_RATIO_MIN,
    }
}

/// The disk alone at one sync per transaction against a plain run's rate. For one
/// producer it bounds a log that appends to a growing file, as ours does: that producer
/// waits for at least one sync per commit. Several producers could share syncs.
fn one_sync_ceiling(one_sync: &TransactionsDisk, plain_mib_per_s: f64) -> String {
    let ratio = one_sync.mib_per_s / plain_mib_per_s.max(f64::MIN_POSITIVE);
    match one_sync.files {
        1 => format!(
            "ceiling of an appending log, the disk alone at one sync per transaction: \
             {:.1} MiB/s, {ratio:.2}x",
            one_sync.mib_per_s
        ),
        n => format!(
            "at one sync per transaction, {n} files: {:.1} MiB/s, {ratio:.2}x",
            one_sync.mib_per_s
        ),
    }
}

fn latency_target(disk: &DiskResult, paced: &ProduceRun) -> Target {
    let ratio = paced.latency_ms.p99 / disk.sync_ms.p99;
    Target {
        measure: format!("p99 produce latency at half load ({:.1} MiB/s)", paced.mib_per_s),
        result: format!("{:.2} ms (p50 {:.2} ms)", paced.latency_ms.p99, paced.latency_ms.p50),
        limit: format!("{:.2} ms one-fsync p99", disk.sync_ms.p99),
        ratio,
        target: format!("<= {TARGET_LATENCY_RATIO_MAX:.1}x"),
        met: ratio <= TARGET_LATENCY_RATIO_MAX,
    }
}

/// The rebalance target, on the run whose joins came at random moments.
pub fn rebalance_target(run: &RebalanceRun) -> Target {
    let ratio = run.median_secs / TARGET_REBALANCE_SECS_MAX;
    Target {
        measure: "group of 3 settles after one joins at a random moment, librdkafka defaults"
            .into(),
        result: format!(
            "{:.2} s median, {:.2} s slowest of {} joins",
            run.median_secs,
            run.max_secs,
            run.settle_secs.len()
        ),
        limit: format!("{TARGET_REBALANCE_SECS_MAX:.1} s"),
        ratio,
        target: "<= 1.0x".into(),
        met: ratio <= 1.0,
    }
}

fn consume_target(loopback: &LoopbackResult, consume: &ConsumeRun) -> Target {
    let ratio = consume.mib_per_s / loopback.mib_per_s;
    Target {
        measure: format!("consume, 1 consumer, {}", fetch_label(consume)),
        result: format!("{:.1} MiB/s", consume.mib_per_s),
        limit: format!("{:.1} MiB/s loopback", loopback.mib_per_s),
        ratio,
        target: format!(">= {TARGET_CONSUME_RATIO_MIN:.2}x"),
        met: ratio >= TARGET_CONSUME_RATIO_MIN,
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn fetch_label(run: &ConsumeRun) -> String {
    format!(
        "fetches of {} ({} per partition)",
        gib(run.fetch_bytes.total_max),
        gib(run.fetch_bytes.partition_max)
    )
}

/// The report as markdown.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let machine = &report.machine;
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {:.1} GiB RAM, kernel {}, data dir {} on {}.\n",
        machine.cpus,
        machine.cpu_model,
        machine.memory_bytes as f64 / (1024.0 * MIB as f64),
        machine.kernel,
        machine.data_dir,
        machine.filesystem,
    );
    if !report.broker_overrides.is_empty() {
        let _ = writeln!(
            out,
            "Broker started with `--override` {}.\n",
            report.broker_overrides.join(", ")
        );
    }
    if let Some(disk) = &report.disk {
        disk_section(&mut out, disk);
    }
    if let Some(fill) = &report.page_cache {
        let _ = writeln!(
            out,
            "Page cache filled before the broker's runs (`--fill-page-cache`): {} written and synced in {:.1} s; free memory {} before, \
             {} after.\n",
            gib(fill.bytes),
            fill.secs,
            gib(fill.free_before_bytes),
            gib(fill.free_after_bytes),
        );
    }
    if let Some(loopback) = &report.loopback {
        let _ = writeln!(out, "## Loopback\n\n| Run | Result |\n|---|---|");
        let _ = writeln!(
            out,
            "| TCP 127.0.0.1, 1 connection, {} writes, best of {} | {:.1} MiB/s ({} in {:.2} s; runs: {}) |\n",
            gib(loopback.write_bytes),
            loopback.runs_mib_per_s.len(),
            loopback.mib_per_s,
            gib(loopback.bytes),
            loopback.secs,
            loopback.runs_mib_per_s.iter().map(|r| format!("{r:.1} MiB/s")).collect::<Vec<_>>().join(", "),
        );
    }
    if let Some(broker) = &report.broker {
        broker_section(&mut out, broker, report.record_bytes);
        wire_section(&mut out, &broker.wire, report.record_bytes, broker.partitions);
    }
    if let Some(only) = &report.wire_only {
        wire_section(&mut out, &only.wire, report.record_bytes, only.partitions);
    }
    if let Some(groups) = &report.groups {
        groups_section(&mut out, groups);
    }
    if let Some(functions) = &report.functions {
        functions_section(&mut out, functions);
    }
    if let Some(validate) = &report.validate {
        validate_section(&mut out, validate);
    }
    if let Some(delivery) = &report.delivery {
        delivery_section(&mut out, delivery);
    }
    if !report.targets.is_empty() {
        targets_section(&mut out, &report.targets);
    }
    out
}

fn disk_section(out: &mut String, disk: &DiskResult) {
    let runs: Vec<String> =
        disk.naive_runs_mib_per_s.iter().map(|run| format!("{run:.1} MiB/s")).collect();
    let _ = writeln!(out, "## Disk\n\n| Run | Result |\n|---|---|");
    let _ = writeln!(
        out,
        "| naive: append {} + fdatasync, {} per run, best of {} | {:.1} MiB/s (runs: {}) |",
        gib(disk.naive_write_bytes),
        gib(disk.naive_bytes),
        disk.naive_runs_mib_per_s.len(),
        disk.naive_mib_per_s,
        runs.join(", "),
    );
    let chunks: Vec<String> =
        disk.fresh_chunks_mib_per_s.iter().map(|chunk| format!("{chunk:.1}")).collect();
    let _ = writeln!(
        out,
        "| naive into fresh memory: append {} + fdatasync to one file kept, {}, best {} of \
         the second half | {:.1} MiB/s (each {}, in MiB/s: {}) |",
        gib(disk.naive_write_bytes),
        gib(disk.fresh_bytes),
        gib(disk.fresh_chunk_bytes),
        disk.fresh_mib_per_s,
        gib(disk.fresh_chunk_bytes),
        chunks.join(", "),
    );
    let _ = writeln!(
        out,
        "| one fsync: append {} + fdatasync, x{} | {} |\n",
        gib(disk.sync_write_bytes),
        disk.sync_ms.count,
        latency(&disk.sync_ms),
    );
}

fn broker_section(out: &mut String, broker: &BrokerResult, record_bytes: usize) {
    let runs = &broker.produce;
    let _ = writeln!(
        out,
        "## Broker\n\n{record_bytes}-byte records, acks=all, linger.ms={} unless noted, topic \
         of {} partitions, log.flush=always.\n",
        runs.single.linger_ms, broker.partitions
    );
    let _ = writeln!(
        out,
        "| Run | Records | MiB/s | Records/s | Latency (send to ack) | CPU cores: broker, clients |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let produce_runs = [
        ("produce, 1 producer", &runs.single),
        ("produce, 1 idempotent producer", &runs.single_idempotent),
        (
            "produce, 1 transactional producer (100 records per transaction)",
            &runs.single_transactional,
        ),
        ("produce, 8 producers", &runs.parallel),
        (
            "produce, 8 transactional producers (100 records per transaction each)",
            &runs.parallel_transactional,
        ),
        ("produce, 1 producer at half load", &runs.paced),
        ("produce, 1 producer at half load, linger.ms=0", &runs.paced_no_linger),
    ];
    for (name, run) in produce_runs {
        produce_row(out, name, run);
    }
    for run in [&broker.consume, &broker.consume_large_fetches] {
        let _ = writeln!(
            out,
            "| consume, 1 consumer, {} | {} | {:.1} | {:.0} | | {} |",
            fetch_label(run),
            run.records,
            run.mib_per_s,
            run.records_per_s,
            cores(&run.cpu),
        );
    }
    let _ = writeln!(
        out,
        "\nBroker RSS: {} idle, {} after producing, {} after consuming, {} after consuming \
         with large fetches, {} peak.\n",
        megabytes(broker.rss_idle_bytes),
        megabytes(broker.rss_after_produce_bytes),
        megabytes(broker.rss_after_consume_bytes),
        megabytes(broker.rss_after_large_fetches_bytes),
        megabytes(broker.rss_peak_bytes),
    );
}

fn groups_section(out: &mut String, groups: &GroupsResult) {
    let _ = writeln!(
        out,
        "## Consumer groups\n\nA third librdkafka consumer joins a group of two (default \
         settings: heartbeat.interval.ms=3000, session.timeout.ms=45000, range assignor); \
         timed from its subscribe until every member owns 2 of the 6 partitions.\n"
    );
    let _ = writeln!(out, "| Broker | Third member joins | Median | Slowest | Every join (s) |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let runs = [
        ("held heartbeats (default)", &groups.settled),
        ("held heartbeats (default)", &groups.random),
        ("group.heartbeat.hold.max.ms=0 (as Kafka)", &groups.without_holds),
        ("KIP-848 consumer protocol (group.protocol=consumer)", &groups.consumer_protocol),
    ];
    for (broker, run) in runs {
        let when = match run.join {
            Join::Settled => "as soon as two settled",
            Join::Random => "at a random moment",
        };
        let every: Vec<String> = run.settle_secs.iter().map(|s| format!("{s:.2}")).collect();
        let _ = writeln!(
            out,
            "| {broker} | {when} | {:.2} s | {:.2} s | {} |",
            run.median_secs,
            run.max_secs,
            every.join(", "),
        );
    }
    let _ = writeln!(out);
}

fn wire_section(out: &mut String, wire: &WireRuns, record_bytes: usize, partitions: i32) {
    let _ = writeln!(
        out,
        "## Broker alone (wire client)\n\n{record_bytes}-byte records, acks=all, topic of \
         {partitions} partitions, log.flush=always; pre-built Produce requests of one \
         {}-record batch per partition, {} in flight per connection; transactional producers \
         run one transaction at a time (AddPartitionsToTxn, one Produce of one \
         {}-record batch, EndTxn commit, each awaited; latency per transaction); one Fetch at \
         a time with Kafka's default sizes (`bench/wire.rs`).\n",
        wire.single.batch_records, wire.single.in_flight, wire.single_transactional.batch_records,
    );
    let _ = writeln!(
        out,
        "| Run | Records | MiB/s | Records/s | Latency (request to response) | CPU cores: broker, client |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let runs: [(&str, &WireProduceRun); 5] = [
        ("produce, 1 connection", &wire.single),
        ("produce, 8 connections", &wire.parallel),
        (
            "produce, 1 transactional producer (100 records per transaction)",
            &wire.single_transactional,
        ),
        (
            "produce, 8 transactional producers (100 records per transaction each)",
            &wire.parallel_transactional,
        ),
        ("produce, 1 connection at half load", &wire.paced),
    ];
    for (name, run) in runs {
        produce_row(out, name, run);
    }
    let waiting = &wire.single_beside_waiting;
    let name = format!(
        "produce, 1 connection, {} fetches of another topic waiting ({} still waiting at the end)",
        waiting.fetches, waiting.still_waiting
    );
    produce_row(out, &name, &waiting.run);
    let consume: &WireConsumeRun = &wire.consume;
    let _ = writeln!(
        out,
        "| consume, 1 connection ({} fetches; {:.1} MiB/s of batches) | {} | {:.1} | {:.0} | | {} |\n",
        consume.fetches,
        consume.batch_mib_per_s,
        consume.records,
        consume.mib_per_s,
        consume.records as f64 / consume.secs.max(f64::MIN_POSITIVE),
        cores(&consume.cpu),
    );
    let disk = &wire.paced_disk;
    let _ = writeln!(
        out,
        "The disk alone at the half-load pace (`disk::paced`): {:.0} rounds a second, each \
         appending {} to {} files in parallel and fdatasyncing each: {}.\n",
        disk.rounds_per_s,
        gib(disk.bytes_per_file),
        disk.files,
        latency(&disk.latency_ms),
    );
    let [single, parallel] = &wire.transactions_disk;
    let [single_once, parallel_once] = &wire.transactions_disk_one_sync;
    let of = |run: &WireProduceRun, disk: &TransactionsDisk| {
        run.mib_per_s / disk.mib_per_s.max(f64::MIN_POSITIVE)
    };
    let _ = writeln!(
        out,
        "The disk alone in a transaction's pattern (`disk::transactions`), the limit of the \
         transactional runs: a thread per file appends one transaction's batch ({} bytes) to \
         a file of its own and fdatasyncs, then its marker ({} bytes) and fdatasyncs, for \
         {:.0} s: 1 file {:.1} MiB/s ({:.0} transactions/s), {} files {:.1} MiB/s ({:.0} \
         transactions/s). The broker alone reaches {:.2}x of it with 1 transactional \
         producer and {:.2}x with {}.\n",
        single.batch_bytes,
        single.marker_bytes,
        single.secs,
        single.mib_per_s,
        single.transactions_per_s,
        parallel.files,
        parallel.mib_per_s,
        parallel.transactions_per_s,
        of(&wire.single_transactional, single),
        of(&wire.parallel_transactional, parallel),
        parallel.files,
    );
    let _ = writeln!(
        out,
        "The same with one sync per transaction (records and marker appended, then one \
         fdatasync): 1 file {:.1} MiB/s ({:.0} transactions/s), {:.2}x of the plain 1-connection \
         run: the ceiling of one transactional producer for a log that appends to a growing \
         file, since each commit waits for at least one sync; {} files {:.1} MiB/s ({:.0} \
         transactions/s), {:.2}x of the plain {}-connection run.\n",
        single_once.mib_per_s,
        single_once.transactions_per_s,
        single_once.mib_per_s / wire.single.mib_per_s.max(f64::MIN_POSITIVE),
        parallel_once.files,
        parallel_once.mib_per_s,
        parallel_once.transactions_per_s,
        parallel_once.mib_per_s / wire.parallel.mib_per_s.max(f64::MIN_POSITIVE),
        wire.parallel.connections,
    );
}

fn functions_section(out: &mut String, functions: &FunctionsResult) {
    let _ = writeln!(
        out,
        "## Consumer functions\n\nInvocations through the Lambda Runtime API of a no-op \
         `lambda_runtime` handler ({}: reads the event, answers null), Lambda Kafka events of \
         {}-byte records; \"in process\" is the handler's own work on the same event called \
         directly.\n",
        functions.handler, functions.record_bytes
    );
    let _ = writeln!(
        out,
        "| Records per event | Event bytes | In flight | Invocations/s | Records/s | Latency | In process | Overhead per invocation |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for run in &functions.runs {
        let overhead_us = run.latency_ms.mean * 1000.0 - run.in_process_us;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {:.1} µs | {:.1} µs |",
            run.batch_records,
            run.event_bytes,
            run.concurrency,
            run.invocations_per_s,
            run.records_per_s,
            latency(&run.latency_ms),
            run.in_process_us,
            overhead_us,
        );
    }
    let _ = writeln!(out);
}

/// The consumer-functions targets: invocations/s at batch 1, records/s at batch 100.
pub fn function_targets(functions: &FunctionsResult) -> Vec<Target> {
    let mut targets = Vec::new();
    for run in &functions.runs {
        let (measure, value, target, unit) = if run.batch_records == 1 {
            (
                "invocations/s",
                run.invocations_per_s,
                TARGET_FUNCTION_INVOCATIONS_PER_S,
                "invocations/s",
            )
        } else {
            ("records/s", run.records_per_s, TARGET_FUNCTION_RECORDS_PER_S, "records/s")
        };
        targets.push(Target {
            measure: format!(
                "function {measure} via the Runtime API, batch {}, {} in flight",
                run.batch_records, run.concurrency
            ),
            result: format!("{value:.0} {unit}"),
            limit: format!("{target:.0} {unit}"),
            ratio: value / target,
            target: ">= 1.0x".into(),
            met: value >= target,
        });
    }
    targets
}

fn delivery_section(out: &mut String, run: &super::delivery::DeliveryResult) {
    let _ = writeln!(
        out,
        "## Delivery streams\n\nA topic backlog of {} ({} JSON records) drained by one \
         delivery stream with Firehose's defaults (5 MiB, GZIP) into a folder; the limit is \
         one core gzipping the same records (flate2, default level).\n",
        gib(run.backlog_bytes),
        run.records
    );
    let _ = writeln!(out, "| Run | Result |\n|---|---|");
    let _ = writeln!(out, "| one core's gzip | {:.1} MiB/s |", run.gzip_mib_per_s);
    let _ = writeln!(
        out,
        "| topic to gzip objects | {:.1} MiB/s ({:.2} s, {} objects, {} compressed) |",
        run.delivery_mib_per_s,
        run.secs,
        run.objects,
        gib(run.object_bytes)
    );
    let _ = writeln!(
        out,
        "| the same, UNCOMPRESSED (consuming and publishing alone) | {:.1} MiB/s |",
        run.uncompressed_mib_per_s
    );
    let _ = writeln!(
        out,
        "| resident memory | {:.0} MiB before the stream, {:.0} MiB at peak (backlog {}) |\n",
        run.start_rss_mib,
        run.peak_rss_mib,
        gib(run.backlog_bytes)
    );
}

fn validate_section(out: &mut String, result: &super::validate::ValidateResult) {
    let _ = writeln!(
        out,
        "## Produce validation\n\nEach codec's batches (~300-byte JSON events, about 880 KiB a \
         batch uncompressed) checked as the broker checks them on append (CRC32C, then every \
         record walked, decompressed as a stream), against one core only decompressing them \
         (only the CRC32C when uncompressed). One thread; MiB/s of uncompressed batches.\n"
    );
    let _ =
        writeln!(out, "| Codec | Sent / uncompressed | Validation MiB/s | Limit MiB/s | Ratio |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for run in &result.runs {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.1} | {:.1} | {:.2}x |",
            run.codec,
            run.sent_bytes as f64 / run.uncompressed_bytes as f64,
            run.validate_mib_per_s,
            run.limit_mib_per_s,
            run.validate_mib_per_s / run.limit_mib_per_s,
        );
    }
    let _ = writeln!(
        out,
        "\nRewrites in a topic's `compression.type` (`batch::recompress`, on append when the \
         batch's codec is not the topic's), against the codecs' own work on the same records \
         (compressing into the topic's codec at Kafka's default level; decompressing, into an \
         uncompressed topic). One thread; MiB/s of uncompressed batches.\n"
    );
    let _ = writeln!(out, "| Sent | Stored | Rewrite MiB/s | Limit MiB/s | Ratio |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for run in &result.recompress {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.2}x |",
            run.from,
            run.to,
            run.recompress_mib_per_s,
            run.limit_mib_per_s,
            run.recompress_mib_per_s / run.limit_mib_per_s,
        );
    }
    let _ = writeln!(out);
}

/// Produce validation against decompression alone, per codec: the walk should add little.
pub fn validate_targets(result: &super::validate::ValidateResult) -> Vec<Target> {
    result
        .runs
        .iter()
        .map(|run| {
            let ratio = run.validate_mib_per_s / run.limit_mib_per_s;
            let (limit, fraction) = match run.codec {
                "none" => ("CRC32C alone", TARGET_VALIDATE_UNCOMPRESSED_FRACTION),
                _ => ("decompression alone", TARGET_VALIDATE_FRACTION),
            };
            Target {
                measure: format!("produce validation, {}", run.codec),
                result: format!("{:.1} MiB/s", run.validate_mib_per_s),
                limit: format!("{:.1} MiB/s (one core, {limit})", run.limit_mib_per_s),
                ratio,
                target: format!(">= {fraction}x"),
                met: ratio >= fraction,
            }
        })
        .chain(result.recompress.iter().map(|run| {
            let ratio = run.recompress_mib_per_s / run.limit_mib_per_s;
            Target {
                measure: format!("topic compression.type rewrite, {} to {}", run.from, run.to),
                result: format!("{:.1} MiB/s", run.recompress_mib_per_s),
                limit: format!("{:.1} MiB/s (one core, the codecs alone)", run.limit_mib_per_s),
                ratio,
                target: format!(">= {TARGET_VALIDATE_FRACTION}x"),
                met: ratio >= TARGET_VALIDATE_FRACTION,
            }
        }))
        .collect()
}

/// The delivery target: topic-to-objects speed against one core's gzip.
pub fn delivery_target(run: &super::delivery::DeliveryResult) -> Target {
    let ratio = run.delivery_mib_per_s / run.gzip_mib_per_s;
    Target {
        measure: "delivery stream, topic to gzip objects in a folder".into(),
        result: format!("{:.1} MiB/s", run.delivery_mib_per_s),
        limit: format!("{:.1} MiB/s (one core's gzip)", run.gzip_mib_per_s),
        ratio,
        target: format!(">= {TARGET_DELIVERY_GZIP_FRACTION}x"),
        met: ratio >= TARGET_DELIVERY_GZIP_FRACTION,
    }
}

fn targets_section(out: &mut String, targets: &[Target]) {
    let _ = writeln!(out, "## Against the machine's limits\n");
    let _ = writeln!(out, "| Measure | Result | Limit | Ratio | Target | Met |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for target in targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2}x | {} | {} |",
            target.measure,
            target.result,
            target.limit,
            target.ratio,
            target.target,
            if target.met { "yes" } else { "**no**" },
        );
    }
}

/// A produce run's row: what both clients' tables show.
fn produce_row(out: &mut String, name: &str, run: &impl RunStats) {
    let (records, mib_per_s, records_per_s, latency_ms, cpu) = run.stats();
    let _ = writeln!(
        out,
        "| {name} | {records} | {mib_per_s:.1} | {records_per_s:.0} | {} | {} |",
        latency(latency_ms),
        cores(cpu),
    );
}

/// Records, MiB/s, records/s, latency and CPU of a produce run, whichever client ran it.
trait RunStats {
    fn stats(&self) -> (u64, f64, f64, &LatencyMs, &CpuUse);
}

impl RunStats for ProduceRun {
    fn stats(&self) -> (u64, f64, f64, &LatencyMs, &CpuUse) {
        (self.records, self.mib_per_s, self.records_per_s, &self.latency_ms, &self.cpu)
    }
}

impl RunStats for WireProduceRun {
    fn stats(&self) -> (u64, f64, f64, &LatencyMs, &CpuUse) {
        (self.records, self.mib_per_s, self.records_per_s, &self.latency_ms, &self.cpu)
    }
}

fn cores(cpu: &CpuUse) -> String {
    format!("{:.2}, {:.2}", cpu.broker_cores, cpu.clients_cores)
}

fn latency(ms: &LatencyMs) -> String {
    format!(
        "mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms.mean, ms.p50, ms.p99, ms.max
    )
}

/// Bytes in the largest binary unit that keeps them at or above 1: `4 KiB`, `1.5 GiB`.
fn gib(bytes: u64) -> String {
    let units = [("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)];
    for (unit, size) in units {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if value.fract() == 0.0 {
                format!("{value:.0} {unit}")
            } else {
                format!("{value:.2} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sizes_in_binary_units() {
        assert_eq!(gib(4096), "4 KiB");
        assert_eq!(gib(MIB), "1 MiB");
        assert_eq!(gib(3 * 512 * MIB), "1.50 GiB");
        assert_eq!(gib(100), "100 B");
    }
}
