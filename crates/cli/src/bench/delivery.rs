//! `sluice bench delivery`: a delivery stream draining a topic backlog into gzip objects
//! in a folder, against the machine's single-core gzip speed on the same records.
//!
//! - **limit**: the records, newline-delimited, compressed by one thread with the stream's
//!   own gzip encoder (flate2, default level): what one core can gzip;
//! - **run**: a topic on the embedded broker is filled with the backlog first (not timed);
//!   then a `[[delivery_stream]]` with Firehose's defaults (5 MiB, GZIP) runs until every
//!   record is in a published object. The clock starts at the first record consumed.
//! - **memory**: the peak resident memory while the stream runs (the process's high-water
//!   mark, reset before it starts), against the backlog: bounded by the buffering hints and
//!   the consumer's fetch queue, not by the backlog.
//!
//! Records are JSON events of about `DELIVERY_RECORD_BYTES` with varying fields, so they
//! compress like real event data rather than like a repeated byte.
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Serialize;
use sluice_broker::BrokerConfig;
use sluice_delivery::compression::{Compression, Encoder};
use sluice_delivery::metrics::Stats;
use sluice_delivery::DeliveryStreamConfig;
use tokio::sync::watch;

use super::limits::{DELIVERY_BACKLOG_BYTES, DELIVERY_RECORD_BYTES, DELIVERY_SECS_MAX, MIB};

/// Results of `sluice bench delivery`.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryResult {
    /// Bytes of records in the backlog.
    pub backlog_bytes: u64,
    /// Records in the backlog.
    pub records: u64,
    /// One core's gzip speed on the same records, MiB/s of input.
    pub gzip_mib_per_s: f64,
    /// Topic to published gzip objects, MiB/s of records.
    pub delivery_mib_per_s: f64,
    /// The same stream with UNCOMPRESSED objects: what consuming and publishing cost alone.
    pub uncompressed_mib_per_s: f64,
    /// Objects published.
    pub objects: u64,
    /// Bytes of the published objects.
    pub object_bytes: u64,
    /// Wall time of the run, seconds.
    pub secs: f64,
    /// Peak resident memory during the run, MiB (the whole process: broker and stream).
    pub peak_rss_mib: f64,
    /// Resident memory just before the stream started, MiB.
    pub start_rss_mib: f64,
}

/// Runs the benchmark in `dir`.
pub fn run(dir: &Path) -> Result<DeliveryResult> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the benchmark's runtime")?;
    runtime.block_on(run_async(dir))
}

