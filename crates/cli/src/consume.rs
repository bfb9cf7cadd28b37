//! `sluice consume`: kafka-console-consumer.sh. Prints records with
//! [`MessageFormatter`] and ends with `Processed a total of N messages` on stderr.
//!
//! Without `--group` it assigns every partition of the topic (or the one `--partition`)
//! and commits nothing, so reading leaves no committed offsets behind. With `--group` it joins
//! the group, auto-commits, and commits once more synchronously before leaving.
//!
//! The poll loop runs on a blocking thread; it wakes every [`POLL_INTERVAL_MS`] to notice
//! Ctrl-C, SIGTERM and `--timeout-ms`.
use std::io::{BufWriter, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::client::{describe_code, kafka_error, ClientArgs};
use crate::limits::{METADATA_TIMEOUT_MS, POLL_INTERVAL_MS};
use crate::message_format::MessageFormatter;
use crate::properties::parse_pairs;
use crate::{progress, shutdown};

/// Which records a transaction-aware reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationLevel {
    /// Only records of committed transactions.
    #[value(name = "read_committed")]
    ReadCommitted,
    /// Every record, including those of open and aborted transactions (Kafka's default).
    #[value(name = "read_uncommitted")]
    ReadUncommitted,
}

/// Flags of `sluice consume`, as kafka-console-consumer.sh names them.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The topic to consume.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// Start at the earliest offset instead of the latest when no offset is committed.
    #[arg(long = "from-beginning")]
    from_beginning: bool,
    /// Join this consumer group and commit offsets (default: no group, no commits).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Exit after this many records.
    #[arg(long = "max-messages", value_name = "N")]
    max_messages: Option<u64>,
    /// Exit when no record arrives for this long.
    #[arg(long = "timeout-ms", value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Consume only this partition.
    #[arg(long, value_name = "P")]
    partition: Option<i32>,
    /// With --partition: earliest, latest or an offset [default: latest].
    #[arg(long, value_name = "OFFSET", requires = "partition", value_parser = parse_offset)]
    offset: Option<Offset>,
    /// Output: print.key, print.timestamp, print.headers, print.partition, print.offset,
    /// print.value, key.separator, line.separator, headers.separator, null.literal.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// A consumer client property (repeatable), e.g. fetch.min.bytes=1.
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    consumer_properties: Vec<String>,
    /// Transaction visibility [default: read_uncommitted, as in Kafka].
    #[arg(long = "isolation-level", value_enum, value_name = "LEVEL")]
    isolation_level: Option<IsolationLevel>,
}

/// Parses `--offset`: `earliest`, `latest` or a non-negative offset.
pub fn parse_offset(text: &str) -> Result<Offset, String> {
    match text {
        "earliest" => Ok(Offset::Beginning),
        "latest" => Ok(Offset::End),
        number => match number.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(Offset::Offset(offset)),
            _ => Err(format!("expected earliest, latest or an offset >= 0, got `{text}`")),
        },
    }
}

/// Runs `sluice consume`.
pub async fn run(args: ConsumeArgs) -> Result<()> {
    let formatter = MessageFormatter::from_properties(&parse_pairs(&args.properties)?);
    let config = consumer_config(&args)?;
    let stop = shutdown::flag();
    tokio::task::spawn_blocking(move || consume(&args, &config, &formatter, &stop))
        .await
        .context("the consumer thread panicked")?
}

