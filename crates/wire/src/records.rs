//! The walk over a batch's records on append, compressed or not, as Kafka's LogValidator
//! walks them: exactly `recordsCount` records must fill the batch, each read field by field
//! as Kafka's `DefaultRecord.readFrom` reads it; inside a compressed batch the offset deltas
//! must run 0, 1, 2, ... (our choice: Kafka recompresses such a batch instead). The walk
//! returns the smallest and largest record timestamps (KIP-937 checks each record, and the
//! header's `maxTimestamp` is set from them) and reports records without a key (refused on
//! compacted topics).
//!
//! Compressed records are read through a decompressing stream (gzip, lz4, zstd), so a batch
//! is never held decompressed in memory, and at most `DECOMPRESSED_BATCH_BYTES_MAX` of it is
//! read; snappy, which has no streaming decoder here, is decompressed whole, and a length it
//! claims beyond what snappy can encode in its input is refused before anything is
//! allocated.
use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;

use crate::limits::{
    BATCH_HEADER_BYTES, DECOMPRESSED_BATCH_BYTES_MAX, SNAPPY_EXPANSION_MAX, STREAM_BUFFER_BYTES,
    ZSTD_WINDOW_LOG_MAX,
};
use crate::BatchError;

/// A record's timestamp when it has none (Kafka's `RecordBatch.NO_TIMESTAMP`).
const NO_TIMESTAMP: i64 = -1;

/// The compression codec in a batch's attributes (bits 0..=2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec of attribute bits `attributes & 7`; ids 5..=7 name no codec.
    pub(crate) fn from_attributes(attributes: i16) -> Result<Codec, BatchError> {
        match attributes & 0x07 {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            id => Err(BatchError::UnknownCompression { id }),
        }
    }

    /// The codec's id in a batch's attribute bits 0..=2.
    fn id(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// The declared shape of a batch the walk checks its records against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Declared {
    /// `recordsCount`.
    pub(crate) count: i32,
    /// `baseTimestamp`: each record's timestamp is this plus its delta.
    pub(crate) base_timestamp: i64,
}

/// What the walk shows of each record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeenRecord {
    /// The record's place in its batch, from 0.
    pub(crate) index: i32,
    /// Its offset less the batch's base offset.
    pub(crate) offset_delta: i32,
    /// Its timestamp (the batch's base timestamp plus its delta); -1 is none.
    pub(crate) timestamp: i64,
    pub(crate) key_is_null: bool,
}

/// Walks the records of a whole batch (`batch` from its first byte, CRC already checked)
/// and returns the smallest and largest of their timestamps, leaving out -1 (none), or
/// `(-1, -1)` when no record has one, and whether their offset deltas run 0, 1, 2, ...
/// (required inside a compressed batch). `keyless` is called with the index (in the batch)
/// of each record without a key.
pub(crate) fn walk(
    batch: &[u8],
    codec: Codec,
    declared: Declared,
    keyless: &mut impl FnMut(i32),
) -> Result<((i64, i64), bool), BatchError> {
    let offsets_in_order = codec != Codec::None;
    let mut in_order = true;
    let timestamps = visit(batch, codec, declared, offsets_in_order, &mut |seen| {
        in_order &= seen.offset_delta == seen.index;
        if seen.key_is_null {
            keyless(seen.index);
        }
        ControlFlow::Continue(())
    })?;
    Ok((timestamps, in_order))
}

/// The first record of a stored batch (walked on append, or stored before appends walked
/// records) whose timestamp is at least `timestamp`, or `None` when every record is
/// earlier. The walk stops there; an error before it is the batch's.
pub(crate) fn first_at_or_after(
    batch: &[u8],
    codec: Codec,
    declared: Declared,
    timestamp: i64,
) -> Result<Option<SeenRecord>, BatchError> {
    let mut found = None;
    // The offsets are the records' own deltas, as stored: no order is asked of them here.
    visit(batch, codec, declared, false, &mut |seen| {
        if seen.timestamp >= timestamp {
            found = Some(*seen);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    Ok(found)
}

/// The walk, showing each record to `on_record` until it breaks (then the timestamps are those
/// of the records seen); with `offsets_in_order`, the offset deltas must run 0, 1, 2, ...
fn visit(
    batch: &[u8],
    codec: Codec,
    declared: Declared,
    offsets_in_order: bool,
    on_record: &mut impl FnMut(&SeenRecord) -> ControlFlow<()>,
) -> Result<(i64, i64), BatchError> {
    let records = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let undecodable = |reason: String| BatchError::Decompression { codec: codec.name(), reason };
    match codec {
        Codec::None => {
            walk_source(&mut Slice { bytes: records, at: 0 }, declared, offsets_in_order, on_record)
        }
        Codec::Snappy => {
            let plain = snappy_decompress(records).map_err(undecodable)?;
            walk_source(&mut Slice { bytes: &plain, at: 0 }, declared, offsets_in_order, on_record)
        }
        Codec::Gzip => {
            let reader = flate2::read::MultiGzDecoder::new(records);
            walk_source(&mut Stream::new(reader, codec), declared, offsets_in_order, on_record)
        }
        Codec::Lz4 => {
            let reader = lz4::Decoder::new(records).map_err(|e| undecodable(e.to_string()))?;
            let mut stream = Stream::new(reader, codec);
            let walked = walk_source(&mut stream, declared, offsets_in_order, on_record);
            // The decoder ends quietly where its input does: a frame cut before its end
            // mark is only seen here, and explains whatever the walk found at that end.
            if stream.ended {
                let (_, finished) = stream.reader.into_inner().finish();
                finished
                    .map_err(|_| undecodable("the lz4 frame ends before its end mark".into()))?;
            }
            walked
        }
        Codec::Zstd => {
            let mut reader = zstd::stream::read::Decoder::new(records)
                .map_err(|e| undecodable(e.to_string()))?;
            reader.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| undecodable(e.to_string()))?;
            walk_source(&mut Stream::new(reader, codec), declared, offsets_in_order, on_record)
        }
    }
}

/// Where the walk reads record bytes from. A source that fails (a stream that does not
/// decompress, or one past `DECOMPRESSED_BATCH_BYTES_MAX`) ends as if the records ended,
/// and reports why in [`Source::failure`].
trait Source {
    /// The next byte, or `None` at the end of the records.
    fn next_byte(&mut self) -> Option<u8>;
    /// Skips exactly `n` bytes; `false` when fewer remain.
    fn skip(&mut self, n: usize) -> bool;
    /// Why the records ended early, if they did.
    fn failure(&mut self) -> Option<BatchError>;
    /// The bytes at hand without reading further (possibly fewer than remain).
    fn at_hand(&self) -> &[u8];
    /// Moves past `n <= at_hand().len()` bytes.
    fn advance(&mut self, n: usize);
}

/// Uncompressed records, or snappy's decompressed ones.
struct Slice<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Source for Slice<'_> {
    #[inline]
    fn next_byte(&mut self) -> Option<u8> {
        let byte = self.bytes.get(self.at).copied();
        self.at += usize::from(byte.is_some());
        byte
    }

    #[inline]
    fn skip(&mut self, n: usize) -> bool {
        match self.at.checked_add(n).filter(|end| *end <= self.bytes.len()) {
            Some(end) => {
                self.at = end;
                true
            }
            None => false,
        }
    }

    fn failure(&mut self) -> Option<BatchError> {
        None
    }

    #[inline]
    fn at_hand(&self) -> &[u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.at_hand().len(), "advance past the bytes at hand");
        self.at += n;
    }
}

