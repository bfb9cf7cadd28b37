//! `sluice broker`: runs the embedded broker in the foreground, like kafka-server-start.sh.
//!
//! Settings apply in this order, later winning: defaults, `--config` (a Kafka
//! `server.properties` file), `--listeners`, `--override KEY=VALUE`. The data folder is
//! `--data-dir`, else `log.dirs` (its first entry), else `log.dir`, else the default.
//!
//! On start exactly one line goes to stdout, `sluice broker listening on
//! PLAINTEXT://HOST:PORT (data dir DIR)`, flushed at once: tests and scripts read the real
//! port from it when `--listeners` asks for port 0. SIGTERM or Ctrl-C shuts down cleanly.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use sluice_broker::{Broker, BrokerConfig};

use crate::properties::parse_pairs;
use crate::shutdown;

/// The data folder of `sluice broker` when nothing names one.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// Flags shared by `sluice broker` and `sluice up`.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerFlags {
    /// The data folder (Kafka's log.dirs).
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where to listen, e.g. PLAINTEXT://127.0.0.1:9092 (port 0: any free port).
    #[arg(long, value_name = "PLAINTEXT://HOST:PORT")]
    pub listeners: Option<String>,
    /// A broker property that wins over every other source (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl BrokerFlags {
    /// Applies `--listeners`, then `--override`, then settles the data folder (also
    /// written back as `log.dirs`, so the broker sees one answer). Returns the folder.
    pub fn apply(&self, config: &mut BrokerConfig, default_data_dir: &str) -> Result<PathBuf> {
        if let Some(listeners) = &self.listeners {
            config.set("listeners", listeners);
        }
        for (key, value) in parse_pairs(&self.overrides)? {
            config.set(&key, &value);
        }
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| data_dir_property(&config.properties))
            .unwrap_or_else(|| PathBuf::from(default_data_dir));
        let text = data_dir.to_str().with_context(|| {
            format!("the data folder {} is not valid UTF-8", data_dir.display())
        })?;
        config.set("log.dirs", text);
        config.data_dir = data_dir.clone();
        Ok(data_dir)
    }
}

/// The data folder named by `log.dirs` (first entry) or `log.dir`.
fn data_dir_property(properties: &BTreeMap<String, String>) -> Option<PathBuf> {
    let dirs = properties.get("log.dirs").or_else(|| properties.get("log.dir"))?;
    let first = dirs.split(',').map(str::trim).find(|dir| !dir.is_empty())?;
    Some(PathBuf::from(first))
}

/// Flags of `sluice broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    #[command(flatten)]
    flags: BrokerFlags,
    /// A Kafka server.properties file.
    #[arg(long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Runs `sluice broker`.
pub async fn run(args: BrokerArgs) -> Result<()> {
    let mut config = BrokerConfig::new(DEFAULT_DATA_DIR);
    if let Some(path) = &args.config {
        config
            .load_properties_file(path)
            .with_context(|| format!("cannot load broker config {}", path.display()))?;
    }
    let data_dir = args.flags.apply(&mut config, DEFAULT_DATA_DIR)?;
    let broker = start(config).await?;
    let listeners = listeners(&broker)?;
    print_line(&format!(
        "sluice broker listening on {listeners} (data dir {})",
        data_dir.display()
    ))?;
    let signal = shutdown::signalled().await;
    tracing::info!(signal = signal.as_deref().unwrap_or("unknown"), "stopping the broker");
    stop(broker).await?;
    print_line("sluice broker stopped")?;
    signal.map(|_| ())
}

/// Starts the broker.
pub async fn start(config: BrokerConfig) -> Result<Broker> {
    let data_dir = config.data_dir.clone();
    Broker::start(config)
        .await
        .with_context(|| format!("cannot start the broker (data dir {})", data_dir.display()))
}

/// Stops the broker: finishes in-flight requests and syncs the log.
pub async fn stop(broker: Broker) -> Result<()> {
    broker.shutdown().await.context("the broker did not shut down cleanly")
}

/// The advertised listeners, comma-joined; bound addresses if none are advertised.
pub fn listeners(broker: &Broker) -> Result<String> {
    let mut listeners = broker.listeners();
    if listeners.is_empty() {
        listeners = broker.local_addrs().iter().map(|addr| format!("PLAINTEXT://{addr}")).collect();
    }
    if listeners.is_empty() {
        bail!("the broker started without any listener");
    }
    Ok(listeners.join(","))
}

/// Prints one line to stdout and flushes it, so a reader on a pipe sees it now.
pub fn print_line(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush()).context("cannot write stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(data_dir: Option<&str>, listeners: Option<&str>, overrides: &[&str]) -> BrokerFlags {
        BrokerFlags {
            data_dir: data_dir.map(PathBuf::from),
            listeners: listeners.map(String::from),
            overrides: overrides.iter().map(|text| text.to_string()).collect(),
        }
    }

    #[test]
    fn overrides_win_over_listeners_and_file() {
        let mut config = BrokerConfig::new(DEFAULT_DATA_DIR);
        config.set("num.partitions", "1");
        let flags = flags(None, Some("PLAINTEXT://127.0.0.1:0"), &["num.partitions=3"]);
        flags.apply(&mut config, DEFAULT_DATA_DIR).unwrap();
        assert_eq!(config.properties["listeners"], "PLAINTEXT://127.0.0.1:0");
        assert_eq!(config.properties["num.partitions"], "3");
    }

    #[test]
    fn settles_the_data_dir_flag_then_log_dirs_then_default() {
        let mut config = BrokerConfig::new(DEFAULT_DATA_DIR);
        config.set("log.dirs", "/from/file,/second");
        let dir = flags(None, None, &[]).apply(&mut config, DEFAULT_DATA_DIR).unwrap();
        assert_eq!(dir, PathBuf::from("/from/file"));
        let dir = flags(Some("/flag"), None, &[]).apply(&mut config, DEFAULT_DATA_DIR).unwrap();
        assert_eq!(dir, PathBuf::from("/flag"));
        assert_eq!(config.properties["log.dirs"], "/flag");
        assert_eq!(config.data_dir, PathBuf::from("/flag"));
        let mut fresh = BrokerConfig::new(DEFAULT_DATA_DIR);
        let dir = flags(None, None, &[]).apply(&mut fresh, "./sluice-data").unwrap();
        assert_eq!(dir, PathBuf::from("./sluice-data"));
    }
}