fn consumer_config(args: &ConsumeArgs) -> Result<ClientConfig> {
    let overrides = parse_pairs(&args.consumer_properties)?;
    let mut config = args.client.client_config("sluice-console-consumer", &overrides)?;
    match &args.group {
        Some(group) => config.set("group.id", group),
        // librdkafka refuses assign() without a group.id (`_UNKNOWN_GROUP`). A private
        // group that never joins (no subscribe) and never commits leaves no trace.
        None => config
            .set("group.id", format!("sluice-console-consumer-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false"),
    };
    if args.from_beginning {
        config.set("auto.offset.reset", "earliest");
    } else if config.get("auto.offset.reset").is_none() {
        config.set("auto.offset.reset", "latest");
    }
    match args.isolation_level {
        Some(IsolationLevel::ReadCommitted) => config.set("isolation.level", "read_committed"),
        Some(IsolationLevel::ReadUncommitted) => config.set("isolation.level", "read_uncommitted"),
        // librdkafka defaults to read_committed; Kafka's console consumer does not.
        None if config.get("isolation.level").is_none() => {
            config.set("isolation.level", "read_uncommitted")
        }
        None => &mut config,
    };
    Ok(config)
}

fn consume(
    args: &ConsumeArgs,
    config: &ClientConfig,
    formatter: &MessageFormatter,
    stop: &AtomicBool,
) -> Result<()> {
    let consumer: BaseConsumer =
        config.create().map_err(kafka_error).context("cannot create consumer")?;
    start(&consumer, args)?;
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let bar = progress::records(progress::wanted(stdout_is_terminal), "consumed");
    let mut out = BufWriter::new(std::io::stdout().lock());
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let mut count = 0u64;
    let mut last_record_at = Instant::now();
    while !stop.load(Ordering::SeqCst) && args.max_messages.is_none_or(|max| count < max) {
        match consumer.poll(Duration::from_millis(POLL_INTERVAL_MS)) {
            None => {
                out.flush().context("cannot write stdout")?;
                if timeout.is_some_and(|timeout| last_record_at.elapsed() >= timeout) {
                    break;
                }
            }
            Some(Ok(message)) => {
                formatter.write(&mut out, &message).context("cannot write stdout")?;
                if stdout_is_terminal {
                    out.flush().context("cannot write stdout")?;
                }
                count += 1;
                last_record_at = Instant::now();
                bar.set_position(count);
            }
            Some(Err(error)) => poll_error(error)?,
        }
    }
    out.flush().context("cannot write stdout")?;
    bar.finish_and_clear();
    if args.group.is_some() {
        commit(&consumer);
    }
    // Like Kafka, the count goes to stderr so stdout holds only records.
    let _ = writeln!(std::io::stderr(), "Processed a total of {count} messages");
    Ok(())
}

/// Fatal consumer errors end the command; others (a topic not created yet, a broker
/// restarting) are retried by librdkafka, which already logs them, so they are only
/// debug-logged here.
fn poll_error(error: KafkaError) -> Result<()> {
    if let KafkaError::MessageConsumptionFatal(code) = error {
        bail!("fatal consumer error: {}", describe_code(code));
    }
    tracing::debug!(error = format!("{:#}", kafka_error(error)), "consumer error");
    Ok(())
}

fn commit(consumer: &BaseConsumer) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => {
            tracing::warn!(error = format!("{:#}", kafka_error(error)), "final commit failed")
        }
    }
}

/// Subscribes (with a group and no partition) or assigns partitions.
fn start(consumer: &BaseConsumer, args: &ConsumeArgs) -> Result<()> {
    let topic = args.topic.as_str();
    let default_offset = if args.from_beginning { Offset::Beginning } else { Offset::End };
    let mut assignment = TopicPartitionList::new();
    match (args.partition, &args.group) {
        (Some(partition), _) => {
            let offset = args.offset.unwrap_or(default_offset);
            assignment.add_partition_offset(topic, partition, offset).map_err(kafka_error)?;
        }
        (None, Some(_)) => {
            return consumer
                .subscribe(&[topic])
                .map_err(kafka_error)
                .with_context(|| format!("cannot subscribe to topic {topic}"));
        }
        (None, None) => {
            for partition in partition_ids(consumer, topic)? {
                assignment
                    .add_partition_offset(topic, partition, default_offset)
                    .map_err(kafka_error)?;
            }
        }
    }
    consumer.assign(&assignment).map_err(kafka_error).context("cannot assign partitions")
}

/// The topic's partition ids. A consumer's metadata request never auto-creates topics.
fn partition_ids(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_millis(METADATA_TIMEOUT_MS))
        .map_err(kafka_error)
        .context("cannot fetch metadata")?;
    let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
        bail!("topic {topic} is not in the broker's metadata");
    };
    if let Some(error) = found.error() {
        bail!("cannot read topic {topic}: {}", describe_code(error.into()));
    }
    let ids: Vec<i32> = found.partitions().iter().map(|partition| partition.id()).collect();
    if ids.is_empty() {
        bail!("topic {topic} has no partitions");
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_like_kafka() {
        assert_eq!(parse_offset("earliest"), Ok(Offset::Beginning));
        assert_eq!(parse_offset("latest"), Ok(Offset::End));
        assert_eq!(parse_offset("42"), Ok(Offset::Offset(42)));
        assert!(parse_offset("-1").is_err());
        assert!(parse_offset("soon").is_err());
    }

    #[test]
    fn defaults_to_read_uncommitted_and_latest() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            consume: ConsumeArgs,
        }
        let cli = Cli::try_parse_from(["c", "--topic", "t"]).unwrap();
        let config = consumer_config(&cli.consume).unwrap();
        assert_eq!(config.get("isolation.level"), Some("read_uncommitted"));
        assert_eq!(config.get("auto.offset.reset"), Some("latest"));
        assert!(config.get("group.id").unwrap().starts_with("sluice-console-consumer-"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        let cli = Cli::try_parse_from(["c", "--topic", "t", "--from-beginning", "--group", "g"]);
        let config = consumer_config(&cli.unwrap().consume).unwrap();
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(config.get("group.id"), Some("g"));
        assert!(Cli::try_parse_from(["c", "--topic", "t", "--offset", "1"]).is_err());
    }
}
