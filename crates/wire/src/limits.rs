//! Limits of the wire layer, each with the reason for its value.

/// Kafka's `socket.request.max.bytes` default: the largest request frame a broker accepts.
pub const FRAME_BYTES_DEFAULT: u32 = 104_857_600;

/// Bytes of the size prefix in front of every request and response.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Bytes of a magic v2 record batch header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;

/// The smallest legal `batchLength`: the header after the length field, with no records.
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - 12) as i32;

/// The most output a raw snappy block can encode per input byte (its densest element, a
/// 3-byte copy, yields 64 bytes: 21.3x), rounded up: a block claiming more is refused
/// before its output is allocated.
pub const SNAPPY_EXPANSION_MAX: usize = 22;

/// The most decompressed bytes one batch's records are read to on append. Kafka has no such
/// limit; it bounds the CPU a single small batch can take under its partition's lock
/// (a zstd batch of long runs can expand tens of thousands of times), far above real record
/// data (a 1 MiB batch of JSON events compresses about 5 to 1).
pub const DECOMPRESSED_BATCH_BYTES_MAX: u64 = 1 << 30;

/// The buffer each streaming decompressor reads into while a batch is walked.
pub const STREAM_BUFFER_BYTES: usize = 32 * 1024;

/// The largest zstd window (log2 bytes) a batch may need: zstd's own default limit for
/// decoders (128 MiB), made explicit; Kafka's zstd-jni decodes with the same default.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Client ids longer than this are cut in logs; Kafka itself allows i16::MAX bytes.
pub const CLIENT_ID_LOG_BYTES_MAX: usize = 128;

const _: () = assert!(BATCH_LENGTH_MIN == 49);
