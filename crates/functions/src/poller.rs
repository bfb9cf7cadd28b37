//! The poller: what Lambda's event source mapping does for one function. It consumes the
//! function's topics in a consumer group, gathers each partition's records into batches,
//! invokes the handler, and commits a partition's offset only after its batch is handled.
//!
//! Invariants:
//! - **one batch in flight per partition**, batches of different partitions in parallel up
//!   to `maximum_concurrency`, so a partition's records are handled in offset order;
//! - **at least once**: an offset is committed only once every record before it was handled
//!   successfully, sent to the on-failure destination, or given up on by the retry policy
//!   (with no destination, as Lambda drops them). A crash at any point re-delivers from the
//!   last commit, never skips;
//! - **bounded memory**: a partition holding `BUFFERED_BATCHES_PER_PARTITION` batches is
//!   paused until its next batch goes out, and every event is within 6 MB.
//!
//! A batch is one partition's records (Lambda's event can mix partitions; one per event keeps
//! per-partition ordering and retries simple, and the event shape is the same). It goes out
//! when it holds `batch_size` records, when the next record would take it over 6 MB, or when
//! its oldest record has waited `maximum_batching_window_in_seconds`.
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use crate::config::{Function, StartingPosition};
use crate::error::{Error, Result};
use crate::event::{event_bytes, Envelope, Prepared, Record, TimestampType};
use crate::filter::filterable;
use crate::handler::Handler;
use crate::invoke::{self, Batch, Invoker};
use crate::limits::{BUFFERED_BATCHES_PER_PARTITION, PAYLOAD_BYTES_MAX};
use crate::log::FunctionLog;
use crate::metrics::Metrics;

/// How often the poller looks at batching windows when no record arrives.
const TICK_MS_MAX: u64 = 50;
/// How long a stopping poller waits for the batches in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where a function runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `bootstrap.servers` of the cluster to consume from.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (security settings, say), applied last.
    pub client_properties: Vec<(String, String)>,
    /// Where the function's log file goes.
    pub log_dir: PathBuf,
    /// This instance's name for static group membership (KIP-345), unique per machine and
    /// data folder: a restarted instance takes its partitions back at once instead of
    /// waiting for its old session to time out. `None` joins as a dynamic member.
    pub instance_id: Option<String>,
}

type PartitionKey = (Arc<str>, i32);

/// One partition's records waiting for a batch.
#[derive(Default)]
struct Pending {
    records: VecDeque<Prepared>,
    /// Bytes of the records' JSON.
    bytes: usize,
    /// The envelope's bytes around an event of this partition, computed once.
    overhead: Option<usize>,
    since: Option<Instant>,
    in_flight: bool,
    paused: bool,
}

/// Rebalances seen by the consumer's callback, for the poll loop to act on.
#[derive(Default)]
struct Changes {
    revoked: Vec<PartitionKey>,
}

struct Context {
    function: String,
    changes: Arc<Mutex<Changes>>,
}

impl ClientContext for Context {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(function = %self.function, %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
            for element in list.elements() {
                changes.revoked.push((Arc::from(element.topic()), element.partition()));
            }
        }
    }
}

/// Runs `function` until `shutdown` turns true.
pub async fn run(
    function: Function,
    options: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let name = function.name.clone();
    let kafka = |source| Error::Kafka { function: name.clone(), source };
    let log = Arc::new(FunctionLog::open(&options.log_dir, &function.name)?);
    let changes = Arc::new(Mutex::new(Changes::default()));
    let context = Context { function: name.clone(), changes: Arc::clone(&changes) };
    let consumer: Arc<StreamConsumer<Context>> =
        Arc::new(consumer_config(&function, &options).create_with_context(context).map_err(kafka)?);
    // librdkafka's metadata and offset calls block: they run on the blocking pool.
    let blocking = Arc::clone(&consumer);
    let (topics, position) = (function.topics.clone(), function.starting_position);
    let arn = tokio::task::spawn_blocking(move || {
        if let StartingPosition::AtTimestamp(ms) = position {
            seed_offsets_at(&blocking, &topics, ms)?;
        }
        Ok(event_source_arn(&blocking))
    })
    .await
    .map_err(|e| Error::Handler {
        function: name.clone(),
        message: format!("start-up task failed: {e}"),
    })?
    .map_err(kafka)?;
    let topics: Vec<&str> = function.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(kafka)?;
    let envelope = Envelope {
        event_source: function.event_source,
        event_source_arn: arn,
        bootstrap_servers: options.bootstrap_servers.clone(),
    };
    let metrics = Arc::new(Metrics::new(&function.name));
    let handler = Arc::new(Handler::new(&function, Arc::clone(&log)));
    let invoker = Arc::new(Invoker::new(
        &function,
        &options,
        handler,
        Arc::clone(&log),
        metrics,
        shutdown.clone(),
    )?);
    tracing::info!(function = %name, topics = ?function.topics, group = %function.consumer_group_id,
        log = %log.path().display(), "function started");
    let outcome = poll(&function, &consumer, &envelope, &invoker, &changes, shutdown).await;
    tracing::info!(function = %name, "function stopped");
    outcome.map_err(kafka)
}

