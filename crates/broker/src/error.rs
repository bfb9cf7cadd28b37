//! Broker errors, grouped by what the caller does next, and their Kafka error codes.
use kafka_protocol::ResponseError;

/// A broker error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is wrong; the message names it and says what to change.
    #[error("invalid config: {0}")]
    Config(String),
    /// The broker cannot serve now (data folder, listener, metadata store).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The topic does not exist.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A topic name Kafka would not accept.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// As given.
        name: String,
        /// Why.
        reason: String,
    },
    /// Replication factor above 1 on a single node.
    #[error("replication factor {0} is larger than the number of available brokers: 1. sluice is a single-node broker; use a replication factor of 1 (or -1 for the broker default). Scale out on Amazon MSK or Apache Kafka instead")]
    InvalidReplicationFactor(i16),
    /// A partition count that is not allowed.
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    /// A topic config name or value that is not allowed.
    #[error("invalid config {key} = {value:?}: {reason}")]
    InvalidConfig {
        /// The config name.
        key: String,
        /// As given.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// A limit would be exceeded.
    #[error("{what} limit {limit} reached; {hint}")]
    LimitExceeded {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: u64,
        /// What to change.
        hint: &'static str,
    },
    /// A malformed request field.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] sluice_log::Error),
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Store(String),
}

/// Broker result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The Kafka error this error is reported as. Exhaustive on purpose: a new variant does
    /// not compile until it is mapped.
    pub fn kafka_error(&self) -> ResponseError {
        use sluice_wire::BatchError;
        match self {
            Error::Config(_) | Error::InvalidConfig { .. } => ResponseError::InvalidConfig,
            Error::Unavailable(_) | Error::Store(_) => ResponseError::KafkaStorageError,
            Error::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            Error::TopicExists(_) => ResponseError::TopicAlreadyExists,
            Error::InvalidTopic { .. } => ResponseError::InvalidTopicException,
            Error::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            Error::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            Error::LimitExceeded { .. } => ResponseError::PolicyViolation,
            Error::InvalidRequest(_) => ResponseError::InvalidRequest,
            Error::Log(log) => match log {
                sluice_log::Error::Io { .. } => ResponseError::KafkaStorageError,
                sluice_log::Error::InvalidBatch(BatchError::TooLarge { .. }) => {
                    ResponseError::MessageTooLarge
                }
                // Kafka's record iterator throws InvalidRecordException for these: not
                // retriable, unlike CORRUPT_MESSAGE.
                sluice_log::Error::InvalidBatch(
                    BatchError::RecordsCountMismatch { .. }
                    | BatchError::MalformedRecords { .. }
                    | BatchError::Decompression { .. },
                ) => ResponseError::InvalidRecord,
                sluice_log::Error::InvalidBatch(BatchError::UnknownCompression { .. }) => {
                    ResponseError::UnsupportedCompressionType
                }
                // The batch was fine; the broker could not rewrite it.
                sluice_log::Error::InvalidBatch(BatchError::Recompression { .. }) => {
                    ResponseError::UnknownServerError
                }
                sluice_log::Error::InvalidBatch(_) => ResponseError::CorruptMessage,
                sluice_log::Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
                sluice_log::Error::LimitExceeded { .. } => ResponseError::PolicyViolation,
                sluice_log::Error::Config { .. } => ResponseError::InvalidConfig,
                sluice_log::Error::OutOfOrderSequence { .. } => {
                    ResponseError::OutOfOrderSequenceNumber
                }
                sluice_log::Error::InvalidProducerEpoch { .. } => {
                    ResponseError::InvalidProducerEpoch
                }
                sluice_log::Error::InvalidRecord { .. }
                | sluice_log::Error::KeylessRecords { .. } => ResponseError::InvalidRecord,
                sluice_log::Error::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
                _ => ResponseError::UnknownServerError,
            },
        }
    }

    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        self.kafka_error().code()
    }
}
