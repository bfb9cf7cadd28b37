//! `sluice bench functions`: the cost of invoking a consumer function through the Lambda
//! Runtime API, with a no-op handler written with the official Rust runtime
//! (`lambda_runtime`, the `lambda_noop` example: it reads the event into `IgnoredAny` and
//! answers `null`), against the same handler's work done in process.
//!
//! - **through the Runtime API**: sluice's `RuntimeApi` (the code `runtime = "lambda"`
//!   runs) invokes the handler process with Lambda Kafka events of 1 and of 100 records,
//!   one invocation at a time (one partition), then two at a time (two partitions, two
//!   warm processes); the process is started once, before the clock starts;
//! - **in process**: what the handler does with an event (read the JSON without keeping it,
//!   answer `null`), called directly: the floor an out-of-process handler is compared with. The difference per invocation is the Runtime API's overhead: two HTTP exchanges
//!   on loopback and two process wake-ups.
//!
//! Records carry `FUNCTION_RECORD_BYTES` of value, base64-encoded in the event as Lambda does.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use sluice_functions::config::{EventSource, FunctionConfig};
use sluice_functions::event::{Envelope, Record, TimestampType};
use sluice_functions::log::FunctionLog;
use sluice_functions::runtime_api::RuntimeApi;

use super::limits::{FUNCTION_RECORD_BYTES, FUNCTION_RUN_SECS};
use super::stats::{Histogram, LatencyMs};

/// Results of `sluice bench functions`.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionsResult {
    /// The handler binary.
    pub handler: String,
    /// Value bytes per record.
    pub record_bytes: usize,
    /// The runs through the Runtime API.
    pub runs: Vec<InvokeRun>,
}

/// One run of invocations.
#[derive(Debug, Clone, Serialize)]
pub struct InvokeRun {
    /// Records per event.
    pub batch_records: usize,
    /// Event size, bytes.
    pub event_bytes: usize,
    /// Invocations in flight at once (one per partition).
    pub concurrency: usize,
    /// Invocations completed.
    pub invocations: u64,
    /// Wall time, seconds.
    pub secs: f64,
    /// Invocations per second.
    pub invocations_per_s: f64,
    /// Records per second.
    pub records_per_s: f64,
    /// Per-invocation latency, request to answer.
    pub latency_ms: LatencyMs,
    /// The same handler work in process, microseconds per event.
    pub in_process_us: f64,
}

/// The handler `sluice bench functions` uses unless told otherwise: the `lambda_noop`
/// example next to this binary (`cargo build --release --example lambda_noop`).
pub fn default_handler() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the sluice binary's path")?;
    let dir = exe.parent().ok_or_else(|| anyhow!("the sluice binary has no folder"))?;
    Ok(dir.join("examples").join("lambda_noop"))
}

/// Runs every invocation benchmark with `handler`, logging to `scratch`.
pub fn run(handler: &Path, scratch: &Path) -> Result<FunctionsResult> {
    if !handler.exists() {
        bail!(
            "no handler at {}: build it with `cargo build --release -p sluice-cli --example \
             lambda_noop`, or pass --handler",
            handler.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start a runtime for the function benchmark")?;
    let mut runs = Vec::new();
    for (batch, concurrency) in [(1, 1), (100, 1), (1, 2), (100, 2)] {
        let run = runtime.block_on(invoke_run(handler, scratch, batch, concurrency))?;
        runs.push(run);
    }
    Ok(FunctionsResult {
        handler: handler.display().to_string(),
        record_bytes: FUNCTION_RECORD_BYTES,
        runs,
    })
}

async fn invoke_run(
    handler: &Path,
    scratch: &Path,
    batch: usize,
    concurrency: usize,
) -> Result<InvokeRun> {
    let config = FunctionConfig {
        name: "bench".into(),
        topics: vec!["bench".into()],
        runtime: "lambda".into(),
        command: vec![handler.display().to_string()],
        handler: Some("bootstrap".into()),
        ..FunctionConfig::default()
    };
    let function = config.validate().map_err(|e| anyhow!("{e}"))?;
    let log = Arc::new(FunctionLog::open(scratch, "bench").map_err(|e| anyhow!("{e}"))?);
    let event = axum_bytes(event(batch));
    let event_bytes = event.len();
    let in_process_us = in_process(&event);
    // One RuntimeApi per concurrent "partition": each keeps its own warm process.
    let apis: Vec<Arc<RuntimeApi>> =
        (0..concurrency).map(|_| Arc::new(RuntimeApi::new(&function, Arc::clone(&log)))).collect();
    for api in &apis {
        let deadline = Instant::now() + Duration::from_secs(30);
        api.invoke("warm-up", event.clone(), deadline)
            .await
            .map_err(|f| anyhow!("the handler failed its first invocation: {}", f.message))?;
    }
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(FUNCTION_RUN_SECS);
    let mut tasks = Vec::new();
    for api in apis {
        let event = event.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::default();
            let mut count = 0u64;
            while Instant::now() < stop_at {
                let id = uuid_like(count);
                let sent = Instant::now();
                let deadline = sent + Duration::from_secs(30);
                api.invoke(&id, event.clone(), deadline)
                    .await
                    .map_err(|f| anyhow!("invocation failed: {}", f.message))?;
                histogram.record(sent.elapsed().as_micros() as u64);
                count += 1;
            }
            anyhow::Ok((count, histogram))
        }));
    }
    let mut invocations = 0u64;
    let mut histogram = Histogram::default();
    for task in tasks {
        let (count, part) = task.await.map_err(|e| anyhow!("an invoker failed: {e}"))??;
        invocations += count;
        histogram.merge(&part);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(InvokeRun {
        batch_records: batch,
        event_bytes,
        concurrency,
        invocations,
        secs,
        invocations_per_s: invocations as f64 / secs,
        records_per_s: (invocations * batch as u64) as f64 / secs,
        latency_ms: histogram.summary(),
        in_process_us,
    })
}

/// A Lambda Kafka event of `batch` records of one partition.
fn event(batch: usize) -> Vec<u8> {
    let envelope = Envelope {
        event_source: EventSource::Msk,
        event_source_arn: "arn:aws:kafka:us-east-1:000000000000:cluster/sluice/bench".into(),
        bootstrap_servers: "127.0.0.1:9092".into(),
    };
    let records: Vec<_> = (0..batch)
        .map(|offset| {
            Record {
                topic: "bench".into(),
                partition: 0,
                offset: offset as i64,
                timestamp_ms: 1_700_000_000_000,
                timestamp_type: TimestampType::CreateTime,
                key: None,
                value: Some(vec![b'v'; FUNCTION_RECORD_BYTES]),
                headers: Vec::new(),
            }
            .prepare()
        })
        .collect();
    envelope.event("bench", 0, &records)
}

/// What the no-op handler does with an event, in process: microseconds per event.
fn in_process(event: &[u8]) -> f64 {
    let rounds = 2_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        let parsed = serde_json::from_slice::<serde::de::IgnoredAny>(event);
        std::hint::black_box(parsed.ok());
        let answer = serde_json::to_vec(&serde_json::Value::Null);
        std::hint::black_box(answer.ok());
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
}

/// The event as the Runtime API takes it: shared, never copied per invocation.
fn axum_bytes(event: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(event)
}

fn uuid_like(count: u64) -> String {
    format!("00000000-0000-4000-8000-{count:012x}")
}
