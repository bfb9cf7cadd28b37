//! The functions crate's errors, grouped by what the caller does next.
//!
//! A failed *invocation* is not an [`Error`]: it is an [`crate::handler::Failure`] that the
//! retry policy handles. These are the errors that stop a function: bad configuration, a
//! Kafka client that cannot be created, a handler process that cannot be started.

/// What can stop a function.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range or malformed: change the solution file.
    #[error("function {function}: {setting} = {value} is invalid: {reason}")]
    InvalidConfig {
        /// The function's name.
        function: String,
        /// The setting, as written in the solution file.
        setting: String,
        /// The value as written.
        value: String,
        /// What to change.
        reason: String,
    },
    /// The Kafka client failed: check the bootstrap servers and the cluster.
    #[error("function {function}: Kafka client error: {source}")]
    Kafka {
        /// The function's name.
        function: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The handler cannot run at all (its program is missing, say): fix the handler.
    #[error("function {function}: {message}")]
    Handler {
        /// The function's name.
        function: String,
        /// What happened and what to change.
        message: String,
    },
    /// A local resource (a port, a log file) is not available.
    #[error("function {function}: {what}: {source}")]
    Io {
        /// The function's name.
        function: String,
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
