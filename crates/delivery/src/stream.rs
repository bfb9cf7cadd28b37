//! The delivery loop: consumes a stream's topic in a consumer group, buffers each source
//! partition's records into objects, publishes them, and commits the partition's offset
//! only after every object holding its records is published.
//!
//! **Rounds.** A partition's records are gathered in a *round*: one open object per output
//! bucket (the data prefix's partition-key values, or an error output type). A round is
//! sealed as soon as one of its objects holds `SizeInMBs` of records or it has too many
//! buckets open, and is due when sealed or when its first record has waited
//! `IntervalInSeconds`. A due round's objects are published one by one, then the offset
//! after its last record is committed; only then may the partition's next round be
//! published. Meanwhile records keep arriving into the next round; when a sealed round
//! waits behind the one publishing (`ROUNDS_BUFFERED_MAX` rounds), the loop takes no more
//! records until it goes out, and librdkafka's fetch queue, bounded by
//! `queued.max.messages.kbytes` (twice the size hint), stops fetching: memory is bounded by
//! the buffering hints, not by the backlog.
//!
//! **Exactly once.** Each object's key is fixed by its first record (see
//! [`crate::template`]), and at most one round per partition is published but not
//! committed. After a crash the partition is re-read from the committed offset `C`, and for
//! every bucket the first record at or after `C` is the same as before, so the first
//! re-published object of each bucket replaces the object published before the crash, under
//! the same key, with the records of the new round; records of the old object beyond the
//! new round reappear in a later object whose key is again their bucket's first record.
//! Nothing is missing and nothing is duplicated once delivery has caught up. A publish is
//! one PUT (a rename for a folder), so no reader sees part of an object.
//!
//! This holds for one running instance of a stream and across its restarts. With several
//! instances sharing the partitions, an instance that loses a partition while publishing
//! could overwrite the new owner's object with an older round: scale out is at least once.
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use crate::config::{DeliveryStream, Source as StreamSource};
use crate::destination::Destination;
use crate::error::{Error, Result};
use crate::limits::{
    OPEN_PREFIXES_PER_PARTITION_MAX, RETRY_BACKOFF_MS_FIRST, RETRY_BACKOFF_MS_MAX,
    ROUNDS_BUFFERED_MAX,
};
use crate::metrics::{Metrics, Stats};
use crate::object::{Bucket, OpenObject, Source, FORMAT_CONVERSION_FAILED, PROCESSING_FAILED};

/// How often the loop looks at intervals when no record arrives.
const TICK: Duration = Duration::from_millis(50);
/// Records taken from the consumer without yielding, once one has arrived.
const DRAIN_RECORDS_MAX: usize = 4096;
/// How long a stopping stream keeps publishing what it has buffered.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How long rewinding a partition waits for its committed offset, and then for the seek.
const REWIND_TIMEOUT_SECS: u64 = 10;

/// Where a stream runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `bootstrap.servers` of the cluster.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (security settings, say), applied last.
    pub client_properties: Vec<(String, String)>,
    /// The folder of a stream without `destination_url`.
    pub default_destination: PathBuf,
    /// This instance's static group member name (KIP-345), as for functions.
    pub instance_id: Option<String>,
    /// Counters the caller wants to read (benchmarks, status); fresh ones if `None`.
    pub stats: Option<Arc<Stats>>,
}

type PartitionKey = (Arc<str>, i32);

/// One partition's open round.
#[derive(Default)]
struct Round {
    objects: HashMap<Bucket, OpenObject>,
    /// The offset after the last record consumed into the round.
    next_offset: Option<i64>,
    started: Option<Instant>,
    record_bytes: u64,
}

#[derive(Default)]
struct Partition {
    /// The round records go to.
    round: Round,
    /// Full rounds waiting for the one publishing, oldest first.
    sealed: VecDeque<Round>,
    publishing: bool,
}

impl Partition {
    /// A sealed round waits behind the one publishing: take no more records for now.
    fn is_full(&self) -> bool {
        self.publishing && self.sealed.len() as u64 >= ROUNDS_BUFFERED_MAX - 1
    }
}

