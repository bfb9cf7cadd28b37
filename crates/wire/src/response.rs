//! Response encoding: size prefix, header at the version the API dictates, body.
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::limits::FRAME_PREFIX_BYTES;
use crate::{versions, Error};

/// Encodes a whole response frame: size prefix, header, body.
pub fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, Error> {
    let fail = |reason: String| Error::Encode { api_key: api_key as i16, version, reason };
    // A Fetch response is mostly its record bytes: size the buffer once for them instead of
    // doubling it up from a few hundred bytes.
    let records: usize = match body {
        ResponseKind::Fetch(fetch) => fetch
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum(),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(256 + records + records / 64);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    // ApiVersions answers always use header v0, so a client that cannot parse our
    // version of the body can still read the error (KIP-511).
    let header_version = api_key.response_header_version(version);
    header.encode(&mut buf, header_version).map_err(|e| fail(format!("header: {e:#}")))?;
    body.encode(&mut buf, version).map_err(|e| fail(format!("{e:#}")))?;
    let size = (buf.len() - FRAME_PREFIX_BYTES) as i32;
    buf.get_mut(..FRAME_PREFIX_BYTES)
        .map(|prefix| prefix.copy_from_slice(&size.to_be_bytes()))
        .ok_or_else(|| fail("buffer shorter than its size prefix".into()))?;
    Ok(buf)
}

/// The ApiVersions body listing every served API, with `error_code`.
pub fn api_versions_body(error_code: i16) -> ApiVersionsResponse {
    let api_keys = versions::SUPPORTED
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

/// The KIP-511 answer to an ApiVersions request at a version we do not know: error 35
/// (UNSUPPORTED_VERSION) in the v0 body format, listing our ranges, so the client retries
/// with a version we serve.
pub fn unsupported_api_versions(correlation_id: i32) -> Result<BytesMut, Error> {
    const UNSUPPORTED_VERSION: i16 = 35;
    let body = ResponseKind::ApiVersions(api_versions_body(UNSUPPORTED_VERSION));
    encode(ApiKey::ApiVersions, 0, correlation_id, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_api_versions_is_v0_with_error_35() {
        let frame = unsupported_api_versions(9).unwrap();
        let size = i32::from_be_bytes(frame[0..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        assert_eq!(i32::from_be_bytes(frame[4..8].try_into().unwrap()), 9);
        assert_eq!(i16::from_be_bytes(frame[8..10].try_into().unwrap()), 35);
        let count = i32::from_be_bytes(frame[10..14].try_into().unwrap()) as usize;
        assert_eq!(count, versions::SUPPORTED.len());
    }
}