/// The poll loop; see the module docs.
async fn poll(
    function: &Function,
    consumer: &StreamConsumer<Context>,
    envelope: &Envelope,
    invoker: &Arc<Invoker>,
    changes: &Mutex<Changes>,
    mut shutdown: watch::Receiver<bool>,
) -> std::result::Result<(), rdkafka::error::KafkaError> {
    let mut pending: HashMap<PartitionKey, Pending> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::channel::<(PartitionKey, Option<i64>)>(function.concurrency);
    let mut in_flight = 0usize;
    let tick = Duration::from_millis(TICK_MS_MAX)
        .min(function.batching_window.max(Duration::from_millis(1)));
    let buffer_records = function.batch_size * BUFFERED_BATCHES_PER_PARTITION;
    let buffer_bytes = PAYLOAD_BYTES_MAX * BUFFERED_BATCHES_PER_PARTITION;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some((key, next)) = done_rx.recv() => {
                in_flight -= 1;
                finish(consumer, &mut pending, key, next, buffer_records, buffer_bytes);
            }
            message = consumer.recv() => {
                let message = message?;
                let record = to_record(&message);
                let key: PartitionKey = (Arc::from(record.topic.as_str()), record.partition);
                let mut prepared = record.prepare();
                if !function.filters.is_empty() {
                    let view = filterable(&record.topic, record.partition, record.offset,
                        record.key.as_deref(), record.value.as_deref());
                    prepared.filtered = !function.filters.matches(&view);
                }
                let entry = pending.entry(key.clone()).or_default();
                entry.bytes += prepared.json.len();
                entry.records.push_back(prepared);
                entry.since.get_or_insert_with(Instant::now);
                if !entry.paused && (entry.records.len() >= buffer_records || entry.bytes >= buffer_bytes) {
                    set_paused(consumer, &key, true);
                    entry.paused = true;
                }
            }
            _ = tokio::time::sleep(tick) => {}
        }
        forget_revoked(changes, &mut pending);
        for (key, entry) in pending.iter_mut() {
            if in_flight >= function.concurrency {
                break;
            }
            let Some(batch) = take_batch(function, envelope, key, entry) else { continue };
            entry.in_flight = true;
            in_flight += 1;
            let (invoker, done, key) = (Arc::clone(invoker), done_tx.clone(), key.clone());
            let event_parts = (envelope.clone(), key.0.to_string(), key.1);
            tokio::spawn(async move {
                let next = invoke::handle(&invoker, event_parts, batch).await;
                let _ = done.send((key, next)).await;
            });
        }
    }
    // Stopping: the batches in flight stop retrying; wait for them and commit what was
    // handled, so a clean stop re-delivers as little as possible.
    let deadline = tokio::time::Instant::now() + function.timeout + STOP_GRACE;
    while in_flight > 0 {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some((key, next))) => {
                in_flight -= 1;
                if let Some(next) = next {
                    commit(consumer, &key, next, CommitMode::Sync);
                }
            }
            _ => break,
        }
    }
    Ok(())
}

/// A batch handled (or given up on) up to `next`: commit, allow the next batch, resume.
fn finish(
    consumer: &StreamConsumer<Context>,
    pending: &mut HashMap<PartitionKey, Pending>,
    key: PartitionKey,
    next: Option<i64>,
    buffer_records: usize,
    buffer_bytes: usize,
) {
    if let Some(next) = next {
        commit(consumer, &key, next, CommitMode::Async);
    }
    if let Some(entry) = pending.get_mut(&key) {
        entry.in_flight = false;
        if entry.paused && entry.records.len() < buffer_records && entry.bytes < buffer_bytes {
            set_paused(consumer, &key, false);
            entry.paused = false;
        }
    }
}

/// Cuts the next batch of a partition if one is due: full, at the 6 MB limit, or its oldest
/// record has waited the batching window.
fn take_batch(
    function: &Function,
    envelope: &Envelope,
    key: &PartitionKey,
    entry: &mut Pending,
) -> Option<Batch> {
    if entry.in_flight || entry.records.is_empty() {
        return None;
    }
    let overhead = *entry.overhead.get_or_insert_with(|| envelope.overhead_bytes(&key.0, key.1));
    // Cheap checks first, from running totals: this runs for every buffered partition after
    // every poll, and the records are scanned only when a batch is cut.
    let commas = entry.records.len() - 1;
    let full = entry.records.len() >= function.batch_size
        || overhead + entry.bytes + commas > PAYLOAD_BYTES_MAX;
    let waited = entry.since.is_some_and(|since| since.elapsed() >= function.batching_window);
    if !(full || waited) {
        return None;
    }
    let mut count = 0usize;
    let mut bytes = overhead;
    for record in &entry.records {
        let more = record.json.len() + usize::from(count > 0);
        if count == function.batch_size || (count > 0 && bytes + more > PAYLOAD_BYTES_MAX) {
            break;
        }
        count += 1;
        bytes += more;
    }
    let records: Vec<Prepared> = entry.records.drain(..count).collect();
    entry.bytes -= records.iter().map(|r| r.json.len()).sum::<usize>();
    entry.since = if entry.records.is_empty() { None } else { Some(Instant::now()) };
    debug_assert!(event_bytes(overhead, &records) == bytes, "batch size {bytes} mismatch");
    Some(Batch { records })
}