struct Context {
    stream: String,
    revoked: Mutex<Vec<PartitionKey>>,
}

impl ClientContext for Context {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(stream = %self.stream, %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            for element in list.elements() {
                revoked.push((Arc::from(element.topic()), element.partition()));
            }
        }
    }
}

/// What the publishing tasks share.
struct Shared {
    stream: DeliveryStream,
    destination: Destination,
    consumer: Arc<StreamConsumer<Context>>,
    metrics: Metrics,
}

/// Runs `stream` until `shutdown` turns true.
pub async fn run(
    stream: DeliveryStream,
    options: Options,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let name = stream.name.clone();
    let kafka = |source| Error::Kafka { stream: name.clone(), source };
    let url = match &stream.destination_url {
        Some(url) => url.clone(),
        None => folder_url(&options.default_destination, &name)?,
    };
    let destination = Destination::open(&name, &url, &stream.destination_options)?;
    if let StreamSource::DirectPut { topic, partitions } = &stream.source {
        create_backing_topic(&options, topic, *partitions).await.map_err(kafka)?;
    }
    let context = Context { stream: name.clone(), revoked: Mutex::default() };
    let consumer: Arc<StreamConsumer<Context>> =
        Arc::new(consumer_config(&stream, &options).create_with_context(context).map_err(kafka)?);
    consumer.subscribe(&[stream.source.topic()]).map_err(kafka)?;
    let mut metrics = Metrics::new(&name);
    if let Some(stats) = &options.stats {
        metrics.stats = Arc::clone(stats);
    }
    tracing::info!(stream = %name, topic = %stream.source.topic(), destination = %url,
        group = %stream.consumer_group_id, "delivery stream started");
    let shared = Arc::new(Shared { stream, destination, consumer, metrics });
    let outcome = deliver(&shared, shutdown).await;
    tracing::info!(stream = %name, "delivery stream stopped");
    outcome
}

/// `file://` URL of the default folder of a stream.
fn folder_url(base: &std::path::Path, stream: &str) -> Result<String> {
    let io = |what: String, source| Error::Io { stream: stream.into(), what, source };
    std::fs::create_dir_all(base)
        .map_err(|e| io(format!("cannot create {}", base.display()), e))?;
    let absolute = std::fs::canonicalize(base)
        .map_err(|e| io(format!("cannot resolve {}", base.display()), e))?;
    url::Url::from_directory_path(&absolute).map(|url| url.to_string()).map_err(|()| {
        io(
            format!("{} is not a folder path", absolute.display()),
            std::io::Error::other("bad path"),
        )
    })
}

/// The poll loop; see the module docs.
async fn deliver(shared: &Arc<Shared>, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let mut partitions: HashMap<PartitionKey, Partition> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::channel::<(PartitionKey, std::io::Result<()>)>(64);
    let (abort_tx, abort_rx) = watch::channel(false);
    let mut in_flight = 0usize;
    let mut full = false;
    let stream = &shared.stream;
    loop {
        // A round that ended, handled after the select (whose outputs include the shutdown
        // watch's guard, which may not be held across the rewind's await).
        let mut ended = None;
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(round) = done_rx.recv() => ended = Some(round),
            // A partition with a full round waiting stops the loop from taking records; the
            // consumer's bounded fetch queue then stops fetching (backpressure without
            // pausing, whose resume costs a fetch cycle).
            message = shared.consumer.recv(), if !full => {
                let message = message.map_err(|source| Error::Kafka { stream: stream.name.clone(), source })?;
                full = take(shared, &mut partitions, &message)?;
                // Take what is already fetched before looking at rounds again.
                for _ in 0..DRAIN_RECORDS_MAX {
                    if full {
                        break;
                    }
                    match shared.consumer.recv().now_or_never() {
                        Some(Ok(message)) => full = take(shared, &mut partitions, &message)?,
                        Some(Err(error)) => tracing::warn!(stream = %stream.name, %error, "consume error"),
                        None => break,
                    }
                }
            }
            _ = tokio::time::sleep(TICK) => {}
        }
        if let Some((key, outcome)) = ended {
            in_flight -= 1;
            finished(shared, &mut partitions, key, outcome).await?;
        }
        forget_revoked(shared, &mut partitions);
        for (key, partition) in partitions.iter_mut() {
            if let Some(round) = next_round(stream, partition, false) {
                start_publish(shared, key, partition, round, &done_tx, &abort_rx);
                in_flight += 1;
            }
        }
        full = partitions.values().any(Partition::is_full);
    }
    // Stopping: publish what is buffered, within a grace period; whatever is not published
    // is not committed, and is re-read on restart.
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    loop {
        for (key, partition) in partitions.iter_mut() {
            if let Some(round) = next_round(stream, partition, true) {
                start_publish(shared, key, partition, round, &done_tx, &abort_rx);
                in_flight += 1;
            }
        }
        if in_flight == 0 {
            break;
        }
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some((key, outcome))) => {
                in_flight -= 1;
                finished(shared, &mut partitions, key, outcome).await?;
            }
            _ => {
                let _ = abort_tx.send(true);
                tracing::warn!(stream = %stream.name, rounds = in_flight,
                    "stopping before every buffered object was published; they are re-read on restart");
                break;
            }
        }
    }
    Ok(())
}

