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

/// Segments per partition, so the in-memory segment list and open files stay bounded.
pub const SEGMENTS_PER_PARTITION_MAX: usize = 100_000;
