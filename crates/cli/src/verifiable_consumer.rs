//! `sluice verifiable-consumer`: Kafka's `org.apache.kafka.tools.VerifiableConsumer`, so
//! test harnesses written for it run unchanged.
//!
//! It joins `--group-id`, and prints JSON events: `startup_complete`; `partitions_revoked`
//! before and `partitions_assigned` after each rebalance (from a [`ConsumerContext`], on
//! the polling thread, so events stay in order); one `records_consumed` per poll batch;
//! without `--enable-autocommit`, one synchronous commit and `offsets_committed` per
//! batch; and `shutdown_complete` after leaving the group at `--max-messages` or on
//! SIGTERM/Ctrl-C.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::client::{describe_code, kafka_error, ClientArgs};
use crate::events::{self, NoFields};
use crate::limits::{POLL_INTERVAL_MS, POLL_RECORDS_MAX};
use crate::properties::parse_pairs;
use crate::shutdown;

/// Offset reset policy when the group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResetPolicy {
    /// The first retained record.
    Earliest,
    /// Only records produced from now on.
    Latest,
    /// Fail the partition.
    None,
}

/// Flags of `sluice verifiable-consumer`, as VerifiableConsumer names them.
#[derive(Debug, clap::Args)]
pub struct VerifiableConsumerArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The topic to consume.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// The consumer group to join.
    #[arg(long = "group-id", value_name = "GROUP")]
    group_id: String,
    /// A static membership id (KIP-345).
    #[arg(long = "group-instance-id", value_name = "ID")]
    group_instance_id: Option<String>,
    /// Stop after this many records; -1 means until stopped.
    #[arg(long = "max-messages", default_value_t = -1, allow_negative_numbers = true)]
    max_messages: i64,
    /// Let the client commit in the background instead of after each batch.
    #[arg(long = "enable-autocommit")]
    enable_autocommit: bool,
    /// Where to start without a committed offset.
    #[arg(long = "reset-policy", value_enum, default_value = "earliest")]
    reset_policy: ResetPolicy,
    /// The group session timeout.
    #[arg(long = "session-timeout", default_value_t = 30_000, value_name = "MS")]
    session_timeout_ms: u64,
    /// Partition assignor: Java class names (RangeAssignor, RoundRobinAssignor,
    /// CooperativeStickyAssignor) or librdkafka names, comma-separated.
    #[arg(long = "assignment-strategy", value_name = "STRATEGY")]
    assignment_strategy: Option<String>,
    /// Also print one `record_data` event per record.
    #[arg(long)]
    verbose: bool,
    /// A consumer client property (repeatable).
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    consumer_properties: Vec<String>,
}

/// A partition in `partitions_assigned` and `partitions_revoked`.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionData {
    topic: String,
    partition: i32,
}

/// `partitions_assigned` and `partitions_revoked`.
#[derive(Debug, Serialize)]
pub struct Partitions {
    partitions: Vec<PartitionData>,
}

/// One partition's share of a `records_consumed` batch.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RecordSetSummary {
    topic: String,
    partition: i32,
    count: u64,
    #[serde(rename = "minOffset")]
    min_offset: i64,
    #[serde(rename = "maxOffset")]
    max_offset: i64,
}

/// `records_consumed`.
#[derive(Debug, Serialize)]
pub struct RecordsConsumed {
    count: u64,
    partitions: Vec<RecordSetSummary>,
}

/// One committed offset: the next offset to read.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CommitData {
    topic: String,
    partition: i32,
    offset: i64,
}

/// `offsets_committed`; `error` appears only on failure, like Java's `NON_NULL`.
#[derive(Debug, Serialize)]
pub struct OffsetsCommitted {
    offsets: Vec<CommitData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    success: bool,
}

/// `record_data` (with `--verbose`).
#[derive(Debug, Serialize)]
pub struct RecordData {
    key: Option<String>,
    value: Option<String>,
    topic: String,
    partition: i32,
    offset: i64,
}

/// Prints rebalance events from inside librdkafka's rebalance callback.
struct RebalanceEvents;

impl ClientContext for RebalanceEvents {}

impl ConsumerContext for RebalanceEvents {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            print_partitions("partitions_revoked", list);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            print_partitions("partitions_assigned", list);
        }
    }
}

fn print_partitions(name: &str, list: &TopicPartitionList) {
    let mut partitions: Vec<PartitionData> = list
        .elements()
        .iter()
        .map(|element| PartitionData {
            topic: element.topic().to_string(),
            partition: element.partition(),
        })
        .collect();
    partitions.sort();
    // A callback cannot return an error; a closed stdout ends the run at the next batch.
    if let Err(error) = events::emit(name, Partitions { partitions }) {
        tracing::warn!(error = format!("{error:#}"), "cannot print a rebalance event");
    }
}

