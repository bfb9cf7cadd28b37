//! Firehose's compression formats for S3 objects, written incrementally as records arrive
//! so an object is compressed by the time it is due, and only its compressed bytes are held.
//!
//! - `UNCOMPRESSED`;
//! - `GZIP` (`.gz`): one gzip member, flate2's default level;
//! - `ZIP` (`.zip`): an archive holding one deflated entry named like the object;
//! - `Snappy` (`.snappy`): the Snappy framing format, what python-snappy's
//!   `stream_decompress` reads;
//! - `HADOOP_SNAPPY` (`.hsnappy`, Firehose's documented extension): Hadoop's block stream: for each block of at most 256 KiB,
//!   its length (u32, big-endian), then its compressed length (u32, big-endian) and the raw
//!   Snappy block.
use std::io::{self, Write};

use flate2::write::GzEncoder;

use crate::limits::HADOOP_SNAPPY_BLOCK_BYTES;

/// `CompressionFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `UNCOMPRESSED`.
    Uncompressed,
    /// `GZIP`.
    Gzip,
    /// `ZIP`.
    Zip,
    /// `Snappy`.
    Snappy,
    /// `HADOOP_SNAPPY`.
    HadoopSnappy,
}

impl Compression {
    /// Parses Firehose's name.
    pub fn parse(name: &str) -> Option<Compression> {
        match name {
            "UNCOMPRESSED" => Some(Compression::Uncompressed),
            "GZIP" => Some(Compression::Gzip),
            "ZIP" => Some(Compression::Zip),
            "Snappy" => Some(Compression::Snappy),
            "HADOOP_SNAPPY" => Some(Compression::HadoopSnappy),
            _ => None,
        }
    }

    /// Firehose's name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Uncompressed => "UNCOMPRESSED",
            Compression::Gzip => "GZIP",
            Compression::Zip => "ZIP",
            Compression::Snappy => "Snappy",
            Compression::HadoopSnappy => "HADOOP_SNAPPY",
        }
    }

    /// The default file extension Firehose gives an object of this format.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Zip => ".zip",
            Compression::Snappy => ".snappy",
            Compression::HadoopSnappy => ".hsnappy",
        }
    }
}

/// An object's bytes being compressed.
pub enum Encoder {
    /// Stored as written.
    Plain(Vec<u8>),
    /// A gzip member.
    Gzip(GzEncoder<Vec<u8>>),
    /// A one-entry zip archive.
    Zip(Box<zip::ZipWriter<io::Cursor<Vec<u8>>>>),
    /// Snappy frames.
    Snappy(Box<snap::write::FrameEncoder<Vec<u8>>>),
    /// Hadoop's Snappy blocks: the raw bytes of the open block, and the output.
    HadoopSnappy {
        /// Bytes of the block being gathered.
        block: Vec<u8>,
        /// Finished blocks.
        out: Vec<u8>,
    },
}

