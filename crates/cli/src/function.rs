//! `sluice function run` and `sluice logs`: consumer functions on their own, against any
//! Kafka cluster, and their logs.
//!
//! `sluice function run --config solution.toml` runs every `[[function]]` of the file (or
//! only `--name`s) against `--bootstrap-server`, until SIGTERM or Ctrl-C. Started on several
//! machines with the same file, the functions share their topics' partitions through their
//! consumer groups: that is how a function scales out. `sluice up` runs the same functions
//! next to the embedded broker.
//!
//! `sluice logs FUNCTION [--follow]` prints the function's log (`<data dir>/functions/`),
//! what CloudWatch Logs shows for a Lambda function.
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sluice_functions::{Function, Options};
use tokio::sync::watch;

use crate::client::DEFAULT_BOOTSTRAP_SERVER;
use crate::shutdown;
use crate::solution::SolutionConfig;
use crate::up::DEFAULT_DATA_DIR;

/// `sluice function ...`.
#[derive(Debug, clap::Args)]
pub struct FunctionArgs {
    #[command(subcommand)]
    command: FunctionCommand,
}

#[derive(Debug, clap::Subcommand)]
enum FunctionCommand {
    /// Runs the solution file's [[function]]s against a Kafka cluster until stopped.
    Run(RunArgs),
}

/// Flags of `sluice function run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The solution file (TOML) holding the [[function]] tables.
    #[arg(long, value_name = "SOLUTION.TOML")]
    config: PathBuf,
    /// Only the functions with these names (repeatable) [default: all]
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Kafka to consume from, HOST:PORT[,HOST:PORT...] [default: 127.0.0.1:9092]
    #[arg(long = "bootstrap-server", env = "SLUICE_BOOTSTRAP_SERVER", value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    /// Where function logs go (`<DIR>/functions/<name>.log`) [default: ./sluice-data]
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Flags of `sluice logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The function.
    #[arg(value_name = "FUNCTION")]
    function: String,
    /// Keep printing lines as they are written, until stopped.
    #[arg(long, short = 'f')]
    follow: bool,
    /// The data folder of `sluice up` or `sluice function run` [default: ./sluice-data]
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Runs `sluice function`.
pub async fn run(args: FunctionArgs) -> Result<()> {
    match args.command {
        FunctionCommand::Run(args) => run_functions(args).await,
    }
}

async fn run_functions(args: RunArgs) -> Result<()> {
    let solution = SolutionConfig::load(&args.config)?.validate()?;
    let mut functions = solution.functions;
    if !args.names.is_empty() {
        for name in &args.names {
            if !functions.iter().any(|f| &f.name == name) {
                bail!("{} has no [[function]] named {name}", args.config.display());
            }
        }
        functions.retain(|f| args.names.contains(&f.name));
    }
    if functions.is_empty() {
        bail!("{} declares no [[function]]", args.config.display());
    }
    let bootstrap = args.bootstrap_server.unwrap_or_else(|| DEFAULT_BOOTSTRAP_SERVER.into());
    let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let mut running = Running::start(functions, &bootstrap, &data_dir);
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

/// Functions running as tasks, stopped together.
pub struct Running {
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<(String, sluice_functions::Result<()>)>,
}

impl Running {
    /// Starts each function against `bootstrap`, logging under `<data_dir>/functions`.
    pub fn start(functions: Vec<Function>, bootstrap: &str, data_dir: &Path) -> Running {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for function in functions {
            let options = Options {
                bootstrap_servers: bootstrap.to_string(),
                client_properties: Vec::new(),
                log_dir: data_dir.join("functions"),
                instance_id: Some(instance_id(data_dir)),
            };
            let stopped = stopped.clone();
            tasks.spawn(async move {
                let name = function.name.clone();
                (name, sluice_functions::run(function, options, stopped).await)
            });
        }
        Running { stop, tasks }
    }

    /// Waits until a function stops by itself (an error: functions run until stopped) and
    /// says which and why; pending forever if none runs.
    pub async fn ended(&mut self) -> anyhow::Error {
        match self.tasks.join_next().await {
            Some(Ok((name, Ok(())))) => anyhow::anyhow!("function {name} stopped unexpectedly"),
            Some(Ok((name, Err(error)))) => {
                anyhow::Error::new(error).context(format!("function {name} failed"))
            }
            Some(Err(error)) => anyhow::anyhow!("a function task failed: {error}"),
            None => std::future::pending().await,
        }
    }

    /// Stops every function and reports the first that failed.
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(error))) => {
                    tracing::error!(function = %name, error = format!("{error:#}"), "function failed");
                    first_error.get_or_insert(anyhow::Error::new(error));
                }
                Err(error) => {
                    first_error.get_or_insert(anyhow::anyhow!("a function task failed: {error}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// This machine and data folder, as a static group member name (KIP-345): a restarted
/// `sluice` takes its partitions back at once, while two data folders (or two machines)
/// are two members sharing the partitions.
pub fn instance_id(data_dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    // Created first, so the canonical path is the same on the first run as on later ones.
    let _ = std::fs::create_dir_all(data_dir);
    let folder = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    // FNV-1a: a short, stable name for the folder (not a security boundary).
    let hash = folder
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("sluice-{}-{:08x}", host.trim(), hash as u32)
}

/// Runs `sluice logs`.
pub async fn logs(args: LogsArgs) -> Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let path = sluice_functions::log::log_path(&data_dir.join("functions"), &args.function);
    tokio::task::spawn_blocking(move || print_log(&path, args.follow))
        .await
        .context("the log reader failed")?
}

fn print_log(path: &Path, follow: bool) -> Result<()> {
    let mut file = std::fs::File::open(path).with_context(|| {
        format!("cannot open {} (has the function run with this --data-dir?)", path.display())
    })?;
    let mut stdout = std::io::stdout().lock();
    let mut chunk = vec![0u8; 64 * 1024];
    // Following, only whole lines are printed: `position` is where the next one starts, and
    // `unfinished` what was read of a line not ended yet (a line being written, or one the
    // disk had no room for, which the writer cuts back to `position`).
    let mut position = 0u64;
    let mut unfinished: Vec<u8> = Vec::new();
    loop {
        let read =
            file.read(&mut chunk).with_context(|| format!("cannot read {}", path.display()))?;
        if read > 0 {
            unfinished.extend_from_slice(&chunk[..read]);
            if let Some(end) = unfinished.iter().rposition(|&b| b == b'\n') {
                stdout.write_all(&unfinished[..=end]).context("cannot write stdout")?;
                position += end as u64 + 1;
                unfinished.drain(..=end);
            }
            continue;
        }
        if !follow {
            stdout.write_all(&unfinished).context("cannot write stdout")?;
            return stdout.flush().context("cannot write stdout");
        }
        stdout.flush().context("cannot write stdout")?;
        std::thread::sleep(Duration::from_millis(200));
        // A log replaced by another file (deleted data dir) is read again from the start; the
        // same file made shorter than what was printed (by hand) from its new end.
        let (length, replaced) = match (std::fs::metadata(path), file.metadata()) {
            (Ok(now), Ok(open)) => (now.len(), now.ino() != open.ino() || now.dev() != open.dev()),
            _ => (position, false),
        };
        if replaced {
            file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            position = 0;
        } else if length < position {
            position = length;
        }
        unfinished.clear();
        file.seek(SeekFrom::Start(position))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
}