/// The partition's next round to publish, if none is publishing: the oldest sealed one, else
/// the filling one when it is due (or holds anything, when `stopping`).
fn next_round(stream: &DeliveryStream, partition: &mut Partition, stopping: bool) -> Option<Round> {
    if partition.publishing {
        return None;
    }
    if let Some(round) = partition.sealed.pop_front() {
        return Some(round);
    }
    let ready = if stopping {
        partition.round.next_offset.is_some()
    } else {
        due(stream, &partition.round)
    };
    ready.then(|| std::mem::take(&mut partition.round))
}

fn due(stream: &DeliveryStream, round: &Round) -> bool {
    round.next_offset.is_some()
        && round.started.is_some_and(|started| started.elapsed() >= stream.interval)
}

/// Adds one record to its partition's round; `true` when the partition is now full.
fn take(
    shared: &Shared,
    partitions: &mut HashMap<PartitionKey, Partition>,
    message: &BorrowedMessage<'_>,
) -> Result<bool> {
    let stream = &shared.stream;
    let key: PartitionKey = (Arc::from(message.topic()), message.partition());
    let partition = partitions.entry(key.clone()).or_default();
    let round = &mut partition.round;
    let timestamp_ms = message.timestamp().to_millis().unwrap_or(0);
    let source = Source {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms,
    };
    round.next_offset = Some(message.offset() + 1);
    round.started.get_or_insert_with(Instant::now);
    // A record without a value (a tombstone) has nothing to deliver.
    let Some(value) = message.payload() else { return Ok(partition.is_full()) };
    shared.metrics.incoming(value.len());
    let bucket = match &stream.partitioning {
        None => Bucket::Data(Vec::new()),
        Some(query) => {
            let extracted = serde_json::from_slice(value)
                .map_err(|e| format!("the record is not JSON: {e}"))
                .and_then(|json| query.extract(&json));
            match extracted {
                Ok(keys) => Bucket::Data(keys),
                Err(reason) => {
                    let bucket = Bucket::Error(PROCESSING_FAILED);
                    let object = open(stream, round, bucket, source);
                    object.push_error(
                        source,
                        value,
                        PROCESSING_FAILED,
                        "DynamicPartitioning.MetadataExtractionFailed",
                        &reason,
                    );
                    return Ok(partition.is_full());
                }
            }
        }
    };
    let object = open(stream, round, bucket, source);
    if let Err(reason) = object.push(value, stream.append_delimiter) {
        let bucket = Bucket::Error(FORMAT_CONVERSION_FAILED);
        let object = open(stream, round, bucket, source);
        object.push_error(
            source,
            value,
            FORMAT_CONVERSION_FAILED,
            "DataFormatConversion.MalformedData",
            &reason,
        );
    }
    round.record_bytes += value.len() as u64;
    let full = round.objects.values().any(|object| object.record_bytes >= stream.buffer_bytes)
        || round.objects.len() >= OPEN_PREFIXES_PER_PARTITION_MAX;
    if full {
        // Sealed at once, so no object grows past the size hint by more than one record.
        let round = std::mem::take(&mut partition.round);
        partition.sealed.push_back(round);
    }
    Ok(partition.is_full())
}

