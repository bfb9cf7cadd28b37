//! The delivery crate's errors, grouped by what the caller does next.
//!
//! A record that cannot be delivered (broken JSON under Parquet conversion, say) is not an
//! [`Error`]: it goes to the error prefix and the stream keeps going. An object store that
//! is down is not one either: publishing is retried until it works. These are the errors
//! that stop a stream: bad configuration and a Kafka client that cannot start.

/// What can stop a delivery stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range or malformed: change the solution file.
    #[error("delivery stream {stream}: {setting} = {value} is invalid: {reason}")]
    InvalidConfig {
        /// The stream's name.
        stream: String,
        /// The setting, as written in the solution file.
        setting: String,
        /// The value as written.
        value: String,
        /// What to change.
        reason: String,
    },
    /// The Kafka client failed: check the bootstrap servers and the cluster.
    #[cfg(feature = "kafka")]
    #[error("delivery stream {stream}: Kafka client error: {source}")]
    Kafka {
        /// The stream's name.
        stream: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The destination cannot be opened (an unknown URL scheme, missing credentials).
    #[error("delivery stream {stream}: destination {url}: {source}")]
    Destination {
        /// The stream's name.
        stream: String,
        /// The destination URL.
        url: String,
        /// object_store's error.
        #[source]
        source: object_store::Error,
    },
    /// A local resource (a port, a folder) is not available.
    #[error("delivery stream {stream}: {what}: {source}")]
    Io {
        /// The stream's name.
        stream: String,
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
