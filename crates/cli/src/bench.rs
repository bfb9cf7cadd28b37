//! `sluice bench <disk|loopback|broker|all>`: benchmarks, never tests. Each result is
//! reported next to the machine's own limit, measured by the same command on the same
//! filesystem, because a raw MiB/s means nothing without the disk and network under it.
//!
//! - `disk` (`bench/disk.rs`): fdatasync'd append bandwidth and the cost of one sync;
//! - `loopback` (`bench/loopback.rs`): TCP bandwidth over 127.0.0.1;
//! - `broker` (`bench/load.rs`): a real `sluice broker` child process driven by rdkafka:
//!   produce throughput and latency with acks=all, consume throughput, broker RSS;
//! - `validate` (`bench/validate.rs`): each codec's batches checked as on append, against
//!   one core decompressing them;
//! - `all`: the three, then a table of ratios to the limits and the acceptance targets
//!   (`docs/benchmarks.md`).
//!
//! Everything is written under a scratch folder created inside `--data-dir` (default: the
//! current folder) and removed afterwards, also on error. Progress bars are drawn on stderr
//! only when it is a terminal; results go to stdout, as markdown or with `--json` as one
//! JSON object. Sizes and durations are bounded by `bench/limits.rs`.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

mod consume;
mod delivery;
mod disk;
mod functions;
mod limits;
mod load;
mod loopback;
mod machine;
mod page_cache;
mod process;
mod produce;
mod rebalance;
mod report;
mod stats;
mod validate;
mod wire;

use limits::{
    PAGE_CACHE_FILL_RUNS, PARALLEL_PRODUCERS, PRODUCE_BYTES_DEFAULT, RECORD_BYTES_DEFAULT,
    RECORD_BYTES_MAX,
};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// fdatasync'd append bandwidth and one sync's cost in the data folder's filesystem.
    Disk,
    /// TCP bandwidth over 127.0.0.1.
    Loopback,
    /// Produce and consume through a real broker process, and its memory.
    Broker,
    /// Consumer groups: how soon a group of two settles with a third member that joins,
    /// with and without held heartbeats.
    Groups,
    /// Consumer functions: invocations through the Lambda Runtime API with a no-op
    /// `lambda_runtime` handler, against the same work in process.
    Functions,
    /// Delivery streams: a topic backlog into gzip objects in a folder, against one core's
    /// gzip speed on the same records, and the memory it takes.
    Delivery,
    /// Produce validation: each codec's batches checked as the broker checks them on
    /// append, against one core decompressing the same batches; and their rewrite in a
    /// topic's compression.type, against the codecs alone.
    Validate,
    /// The broker alone: disk and loopback limits, then produce and consume from a client
    /// that costs almost nothing (pre-built requests), so the broker's own ceiling shows.
    Wire,
    /// All of the above, and each broker result as a ratio to its limit.
    All,
}

/// Flags of `sluice bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    what: What,
    /// Where the scratch folder goes; it must be on the filesystem to measure [default: .]
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Payload bytes of each closed-loop produce run, e.g. 1073741824, 512MiB, 1GiB
    /// [default: 1GiB]
    #[arg(long, value_name = "N", value_parser = parse_bytes)]
    bytes: Option<u64>,
    /// Payload bytes per record.
    #[arg(long = "record-bytes", value_name = "N", default_value_t = RECORD_BYTES_DEFAULT)]
    record_bytes: usize,
    /// Print one JSON object instead of markdown tables.
    #[arg(long)]
    json: bool,
    /// Before the broker runs, fill the page cache with a scratch file of the free memory's
    /// size, so the broker writes into memory reclaimed from the cache, as a broker that has
    /// written more than the machine's memory does. On a VM that returns free memory to its
    /// host, a page cache still growing costs a host fault per page (docs/benchmarks.md).
    /// Needs free disk for the free memory plus 12 produce runs of --bytes plus 4.5 GiB;
    /// takes about a minute per 20 GiB.
    #[arg(long = "fill-page-cache")]
    fill_page_cache: bool,
    /// A broker setting for the benchmarks' broker (`broker`, `wire`), as `sluice broker
    /// --override` takes it, e.g. `log.preallocate=true`; repeatable. The report names them.
    #[arg(long = "broker-override", value_name = "KEY=VALUE")]
    broker_overrides: Vec<String>,
    /// The no-op Lambda handler of `bench functions` [default: examples/lambda_noop next
    /// to this binary]
    #[arg(long, value_name = "PATH")]
    handler: Option<PathBuf>,
}

