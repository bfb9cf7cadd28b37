//! `sluice topics`: kafka-topics.sh's create, list, describe, delete and alter, with its
//! flag names and output lines, over librdkafka's admin API.
//!
//! Broker errors surface as `KAFKA_ERROR_NAME: description` and exit 2. Topic listings
//! come from all-topics metadata only: a metadata request naming one topic can auto-create
//! it on brokers with `auto.create.topics.enable`, and describing must never create.
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    OwnedResourceSpecifier, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::MetadataTopic;

use crate::client::{describe_code, kafka_error, ClientArgs};
use crate::limits::{ADMIN_REQUEST_TIMEOUT_MS, METADATA_TIMEOUT_MS};
use crate::native;
use crate::properties::{parse_pairs, Properties};

type Admin = AdminClient<DefaultClientContext>;

/// Flags of `sluice topics`, as kafka-topics.sh names them.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("action")
        .required(true)
        .args(["create", "list", "describe", "delete", "alter"])
))]
pub struct TopicsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Create a topic.
    #[arg(long)]
    create: bool,
    /// List all topic names, one per line, sorted.
    #[arg(long)]
    list: bool,
    /// Describe one topic (--topic) or all topics.
    #[arg(long)]
    describe: bool,
    /// Delete a topic.
    #[arg(long)]
    delete: bool,
    /// Add partitions (--partitions) or change topic configs (--config).
    #[arg(long)]
    alter: bool,
    /// The topic to create, describe, delete or alter.
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// Partition count for --create (default: the broker's num.partitions) or --alter.
    #[arg(long, value_name = "N")]
    partitions: Option<i32>,
    /// Replication factor for --create.
    #[arg(long = "replication-factor", value_name = "N", default_value_t = 1)]
    replication_factor: i32,
    /// A topic config override (repeatable), e.g. --config retention.ms=60000.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
    /// With --create: succeed if the topic already exists.
    #[arg(long = "if-not-exists")]
    if_not_exists: bool,
    /// With --delete, --describe or --alter: succeed if the topic does not exist.
    #[arg(long = "if-exists")]
    if_exists: bool,
    /// With --list or --describe: leave out internal topics (names starting `__`).
    #[arg(long = "exclude-internal")]
    exclude_internal: bool,
}

/// Runs `sluice topics`.
pub async fn run(args: TopicsArgs) -> Result<()> {
    let mut config = args.client.client_config("sluice-topics", &Properties::new())?;
    config.set("allow.auto.create.topics", "false");
    let admin: Admin = config.create().map_err(kafka_error).context("cannot create client")?;
    let configs = parse_pairs(&args.configs)?;
    let mut stdout = std::io::stdout().lock();
    if args.list {
        list(&admin, &args, &mut stdout)
    } else if args.describe {
        describe(&admin, &args, &mut stdout).await
    } else {
        let topic = args.topic.as_deref().context("--topic is required")?;
        if args.create {
            create(&admin, &args, topic, &configs, &mut stdout).await
        } else if args.delete {
            delete(&admin, &args, topic).await
        } else {
            alter(&admin, &args, topic, &configs).await
        }
    }
}

fn admin_options() -> AdminOptions {
    let timeout = Duration::from_millis(ADMIN_REQUEST_TIMEOUT_MS);
    AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout))
}

async fn create(
    admin: &Admin,
    args: &TopicsArgs,
    topic: &str,
    configs: &Properties,
    out: &mut impl Write,
) -> Result<()> {
    // -1 asks the broker for its num.partitions (KIP-464), like kafka-topics.sh.
    let partitions = args.partitions.unwrap_or(-1);
    let replication = TopicReplication::Fixed(args.replication_factor);
    let mut new_topic = NewTopic::new(topic, partitions, replication);
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let results = admin
        .create_topics([&new_topic], &admin_options())
        .await
        .map_err(kafka_error)
        .with_context(|| format!("cannot create topic {topic}"))?;
    for result in results {
        match result {
            Ok(name) => writeln!(out, "Created topic {name}.").context("cannot write stdout")?,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if args.if_not_exists => {}
            Err((name, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                bail!("{}", replication_hint(admin, &name, args.replication_factor))
            }
            Err((name, code)) => bail!("cannot create topic {name}: {}", describe_code(code)),
        }
    }
    Ok(())
}

async fn delete(admin: &Admin, args: &TopicsArgs, topic: &str) -> Result<()> {
    let results = admin
        .delete_topics(&[topic], &admin_options())
        .await
        .map_err(kafka_error)
        .with_context(|| format!("cannot delete topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) if args.if_exists => {}
            Err((name, code)) => bail!("cannot delete topic {name}: {}", describe_code(code)),
        }
    }
    Ok(())
}

async fn alter(admin: &Admin, args: &TopicsArgs, topic: &str, configs: &Properties) -> Result<()> {
    if args.partitions.is_none() && configs.is_empty() {
        bail!("--alter needs --partitions N or at least one --config KEY=VALUE");
    }
    if !topic_names(admin)?.iter().any(|name| name == topic) {
        if args.if_exists {
            return Ok(());
        }
        bail!("{}", missing_topic(topic));
    }
    if let Some(partitions) = args.partitions {
        add_partitions(admin, topic, partitions).await?;
    }
    if !configs.is_empty() {
        alter_configs(admin, topic, configs).await?;
    }
    Ok(())
}

async fn add_partitions(admin: &Admin, topic: &str, partitions: i32) -> Result<()> {
    let count = usize::try_from(partitions)
        .ok()
        .filter(|&count| count > 0)
        .with_context(|| format!("--partitions must be at least 1, got {partitions}"))?;
    let results = admin
        .create_partitions([&NewPartitions::new(topic, count)], &admin_options())
        .await
        .map_err(kafka_error)
        .with_context(|| format!("cannot add partitions to topic {topic}"))?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("cannot add partitions to topic {name}: {}", describe_code(code));
        }
    }
    Ok(())
}