/// Records read through a decompressing stream, at most `DECOMPRESSED_BATCH_BYTES_MAX`.
struct Stream<R: Read> {
    reader: BufReader<R>,
    codec: Codec,
    /// Decompressed bytes handed to the walk so far.
    read: u64,
    failed: Option<BatchError>,
    /// The decompressed stream has ended (a read returned nothing).
    ended: bool,
}

impl<R: Read> Stream<R> {
    fn new(reader: R, codec: Codec) -> Self {
        let reader = BufReader::with_capacity(STREAM_BUFFER_BYTES, reader);
        Stream { reader, codec, read: 0, failed: None, ended: false }
    }

    /// The buffered bytes (empty at the end, or after a failure, which is kept).
    fn buffered(&mut self) -> &[u8] {
        if self.failed.is_some() {
            return &[];
        }
        if self.read > DECOMPRESSED_BATCH_BYTES_MAX {
            self.failed = Some(BatchError::Decompression {
                codec: self.codec.name(),
                reason: format!(
                    "the records decompress to more than {DECOMPRESSED_BATCH_BYTES_MAX} bytes"
                ),
            });
            return &[];
        }
        match self.reader.fill_buf() {
            Ok(buffer) => {
                self.ended |= buffer.is_empty();
                self.reader.buffer()
            }
            Err(error) => {
                let reason = error.to_string();
                self.failed = Some(BatchError::Decompression { codec: self.codec.name(), reason });
                &[]
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.read += n as u64;
    }
}

impl<R: Read> Source for Stream<R> {
    fn next_byte(&mut self) -> Option<u8> {
        if let Some(&byte) = self.reader.buffer().first() {
            self.consume(1);
            return Some(byte);
        }
        let byte = self.buffered().first().copied();
        if byte.is_some() {
            self.consume(1);
        }
        byte
    }

    fn skip(&mut self, mut n: usize) -> bool {
        while n > 0 {
            let available = self.buffered().len();
            if available == 0 {
                return false;
            }
            let step = available.min(n);
            self.consume(step);
            n -= step;
        }
        true
    }

    fn failure(&mut self) -> Option<BatchError> {
        self.failed.take()
    }

    #[inline]
    fn at_hand(&self) -> &[u8] {
        self.reader.buffer()
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.at_hand().len(), "advance past the bytes at hand");
        self.consume(n);
    }
}

/// One record's bytes: reads stop at the length its prefix states.
struct Record<'s, S: Source> {
    source: &'s mut S,
    left: usize,
}

/// A record's fields after its length, as [`read_record`] reads them; every read stops at
/// the length the record states.
trait Fields {
    /// The next byte of the record.
    fn byte(&mut self) -> Option<u8>;
    /// A zigzag varint of at most `max_bytes` bytes (5 for Kafka's int32 varints, 10 for
    /// its varlongs).
    fn varint(&mut self, max_bytes: u32) -> Option<i64>;
    /// Skips a length-prefixed field (a negative length is null); whether it was null.
    fn nullable_bytes(&mut self) -> Result<bool, &'static str>;
    /// The bytes of the record not read yet.
    fn left(&self) -> usize;
}

/// A record whose bytes are all at hand: one slice, read without going back to the source.
struct RecordInHand<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Fields for RecordInHand<'_> {
    #[inline]
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    #[inline]
    fn varint(&mut self, max_bytes: u32) -> Option<i64> {
        let first = self.byte()?;
        if first < 0x80 {
            // One byte (most offset deltas, timestamp deltas, key lengths): always in range.
            return Some(i64::from(first >> 1) ^ -i64::from(first & 1));
        }
        varint_from(first, max_bytes, || self.byte())
    }

    #[inline]
    fn nullable_bytes(&mut self) -> Result<bool, &'static str> {
        let length = self.varint(5).ok_or("a key, value or header length is cut")?;
        match usize::try_from(length) {
            Ok(length) => {
                self.at = self
                    .at
                    .checked_add(length)
                    .filter(|end| *end <= self.bytes.len())
                    .ok_or("a key, value or header runs past its record")?;
                Ok(false)
            }
            Err(_) => Ok(true),
        }
    }

    #[inline]
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }
}