/// Runs `sluice bench`. The measurements block, so they run on a thread of their own.
pub async fn run(args: BenchArgs) -> Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(args))
        .await
        .map_err(|e| anyhow!("the benchmark thread failed: {e}"))?
}

fn run_blocking(args: BenchArgs) -> Result<()> {
    let bytes = args.bytes.unwrap_or(PRODUCE_BYTES_DEFAULT);
    check_sizes(bytes, args.record_bytes)?;
    let scratch = Scratch::create(args.data_dir.as_deref().unwrap_or(Path::new(".")))?;
    let progress = Progress { show: std::io::stderr().is_terminal() };
    let wants = |what: What| {
        args.what == what
            || args.what == What::All
            || (args.what == What::Wire && matches!(what, What::Disk | What::Loopback))
    };
    let disk = wants(What::Disk).then(|| disk::run(&scratch.path.join("disk"), &progress));
    let disk = disk.transpose().context("the disk benchmark failed")?;
    let loopback = wants(What::Loopback).then(|| loopback::run(&progress));
    let loopback = loopback.transpose().context("the loopback benchmark failed")?;
    let broker_dir = scratch.path.join("broker");
    let runs_bytes = bytes * PAGE_CACHE_FILL_RUNS;
    let page_cache = (args.fill_page_cache && (wants(What::Broker) || args.what == What::Wire))
        .then(|| page_cache::fill(&scratch.path.join("fill"), runs_bytes, &progress))
        .transpose()
        .context("filling the page cache failed")?;
    let broker = wants(What::Broker)
        .then(|| {
            load::run(&broker_dir, &args.broker_overrides, bytes, args.record_bytes, &progress)
        })
        .transpose()
        .context("the broker benchmark failed")?;
    let groups = wants(What::Groups)
        .then(|| rebalance::run_all(&scratch.path.join("groups"), &progress))
        .transpose()
        .context("the groups benchmark failed")?;
    let functions = match wants(What::Functions) {
        false => None,
        true => {
            let handler = match &args.handler {
                Some(path) => path.clone(),
                None => functions::default_handler()?,
            };
            let dir = scratch.path.join("functions");
            std::fs::create_dir_all(&dir).context("cannot create the functions scratch folder")?;
            Some(functions::run(&handler, &dir).context("the functions benchmark failed")?)
        }
    };
    let delivery = match wants(What::Delivery) {
        false => None,
        true => {
            let dir = scratch.path.join("delivery");
            std::fs::create_dir_all(&dir).context("cannot create the delivery scratch folder")?;
            Some(delivery::run(&dir).context("the delivery benchmark failed")?)
        }
    };
    let validate = wants(What::Validate)
        .then(validate::run)
        .transpose()
        .context("the validation benchmark failed")?;
    let wire_only = (args.what == What::Wire)
        .then(|| {
            load::run_wire_only(
                &broker_dir,
                &args.broker_overrides,
                bytes,
                args.record_bytes,
                &progress,
            )
        })
        .transpose()
        .context("the wire benchmark failed")?;
    let mut targets = match (&disk, &loopback, &broker, &wire_only) {
        (Some(disk), Some(loopback), Some(broker), _) => {
            report::targets(disk, loopback, broker, page_cache.is_some())
        }
        (Some(disk), Some(loopback), None, Some(only)) => {
            report::wire_targets(disk, loopback, &only.wire, page_cache.is_some())
        }
        _ => Vec::new(),
    };
    if let Some(groups) = &groups {
        targets.push(report::rebalance_target(&groups.random));
    }
    if let Some(functions) = &functions {
        targets.extend(report::function_targets(functions));
    }
    if let Some(delivery) = &delivery {
        targets.push(report::delivery_target(delivery));
    }
    if let Some(validate) = &validate {
        targets.extend(report::validate_targets(validate));
    }
    let report = report::Report {
        machine: machine::describe(&scratch.path),
        page_cache,
        broker_overrides: args.broker_overrides.clone(),
        produce_bytes: bytes,
        record_bytes: args.record_bytes,
        disk,
        loopback,
        broker,
        wire_only,
        groups,
        functions,
        delivery,
        validate,
        targets,
    };
    let text = if args.json {
        serde_json::to_string_pretty(&report).context("cannot encode the results")?
    } else {
        report::markdown(&report)
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", text.trim_end()).context("cannot write stdout")?;
    stdout.flush().context("cannot write stdout")
}

/// Refuses sizes the runs cannot use.
fn check_sizes(bytes: u64, record_bytes: usize) -> Result<()> {
    if record_bytes == 0 || record_bytes > RECORD_BYTES_MAX {
        bail!("--record-bytes {record_bytes} must be between 1 and {RECORD_BYTES_MAX}");
    }
    let least = (record_bytes * PARALLEL_PRODUCERS) as u64;
    if bytes < least {
        bail!("--bytes {bytes} must be at least {least}: one record per producer");
    }
    Ok(())
}

/// Parses `1073741824`, `512MiB`, `64KiB`, `1GiB` (binary units; `K`, `M`, `G` also work).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a byte count"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?}: use B, KiB, MiB or GiB")),
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("{text:?} does not fit 64 bits"))
}

