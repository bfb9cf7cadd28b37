//! The `sluice` binary: flags, subcommands and wiring, one module per subcommand.
//!
//! Client subcommands mirror Kafka's own tools flag for flag (kafka-topics.sh,
//! kafka-console-producer.sh, kafka-console-consumer.sh, VerifiableProducer,
//! VerifiableConsumer), so commands written for Kafka or MSK translate 1:1; `broker` and
//! `up` run the embedded broker.
//!
//! Exit codes: 0 on success and when stdout is closed early (`sluice consume | head`),
//! 2 on any error, printed once to stderr as `error: {:#}` (the whole context chain).
//! Logs go to stderr, filtered by `SLUICE_LOG` (default `warn,sluice=info`).
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod aws_api;
mod bench;
mod broker;
mod client;
mod cluster;
mod consume;
mod delivery;
mod events;
mod function;
mod limits;
mod line_reader;
mod message_format;
mod native;
mod produce;
mod progress;
mod properties;
mod shutdown;
mod solution;
mod topics;
mod up;
mod verifiable_consumer;
mod verifiable_producer;

/// Hostile length prefixes in requests must fail decoding, not abort the process: see
/// `sluice_wire::alloc`.
#[global_allocator]
static ALLOC: sluice_wire::alloc::GuardedAlloc = sluice_wire::alloc::GuardedAlloc;

/// The default log filter: warnings from everything, progress from sluice itself.
const DEFAULT_LOG_FILTER: &str = "warn,sluice=info";

/// sluice: a Kafka-compatible streaming platform.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, delete or alter topics (kafka-topics.sh).
    Topics(topics::TopicsArgs),
    /// Produce stdin lines as records (kafka-console-producer.sh).
    Produce(produce::ProduceArgs),
    /// Print records to stdout (kafka-console-consumer.sh).
    Consume(consume::ConsumeArgs),
    /// Produce a numbered sequence, printing JSON events (Kafka's VerifiableProducer).
    VerifiableProducer(verifiable_producer::VerifiableProducerArgs),
    /// Consume in a group, printing JSON events (Kafka's VerifiableConsumer).
    VerifiableConsumer(verifiable_consumer::VerifiableConsumerArgs),
    /// Describe the cluster: id, controller, brokers, bootstrap servers.
    Cluster(cluster::ClusterArgs),
    /// Run the embedded broker in the foreground (kafka-server-start.sh).
    Broker(broker::BrokerArgs),
    /// Run a solution file locally: the broker and its declared topics.
    Up(up::UpArgs),
    /// Measure the machine's limits and the broker against them (not a test).
    Bench(bench::BenchArgs),
    /// Run consumer functions (Lambda-compatible) against a Kafka cluster.
    Function(function::FunctionArgs),
    /// Print a consumer function's log (--follow to keep printing).
    Logs(function::LogsArgs),
    /// Run delivery streams (Firehose-compatible) against a Kafka cluster.
    Delivery(delivery::DeliveryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| {
            let result = runtime.block_on(run(cli.command));
            // A blocking stdin read may still be parked in the runtime's thread pool after
            // an error; do not wait for it.
            runtime.shutdown_background();
            result
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {}", describe(&error));
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Topics(args) => topics::run(args).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::VerifiableProducer(args) => verifiable_producer::run(args).await,
        Command::VerifiableConsumer(args) => verifiable_consumer::run(args).await,
        Command::Cluster(args) => cluster::run(args).await,
        Command::Broker(args) => broker::run(args).await,
        Command::Up(args) => up::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Function(args) => function::run(args).await,
        Command::Logs(args) => function::logs(args).await,
        Command::Delivery(args) => delivery::run(args).await,
    }
}

fn init_tracing() {
    let filter = match std::env::var("SLUICE_LOG") {
        Ok(directives) => tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            let _ = writeln!(std::io::stderr(), "warning: ignoring SLUICE_LOG={directives}: {e}");
            tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)
        }),
        Err(_) => tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The error and its causes, `: `-separated as `{:#}` prints them, leaving out a cause
/// whose text the message so far already ends with (errors such as the log's I/O error
/// print their source in their own text and also name it as their source).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Whether the error comes from writing to a closed stdout (the reader went away).
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        /// As the log's I/O error: its text ends with its source's, which it also names.
        #[derive(Debug)]
        struct WithSource(std::io::Error);
        impl std::fmt::Display for WithSource {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "write index /data/t-0/0.index: {}", self.0)
            }
        }
        impl std::error::Error for WithSource {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::other("No space left on device");
        let error = anyhow::Error::new(WithSource(io)).context("cannot start the broker");
        assert_eq!(
            describe(&error),
            "cannot start the broker: write index /data/t-0/0.index: No space left on device"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&plain), format!("{plain:#}"));
    }

    #[test]
    fn treats_broken_pipes_as_success() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let error = anyhow::Error::new(pipe).context("cannot write stdout");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }

    #[test]
    fn parses_kafka_style_command_lines() {
        let cases: &[&[&str]] = &[
            &[
                "sluice",
                "topics",
                "--bootstrap-server",
                "h:9092",
                "--create",
                "--topic",
                "t",
                "--partitions",
                "3",
                "--replication-factor",
                "1",
                "--config",
                "retention.ms=1",
            ],
            &["sluice", "produce", "--topic", "t", "--property", "parse.key=true"],
            &["sluice", "consume", "--topic", "t", "--from-beginning", "--max-messages", "5"],
            &[
                "sluice",
                "verifiable-producer",
                "--topic",
                "t",
                "--throughput",
                "100",
                "--max-messages",
                "500",
                "--acks",
                "-1",
                "--producer.config",
                "c.properties",
            ],
            &[
                "sluice",
                "verifiable-consumer",
                "--topic",
                "t",
                "--group-id",
                "g",
                "--enable-autocommit",
                "--reset-policy",
                "latest",
            ],
            &["sluice", "cluster", "describe", "--bootstrap-server", "h:1"],
            &["sluice", "broker", "--listeners", "PLAINTEXT://127.0.0.1:0", "--override", "a=b"],
            &["sluice", "up", "solution.toml", "--data-dir", "/tmp/x"],
        ];
        for case in cases {
            if let Err(error) = Cli::try_parse_from(*case) {
                panic!("{case:?}: {error}");
            }
        }
    }
}
