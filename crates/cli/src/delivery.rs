//! `sluice delivery run`: delivery streams on their own, against any Kafka cluster and any
//! object store, with the Firehose API for their DirectPut streams.
//!
//! `sluice delivery run --config solution.toml` runs every `[[delivery_stream]]` of the
//! file (or only `--name`s) against `--bootstrap-server` until SIGTERM or Ctrl-C, and serves
//! the Firehose API on `[aws_api] listen`. `sluice up` runs the same streams next to the
//! embedded broker.
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use sluice_delivery::api::{ApiStream, Firehose};
use sluice_delivery::config::Source;
use sluice_delivery::DeliveryStream;
use tokio::sync::watch;

use crate::aws_api::AwsApi;
use crate::client::DEFAULT_BOOTSTRAP_SERVER;
use crate::shutdown;
use crate::solution::SolutionConfig;
use crate::up::DEFAULT_DATA_DIR;

/// `sluice delivery ...`.
#[derive(Debug, clap::Args)]
pub struct DeliveryArgs {
    #[command(subcommand)]
    command: DeliveryCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DeliveryCommand {
    /// Runs the solution file's [[delivery_stream]]s against a Kafka cluster until stopped.
    Run(RunArgs),
}

/// Flags of `sluice delivery run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The solution file (TOML) holding the [[delivery_stream]] tables.
    #[arg(long, value_name = "SOLUTION.TOML")]
    config: PathBuf,
    /// Only the streams with these names (repeatable) [default: all]
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Kafka to consume from, HOST:PORT[,HOST:PORT...] [default: 127.0.0.1:9092]
    #[arg(long = "bootstrap-server", env = "SLUICE_BOOTSTRAP_SERVER", value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    /// Where streams without destination_url publish (`<DIR>/objects/<name>/`)
    /// [default: ./sluice-data]
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Runs `sluice delivery`.
pub async fn run(args: DeliveryArgs) -> Result<()> {
    match args.command {
        DeliveryCommand::Run(args) => run_streams(args).await,
    }
}

async fn run_streams(args: RunArgs) -> Result<()> {
    let solution = SolutionConfig::load(&args.config)?.validate()?;
    let mut streams = solution.delivery_streams;
    if !args.names.is_empty() {
        for name in &args.names {
            if !streams.iter().any(|s| &s.name == name) {
                bail!("{} has no [[delivery_stream]] named {name}", args.config.display());
            }
        }
        streams.retain(|s| args.names.contains(&s.name));
    }
    if streams.is_empty() {
        bail!("{} declares no [[delivery_stream]]", args.config.display());
    }
    let bootstrap = args.bootstrap_server.unwrap_or_else(|| DEFAULT_BOOTSTRAP_SERVER.into());
    let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let mut running =
        Streams::start(streams, &bootstrap, &data_dir, solution.aws_api_listen).await?;
    eprintln!("Firehose API at {}", running.api.url());
    let signal = tokio::select! {
        signal = shutdown::signalled() => signal,
        ended = running.ended() => {
            running.stop().await?;
            return Err(ended);
        }
    };
    tracing::info!(signal = signal.as_deref().unwrap_or("unknown"), "stopping");
    running.stop().await?;
    signal.map(|_| ())
}

/// Delivery streams running as tasks, and the API in front of them.
pub struct Streams {
    /// The AWS-compatible listener.
    pub api: AwsApi,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<(String, sluice_delivery::Result<()>)>,
}

impl Streams {
    /// Starts the API on `listen` and each stream against `bootstrap`.
    pub async fn start(
        streams: Vec<DeliveryStream>,
        bootstrap: &str,
        data_dir: &Path,
        listen: std::net::SocketAddr,
    ) -> Result<Streams> {
        let now =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let objects = data_dir.join("objects");
        let described = streams
            .iter()
            .map(|stream| ApiStream {
                stream: stream.clone(),
                destination_url: stream.destination_url.clone().unwrap_or_else(|| {
                    format!("file://{}", absolute(&objects.join(&stream.name)).display())
                }),
                created_secs: now,
            })
            .collect();
        let firehose = Firehose::new(described, bootstrap, &[])
            .context("cannot start the Firehose API's producer")?;
        let api = AwsApi::start(listen, firehose).await?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let instance_id = crate::function::instance_id(data_dir);
        for stream in streams {
            let options = sluice_delivery::Options {
                bootstrap_servers: bootstrap.to_string(),
                client_properties: Vec::new(),
                default_destination: objects.join(&stream.name),
                instance_id: Some(instance_id.clone()),
                stats: None,
            };
            let stopped = stopped.clone();
            tasks.spawn(async move {
                let name = stream.name.clone();
                (name, sluice_delivery::run(stream, options, stopped).await)
            });
        }
        Ok(Streams { api, stop, tasks })
    }

    /// Waits until a stream stops by itself (an error) and says which and why; pending
    /// forever if none runs.
    pub async fn ended(&mut self) -> anyhow::Error {
        match self.tasks.join_next().await {
            Some(Ok((name, Ok(())))) => {
                anyhow::anyhow!("delivery stream {name} stopped unexpectedly")
            }
            Some(Ok((name, Err(error)))) => {
                anyhow::Error::new(error).context(format!("delivery stream {name} failed"))
            }
            Some(Err(error)) => anyhow::anyhow!("a delivery stream task failed: {error}"),
            None => std::future::pending().await,
        }
    }

    /// Stops the API, then every stream (each publishes what it buffered first).
    pub async fn stop(mut self) -> Result<()> {
        self.api.stop().await;
        let _ = self.stop.send(true);
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(error))) => {
                    tracing::error!(stream = %name, error = format!("{error:#}"), "delivery stream failed");
                    first_error.get_or_insert(anyhow::Error::new(error));
                }
                Err(error) => {
                    first_error
                        .get_or_insert(anyhow::anyhow!("a delivery stream task failed: {error}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The environment a consumer function gets to reach the delivery streams, as a Lambda
/// function gets it: the endpoint, the only DirectPut stream's name (when there is exactly
/// one), a region and LocalStack-style dummy credentials for SDKs that insist on signing.
pub fn function_environment(api_url: &str, streams: &[DeliveryStream]) -> Vec<(String, String)> {
    let mut environment = vec![
        ("AWS_ENDPOINT_URL_FIREHOSE".to_string(), api_url.to_string()),
        (
            "AWS_REGION".to_string(),
            std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        ),
        ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "test".to_string()),
    ];
    let direct: Vec<&DeliveryStream> =
        streams.iter().filter(|s| matches!(s.source, Source::DirectPut { .. })).collect();
    if let [only] = direct.as_slice() {
        environment.push(("DELIVERY_STREAM_NAME".to_string(), only.name.clone()));
    }
    environment
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).ok();
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
