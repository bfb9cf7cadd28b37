//! The solution file of `sluice up`: a TOML description of what to run locally.
//!
//! [`SolutionConfig`] is the file as written; [`SolutionConfig::validate`] checks all of it
//! up front and returns the [`Solution`] the launcher runs. Unknown keys are errors naming
//! the key, so a typo never silently does nothing. The file has a `[broker]` table
//! (Kafka `server.properties` names to string, integer or boolean values), `[[topic]]`
//! tables, `[[function]]`s (pattern 2), `[[delivery_stream]]`s (pattern 3) and `[aws_api]`
//! (where the Firehose API listens).
//!
//! ```toml
//! [broker]
//! "num.partitions" = 3
//! listeners = "PLAINTEXT://127.0.0.1:9092"
//!
//! [[topic]]
//! name = "orders"
//! partitions = 3
//! config = { "retention.ms" = 86400000 }
//! ```
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::limits::{TOPIC_NAME_BYTES_MAX, TOPIC_PARTITIONS_MAX};
use crate::properties::read_config_file;

/// The solution used when `sluice up` gets no file: one local broker, no topics.
pub const DEFAULT_SOLUTION: &str = r#"
[broker]
listeners = "PLAINTEXT://127.0.0.1:9092"
"#;

/// The solution file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolutionConfig {
    /// Broker properties, Kafka-named.
    #[serde(default)]
    pub broker: BTreeMap<String, toml::Value>,
    /// Topics to create at startup.
    #[serde(default, rename = "topic")]
    pub topics: Vec<TopicConfig>,
    /// Consumer functions (pattern 2).
    #[serde(default, rename = "function")]
    pub functions: Vec<sluice_functions::FunctionConfig>,
    /// Delivery streams (pattern 3).
    #[serde(default, rename = "delivery_stream")]
    pub delivery_streams: Vec<sluice_delivery::DeliveryStreamConfig>,
    /// The AWS-compatible HTTP endpoint (the Firehose API).
    #[serde(default)]
    pub aws_api: AwsApiConfig,
}

/// `[aws_api]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsApiConfig {
    /// HOST:PORT of the listener (default 127.0.0.1:4566, LocalStack's).
    pub listen: Option<String>,
}

/// One `[[topic]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// The topic name.
    pub name: String,
    /// The partition count.
    #[serde(default = "default_partitions")]
    pub partitions: i64,
    /// Topic configs, Kafka-named (`retention.ms`, `cleanup.policy`, ...).
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
}

fn default_partitions() -> i64 {
    1
}

/// A validated solution: what `sluice up` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// Broker properties as strings, ready for `BrokerConfig::set`.
    pub broker: BTreeMap<String, String>,
    /// Topics in file order; names are unique.
    pub topics: Vec<Topic>,
    /// Consumer functions in file order; names are unique.
    pub functions: Vec<sluice_functions::Function>,
    /// Delivery streams in file order; names are unique.
    pub delivery_streams: Vec<sluice_delivery::DeliveryStream>,
    /// Where the AWS-compatible API listens.
    pub aws_api_listen: std::net::SocketAddr,
}

/// A validated topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// A legal Kafka topic name.
    pub name: String,
    /// In `1..=TOPIC_PARTITIONS_MAX`.
    pub partitions: i32,
    /// Topic configs as strings.
    pub config: BTreeMap<String, String>,
}

impl SolutionConfig {
    /// Parses solution TOML; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<SolutionConfig> {
        toml::from_str(text).with_context(|| format!("invalid solution file {origin}"))
    }

    /// Reads and parses a solution file.
    pub fn load(path: &Path) -> Result<SolutionConfig> {
        SolutionConfig::parse(&read_config_file(path)?, &path.display().to_string())
    }

    /// Checks every setting and returns the solution to run.
    pub fn validate(&self) -> Result<Solution> {
        let mut broker = BTreeMap::new();
        for (key, value) in &self.broker {
            broker.insert(key.clone(), scalar(value).with_context(|| format!("[broker] {key}"))?);
        }
        let mut names = BTreeSet::new();
        let mut topics = Vec::with_capacity(self.topics.len());
        for topic in &self.topics {
            let validated = topic.validate()?;
            if !names.insert(validated.name.clone()) {
                bail!("[[topic]] {} is declared twice", validated.name);
            }
            topics.push(validated);
        }
        let mut function_names = BTreeSet::new();
        let mut functions = Vec::with_capacity(self.functions.len());
        for function in &self.functions {
            let validated = function.validate()?;
            if !function_names.insert(validated.name.clone()) {
                bail!("[[function]] {} is declared twice", validated.name);
            }
            functions.push(validated);
        }
        let mut stream_names = BTreeSet::new();
        let mut delivery_streams = Vec::with_capacity(self.delivery_streams.len());
        for stream in &self.delivery_streams {
            let validated = stream.validate()?;
            if !stream_names.insert(validated.name.clone()) {
                bail!("[[delivery_stream]] {} is declared twice", validated.name);
            }
            delivery_streams.push(validated);
        }
        let listen =
            self.aws_api.listen.as_deref().unwrap_or(crate::limits::AWS_API_LISTEN_DEFAULT);
        let aws_api_listen = listen.parse().with_context(|| {
            format!("[aws_api] listen = {listen:?} is not HOST:PORT (e.g. 127.0.0.1:4566)")
        })?;
        Ok(Solution { broker, topics, functions, delivery_streams, aws_api_listen })
    }
}

