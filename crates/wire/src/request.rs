//! Request decoding: header by hand (so a bad one never reaches a decoder), body by
//! `kafka-protocol` at the version the header names.
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::{versions, Error};

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// The header, client id included.
    pub header: RequestHeader,
    /// The API.
    pub api_key: ApiKey,
    /// The body.
    pub body: RequestKind,
}

impl Request {
    /// The version of the request (and so of its response).
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
    /// The correlation id to echo.
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// The fixed start of every request header: key, version, correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    /// As sent, not yet checked.
    pub api_key: i16,
    /// As sent, not yet checked.
    pub api_version: i16,
    /// As sent.
    pub correlation_id: i32,
}

/// Reads the first 8 bytes of a request body.
pub fn peek_prefix(frame: &[u8]) -> Result<HeaderPrefix, Error> {
    let bytes = frame.get(..8).ok_or(Error::HeaderTruncated { reason: "fewer than 8 bytes" })?;
    let mut key = [0u8; 2];
    let mut version = [0u8; 2];
    let mut correlation = [0u8; 4];
    key.copy_from_slice(bytes.get(0..2).unwrap_or(&[0, 0]));
    version.copy_from_slice(bytes.get(2..4).unwrap_or(&[0, 0]));
    correlation.copy_from_slice(bytes.get(4..8).unwrap_or(&[0, 0, 0, 0]));
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes(key),
        api_version: i16::from_be_bytes(version),
        correlation_id: i32::from_be_bytes(correlation),
    })
}

/// Decodes one request frame (without its size prefix).
///
/// Checks the API key and version against [`versions::SUPPORTED`] before any decoder runs.
/// A decoder panic (a bug in the codec) is caught and reported as [`Error::Malformed`], so
/// network input never takes the server down.
pub fn decode(frame: Bytes) -> Result<Request, Error> {
    let prefix = peek_prefix(&frame)?;
    let correlation_id = prefix.correlation_id;
    let unknown = Error::UnknownApiKey { api_key: prefix.api_key, correlation_id };
    let api_key = ApiKey::try_from(prefix.api_key).map_err(|_| unknown)?;
    let range = versions::range(api_key)
        .ok_or(Error::UnknownApiKey { api_key: prefix.api_key, correlation_id })?;
    let version = prefix.api_version;
    if version < range.min || version > range.max {
        return Err(Error::UnsupportedVersion {
            api_key: prefix.api_key,
            version,
            min: range.min,
            max: range.max,
            correlation_id,
        });
    }
    let malformed = |reason: String| Error::Malformed {
        api_key: prefix.api_key,
        version,
        reason,
        correlation_id,
    };
    let header_version = api_key.request_header_version(version);
    let mut buf = frame;
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        let header = RequestHeader::decode(&mut buf, header_version)
            .map_err(|e| format!("header: {e:#}"))?;
        let body = RequestKind::decode(api_key, &mut buf, version).map_err(|e| format!("{e:#}"))?;
        Ok::<_, String>((header, body))
    }));
    match decoded {
        Ok(Ok((header, body))) => Ok(Request { header, api_key, body }),
        Ok(Err(reason)) => Err(malformed(reason)),
        Err(_) => Err(malformed("decoder panicked".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn frame_of(key: i16, version: i16, header_version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header.encode(&mut buf, header_version).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_api_versions_v3() {
        let frame = frame_of(18, 3, 2, &ApiVersionsRequest::default());
        let request = decode(frame).unwrap();
        assert_eq!(request.api_key, ApiKey::ApiVersions);
        assert_eq!(request.correlation_id(), 7);
    }

    #[test]
    fn unknown_key_and_bad_version_are_errors() {
        let frame = frame_of(18, 3, 2, &ApiVersionsRequest::default());
        let mut bytes = frame.to_vec();
        bytes[0..2].copy_from_slice(&9999i16.to_be_bytes());
        assert!(matches!(decode(Bytes::from(bytes)), Err(Error::UnknownApiKey { .. })));
        let mut bytes = frame.to_vec();
        bytes[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(decode(Bytes::from(bytes)), Err(Error::UnsupportedVersion { .. })));
    }

    #[test]
    fn truncated_body_is_malformed() {
        let frame = frame_of(18, 3, 2, &ApiVersionsRequest::default());
        let cut = frame.slice(..frame.len() - 2);
        assert!(matches!(decode(cut), Err(Error::Malformed { .. })));
    }
}
