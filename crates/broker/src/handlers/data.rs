//! Produce, Fetch (with long polling), ListOffsets and DeleteRecords.
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_log::{FlushPolicy, LogSlice, Partition, Wait};
use sluice_wire::batch;

use super::text;
use crate::clock::now_ms;
use crate::limits::FETCH_WAIT_MS_MAX;
use crate::state::State;
use crate::{Error, Result};

/// One partition's part of a produce request, resolved.
struct ProduceJob {
    topic_index: usize,
    /// The topic's name, for checking transactional batches ([`verify_transactional`]).
    topic: TopicName,
    index: i32,
    target: std::result::Result<(Arc<Partition>, Bytes), Refused>,
}

/// Why a partition's part of a produce was refused.
struct Refused {
    error: ResponseError,
    message: String,
    /// KIP-467: the indexes of the records that caused the refusal.
    record_errors: Vec<i32>,
}

impl Refused {
    fn new(error: ResponseError, message: impl Into<String>) -> Refused {
        Refused { error, message: message.into(), record_errors: Vec::new() }
    }
}

impl From<ResponseError> for Refused {
    fn from(error: ResponseError) -> Refused {
        Refused::new(error, error.to_string())
    }
}

/// The result of appending one job: `(base offset, log append time, log start)` or error.
type Appended = std::result::Result<(i64, i64, i64), Refused>;

/// Validates and appends a produce's batches (no sync); see [`StagedProduce`].
pub(crate) async fn produce_append(
    state: &Arc<State>,
    request: ProduceRequest,
    version: i16,
    client: &super::Client,
) -> StagedProduce {
    let peer = client.peer;
    let acks = request.acks;
    let mut topics: Vec<TopicProduceResponse> = Vec::with_capacity(request.topic_data.len());
    let mut jobs = Vec::new();
    for (topic_index, topic_data) in request.topic_data.into_iter().enumerate() {
        let topic = state.topics.get(&topic_data.name);
        // A copy, once per topic: the decoded name is a slice of the request's body, which
        // may be a pooled buffer (`server::read_frame`), and the response keeps its name
        // until the reply is written, long after the records are appended.
        let name = TopicName(StrBytes::from_string(topic_data.name.to_string()));
        topics.push(TopicProduceResponse::default().with_name(name.clone()));
        for data in topic_data.partition_data {
            let target = match (&topic, data.records) {
                _ if !matches!(acks, -1..=1) => Err(ResponseError::InvalidRequiredAcks.into()),
                (None, _) => Err(ResponseError::UnknownTopicOrPartition.into()),
                (Some(_), None) => Err(ResponseError::CorruptMessage.into()),
                // zstd arrived with Produce v7 (KIP-110); an older request must not carry it.
                (Some(_), Some(records)) if version < 7 && batch::any_zstd(&records) => {
                    Err(ResponseError::UnsupportedCompressionType.into())
                }
                (Some(topic), Some(records)) => match topic.partition(data.index) {
                    Some(partition) => Ok((Arc::clone(partition), records)),
                    None => Err(ResponseError::UnknownTopicOrPartition.into()),
                },
            };
            // A reference-counted clone: no copy of the name per partition.
            let topic = name.clone();
            jobs.push(ProduceJob { topic_index, topic, index: data.index, target });
        }
    }
    let targets: Vec<(usize, i32)> = jobs.iter().map(|j| (j.topic_index, j.index)).collect();
    let (appended, appended_rx) = tokio::sync::oneshot::channel();
    let (synced, first_sync) = tokio::sync::oneshot::channel();
    // The thread that appends goes on to sync the first partition, one thread hop fewer
    // than a sync task of its own; the connection reads its next request as soon as the
    // append is done. Any other partitions sync in parallel from `produce_finish`.
    let appending = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        let (results, mut to_sync) = append_all(&appending, jobs, peer);
        let first = (!to_sync.is_empty()).then(|| to_sync.remove(0));
        let _ = appended.send((results, to_sync));
        if let Some(first) = first {
            let _ = synced.send(sync_all(vec![first]));
        }
    });
    let (results, to_sync) = appended_rx.await.unwrap_or_else(|_| {
        // The append panicked (a bug): nothing is acknowledged, every partition says why.
        tracing::error!(%peer, "produce task failed");
        let failed = || {
            Err(Refused::new(ResponseError::UnknownServerError, "internal error; see broker log"))
        };
        (targets.into_iter().map(|(topic, index)| (topic, index, failed())).collect(), Vec::new())
    });
    StagedProduce { topics, results, first_sync, to_sync, wait_for_sync: acks != 0 }
}

