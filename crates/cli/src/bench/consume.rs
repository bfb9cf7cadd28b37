//! A consume run: one librdkafka consumer reads every record of the benchmark topic from
//! the beginning, with partitions assigned directly (no group, no offset commits) and the
//! given fetch sizes, and the run ends when it reaches the high watermarks read before it
//! started.
//!
//! Only payload bytes are counted, not the batch and record framing the broker also sends,
//! so the bandwidth slightly understates what crossed the socket.
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use indicatif::ProgressBar;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use super::limits::{ADMIN_TIMEOUT_SECS, CONSUMER_IDLE_SECS_MAX, CONSUMER_POLL_MS, MIB};
use super::process::{CpuMeter, CpuUse};

/// Fetch sizes of a consumer.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FetchBytes {
    /// librdkafka's `fetch.max.bytes`.
    pub total_max: u64,
    /// librdkafka's `max.partition.fetch.bytes`.
    pub partition_max: u64,
}

/// Result of a consume run.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeRun {
    /// The consumer's fetch sizes.
    pub fetch_bytes: FetchBytes,
    /// Records read.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Wall time from assignment to the last record, seconds.
    pub secs: f64,
    /// Payload bandwidth.
    pub mib_per_s: f64,
    /// Record rate.
    pub records_per_s: f64,
    /// CPU used by the broker and by the consumer.
    pub cpu: CpuUse,
}

/// Reads partitions `0..partitions` of `topic` from the beginning to their current end,
/// from the broker `broker_pid` at `bootstrap`.
pub fn run(
    (bootstrap, broker_pid): (&str, u32),
    (topic, partitions): (&str, i32),
    fetch_bytes: FetchBytes,
    bar: &ProgressBar,
) -> Result<ConsumeRun> {
    let consumer = create(bootstrap, fetch_bytes)?;
    let timeout = Duration::from_secs(ADMIN_TIMEOUT_SECS);
    let mut assignment = TopicPartitionList::new();
    let mut expected: u64 = 0;
    let mut ends = Vec::with_capacity(usize::try_from(partitions).unwrap_or(0));
    for partition in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| anyhow!("cannot read the offsets of {topic}-{partition}: {e}"))?;
        let count = u64::try_from(high - low).map_err(|_| {
            anyhow!("{topic}-{partition}: high watermark {high} is below log start {low}")
        })?;
        expected += count;
        ends.push((partition, high));
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|e| anyhow!("cannot assign {topic}-{partition}: {e}"))?;
    }
    bar.set_length(expected);
    let meter = CpuMeter::start(broker_pid)?;
    let started = Instant::now();
    consumer.assign(&assignment).map_err(|e| anyhow!("cannot assign {topic}: {e}"))?;
    let (records, bytes) = read(&consumer, (topic, &ends), expected, bar)?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = meter.stop()?;
    Ok(ConsumeRun {
        fetch_bytes,
        records,
        bytes,
        secs,
        mib_per_s: bytes as f64 / MIB as f64 / secs,
        records_per_s: records as f64 / secs,
        cpu,
    })
}

/// Whether the consumer's position reached every partition's end. Transaction markers take
/// offsets but are never delivered, so counting records cannot tell.
fn at_ends(consumer: &BaseConsumer, topic: &str, ends: &[(i32, i64)]) -> bool {
    let Ok(position) = consumer.position() else { return false };
    ends.iter().all(|(partition, high)| {
        *high == 0
            || matches!(
                position.find_partition(topic, *partition).map(|p| p.offset()),
                Some(Offset::Offset(at)) if at >= *high
            )
    })
}

/// Polls until the position reaches `ends` (at most `expected` offsets, of which some may
/// be transaction markers); returns records and payload bytes.
fn read(
    consumer: &BaseConsumer,
    (topic, ends): (&str, &[(i32, i64)]),
    expected: u64,
    bar: &ProgressBar,
) -> Result<(u64, u64)> {
    let poll = Duration::from_millis(CONSUMER_POLL_MS);
    let idle_max = Duration::from_secs(CONSUMER_IDLE_SECS_MAX);
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last_record = Instant::now();
    while records < expected {
        if records % 4096 == 0 && at_ends(consumer, topic, ends) {
            break;
        }
        match consumer.poll(poll) {
            Some(Ok(message)) => {
                records += 1;
                bytes += message.payload_len() as u64;
                last_record = Instant::now();
                bar.inc(1);
            }
            Some(Err(error)) => bail!("the consumer failed after {records} records: {error}"),
            None if at_ends(consumer, topic, ends) => break,
            None if last_record.elapsed() > idle_max => {
                bail!("no record for {CONSUMER_IDLE_SECS_MAX} s after {records} of {expected}")
            }
            None => {}
        }
    }
    Ok((records, bytes))
}

/// A consumer that never commits.
fn create(bootstrap: &str, fetch_bytes: FetchBytes) -> Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "sluice-bench")
        .set("group.id", "sluice-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.max.bytes", fetch_bytes.total_max.to_string())
        .set("max.partition.fetch.bytes", fetch_bytes.partition_max.to_string())
        .create()
        .map_err(|e| anyhow!("cannot create the consumer: {e}"))
}
