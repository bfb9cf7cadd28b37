//! Bad bytes on one connection: the right Kafka answer or a closed connection, one log line,
//! and no harm to any other connection.
//!
//! Acceptance: "a frame with a bogus size, a truncated request, an unknown API key, an
//! unsupported version, a batch with a wrong CRC: each gets the right Kafka error or a closed
//! connection, is logged once, and every other connection keeps working".
//!
//! What Apache Kafka does, and so what these tests expect:
//! - a size prefix above `socket.request.max.bytes` or below 0: close, no response;
//! - a request that does not parse as its header says: close;
//! - an unknown API key: close;
//! - ApiVersions at a version above the broker's: an ApiVersions v0 response with
//!   UNSUPPORTED_VERSION (35) that still lists the supported ranges (KIP-511), so the client
//!   can retry at a version both sides know;
//! - any other API at an unsupported version: close;
//! - a record batch whose CRC-32C is wrong: CORRUPT_MESSAGE (2) for that partition, nothing
//!   appended, and the connection stays open.
//!
//! Every test first opens a healthy connection, then misbehaves on another, then checks the
//! healthy one and a brand-new one both still answer ApiVersions.

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_testkit::raw::{self, correlation_id, encode_request, RawConn};
use sluice_testkit::BrokerProcess;

use crate::raw_requests::{
    api_versions_request, assert_answers, assert_logged_once, connect, create_topic_raw,
    produce_request, record_batch, warnings_about, ANSWER_LIMIT, API_VERSIONS_KEY, PRODUCE_VERSION,
};
use crate::support::start_broker;

/// Kafka's error code for a record batch that fails its CRC or is otherwise corrupt.
const CORRUPT_MESSAGE: i16 = 2;

/// Kafka's error code for an API version the broker does not support.
const UNSUPPORTED_VERSION: i16 = 35;

/// Checks the connection opened before the bad input, and a new one, both still answer.
fn assert_others_keep_working(broker: &BrokerProcess, healthy: &mut RawConn) {
    assert_answers(broker, healthy, 900);
    assert_answers(broker, &mut connect(broker), 901);
}

/// Sends `bytes` unframed on a new connection and expects the broker to close it, log it
/// once, and keep serving everyone else.
fn assert_closed_after(bytes: &[u8]) {
    let broker = start_broker();
    let mut healthy = connect(&broker);
    assert_answers(&broker, &mut healthy, 1);
    let mut bad = connect(&broker);
    let peer = bad.local_addr().expect("a connected socket has an address");
    bad.send_raw(bytes).expect("the broker reads before it judges");
    bad.expect_closed(ANSWER_LIMIT)
        .unwrap_or_else(|error| panic!("expected a close: {error}; log:\n{}", broker.log_tail()));
    assert_others_keep_working(&broker, &mut healthy);
    assert_logged_once(&broker, peer);
}

fn frame(body: &[u8]) -> Vec<u8> {
    let size = i32::try_from(body.len()).expect("test frames are small");
    let mut framed = size.to_be_bytes().to_vec();
    framed.extend_from_slice(body);
    framed
}

#[test]
fn closes_a_connection_whose_frame_size_is_i32_max() {
    // A few body bytes follow, as a client would send; the size alone must decide.
    let mut bytes = i32::MAX.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 18, 0, 3]);
    assert_closed_after(&bytes);
}

#[test]
fn closes_a_connection_whose_frame_size_is_negative() {
    let mut bytes = (-1i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 18, 0, 3]);
    assert_closed_after(&bytes);
}

#[test]
fn closes_a_connection_whose_request_is_truncated() {
    let topic = MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str("truncated-topic"))));
    let request = MetadataRequest::default().with_topics(Some(vec![topic]));
    let body = encode_request(&request, 1, 7).expect("Metadata v1 encodes");
    // A well-framed frame whose body stops 5 bytes into the topic name.
    let cut = body.get(..body.len() - 5).expect("the body is longer than 5 bytes");
    assert_closed_after(&frame(cut));
}

#[test]
fn serves_others_while_a_frame_is_half_sent_then_closes_on_eof() {
    let broker = start_broker();
    let mut healthy = connect(&broker);
    let mut partial = connect(&broker);
    let body = encode_request(&api_versions_request(), 3, 1).expect("ApiVersions v3 encodes");
    let framed = frame(&body);
    let half = framed.get(..framed.len() / 2).expect("half of the frame");
    partial.send_raw(half).expect("the broker reads what it is sent");
    // A slow client must hold nobody up: frames are read per connection.
    assert_others_keep_working(&broker, &mut healthy);
    partial.shutdown_write().expect("the socket is open");
    partial
        .expect_closed(ANSWER_LIMIT)
        .unwrap_or_else(|error| panic!("EOF mid-frame: {error}; log:\n{}", broker.log_tail()));
    assert_others_keep_working(&broker, &mut healthy);
}

#[test]
fn closes_a_connection_that_sends_an_unknown_api_key() {
    let mut body = raw::request_header_v2(9999, 0, 7, Some(raw::CLIENT_ID));
    body.extend_from_slice(&[0; 8]);
    assert_closed_after(&frame(&body));
}

