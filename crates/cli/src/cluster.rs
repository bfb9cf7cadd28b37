//! `sluice cluster describe`: what `aws kafka describe-cluster` and
//! `aws kafka get-bootstrap-brokers` answer for MSK: the cluster id, the controller, every
//! broker, and the bootstrap string to give clients.
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::client::{kafka_error, ClientArgs};
use crate::limits::{CLUSTER_INFO_TIMEOUT_MS, METADATA_TIMEOUT_MS};
use crate::native;
use crate::properties::Properties;

/// Flags of `sluice cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

/// Subcommands of `sluice cluster`.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Print the cluster id, controller, brokers and bootstrap servers.
    Describe,
}

/// One broker as metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerInfo {
    /// The broker id (`node.id`).
    pub id: i32,
    /// The advertised host.
    pub host: String,
    /// The advertised port.
    pub port: i32,
}

/// What `describe` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster id, if the broker reports one (Metadata v2+).
    pub cluster_id: Option<String>,
    /// The controller's broker id, if known.
    pub controller_id: Option<i32>,
    /// Brokers sorted by id.
    pub brokers: Vec<BrokerInfo>,
}

/// Runs `sluice cluster`.
pub async fn run(args: ClusterArgs) -> Result<()> {
    match args.command {
        ClusterCommand::Describe => {
            let info = describe(&args.client)?;
            let mut stdout = std::io::stdout().lock();
            write_info(&mut stdout, &info).context("cannot write stdout")
        }
    }
}

/// Reads the cluster's metadata. Blocks for at most the metadata and cluster-info
/// timeouts; nothing else runs meanwhile, so the runtime thread may block.
fn describe(client: &ClientArgs) -> Result<ClusterInfo> {
    let config = client.client_config("sluice-cluster", &Properties::new())?;
    // A consumer handle without a group only fetches metadata: it creates no topic and
    // joins nothing.
    let consumer: BaseConsumer =
        config.create().map_err(kafka_error).context("cannot create client")?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_millis(METADATA_TIMEOUT_MS))
        .map_err(kafka_error)
        .context("cannot fetch metadata")?;
    let mut brokers: Vec<BrokerInfo> = metadata
        .brokers()
        .iter()
        .map(|broker| BrokerInfo {
            id: broker.id(),
            host: broker.host().into(),
            port: broker.port(),
        })
        .collect();
    brokers.sort();
    let cluster_id = native::cluster_id(consumer.client(), CLUSTER_INFO_TIMEOUT_MS);
    let controller_id = native::controller_id(consumer.client(), CLUSTER_INFO_TIMEOUT_MS);
    Ok(ClusterInfo { cluster_id, controller_id, brokers })
}

/// Prints the description; `Bootstrap servers:` is the line scripts grep for.
pub fn write_info(out: &mut impl Write, info: &ClusterInfo) -> std::io::Result<()> {
    let unknown = "unknown".to_string();
    writeln!(out, "Cluster id: {}", info.cluster_id.as_ref().unwrap_or(&unknown))?;
    match info.controller_id {
        Some(id) => writeln!(out, "Controller: {id}")?,
        None => writeln!(out, "Controller: unknown")?,
    }
    writeln!(out, "Brokers:")?;
    for broker in &info.brokers {
        writeln!(out, "  {} {}:{}", broker.id, broker.host, broker.port)?;
    }
    let servers: Vec<String> =
        info.brokers.iter().map(|broker| format!("{}:{}", broker.host, broker.port)).collect();
    writeln!(out, "Bootstrap servers: {}", servers.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_brokers_and_the_bootstrap_line() {
        let info = ClusterInfo {
            cluster_id: Some("abc".into()),
            controller_id: Some(1),
            brokers: vec![
                BrokerInfo { id: 1, host: "127.0.0.1".into(), port: 9092 },
                BrokerInfo { id: 2, host: "127.0.0.1".into(), port: 9093 },
            ],
        };
        let mut out = Vec::new();
        write_info(&mut out, &info).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Cluster id: abc\nController: 1\nBrokers:\n  1 127.0.0.1:9092\n  2 127.0.0.1:9093\n\
             Bootstrap servers: 127.0.0.1:9092,127.0.0.1:9093\n"
        );
    }
}
