//! The magic v2 record batch header: parse, validate, and the two fields a broker rewrites.
//!
//! Layout (big-endian; see docs/design/log.md for the full table):
//!
//! | at | field | type |
//! |----|-------|------|
//! | 0  | baseOffset | i64 |
//! | 8  | batchLength (bytes after this field) | i32 |
//! | 12 | partitionLeaderEpoch | i32 |
//! | 16 | magic (= 2) | i8 |
//! | 17 | crc (CRC32C of bytes 21..end) | u32 |
//! | 21 | attributes | i16 |
//! | 23 | lastOffsetDelta | i32 |
//! | 27 | baseTimestamp | i64 |
//! | 35 | maxTimestamp | i64 |
//! | 43 | producerId | i64 |
//! | 51 | producerEpoch | i16 |
//! | 53 | baseSequence | i32 |
//! | 57 | recordsCount | i32 |
//! | 61 | records | ... |
//!
//! The broker stores batches exactly as sent except `baseOffset`, `partitionLeaderEpoch`
//! (neither is covered by the CRC) and, for LogAppendTime topics, the timestamp type bit and
//! `maxTimestamp` (after which the CRC is recomputed).
use crate::limits::{BATCH_HEADER_BYTES, BATCH_LENGTH_MIN};
use crate::records::{self, Codec, Declared};
pub use crate::records::{compress, recompress, Compression, Recompression};
use crate::BatchError;

/// Offset of `batchLength` in the header.
const LENGTH_AT: usize = 8;
/// Offset of `partitionLeaderEpoch`.
const LEADER_EPOCH_AT: usize = 12;
/// Offset of `magic`.
const MAGIC_AT: usize = 16;
/// Offset of `crc`.
const CRC_AT: usize = 17;
/// Offset of `attributes`; the CRC covers from here to the end.
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

/// Attribute bits 0..=2: the compression codec.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// The compression codec value for zstd (attributes bits 0..=2).
pub const COMPRESSION_ZSTD: i16 = 4;

/// Whether any whole batch in `bytes` is zstd-compressed: clients older than Produce v7 /
/// Fetch v10 cannot read zstd (KIP-110), so the broker refuses it to them.
pub fn any_zstd(bytes: &[u8]) -> bool {
    let mut at = 0usize;
    while let Ok(header) = parse_header(bytes.get(at..).unwrap_or_default()) {
        if header.attributes & ATTR_COMPRESSION_MASK == COMPRESSION_ZSTD {
            return true;
        }
        at += header.total_bytes;
    }
    false
}

/// The offset after the last whole batch in `bytes` (as read from a log), or `None` when
/// it holds no whole batch.
pub fn end_offset(bytes: &[u8]) -> Option<i64> {
    let mut at = 0usize;
    let mut end = None;
    while let Ok(header) = parse_header(bytes.get(at..).unwrap_or_default()) {
        if at + header.total_bytes > bytes.len() {
            break;
        }
        end = Some(header.next_offset());
        at += header.total_bytes;
    }
    end
}

/// Attribute bit 3: the timestamp type (0 = CreateTime, 1 = LogAppendTime).
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit 4: the batch is transactional.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: the batch is a control batch (transaction marker).
pub const ATTR_CONTROL: i16 = 0x20;

/// The fields of a batch header the broker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// First offset of the batch (as stored; as sent this is usually 0).
    pub base_offset: i64,
    /// Total bytes of the batch including the 12 bytes of offset and length.
    pub total_bytes: usize,
    /// Attribute bits.
    pub attributes: i16,
    /// `lastOffsetDelta`: the batch covers `base_offset ..= base_offset + last_offset_delta`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (or the append time for LogAppendTime).
    pub max_timestamp: i64,
    /// Producer id, -1 when none.
    pub producer_id: i64,
    /// Producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 when the producer is not idempotent.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
    /// The smallest and largest record timestamps, read from the records (decompressed if
    /// need be) by [`validate`]; `None` from [`parse_header`] and [`validate_stored`].
    pub record_timestamps: Option<(i64, i64)>,
    /// Whether the records' offset deltas run 0, 1, 2, ... (always, in a compressed batch
    /// that validated), read by the same walk; `None` when the records were not walked. A
    /// rewrite into a compressed codec needs them in order ([`recompress`]).
    pub offsets_in_order: Option<bool>,
}

