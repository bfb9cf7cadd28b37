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