/// A transactional batch must belong to its producer's open transaction, which must hold
/// the partition (as Kafka 3.6+ verifies, KIP-890): otherwise its records would hold the
/// partition's last stable offset until no marker ever comes. Every batch is checked, not
/// only the first: clients send one per partition, but a second one from another producer
/// must not slip in unchecked. (A batch the log cannot parse is refused when appended.)
/// Called under the partition's log lock, right before the append ([`append_all`]).
fn verify_transactional(
    state: &State,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> std::result::Result<(), ResponseError> {
    let mut at = 0usize;
    while let Ok(header) = batch::parse_header(records.get(at..).unwrap_or_default()) {
        if header.is_transactional() && header.producer_id >= 0 {
            let (id, epoch) = (header.producer_id, header.producer_epoch);
            state.transactions.verify_produce(id, epoch, topic, partition)?;
        }
        at = at.saturating_add(header.total_bytes);
    }
    Ok(())
}

/// A partition to sync and the end offset a request needs synced.
type ToSync = (Arc<Partition>, i64);

/// A produce whose batches are appended, in request order, and whose sync and response
/// are still to come. Splitting the two lets a connection read and append its next produce
/// while this one's sync is running, so one producer's requests share a group commit.
pub(crate) struct StagedProduce {
    topics: Vec<TopicProduceResponse>,
    results: Vec<(usize, i32, Appended)>,
    /// The outcome of the first partition's sync, run by the thread that appended (closed
    /// without a value when nothing was appended).
    first_sync: tokio::sync::oneshot::Receiver<std::result::Result<(), String>>,
    /// The other partitions to sync, each with the end offset this request needs synced.
    to_sync: Vec<ToSync>,
    wait_for_sync: bool,
}

impl StagedProduce {
    /// Whether partitions beyond the first wait to be synced (the first syncs already).
    pub(crate) fn syncs_more_partitions(&self) -> bool {
        !self.to_sync.is_empty()
    }
}

/// Appends and syncs, then answers: [`produce_append`] then [`produce_finish`].
#[cfg(test)]
pub(crate) async fn produce(
    state: &Arc<State>,
    request: ProduceRequest,
    version: i16,
    client: &super::Client,
) -> ProduceResponse {
    let staged = produce_append(state, request, version, client).await;
    produce_finish(staged).await
}

/// Waits until the staged produce's records are synced (under `log.flush = always`; each
/// sync wakes the fetches waiting for its partition) and builds the response.
pub(crate) async fn produce_finish(staged: StagedProduce) -> ProduceResponse {
    let StagedProduce { mut topics, mut results, first_sync, to_sync, wait_for_sync } = staged;
    // Partitions sync in parallel: their fsyncs overlap in the device (and in the file
    // system's journal, where it has one), so a request that wrote many partitions waits
    // about one sync.
    let syncs: Vec<_> = to_sync
        .into_iter()
        .map(|one| tokio::task::spawn_blocking(move || sync_all(vec![one])))
        .collect();
    // Nothing appended closes `first_sync` without a value, which is no failure.
    let mut failure = first_sync.await.ok().and_then(|outcome| outcome.err());
    for sync in syncs {
        let outcome = match sync.await {
            Ok(result) => result.err(),
            Err(error) => Some(format!("sync task failed: {error}")),
        };
        if failure.is_none() {
            failure = outcome;
        }
    }
    // The syncs woke the fetches waiting for these partitions (`crate::wakeups`).
    if let (Some(message), true) = (failure, wait_for_sync) {
        for result in results.iter_mut().filter(|r| r.2.is_ok()) {
            result.2 = Err(Refused::new(ResponseError::KafkaStorageError, message.clone()));
        }
    }
    for (topic_index, index, outcome) in results {
        let response = match outcome {
            Ok((base_offset, log_append_time_ms, log_start_offset)) => {
                PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(log_append_time_ms)
                    .with_log_start_offset(log_start_offset)
            }
            Err(Refused { error, message, record_errors }) => PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(error.code())
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
                .with_record_errors(
                    record_errors
                        .into_iter()
                        .map(|batch_index| {
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(batch_index)
                                .with_batch_index_error_message(Some(text(message.clone())))
                        })
                        .collect(),
                )
                .with_error_message(Some(text(message))),
        };
        if let Some(topic) = topics.get_mut(topic_index) {
            topic.partition_responses.push(response);
        }
    }
    ProduceResponse::default().with_responses(topics)
}

/// Appends every job (no sync). Blocking.
///
/// A transactional batch is checked against its transaction under the partition's log lock,
/// together with its append: EndTxn shows its prepare state (which fails the check) before it
/// writes its marker under that lock, so a batch is either in the log before the marker or
/// refused, never appended after it, where it would open a stray transaction holding the
/// partition's last stable offset. (Checked apart, a client that ends a transaction without
/// awaiting its produces could land one in between.)
fn append_all(
    state: &State,
    jobs: Vec<ProduceJob>,
    peer: std::net::SocketAddr,
) -> (Vec<(usize, i32, Appended)>, Vec<ToSync>) {
    let now = now_ms();
    let mut results = Vec::with_capacity(jobs.len());
    let mut to_sync: Vec<ToSync> = Vec::new();
    for job in jobs {
        let outcome = match job.target {
            Err(refused) => Err(refused),
            Ok((partition, bytes)) => {
                let appended = partition.with_log(|log| {
                    verify_transactional(state, &job.topic, job.index, &bytes)
                        .map_err(Refused::from)?;
                    // Readable once appended, unless the high watermark waits for a sync.
                    let visible = log.config().flush != FlushPolicy::Always;
                    let appended = log.append(&bytes, now).map_err(|error| {
                        // A compacted topic names the keyless records (KIP-467), as Kafka.
                        let record_errors = match &error {
                            sluice_log::Error::KeylessRecords { indexes } => indexes.clone(),
                            _ => Vec::new(),
                        };
                        // A failed write is logged by the log when a run of them starts.
                        if matches!(error, sluice_log::Error::Io { .. }) {
                            tracing::debug!(%peer, partition = job.index, %error, "produce rejected");
                        } else {
                            tracing::warn!(%peer, partition = job.index, %error, "produce rejected");
                        }
                        let error = Error::Log(error);
                        let message = if record_errors.is_empty() {
                            error.to_string()
                        } else {
                            // Kafka's own words, which clients show.
                            format!(
                                "Compacted topic cannot accept message without key in topic \
                                 partition {}-{}.",
                                job.topic.as_str(),
                                job.index
                            )
                        };
                        Refused { error: error.kafka_error(), message, record_errors }
                    });
                    appended.map(|info| (info, visible))
                });
                appended.map(|(info, visible)| {
                    if visible {
                        state.wakeups.wake(&partition);
                    }
                    to_sync.push((Arc::clone(&partition), info.last_offset + 1));
                    (info.base_offset, info.log_append_time_ms, info.log_start_offset)
                })
            }
        };
        results.push((job.topic_index, job.index, outcome));
    }
    (results, to_sync)
}

/// Syncs each partition up to the offset the request needs, under `log.flush = always`
/// (group commit joins these syncs with other requests'). Blocking.
fn sync_all(to_sync: Vec<ToSync>) -> std::result::Result<(), String> {
    for (partition, end) in to_sync {
        let always = partition.with_log(|log| log.config().flush == FlushPolicy::Always);
        if always {
            partition.sync_to(end).map_err(|error| {
                tracing::error!(%error, "sync failed; failing the produce");
                error.to_string()
            })?;
        }
    }
    Ok(())
}

/// A Fetch answer: the response, with each partition's records left as a [`LogSlice`] of
/// its segment file (indexed like `responses` and their `partitions`) for the connection's
/// writer to send from the file, never held whole in the broker's memory (`server::send_split`).
pub(crate) struct Fetched {
    pub(crate) response: FetchResponse,
    pub(crate) slices: Vec<Vec<Option<LogSlice>>>,
}

pub(crate) async fn fetch(state: &Arc<State>, request: FetchRequest, version: i16) -> Fetched {
    let wait_ms = u64::try_from(request.max_wait_ms).unwrap_or(0).min(FETCH_WAIT_MS_MAX);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let mut shutdown = state.shutdown.subscribe();
    loop {
        // The topics are looked up once per pass, and the pass waits for the partitions it
        // read (a topic deleted and created again meanwhile has new ones).
        let topics = fetched_topics(state, &request, version);
        let partitions = topics.iter().zip(&request.topics).flat_map(|(topic, wanted)| {
            let topic = topic.as_ref();
            wanted.partitions.iter().filter_map(move |p| topic?.partition(p.partition))
        });
        let shards = state.wakeups.shards_of(partitions.map(|p| &**p));
        // Registered before reading, so new data between the read and the wait wakes it.
        let woken = state.wakeups.wait_any(&shards);
        let (fetched, bytes, errors) =
            match fetch_once(state, &request, version, &topics, Wait::CachedOnly) {
                Some(once) => once,
                None => fetch_from_disk(state, &request, version, topics).await,
            };
        // min_bytes = 0 answers at once, data or not, as Kafka does.
        let enough = min_bytes == 0 || (bytes > 0 && bytes >= min_bytes);
        let done = enough || errors || tokio::time::Instant::now() >= deadline;
        if done {
            return fetched;
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stop| *stop) => return fetched,
        }
    }
}