/// The round's open object for `bucket`, opened by `first` if there is none.
fn open<'a>(
    stream: &DeliveryStream,
    round: &'a mut Round,
    bucket: Bucket,
    first: Source<'_>,
) -> &'a mut OpenObject {
    use std::collections::hash_map::Entry;
    match round.objects.entry(bucket) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            let object = OpenObject::open(stream, entry.key(), first);
            entry.insert(object)
        }
    }
}

/// Hands a partition's round to a publishing task.
fn start_publish(
    shared: &Arc<Shared>,
    key: &PartitionKey,
    partition: &mut Partition,
    round: Round,
    done: &mpsc::Sender<(PartitionKey, std::io::Result<()>)>,
    abort: &watch::Receiver<bool>,
) {
    partition.publishing = true;
    let (shared, done, key, mut abort) =
        (Arc::clone(shared), done.clone(), key.clone(), abort.clone());
    tokio::spawn(async move {
        let outcome = publish_round(&shared, &key, round, &mut abort).await;
        let _ = done.send((key, outcome)).await;
    });
}

/// Publishes every object of a round, then commits the offset after it.
async fn publish_round(
    shared: &Shared,
    key: &PartitionKey,
    round: Round,
    abort: &mut watch::Receiver<bool>,
) -> std::io::Result<()> {
    debug_assert!(
        round.next_offset.is_some() || round.objects.is_empty(),
        "objects without an offset"
    );
    let Some(next_offset) = round.next_offset else { return Ok(()) };
    for (bucket, object) in round.objects {
        let (object_key, records) = (object.key.clone(), object.records);
        let first_ms = object.first_timestamp_ms;
        let bytes = tokio::task::spawn_blocking(move || object.finish())
            .await
            .map_err(std::io::Error::other)??;
        let size = bytes.len();
        let failed = |error: &std::io::Error, attempt: u32| {
            shared.metrics.publish_failed();
            tracing::warn!(stream = %shared.stream.name, key = %object_key, attempt, error = %error,
                "cannot publish an object; retrying (consuming pauses while objects wait)");
        };
        if !shared.destination.publish(&object_key, bytes.into(), abort, failed).await {
            return Err(std::io::Error::other("stopped before the object was published"));
        }
        let age = (chrono::Utc::now().timestamp_millis() - first_ms).max(0) as f64 / 1000.0;
        shared.metrics.published(records, size, age, matches!(bucket, Bucket::Error(_)));
        tracing::debug!(stream = %shared.stream.name, key = %object_key, records, bytes = size, "published");
    }
    commit(shared, key, next_offset, abort).await
}

/// Commits `next` for the partition, retrying while this instance still owns it: a second
/// round must not be published over an uncommitted one (see the module docs).
async fn commit(
    shared: &Shared,
    key: &PartitionKey,
    next: i64,
    abort: &mut watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut backoff = Duration::from_millis(RETRY_BACKOFF_MS_FIRST);
    loop {
        let consumer = Arc::clone(&shared.consumer);
        let (topic, partition) = (key.0.to_string(), key.1);
        let result = tokio::task::spawn_blocking(move || {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&topic, partition, Offset::Offset(next))?;
            consumer.commit(&list, CommitMode::Sync)
        })
        .await
        .map_err(std::io::Error::other)?;
        let error = match result {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let lost = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::RebalanceInProgress
                    | RDKafkaErrorCode::FencedInstanceId
            )
        );
        tracing::warn!(stream = %shared.stream.name, topic = %key.0, partition = key.1, offset = next,
            %error, lost, "commit failed");
        if lost {
            // The partition moved: its new owner re-reads from the last commit.
            return Err(std::io::Error::other(error));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = abort.wait_for(|stop| *stop) => return Err(std::io::Error::other(error)),
        }
        backoff = (backoff * 2).min(Duration::from_millis(RETRY_BACKOFF_MS_MAX));
    }
}