/// The AlterConfigs API replaces a topic's whole override set, so the current overrides
/// are read first and the new values merged over them (kafka-topics.sh did the same).
async fn alter_configs(admin: &Admin, topic: &str, configs: &Properties) -> Result<()> {
    let mut merged = topic_configs(admin, &[topic]).await?.remove(topic).unwrap_or_default();
    merged.extend(configs.iter().map(|(key, value)| (key.clone(), value.clone())));
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (key, value) in &merged {
        alter = alter.set(key, value);
    }
    let results = admin
        .alter_configs([&alter], &admin_options())
        .await
        .map_err(kafka_error)
        .with_context(|| format!("cannot alter configs of topic {topic}"))?;
    for result in results {
        if let Err((_, code)) = result {
            bail!("cannot alter configs of topic {topic}: {}", describe_code(code));
        }
    }
    Ok(())
}

/// The message for INVALID_REPLICATION_FACTOR. librdkafka's admin result drops the broker's
/// own message, so say here what the seed's note says: the factor may not exceed the brokers.
fn replication_hint(admin: &Admin, topic: &str, replication_factor: i32) -> String {
    let brokers = admin
        .inner()
        .fetch_metadata(None, Duration::from_millis(METADATA_TIMEOUT_MS))
        .map(|m| m.brokers().len())
        .unwrap_or(0);
    let single = if brokers == 1 {
        " (sluice's embedded broker is a single node: use --replication-factor 1; scale out on \
         Amazon MSK or Apache Kafka)"
    } else {
        ""
    };
    format!(
        "cannot create topic {topic}: INVALID_REPLICATION_FACTOR: replication factor \
         {replication_factor} is larger than the {brokers} available broker(s){single}"
    )
}

/// Every topic's name, sorted. Blocks for at most the metadata timeout; this command runs
/// one request at a time, so blocking the runtime thread costs nothing.
fn topic_names(admin: &Admin) -> Result<Vec<String>> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_millis(METADATA_TIMEOUT_MS))
        .map_err(kafka_error)
        .context("cannot fetch metadata")?;
    let mut names: Vec<String> =
        metadata.topics().iter().map(|topic| topic.name().to_string()).collect();
    names.sort();
    Ok(names)
}

fn missing_topic(topic: &str) -> String {
    let code = RDKafkaErrorCode::UnknownTopicOrPartition;
    format!("{}: Topic '{topic}' does not exist as expected", native::error_name(code))
}

fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

fn list(admin: &Admin, args: &TopicsArgs, out: &mut impl Write) -> Result<()> {
    for name in topic_names(admin)? {
        if !(args.exclude_internal && is_internal(&name)) {
            writeln!(out, "{name}").context("cannot write stdout")?;
        }
    }
    Ok(())
}

