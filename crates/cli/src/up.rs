//! `sluice up`: runs a solution locally: starts the embedded broker with the solution's
//! `[broker]` settings, creates its `[[topic]]`s, prints a summary, and stops cleanly on
//! SIGTERM or Ctrl-C.
//!
//! Settings apply in this order, later winning: the solution file (or the built-in
//! default solution when no file is given), `--listeners`, `--override KEY=VALUE`. The data
//! folder is `--data-dir`, else the solution's `log.dirs`, else `./sluice-data`.
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice_broker::{Broker, BrokerConfig};

use crate::broker::{self, print_line, BrokerFlags};
use crate::solution::{Solution, SolutionConfig, DEFAULT_SOLUTION};
use crate::{progress, shutdown};

/// The data folder of `sluice up` when nothing names one.
pub const DEFAULT_DATA_DIR: &str = "./sluice-data";

/// Flags of `sluice up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The solution file (TOML); without it, one local broker and no topics.
    #[arg(value_name = "SOLUTION.TOML")]
    solution: Option<PathBuf>,
    #[command(flatten)]
    flags: BrokerFlags,
}

/// Runs `sluice up`.
pub async fn run(args: UpArgs) -> Result<()> {
    let solution = match &args.solution {
        Some(path) => SolutionConfig::load(path)?,
        None => SolutionConfig::parse(DEFAULT_SOLUTION, "(built-in default)")?,
    }
    .validate()?;
    let mut config = BrokerConfig::new(DEFAULT_DATA_DIR);
    for (key, value) in &solution.broker {
        config.set(key, value);
    }
    let data_dir = args.flags.apply(&mut config, DEFAULT_DATA_DIR)?;
    let spinner = progress::spinner(std::io::stderr().is_terminal(), "starting the broker");
    let started = broker::start(config).await;
    spinner.finish_and_clear();
    let broker = started?;
    let listeners = match create_topics(&broker, &solution).await {
        Ok(()) => broker::listeners(&broker),
        Err(error) => Err(error),
    };
    let listeners = match listeners {
        Ok(listeners) => listeners,
        Err(error) => {
            // Stop before reporting, so a failed start leaves no broker holding the port.
            if let Err(stop_error) = broker::stop(broker).await {
                tracing::warn!(error = format!("{stop_error:#}"), "broker shutdown failed");
            }
            return Err(error);
        }
    };
    let topics: Vec<&str> = solution.topics.iter().map(|topic| topic.name.as_str()).collect();
    let topics = if topics.is_empty() { "(none)".to_string() } else { topics.join(", ") };
    print_line(&format!(
        "sluice is up\n  broker     {listeners}\n  data dir   {}\n  topics     {topics}\n\
         Press Ctrl-C to stop.",
        data_dir.display()
    ))?;
    let signal = shutdown::signalled().await;
    tracing::info!(signal = signal.as_deref().unwrap_or("unknown"), "stopping");
    broker::stop(broker).await?;
    print_line("sluice stopped")?;
    signal.map(|_| ())
}

/// Creates each declared topic, printing `topic NAME created` or `topic NAME exists`.
async fn create_topics(broker: &Broker, solution: &Solution) -> Result<()> {
    for topic in &solution.topics {
        let created = broker
            .create_topic(&topic.name, topic.partitions, &topic.config)
            .await
            .with_context(|| format!("cannot create topic {}", topic.name))?;
        let outcome = if created { "created" } else { "exists" };
        print_line(&format!("topic {} {outcome}", topic.name))?;
    }
    Ok(())
}