impl BatchHeader {
    /// The last offset covered by this batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    /// The sequence number of the last record: sequences wrap from `i32::MAX` to 0.
    pub fn last_sequence(&self) -> i32 {
        let delta = self.last_offset_delta.max(0);
        if self.base_sequence > i32::MAX - delta {
            delta - (i32::MAX - self.base_sequence) - 1
        } else {
            self.base_sequence + delta
        }
    }
    /// Whether the batch is part of a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    /// Whether the batch is a control batch (a transaction marker, attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

fn be_i64(buf: &[u8], at: usize) -> Result<i64, BatchError> {
    let bytes = buf
        .get(at..at + 8)
        .ok_or(BatchError::Truncated { needed: at + 8, remaining: buf.len() })?;
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    Ok(i64::from_be_bytes(array))
}

fn be_i32(buf: &[u8], at: usize) -> Result<i32, BatchError> {
    let bytes = buf
        .get(at..at + 4)
        .ok_or(BatchError::Truncated { needed: at + 4, remaining: buf.len() })?;
    let mut array = [0u8; 4];
    array.copy_from_slice(bytes);
    Ok(i32::from_be_bytes(array))
}

fn be_i16(buf: &[u8], at: usize) -> Result<i16, BatchError> {
    let bytes = buf
        .get(at..at + 2)
        .ok_or(BatchError::Truncated { needed: at + 2, remaining: buf.len() })?;
    let mut array = [0u8; 2];
    array.copy_from_slice(bytes);
    Ok(i16::from_be_bytes(array))
}

/// Reads only `baseOffset` and `batchLength` and returns `(base_offset, total_bytes)`.
///
/// Used when scanning a log whose batches were validated on append.
pub fn peek_offset_and_size(buf: &[u8]) -> Result<(i64, usize), BatchError> {
    let base_offset = be_i64(buf, 0)?;
    let length = be_i32(buf, LENGTH_AT)?;
    if length < BATCH_LENGTH_MIN {
        return Err(BatchError::LengthTooSmall { value: length, min: BATCH_LENGTH_MIN });
    }
    Ok((base_offset, 12 + length as usize))
}

/// Parses the header of the batch at the start of `buf` without checking the CRC.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < BATCH_HEADER_BYTES {
        return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES, remaining: buf.len() });
    }
    let (base_offset, total_bytes) = peek_offset_and_size(buf)?;
    let magic = buf.get(MAGIC_AT).copied().unwrap_or(0) as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic { value: magic });
    }
    Ok(BatchHeader {
        base_offset,
        total_bytes,
        attributes: be_i16(buf, ATTRIBUTES_AT)?,
        last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_AT)?,
        base_timestamp: be_i64(buf, BASE_TIMESTAMP_AT)?,
        max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT)?,
        producer_id: be_i64(buf, PRODUCER_ID_AT)?,
        producer_epoch: be_i16(buf, PRODUCER_EPOCH_AT)?,
        base_sequence: be_i32(buf, BASE_SEQUENCE_AT)?,
        records_count: be_i32(buf, RECORDS_COUNT_AT)?,
        record_timestamps: None,
        offsets_in_order: None,
    })
}

/// Parses and fully validates the batch at the start of `buf`: lengths, magic, CRC32C,
/// that `recordsCount == lastOffsetDelta + 1` (true for every producer-written batch), a
/// known compression codec, and that exactly `recordsCount` records fill it, decompressed
/// as a stream when compressed (`records.rs`), as Kafka's LogValidator walks them;
/// [`BatchHeader::record_timestamps`] is read on the way.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let (mut header, batch) = check_stored(buf)?;
    let codec = Codec::from_attributes(header.attributes)?;
    let declared = Declared { count: header.records_count, base_timestamp: header.base_timestamp };
    let (timestamps, in_order) = records::walk(batch, codec, declared, &mut |_| {})?;
    header.record_timestamps = Some(timestamps);
    header.offsets_in_order = Some(in_order);
    Ok(header)
}

/// [`validate`] without the walk over the records: what recovery checks of a stored batch
/// (lengths, magic, CRC32C, the count against `lastOffsetDelta`), so that a batch stored
/// before appends walked the records is kept as it was acknowledged.
pub fn validate_stored(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    check_stored(buf).map(|(header, _)| header)
}

/// The checks of [`validate_stored`]; also returns the batch's bytes.
fn check_stored(buf: &[u8]) -> Result<(BatchHeader, &[u8]), BatchError> {
    let header = parse_header(buf)?;
    let batch = buf
        .get(..header.total_bytes)
        .ok_or(BatchError::Truncated { needed: header.total_bytes, remaining: buf.len() })?;
    let expected = be_i32(batch, CRC_AT)? as u32;
    let covered = batch.get(ATTRIBUTES_AT..).unwrap_or_default();
    let actual = crc32c::crc32c(covered);
    if expected != actual {
        return Err(BatchError::CrcMismatch { expected, actual });
    }
    let count_ok = header.records_count >= 1
        && i64::from(header.records_count) == i64::from(header.last_offset_delta) + 1;
    if !count_ok {
        return Err(BatchError::CountMismatch {
            count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok((header, batch))
}

/// Validates every batch in a produce payload and returns their headers in order:
/// [`check_all`], then [`walk_all`].
///
/// `max_batch_bytes` is the topic's `max.message.bytes`, checked per batch as Kafka does.
pub fn validate_all(buf: &[u8], max_batch_bytes: u32) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = check_all(buf, max_batch_bytes)?;
    walk_all(buf, &mut headers, None)?;
    Ok(headers)
}

/// The checks of [`validate_stored`] and `max.message.bytes` for every batch in a produce
/// payload, without walking the records: what a caller can refuse cheaply before a walk
/// that may decompress.
pub fn check_all(buf: &[u8], max_batch_bytes: u32) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        let rest = buf.get(at..).unwrap_or_default();
        let header = validate_stored(rest)?;
        if header.total_bytes > max_batch_bytes as usize {
            return Err(BatchError::TooLarge { limit: max_batch_bytes, value: header.total_bytes });
        }
        at += header.total_bytes;
        headers.push(header);
    }
    if headers.is_empty() {
        return Err(BatchError::Empty);
    }
    debug_assert!(at == buf.len(), "batches cover {at} of {} bytes", buf.len());
    Ok(headers)
}

