//! Limits of the log, each with its reason.

/// Kafka's `segment.bytes` ceiling: index positions are u32 and Kafka's setting is an int.
pub const SEGMENT_BYTES_MAX: u32 = i32::MAX as u32;

/// The smallest segment Kafka accepts (`segment.bytes` >= 14 bytes; we need room for one
/// batch header to make progress).
pub const SEGMENT_BYTES_MIN: u32 = 1024;

/// Bytes of one offset index entry: relative offset u32 + position u32.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;

/// Bytes of one time index entry: timestamp i64 + relative offset u32.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// Bytes read per call while scanning a segment during recovery.
pub const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// With `preallocate`, zeros written ahead of the active segment's last batch whenever an
/// append reaches past those written before (never past `segment.bytes`): appends inside
/// them overwrite blocks that are already allocated and synced, so their `fdatasync` has
/// no inode to write (1.4 to 2.1 times faster here, docs/benchmarks.md), and one sync in
/// each such stretch pays for the zeros. Small enough that the zeros' own sync stays short.
pub const PREALLOCATE_AHEAD_BYTES: u64 = 1 << 20;

/// The static buffer of zeros `preallocate` writes from, repeated in one vectored write:
/// 16 `iovec`s per `PREALLOCATE_AHEAD_BYTES`, and no allocation.
pub const ZEROS_BUFFER_BYTES: usize = 64 * 1024;

/// Segments per partition, so the in-memory segment list and open files stay bounded.
pub const SEGMENTS_PER_PARTITION_MAX: usize = 100_000;

/// Records one batch may hold (`recordsCount`), checked from the header before the records
/// are walked: every record of a compressed batch is decompressed to be counted, so a small
/// batch of tiny records could otherwise keep the partition busy with 2^31 of them.
/// librdkafka's `batch.num.messages` tops out at 1,000,000.
pub const RECORDS_PER_BATCH_MAX: i32 = 1 << 24;

/// Offsets one segment spans: index entries store offsets relative to the base as u32.
pub const SEGMENT_OFFSETS_MAX: i64 = (u32::MAX / 2) as i64;

const _: () = assert!((RECORDS_PER_BATCH_MAX as i64) < SEGMENT_OFFSETS_MAX);

/// Batches remembered per producer for deduplication: Kafka's limit on
/// `max.in.flight.requests.per.connection` for an idempotent producer is 5, so a retry is
/// always one of the last 5 batches.
pub const PRODUCER_BATCHES_CACHED: usize = 5;

/// Producer ids with state in one partition, so a flood of short-lived producers cannot
/// grow memory without bound; idle ones leave after `producer.id.expiration.ms`.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 1_000_000;

/// The largest producer state snapshot read on open: a bigger file is skipped and the log
/// replayed instead, so a corrupt size cannot make the broker allocate without bound.
pub const SNAPSHOT_BYTES_MAX: u64 = 256 << 20;

/// How often a segment whose index files fell behind (a failed write) tries to rewrite them
/// from memory while appends go on: each try writes every entry, under the partition lock.
pub const INDEX_CATCH_UP_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
