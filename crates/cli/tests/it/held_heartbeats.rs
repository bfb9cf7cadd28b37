//! Held heartbeats (`group.heartbeat.hold.max.ms`), over raw connections so the timing of
//! every request is the test's own: a member's heartbeat answered NONE is held and answered
//! REBALANCE_IN_PROGRESS the moment another member joins; the next request on the same
//! connection answers it at once, in order; and a client that does not name itself in
//! ApiVersions (KIP-511, as kafkajs does not) is answered at once, as Kafka answers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiVersionsRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    MetadataRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use sluice_testkit::raw::{self, RawConn};
use sluice_testkit::BrokerProcess;

use crate::raw_requests::{connect, ANSWER_LIMIT};
use crate::support::SLUICE_BIN;

const GROUP: &str = "held";
const JOIN_VERSION: i16 = 5;
const SYNC_VERSION: i16 = 3;
const HEARTBEAT_VERSION: i16 = 3;
const METADATA_VERSION: i16 = 9;

/// Long enough that an answer within it cannot be the hold's own end (the first hold of a
/// member lasts one second).
const HELD_AT_LEAST: Duration = Duration::from_millis(600);

/// A broker whose new groups form at once.
fn broker() -> BrokerProcess {
    BrokerProcess::start_with_overrides(
        std::path::Path::new(SLUICE_BIN),
        &[("group.initial.rebalance.delay.ms", "0")],
    )
    .unwrap_or_else(|error| panic!("the sluice broker must start: {error}"))
}

/// A connection that has sent ApiVersions v3, naming its software when `name` is set.
fn client(broker: &BrokerProcess, name: Option<&str>) -> RawConn {
    let mut conn = connect(broker);
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_string(name.unwrap_or_default().into()))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    let response = conn.round_trip(&request, 3, 1, ANSWER_LIMIT).expect("ApiVersions answers");
    assert_eq!(response.error_code, 0);
    conn
}

fn join_request(member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(StrBytes::from_string(member_id.into()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"m"))])
}

/// Joins alone (through KIP-394's MEMBER_ID_REQUIRED) and syncs: a Stable group of one.
/// Returns the member id and the generation.
fn join_alone(conn: &mut RawConn) -> (String, i32) {
    let first = conn.round_trip(&join_request(""), JOIN_VERSION, 2, ANSWER_LIMIT).unwrap();
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member = first.member_id.to_string();
    let joined = conn.round_trip(&join_request(&member), JOIN_VERSION, 3, ANSWER_LIMIT).unwrap();
    assert_eq!(joined.error_code, 0, "join: {joined:?}");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_generation_id(joined.generation_id)
        .with_member_id(StrBytes::from_string(member.clone()))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(StrBytes::from_string(member.clone()))
            .with_assignment(Bytes::from_static(b"a"))]);
    let synced = conn.round_trip(&sync, SYNC_VERSION, 4, ANSWER_LIMIT).unwrap();
    assert_eq!(synced.error_code, 0);
    (member, joined.generation_id)
}

fn heartbeat(member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member.into()))
}

/// True when no frame arrives within `wait`.
fn silent_for(conn: &mut RawConn, wait: Duration) -> bool {
    match conn.read_frame(wait) {
        Err(error) => {
            error.kind() == std::io::ErrorKind::TimedOut
                || error.kind() == std::io::ErrorKind::WouldBlock
        }
        Ok(_) => false,
    }
}

#[test]
fn a_held_heartbeat_hears_of_a_join_at_once() {
    let broker = broker();
    let mut member = client(&broker, Some("test-client"));
    let (id, generation) = join_alone(&mut member);
    member.send_request(&heartbeat(&id, generation), HEARTBEAT_VERSION, 10).unwrap();
    assert!(
        silent_for(&mut member, HELD_AT_LEAST),
        "a heartbeat of a Stable member that names its software is held; log:\n{}",
        broker.log_tail()
    );
    // A second member joins: the held heartbeat answers REBALANCE_IN_PROGRESS now.
    let mut joining = client(&broker, Some("test-client"));
    let asked = joining.round_trip(&join_request(""), JOIN_VERSION, 2, ANSWER_LIMIT).unwrap();
    let newcomer = asked.member_id.to_string();
    joining.send_request(&join_request(&newcomer), JOIN_VERSION, 3).unwrap();
    let started = Instant::now();
    let (correlation, answer) =
        member.read_response::<HeartbeatRequest>(HEARTBEAT_VERSION, ANSWER_LIMIT).unwrap();
    assert_eq!(correlation, 10);
    assert_eq!(answer.error_code, ResponseError::RebalanceInProgress.code());
    assert!(started.elapsed() < HELD_AT_LEAST, "answered after {:?}", started.elapsed());
}

#[test]
fn the_next_request_answers_a_held_heartbeat_in_order() {
    let broker = broker();
    let mut member = client(&broker, Some("test-client"));
    let (id, generation) = join_alone(&mut member);
    member.send_request(&heartbeat(&id, generation), HEARTBEAT_VERSION, 20).unwrap();
    assert!(silent_for(&mut member, HELD_AT_LEAST), "the heartbeat is held");
    let started = Instant::now();
    member.send_request(&MetadataRequest::default(), METADATA_VERSION, 21).unwrap();
    let (first, beat) =
        member.read_response::<HeartbeatRequest>(HEARTBEAT_VERSION, ANSWER_LIMIT).unwrap();
    assert_eq!((first, beat.error_code), (20, 0));
    let frame = member.read_frame(ANSWER_LIMIT).unwrap().expect("the Metadata answer");
    assert_eq!(raw::correlation_id(&frame), Some(21));
    assert!(started.elapsed() < HELD_AT_LEAST, "answered after {:?}", started.elapsed());
}

/// A member that leaves right after a heartbeat (a consumer closing) gets NONE for the
/// heartbeat, as Kafka, which answers one request at a time, would answer it: the answer is
/// the one that held before the LeaveGroup took effect, not UNKNOWN_MEMBER_ID.
#[test]
fn a_held_heartbeat_is_answered_before_the_next_request_takes_effect() {
    let broker = broker();
    let mut member = client(&broker, Some("test-client"));
    let (id, generation) = join_alone(&mut member);
    member.send_request(&heartbeat(&id, generation), HEARTBEAT_VERSION, 40).unwrap();
    assert!(silent_for(&mut member, HELD_AT_LEAST), "the heartbeat is held");
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_members(vec![MemberIdentity::default().with_member_id(StrBytes::from_string(id))]);
    member.send_request(&leave, 3, 41).unwrap();
    let (first, beat) =
        member.read_response::<HeartbeatRequest>(HEARTBEAT_VERSION, ANSWER_LIMIT).unwrap();
    assert_eq!((first, beat.error_code), (40, 0), "the heartbeat came before the leave");
    let (second, left) = member.read_response::<LeaveGroupRequest>(3, ANSWER_LIMIT).unwrap();
    assert_eq!(second, 41);
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members.first().map(|m| m.error_code), Some(0));
}

#[test]
fn a_client_that_does_not_name_itself_is_answered_at_once() {
    let broker = broker();
    let mut member = client(&broker, None);
    let (id, generation) = join_alone(&mut member);
    let started = Instant::now();
    let beat = member
        .round_trip(&heartbeat(&id, generation), HEARTBEAT_VERSION, 30, ANSWER_LIMIT)
        .unwrap();
    assert_eq!(beat.error_code, 0);
    assert!(started.elapsed() < HELD_AT_LEAST, "answered after {:?}", started.elapsed());
}