/// The topics a Fetch names, by id from v13 and by name before, in request order; `None`
/// for one that does not exist (its partitions are answered with an error at once).
fn fetched_topics(
    state: &State,
    request: &FetchRequest,
    version: i16,
) -> Vec<Option<Arc<crate::topics::Topic>>> {
    let lookup = |wanted: &kafka_protocol::messages::fetch_request::FetchTopic| {
        if version >= 13 {
            state.topics.get_by_id(wanted.topic_id)
        } else {
            state.topics.get(&wanted.topic)
        }
    };
    request.topics.iter().map(lookup).collect()
}

/// [`fetch_once`] on the blocking pool, for a fetch whose batch headers are not all in the
/// page cache: a consumer far behind waits for the disk without holding up the other
/// connections of its async worker.
async fn fetch_from_disk(
    state: &Arc<State>,
    request: &FetchRequest,
    version: i16,
    topics: Vec<Option<Arc<crate::topics::Topic>>>,
) -> (Fetched, usize, bool) {
    let (reading, asked) = (Arc::clone(state), request.clone());
    let task = tokio::task::spawn_blocking(move || {
        fetch_once(&reading, &asked, version, &topics, Wait::ForDisk)
    });
    match task.await {
        Ok(Some(once)) => once,
        // `Wait::ForDisk` never answers `None`; a panic is a bug, logged once.
        Ok(None) | Err(_) => {
            tracing::error!("a fetch's read task failed: answering UNKNOWN_SERVER_ERROR");
            fetch_failed(request)
        }
    }
}

