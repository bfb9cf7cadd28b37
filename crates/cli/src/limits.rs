//! Every limit and timeout of the `sluice` binary, each with the reason for its value.
//!
//! Client timeouts bound how long a command waits on a broker that is down or slow; input
//! limits bound memory on hostile or mistaken input (a binary file piped into `produce`).

/// A properties or solution file is a few kilobytes; a bigger one is a mistaken path.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// One console-producer line becomes one record; librdkafka's default `message.max.bytes`
/// is 1 MB, so 16 MiB leaves room for a raised broker limit without unbounded buffering.
pub const LINE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Records handed to librdkafka but not yet acknowledged; bounds the delivery futures we
/// hold (librdkafka bounds its own queue with `queue.buffering.max.messages`).
pub const SENDS_IN_FLIGHT_MAX: usize = 10_000;

/// Kafka's `request.timeout.ms` default for admin requests (create, delete, alter, describe).
pub const ADMIN_REQUEST_TIMEOUT_MS: u64 = 30_000;

/// How long a metadata request may take before the broker counts as unreachable.
pub const METADATA_TIMEOUT_MS: u64 = 10_000;

/// How long `rd_kafka_clusterid` and `rd_kafka_controllerid` wait for metadata.
pub const CLUSTER_INFO_TIMEOUT_MS: i32 = 10_000;

/// How long a producer waits at exit for outstanding records; librdkafka's default
/// `message.timeout.ms` (300 s) would hang too long at a terminal, so one minute.
pub const FLUSH_TIMEOUT_MS: u64 = 60_000;

/// How long one consumer poll blocks, so Ctrl-C and `--timeout-ms` are noticed promptly.
pub const POLL_INTERVAL_MS: u64 = 100;

/// Records drained without blocking after the first of a verifiable-consumer poll; one
/// such batch is one `records_consumed` event, like one Java `poll()` (`max.poll.records`).
pub const POLL_RECORDS_MAX: usize = 500;

/// Delivery errors printed one by one before the rest are only counted.
pub const DELIVERY_ERRORS_PRINTED_MAX: u64 = 10;

/// Kafka's limit on topic name length (`Topic.MAX_NAME_LENGTH`).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Partitions one solution-file topic may declare; far above any local use, low enough to
/// catch a typo (an extra zero or two) before the broker allocates files for them.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// Where the AWS-compatible API (Firehose) listens by default: LocalStack's port, so code
/// written for LocalStack finds sluice where it expects it.
pub const AWS_API_LISTEN_DEFAULT: &str = "127.0.0.1:4566";

/// Requests the AWS-compatible API handles at once; more wait (each PutRecordBatch holds
/// up to 4 MiB of records while its producer sends them).
pub const AWS_API_REQUESTS_IN_FLIGHT_MAX: usize = 64;
