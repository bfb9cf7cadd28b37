//! Every limit of the functions crate, with the reason for its value. Where Lambda has the
//! same limit, the value is Lambda's, so a function that works here works there.

/// Lambda's BatchSize range for Kafka event source mappings.
pub const BATCH_SIZE_MAX: usize = 10_000;
/// Lambda's default BatchSize for Kafka sources.
pub const BATCH_SIZE_DEFAULT: usize = 100;

/// Lambda's MaximumBatchingWindowInSeconds range.
pub const BATCHING_WINDOW_SECS_MAX: f64 = 300.0;
/// Lambda's default batching window for Kafka sources: 500 ms.
pub const BATCHING_WINDOW_MS_DEFAULT: u64 = 500;

/// Lambda's payload limit for a synchronous invocation, request and response alike: 6 MB.
pub const PAYLOAD_BYTES_MAX: usize = 6 * 1024 * 1024;

/// Lambda's function timeout range, seconds.
pub const TIMEOUT_SECS_MAX: u64 = 900;
/// The default timeout the consumer-functions issue asks for (Lambda's own default is 3 s,
/// which a batch of 100 records through a cold process can miss).
pub const TIMEOUT_SECS_DEFAULT: u64 = 300;

/// Lambda's MaximumRetryAttempts range (-1 is "until success").
pub const RETRY_ATTEMPTS_MAX: i64 = 10_000;
/// With an on-failure destination, "retry forever" becomes this many retries, as Lambda
/// does for Kafka sources.
pub const RETRY_ATTEMPTS_WITH_DESTINATION: u32 = 10;

/// Lambda's MaximumRecordAgeInSeconds range (-1 is "never too old").
pub const RECORD_AGE_SECS_MIN: i64 = 60;
/// The upper bound of MaximumRecordAgeInSeconds: 7 days.
pub const RECORD_AGE_SECS_MAX: i64 = 604_800;

/// Lambda's memory range, MB; only reported to the handler (AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
pub const MEMORY_MB_MIN: u32 = 128;
/// The upper bound of the memory setting, MB.
pub const MEMORY_MB_MAX: u32 = 10_240;
/// Lambda's default memory, MB.
pub const MEMORY_MB_DEFAULT: u32 = 128;

/// Batches in flight at once per function (partitions in parallel) by default.
pub const CONCURRENCY_DEFAULT: usize = 10;
/// The most batches in flight per function: each may hold a handler process.
pub const CONCURRENCY_MAX: usize = 1_000;

/// Records buffered per partition before the partition is paused: two full batches keep
/// the next batch ready while one is in flight, and bound memory to two payloads.
pub const BUFFERED_BATCHES_PER_PARTITION: usize = 2;

/// Backoff between retries of a failed batch: doubling from the first to the last.
pub const RETRY_BACKOFF_MS_FIRST: u64 = 100;
/// The longest wait between retries.
pub const RETRY_BACKOFF_MS_MAX: u64 = 10_000;

/// The most bytes of a handler's stderr or a command's stdout kept per invocation for the
/// function's log; the rest is cut with a note.
pub const HANDLER_OUTPUT_BYTES_MAX: usize = PAYLOAD_BYTES_MAX + 1;

/// Filters per function (Lambda's limit with a raised quota; 5 by default).
pub const FILTERS_MAX: usize = 10;
/// Bytes of one filter pattern (Lambda's Pattern length).
pub const FILTER_PATTERN_BYTES_MAX: usize = 4096;

/// A function name's length, as Lambda's FunctionName (64 characters).
pub const FUNCTION_NAME_BYTES_MAX: usize = 64;