/// Every requested partition answered with UNKNOWN_SERVER_ERROR.
fn fetch_failed(request: &FetchRequest) -> (Fetched, usize, bool) {
    let error = ResponseError::UnknownServerError;
    let responses = request.topics.iter().map(|wanted| {
        FetchableTopicResponse::default()
            .with_topic(wanted.topic.clone())
            .with_topic_id(wanted.topic_id)
            .with_partitions(
                wanted.partitions.iter().map(|p| partition_error(p.partition, error)).collect(),
            )
    });
    let slices = request.topics.iter().map(|t| vec![None; t.partitions.len()]).collect();
    let response = FetchResponse::default().with_responses(responses.collect());
    (Fetched { response, slices }, 0, true)
}

/// Locates every requested partition's batches once: `(answer, bytes returned, any error)`.
/// `topics` are the request's topics as [`fetched_topics`] found them. `None` when `wait`
/// is [`Wait::CachedOnly`] and a batch header must come from the disk.
fn fetch_once(
    state: &State,
    request: &FetchRequest,
    version: i16,
    topics: &[Option<Arc<crate::topics::Topic>>],
    wait: Wait,
) -> Option<(Fetched, usize, bool)> {
    let asked = usize::try_from(request.max_bytes).unwrap_or(0);
    let mut remaining = asked.min(state.settings.fetch_bytes_max);
    let mut total = 0usize;
    let mut errors = false;
    let mut responses = Vec::with_capacity(request.topics.len());
    let mut slices = Vec::with_capacity(request.topics.len());
    for (wanted, topic) in request.topics.iter().zip(topics) {
        let unknown = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        let mut topic_slices = Vec::with_capacity(wanted.partitions.len());
        for p in &wanted.partitions {
            let partition = topic.as_ref().and_then(|t| t.partition(p.partition));
            let Some(partition) = partition else {
                errors = true;
                partitions.push(partition_error(p.partition, unknown));
                topic_slices.push(None);
                continue;
            };
            let (last_stable, high_watermark) = partition.stable_offsets();
            let read_committed = request.isolation_level == READ_COMMITTED;
            // read_committed consumers see only what is decided (KIP-98).
            let upper = if read_committed { last_stable } else { high_watermark };
            let log_start = partition.with_log(|log| log.log_start_offset());
            let limit = usize::try_from(p.partition_max_bytes).unwrap_or(0).min(remaining);
            // Only the first partition with data may return a batch larger than the limits
            // (KIP-74), so a consumer always makes progress; the others stay within them.
            let oversized_ok = total == 0;
            let located = if limit == 0 && !oversized_ok {
                Ok(None)
            } else {
                partition.slice_below(p.fetch_offset, limit.max(1), oversized_ok, upper, wait)
            };
            let mut slice = None;
            let data = match located {
                Err(sluice_log::Error::NotCached { .. }) => return None,
                // A Fetch older than v10 cannot carry zstd batches (KIP-110).
                Ok(Some(found)) if version < 10 && found.any_zstd => {
                    errors = true;
                    partition_error(p.partition, ResponseError::UnsupportedCompressionType)
                        .with_high_watermark(high_watermark)
                        .with_log_start_offset(log_start)
                }
                Ok(found) => {
                    let bytes = found.as_ref().map_or(0, |f| f.len);
                    remaining = remaining.saturating_sub(bytes);
                    total += bytes;
                    let aborted = read_committed.then(|| {
                        let end = found.as_ref().map_or(p.fetch_offset, |f| f.end_offset);
                        aborted_transactions(partition, p.fetch_offset, end)
                    });
                    slice = found;
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_high_watermark(high_watermark)
                        .with_last_stable_offset(last_stable)
                        .with_log_start_offset(log_start)
                        .with_aborted_transactions(aborted)
                        .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
                        .with_records(Some(Bytes::new()))
                }
                Err(error) => {
                    errors = true;
                    partition_error(p.partition, Error::Log(error).kafka_error())
                        .with_high_watermark(high_watermark)
                        .with_log_start_offset(log_start)
                }
            };
            topic_slices.push(slice);
            partitions.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(wanted.topic.clone())
                .with_topic_id(wanted.topic_id)
                .with_partitions(partitions),
        );
        slices.push(topic_slices);
    }
    let response = FetchResponse::default().with_responses(responses);
    Some((Fetched { response, slices }, total, errors))
}