type VerifiableConsumer = BaseConsumer<RebalanceEvents>;

/// Runs `sluice verifiable-consumer`.
pub async fn run(args: VerifiableConsumerArgs) -> Result<()> {
    let config = consumer_config(&args)?;
    let stop = shutdown::flag();
    tokio::task::spawn_blocking(move || consume(&args, &config, &stop))
        .await
        .context("the consumer thread panicked")?
}

fn consumer_config(args: &VerifiableConsumerArgs) -> Result<ClientConfig> {
    let overrides = parse_pairs(&args.consumer_properties)?;
    let mut config = args.client.client_config("sluice-verifiable-consumer", &overrides)?;
    config.set("group.id", &args.group_id);
    config.set("enable.auto.commit", args.enable_autocommit.to_string());
    let reset = match args.reset_policy {
        ResetPolicy::Earliest => "earliest",
        ResetPolicy::Latest => "latest",
        ResetPolicy::None => "error",
    };
    config.set("auto.offset.reset", reset);
    config.set("session.timeout.ms", args.session_timeout_ms.to_string());
    if config.get("isolation.level").is_none() {
        // librdkafka defaults to read_committed; the Java consumer does not.
        config.set("isolation.level", "read_uncommitted");
    }
    if let Some(instance) = &args.group_instance_id {
        config.set("group.instance.id", instance);
    }
    if let Some(strategy) = &args.assignment_strategy {
        config.set("partition.assignment.strategy", assignment_strategy(strategy)?);
    }
    Ok(config)
}

/// Maps Java assignor class names to librdkafka's `partition.assignment.strategy`.
pub fn assignment_strategy(text: &str) -> Result<String> {
    let mut names = Vec::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let class = item.rsplit('.').next().unwrap_or(item);
        let name = match class {
            "RangeAssignor" | "range" => "range",
            "RoundRobinAssignor" | "roundrobin" => "roundrobin",
            "CooperativeStickyAssignor" | "cooperative-sticky" => "cooperative-sticky",
            "StickyAssignor" => bail!(
                "librdkafka has no eager StickyAssignor; use CooperativeStickyAssignor \
                 (cooperative-sticky), RangeAssignor or RoundRobinAssignor"
            ),
            _ => bail!("unknown --assignment-strategy {item}"),
        };
        names.push(name);
    }
    if names.is_empty() {
        bail!("--assignment-strategy needs at least one assignor");
    }
    Ok(names.join(","))
}

fn consume(args: &VerifiableConsumerArgs, config: &ClientConfig, stop: &AtomicBool) -> Result<()> {
    let consumer: VerifiableConsumer = config
        .create_with_context(RebalanceEvents)
        .map_err(kafka_error)
        .context("cannot create consumer")?;
    events::emit("startup_complete", NoFields {})?;
    consumer
        .subscribe(&[args.topic.as_str()])
        .map_err(kafka_error)
        .with_context(|| format!("cannot subscribe to topic {}", args.topic))?;
    let limit = u64::try_from(args.max_messages).ok();
    let mut consumed_count = 0u64;
    while !stop.load(Ordering::SeqCst) && limit.is_none_or(|limit| consumed_count < limit) {
        let room = limit.map_or(POLL_RECORDS_MAX, |limit| {
            usize::try_from(limit - consumed_count).unwrap_or(usize::MAX).min(POLL_RECORDS_MAX)
        });
        let batch = poll_batch(&consumer, room, args.verbose)?;
        if batch.is_empty() {
            continue;
        }
        consumed_count += batch.len() as u64;
        events::emit("records_consumed", summarize(&batch))?;
        if !args.enable_autocommit {
            commit(&consumer, &batch)?;
        }
    }
    // Dropping the consumer leaves the group; librdkafka runs the revoke callback then.
    drop(consumer);
    events::emit("shutdown_complete", NoFields {})
}

/// Where one record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    topic: String,
    partition: i32,
    offset: i64,
}

/// One Java-style `poll()`: wait up to [`POLL_INTERVAL_MS`] for a record, then take what
/// is already buffered, up to `room` records.
fn poll_batch(consumer: &VerifiableConsumer, room: usize, verbose: bool) -> Result<Vec<Position>> {
    let mut batch = Vec::new();
    let mut timeout = Duration::from_millis(POLL_INTERVAL_MS);
    while batch.len() < room {
        let message = match consumer.poll(timeout) {
            None => break,
            Some(Err(error)) => {
                // librdkafka logs these itself and retries; a fatal one ends the run.
                if let KafkaError::MessageConsumptionFatal(code) = error {
                    bail!("fatal consumer error: {}", describe_code(code));
                }
                tracing::debug!(error = format!("{:#}", kafka_error(error)), "consumer error");
                break;
            }
            Some(Ok(message)) => message,
        };
        let topic = message.topic().to_string();
        let (partition, offset) = (message.partition(), message.offset());
        if verbose {
            let text =
                |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
            let (key, value) = (text(message.key()), text(message.payload()));
            let body = RecordData { key, value, topic: topic.clone(), partition, offset };
            events::emit("record_data", body)?;
        }
        batch.push(Position { topic, partition, offset });
        timeout = Duration::ZERO;
    }
    Ok(batch)
}

