//! Requests built with `kafka-protocol` for the raw-connection tests (bad input, pipelining),
//! and the checks those tests share.
//!
//! The broker log check assumes one contract of the broker: each rejected frame is logged as
//! one WARN or ERROR line that names the peer address (`127.0.0.1:PORT`), as a `tracing`
//! `peer` field does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_testkit::raw::RawConn;
use sluice_testkit::BrokerProcess;

/// How long a healthy broker may take to answer one small request.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// The ApiVersions version the health checks use: v3, the first flexible one (KIP-511).
pub const API_VERSIONS_VERSION: i16 = 3;

/// The Produce version the raw tests use: v9, the first flexible one.
pub const PRODUCE_VERSION: i16 = 9;

/// Kafka's API key for ApiVersions.
pub const API_VERSIONS_KEY: i16 = 18;

/// Connects a raw client to `broker`.
pub fn connect(broker: &BrokerProcess) -> RawConn {
    RawConn::connect(broker.addr())
        .unwrap_or_else(|error| panic!("connect to {}: {error}", broker.bootstrap()))
}

/// An ApiVersions request with a client name and version that pass Kafka's validation
/// (`[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`).
pub fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("sluice-testkit"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"))
}

/// Sends ApiVersions v3 on `conn` and checks a successful answer that lists ApiVersions.
pub fn assert_answers(broker: &BrokerProcess, conn: &mut RawConn, correlation_id: i32) {
    let response = conn
        .round_trip(&api_versions_request(), API_VERSIONS_VERSION, correlation_id, ANSWER_LIMIT)
        .unwrap_or_else(|error| {
            panic!("ApiVersions #{correlation_id}: {error}; log:\n{}", broker.log_tail())
        });
    assert_api_versions_ok(&response);
}

/// Checks an ApiVersions answer is a success that lists ApiVersions v3.
pub fn assert_api_versions_ok(response: &ApiVersionsResponse) {
    assert_eq!(response.error_code, 0, "ApiVersions error code");
    let listed = response.api_keys.iter().find(|api| api.api_key == API_VERSIONS_KEY);
    let listed = listed.expect("ApiVersions lists itself");
    assert!(listed.max_version >= API_VERSIONS_VERSION, "ApiVersions range {listed:?}");
}

/// Creates `name` with `partitions` partitions over a raw CreateTopics v5 request.
pub fn create_topic_raw(broker: &BrokerProcess, name: &str, partitions: i32) {
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(1);
    let request = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(5000);
    let mut conn = connect(broker);
    let response = conn.round_trip(&request, 5, 1, ANSWER_LIMIT * 2).unwrap_or_else(|error| {
        panic!("CreateTopics {name}: {error}; log:\n{}", broker.log_tail())
    });
    assert_eq!(response.topics.len(), 1, "one result per topic");
    assert_eq!(response.topics[0].error_code, 0, "CreateTopics {name}: {:?}", response.topics[0]);
}

/// A magic-v2 record batch of `values`, uncompressed, offsets from 0.
pub fn record_batch(values: &[&str]) -> BytesMut {
    let records: Vec<Record> = (0..)
        .zip(values)
        .map(|(offset, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from(format!("key-{offset}"))),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut batch, &records, &options).expect("a v2 batch encodes");
    batch
}

/// A Produce request with one batch for partition 0 of `topic`.
pub fn produce_request(topic: &str, acks: i16, batch: Bytes) -> ProduceRequest {
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(batch));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![partition]);
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![topic])
}

/// Removes ANSI colour sequences (`ESC [ … letter`) that `tracing` may write to the log.
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            plain.push(c);
            continue;
        }
        for next in chars.by_ref() {
            if next.is_ascii_alphabetic() {
                break;
            }
        }
    }
    plain
}

/// WARN and ERROR lines of the broker log that name `peer`.
pub fn warnings_about(broker: &BrokerProcess, peer: SocketAddr) -> Vec<String> {
    let peer = peer.to_string();
    strip_ansi(&broker.log_tail())
        .lines()
        .filter(|line| line.contains(&peer))
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .map(str::to_string)
        .collect()
}

/// Checks the broker logged exactly one WARN or ERROR line about `peer`: the event is
/// visible, and a bad client cannot flood the log.
pub fn assert_logged_once(broker: &BrokerProcess, peer: SocketAddr) {
    // Logging is asynchronous to the close the test saw; give it a moment, then make sure a
    // second line does not follow.
    let deadline = Instant::now() + ANSWER_LIMIT;
    while warnings_about(broker, peer).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let lines = warnings_about(broker, peer);
    assert_eq!(
        lines.len(),
        1,
        "WARN/ERROR lines about {peer}: {lines:#?}; log:\n{}",
        broker.log_tail()
    );
}

#[cfg(test)]
mod tests {
    use super::strip_ansi;

    #[test]
    fn strips_colour_codes_from_log_lines() {
        let line = "\u{1b}[2m2025\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m peer=127.0.0.1:1";
        assert_eq!(strip_ansi(line), "2025  WARN peer=127.0.0.1:1");
    }
}
