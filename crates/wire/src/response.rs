//! Response encoding: size prefix, header at the version the API dictates, body.
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, FetchResponse, ResponseHeader, ResponseKind,
};
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

/// One piece of a frame sent in parts: bytes encoded here, or record batches the caller
/// sends itself (`T`, a slice of a segment file the broker sends from the file).
#[derive(Debug)]
pub enum Part<T> {
    /// Encoded bytes.
    Bytes(Bytes),
    /// Record batches of the given length, supplied by the caller.
    Records(T),
}

/// A whole Fetch response frame in [`Part`]s, in order; `bytes` is their total, size
/// prefix included.
#[derive(Debug)]
pub struct SplitFrame<T> {
    /// The pieces, in the order they go on the wire.
    pub parts: Vec<Part<T>>,
    /// Bytes of the whole frame.
    pub bytes: usize,
}

/// Encodes a Fetch response frame whose record sections come from elsewhere, so the record
/// bytes are never copied into the frame: the result is byte for byte what
/// [`encode`] gives for the same response with each partition's `records` replaced by the
/// `len` bytes of `T`. `external(topic, partition)` (indexes into `responses` and their
/// `partitions`) returns those records and their length, or `None` to encode the
/// partition's own `records`. Tagged fields must hold their defaults (sluice sets none).
pub fn encode_fetch<T>(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
    mut external: impl FnMut(usize, usize) -> Option<(T, usize)>,
) -> Result<SplitFrame<T>, Error> {
    let fail = |reason: String| Error::Encode { api_key: ApiKey::Fetch as i16, version, reason };
    let flexible = version >= 12;
    let mut parts = Vec::new();
    let mut buf = BytesMut::with_capacity(1024);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = ApiKey::Fetch.response_header_version(version);
    header.encode(&mut buf, header_version).map_err(|e| fail(format!("header: {e:#}")))?;
    let tags_unset = response.unknown_tagged_fields.is_empty()
        && (version < 16 || response.node_endpoints.is_empty());
    if !tags_unset {
        return Err(fail("a split Fetch response cannot carry tagged fields".into()));
    }
    buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(response.error_code);
        buf.put_i32(response.session_id);
    }
    put_length(&mut buf, flexible, response.responses.len()).map_err(&fail)?;
    for (topic_index, topic) in response.responses.iter().enumerate() {
        if !topic.unknown_tagged_fields.is_empty() {
            return Err(fail("a split Fetch response cannot carry tagged fields".into()));
        }
        if version <= 12 {
            let name = topic.topic.as_bytes();
            if flexible {
                put_length(&mut buf, true, name.len()).map_err(&fail)?;
            } else {
                let len = i16::try_from(name.len())
                    .map_err(|_| fail(format!("a topic name of {} bytes", name.len())))?;
                buf.put_i16(len);
            }
            buf.put_slice(name);
        } else {
            buf.put_slice(topic.topic_id.as_bytes());
        }
        put_length(&mut buf, flexible, topic.partitions.len()).map_err(&fail)?;
        for (partition_index, partition) in topic.partitions.iter().enumerate() {
            let Some((records, len)) = external(topic_index, partition_index) else {
                partition.encode(&mut buf, version).map_err(|e| fail(format!("{e:#}")))?;
                continue;
            };
            encode_without_records(&mut buf, partition, version).map_err(&fail)?;
            put_length(&mut buf, flexible, len).map_err(&fail)?; // records, never null here
            parts.push(Part::Bytes(buf.split().freeze()));
            parts.push(Part::Records((records, len)));
            if flexible {
                buf.put_u8(0); // the partition's (empty) tagged fields
            }
        }
        if flexible {
            buf.put_u8(0);
        }
    }
    if flexible {
        buf.put_u8(0);
    }
    parts.push(Part::Bytes(buf.freeze()));
    let bytes: usize = parts
        .iter()
        .map(|part| match part {
            Part::Bytes(bytes) => bytes.len(),
            Part::Records((_, len)) => *len,
        })
        .sum();
    let size = i32::try_from(bytes - FRAME_PREFIX_BYTES)
        .map_err(|_| fail(format!("{bytes} bytes do not fit a frame")))?;
    let mut parts = parts.into_iter().map(|part| match part {
        Part::Bytes(bytes) => Part::Bytes(bytes),
        Part::Records((records, _)) => Part::Records(records),
    });
    // The size prefix opens the first part, which always holds the header.
    let first = match parts.next() {
        Some(Part::Bytes(first)) if first.len() >= FRAME_PREFIX_BYTES => first,
        _ => return Err(fail("the frame does not start with its header".into())),
    };
    let mut patched = BytesMut::from(&first[..]);
    patched
        .get_mut(..FRAME_PREFIX_BYTES)
        .map(|prefix| prefix.copy_from_slice(&size.to_be_bytes()))
        .ok_or_else(|| fail("buffer shorter than its size prefix".into()))?;
    let parts = std::iter::once(Part::Bytes(patched.freeze())).chain(parts).collect();
    Ok(SplitFrame { parts, bytes })
}