impl<S: Source> Record<'_, S> {
    #[inline]
    fn skip(&mut self, n: usize) -> Option<()> {
        self.left = self.left.checked_sub(n)?;
        self.source.skip(n).then_some(())
    }
}

impl<S: Source> Fields for Record<'_, S> {
    #[inline]
    fn byte(&mut self) -> Option<u8> {
        self.left = self.left.checked_sub(1)?;
        self.source.next_byte()
    }

    #[inline]
    fn varint(&mut self, max_bytes: u32) -> Option<i64> {
        // The common case: the whole varint is at hand and inside the record.
        let at_hand = self.source.at_hand();
        if at_hand.len() >= VARINT_BYTES_MAX && self.left >= VARINT_BYTES_MAX {
            let mut used = 0usize;
            let value = varint_from(*at_hand.first()?, max_bytes, || {
                used += 1;
                at_hand.get(used).copied()
            });
            self.source.advance(used + 1);
            self.left -= used + 1;
            return value;
        }
        varint_from(self.byte()?, max_bytes, || self.byte())
    }

    #[inline]
    fn nullable_bytes(&mut self) -> Result<bool, &'static str> {
        let length = self.varint(5).ok_or("a key, value or header length is cut")?;
        match usize::try_from(length) {
            Ok(length) => self
                .skip(length)
                .map(|()| false)
                .ok_or("a key, value or header runs past its record"),
            Err(_) => Ok(true),
        }
    }

    #[inline]
    fn left(&self) -> usize {
        self.left
    }
}

/// The longest varint (a varlong): 10 bytes of 7 bits.
const VARINT_BYTES_MAX: usize = 10;

/// A zigzag varint whose first byte is `first`, reading the rest from `next`.
#[inline]
fn varint_from(first: u8, max_bytes: u32, mut next: impl FnMut() -> Option<u8>) -> Option<i64> {
    let mut raw = u64::from(first & 0x7f);
    let mut byte = first;
    let mut shift = 7u32;
    while byte & 0x80 != 0 {
        if shift >= 7 * max_bytes {
            return None;
        }
        byte = next()?;
        raw |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        shift += 7;
    }
    let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
    // An int32 varint must decode to an int32.
    (max_bytes > 5 || i32::try_from(value).is_ok()).then_some(value)
}

/// The walk; a source's failure takes precedence over what it made the walk find.
fn walk_source(
    source: &mut impl Source,
    declared: Declared,
    offsets_in_order: bool,
    on_record: &mut impl FnMut(&SeenRecord) -> ControlFlow<()>,
) -> Result<(i64, i64), BatchError> {
    let walked = walk_records(source, declared, offsets_in_order, on_record);
    match source.failure() {
        Some(failure) => Err(failure),
        None => walked,
    }
}

/// Reads every record as Kafka's `DefaultRecord.readFrom` does: length, attributes,
/// timestamp delta, offset delta, key, value, headers (a count, then each key, which may not
/// be null, and value), and exactly the stated length.
fn walk_records(
    source: &mut impl Source,
    declared: Declared,
    offsets_in_order: bool,
    on_record: &mut impl FnMut(&SeenRecord) -> ControlFlow<()>,
) -> Result<(i64, i64), BatchError> {
    let malformed =
        |reason: &'static str| BatchError::MalformedRecords { reason, declared: declared.count };
    let mut found = 0i32;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    while let Some(first) = source.next_byte() {
        if found >= declared.count {
            // One past the declared count is enough to refuse: a compressed batch could
            // otherwise keep the walk busy for as long as its decompressed size.
            return Err(BatchError::RecordsCountMismatch {
                declared: declared.count,
                found: i64::from(found) + 1,
            });
        }
        let length = varint_from(first, 5, || source.next_byte())
            .ok_or_else(|| malformed("a record length is cut or not an int32 varint"))?;
        let left = usize::try_from(length).map_err(|_| malformed("a record length is negative"))?;
        // Most records lie whole in the bytes at hand (always, uncompressed): their fields
        // are read from one slice; a record across a stream's buffer is read byte by byte.
        let in_hand = source.at_hand().get(..left).map(|bytes| {
            let mut fields = RecordInHand { bytes, at: 0 };
            (read_record(&mut fields, found, offsets_in_order), fields.left())
        });
        let (read, unread) = match in_hand {
            Some(read) => {
                source.advance(left);
                read
            }
            None => {
                let mut record = Record { source: &mut *source, left };
                (read_record(&mut record, found, offsets_in_order), record.left)
            }
        };
        let (delta, offset_delta, key_is_null) = read.map_err(malformed)?;
        if unread != 0 {
            return Err(malformed("a record is longer than its fields"));
        }
        let timestamp = declared.base_timestamp.saturating_add(delta);
        if timestamp != NO_TIMESTAMP {
            (min, max) = (min.min(timestamp), max.max(timestamp));
        }
        let seen = SeenRecord { index: found, offset_delta, timestamp, key_is_null };
        if on_record(&seen).is_break() {
            return Ok(bounds(min, max));
        }
        found += 1;
    }
    if found != declared.count {
        return Err(BatchError::RecordsCountMismatch {
            declared: declared.count,
            found: i64::from(found),
        });
    }
    debug_assert!(found >= 1, "recordsCount >= 1 was checked first");
    Ok(bounds(min, max))
}