impl TopicConfig {
    fn validate(&self) -> Result<Topic> {
        let name = &self.name;
        check_topic_name(name)?;
        let partitions = i32::try_from(self.partitions)
            .ok()
            .filter(|count| (1..=TOPIC_PARTITIONS_MAX).contains(count))
            .with_context(|| {
                format!(
                    "[[topic]] {name}: partitions = {} is out of range; use 1 to \
                     {TOPIC_PARTITIONS_MAX}",
                    self.partitions
                )
            })?;
        let mut config = BTreeMap::new();
        for (key, value) in &self.config {
            let text = scalar(value).with_context(|| format!("[[topic]] {name}: config {key}"))?;
            config.insert(key.clone(), text);
        }
        Ok(Topic { name: name.clone(), partitions, config })
    }
}

/// A property value: a string, integer, float or boolean, written as Kafka reads it.
fn scalar(value: &toml::Value) -> Result<String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        other => bail!("expected a string, number or boolean, got a {}", other.type_str()),
    }
}

/// Kafka's topic name rule (`Topic.validate`): 1 to 249 of `[a-zA-Z0-9._-]`, not `.`/`..`.
pub fn check_topic_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." {
        bail!("[[topic]] name {name:?} is not allowed");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        bail!(
            "[[topic]] name {name} is {} bytes; Kafka allows at most {TOPIC_NAME_BYTES_MAX}",
            name.len()
        );
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        bail!("[[topic]] name {name:?} contains {bad:?}; use only letters, digits, '.', '_', '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<Solution> {
        SolutionConfig::parse(text, "test.toml")?.validate()
    }

    #[test]
    fn reads_broker_properties_and_topics() {
        let solution = validate(
            r#"
            [broker]
            "num.partitions" = 3
            "auto.create.topics.enable" = false
            listeners = "PLAINTEXT://127.0.0.1:0"

            [[topic]]
            name = "orders"
            partitions = 3
            config = { "retention.ms" = 86400000, "cleanup.policy" = "compact" }

            [[topic]]
            name = "audit"
            "#,
        )
        .unwrap();
        assert_eq!(solution.broker["num.partitions"], "3");
        assert_eq!(solution.broker["auto.create.topics.enable"], "false");
        assert_eq!(solution.topics[0].config["retention.ms"], "86400000");
        assert_eq!(
            solution.topics[1],
            Topic { name: "audit".into(), partitions: 1, config: BTreeMap::new() }
        );
    }

    #[test]
    fn the_default_solution_is_valid() {
        let solution = validate(DEFAULT_SOLUTION).unwrap();
        assert!(solution.topics.is_empty());
        assert_eq!(solution.broker["listeners"], "PLAINTEXT://127.0.0.1:9092");
    }

    #[test]
    fn rejects_unknown_keys_by_name() {
        let error = validate("[brokers]\nx = 1\n").unwrap_err();
        assert!(format!("{error:#}").contains("brokers"), "{error:#}");
        let error = validate("[[topic]]\nname = \"a\"\npartition = 2\n").unwrap_err();
        assert!(format!("{error:#}").contains("partition"), "{error:#}");
    }

    #[test]
    fn rejects_bad_topics() {
        assert!(validate("[[topic]]\nname = \"a b\"\n").is_err());
        assert!(validate("[[topic]]\nname = \"..\"\n").is_err());
        assert!(validate("[[topic]]\nname = \"a\"\npartitions = 0\n").is_err());
        assert!(validate("[[topic]]\nname = \"a\"\n[[topic]]\nname = \"a\"\n").is_err());
        assert!(validate("[[topic]]\npartitions = 1\n").is_err());
        let nested = validate("[broker]\nlisteners = [\"a\"]\n").unwrap_err();
        assert!(format!("{nested:#}").contains("[broker] listeners"), "{nested:#}");
    }
}
