//! `sluice bench validate`: what the broker does to every produced batch before it writes
//! it (CRC32C, then the walk that reads every record, decompressing as a stream), for each
//! codec, against one core doing only the unavoidable part on the same batches:
//! decompressing them (or, uncompressed, the CRC32C). The ratio shows what the walk and the
//! CRC add to that.
//!
//! Batches are `VALIDATE_BATCH_RECORDS` JSON events of about 300 bytes each (the delivery
//! benchmark's records, under 1 MiB a batch), compressed with each codec: gzip, raw snappy
//! (librdkafka's), lz4 frames (with the lz4 crate's default checksums), zstd level 3. Each
//! validation and its limit take turns, one whole pass over the batches each, until each
//! has run for `VALIDATE_SECS_MIN`; each keeps its fastest pass.
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use sluice_wire::batch::{self, Compression};
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

/// Results of `sluice bench validate`.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateResult {
    /// One run per codec.
    pub runs: Vec<ValidateRun>,
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
    Ok(ValidateResult { runs })
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