/// The `records_consumed` event for a batch, partitions in (topic, partition) order.
fn summarize(batch: &[Position]) -> RecordsConsumed {
    let mut summaries: BTreeMap<(&str, i32), RecordSetSummary> = BTreeMap::new();
    for position in batch {
        let summary = summaries
            .entry((position.topic.as_str(), position.partition))
            .or_insert_with(|| RecordSetSummary {
                topic: position.topic.clone(),
                partition: position.partition,
                count: 0,
                min_offset: position.offset,
                max_offset: position.offset,
            });
        summary.count += 1;
        summary.min_offset = summary.min_offset.min(position.offset);
        summary.max_offset = summary.max_offset.max(position.offset);
    }
    RecordsConsumed { count: batch.len() as u64, partitions: summaries.into_values().collect() }
}

/// Commits the offset after each partition's last record in the batch, then reports it.
fn commit(consumer: &VerifiableConsumer, batch: &[Position]) -> Result<()> {
    let offsets: Vec<CommitData> = summarize(batch)
        .partitions
        .into_iter()
        .map(|summary| CommitData {
            topic: summary.topic,
            partition: summary.partition,
            offset: summary.max_offset + 1,
        })
        .collect();
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for data in &offsets {
        list.add_partition_offset(&data.topic, data.partition, Offset::Offset(data.offset))
            .map_err(kafka_error)?;
    }
    let event = match consumer.commit(&list, CommitMode::Sync) {
        Ok(()) => OffsetsCommitted { offsets, error: None, success: true },
        Err(error) => {
            let error = Some(format!("{:#}", kafka_error(error)));
            OffsetsCommitted { offsets, error, success: false }
        }
    };
    events::emit("offsets_committed", event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::to_line;

    fn at(partition: i32, offset: i64) -> Position {
        Position { topic: "t".into(), partition, offset }
    }

    #[test]
    fn summarizes_batches_per_partition() {
        let consumed = summarize(&[at(1, 7), at(0, 3), at(1, 8), at(0, 4)]);
        assert_eq!(
            to_line(1, "records_consumed", consumed),
            concat!(
                r#"{"timestamp":1,"name":"records_consumed","count":4,"#,
                r#""partitions":[{"topic":"t","partition":0,"count":2,"minOffset":3,"#,
                r#""maxOffset":4},{"topic":"t","partition":1,"count":2,"minOffset":7,"#,
                r#""maxOffset":8}]}"#,
            )
        );
    }

    #[test]
    fn prints_commit_and_rebalance_events_like_java() {
        let offsets = vec![CommitData { topic: "t".into(), partition: 0, offset: 5 }];
        let ok = OffsetsCommitted { offsets, error: None, success: true };
        assert_eq!(
            to_line(1, "offsets_committed", ok),
            concat!(
                r#"{"timestamp":1,"name":"offsets_committed","offsets":[{"topic":"t","#,
                r#""partition":0,"offset":5}],"success":true}"#,
            )
        );
        let failed =
            OffsetsCommitted { offsets: vec![], error: Some("boom".into()), success: false };
        assert!(
            to_line(1, "offsets_committed", failed).ends_with(r#""error":"boom","success":false}"#)
        );
        let partitions = vec![PartitionData { topic: "t".into(), partition: 2 }];
        assert_eq!(
            to_line(1, "partitions_assigned", Partitions { partitions }),
            concat!(
                r#"{"timestamp":1,"name":"partitions_assigned","partitions":[{"topic":"t","#,
                r#""partition":2}]}"#,
            )
        );
    }

    #[test]
    fn maps_java_assignors_to_librdkafka() {
        let java = "org.apache.kafka.clients.consumer.RoundRobinAssignor";
        assert_eq!(assignment_strategy(java).unwrap(), "roundrobin");
        let both = "org.apache.kafka.clients.consumer.CooperativeStickyAssignor,range";
        assert_eq!(assignment_strategy(both).unwrap(), "cooperative-sticky,range");
        assert!(assignment_strategy("org.apache.kafka.clients.consumer.StickyAssignor").is_err());
        assert!(assignment_strategy("fancy").is_err());
    }
}