/// The timestamps' bounds, `(-1, -1)` when no record had one.
fn bounds(min: i64, max: i64) -> (i64, i64) {
    if min <= max {
        (min, max)
    } else {
        (NO_TIMESTAMP, NO_TIMESTAMP)
    }
}

/// The fields of the record at `index` after its length; returns its timestamp delta, its
/// offset delta and whether its key is null.
#[inline(always)] // one call per record: inlined, it runs at about twice the speed
fn read_record(
    record: &mut impl Fields,
    index: i32,
    offsets_in_order: bool,
) -> Result<(i64, i32, bool), &'static str> {
    record.byte().ok_or("a record's attributes are cut")?;
    let delta = record.varint(10).ok_or("a timestamp delta is cut or too long")?;
    let offset_delta = record
        .varint(5)
        .and_then(|delta| i32::try_from(delta).ok())
        .ok_or("an offset delta is cut or not an int32")?;
    if offsets_in_order && offset_delta != index {
        return Err("the offset deltas inside a compressed batch do not run 0, 1, 2, ...");
    }
    let key_is_null = record.nullable_bytes()?;
    record.nullable_bytes()?;
    let headers = record.varint(5).ok_or("a header count is cut")?;
    if headers < 0 {
        return Err("a record has a negative header count");
    }
    for _ in 0..headers {
        // Each header takes at least two bytes of the record, so the stated length bounds
        // this loop.
        if record.nullable_bytes()? {
            return Err("a header key is null");
        }
        record.nullable_bytes()?;
    }
    Ok((delta, offset_delta, key_is_null))
}

/// The magic of xerial's snappy-java framing (Java clients), followed by two i32 versions
/// and then blocks of `[compressed length i32][raw snappy block]`; anything else is one raw
/// snappy block (librdkafka), as Kafka's SnappyInputStream falls back to.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

fn snappy_decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if data.get(..XERIAL_MAGIC.len()) != Some(&XERIAL_MAGIC[..]) {
        snappy_block(data, &mut out)?;
        return Ok(out);
    }
    let mut at = XERIAL_HEADER_BYTES;
    while at < data.len() {
        let length = data
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
            .ok_or("a xerial block length is cut")?;
        at += 4;
        let block = at
            .checked_add(length)
            .and_then(|end| data.get(at..end))
            .ok_or("a xerial block runs past the batch")?;
        snappy_block(block, &mut out)?;
        at += length;
    }
    Ok(out)
}

/// Appends one raw snappy block's output to `out`, refusing a stated length that the block
/// cannot encode (snappy's densest element, a 3-byte copy, yields 64 bytes).
fn snappy_block(block: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let length = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    if length > block.len().saturating_mul(SNAPPY_EXPANSION_MAX) {
        return Err(format!(
            "a snappy block of {} bytes claims {length} bytes of output, more than snappy can encode",
            block.len()
        ));
    }
    let start = out.len();
    if (start + length) as u64 > DECOMPRESSED_BATCH_BYTES_MAX {
        return Err(format!(
            "the records decompress to more than {DECOMPRESSED_BATCH_BYTES_MAX} bytes"
        ));
    }
    out.resize(start + length, 0);
    let target = out.get_mut(start..).unwrap_or_default();
    snap::raw::Decoder::new().decompress(block, target).map_err(|e| e.to_string())?;
    Ok(())
}

/// The codec a broker stores batches in, whatever the producer sent: Kafka's
/// `compression.type` topic config other than `producer`, with its level (KIP-390).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompression {
    /// `uncompressed`.
    None,
    /// `gzip` at `compression.gzip.level` (1 to 9).
    Gzip {
        /// The deflate level.
        level: u32,
    },
    /// `snappy`, in the xerial framing Kafka's broker writes.
    Snappy,
    /// `lz4` at a liblz4 level: 0 and 1 for its fast compressor, 2 to 12 for its
    /// high-compression one (higher levels compress as 12), in the frame Kafka writes:
    /// independent 64 KiB blocks without checksums, which Kafka's Java reader needs.
    Lz4 {
        /// The liblz4 level.
        level: u32,
    },
    /// `zstd` at `compression.zstd.level` (-131072 to 22).
    Zstd {
        /// The zstd level.
        level: i32,
    },
}

impl Recompression {
    /// Whether a batch with these attribute bits is rewritten: its codec is another, and it
    /// is not a control batch.
    pub fn rewrites(self, attributes: i16) -> bool {
        attributes & crate::batch::ATTR_CONTROL == 0
            && Codec::from_attributes(attributes).map_or(true, |codec| codec != self.codec())
    }

    fn codec(self) -> Codec {
        match self {
            Recompression::None => Codec::None,
            Recompression::Gzip { .. } => Codec::Gzip,
            Recompression::Snappy => Codec::Snappy,
            Recompression::Lz4 { .. } => Codec::Lz4,
            Recompression::Zstd { .. } => Codec::Zstd,
        }
    }
}

