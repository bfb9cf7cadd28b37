//! `sluice bench validate`: what the broker does to every produced batch before it writes
//! it (CRC32C, then the walk that reads every record, decompressing as a stream), for each
//! codec, against one core doing only the unavoidable part on the same batches:
//! decompressing them (or, uncompressed, the CRC32C). The ratio shows what the walk and the
//! CRC add to that.
//!
//! Batches are `VALIDATE_BATCH_RECORDS` JSON events of about 300 bytes each (the delivery
//! benchmark's records, under 1 MiB a batch), compressed with each codec: gzip, raw snappy
//! (librdkafka's), lz4 frames (as Kafka writes them), zstd level 3. Each
//! validation and its limit take turns, one whole pass over the batches each, until each
//! has run for `VALIDATE_SECS_MIN`; each keeps its fastest pass.
//!
//! Then the rewrite a topic's `compression.type` asks of the broker on append
//! (`batch::recompress`): the uncompressed batches into each codec at Kafka's default level,
//! and the zstd ones into an uncompressed topic, each against the codecs' own work on the
//! same records (compressing into the target, or decompressing the zstd).
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use sluice_wire::batch::{self, Compression, Recompression};
use sluice_wire::limits::BATCH_HEADER_BYTES;

use super::limits::{MIB, VALIDATE_BATCHES, VALIDATE_BATCH_RECORDS, VALIDATE_SECS_MIN};

/// One codec's run.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateRun {
    /// The codec.
    pub codec: &'static str,
    /// Uncompressed bytes per pass (records and headers).
    pub uncompressed_bytes: u64,
    /// Bytes per pass as sent.
    pub sent_bytes: u64,
    /// The broker's validation, MiB/s of uncompressed batches.
    pub validate_mib_per_s: f64,
    /// The limit: decompression alone (CRC32C alone when uncompressed), MiB/s likewise.
    pub limit_mib_per_s: f64,
}

/// One rewrite of a codec's batches in a topic's `compression.type`.
#[derive(Debug, Clone, Serialize)]
pub struct RecompressRun {
    /// The codec the batches arrive in.
    pub from: &'static str,
    /// The topic's `compression.type`.
    pub to: &'static str,
    /// Uncompressed bytes per pass.
    pub uncompressed_bytes: u64,
    /// The broker's rewrite (`batch::recompress`), MiB/s of uncompressed batches.
    pub recompress_mib_per_s: f64,
    /// The limit: the codecs' own work alone on the records (decompressing what arrives
    /// compressed, compressing into the topic's codec), MiB/s likewise.
    pub limit_mib_per_s: f64,
}

/// Results of `sluice bench validate`.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateResult {
    /// One run per codec.
    pub runs: Vec<ValidateRun>,
    /// Rewrites in a topic's `compression.type`: what producers send most (uncompressed)
    /// into each codec at Kafka's default level, and zstd into an uncompressed topic.
    pub recompress: Vec<RecompressRun>,
}

/// Runs every codec.
pub fn run() -> Result<ValidateResult> {
    let mut events = super::delivery::records();
    let plain: Vec<Vec<u8>> = (0..VALIDATE_BATCHES)
        .map(|_| {
            let values: Vec<Vec<u8>> = events.by_ref().take(VALIDATE_BATCH_RECORDS).collect();
            let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            batch::build(0, 1_790_000_000_000, &slices)
        })
        .collect();
    let uncompressed_bytes: u64 = plain.iter().map(|b| b.len() as u64).sum();
    let codecs: [(&'static str, Option<Compression>); 5] = [
        ("none", None),
        ("gzip", Some(Compression::Gzip)),
        ("snappy", Some(Compression::SnappyRaw)),
        ("lz4", Some(Compression::Lz4)),
        ("zstd", Some(Compression::Zstd)),
    ];
    let mut runs = Vec::new();
    for (codec, compression) in codecs {
        let sent: Vec<Vec<u8>> = match compression {
            None => plain.clone(),
            Some(compression) => plain
                .iter()
                .map(|b| batch::compress(b, compression))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("cannot compress the batches with {codec}"))?,
        };
        let validate = || -> Result<()> {
            for one in &sent {
                let header = batch::validate(one).context("a benchmark batch fails validation")?;
                std::hint::black_box(header);
            }
            Ok(())
        };
        let limit = || -> Result<()> {
            for one in &sent {
                unavoidable(one, compression).with_context(|| format!("{codec} fails"))?;
            }
            Ok(())
        };
        let (validate_secs, limit_secs) = best_pass_secs(validate, limit)?;
        let mib = uncompressed_bytes as f64 / MIB as f64;
        runs.push(ValidateRun {
            codec,
            uncompressed_bytes,
            sent_bytes: sent.iter().map(|b| b.len() as u64).sum(),
            validate_mib_per_s: mib / validate_secs,
            limit_mib_per_s: mib / limit_secs,
        });
    }
    let recompress = recompress_runs(&plain, uncompressed_bytes)?;
    Ok(ValidateResult { runs, recompress })
}