/// Drops what was buffered for revoked partitions: their next owner starts from the
/// committed offset.
fn forget_revoked(changes: &Mutex<Changes>, pending: &mut HashMap<PartitionKey, Pending>) {
    let revoked = std::mem::take(&mut changes.lock().unwrap_or_else(|p| p.into_inner()).revoked);
    for key in revoked {
        if let Some(entry) = pending.get_mut(&key) {
            entry.records.clear();
            entry.bytes = 0;
            entry.since = None;
            entry.paused = false;
        }
    }
}

fn commit(consumer: &StreamConsumer<Context>, key: &PartitionKey, next: i64, mode: CommitMode) {
    let mut list = TopicPartitionList::new();
    if list.add_partition_offset(&key.0, key.1, Offset::Offset(next)).is_err() {
        return;
    }
    if let Err(error) = consumer.commit(&list, mode) {
        // Not fatal: the records are re-delivered from the last commit (at least once).
        tracing::warn!(topic = %key.0, partition = key.1, offset = next, %error, "commit failed");
    }
}

fn set_paused(consumer: &StreamConsumer<Context>, key: &PartitionKey, paused: bool) {
    let mut list = TopicPartitionList::new();
    list.add_partition(&key.0, key.1);
    let result = if paused { consumer.pause(&list) } else { consumer.resume(&list) };
    if let Err(error) = result {
        tracing::debug!(topic = %key.0, partition = key.1, %error, paused, "pause/resume failed");
    }
}

fn to_record(message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let (timestamp_ms, timestamp_type) = match message.timestamp() {
        rdkafka::Timestamp::LogAppendTime(ms) => (ms, TimestampType::LogAppendTime),
        rdkafka::Timestamp::CreateTime(ms) => (ms, TimestampType::CreateTime),
        rdkafka::Timestamp::NotAvailable => (-1, TimestampType::CreateTime),
    };
    let headers = message
        .headers()
        .map(|headers| {
            headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect()
        })
        .unwrap_or_default();
    Record {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms,
        timestamp_type,
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

fn consumer_config(function: &Function, options: &Options) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.bootstrap_servers)
        .set("group.id", &function.consumer_group_id)
        .set("client.id", format!("sluice-function-{}", function.name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // An existing group's committed offsets win; the starting position applies to
        // partitions the group has never committed (AT_TIMESTAMP ones are seeded first).
        .set(
            "auto.offset.reset",
            match function.starting_position {
                StartingPosition::TrimHorizon => "earliest",
                StartingPosition::Latest | StartingPosition::AtTimestamp(_) => "latest",
            },
        );
    if let Some(instance) = &options.instance_id {
        config.set("group.instance.id", format!("{instance}-{}", function.name));
    }
    for (key, value) in &options.client_properties {
        config.set(key, value);
    }
    config
}

/// AT_TIMESTAMP: commits, for every partition the group has no offset for, the first offset
/// at or after `ms`, before the consumer joins; later partitions start at LATEST.
fn seed_offsets_at(
    consumer: &StreamConsumer<Context>,
    topics: &[String],
    ms: i64,
) -> std::result::Result<(), rdkafka::error::KafkaError> {
    let timeout = Duration::from_secs(30);
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                all.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer.committed_offsets(all, timeout)?;
    let mut wanted = TopicPartitionList::new();
    for element in committed.elements() {
        if !matches!(element.offset(), Offset::Offset(_)) {
            wanted.add_partition_offset(
                element.topic(),
                element.partition(),
                Offset::Offset(ms),
            )?;
        }
    }
    if wanted.count() == 0 {
        return Ok(());
    }
    let found = consumer.offsets_for_times(wanted, timeout)?;
    let mut seeded = TopicPartitionList::new();
    for element in found.elements() {
        // No record at or after the time: nothing is seeded, so the partition starts at the
        // end (auto.offset.reset=latest), as Lambda does.
        if let Offset::Offset(offset) = element.offset() {
            seeded.add_partition_offset(
                element.topic(),
                element.partition(),
                Offset::Offset(offset),
            )?;
        }
    }
    if seeded.count() > 0 {
        consumer.commit(&seeded, CommitMode::Sync)?;
    }
    Ok(())
}

/// An MSK-style ARN naming the cluster, as the `aws:kafka` event carries. librdkafka knows
/// the cluster id once it has metadata, so fetch that first.
fn event_source_arn(consumer: &StreamConsumer<Context>) -> String {
    let timeout = Duration::from_secs(10);
    let cluster = match consumer.fetch_metadata(None, timeout) {
        Ok(_) => consumer.client().fetch_cluster_id(Duration::ZERO).unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%error, "cannot read the cluster's metadata; the ARN has no cluster id");
            String::new()
        }
    };
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    format!("arn:aws:kafka:{region}:000000000000:cluster/sluice/{cluster}")
}
