//! Pipelining on one connection: Kafka answers requests in the order they were sent, and a
//! Produce with acks=0 gets no answer at all, so the next frame belongs to the next request.

use std::io;
use std::time::Duration;

use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use sluice_testkit::raw::{self, correlation_id, encode_request};

use crate::raw_requests::{
    api_versions_request, assert_api_versions_ok, connect, create_topic_raw, produce_request,
    record_batch, ANSWER_LIMIT, API_VERSIONS_VERSION, PRODUCE_VERSION,
};
use crate::support::{assign_consumer, eventually, start_broker, REQUEST_TIMEOUT};

use rdkafka::consumer::Consumer;

/// Requests written back-to-back before the first read.
const PIPELINED_COUNT: i32 = 50;

/// The Metadata version the pipelining test mixes in (flexible, header v2).
const METADATA_VERSION: i16 = 9;

/// Appends `body` to `bytes` as one frame.
fn push_frame(bytes: &mut Vec<u8>, body: &[u8]) {
    let size = i32::try_from(body.len()).expect("test frames are small");
    bytes.extend_from_slice(&size.to_be_bytes());
    bytes.extend_from_slice(body);
}

#[test]
fn answers_fifty_pipelined_requests_in_order() {
    let broker = start_broker();
    let mut conn = connect(&broker);
    let mut bytes = Vec::new();
    for index in 0..PIPELINED_COUNT {
        let correlation = 1000 + index;
        let body = if index % 2 == 0 {
            encode_request(&api_versions_request(), API_VERSIONS_VERSION, correlation)
        } else {
            // `topics: None` asks for every topic, which is none yet.
            encode_request(&MetadataRequest::default(), METADATA_VERSION, correlation)
        };
        push_frame(&mut bytes, &body.expect("requests encode"));
    }
    // One write: the broker sees all 50 before it has answered any.
    conn.send_raw(&bytes).expect("the connection is open");

    for index in 0..PIPELINED_COUNT {
        let correlation = 1000 + index;
        let frame = conn
            .read_frame(ANSWER_LIMIT)
            .unwrap_or_else(|error| panic!("answer #{index}: {error}; log:\n{}", broker.log_tail()))
            .unwrap_or_else(|| {
                panic!("closed before answer #{index}; log:\n{}", broker.log_tail())
            });
        if index % 2 == 0 {
            let (got, response) =
                raw::decode_response::<ApiVersionsRequest>(&frame, API_VERSIONS_VERSION)
                    .unwrap_or_else(|error| panic!("answer #{index} as ApiVersions: {error}"));
            assert_eq!(got, correlation, "answers come back in request order");
            assert_api_versions_ok(&response);
        } else {
            let (got, response) = raw::decode_response::<MetadataRequest>(&frame, METADATA_VERSION)
                .unwrap_or_else(|error| panic!("answer #{index} as Metadata: {error}"));
            assert_eq!(got, correlation, "answers come back in request order");
            // Clients connect to what Metadata advertises, so it must be the bound port.
            let ports: Vec<i32> = response.brokers.iter().map(|broker| broker.port).collect();
            assert_eq!(ports, vec![i32::from(broker.addr().port())], "advertised listeners");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_no_answer_to_a_produce_with_acks_zero() {
    let broker = start_broker();
    let topic = "fire-and-forget";
    create_topic_raw(&broker, topic, 1);
    let mut conn = connect(&broker);
    let produce = |correlation| {
        let request = produce_request(topic, 0, record_batch(&["unanswered"]).freeze());
        encode_request(&request, PRODUCE_VERSION, correlation).expect("Produce v9 encodes")
    };
    let ask = |correlation| {
        encode_request(&api_versions_request(), API_VERSIONS_VERSION, correlation)
            .expect("ApiVersions v3 encodes")
    };
    let mut bytes = Vec::new();
    push_frame(&mut bytes, &produce(1));
    push_frame(&mut bytes, &ask(2));
    push_frame(&mut bytes, &produce(3));
    push_frame(&mut bytes, &ask(4));
    conn.send_raw(&bytes).expect("the connection is open");

    for expected in [2, 4] {
        let frame = conn
            .read_frame(ANSWER_LIMIT)
            .unwrap_or_else(|error| {
                panic!("answer {expected}: {error}; log:\n{}", broker.log_tail())
            })
            .expect("the connection stays open");
        assert_eq!(correlation_id(&frame), Some(expected), "acks=0 Produce is never answered");
    }
    let silence = conn.read_frame(Duration::from_millis(500)).expect_err("nothing else to say");
    assert_eq!(silence.kind(), io::ErrorKind::TimedOut, "{silence}");

    // Both unanswered batches were appended.
    let consumer = assign_consumer(&broker.bootstrap());
    let appended = eventually(Duration::from_secs(5), || {
        let watermarks = consumer.fetch_watermarks(topic, 0, REQUEST_TIMEOUT).ok()?;
        (watermarks == (0, 2)).then_some(())
    })
    .await;
    assert!(appended.is_some(), "two acks=0 records appended; log:\n{}", broker.log_tail());
}
