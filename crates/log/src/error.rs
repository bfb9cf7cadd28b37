//! Log errors, grouped by what the caller does next.
use std::path::PathBuf;

use sluice_wire::BatchError;

/// A log error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed (full disk, permissions, ...): KAFKA_STORAGE_ERROR.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A batch in a produce request was rejected: CORRUPT_MESSAGE or MESSAGE_TOO_LARGE.
    #[error(transparent)]
    InvalidBatch(#[from] BatchError),
    /// The offset is outside `[log_start, log_end]`: OFFSET_OUT_OF_RANGE.
    #[error("offset {offset} is outside the log's range {log_start}..={log_end}")]
    OffsetOutOfRange {
        /// Requested.
        offset: i64,
        /// First readable offset.
        log_start: i64,
        /// Offset after the last record.
        log_end: i64,
    },
    /// An idempotent batch skips or repeats sequence numbers: OUT_OF_ORDER_SEQUENCE_NUMBER.
    #[error(
        "producer {producer_id} (epoch {epoch}) sent sequence {got}, expected {expected}: \
         a batch was lost or reordered; the producer must reset its sequence"
    )]
    OutOfOrderSequence {
        /// The producer.
        producer_id: i64,
        /// Its epoch in the batch.
        epoch: i16,
        /// The sequence that would follow.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
    /// A batch from an epoch older than the producer's current one: INVALID_PRODUCER_EPOCH.
    #[error(
        "producer {producer_id} sent epoch {epoch} but its current epoch is {current_epoch}: \
         a newer instance of this producer has fenced it"
    )]
    InvalidProducerEpoch {
        /// The producer.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The epoch in the partition's state.
        current_epoch: i16,
    },
    /// A compacted topic was sent records without a key: INVALID_RECORD, with the records
    /// named in `record_errors` (KIP-467).
    #[error(
        "Compacted topic cannot accept message without key: {} record(s), the first at \
         index {}; give every record a key or produce to a topic without cleanup.policy=compact",
        indexes.len(),
        indexes.first().copied().unwrap_or_default()
    )]
    KeylessRecords {
        /// The records' indexes, counted across the request's batches for the partition.
        indexes: Vec<i32>,
    },
    /// A batch is well-formed but not acceptable here: INVALID_RECORD.
    #[error("invalid record: {reason}")]
    InvalidRecord {
        /// What is wrong and what to change.
        reason: String,
    },
    /// A record's timestamp is too far from the broker's clock (CreateTime topics, KIP-937):
    /// INVALID_TIMESTAMP.
    #[error(
        "timestamp {timestamp} of the batch at index {batch_index} is out of range: it must be \
         within [{earliest}, {latest}] (now minus message.timestamp.before.max.ms, now plus \
         message.timestamp.after.max.ms); fix the producer's clock or timestamps, or raise \
         those topic configs"
    )]
    InvalidTimestamp {
        /// The offending timestamp.
        timestamp: i64,
        /// The batch's index in the request.
        batch_index: usize,
        /// The earliest timestamp accepted now.
        earliest: i64,
        /// The latest timestamp accepted now.
        latest: i64,
    },
    /// A limit would be exceeded.
    #[error("{what} limit {limit} exceeded by {value}; {hint}")]
    LimitExceeded {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: u64,
        /// The value that was too big.
        value: u64,
        /// What to change.
        hint: &'static str,
    },
    /// A read allowed only what the page cache holds ([`crate::Wait::CachedOnly`]) needs
    /// the disk: read again where waiting is allowed. Never a client's error.
    #[error("{path}: bytes at {position} are not in the page cache; read them where waiting for the disk is allowed")]
    NotCached {
        /// The file.
        path: PathBuf,
        /// Where the read started.
        position: u64,
    },
    /// A setting is invalid.
    #[error("invalid log setting {key} = {value}: {reason}")]
    Config {
        /// Kafka's name for it.
        key: &'static str,
        /// As given.
        value: String,
        /// What is allowed.
        reason: String,
    },
}

/// Log result.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
