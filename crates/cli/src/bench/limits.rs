//! Every size, count and timeout of `sluice bench`, each with the reason for its value.
//!
//! They live here rather than in the binary's `limits.rs` because only the benchmark uses
//! them, and none bounds input: they bound how long and how much a benchmark run writes.

use super::consume::FetchBytes;

/// One MiB, the unit every bandwidth is reported in.
pub const MIB: u64 = 1024 * 1024;

/// The default payload each produce run sends: the acceptance asks for RSS after 1 GB.
pub const PRODUCE_BYTES_DEFAULT: u64 = 1024 * MIB;

/// The default record payload: the acceptance measures 1 KiB records.
pub const RECORD_BYTES_DEFAULT: usize = 1024;

/// The largest record payload: the broker's `message.max.bytes` (1048588) less room for the
/// batch header and record framing.
pub const RECORD_BYTES_MAX: usize = 1_000_000;

/// Bytes the naive disk run writes: 256 appends of 1 MiB, each followed by fdatasync, is
/// enough to average out the device's write cache without taking more than a few seconds.
pub const DISK_NAIVE_BYTES: u64 = 256 * MIB;

/// Naive disk runs; the best is the limit. Three take about a second here and make one
/// run slowed by background writeback harmless.
pub const DISK_NAIVE_REPEATS: usize = 3;

/// One write of the naive disk run, and the unit of "fsync-per-MiB bandwidth".
pub const DISK_NAIVE_WRITE_BYTES: usize = 1024 * 1024;

/// Bytes the fresh-memory disk run appends to one file it keeps until the end: as much as
/// two produce runs' logs. A growing log needs a new page-cache page for every page it
/// writes; a VM that hands freed memory back to its host (free page reporting) keeps only a
/// pool of recently freed memory (about 512 MiB here) and faults every page beyond it in
/// from the host. 2 GiB outgrows such a pool by far, in about 7 s here.
pub const DISK_FRESH_BYTES: u64 = 2048 * MIB;

/// The fresh-memory run's bandwidth is measured per chunk of this many bytes; the limit is
/// the best chunk of the second half, written after the run outgrew any pool of freed memory.
pub const DISK_FRESH_CHUNK_BYTES: u64 = 256 * MIB;

/// `--fill-page-cache` writes this much more than the free memory, so the kernel is
/// reclaiming cache by the end of the fill and the runs after it find no free memory left.
pub const PAGE_CACHE_FILL_MARGIN_BYTES: u64 = 512 * MIB;

/// Produce runs of `bench broker` that write up to `--bytes` each (seven through librdkafka,
/// five through the wire client): the disk room `--fill-page-cache` must leave for them.
pub const PAGE_CACHE_FILL_RUNS: u64 = 12;

/// Room `--fill-page-cache` leaves on the filesystem beyond the fill and the runs: the
/// broker's segment files round up, and the disk probes write beside it.
pub const PAGE_CACHE_FILL_SPARE_DISK_BYTES: u64 = 4096 * MIB;

/// One write of the fsync-cost run: a page, so the sync cost is not hidden behind data.
pub const DISK_SYNC_WRITE_BYTES: usize = 4096;

/// Syncs in the fsync-cost run: enough for a p99 that is not the maximum (200 samples make
/// the p99 the second-largest).
pub const DISK_SYNC_COUNT: usize = 200;

/// The loopback run stops after this many bytes...
pub const LOOPBACK_BYTES_MAX: u64 = 4096 * MIB;

/// ...or after this long, whichever comes first, so a slow machine still finishes quickly.
pub const LOOPBACK_SECS_MAX: u64 = 5;

/// Loopback runs; the best is the limit, as for the disk: a limit measured low would flatter
/// every ratio to it (one run moved between 3040 and 4990 MiB/s within an hour here).
pub const LOOPBACK_REPEATS: usize = 3;

/// One write (and one read buffer) of the loopback run.
pub const LOOPBACK_WRITE_BYTES: usize = 1024 * 1024;

/// Partitions of the benchmark topic: one per producer of the parallel run.
pub const TOPIC_PARTITIONS: i32 = 8;

/// Producers of the parallel run, as the acceptance asks.
pub const PARALLEL_PRODUCERS: usize = 8;

/// The latency run produces at this fraction of the single producer's throughput.
pub const LATENCY_LOAD_FRACTION: f64 = 0.5;

/// How long the rate-limited latency run lasts: ten seconds of records give a p99 over
/// thousands of batches at any realistic rate.
pub const LATENCY_RUN_SECS: u64 = 10;

/// librdkafka's `linger.ms`, as the benchmark brief fixes it.
pub const PRODUCER_LINGER_MS: u64 = 5;

/// librdkafka's `batch.size`: its default, just under the broker's `message.max.bytes`.
pub const PRODUCER_BATCH_BYTES: u64 = 1_000_000;

/// librdkafka's `batch.num.messages`: its default; `batch.size` binds first for 1 KiB.
pub const PRODUCER_BATCH_RECORDS: u64 = 10_000;