/// Walks the records of every batch [`check_all`] returned `headers` for (a known codec,
/// exactly `recordsCount` well-formed records, as [`validate`] does) and fills in their
/// [`BatchHeader::record_timestamps`]. With `keyless`, the indexes of the records without a
/// key are added to it, counted across the payload's batches from 0 (a compacted topic
/// refuses them, KIP-467).
pub fn walk_all(
    buf: &[u8],
    headers: &mut [BatchHeader],
    mut keyless: Option<&mut Vec<i32>>,
) -> Result<(), BatchError> {
    let mut at = 0usize;
    let mut first_index = 0i32;
    for header in headers {
        let batch = at.checked_add(header.total_bytes).and_then(|end| buf.get(at..end)).ok_or(
            BatchError::Truncated { needed: at + header.total_bytes, remaining: buf.len() },
        )?;
        let codec = Codec::from_attributes(header.attributes)?;
        let declared =
            Declared { count: header.records_count, base_timestamp: header.base_timestamp };
        let mut on_keyless = |index: i32| {
            if let Some(list) = keyless.as_deref_mut() {
                list.push(first_index.saturating_add(index));
            }
        };
        let (timestamps, in_order) = records::walk(batch, codec, declared, &mut on_keyless)?;
        header.record_timestamps = Some(timestamps);
        header.offsets_in_order = Some(in_order);
        first_index = first_index.saturating_add(header.records_count);
        at += header.total_bytes;
    }
    Ok(())
}

/// Rewrites `baseOffset` and `partitionLeaderEpoch` (neither is under the CRC).
///
/// The caller passes a batch that [`validate`] accepted.
#[allow(clippy::indexing_slicing)] // the length is asserted first
pub fn assign_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(batch.len() >= BATCH_HEADER_BYTES, "batch of {} bytes was not validated", batch.len());
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&0i32.to_be_bytes());
}