/// An array, compact array, compact string or compact bytes length.
fn put_length(buf: &mut BytesMut, flexible: bool, len: usize) -> Result<(), String> {
    if flexible {
        let mut value =
            u32::try_from(len + 1).map_err(|_| format!("{len} entries are too many"))?;
        while value >= 0x80 {
            buf.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        buf.put_u8(value as u8);
    } else {
        buf.put_i32(i32::try_from(len).map_err(|_| format!("{len} entries are too many"))?);
    }
    Ok(())
}

/// A partition's fields up to, not including, its records: the partition encoded with null
/// records, minus the null and (flexible versions) the empty tagged-field section after it.
fn encode_without_records(
    buf: &mut BytesMut,
    partition: &PartitionData,
    version: i16,
) -> Result<(), String> {
    let tags_unset = partition.unknown_tagged_fields.is_empty()
        && partition.diverging_epoch == Default::default()
        && partition.current_leader == Default::default()
        && partition.snapshot_id == Default::default();
    if !tags_unset {
        return Err("a split Fetch response cannot carry tagged fields".into());
    }
    let mut fields = partition.clone();
    fields.records = None;
    fields.encode(buf, version).map_err(|e| format!("{e:#}"))?;
    let tail: &[u8] = if version >= 12 { &[0, 0] } else { &[0xff, 0xff, 0xff, 0xff] };
    if !buf.ends_with(tail) {
        return Err("the partition did not end with null records".into());
    }
    buf.truncate(buf.len() - tail.len());
    Ok(())
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
    use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse};
    use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    /// A partition: index, error, offsets, aborted transactions, records, sent apart.
    type PartitionCase = (i32, i16, i64, Vec<(i64, i64)>, Vec<u8>, bool);

    fn response_of(
        version: i16,
        topics: &[(String, [u8; 16], Vec<PartitionCase>)],
    ) -> FetchResponse {
        let responses = topics
            .iter()
            .map(|(name, id, partitions)| {
                let partitions = partitions
                    .iter()
                    .map(|(index, error, offset, aborted, records, _)| {
                        PartitionData::default()
                            .with_partition_index(*index)
                            .with_error_code(*error)
                            .with_high_watermark(*offset)
                            .with_last_stable_offset(offset - 1)
                            .with_log_start_offset(if version >= 5 { offset / 2 } else { -1 })
                            .with_aborted_transactions((!aborted.is_empty()).then(|| {
                                aborted
                                    .iter()
                                    .map(|(producer, first)| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(*producer))
                                            .with_first_offset(*first)
                                    })
                                    .collect()
                            }))
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_records(Some(Bytes::from(records.clone())))
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(if version < 13 {
                        TopicName(StrBytes::from_string(name.clone()))
                    } else {
                        TopicName::default()
                    })
                    .with_topic_id(uuid::Uuid::from_bytes(*id))
                    .with_partitions(partitions)
            })
            .collect();
        FetchResponse::default()
            .with_session_id(if version >= 7 { 7 } else { 0 })
            .with_responses(responses)
    }

    proptest! {
        /// A split frame is the whole frame: the parts, records put back, are byte for byte
        /// what `encode` gives with the records inline, at every Fetch version served.
        #[test]
        fn a_split_fetch_frame_is_the_whole_frame(
            version in 4i16..=16,
            correlation_id in any::<i32>(),
            topics in proptest::collection::vec(
                (
                    "[a-z]{1,20}",
                    any::<[u8; 16]>(),
                    proptest::collection::vec(
                        (
                            0i32..100,
                            0i16..3,
                            0i64..1_000_000,
                            proptest::collection::vec((any::<i64>(), any::<i64>()), 0..3),
                            proptest::collection::vec(any::<u8>(), 0..300),
                            any::<bool>(),
                        ),
                        0..4,
                    ),
                ),
                0..4,
            ),
        ) {
            let response = response_of(version, &topics);
            let whole = encode(ApiKey::Fetch, version, correlation_id, &ResponseKind::Fetch(response.clone())).unwrap();
            let split = encode_fetch(version, correlation_id, &response, |t, p| {
                let (_, _, _, _, records, apart) = &topics[t].2[p];
                apart.then(|| (records.clone(), records.len()))
            })
            .unwrap();
            let mut joined = Vec::new();
            for part in &split.parts {
                match part {
                    Part::Bytes(bytes) => joined.extend_from_slice(bytes),
                    Part::Records(records) => joined.extend_from_slice(records),
                }
            }
            prop_assert_eq!(split.bytes, joined.len());
            prop_assert_eq!(&joined[..], &whole[..]);
        }
    }

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