/// Rewrites of the benchmark batches as a topic's `compression.type` makes the broker
/// rewrite them on append, each against the codecs' own work.
fn recompress_runs(plain: &[Vec<u8>], uncompressed_bytes: u64) -> Result<Vec<RecompressRun>> {
    let zstd: Vec<Vec<u8>> = plain
        .iter()
        .map(|b| batch::compress(b, Compression::Zstd))
        .collect::<std::io::Result<_>>()
        .context("cannot compress the batches with zstd")?;
    let pairs: [(&'static str, &[Vec<u8>], &'static str, Recompression); 5] = [
        ("none", plain, "gzip", Recompression::Gzip { level: 6 }),
        ("none", plain, "snappy", Recompression::Snappy),
        // Kafka's default lz4 level (9) is lz4's fast compressor (liblz4 level 0).
        ("none", plain, "lz4", Recompression::Lz4 { level: 0 }),
        ("none", plain, "zstd", Recompression::Zstd { level: 3 }),
        ("zstd", &zstd, "none", Recompression::None),
    ];
    let mut runs = Vec::new();
    for (from, sent, to, target) in pairs {
        // Validated before the clock starts, as on append (where the walk reads them).
        let headers: Vec<batch::BatchHeader> = sent
            .iter()
            .map(|one| batch::validate(one))
            .collect::<std::result::Result<_, _>>()
            .context("a benchmark batch fails validation")?;
        let rewrite = || -> Result<()> {
            for (one, header) in sent.iter().zip(&headers) {
                let rewritten =
                    batch::recompress(one, header, target, u32::MAX).context("a rewrite fails")?;
                std::hint::black_box(rewritten);
            }
            Ok(())
        };
        let limit = || -> Result<()> {
            for one in sent {
                codecs_alone(one, target).with_context(|| format!("{from} to {to} fails"))?;
            }
            Ok(())
        };
        let (rewrite_secs, limit_secs) = best_pass_secs(rewrite, limit)?;
        let mib = uncompressed_bytes as f64 / MIB as f64;
        runs.push(RecompressRun {
            from,
            to,
            uncompressed_bytes,
            recompress_mib_per_s: mib / rewrite_secs,
            limit_mib_per_s: mib / limit_secs,
        });
    }
    Ok(runs)
}

/// The codecs' work in a rewrite of `one` into `target`, with nothing around it: the
/// records compressed with the target's encoder (those of the benchmark arrive
/// uncompressed), or, into an uncompressed topic, the zstd records decompressed.
fn codecs_alone(one: &[u8], target: Recompression) -> std::io::Result<()> {
    use std::io::Write;
    let records = one.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    match target {
        Recompression::None => {
            let mut plain = Vec::new();
            std::io::copy(&mut zstd::stream::read::Decoder::new(records)?, &mut plain)?;
            std::hint::black_box(plain);
        }
        Recompression::Gzip { level } => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            encoder.write_all(records)?;
            std::hint::black_box(encoder.finish()?);
        }
        Recompression::Snappy => {
            let mut encoder = snap::raw::Encoder::new();
            for chunk in records.chunks(32 * 1024) {
                std::hint::black_box(encoder.compress_vec(chunk)?);
            }
        }
        Recompression::Lz4 { level } => {
            // The frame the broker writes: independent blocks, no checksums (as Kafka's).
            let mut encoder = lz4::EncoderBuilder::new()
                .level(level)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())?;
            encoder.write_all(records)?;
            let (out, result) = encoder.finish();
            result?;
            std::hint::black_box(out);
        }
        Recompression::Zstd { level } => {
            // With the records' size, as the broker's rewrite gives it.
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level)?;
            encoder.set_pledged_src_size(Some(records.len() as u64))?;
            encoder.write_all(records)?;
            std::hint::black_box(encoder.finish()?);
        }
    }
    Ok(())
}

/// Seconds of one pass of `first` and of `second`, each the fastest of its passes, the two
/// taking turns pass by pass for `VALIDATE_SECS_MIN` each: whatever else slows the machine
/// (the VM's neighbours move a pass's time by up to 2x here) falls on both alike.
fn best_pass_secs(
    mut first: impl FnMut() -> Result<()>,
    mut second: impl FnMut() -> Result<()>,
) -> Result<(f64, f64)> {
    let (mut best_first, mut best_second) = (f64::INFINITY, f64::INFINITY);
    let started = Instant::now();
    while best_first.is_infinite() || started.elapsed().as_secs_f64() < 2.0 * VALIDATE_SECS_MIN {
        let pass = Instant::now();
        first()?;
        best_first = best_first.min(pass.elapsed().as_secs_f64());
        let pass = Instant::now();
        second()?;
        best_second = best_second.min(pass.elapsed().as_secs_f64());
    }
    Ok((best_first, best_second))
}

/// Decompresses the batch's records into nothing (or, uncompressed, computes its CRC32C):
/// what any broker must spend to look at each record.
fn unavoidable(one: &[u8], compression: Option<Compression>) -> std::io::Result<()> {
    let records = one.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let mut sink = std::io::sink();
    match compression {
        None => {
            // The CRC covers the batch from its attributes (byte 21) on.
            std::hint::black_box(crc32c::crc32c(one.get(21..).unwrap_or_default()));
        }
        Some(Compression::Gzip) => {
            std::io::copy(&mut flate2::read::MultiGzDecoder::new(records), &mut sink)?;
        }
        Some(Compression::SnappyRaw | Compression::SnappyXerial) => {
            let out = snap::raw::Decoder::new().decompress_vec(records)?;
            std::hint::black_box(out);
        }
        Some(Compression::Lz4) => {
            std::io::copy(&mut lz4::Decoder::new(records)?, &mut sink)?;
        }
        Some(Compression::Zstd) => {
            std::io::copy(&mut zstd::stream::read::Decoder::new(records)?, &mut sink)?;
        }
    }
    Ok(())
}