/// librdkafka's `queue.buffering.max.kbytes` per producer: 32 MiB keeps several full
/// requests in flight, while the default (1 GiB) would make the closed-loop latency mostly
/// time spent queued in the client.
pub const PRODUCER_QUEUE_KIB: u64 = 32 * 1024;

/// How long a producer waits at the end for its last delivery reports.
pub const PRODUCER_FLUSH_TIMEOUT_SECS: u64 = 120;

/// How long a send sleeps when librdkafka's queue is full, the pacing tick of the latency
/// run, and the step of the wait for the last delivery reports.
pub const PRODUCER_TICK_MS: u64 = 1;

/// The consume run's fetch sizes: Kafka's defaults (`fetch.max.bytes` 50 MiB,
/// `max.partition.fetch.bytes` 1 MiB), the least tuned choice; with 8 partitions a fetch
/// carries up to 8 MiB.
pub const CONSUMER_FETCH_DEFAULT: FetchBytes =
    FetchBytes { total_max: 50 * MIB, partition_max: MIB };

/// The second consume run's fetch sizes: 64 MiB fetches of up to 8 MiB per partition, to
/// show what large fetches cost the broker in memory and speed.
pub const CONSUMER_FETCH_LARGE: FetchBytes =
    FetchBytes { total_max: 64 * MIB, partition_max: 8 * MIB };

/// librdkafka's default `receive.message.max.bytes`, which the consumer keeps; librdkafka
/// refuses a `fetch.max.bytes` within 512 bytes of it.
pub const CONSUMER_RECEIVE_BYTES_MAX: u64 = 100_000_000;

/// How long one consumer poll blocks when no record is buffered; short against
/// `CONSUMER_IDLE_SECS_MAX`, so a stuck broker is noticed promptly.
pub const CONSUMER_POLL_MS: u64 = 100;

/// The consume run fails if no record arrives for this long: the broker is stuck.
pub const CONSUMER_IDLE_SECS_MAX: u64 = 30;

/// How long the broker may take to print its listening line.
pub const BROKER_START_SECS_MAX: u64 = 30;

/// How long the broker sits after start before its idle RSS is read, so start-up
/// allocations that are freed again are not counted.
pub const BROKER_IDLE_SETTLE_MS: u64 = 1000;

/// Timeout of the admin and metadata requests that set the benchmark up.
pub const ADMIN_TIMEOUT_SECS: u64 = 30;

/// Acceptance target: durable produce at least this multiple of naive fsync-per-MiB bandwidth.
pub const TARGET_PRODUCE_RATIO_MIN: f64 = 1.0;

/// Idempotent produce must be within 10% of plain produce (the Kafka-parity issue).
pub const TARGET_IDEMPOTENT_RATIO_MIN: f64 = 0.9;

/// Transactional produce must be within 50% of plain produce (the Kafka-parity issue).
pub const TARGET_TRANSACTIONAL_RATIO_MIN: f64 = 0.5;

/// Records per transaction in the transactional run, as the Kafka-parity issue fixes it.
pub const TRANSACTION_RECORDS: u64 = 100;

/// Seconds of each disk run in a transaction's pattern (`disk::transactions`): long enough
/// for thousands of transactions, short next to the broker runs it is compared with.
pub const DISK_TRANSACTIONS_SECS: f64 = 3.0;

/// Acceptance target: p99 produce latency at half load at most this multiple of one fsync.
pub const TARGET_LATENCY_RATIO_MAX: f64 = 2.0;

/// Acceptance target: consume at least this fraction of loopback bandwidth.
pub const TARGET_CONSUME_RATIO_MIN: f64 = 0.6;

/// Acceptance target: broker RSS when idle, in bytes (30 MB).
pub const TARGET_RSS_IDLE_BYTES_MAX: u64 = 30_000_000;

/// Acceptance target: broker RSS after 1 GB produced, in bytes (200 MB).
pub const TARGET_RSS_LOADED_BYTES_MAX: u64 = 200_000_000;

const _: () = assert!(CONSUMER_FETCH_DEFAULT.total_max + 512 <= CONSUMER_RECEIVE_BYTES_MAX);
const _: () = assert!(CONSUMER_FETCH_LARGE.total_max + 512 <= CONSUMER_RECEIVE_BYTES_MAX);
const _: () = assert!(CONSUMER_FETCH_DEFAULT.partition_max <= CONSUMER_FETCH_DEFAULT.total_max);
const _: () = assert!(CONSUMER_FETCH_LARGE.partition_max <= CONSUMER_FETCH_LARGE.total_max);
// The naive run writes whole chunks only, so its byte count is exact. (Not `%`: clippy
// wants `is_multiple_of`, which is newer than the workspace's rust-version.)
const _: () = assert!(
    DISK_NAIVE_BYTES / DISK_NAIVE_WRITE_BYTES as u64 * DISK_NAIVE_WRITE_BYTES as u64
        == DISK_NAIVE_BYTES
);
const _: () = assert!(
    DISK_FRESH_BYTES / DISK_FRESH_CHUNK_BYTES * DISK_FRESH_CHUNK_BYTES == DISK_FRESH_BYTES
        && DISK_FRESH_CHUNK_BYTES / DISK_NAIVE_WRITE_BYTES as u64 * DISK_NAIVE_WRITE_BYTES as u64
            == DISK_FRESH_CHUNK_BYTES
        && DISK_FRESH_BYTES / DISK_FRESH_CHUNK_BYTES >= 2
);
const _: () = assert!(RECORD_BYTES_DEFAULT <= RECORD_BYTES_MAX);