/// A round's publishing ended: allow the next one.
async fn finished(
    shared: &Shared,
    partitions: &mut HashMap<PartitionKey, Partition>,
    key: PartitionKey,
    outcome: std::io::Result<()>,
) -> Result<()> {
    if let Err(error) = &outcome {
        tracing::warn!(stream = %shared.stream.name, topic = %key.0, partition = key.1, %error,
            "a round was not committed; its records are read again");
    }
    let Some(partition) = partitions.get_mut(&key) else { return Ok(()) };
    partition.publishing = false;
    if outcome.is_err() {
        // What follows the uncommitted round must not be published before it: read the
        // partition again from its committed offset.
        partition.round = Round::default();
        partition.sealed.clear();
        rewind(shared, &key).await;
    }
    Ok(())
}

/// Seeks a partition back to its committed offset. The loop waits for it (nothing of the
/// partition may be taken before), on a blocking thread: asking for the committed offset is
/// a round trip to the group coordinator.
async fn rewind(shared: &Shared, key: &PartitionKey) {
    let consumer = Arc::clone(&shared.consumer);
    let (topic, index) = (Arc::clone(&key.0), key.1);
    let outcome = tokio::task::spawn_blocking(move || {
        let mut list = TopicPartitionList::new();
        list.add_partition(&topic, index);
        let committed = consumer.committed_offsets(list, Duration::from_secs(REWIND_TIMEOUT_SECS));
        let offset = committed
            .ok()
            .and_then(|list| list.find_partition(&topic, index).map(|p| p.offset()))
            .unwrap_or(Offset::Beginning);
        let offset = if matches!(offset, Offset::Offset(_)) { offset } else { Offset::Beginning };
        consumer.seek(&topic, index, offset, Duration::from_secs(REWIND_TIMEOUT_SECS))
    })
    .await;
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.to_string(),
        Err(stopped) => stopped.to_string(),
    };
    tracing::warn!(stream = %shared.stream.name, topic = %key.0, partition = key.1, %error, "cannot rewind");
}

/// Drops the rounds of revoked partitions: their next owner re-reads from the last commit.
fn forget_revoked(shared: &Shared, partitions: &mut HashMap<PartitionKey, Partition>) {
    let revoked = std::mem::take(
        &mut *shared.consumer.context().revoked.lock().unwrap_or_else(|p| p.into_inner()),
    );
    for key in revoked {
        if let Some(partition) = partitions.get_mut(&key) {
            partition.round = Round::default();
            partition.sealed.clear();
        }
    }
}

fn consumer_config(stream: &DeliveryStream, options: &Options) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.bootstrap_servers)
        .set("group.id", &stream.consumer_group_id)
        .set("client.id", format!("sluice-delivery-{}", stream.name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("queued.max.messages.kbytes", fetch_queue_kib(stream.buffer_bytes).to_string());
    if let Some(instance) = &options.instance_id {
        config.set("group.instance.id", format!("{instance}-delivery-{}", stream.name));
    }
    for (key, value) in &options.client_properties {
        config.set(key, value);
    }
    config
}

/// The consumer's fetch queue: twice the size hint, at least 16 MiB so small hints still
/// fetch in large steps.
fn fetch_queue_kib(buffer_bytes: u64) -> u64 {
    (buffer_bytes * 2 / 1024).max(16 * 1024)
}

/// Creates a DirectPut stream's backing topic unless it exists.
async fn create_backing_topic(
    options: &Options,
    topic: &str,
    partitions: i32,
) -> std::result::Result<(), rdkafka::error::KafkaError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &options.bootstrap_servers);
    for (key, value) in &options.client_properties {
        config.set(key, value);
    }
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    // -1: the cluster's default replication factor (KIP-464), right on MSK and on sluice.
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let results = admin.create_topics([&new], &AdminOptions::new()).await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(rdkafka::error::KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}
