//! What the `request_decode` fuzz target feeds each input to, in one place, so the corpus
//! replay test (`tests/it`) runs exactly what the fuzzer runs.
use bytes::Bytes;

use crate::limits::BATCH_HEADER_BYTES;
use crate::{batch, request};

/// Decodes `data` as a request, validates it as record batches, as one batch with its
/// length and CRC made to match (so validation reaches the walk over the records), looks a
/// timestamp up in both, and rewrites that batch in every codec (`compression.type`).
/// Results are dropped: only a panic or an abort is a finding.
pub fn decode_untrusted(data: &[u8]) {
    let _ = request::decode(Bytes::copy_from_slice(data));
    let _ = batch::validate_all(data, 1 << 20);
    if data.len() >= BATCH_HEADER_BYTES {
        let mut fixed = data.to_vec();
        let length = i32::try_from(fixed.len() - 12).unwrap_or(i32::MAX);
        if let Some(field) = fixed.get_mut(8..12) {
            field.copy_from_slice(&length.to_be_bytes());
        }
        let crc = crc32c::crc32c(fixed.get(21..).unwrap_or_default());
        if let Some(field) = fixed.get_mut(17..21) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
        let _ = batch::validate_all(&fixed, 1 << 20);
        let _ = batch::first_record_at_or_after(&fixed, 0);
        // The rewrite a topic's compression.type asks for, into every codec.
        let targets = [
            batch::Recompression::None,
            batch::Recompression::Gzip { level: 1 },
            batch::Recompression::Snappy,
            batch::Recompression::Lz4 { level: 0 },
            batch::Recompression::Zstd { level: 1 },
        ];
        // With a header as validation gives it, and as parsing alone gives it (the records
        // then walked by the rewrite itself).
        let headers = [batch::validate(&fixed), batch::parse_header(&fixed)];
        for header in headers.iter().flatten() {
            for target in targets {
                if let Ok(Some(rewritten)) = batch::recompress(&fixed, header, target, 1 << 20) {
                    let _ = batch::validate_all(&rewritten, 1 << 20);
                }
            }
        }
    }
    if let Some(rest) = data.get(8..) {
        let _ = batch::first_record_at_or_after(rest, 0);
    }
}