/// Partitions of the rebalance run's topic: two per member of a group of three.
pub const REBALANCE_PARTITIONS: i32 = 6;

/// Joins timed right after the group settled (the median is reported).
pub const REBALANCE_TRIALS_SETTLED: usize = 3;

/// Joins timed at random moments (the median and the slowest are reported).
pub const REBALANCE_TRIALS_RANDOM: usize = 9;

/// Acceptance target: a 3-member group rebalance (one joins) settles within this, seconds.
pub const TARGET_REBALANCE_SECS_MAX: f64 = 1.0;

/// Records per batch of the wire producer (one batch per partition per request): 128 KiB of
/// 1 KiB records, 1 MiB per request over 8 partitions, about what librdkafka's linger
/// gathers at these rates.
pub const WIRE_BATCH_RECORDS: usize = 128;

/// Produce requests in flight per wire connection: the Java client's default
/// `max.in.flight.requests.per.connection`.
pub const WIRE_IN_FLIGHT: usize = 5;

/// `max_wait_ms` of the wire consumer's fetches (Kafka's default `fetch.max.wait.ms`).
pub const WIRE_FETCH_WAIT_MS: i32 = 500;

/// Long-polling fetches left waiting, on a topic nothing writes, during one more
/// 1-connection wire produce run: what a broker with idle consumers carries. Before
/// 2026-11-29 every produce woke every one of them.
pub const WIRE_WAITING_FETCHES: usize = 256;

/// Partitions of that topic (the fetches spread over them, 4 per partition).
pub const WIRE_WAITING_PARTITIONS: i32 = 64;

/// `max_wait_ms` of those fetches: the broker's cap, longer than the run, so they wait
/// throughout.
pub const WIRE_WAITING_FETCH_WAIT_MS: i32 = 30_000;

/// The largest response the wire client reads: a Fetch is capped at 50 MiB plus framing.
pub const WIRE_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Value bytes per record in the function benchmark's events: a small JSON event's size.
pub const FUNCTION_RECORD_BYTES: usize = 256;

/// Seconds each function benchmark run lasts.
pub const FUNCTION_RUN_SECS: u64 = 3;

/// Target: invocations per second at batch 1 through the Runtime API.
pub const TARGET_FUNCTION_INVOCATIONS_PER_S: f64 = 2_000.0;

/// Target: records per second at batch 100 through the Runtime API.
pub const TARGET_FUNCTION_RECORDS_PER_S: f64 = 200_000.0;

/// The topic backlog `bench delivery` drains: large against the 5 MiB buffering hint, so
/// memory that grew with the backlog would show.
pub const DELIVERY_BACKLOG_BYTES: u64 = 256 * MIB;
/// Bytes of one JSON event of `bench delivery`: a typical clickstream record.
pub const DELIVERY_RECORD_BYTES: usize = 300;
/// The longest `bench delivery` may take before it is called stalled.
pub const DELIVERY_SECS_MAX: u64 = 600;
/// `bench delivery`'s target: topic-to-objects speed as a fraction of one core's gzip.
pub const TARGET_DELIVERY_GZIP_FRACTION: f64 = 0.8;

/// Produce validation of compressed batches against one core only decompressing them: ours,
/// not the issue's. The walk over the records should cost a fraction of the decompression.
pub const TARGET_VALIDATE_FRACTION: f64 = 0.8;

/// Produce validation of uncompressed batches against one core only computing their CRC32C:
/// ours. The walk is a second pass over the same bytes (the CRC is needed anyway, and Kafka
/// walks too), so 0.5x says the walk costs no more than the CRC.
pub const TARGET_VALIDATE_UNCOMPRESSED_FRACTION: f64 = 0.5;

/// Batches per pass of `sluice bench validate` (about 56 MiB uncompressed).
pub const VALIDATE_BATCHES: usize = 64;

/// Records per batch of `sluice bench validate`: about 880 KiB, under Kafka's default
/// `max.message.bytes` (1 MiB) even uncompressed.
pub const VALIDATE_BATCH_RECORDS: usize = 3_000;

/// Seconds of whole passes per measure of `sluice bench validate` (the two measures of a
/// codec take turns, so a codec takes twice this).
pub const VALIDATE_SECS_MIN: f64 = 1.0;
