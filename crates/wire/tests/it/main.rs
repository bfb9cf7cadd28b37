//! Hostile-input tests for request decoding, run under the same allocator as the broker.
use bytes::{BufMut, Bytes, BytesMut};
use sluice_wire::{request, Error};

#[global_allocator]
static ALLOC: sluice_wire::alloc::GuardedAlloc = sluice_wire::alloc::GuardedAlloc;

/// A request header v1 for `api_key`/`version` followed by `body`.
fn frame(api_key: i16, version: i16, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key);
    buf.put_i16(version);
    buf.put_i32(1);
    buf.put_i16(4);
    buf.put_slice(b"test");
    buf.put_slice(body);
    buf.freeze()
}

#[test]
fn huge_array_count_is_an_error_not_an_abort() {
    // Metadata v1: topics is an i32-counted array; claim 2^31 - 1 elements and send none.
    let body = i32::MAX.to_be_bytes();
    let error = request::decode(frame(3, 1, &body)).unwrap_err();
    assert!(matches!(error, Error::Malformed { .. }), "{error}");
    // CreateTopics v2 has larger elements; same story.
    let error = request::decode(frame(19, 2, &body)).unwrap_err();
    assert!(matches!(error, Error::Malformed { .. }), "{error}");
}

#[test]
fn huge_compact_array_count_is_an_error_not_an_abort() {
    // Metadata v9 is flexible: header v2 adds tagged fields; the compact array length is an
    // unsigned varint of n + 1.
    let mut body = vec![0u8]; // header tagged fields: none
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // n + 1 = u32::MAX
    let error = request::decode(frame(3, 9, &body)).unwrap_err();
    assert!(matches!(error, Error::Malformed { .. }), "{error}");
}

#[test]
fn huge_string_length_is_an_error() {
    // A Produce v3 transactional id claiming 32767 bytes with none present.
    let body = i16::MAX.to_be_bytes();
    assert!(request::decode(frame(0, 3, &body)).is_err());
}

/// Replays every file of the fuzz corpus (seeds and whatever the fuzzer kept) through the
/// decoders: CI runs the corpus as an ordinary test.
#[test]
fn fuzz_corpus_replays_without_panics() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/request_decode");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        sluice_wire::fuzzing::decode_untrusted(&data);
        count += 1;
    }
    assert!(count >= 10, "the corpus has {count} files; seeds are checked in");
}

/// Writes valid requests of every supported API and version as fuzz seeds when
/// `SLUICE_WRITE_FUZZ_SEEDS=1` (run once by hand; the seeds are checked in).
#[test]
fn write_fuzz_seeds_on_request() {
    if std::env::var_os("SLUICE_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/request_decode");
    for api in sluice_wire::versions::SUPPORTED {
        for version in [api.min, api.max] {
            let mut buf = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(api.key as i16)
                .with_request_api_version(version)
                .with_correlation_id(1)
                .with_client_id(Some(StrBytes::from_static_str("seed")))
                .encode(&mut buf, api.key.request_header_version(version))
                .unwrap();
            let body: Box<dyn Fn(&mut BytesMut)> = match api.key {
                ApiKey::Produce => Box::new(move |b| {
                    let records = Bytes::from(sluice_wire::batch::build(0, 1, &[b"seed"]));
                    let data = produce_request::PartitionProduceData::default()
                        .with_records(Some(records));
                    let topic = produce_request::TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("t")))
                        .with_partition_data(vec![data]);
                    ProduceRequest::default()
                        .with_acks(-1)
                        .with_topic_data(vec![topic])
                        .encode(b, version)
                        .unwrap()
                }),
                ApiKey::Metadata => {
                    Box::new(move |b| MetadataRequest::default().encode(b, version).unwrap())
                }
                ApiKey::ApiVersions => {
                    Box::new(move |b| ApiVersionsRequest::default().encode(b, version).unwrap())
                }
                ApiKey::Fetch => {
                    Box::new(move |b| FetchRequest::default().encode(b, version).unwrap())
                }
                ApiKey::JoinGroup => {
                    Box::new(move |b| JoinGroupRequest::default().encode(b, version).unwrap())
                }
                ApiKey::CreateTopics => {
                    Box::new(move |b| CreateTopicsRequest::default().encode(b, version).unwrap())
                }
                ApiKey::OffsetCommit => {
                    Box::new(move |b| OffsetCommitRequest::default().encode(b, version).unwrap())
                }
                _ => continue,
            };
            body(&mut buf);
            std::fs::write(dir.join(format!("{:?}-v{version}", api.key)), &buf).unwrap();
        }
    }
    let batch = sluice_wire::batch::build(0, 1, &[b"a", b"b"]);
    std::fs::write(dir.join("batch"), &batch).unwrap();
    // Compressed batches, so the fuzzer reaches the decompressing walk.
    use sluice_wire::batch::Compression;
    for (name, compression) in [
        ("gzip", Compression::Gzip),
        ("snappy-raw", Compression::SnappyRaw),
        ("snappy-xerial", Compression::SnappyXerial),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let packed = sluice_wire::batch::compress(&batch, compression).unwrap();
        std::fs::write(dir.join(format!("batch-{name}")), packed).unwrap();
    }
}
