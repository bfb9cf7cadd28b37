//! The walk over a batch's records on append, compressed or not, as Kafka's LogValidator
//! walks them: exactly `recordsCount` records must fill the batch, each long enough for its
//! attributes, timestamp delta and offset delta; inside a compressed batch the offset
//! deltas must run 0, 1, 2, ... The walk returns the smallest and largest record timestamps
//! (KIP-937 checks each record, and the header's `maxTimestamp` is set from them).
//!
//! Compressed records are read through a decompressing stream (gzip, lz4, zstd), so a batch
//! is never held decompressed in memory; snappy, which has no streaming decoder here, is
//! decompressed whole, and a length it claims beyond what snappy can encode in its input is
//! refused before anything is allocated.
use std::io::{BufRead, BufReader, Read};

use crate::limits::{BATCH_HEADER_BYTES, SNAPPY_EXPANSION_MAX};
use crate::BatchError;

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

/// Walks the records of a whole batch (`batch` from its first byte, CRC already checked) and
/// returns their smallest and largest timestamps.
pub(crate) fn walk(
    batch: &[u8],
    codec: Codec,
    declared: Declared,
) -> Result<(i64, i64), BatchError> {
    let records = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let undecodable = |reason: String| BatchError::Decompression { codec: codec.name(), reason };
    match codec {
        Codec::None => walk_source(&mut Slice { bytes: records, at: 0 }, declared, false),
        Codec::Snappy => {
            let plain = snappy_decompress(records).map_err(undecodable)?;
            walk_source(&mut Slice { bytes: &plain, at: 0 }, declared, true)
        }
        Codec::Gzip => {
            let reader = flate2::read::MultiGzDecoder::new(records);
            walk_source(&mut Stream::new(reader, codec), declared, true)
        }
        Codec::Lz4 => {
            let reader = lz4::Decoder::new(records).map_err(|e| undecodable(e.to_string()))?;
            walk_source(&mut Stream::new(reader, codec), declared, true)
        }
        Codec::Zstd => {
            let reader = zstd::stream::read::Decoder::new(records)
                .map_err(|e| undecodable(e.to_string()))?;
            walk_source(&mut Stream::new(reader, codec), declared, true)
        }
    }
}

/// Where the walk reads record bytes from. A source that fails (a stream that does not
/// decompress) ends as if the records ended, and reports why in [`Source::failure`].
trait Source {
    /// The next byte, or `None` at the end of the records.
    fn next_byte(&mut self) -> Option<u8>;
    /// Skips exactly `n` bytes; `false` when fewer remain.
    fn skip(&mut self, n: usize) -> bool;
    /// Why the records ended early, if they did.
    fn failure(&mut self) -> Option<BatchError>;
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
}

/// Records read through a decompressing stream.
struct Stream<R: Read> {
    reader: BufReader<R>,
    codec: Codec,
    failed: Option<std::io::Error>,
}

impl<R: Read> Stream<R> {
    fn new(reader: R, codec: Codec) -> Self {
        Stream { reader: BufReader::with_capacity(32 * 1024, reader), codec, failed: None }
    }

    /// The buffered bytes (empty at the end, or after a failure, which is kept).
    fn buffered(&mut self) -> &[u8] {
        if self.failed.is_some() {
            return &[];
        }
        match self.reader.fill_buf() {
            Ok(_) => self.reader.buffer(),
            Err(error) => {
                self.failed = Some(error);
                &[]
            }
        }
    }
}

impl<R: Read> Source for Stream<R> {
    fn next_byte(&mut self) -> Option<u8> {
        let byte = self.buffered().first().copied();
        if byte.is_some() {
            self.reader.consume(1);
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
            self.reader.consume(step);
            n -= step;
        }
        true
    }

    fn failure(&mut self) -> Option<BatchError> {
        let error = self.failed.take()?;
        Some(BatchError::Decompression { codec: self.codec.name(), reason: error.to_string() })
    }
}

/// A zigzag varint whose first byte is `first`; also returns how many bytes it took.
#[inline]
fn varint(first: u8, source: &mut impl Source) -> Option<(i64, usize)> {
    let mut raw = u64::from(first & 0x7f);
    let mut byte = first;
    let mut used = 1usize;
    let mut shift = 7u32;
    while byte & 0x80 != 0 {
        if shift >= 70 {
            return None;
        }
        let next = source.next_byte()?;
        raw |= u64::from(next & 0x7f).checked_shl(shift).unwrap_or(0);
        byte = next;
        used += 1;
        shift += 7;
    }
    Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), used))
}