async fn describe(admin: &Admin, args: &TopicsArgs, out: &mut impl Write) -> Result<()> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_millis(METADATA_TIMEOUT_MS))
        .map_err(kafka_error)
        .context("cannot fetch metadata")?;
    let mut topics: Vec<&MetadataTopic> = metadata
        .topics()
        .iter()
        .filter(|topic| args.topic.as_deref().is_none_or(|wanted| topic.name() == wanted))
        .filter(|topic| !(args.exclude_internal && is_internal(topic.name())))
        .collect();
    topics.sort_by(|a, b| a.name().cmp(b.name()));
    if let (Some(topic), true) = (&args.topic, topics.is_empty()) {
        if args.if_exists {
            return Ok(());
        }
        bail!("{}", missing_topic(topic));
    }
    let names: Vec<&str> = topics.iter().map(|topic| topic.name()).collect();
    let mut configs = topic_configs(admin, &names).await?;
    let ids = native::topic_ids(admin.inner(), &names, ADMIN_REQUEST_TIMEOUT_MS as i32)
        .unwrap_or_else(|error| {
            tracing::debug!(error, "no topic ids; printing the zero id");
            BTreeMap::new()
        });
    for topic in topics {
        let id = ids.get(topic.name()).map_or(native::ZERO_TOPIC_ID, String::as_str);
        let overrides = configs.remove(topic.name()).unwrap_or_default();
        write_topic(out, topic, id, &overrides).context("cannot write stdout")?;
    }
    Ok(())
}

/// Each topic's overrides (configs set on the topic itself), as kafka-topics.sh shows them.
async fn topic_configs(
    admin: &Admin,
    topics: &[&str],
) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut configs = BTreeMap::new();
    if topics.is_empty() {
        return Ok(configs);
    }
    let specifiers: Vec<ResourceSpecifier> =
        topics.iter().map(|topic| ResourceSpecifier::Topic(topic)).collect();
    let results = admin
        .describe_configs(&specifiers, &admin_options())
        .await
        .map_err(kafka_error)
        .context("cannot describe topic configs")?;
    for result in results {
        let resource = match result {
            Ok(resource) => resource,
            Err(code) => bail!("cannot describe topic configs: {}", describe_code(code)),
        };
        let OwnedResourceSpecifier::Topic(topic) = resource.specifier else { continue };
        let overrides = resource
            .entries
            .into_iter()
            .filter(|entry| is_topic_override(&entry.source, entry.is_default))
            .filter_map(|entry| Some((entry.name, entry.value?)))
            .collect();
        configs.insert(topic, overrides);
    }
    Ok(configs)
}

/// Brokers before Kafka 1.1 report no source; for them, non-default counts as an override.
fn is_topic_override(source: &ConfigSource, is_default: bool) -> bool {
    match source {
        ConfigSource::DynamicTopic => true,
        ConfigSource::Unknown => !is_default,
        _ => false,
    }
}

fn write_topic(
    out: &mut impl Write,
    topic: &MetadataTopic,
    id: &str,
    configs: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    let name = topic.name();
    let mut partitions: Vec<_> = topic.partitions().iter().collect();
    partitions.sort_by_key(|partition| partition.id());
    let replication_factor = partitions.first().map_or(0, |partition| partition.replicas().len());
    let configs = join(configs.iter().map(|(key, value)| format!("{key}={value}")));
    writeln!(
        out,
        "Topic: {name}\tTopicId: {id}\tPartitionCount: {}\tReplicationFactor: \
         {replication_factor}\tConfigs: {configs}",
        partitions.len()
    )?;
    for partition in partitions {
        let leader = match partition.leader() {
            -1 => "none".to_string(),
            leader => leader.to_string(),
        };
        let replicas = join(partition.replicas().iter());
        let isr = join(partition.isr().iter());
        writeln!(
            out,
            "\tTopic: {name}\tPartition: {}\tLeader: {leader}\tReplicas: {replicas}\tIsr: {isr}",
            partition.id()
        )?;
    }
    Ok(())
}

fn join<T: ToString>(items: impl Iterator<Item = T>) -> String {
    items.map(|item| item.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_only_topic_level_overrides() {
        assert!(is_topic_override(&ConfigSource::DynamicTopic, false));
        assert!(!is_topic_override(&ConfigSource::Default, true));
        assert!(!is_topic_override(&ConfigSource::StaticBroker, false));
        assert!(is_topic_override(&ConfigSource::Unknown, false));
    }

    #[test]
    fn names_a_missing_topic_like_kafka() {
        let message = missing_topic("orders");
        assert_eq!(
            message,
            "UNKNOWN_TOPIC_OR_PARTITION: Topic 'orders' does not exist as expected"
        );
    }

    #[test]
    fn requires_exactly_one_action() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            topics: TopicsArgs,
        }
        assert!(Cli::try_parse_from(["t", "--topic", "x"]).is_err());
        assert!(Cli::try_parse_from(["t", "--list", "--create"]).is_err());
        let cli = Cli::try_parse_from(["t", "--create", "--topic", "x", "--config", "a=b"]);
        assert_eq!(cli.unwrap().topics.configs, ["a=b"]);
    }
}
