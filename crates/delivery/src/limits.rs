//! Every limit of the delivery crate, with the reason for its value. Where Firehose has the
//! same limit, the value is Firehose's, so a stream that works here works there.

/// Firehose's `SizeInMBs` range for S3 destinations.
pub const SIZE_IN_MBS_MIN: u64 = 1;
/// The upper bound of `SizeInMBs` (Firehose allows 128 MiB).
pub const SIZE_IN_MBS_MAX: u64 = 128;
/// Firehose's default `SizeInMBs`, and the seed's.
pub const SIZE_IN_MBS_DEFAULT: u64 = 5;

/// Firehose's `IntervalInSeconds` range (0 since 2023: deliver as soon as possible).
pub const INTERVAL_SECS_MAX: u64 = 900;
/// Firehose's default `IntervalInSeconds`, and the seed's.
pub const INTERVAL_SECS_DEFAULT: u64 = 300;

/// A delivery stream name's length, as Firehose's DeliveryStreamName (1 to 64).
pub const STREAM_NAME_BYTES_MAX: usize = 64;
/// A custom prefix's length (Firehose's Prefix, 0 to 1024).
pub const PREFIX_BYTES_MAX: usize = 1024;
/// Dynamic-partitioning keys per stream (Firehose allows 50).
pub const PARTITION_KEYS_MAX: usize = 50;
/// Bytes of one partition-key value; a longer value is a processing failure (Firehose
/// fails records whose partition key makes the S3 key exceed its limits).
pub const PARTITION_KEY_VALUE_BYTES_MAX: usize = 512;
/// Output prefixes open at once per source partition: each holds a buffer, so this bounds
/// memory under dynamic partitioning (Firehose allows 500 active partitions per stream).
pub const OPEN_PREFIXES_PER_PARTITION_MAX: usize = 500;
/// Columns of a record-format-conversion schema.
pub const SCHEMA_COLUMNS_MAX: usize = 1_000;

/// PutRecordBatch: records per call.
pub const PUT_BATCH_RECORDS_MAX: usize = 500;
/// PutRecordBatch: bytes of data per call (4 MiB).
pub const PUT_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// PutRecord(Batch): bytes of one record before base64 (1,000 KiB).
pub const PUT_RECORD_BYTES_MAX: usize = 1_000 * 1024;
/// Bytes of one Firehose API request body: a full batch in base64 plus JSON framing.
pub const API_REQUEST_BYTES_MAX: usize = PUT_BATCH_BYTES_MAX / 3 * 4 + 1024 * 1024;
/// ListDeliveryStreams: the most names per page (Firehose's `Limit` range is 1 to 10000).
pub const LIST_LIMIT_MAX: usize = 10_000;
/// ListDeliveryStreams: names per page when `Limit` is not given (Firehose's default).
pub const LIST_LIMIT_DEFAULT: usize = 10;

/// Rounds a partition may buffer while its previous round is being published, before the
/// partition is paused: consuming continues during a publish, and memory stays bounded by
/// twice the buffering hints rather than by the backlog.
pub const ROUNDS_BUFFERED_MAX: u64 = 2;

/// Backoff between attempts to publish an object or commit an offset: doubling from the
/// first to the last, forever (an object store outage never drops data).
pub const RETRY_BACKOFF_MS_FIRST: u64 = 100;
/// The longest wait between attempts.
pub const RETRY_BACKOFF_MS_MAX: u64 = 10_000;

/// The block size of HADOOP_SNAPPY output: Hadoop's default `io.compression.codec.snappy
/// .buffersize` (256 KiB).
pub const HADOOP_SNAPPY_BLOCK_BYTES: usize = 256 * 1024;