/// `isolation_level` of a `read_committed` consumer.
const READ_COMMITTED: i8 = 1;

/// The aborted transactions among the fetched offsets `[from, end)`, for the consumer to
/// drop their records.
fn aborted_transactions(partition: &Partition, from: i64, end: i64) -> Vec<AbortedTransaction> {
    partition
        .with_log(|log| log.aborted_transactions(from, end))
        .into_iter()
        .map(|txn| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(txn.producer_id))
                .with_first_offset(txn.first_offset)
        })
        .collect()
}

fn partition_error(index: i32, error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(crate) fn list_offsets(
    state: &State,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // leader_epoch exists from v4; an older response must leave it at its default.
    let leader_epoch = if version >= 4 { 0 } else { -1 };
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = state.topics.get(&wanted.name);
            let partitions = wanted
                .partitions
                .into_iter()
                .map(|p| {
                    let found = topic.as_ref().and_then(|t| t.partition(p.partition_index));
                    let answer = match found {
                        None => Err(ResponseError::UnknownTopicOrPartition),
                        Some(partition) => {
                            offset_at(partition, p.timestamp, request.isolation_level)
                        }
                    };
                    match answer {
                        Ok((offset, timestamp)) => ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(leader_epoch),
                        Err(error) => ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(error.code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(wanted.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn offset_at(
    partition: &Partition,
    timestamp: i64,
    isolation_level: i8,
) -> std::result::Result<(i64, i64), ResponseError> {
    let (last_stable, high_watermark) = partition.stable_offsets();
    let latest = if isolation_level == READ_COMMITTED { last_stable } else { high_watermark };
    let found: Result<(i64, i64)> = partition.with_log(|log| match timestamp {
        LATEST => Ok((latest, -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((log.log_start_offset(), -1)),
        MAX_TIMESTAMP => {
            Ok(log.max_timestamp()?.map(|(ts, offset)| (offset, ts)).unwrap_or((-1, -1)))
        }
        ts if ts >= 0 => Ok(log.offset_for_timestamp(ts)?.unwrap_or((-1, -1))),
        _ => Err(Error::InvalidRequest(format!(
            "ListOffsets timestamp {timestamp} is not supported"
        ))),
    });
    found.map_err(|error| error.kafka_error())
}

pub(crate) fn delete_records(
    state: &State,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = state.topics.get(&wanted.name);
            let partitions = wanted
                .partitions
                .into_iter()
                .map(|p| {
                    let found = topic.as_ref().and_then(|t| t.partition(p.partition_index));
                    let result = match found {
                        None => Err(ResponseError::UnknownTopicOrPartition),
                        Some(partition) => {
                            let high_watermark = partition.high_watermark();
                            // -1 means "up to the high watermark".
                            let offset = if p.offset == -1 { high_watermark } else { p.offset };
                            if offset > high_watermark {
                                Err(ResponseError::OffsetOutOfRange)
                            } else {
                                partition
                                    .with_log(|log| log.delete_records_before(offset))
                                    .map_err(|e| Error::Log(e).kafka_error())
                            }
                        }
                    };
                    match result {
                        Ok(low_watermark) => DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(low_watermark),
                        Err(error) => DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1)
                            .with_error_code(error.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(wanted.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
