//! `sluice up`: runs a solution locally: starts the embedded broker with the solution's
//! `[broker]` settings, creates its `[[topic]]`s, starts its `[[delivery_stream]]`s with the
//! Firehose API and its `[[function]]`s against the broker, prints a summary, and stops
//! cleanly on SIGTERM or Ctrl-C (functions first, then streams, so their last commits reach
//! the broker).
//!
//! Settings apply in this order, later winning: the solution file (or the built-in
//! default solution when no file is given), `--listeners`, `--override KEY=VALUE`. The data
//! folder is `--data-dir`, else the solution's `log.dirs`, else `./sluice-data`.
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice_broker::{Broker, BrokerConfig};

use crate::broker::{self, print_line, BrokerFlags};
use crate::delivery::{function_environment, Streams};
use crate::function::Running;
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
    let names: Vec<String> = solution.functions.iter().map(|f| f.name.clone()).collect();
    let functions = if names.is_empty() { "(none)".to_string() } else { names.join(", ") };
    let bootstrap = bootstrap_address(&broker);
    let stream_names: Vec<String> =
        solution.delivery_streams.iter().map(|s| s.name.clone()).collect();
    let mut streams = None;
    let mut functions_to_run = solution.functions;
    if !solution.delivery_streams.is_empty() {
        let started = Streams::start(
            solution.delivery_streams.clone(),
            &bootstrap,
            &data_dir,
            solution.aws_api_listen,
        )
        .await;
        let started = match started {
            Ok(started) => started,
            Err(error) => {
                let _ = broker::stop(broker).await;
                return Err(error);
            }
        };
        let environment = function_environment(&started.api.url(), &solution.delivery_streams);
        for function in &mut functions_to_run {
            for (key, value) in &environment {
                function.environment.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        streams = Some(started);
    }
    let mut running = Running::start(functions_to_run, &bootstrap, &data_dir);
    let delivery =
        if stream_names.is_empty() { "(none)".to_string() } else { stream_names.join(", ") };
    let api = streams.as_ref().map_or("(off: no delivery streams)".to_string(), |s| s.api.url());
    print_line(&format!(
        "sluice is up\n  broker     {listeners}\n  data dir   {}\n  topics     {topics}\n\
         \x20 functions  {functions}\n  delivery   {delivery}\n  aws api    {api}\n\
         Press Ctrl-C to stop.",
        data_dir.display()
    ))?;
    let signal = tokio::select! {
        signal = shutdown::signalled() => signal,
        ended = running.ended() => {
            // A function stopped by itself: stop the rest and the broker, then say why.
            let _ = running.stop().await;
            if let Some(streams) = streams {
                let _ = streams.stop().await;
            }
            broker::stop(broker).await?;
            return Err(ended);
        }
        ended = async {
            match streams.as_mut() {
                Some(streams) => streams.ended().await,
                None => std::future::pending().await,
            }
        } => {
            let _ = running.stop().await;
            if let Some(streams) = streams {
                let _ = streams.stop().await;
            }
            broker::stop(broker).await?;
            return Err(ended);
        }
    };
    tracing::info!(signal = signal.as_deref().unwrap_or("unknown"), "stopping");
    // Functions first (their last puts reach the streams), then the streams (they publish
    // what they buffered), then the broker.
    let stopped = running.stop().await;
    let delivered = match streams {
        Some(streams) => streams.stop().await,
        None => Ok(()),
    };
    broker::stop(broker).await?;
    stopped?;
    delivered?;
    print_line("sluice stopped")?;
    signal.map(|_| ())
}

/// Where the embedded broker's functions connect: its first bound address, as loopback
/// when it listens on every interface.
fn bootstrap_address(broker: &Broker) -> String {
    match broker.local_addrs().first() {
        Some(addr) if addr.ip().is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        Some(addr) => addr.to_string(),
        None => "127.0.0.1:9092".to_string(),
    }
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