impl Encoder {
    /// Starts an object; `entry` names the zip entry.
    pub fn new(compression: Compression, entry: &str) -> io::Result<Encoder> {
        Ok(match compression {
            Compression::Uncompressed => Encoder::Plain(Vec::new()),
            Compression::Gzip => {
                Encoder::Gzip(GzEncoder::new(Vec::new(), flate2::Compression::default()))
            }
            Compression::Zip => {
                let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .large_file(false);
                writer.start_file(entry, options).map_err(io::Error::other)?;
                Encoder::Zip(Box::new(writer))
            }
            Compression::Snappy => {
                Encoder::Snappy(Box::new(snap::write::FrameEncoder::new(Vec::new())))
            }
            Compression::HadoopSnappy => {
                Encoder::HadoopSnappy { block: Vec::new(), out: Vec::new() }
            }
        })
    }

    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Plain(out) => out.extend_from_slice(bytes),
            Encoder::Gzip(encoder) => encoder.write_all(bytes)?,
            Encoder::Zip(writer) => writer.write_all(bytes)?,
            Encoder::Snappy(encoder) => encoder.write_all(bytes)?,
            Encoder::HadoopSnappy { block, out } => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let room = HADOOP_SNAPPY_BLOCK_BYTES - block.len();
                    let (now, later) = rest.split_at(room.min(rest.len()));
                    block.extend_from_slice(now);
                    rest = later;
                    if block.len() == HADOOP_SNAPPY_BLOCK_BYTES {
                        hadoop_block(block, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Bytes of output so far (compressors may hold some back until `finish`).
    pub fn output_bytes(&self) -> usize {
        match self {
            Encoder::Plain(out) => out.len(),
            Encoder::Gzip(encoder) => encoder.get_ref().len(),
            Encoder::Zip(_) => 0,
            Encoder::Snappy(encoder) => encoder.get_ref().len(),
            Encoder::HadoopSnappy { block, out } => block.len() + out.len(),
        }
    }

    /// Ends the object and returns its bytes.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Plain(out) => Ok(out),
            Encoder::Gzip(encoder) => encoder.finish(),
            Encoder::Zip(writer) => Ok(writer.finish().map_err(io::Error::other)?.into_inner()),
            Encoder::Snappy(encoder) => encoder.into_inner().map_err(|e| e.into_error()),
            Encoder::HadoopSnappy { mut block, mut out } => {
                if !block.is_empty() {
                    hadoop_block(&mut block, &mut out)?;
                }
                Ok(out)
            }
        }
    }
}

/// Appends one Hadoop Snappy block and empties `block`.
fn hadoop_block(block: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<()> {
    debug_assert!(block.len() <= HADOOP_SNAPPY_BLOCK_BYTES, "block of {} bytes", block.len());
    let compressed = snap::raw::Encoder::new().compress_vec(block).map_err(io::Error::other)?;
    // Both lengths fit: a block is at most 256 KiB and Snappy's worst case is ~1.17x that.
    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    out.extend_from_slice(&compressed);
    block.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use proptest::prelude::*;

    use super::*;

    fn encode(compression: Compression, chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut encoder = Encoder::new(compression, "records").unwrap();
        for chunk in chunks {
            encoder.write(chunk).unwrap();
        }
        encoder.finish().unwrap()
    }

    fn decode(compression: Compression, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match compression {
            Compression::Uncompressed => out.extend_from_slice(bytes),
            Compression::Gzip => {
                flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
            }
            Compression::Zip => {
                let mut archive = zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
                assert_eq!(archive.len(), 1);
                archive.by_index(0).unwrap().read_to_end(&mut out).unwrap();
            }
            Compression::Snappy => {
                snap::read::FrameDecoder::new(bytes).read_to_end(&mut out).unwrap();
            }
            Compression::HadoopSnappy => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let raw = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    let length = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
                    let block =
                        snap::raw::Decoder::new().decompress_vec(&rest[8..8 + length]).unwrap();
                    assert_eq!(block.len(), raw);
                    assert!(raw <= HADOOP_SNAPPY_BLOCK_BYTES);
                    out.extend_from_slice(&block);
                    rest = &rest[8 + length..];
                }
            }
        }
        out
    }

    const ALL: [Compression; 5] = [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zip,
        Compression::Snappy,
        Compression::HadoopSnappy,
    ];

    #[test]
    fn names_round_trip() {
        for compression in ALL {
            assert_eq!(Compression::parse(compression.name()), Some(compression));
        }
        assert_eq!(Compression::parse("gzip"), None);
    }

    #[test]
    fn hadoop_snappy_splits_large_writes_into_blocks() {
        let big = vec![7u8; HADOOP_SNAPPY_BLOCK_BYTES * 2 + 10];
        let bytes = encode(Compression::HadoopSnappy, std::slice::from_ref(&big));
        assert_eq!(decode(Compression::HadoopSnappy, &bytes), big);
    }

    proptest! {
        #[test]
        fn every_format_round_trips(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..3000), 0..20)) {
            let all: Vec<u8> = chunks.concat();
            for compression in ALL {
                let bytes = encode(compression, &chunks);
                prop_assert_eq!(&decode(compression, &bytes), &all, "{:?}", compression);
            }
        }
    }
}