/// Marks the batch LogAppendTime with `append_time_ms` as `maxTimestamp` and recomputes the
/// CRC, as Kafka does for topics with `message.timestamp.type=LogAppendTime`.
#[allow(clippy::indexing_slicing)] // the length is asserted first
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) {
    assert!(batch.len() >= BATCH_HEADER_BYTES, "batch of {} bytes was not validated", batch.len());
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
    let attributes = attributes | ATTR_LOG_APPEND_TIME;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&append_time_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// [`set_log_append_time`] for a batch held as its patched header (`head`, the first
/// `BATCH_HEADER_BYTES`) and the untouched rest: the CRC covers both.
pub fn set_log_append_time_split(
    head: &mut [u8; BATCH_HEADER_BYTES],
    rest: &[u8],
    append_time_ms: i64,
) {
    set_max_timestamp_split(head, rest, append_time_ms, true);
}

/// Writes `max_timestamp` as the batch's `maxTimestamp` and sets (`log_append_time`) or
/// clears the LogAppendTime bit in its patched header, and recomputes the CRC over both
/// parts. Kafka sets a CreateTime batch's `maxTimestamp` from its records this way when the
/// producer's header disagrees with them.
#[allow(clippy::indexing_slicing)] // the header is a fixed-size array
pub fn set_max_timestamp_split(
    head: &mut [u8; BATCH_HEADER_BYTES],
    rest: &[u8],
    max_timestamp: i64,
    log_append_time: bool,
) {
    let attributes = i16::from_be_bytes([head[ATTRIBUTES_AT], head[ATTRIBUTES_AT + 1]]);
    let attributes = if log_append_time {
        attributes | ATTR_LOG_APPEND_TIME
    } else {
        attributes & !ATTR_LOG_APPEND_TIME
    };
    head[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    head[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[ATTRIBUTES_AT..]), rest);
    head[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Builds an uncompressed batch holding `values` as records without keys or headers,
/// timestamps `timestamp_ms` onward. For tests, benchmarks and fuzz seeds.
pub fn build(base_offset: i64, timestamp_ms: i64, values: &[&[u8]]) -> Vec<u8> {
    let records: Vec<KeyValue<'_>> = values.iter().map(|value| (None, Some(*value))).collect();
    build_batch(&BatchSpec { base_offset, timestamp_ms, ..BatchSpec::default() }, &records)
}

/// Builds an uncompressed batch of keyless records `(timestamp, value)` at
/// `base_timestamp` (each record's delta is its timestamp minus that), whose header's
/// `maxTimestamp` is the records' largest. For tests, benchmarks and fuzz seeds.
pub fn build_timestamped(base_timestamp: i64, records: &[(i64, &[u8])]) -> Vec<u8> {
    let spec = BatchSpec { timestamp_ms: base_timestamp, ..BatchSpec::default() };
    let max = records.iter().map(|(timestamp, _)| *timestamp).max().unwrap_or(base_timestamp);
    let records: Vec<(i64, KeyValue<'_>)> = records
        .iter()
        .map(|(timestamp, value)| (timestamp.saturating_sub(base_timestamp), (None, Some(*value))))
        .collect();
    assemble(&spec, &records, max)
}

/// A record's key and value, either absent (null).
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// The header fields of a batch to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    /// `baseOffset`.
    pub base_offset: i64,
    /// Every record's timestamp.
    pub timestamp_ms: i64,
    /// Attribute bits (only uncompressed batches are built here).
    pub attributes: i16,
    /// -1 for none.
    pub producer_id: i64,
    /// -1 for none.
    pub producer_epoch: i16,
    /// -1 for none.
    pub base_sequence: i32,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            base_offset: 0,
            timestamp_ms: 0,
            attributes: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// Builds an uncompressed batch of `(key, value)` records without headers, every record at
/// `spec.timestamp_ms`. Used for transaction markers and by tests, benchmarks and fuzz seeds.
pub fn build_batch(spec: &BatchSpec, records: &[KeyValue<'_>]) -> Vec<u8> {
    let records: Vec<(i64, KeyValue<'_>)> = records.iter().map(|record| (0, *record)).collect();
    assemble(spec, &records, spec.timestamp_ms)
}

/// An uncompressed batch of `(timestamp delta, (key, value))` records without headers, at
/// `spec.timestamp_ms`, with `max_timestamp` in its header.
#[allow(clippy::indexing_slicing)] // the batch is built here, longer than its header
fn assemble(spec: &BatchSpec, records: &[(i64, KeyValue<'_>)], max_timestamp: i64) -> Vec<u8> {
    debug_assert!(!records.is_empty(), "a batch holds at least one record");
    let mut body_all = Vec::new();
    for (index, (timestamp_delta, (key, value))) in records.iter().enumerate() {
        let mut body = Vec::new();
        body.push(0u8); // record attributes
        put_varint(&mut body, *timestamp_delta);
        put_varint(&mut body, index as i64); // offset delta
        put_bytes(&mut body, *key);
        put_bytes(&mut body, *value);
        put_varint(&mut body, 0); // no headers
        put_varint(&mut body_all, body.len() as i64);
        body_all.extend_from_slice(&body);
    }
    let count = records.len() as i32;
    let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + body_all.len());
    batch.extend_from_slice(&spec.base_offset.to_be_bytes());
    batch.extend_from_slice(&((BATCH_HEADER_BYTES - 12 + body_all.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    batch.extend_from_slice(&spec.attributes.to_be_bytes());
    batch.extend_from_slice(&(count - 1).to_be_bytes());
    batch.extend_from_slice(&spec.timestamp_ms.to_be_bytes());
    batch.extend_from_slice(&max_timestamp.to_be_bytes());
    batch.extend_from_slice(&spec.producer_id.to_be_bytes());
    batch.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    batch.extend_from_slice(&spec.base_sequence.to_be_bytes());
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(&body_all);
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// The kind of a transaction marker (the control record key's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// Type 0: the producer's transaction aborted.
    Abort,
    /// Type 1: the producer's transaction committed.
    Commit,
}

/// Builds a transaction marker: a control batch of one record whose key is
/// `version: i16 = 0, type: i16` and value `version: i16 = 0, coordinator_epoch: i32`.
pub fn build_marker(
    producer_id: i64,
    producer_epoch: i16,
    control: ControlType,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Vec<u8> {
    let kind: i16 = match control {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let spec = BatchSpec {
        base_offset: 0,
        timestamp_ms,
        attributes: ATTR_TRANSACTIONAL | ATTR_CONTROL,
        producer_id,
        producer_epoch,
        base_sequence: -1,
    };
    build_batch(&spec, &[(Some(&key), Some(&value))])
}

/// The marker kind of a control batch, read from its first record's key.
pub fn control_type(batch: &[u8]) -> Result<ControlType, BatchError> {
    let undecodable = |reason: &str| BatchError::Undecodable { reason: reason.to_string() };
    let mut at = BATCH_HEADER_BYTES;
    let _length = get_varint(batch, &mut at).ok_or_else(|| undecodable("record length"))?;
    at += 1; // record attributes
    let _timestamp_delta = get_varint(batch, &mut at).ok_or_else(|| undecodable("timestamp"))?;
    let _offset_delta = get_varint(batch, &mut at).ok_or_else(|| undecodable("offset delta"))?;
    let key_length = get_varint(batch, &mut at).ok_or_else(|| undecodable("key length"))?;
    if key_length < 4 {
        return Err(undecodable("a control record key holds version and type (4 bytes)"));
    }
    match be_i16(batch, at + 2)? {
        0 => Ok(ControlType::Abort),
        1 => Ok(ControlType::Commit),
        other => Err(BatchError::Undecodable { reason: format!("control record type {other}") }),
    }
}

/// Reads a zigzag varint at `*at`, advancing it; `None` when truncated or over 10 bytes.
fn get_varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Writes a Kafka nullable bytes field: a zigzag varint length (-1 for null), then the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

/// Returns `(offset, timestamp)` of the first record in the stored `batch` whose timestamp
/// is at least `timestamp_ms`, decompressing as needed (the CRC, then the walk of
/// [`validate`], stopping at that record). `None` when every record is earlier.
///
/// ListOffsets by timestamp answers with a record, not a batch, as Kafka does.
pub fn first_record_at_or_after(
    batch: &[u8],
    timestamp_ms: i64,
) -> Result<Option<(i64, i64)>, BatchError> {
    let header = parse_header(batch)?;
    if header.max_timestamp < timestamp_ms {
        return Ok(None);
    }
    if header.attributes & ATTR_LOG_APPEND_TIME != 0 {
        return Ok(Some((header.base_offset, header.max_timestamp)));
    }
    // Stored batches were checked on append; the CRC is checked again before decompressing,
    // a defence against corruption on disk since then.
    let (_, whole) = check_stored(batch)?;
    let codec = Codec::from_attributes(header.attributes)?;
    let declared = Declared { count: header.records_count, base_timestamp: header.base_timestamp };
    let found = records::first_at_or_after(whole, codec, declared, timestamp_ms)?;
    Ok(found.map(|seen| {
        // Inside the batch: an uncompressed batch's offset deltas are not checked to run
        // 0, 1, 2 (nor are they by Kafka), and a delta past `lastOffsetDelta` would name an
        // offset of a later batch, or past the log end.
        let delta = seen.offset_delta.clamp(0, header.last_offset_delta);
        (header.base_offset.saturating_add(i64::from(delta)), seen.timestamp)
    }))
}

/// Writes `value` as a zigzag varint, as Kafka's records carry their lengths and deltas.
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        if zigzag < 0x80 {
            out.push(zigzag as u8);
            return;
        }
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
}

#[cfg(test)]
mod marker_tests {
    use super::*;

    #[test]
    fn keyless_records_are_named_by_index() {
        let spec = BatchSpec::default();
        let records: [KeyValue<'_>; 4] =
            [(Some(b"k"), Some(b"a")), (None, Some(b"b")), (Some(b""), None), (None, None)];
        let built = build_batch(&spec, &records);
        let payload = [built.clone(), built].concat();
        let mut headers = check_all(&payload, u32::MAX).unwrap();
        let mut keyless = Vec::new();
        walk_all(&payload, &mut headers, Some(&mut keyless)).unwrap();
        assert_eq!(keyless, vec![1, 3, 5, 7]);
    }

    #[test]
    fn markers_round_trip_and_validate() {
        for kind in [ControlType::Abort, ControlType::Commit] {
            let marker = build_marker(7, 3, kind, 0, 1000);
            let header = validate(&marker).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (7, 3));
            assert_eq!(control_type(&marker).unwrap(), kind);
        }
    }

    #[test]
    fn control_type_never_panics_on_garbage() {
        let marker = build_marker(7, 3, ControlType::Commit, 0, 1000);
        for cut in 0..marker.len() {
            let _ = control_type(&marker[..cut]);
        }
        let _ = control_type(&[0xff; 80]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn built_batch_validates() {
        let batch = build(0, 1000, &[b"a", b"bb", b"ccc"]);
        let header = validate(&batch).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.total_bytes, batch.len());
    }

    #[test]
    fn rejects_flipped_byte_with_crc_mismatch() {
        let mut batch = build(0, 1000, &[b"hello"]);
        let last = batch.len() - 1;
        batch[last] ^= 1;
        assert!(matches!(validate(&batch), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn base_offset_rewrite_keeps_crc_valid() {
        let mut batch = build(0, 1000, &[b"x", b"y"]);
        assign_base_offset(&mut batch, 42);
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.next_offset(), 44);
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut batch = build(0, 1000, &[b"x"]);
        set_log_append_time(&mut batch, 5000);
        let header = validate(&batch).unwrap();
        assert_eq!(header.max_timestamp, 5000);
        assert_eq!(header.attributes & ATTR_LOG_APPEND_TIME, ATTR_LOG_APPEND_TIME);
    }

    #[test]
    fn finds_first_record_at_or_after_a_timestamp() {
        let batch = build(10, 1000, &[b"a", b"b"]);
        assert_eq!(first_record_at_or_after(&batch, 900).unwrap(), Some((10, 1000)));
        assert_eq!(first_record_at_or_after(&batch, 1001).unwrap(), None);
    }

    #[test]
    fn split_log_append_time_matches_the_whole_batch_version() {
        let mut whole = build(0, 1000, &[b"x", b"yz"]);
        let mut head: [u8; BATCH_HEADER_BYTES] = whole[..BATCH_HEADER_BYTES].try_into().unwrap();
        set_log_append_time_split(&mut head, &whole[BATCH_HEADER_BYTES..], 5000);
        set_log_append_time(&mut whole, 5000);
        assert_eq!(&head[..], &whole[..BATCH_HEADER_BYTES]);
    }

    const COMPRESSIONS: [Compression; 5] = [
        Compression::Gzip,
        Compression::SnappyRaw,
        Compression::SnappyXerial,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// A validation result for a batch holding `records` records and declaring `declared`.
    fn check_count(
        result: Result<BatchHeader, BatchError>,
        records: usize,
        declared: i32,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        match result {
            Ok(header) => prop_assert_eq!(header.records_count as usize, records),
            Err(BatchError::RecordsCountMismatch { declared: d, found }) => {
                // The walk stops one record past the declared count.
                let expected = (records as i64).min(i64::from(declared) + 1);
                prop_assert_eq!((d, found), (declared, expected));
                prop_assert_ne!(declared as usize, records);
            }
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
        Ok(())
    }

    /// An uncompressed batch of records `(timestamp delta, offset delta, value)`, declaring
    /// as many records as it holds, at `base_timestamp`.
    fn batch_of(entries: &[(i64, i64, Vec<u8>)], base_timestamp: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for (timestamp_delta, offset_delta, value) in entries {
            let mut body = vec![0u8];
            put_varint(&mut body, *timestamp_delta);
            put_varint(&mut body, *offset_delta);
            put_bytes(&mut body, None);
            put_bytes(&mut body, Some(value));
            put_varint(&mut body, 0);
            put_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let mut batch = with_records(&records, 0, entries.len() as i32);
        batch[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
            .copy_from_slice(&base_timestamp.to_be_bytes());
        declare(&mut batch, entries.len() as i32);
        batch
    }

    /// Writes `max_timestamp` into the header, under a fresh CRC.
    fn claim_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
        batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }

    /// A batch whose records section is `records`, with `attributes`, declaring `declared`
    /// records, its length and CRC made to match.
    fn with_records(records: &[u8], attributes: i16, declared: i32) -> Vec<u8> {
        let mut batch = build(0, 7, &[b"v"]);
        batch.truncate(BATCH_HEADER_BYTES);
        batch.extend_from_slice(records);
        batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        fit_length(&mut batch);
        declare(&mut batch, declared);
        batch
    }

    /// Sets `batchLength` to the bytes `batch` holds (the CRC is left to [`declare`]).
    fn fit_length(batch: &mut [u8]) {
        let length = (batch.len() - 12) as i32;
        batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    }

    /// Inside a compressed batch the offset deltas must run 0, 1, 2, ... (our choice: Kafka
    /// recompresses such a batch with the right ones, and sluice rewrites a batch only into a
    /// topic's `compression.type`, keeping its records' bytes); an uncompressed batch's are
    /// not checked, as in Kafka, only reported (`offsets_in_order`).
    #[test]
    fn compressed_offset_deltas_must_run_in_order() {
        let entries: Vec<(i64, i64, Vec<u8>)> =
            [0, 2, 1].iter().map(|offset| (0, *offset, b"v".to_vec())).collect();
        let batch = batch_of(&entries, 7);
        assert!(validate(&batch).is_ok());
        for compression in COMPRESSIONS {
            let packed = compress(&batch, compression).unwrap();
            match validate(&packed) {
                Err(BatchError::MalformedRecords { reason, declared: 3 }) => {
                    assert!(reason.contains("offset deltas"), "{reason}")
                }
                other => panic!("{compression:?}: expected MalformedRecords, got {other:?}"),
            }
        }
    }

    /// Compression ids 5..=7 name no codec; a snappy block claiming more output than snappy
    /// can encode is refused before anything is allocated; corrupt compressed data is an
    /// error naming the codec.
    #[test]
    fn bad_compression_is_refused_with_its_reason() {
        let batch = build(0, 7, &[b"one", b"two"]);
        let mut unknown = batch.clone();
        unknown[ATTRIBUTES_AT + 1] |= 5;
        declare(&mut unknown, 2);
        assert_eq!(validate(&unknown), Err(BatchError::UnknownCompression { id: 5 }));

        let claims_4_gib = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let bomb = with_records(&claims_4_gib, 2, 1);
        match validate(&bomb) {
            Err(BatchError::Decompression { codec: "snappy", reason }) => {
                assert!(reason.contains("more than snappy can encode"), "{reason}")
            }
            other => panic!("expected a snappy error, got {other:?}"),
        }

        for compression in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let mut packed = compress(&batch, compression).unwrap();
            let middle = BATCH_HEADER_BYTES + (packed.len() - BATCH_HEADER_BYTES) / 2;
            packed[middle] ^= 0x55;
            packed.truncate(packed.len() - 2);
            fit_length(&mut packed);
            declare(&mut packed, 2);
            match validate(&packed) {
                Err(BatchError::Decompression { .. } | BatchError::MalformedRecords { .. }) => {}
                other => panic!("{compression:?}: expected an error, got {other:?}"),
            }
        }
    }

    /// A stream cut anywhere is refused as a decompression error, never read as fewer
    /// records: gzip and zstd fail at the cut, an lz4 frame must reach its end mark (and its
    /// absence explains the records it cut), a snappy block its stated length.
    #[test]
    fn a_cut_compressed_stream_is_refused() {
        let values: Vec<Vec<u8>> = (0..40).map(|i| format!("value {i}").into_bytes()).collect();
        let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let batch = build(0, 7, &slices);
        for compression in COMPRESSIONS {
            let packed = compress(&batch, compression).unwrap();
            for cut in 1..(packed.len() - BATCH_HEADER_BYTES).min(40) {
                let mut short = packed[..packed.len() - cut].to_vec();
                fit_length(&mut short);
                declare(&mut short, 40);
                match validate(&short) {
                    Err(BatchError::Decompression { .. }) => {}
                    other => panic!("{compression:?} cut by {cut}: {other:?}"),
                }
            }
        }
    }

    /// A small batch that decompresses past `DECOMPRESSED_BATCH_BYTES_MAX` (one record
    /// whose value is that many zeros, a few hundred KiB of zstd) is refused once the walk
    /// has read that much, not walked to its end.
    #[test]
    fn decompression_stops_at_its_cap() {
        use std::io::Write;
        let value_bytes = crate::limits::DECOMPRESSED_BATCH_BYTES_MAX as usize + (1 << 20);
        let mut head = vec![0u8, 0, 0]; // attributes, timestamp delta, offset delta
        put_bytes(&mut head, None);
        put_varint(&mut head, value_bytes as i64);
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let mut prefix = Vec::new();
        put_varint(&mut prefix, (head.len() + value_bytes + 1) as i64);
        encoder.write_all(&prefix).unwrap();
        encoder.write_all(&head).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..value_bytes >> 20 {
            encoder.write_all(&zeros).unwrap();
        }
        encoder.write_all(&[0]).unwrap(); // no headers
        let packed = encoder.finish().unwrap();
        let batch = with_records(&packed, COMPRESSION_ZSTD, 1);
        match validate(&batch) {
            Err(BatchError::Decompression { codec: "zstd", reason }) => {
                assert!(reason.contains("decompress to more than"), "{reason}")
            }
            other => panic!("expected the cap, got {other:?}"),
        }
    }

    /// Every field of a record is read as Kafka's DefaultRecord.readFrom reads it: a header
    /// with a null key, a negative header count, bytes left over after the headers or a
    /// field running past the record's length are refused; a record without a timestamp
    /// (-1) is left out of the batch's smallest and largest.
    #[test]
    fn records_are_read_field_by_field() {
        let record = |body: &[u8]| {
            let mut records = Vec::new();
            put_varint(&mut records, body.len() as i64);
            records.extend_from_slice(body);
            validate(&with_records(&records, 0, 1))
        };
        // attributes, timestamp delta 0, offset delta 0, null key, value "v", no headers.
        assert!(record(&[0, 0, 0, 1, 2, b'v', 0]).is_ok());
        let refused = [
            (&[0, 0, 0, 1, 2, b'v', 0, 9][..], "longer than its fields"),
            (&[0, 0, 0, 1, 2, b'v', 1][..], "negative header count"),
            (&[0, 0, 0, 1, 2, b'v', 2, 1, 1][..], "header key is null"),
            (&[0, 0, 0, 1, 8, b'v', 0][..], "runs past its record"),
        ];
        for (body, reason) in refused {
            match record(body) {
                Err(BatchError::MalformedRecords { reason: got, .. }) => {
                    assert!(got.contains(reason), "{body:?}: {got}")
                }
                other => panic!("{body:?}: expected {reason:?}, got {other:?}"),
            }
        }
        let timed = build_timestamped(-1, &[(-1, b"a"), (0, b"b"), (500, b"c")]);
        assert_eq!(validate(&timed).unwrap().record_timestamps, Some((0, 500)));
        let untimed = build_timestamped(-1, &[(-1, b"a"), (-1, b"b")]);
        assert_eq!(validate(&untimed).unwrap().record_timestamps, Some((-1, -1)));
    }

    /// Batches compressed by another implementation (the kafka-protocol crate's encoder:
    /// xerial snappy, lz4 frames) validate with their records' timestamps.
    #[test]
    fn batches_from_another_encoder_validate() {
        use kafka_protocol::records::{
            Compression as Codec, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        for compression in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let records: Vec<Record> = (0..50i64)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    // The encoder starts a new batch where offset - sequence changes.
                    sequence: i as i32,
                    timestamp: 1000 + i,
                    key: None,
                    value: Some(bytes::Bytes::from(vec![b'a'; 100])),
                    headers: Default::default(),
                })
                .collect();
            let mut out = bytes::BytesMut::new();
            let options = RecordEncodeOptions { version: 2, compression };
            RecordBatchEncoder::encode(&mut out, &records, &options).unwrap();
            let header = validate(&out).unwrap();
            assert_eq!(header.records_count, 50);
            assert_eq!(header.record_timestamps, Some((1000, 1049)), "{compression:?}");
        }
    }

    /// Makes `batch` declare `count` records (its last offset delta too), under a valid CRC.
    fn declare(batch: &mut [u8], count: i32) {
        batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&(count - 1).to_be_bytes());
        batch[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }

    proptest! {
        #[test]
        fn validate_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = validate_all(&bytes, 1 << 20);
        }

        #[test]
        fn build_then_validate_round_trips(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..20),
            base in 0i64..1_000_000,
        ) {
            let slices: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
            let batch = build(base, 7, &slices);
            let headers = validate_all(&batch, 1 << 20).unwrap();
            prop_assert_eq!(headers.len(), 1);
            prop_assert_eq!(headers[0].base_offset, base);
            prop_assert_eq!(headers[0].records_count as usize, values.len());
            prop_assert_eq!(headers[0].record_timestamps, Some((7, 7)));
        }

        /// An uncompressed batch must hold exactly the records it declares: a count (and
        /// last offset delta) changed under a valid CRC is refused on append, and still
        /// passes the checks recovery makes of stored batches.
        #[test]
        fn a_declared_count_must_match_the_records(
            records in 1usize..20,
            declared in 1i32..40,
        ) {
            let values: Vec<Vec<u8>> = (0..records).map(|i| vec![b'v'; i]).collect();
            let slices: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
            let mut batch = build(0, 7, &slices);
            declare(&mut batch, declared);
            prop_assert!(validate_stored(&batch).is_ok());
            check_count(validate(&batch), records, declared)?;
            // The same inside each codec.
            for compression in COMPRESSIONS {
                let packed = compress(&batch, compression).unwrap();
                prop_assert!(validate_stored(&packed).is_ok());
                check_count(validate(&packed), records, declared)?;
            }
        }

        /// A compressed batch is walked like the uncompressed one it was made from, in each
        /// codec as clients write it: the same count and record timestamps.
        #[test]
        fn compressed_batches_walk_like_uncompressed_ones(
            records in proptest::collection::vec((-1000i64..1000, 0usize..300), 1..30),
            base_timestamp in 0i64..1 << 40,
        ) {
            let entries: Vec<(i64, i64, Vec<u8>)> = records
                .iter()
                .enumerate()
                .map(|(i, (delta, size))| (*delta, i as i64, vec![b'x'; *size]))
                .collect();
            let batch = batch_of(&entries, base_timestamp);
            let plain = validate(&batch).unwrap();
            let low = records.iter().map(|r| base_timestamp + r.0).min().unwrap();
            let high = records.iter().map(|r| base_timestamp + r.0).max().unwrap();
            prop_assert_eq!(plain.record_timestamps, Some((low, high)));
            for compression in COMPRESSIONS {
                let packed = compress(&batch, compression).unwrap();
                let header = validate(&packed).unwrap();
                prop_assert_eq!(header.record_timestamps, plain.record_timestamps);
                prop_assert_eq!(header.records_count, plain.records_count);
            }
        }

        /// ListOffsets by timestamp finds the first record (in offset order) at or after the
        /// time, in every codec, at the record's own offset: what a search over the records
        /// as written finds.
        #[test]
        fn a_timestamp_finds_its_first_record_in_every_codec(
            deltas in proptest::collection::vec(-1000i64..1000, 1..30),
            gaps in proptest::collection::vec(1i64..3, 30),
            target in -1100i64..1100,
            base_offset in 0i64..1 << 40,
        ) {
            let base_timestamp = 1_790_000_000_000;
            // Uncompressed batches may leave gaps between offset deltas; compressed ones not.
            let mut offset_delta = 0;
            let gapped: Vec<(i64, i64, Vec<u8>)> = deltas
                .iter()
                .zip(&gaps)
                .map(|(delta, gap)| {
                    let entry = (*delta, offset_delta, b"v".to_vec());
                    offset_delta += gap;
                    entry
                })
                .collect();
            // At the record's own offset, kept inside the batch (`lastOffsetDelta`).
            let last_delta = deltas.len() as i64 - 1;
            let expect = |entries: &[(i64, i64, Vec<u8>)]| {
                entries
                    .iter()
                    .find(|e| e.0 >= target)
                    .map(|e| (base_offset + e.1.min(last_delta), base_timestamp + e.0))
            };
            let mut plain = batch_of(&gapped, base_timestamp);
            claim_max_timestamp(&mut plain, base_timestamp + 1000);
            assign_base_offset(&mut plain, base_offset);
            prop_assert_eq!(
                first_record_at_or_after(&plain, base_timestamp + target).unwrap(),
                expect(&gapped)
            );
            let in_order: Vec<(i64, i64, Vec<u8>)> =
                deltas.iter().enumerate().map(|(i, d)| (*d, i as i64, b"v".to_vec())).collect();
            let batch = batch_of(&in_order, base_timestamp);
            for compression in COMPRESSIONS {
                let mut packed = compress(&batch, compression).unwrap();
                claim_max_timestamp(&mut packed, base_timestamp + 1000);
                assign_base_offset(&mut packed, base_offset);
                prop_assert_eq!(
                    first_record_at_or_after(&packed, base_timestamp + target).unwrap(),
                    expect(&in_order)
                );
            }
        }

        /// Whatever bytes a batch marked compressed holds, under a valid CRC, validation
        /// answers (an error naming the codec, or a walk) and never panics.
        #[test]
        fn compressed_garbage_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            codec in 1i16..=4,
            declared in 1i32..10,
        ) {
            let _ = validate(&with_records(&body, codec, declared));
        }

        /// Whatever the records' bytes, under a valid CRC and a consistent header, the walk
        /// over them returns an answer and never panics.
        #[test]
        fn walking_arbitrary_records_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            declared in 1i32..10,
            base_timestamp in any::<i64>(),
        ) {
            let mut batch = with_records(&body, 0, declared);
            batch[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
                .copy_from_slice(&base_timestamp.to_be_bytes());
            declare(&mut batch, declared);
            prop_assert!(validate_stored(&batch).is_ok());
            if let Ok(header) = validate(&batch) {
                let (low, high) = header.record_timestamps.unwrap();
                prop_assert!(low <= high);
            }
        }
    }
}