/// The next varint of a record.
#[inline]
fn field(source: &mut impl Source) -> Option<(i64, usize)> {
    let first = source.next_byte()?;
    varint(first, source)
}

/// The walk; a source's failure takes precedence over what it made the walk find.
fn walk_source(
    source: &mut impl Source,
    declared: Declared,
    offsets_in_order: bool,
) -> Result<(i64, i64), BatchError> {
    let walked = walk_records(source, declared, offsets_in_order);
    match source.failure() {
        Some(failure) => Err(failure),
        None => walked,
    }
}

fn walk_records(
    source: &mut impl Source,
    declared: Declared,
    offsets_in_order: bool,
) -> Result<(i64, i64), BatchError> {
    let malformed =
        |reason: &'static str| BatchError::MalformedRecords { reason, declared: declared.count };
    let mut found = 0i64;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    while let Some(first) = source.next_byte() {
        if found >= i64::from(declared.count) {
            // One past the declared count is enough to refuse: a compressed batch could
            // otherwise keep the walk busy for as long as its decompressed size.
            return Err(BatchError::RecordsCountMismatch {
                declared: declared.count,
                found: found + 1,
            });
        }
        let (length, _) =
            varint(first, source).ok_or_else(|| malformed("a record length is cut"))?;
        let length =
            usize::try_from(length).map_err(|_| malformed("a record length is negative"))?;
        // The record's attributes byte: unused in magic v2.
        source.next_byte().ok_or_else(|| malformed("a record's attributes are cut"))?;
        let (delta, delta_bytes) =
            field(source).ok_or_else(|| malformed("a timestamp delta is cut"))?;
        let (offset_delta, offset_bytes) =
            field(source).ok_or_else(|| malformed("an offset delta is cut"))?;
        let used = 1 + delta_bytes + offset_bytes;
        let rest = length.checked_sub(used).ok_or_else(|| {
            malformed("a record is shorter than its attributes, timestamp and offset deltas")
        })?;
        if offsets_in_order && offset_delta != found {
            return Err(malformed(
                "the offset deltas inside a compressed batch do not run 0, 1, 2, ...",
            ));
        }
        if !source.skip(rest) {
            return Err(malformed("a record length runs past the batch"));
        }
        let timestamp = declared.base_timestamp.saturating_add(delta);
        (min, max) = (min.min(timestamp), max.max(timestamp));
        found += 1;
    }
    if found != i64::from(declared.count) {
        return Err(BatchError::RecordsCountMismatch { declared: declared.count, found });
    }
    debug_assert!(found >= 1, "recordsCount >= 1 was checked first");
    Ok((min, max))
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
    out.resize(start + length, 0);
    let target = out.get_mut(start..).unwrap_or_default();
    snap::raw::Decoder::new().decompress(block, target).map_err(|e| e.to_string())?;
    Ok(())
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
    use std::io::Write;
    let header = batch.get(..BATCH_HEADER_BYTES).ok_or(std::io::ErrorKind::UnexpectedEof)?;
    let records = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let packed = match compression {
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(records)?;
            encoder.finish()?
        }
        Compression::SnappyRaw => snap::raw::Encoder::new().compress_vec(records)?,
        Compression::SnappyXerial => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            for chunk in records.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new().compress_vec(chunk)?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Compression::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new().build(Vec::new())?;
            encoder.write_all(records)?;
            let (out, result) = encoder.finish();
            result?;
            out
        }
        Compression::Zstd => zstd::encode_all(records, 3)?,
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + packed.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&packed);
    let length = i32::try_from(out.len() - 12).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let attributes =
        header.get(21..23).and_then(|b| <[u8; 2]>::try_from(b).ok()).map_or(0, i16::from_be_bytes);
    let attributes = (attributes & !0x07) | compression.attribute();
    patch(&mut out, 8, &length.to_be_bytes());
    patch(&mut out, 21, &attributes.to_be_bytes());
    let crc = crc32c::crc32c(out.get(21..).unwrap_or_default());
    patch(&mut out, 17, &crc.to_be_bytes());
    Ok(out)
}

fn patch(batch: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(field) = batch.get_mut(at..at + bytes.len()) {
        field.copy_from_slice(bytes);
    }
}