#[test]
fn answers_api_versions_at_an_unsupported_version_with_its_ranges() {
    let broker = start_broker();
    let mut healthy = connect(&broker);
    assert_answers(&broker, &mut healthy, 1);
    let mut client = connect(&broker);
    let mut body = raw::request_header_v2(API_VERSIONS_KEY, 99, 42, Some(raw::CLIENT_ID));
    api_versions_request().encode(&mut body, 3).expect("a v3 body encodes");
    client.send_frame(&body).expect("the connection is open");
    let response = client
        .read_frame(ANSWER_LIMIT)
        .unwrap_or_else(|error| panic!("ApiVersions v99: {error}; log:\n{}", broker.log_tail()))
        .expect("KIP-511: the broker answers instead of closing");
    // The answer is in the v0 layout with response header v0, whatever version was asked.
    let (correlation, decoded) = raw::decode_response::<ApiVersionsRequest>(&response, 0)
        .unwrap_or_else(|error| panic!("the answer must be ApiVersions v0: {error}"));
    assert_eq!(correlation, 42);
    assert_eq!(decoded.error_code, UNSUPPORTED_VERSION);
    let listed = decoded.api_keys.iter().find(|api| api.api_key == API_VERSIONS_KEY);
    let listed = listed.expect("the ranges include ApiVersions itself");
    assert!(listed.max_version >= 3, "ApiVersions range {listed:?}");
    // The client retries at a version inside the range, on the same connection.
    assert_answers(&broker, &mut client, 43);
    assert_others_keep_working(&broker, &mut healthy);
}

#[test]
fn closes_or_answers_another_api_at_an_unsupported_version_without_hanging() {
    let broker = start_broker();
    let mut healthy = connect(&broker);
    assert_answers(&broker, &mut healthy, 1);
    let mut client = connect(&broker);
    let peer = client.local_addr().expect("a connected socket has an address");
    // Metadata v99 with an empty flexible body: no broker supports it.
    let mut body = raw::request_header_v2(3, 99, 77, Some(raw::CLIENT_ID));
    body.extend_from_slice(&[0, 0]);
    client.send_frame(&body).expect("the connection is open");
    match client.read_frame(ANSWER_LIMIT) {
        // Kafka closes; the event is logged once.
        Ok(None) => assert_logged_once(&broker, peer),
        Err(error) if raw::is_closed_error(&error) => assert_logged_once(&broker, peer),
        // An error response is also acceptable, as long as it answers this request and the
        // log is not flooded.
        Ok(Some(response)) => {
            assert_eq!(correlation_id(&response), Some(77), "the answer names the request");
            let lines = warnings_about(&broker, peer);
            assert!(lines.len() <= 1, "one line at most: {lines:#?}");
        }
        Err(error) => panic!("Metadata v99 must not hang: {error}; log:\n{}", broker.log_tail()),
    }
    assert_others_keep_working(&broker, &mut healthy);
}

/// The first partition's error code and base offset in a Produce answer.
fn partition_answer(response: &kafka_protocol::messages::ProduceResponse) -> (i16, i64) {
    assert_eq!(response.responses.len(), 1, "one topic answered");
    let partitions = &response.responses[0].partition_responses;
    assert_eq!(partitions.len(), 1, "one partition answered");
    (partitions[0].error_code, partitions[0].base_offset)
}

#[test]
fn rejects_a_batch_with_a_wrong_crc_as_corrupt_and_keeps_the_connection() {
    let broker = start_broker();
    create_topic_raw(&broker, "checksummed", 1);
    let mut healthy = connect(&broker);
    assert_answers(&broker, &mut healthy, 1);

    let values = ["crc-value-0", "crc-value-1", "crc-value-2"];
    let mut corrupt = record_batch(&values);
    let at = corrupt
        .windows(values[1].len())
        .position(|window| window == values[1].as_bytes())
        .expect("an uncompressed batch holds its values verbatim");
    // One flipped payload bit: the stored CRC-32C no longer matches, nothing else changes.
    corrupt[at] ^= 0x01;
    let mut client = connect(&broker);
    let peer = client.local_addr().expect("a connected socket has an address");
    let request = produce_request("checksummed", -1, corrupt.freeze());
    let response = client
        .round_trip(&request, PRODUCE_VERSION, 10, ANSWER_LIMIT)
        .unwrap_or_else(|error| panic!("Produce: {error}; log:\n{}", broker.log_tail()));
    assert_eq!(partition_answer(&response).0, CORRUPT_MESSAGE, "{response:?}");

    // The connection stays usable, and the corrupt batch was not appended: the next good
    // batch starts at offset 0.
    assert_answers(&broker, &mut client, 11);
    let good = produce_request("checksummed", -1, record_batch(&values).freeze());
    let response: <ProduceRequest as kafka_protocol::protocol::Request>::Response = client
        .round_trip(&good, PRODUCE_VERSION, 12, ANSWER_LIMIT)
        .unwrap_or_else(|error| panic!("Produce: {error}; log:\n{}", broker.log_tail()));
    assert_eq!(partition_answer(&response), (0, 0), "{response:?}");
    assert_others_keep_working(&broker, &mut healthy);
    assert_logged_once(&broker, peer);
}
