//! Wire errors, grouped by what the broker does next: answer with an error code, or close.

/// A request that cannot be served as sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The size prefix is negative or zero: nothing sensible can follow; close.
    #[error("frame size {value} is not positive; the stream is not speaking Kafka")]
    FrameSizeInvalid {
        /// The size as read.
        value: i32,
    },
    /// The frame is larger than `socket.request.max.bytes`; close.
    #[error("frame of {value} bytes exceeds socket.request.max.bytes = {limit}; raise it or send smaller requests")]
    FrameTooLarge {
        /// The configured limit.
        limit: u32,
        /// The size prefix as read.
        value: u32,
    },
    /// The request header is cut short; close.
    #[error("request header truncated: {reason}")]
    HeaderTruncated {
        /// What was missing.
        reason: &'static str,
    },
    /// An API key sluice does not serve; Kafka closes the connection.
    #[error("unknown or unsupported api key {api_key}")]
    UnknownApiKey {
        /// The key as sent.
        api_key: i16,
        /// The correlation id, for the log.
        correlation_id: i32,
    },
    /// A version outside the advertised range.
    #[error("api key {api_key} version {version} is outside the supported range {min}..={max}")]
    UnsupportedVersion {
        /// The key as sent.
        api_key: i16,
        /// The version as sent.
        version: i16,
        /// Lowest supported version.
        min: i16,
        /// Highest supported version.
        max: i16,
        /// The correlation id, to answer ApiVersions (KIP-511).
        correlation_id: i32,
    },
    /// The body does not decode at the version the header names.
    #[error("api key {api_key} version {version}: malformed body: {reason}")]
    Malformed {
        /// The key as sent.
        api_key: i16,
        /// The version as sent.
        version: i16,
        /// The decoder's complaint.
        reason: String,
        /// The correlation id, for the log.
        correlation_id: i32,
    },
    /// The response could not be encoded (a bug or an unencodable value).
    #[error("cannot encode response for api key {api_key} version {version}: {reason}")]
    Encode {
        /// The key.
        api_key: i16,
        /// The version.
        version: i16,
        /// The encoder's complaint.
        reason: String,
    },
}

/// A record batch that must be rejected; maps to CORRUPT_MESSAGE (2) unless noted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than the header or the stated length.
    #[error("record batch truncated: needs {needed} bytes, has {remaining}")]
    Truncated {
        /// Bytes required.
        needed: usize,
        /// Bytes present.
        remaining: usize,
    },
    /// `batchLength` below the header size.
    #[error("record batch length {value} is below the minimum {min}")]
    LengthTooSmall {
        /// As read.
        value: i32,
        /// The minimum.
        min: i32,
    },
    /// Only magic v2 batches are stored (Kafka 4 dropped v0/v1; KIP-896).
    #[error("record batch magic {value} is not supported; use a client that writes magic v2 (Kafka >= 0.11)")]
    UnsupportedMagic {
        /// As read.
        value: i8,
    },
    /// The CRC32C over attributes..end does not match.
    #[error("record batch crc mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch {
        /// From the header.
        expected: u32,
        /// Computed.
        actual: u32,
    },
    /// `recordsCount` is not positive or disagrees with `lastOffsetDelta`.
    #[error("record batch has records count {count} and last offset delta {last_offset_delta}; expected count = delta + 1 >= 1")]
    CountMismatch {
        /// As read.
        count: i32,
        /// As read.
        last_offset_delta: i32,
    },
    /// A batch's records do not add up to `recordsCount`; maps to INVALID_RECORD (87).
    #[error("record batch declares {declared} records but holds {found}; the producer wrote a malformed batch")]
    RecordsCountMismatch {
        /// `recordsCount` as read.
        declared: i32,
        /// Records found by walking their length prefixes (the walk stops one past
        /// `declared`).
        found: i64,
    },
    /// A batch's records cannot be walked; maps to INVALID_RECORD (87).
    #[error("record batch declaring {declared} records is malformed: {reason}")]
    MalformedRecords {
        /// What is wrong.
        reason: &'static str,
        /// `recordsCount` as read.
        declared: i32,
    },
    /// Attribute bits 0..=2 name no codec (5..=7); maps to UNSUPPORTED_COMPRESSION_TYPE (76).
    #[error("record batch compression id {id} is none of none (0), gzip (1), snappy (2), lz4 (3), zstd (4)")]
    UnknownCompression {
        /// The id as read.
        id: i16,
    },
    /// A compressed batch's records do not decompress; maps to INVALID_RECORD (87).
    #[error("record batch compressed with {codec} does not decompress: {reason}")]
    Decompression {
        /// The batch's codec.
        codec: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// The batch is larger than `max.message.bytes`; maps to MESSAGE_TOO_LARGE (10).
    #[error("record batch of {value} bytes exceeds max.message.bytes = {limit}")]
    TooLarge {
        /// The topic's limit.
        limit: u32,
        /// The batch size.
        value: usize,
    },
    /// The records could not be compressed in the topic's `compression.type`; maps to
    /// UNKNOWN_SERVER_ERROR (the batch was fine).
    #[error("could not recompress the records with {codec}: {reason}")]
    Recompression {
        /// The topic's codec.
        codec: &'static str,
        /// The encoder's complaint.
        reason: String,
    },
    /// The records inside a stored batch do not decode (or decompress).
    #[error("record batch records do not decode: {reason}")]
    Undecodable {
        /// The decoder's complaint.
        reason: String,
    },
    /// No records at all in the partition data.
    #[error("produce request carries no record batch")]
    Empty,
}