pub(super) fn records() -> impl Iterator<Item = Vec<u8>> {
    let actions = ["click", "view", "purchase", "scroll", "login", "logout"];
    let pages = ["/home", "/cart", "/checkout", "/product/1234", "/search?q=shoes", "/account"];
    (0u64..).map(move |i| {
        let mut line = format!(
            r#"{{"event_id":"{:016x}","user_id":{},"action":"{}","page":"{}","ts":{},"amount":{:.2},"session":"s-{:08x}""#,
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i % 100_003,
            actions[(i % 6) as usize],
            pages[(i / 7 % 6) as usize],
            1_790_000_000_000u64 + i * 37,
            (i % 9973) as f64 / 7.0,
            i / 50,
        );
        while line.len() + 2 < DELIVERY_RECORD_BYTES {
            line.push_str(&format!(r#","k{}":"v{}""#, line.len() % 17, i % 1000));
        }
        line.push('}');
        line.into_bytes()
    })
}

/// One core's gzip speed on the backlog's first records, MiB/s of input.
fn gzip_speed(records: &[Vec<u8>]) -> Result<f64> {
    let started = Instant::now();
    let mut encoder = Encoder::new(Compression::Gzip, "").context("gzip failed")?;
    let mut bytes = 0usize;
    for record in records {
        encoder.write(record).context("gzip failed")?;
        encoder.write(b"\n").context("gzip failed")?;
        bytes += record.len() + 1;
    }
    let out = encoder.finish().context("gzip failed")?;
    std::hint::black_box(out);
    Ok(bytes as f64 / MIB as f64 / started.elapsed().as_secs_f64())
}

async fn run_async(dir: &Path) -> Result<DeliveryResult> {
    let count = (DELIVERY_BACKLOG_BYTES / DELIVERY_RECORD_BYTES as u64) as usize;
    let sample: Vec<Vec<u8>> = records().take(count.min(200_000)).collect();
    // Twice, keeping the better: the first pass also warms the allocator and caches.
    let gzip_mib_per_s = gzip_speed(&sample)?.max(gzip_speed(&sample)?);
    drop(sample);
    let mut config = BrokerConfig::new(dir.join("broker"));
    config.set("listeners", "PLAINTEXT://127.0.0.1:0");
    config.set("group.initial.rebalance.delay.ms", "0");
    let broker = crate::broker::start(config).await?;
    let outcome = async {
        let bootstrap = fill(&broker, count).await?;
        let plain = deliver(dir, &bootstrap, count, "UNCOMPRESSED").await?;
        let gzip = deliver(dir, &bootstrap, count, "GZIP").await?;
        anyhow::Ok((plain, gzip))
    }
    .await;
    crate::broker::stop(broker).await?;
    let (plain, (records, backlog_bytes, secs, stats, start_rss, peak_rss)) = outcome?;
    Ok(DeliveryResult {
        backlog_bytes,
        records,
        gzip_mib_per_s,
        delivery_mib_per_s: backlog_bytes as f64 / MIB as f64 / secs,
        uncompressed_mib_per_s: plain.1 as f64 / MIB as f64 / plain.2,
        objects: stats.objects.load(Ordering::Relaxed),
        object_bytes: stats.delivered_bytes.load(Ordering::Relaxed),
        secs,
        peak_rss_mib: peak_rss as f64 / MIB as f64,
        start_rss_mib: start_rss as f64 / MIB as f64,
    })
}

type Outcome = (u64, u64, f64, Arc<Stats>, u64, u64);

/// Fills the benchmark topic with `count` records and returns the broker's address.
async fn fill(broker: &sluice_broker::Broker, count: usize) -> Result<String> {
    let bootstrap =
        broker.local_addrs().first().map(|a| a.to_string()).context("the broker has no address")?;
    broker
        .create_topic("bench-delivery", 1, &Default::default())
        .await
        .context("cannot create the benchmark topic")?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .create()
        .context("cannot create the producer")?;
    let mut pending = std::collections::VecDeque::new();
    for record in records().take(count) {
        let future =
            producer.send_result(FutureRecord::<(), _>::to("bench-delivery").payload(&record));
        pending.push_back(future.map_err(|(e, _)| anyhow::anyhow!("cannot queue a record: {e}"))?);
        if pending.len() >= 50_000 {
            while let Some(next) = pending.pop_front() {
                next.await.context("producer gone")?.map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
            }
        }
    }
    while let Some(next) = pending.pop_front() {
        next.await.context("producer gone")?.map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
    }
    drop(producer);
    Ok(bootstrap)
}

/// Drains the topic with one stream of `compression` into its own folder.
async fn deliver(dir: &Path, bootstrap: &str, count: usize, compression: &str) -> Result<Outcome> {
    let bytes: u64 = records().take(count).map(|r| r.len() as u64 + 1).sum();
    let name = format!("bench-{}", compression.to_lowercase());
    let text = format!(
        "name = \"{name}\"\nsource_topic = \"bench-delivery\"\nappend_delimiter_to_record = true\n\
         compression_format = \"{compression}\"\ndestination_url = \"file://{}\"\n",
        std::fs::canonicalize(dir).context("scratch folder")?.join(&name).display()
    );
    let stream =
        toml::from_str::<DeliveryStreamConfig>(&text).context("bench stream config")?.validate()?;
    let stats = Arc::new(Stats::default());
    let options = sluice_delivery::Options {
        bootstrap_servers: bootstrap.to_string(),
        client_properties: Vec::new(),
        default_destination: dir.join("objects"),
        instance_id: None,
        stats: Some(Arc::clone(&stats)),
    };
    let start_rss = reset_peak_rss();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(sluice_delivery::run(stream, options, stopped));
    let deadline = Instant::now() + Duration::from_secs(DELIVERY_SECS_MAX);
    while stats.incoming_records.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline || task.is_finished() {
            bail!("the delivery stream consumed nothing");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    // Records in objects, until the last partial object, which a clean stop publishes.
    while stats.incoming_records.load(Ordering::Relaxed) < count as u64 {
        if Instant::now() > deadline || task.is_finished() {
            bail!(
                "the delivery stream stalled at {} records",
                stats.incoming_records.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(true);
    task.await.context("the stream task failed")??;
    let secs = started.elapsed().as_secs_f64();
    let delivered = stats.delivered_records.load(Ordering::Relaxed);
    if delivered != count as u64 {
        bail!("{delivered} of {count} records were published");
    }
    Ok((count as u64, bytes, secs, stats, start_rss, peak_rss()))
}

/// Resets the process's resident-memory high-water mark (Linux `clear_refs` 5) and returns
/// the current resident memory, bytes.
fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_bytes("VmRSS:")
}

/// The resident-memory high-water mark, bytes.
fn peak_rss() -> u64 {
    status_bytes("VmHWM:")
}

fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