/// A folder of this run's files, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(parent: &Path) -> Result<Scratch> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos());
        let name = format!("sluice-bench-{}-{}", std::process::id(), nanos.unwrap_or(0));
        let path = parent.join(name);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the scratch folder {}", path.display()))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove the scratch folder");
        }
    }
}

/// Progress bars on stderr, drawn only for a person at a terminal.
pub struct Progress {
    show: bool,
}

impl Progress {
    /// A bar over `total` bytes.
    fn bytes(&self, message: &'static str, total: u64) -> ProgressBar {
        self.bar(
            message,
            total,
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec})",
        )
    }

    /// A bar over `total` records or operations.
    fn count(&self, message: &'static str, total: u64) -> ProgressBar {
        self.bar(message, total, "{msg} [{bar:30}] {human_pos}/{human_len} ({per_sec})")
    }

    /// A spinner, for a run bounded by time rather than by a count.
    fn spinner(&self, message: &'static str) -> ProgressBar {
        crate::progress::spinner(self.show, message)
    }

    fn bar(&self, message: &'static str, total: u64, template: &str) -> ProgressBar {
        if !self.show {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(template)
            .expect("the templates are valid constants")
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(style);
        bar.set_message(message);
        bar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_byte_counts_with_binary_units() {
        assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert!(parse_bytes("1TB").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999G").is_err());
    }

    #[test]
    fn refuses_sizes_the_runs_cannot_use() {
        assert!(check_sizes(1 << 30, 1024).is_ok());
        assert!(check_sizes(1 << 30, 0).is_err());
        assert!(check_sizes(1 << 30, RECORD_BYTES_MAX + 1).is_err());
        assert!(check_sizes(1024, 1024).is_err());
    }

    #[test]
    fn removes_the_scratch_folder() {
        let parent = std::env::temp_dir();
        let scratch = Scratch::create(&parent).unwrap();
        let path = scratch.path.clone();
        std::fs::write(path.join("file"), b"x").unwrap();
        drop(scratch);
        assert!(!path.exists());
    }
}