/// `batch` (one whole batch, already validated) rewritten with its records in `target`'s
/// codec, as Kafka's LogValidator rewrites a batch whose codec is not the topic's; `None`
/// when it already is in that codec, or is a control batch (never compressed). Every header
/// field stays as sent but the codec bits, the length and the CRC; the records are the same
/// bytes. They stream from the decompressor (gzip, lz4, zstd; snappy, which has no streaming
/// decoder here, is decompressed whole, as validation does) into the compressor (at most
/// `DECOMPRESSED_BATCH_BYTES_MAX` read), so memory holds the rewritten batch, not the records
/// decompressed, and a rewrite that grows past `max_batch_bytes` stops there: `TooLarge`, as
/// Kafka refuses it. The records of an uncompressed batch must have offset deltas 0, 1, 2,
/// ..., as inside any compressed batch (`MalformedRecords`): Kafka would renumber them, and
/// sluice keeps the records' bytes; `header` is the batch's, from [`crate::batch::validate`]
/// or `walk_all`, which say whether they do (a header whose records were not walked has
/// them walked here). Into zstd, the records are first decompressed once into nothing to
/// learn their size, which zstd sizes its window and tables to.
pub fn recompress(
    batch: &[u8],
    header: &crate::batch::BatchHeader,
    target: Recompression,
    max_batch_bytes: u32,
) -> Result<Option<Vec<u8>>, BatchError> {
    let truncated = || BatchError::Truncated { needed: BATCH_HEADER_BYTES, remaining: batch.len() };
    let head = batch.get(..BATCH_HEADER_BYTES).ok_or_else(truncated)?;
    let attributes =
        head.get(21..23).and_then(|b| <[u8; 2]>::try_from(b).ok()).map_or(0, i16::from_be_bytes);
    debug_assert_eq!(attributes, header.attributes, "the header is this batch's");
    let codec = Codec::from_attributes(attributes)?;
    if !target.rewrites(attributes) {
        return Ok(None);
    }
    let records = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    if codec == Codec::None {
        let in_order = match header.offsets_in_order {
            Some(in_order) => in_order,
            None => {
                let declared =
                    Declared { count: header.records_count, base_timestamp: header.base_timestamp };
                walk(batch, codec, declared, &mut |_| {})?.1
            }
        };
        if !in_order {
            let reason =
                "offset deltas out of order cannot be compressed: number them 0, 1, 2, ...";
            return Err(BatchError::MalformedRecords { reason, declared: header.records_count });
        }
    }
    let plain_bytes = match (target, codec) {
        (Recompression::Zstd { .. }, Codec::None) => Some(records.len() as u64),
        (Recompression::Zstd { .. }, _) => Some(decompressed_bytes(records, codec)?),
        _ => None,
    };
    let mut source = decompressor(records, codec)?;
    let mut sink = Capped { bytes: Vec::new(), room: max_batch_bytes as usize, exceeded: false };
    sink.bytes.extend_from_slice(head);
    let undecodable = |reason: String| BatchError::Decompression { codec: codec.name(), reason };
    match pack_stream(&mut source, &mut sink, target, plain_bytes) {
        Ok(()) if source.read <= DECOMPRESSED_BATCH_BYTES_MAX => {}
        Ok(()) => {
            let limit = DECOMPRESSED_BATCH_BYTES_MAX;
            return Err(undecodable(format!("the records decompress to more than {limit} bytes")));
        }
        Err(_) if sink.exceeded => {
            let value = sink.bytes.len().max(max_batch_bytes as usize + 1);
            return Err(BatchError::TooLarge { limit: max_batch_bytes, value });
        }
        Err(error) if source.failed => return Err(undecodable(error.to_string())),
        Err(error) => {
            let reason = error.to_string();
            return Err(BatchError::Recompression { codec: target.codec().name(), reason });
        }
    }
    let mut out = sink.bytes;
    let length = i32::try_from(out.len() - 12).map_err(|_| BatchError::Recompression {
        codec: target.codec().name(),
        reason: "the batch outgrows its length field".into(),
    })?;
    let attributes = (attributes & !0x07) | target.codec().id();
    patch(&mut out, 8, &length.to_be_bytes());
    patch(&mut out, 21, &attributes.to_be_bytes());
    let crc = crc32c::crc32c(out.get(21..).unwrap_or_default());
    patch(&mut out, 17, &crc.to_be_bytes());
    Ok(Some(out))
}

/// The records of a batch in `codec`, as a stream of at most `DECOMPRESSED_BATCH_BYTES_MAX +
/// 1` bytes (a rewrite refuses one more).
fn decompressor(
    records: &[u8],
    codec: Codec,
) -> Result<Watched<std::io::Take<Box<dyn Read + '_>>>, BatchError> {
    let undecodable = |reason: String| BatchError::Decompression { codec: codec.name(), reason };
    let source: Box<dyn Read + '_> = match codec {
        Codec::None => Box::new(records),
        Codec::Snappy => {
            Box::new(std::io::Cursor::new(snappy_decompress(records).map_err(undecodable)?))
        }
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(records)),
        Codec::Lz4 => Box::new(lz4::Decoder::new(records).map_err(|e| undecodable(e.to_string()))?),
        Codec::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(records)
                .map_err(|e| undecodable(e.to_string()))?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| undecodable(e.to_string()))?;
            Box::new(decoder)
        }
    };
    Ok(Watched { inner: source.take(DECOMPRESSED_BATCH_BYTES_MAX + 1), read: 0, failed: false })
}

/// How many bytes a batch's records decompress to (at most `DECOMPRESSED_BATCH_BYTES_MAX`).
fn decompressed_bytes(records: &[u8], codec: Codec) -> Result<u64, BatchError> {
    let undecodable = |reason: String| BatchError::Decompression { codec: codec.name(), reason };
    let count = std::io::copy(&mut decompressor(records, codec)?, &mut std::io::sink())
        .map_err(|e| undecodable(e.to_string()))?;
    if count > DECOMPRESSED_BATCH_BYTES_MAX {
        let limit = DECOMPRESSED_BATCH_BYTES_MAX;
        return Err(undecodable(format!("the records decompress to more than {limit} bytes")));
    }
    Ok(count)
}

/// A reader that counts what it gave and remembers whether it failed: a rewrite's error is
/// the decompressor's when it did.
struct Watched<R: Read> {
    inner: R,
    read: u64,
    failed: bool,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(error) => {
                self.failed = true;
                Err(error)
            }
        }
    }
}

/// A writer into memory that refuses to hold more than `room` bytes.
struct Capped {
    bytes: Vec<u8>,
    room: usize,
    exceeded: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.room {
            self.exceeded = true;
            return Err(std::io::Error::other("the rewritten batch exceeds max.message.bytes"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams `source`'s bytes (`plain_bytes` of them, when known) into `sink`, compressed as
/// `target` says.
fn pack_stream(
    source: &mut impl Read,
    sink: &mut Capped,
    target: Recompression,
    plain_bytes: Option<u64>,
) -> std::io::Result<()> {
    use std::io::Write;
    match target {
        Recompression::None => std::io::copy(source, sink).map(|_| ()),
        Recompression::Gzip { level } => {
            let level = flate2::Compression::new(level.min(9));
            let mut encoder = flate2::write::GzEncoder::new(sink, level);
            std::io::copy(source, &mut encoder)?;
            encoder.finish().map(|_| ())
        }
        Recompression::Snappy => {
            sink.write_all(XERIAL_MAGIC)?;
            sink.write_all(&1i32.to_be_bytes())?;
            sink.write_all(&1i32.to_be_bytes())?;
            let mut chunk = vec![0u8; XERIAL_BLOCK_BYTES];
            let mut encoder = snap::raw::Encoder::new();
            loop {
                let filled = fill(source, &mut chunk)?;
                let Some(part) = chunk.get(..filled).filter(|part| !part.is_empty()) else {
                    return Ok(());
                };
                let block = encoder.compress_vec(part)?;
                let length =
                    u32::try_from(block.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
                sink.write_all(&length.to_be_bytes())?;
                sink.write_all(&block)?;
            }
        }
        Recompression::Lz4 { level } => {
            let level = level.min(LZ4_LEVEL_MAX);
            let mut encoder = lz4::EncoderBuilder::new()
                .level(level)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(sink)?;
            std::io::copy(source, &mut encoder)?;
            let (_, result) = encoder.finish();
            result
        }
        Recompression::Zstd { level } => {
            let mut encoder = zstd::stream::write::Encoder::new(sink, level)?;
            // Without the size, zstd sizes its window and tables for any input: at level 22,
            // some 700 MiB per rewrite.
            encoder.set_pledged_src_size(plain_bytes)?;
            std::io::copy(source, &mut encoder)?;
            encoder.finish().map(|_| ())
        }
    }
}

/// Reads into `buf` until it is full or the source ends: how many bytes it holds.
fn fill(source: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match source.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// `records` compressed as `target` says, for [`compress`].
fn pack(records: &[u8], target: Recompression) -> std::io::Result<Vec<u8>> {
    let mut sink = Capped { bytes: Vec::new(), room: usize::MAX, exceeded: false };
    pack_stream(&mut &records[..], &mut sink, target, Some(records.len() as u64))?;
    Ok(sink.bytes)
}

/// Bytes of records per block in the xerial snappy framing (snappy-java's default).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// liblz4's highest (HC) level; Kafka's levels above it compress as it does.
const LZ4_LEVEL_MAX: u32 = 12;

/// A batch of `header` (its first `BATCH_HEADER_BYTES`) and `packed` records in the codec
/// `codec_id`: the length, the codec bits and the CRC fixed.
fn rebuild(header: &[u8], packed: &[u8], codec_id: i16) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + packed.len());
    out.extend_from_slice(header);
    out.extend_from_slice(packed);
    let length = i32::try_from(out.len() - 12).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let attributes =
        header.get(21..23).and_then(|b| <[u8; 2]>::try_from(b).ok()).map_or(0, i16::from_be_bytes);
    let attributes = (attributes & !0x07) | codec_id;
    patch(&mut out, 8, &length.to_be_bytes());
    patch(&mut out, 21, &attributes.to_be_bytes());
    let crc = crc32c::crc32c(out.get(21..).unwrap_or_default());
    patch(&mut out, 17, &crc.to_be_bytes());
    Ok(out)
}

/// How [`compress`] compresses a batch's records: each codec as clients write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (one member).
    Gzip,
    /// One raw snappy block, as librdkafka writes it.
    SnappyRaw,
    /// xerial snappy-java framing, as the Java client writes it.
    SnappyXerial,
    /// The lz4 frame format.
    Lz4,
    /// zstd, one frame.
    Zstd,
}

impl Compression {
    fn attribute(self) -> i16 {
        match self {
            Compression::Gzip => 1,
            Compression::SnappyRaw | Compression::SnappyXerial => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Returns `batch` (an uncompressed batch, e.g. from [`crate::batch::build_batch`]) with its
/// records compressed, the codec bits set and the length and CRC fixed. For tests,
/// benchmarks and fuzz seeds.
pub fn compress(batch: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    let header = batch.get(..BATCH_HEADER_BYTES).ok_or(std::io::ErrorKind::UnexpectedEof)?;
    let records = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let packed = match compression {
        Compression::Gzip => pack(records, Recompression::Gzip { level: 6 })?,
        Compression::SnappyRaw => snap::raw::Encoder::new().compress_vec(records)?,
        Compression::SnappyXerial => pack(records, Recompression::Snappy)?,
        Compression::Lz4 => pack(records, Recompression::Lz4 { level: 0 })?,
        Compression::Zstd => pack(records, Recompression::Zstd { level: 3 })?,
    };
    rebuild(header, &packed, compression.attribute())
}

fn patch(batch: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(field) = batch.get_mut(at..at + bytes.len()) {
        field.copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::{put_bytes, put_varint};

    /// A source that never has bytes at hand: every record is read byte by byte, as one
    /// across a stream's buffer is.
    struct ByteByByte<'a>(Slice<'a>);

    impl Source for ByteByByte<'_> {
        fn next_byte(&mut self) -> Option<u8> {
            self.0.next_byte()
        }
        fn skip(&mut self, n: usize) -> bool {
            self.0.skip(n)
        }
        fn failure(&mut self) -> Option<BatchError> {
            None
        }
        fn at_hand(&self) -> &[u8] {
            &[]
        }
        fn advance(&mut self, n: usize) {
            assert_eq!(n, 0, "nothing is at hand");
        }
    }

    type Header = (Option<Vec<u8>>, Option<Vec<u8>>);
    /// A record's timestamp delta, key, value and headers.
    type Written = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<Header>);

    /// Records as `DefaultRecord.writeTo` writes them, offset deltas 0, 1, 2, ...
    fn encode(records: &[Written]) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, (timestamp_delta, key, value, headers)) in records.iter().enumerate() {
            let mut body = vec![0u8];
            put_varint(&mut body, *timestamp_delta);
            put_varint(&mut body, index as i64);
            put_bytes(&mut body, key.as_deref());
            put_bytes(&mut body, value.as_deref());
            put_varint(&mut body, headers.len() as i64);
            for (key, value) in headers {
                put_bytes(&mut body, key.as_deref());
                put_bytes(&mut body, value.as_deref());
            }
            put_varint(&mut out, body.len() as i64);
            out.extend_from_slice(&body);
        }
        out
    }

    fn field() -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 0..12))
    }

    /// What a walk over `source` finds: its answer, as text, and the keyless records.
    fn walked(source: &mut impl Source, declared: Declared) -> (String, Vec<i32>) {
        let mut keyless = Vec::new();
        let answer = walk_source(source, declared, true, &mut |seen: &SeenRecord| {
            if seen.key_is_null {
                keyless.push(seen.index);
            }
            ControlFlow::Continue(())
        });
        (format!("{answer:?}"), keyless)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Records read from one slice (the fast path) and byte by byte give the same
        /// answer, the same error included, whatever was changed in them.
        #[test]
        fn records_at_hand_read_as_records_byte_by_byte(
            records in proptest::collection::vec(
                (
                    any::<i64>(),
                    field(),
                    field(),
                    proptest::collection::vec((field(), field()), 0..3),
                ),
                1..8,
            ),
            changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            extra in 0i32..2,
            base_timestamp in any::<i64>(),
        ) {
            let mut bytes = encode(&records);
            for (at, byte) in changes {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let declared = Declared { count: records.len() as i32 + extra, base_timestamp };
            let fast = walked(&mut Slice { bytes: &bytes, at: 0 }, declared);
            let slow = walked(&mut ByteByByte(Slice { bytes: &bytes, at: 0 }), declared);
            prop_assert_eq!(fast, slow);
        }
    }

    /// Every way a batch arrives, and every codec a topic may store it in.
    const SENT: [Option<Compression>; 6] = [
        None,
        Some(Compression::Gzip),
        Some(Compression::SnappyRaw),
        Some(Compression::SnappyXerial),
        Some(Compression::Lz4),
        Some(Compression::Zstd),
    ];
    const STORED: [Recompression; 5] = [
        Recompression::None,
        Recompression::Gzip { level: 1 },
        Recompression::Snappy,
        Recompression::Lz4 { level: 9 },
        Recompression::Zstd { level: -3 },
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// A batch rewritten in another codec validates, names that codec, keeps every
        /// header field but the length, codec bits and CRC, and holds the same records:
        /// rewritten back to uncompressed it is the batch as built, byte for byte.
        #[test]
        fn recompressed_batches_hold_the_same_records(
            values in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..300),
                1..40,
            ),
            sent in 0usize..SENT.len(),
            stored in 0usize..STORED.len(),
            producer in proptest::option::of((0i64..1000, 0i16..5, 0i32..1000)),
        ) {
            let records: Vec<crate::batch::KeyValue<'_>> =
                values.iter().map(|v| (Some(&v[..v.len().min(3)]), Some(v.as_slice()))).collect();
            let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
            let spec = crate::batch::BatchSpec {
                timestamp_ms: 1_700_000_000_000,
                producer_id,
                producer_epoch,
                base_sequence,
                ..Default::default()
            };
            let plain = crate::batch::build_batch(&spec, &records);
            let arrived = match SENT[sent] {
                Some(codec) => compress(&plain, codec).unwrap(),
                None => plain.clone(),
            };
            let target = STORED[stored];
            let before = crate::batch::validate(&arrived).unwrap();
            let Some(rewritten) = recompress(&arrived, &before, target, u32::MAX).unwrap() else {
                prop_assert_eq!(Codec::from_attributes(before.attributes).unwrap(), target.codec());
                return Ok(());
            };
            let after = crate::batch::validate(&rewritten).unwrap();
            prop_assert_eq!(Codec::from_attributes(after.attributes).unwrap(), target.codec());
            prop_assert_eq!(after.attributes & !0x07, before.attributes & !0x07);
            prop_assert_eq!(after.record_timestamps, before.record_timestamps);
            let same = |h: &crate::batch::BatchHeader| {
                (h.base_offset, h.last_offset_delta, h.base_timestamp, h.max_timestamp,
                 h.producer_id, h.producer_epoch, h.base_sequence, h.records_count)
            };
            prop_assert_eq!(same(&after), same(&before));
            let back = recompress(&rewritten, &after, Recompression::None, u32::MAX)
                .unwrap()
                .unwrap_or(rewritten);
            prop_assert_eq!(back, plain);
        }
    }

    /// A batch larger than the codecs' blocks (64 KiB for lz4, 32 KiB for snappy's xerial
    /// framing): lz4 in the frame Kafka's Java reader needs (independent blocks, no block or
    /// content checksum), zstd with its size in the frame, and every codec back to the same
    /// records.
    #[test]
    fn large_batches_are_written_in_the_frames_kafka_reads() {
        let values: Vec<Vec<u8>> = (0..3000u64)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", i.pow(3) % 9973).into_bytes())
            .collect();
        let records: Vec<crate::batch::KeyValue<'_>> =
            values.iter().map(|v| (None, Some(v.as_slice()))).collect();
        let plain = crate::batch::build_batch(&Default::default(), &records);
        assert!(plain.len() > 64 * 1024, "{} bytes", plain.len());
        for target in STORED.into_iter().skip(1) {
            let header = crate::batch::validate(&plain).unwrap();
            let packed = recompress(&plain, &header, target, u32::MAX).unwrap().unwrap();
            let packed_header = crate::batch::validate(&packed).unwrap();
            let frame = &packed[BATCH_HEADER_BYTES..];
            match target {
                Recompression::Lz4 { .. } => {
                    let flags = frame[4];
                    assert_eq!(flags & 0x20, 0x20, "independent blocks");
                    assert_eq!(flags & 0x10, 0, "no block checksums");
                    assert_eq!(flags & 0x04, 0, "no content checksum");
                }
                Recompression::Zstd { .. } => {
                    let size = zstd::zstd_safe::get_frame_content_size(frame).unwrap();
                    assert_eq!(size, Some((plain.len() - BATCH_HEADER_BYTES) as u64));
                }
                _ => {}
            }
            let back = recompress(&packed, &packed_header, Recompression::None, u32::MAX);
            let back = back.unwrap().unwrap();
            assert_eq!(back, plain, "{target:?}");
        }
    }

    /// An uncompressed batch whose records' offset deltas do not run 0, 1, 2, ... is refused
    /// a rewrite into a compressed codec: compressed batches must have them in order (Kafka
    /// would renumber them; sluice keeps the records' bytes).
    #[test]
    fn records_out_of_offset_order_are_not_compressed() {
        let values: [&[u8]; 2] = [b"a", b"b"];
        let mut batch = crate::batch::build(0, 1, &values);
        // The second record's offset delta (a zigzag varint after its length, attributes and
        // timestamp delta, each one byte here) from 1 to 0.
        let second = BATCH_HEADER_BYTES + 1 + usize::from(batch[BATCH_HEADER_BYTES]) / 2;
        assert_eq!(batch[second + 3], 2, "offset delta 1, zigzag-encoded");
        batch[second + 3] = 0;
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let validated = crate::batch::validate(&batch).unwrap();
        assert_eq!(validated.offsets_in_order, Some(false), "uncompressed, it validates");
        // As the log's validation says it, and from a header whose records were not walked.
        for header in [validated, crate::batch::parse_header(&batch).unwrap()] {
            let refused = recompress(&batch, &header, Recompression::Snappy, u32::MAX);
            let refused = refused.unwrap_err();
            assert!(matches!(refused, BatchError::MalformedRecords { .. }), "{refused:?}");
        }
    }

    /// A control batch (a transaction marker) is never rewritten, as in Kafka.
    #[test]
    fn control_batches_are_stored_as_written() {
        let marker = crate::batch::build_marker(7, 0, crate::batch::ControlType::Commit, 0, 1);
        let header = crate::batch::parse_header(&marker).unwrap();
        let gzip = Recompression::Gzip { level: 6 };
        assert_eq!(recompress(&marker, &header, gzip, u32::MAX), Ok(None));
    }

    fn slow(bytes: &[u8], max_bytes: u32) -> Option<i64> {
        let mut source = Slice { bytes, at: 0 };
        let first = source.next_byte()?;
        varint_from(first, max_bytes, || source.next_byte())
    }

    /// Kafka's limits: an int32 varint is at most 5 bytes and decodes to an int32, a varlong
    /// at most 10 bytes; the fast path (whole varint at hand) and the byte-by-byte one agree.
    #[test]
    fn varints_decode_as_kafka_reads_them() {
        let cases: [(&[u8], u32, Option<i64>); 7] = [
            (&[0x01], 5, Some(-1)),
            (&[0xff, 0xff, 0xff, 0xff, 0x0f], 5, Some(i64::from(i32::MIN))),
            (&[0xfe, 0xff, 0xff, 0xff, 0x0f], 5, Some(i64::from(i32::MAX))),
            (&[0xff, 0xff, 0xff, 0xff, 0x1f], 5, None), // beyond int32
            (&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 5, None), // 6 bytes
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 10, Some(i64::MIN)),
            (&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 10, None),
        ];
        for (bytes, max_bytes, expected) in cases {
            assert_eq!(slow(bytes, max_bytes), expected, "{bytes:02x?}");
            // Padded to 16 bytes, inside a record of 16: the fast path.
            let mut padded = bytes.to_vec();
            padded.resize(16, 0);
            let mut source = Slice { bytes: &padded, at: 0 };
            let mut record = Record { source: &mut source, left: padded.len() };
            assert_eq!(record.varint(max_bytes), expected, "fast {bytes:02x?}");
            if expected.is_some() {
                assert_eq!(source.at, bytes.len(), "fast path consumed {bytes:02x?}");
            }
        }
    }
}
