//! FindCoordinator, the classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), the consumer group protocol (ConsumerGroupHeartbeat,
//! ConsumerGroupDescribe), offsets (OffsetCommit, OffsetFetch, OffsetDelete) and group
//! admin (ListGroups, DescribeGroups, DeleteGroups).
use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::cluster::Resource;
use super::text;
use crate::clock::now_ms;
use crate::consumer_groups::{self, Heartbeat as ConsumerBeat, Timing};
use crate::dynamic_config;
use crate::groups::{GroupState, JoinRequest};
use crate::limits::OFFSET_METADATA_BYTES_MAX;
use crate::state::State;
use crate::store::OffsetRecord;

pub(crate) fn find_coordinator(
    state: &State,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let node = BrokerId(state.settings.node_id);
    let host = text(state.advertised_host.clone());
    let port = state.advertised_port;
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(node)
                    .with_host(host.clone())
                    .with_port(port)
            })
            .collect();
        return FindCoordinatorResponse::default()
            .with_error_message(None)
            .with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_node_id(node)
        .with_host(host)
        .with_port(port)
        .with_error_message(None)
}

pub(crate) async fn join_group(
    state: &State,
    request: JoinGroupRequest,
    version: i16,
    client: &super::Client,
) -> JoinGroupResponse {
    let join = JoinRequest {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id: client.client_id.clone(),
        client_host: client.host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: it equals the session timeout.
        rebalance_timeout_ms: if request.rebalance_timeout_ms > 0 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = join.member_id.clone();
    // An empty consumer group of this id gives way; a live one stays. (Kafka would run them
    // as one mixed group, KIP-848's online migration; sluice does not.)
    if state.consumer_groups.remove_if_empty(&join.group_id).is_err() {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::InconsistentGroupProtocol.code())
            .with_generation_id(-1)
            .with_member_id(text(member_id));
    }
    let receiver = match state.groups.join(join) {
        Ok(receiver) => receiver,
        Err(code) => {
            return JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(text(member_id));
        }
    };
    let Ok(outcome) = receiver.await else {
        // The member rejoined on another request, or was removed, before this one completed.
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::RebalanceInProgress.code())
            .with_generation_id(-1)
            .with_member_id(text(member_id));
    };
    let members = outcome
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(text(id))
                .with_group_instance_id(instance.map(text))
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(outcome.error)
        .with_generation_id(outcome.generation)
        .with_protocol_type(outcome.protocol_type.map(text))
        .with_protocol_name(outcome.protocol_name.map(text))
        .with_leader(text(outcome.leader))
        .with_member_id(text(outcome.member_id))
        .with_members(members)
}

pub(crate) async fn sync_group(state: &State, request: SyncGroupRequest) -> SyncGroupResponse {
    let assignments =
        request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let receiver = state.groups.sync(
        &request.group_id,
        request.generation_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        assignments,
    );
    let outcome = match receiver {
        // A waiter dropped without an answer means the member left the group meanwhile.
        Ok(receiver) => match receiver.await {
            Ok(outcome) => outcome,
            Err(_) => {
                return SyncGroupResponse::default()
                    .with_error_code(ResponseError::RebalanceInProgress.code())
            }
        },
        Err(code) => return SyncGroupResponse::default().with_error_code(code),
    };
    SyncGroupResponse::default()
        .with_error_code(outcome.error)
        .with_protocol_type(outcome.protocol_type.map(text))
        .with_protocol_name(outcome.protocol_name.map(text))
        .with_assignment(outcome.assignment)
}

/// A Heartbeat's answer: now, or held until the member must hear of a change.
pub(crate) enum Beat {
    Now(HeartbeatResponse),
    Held(std::pin::Pin<Box<dyn std::future::Future<Output = HeartbeatResponse> + Send>>),
}

/// Heartbeat. A heartbeat answered NONE on a `connection` whose client heartbeats off its
/// poll loop may be held (see `groups`): it is answered when a rebalance begins or the member
/// leaves the group, when its hold time is up, or at shutdown, with the answer that holds
/// then; or when the next request on the connection begins, with the answer that holds
/// before that request takes effect.
pub(crate) fn heartbeat(
    state: &std::sync::Arc<State>,
    request: HeartbeatRequest,
    connection: Option<&super::Connection>,
) -> Beat {
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.as_deref().map(str::to_string);
    let generation = request.generation_id;
    let code =
        state.groups.heartbeat(&group_id, generation, &member_id, instance_id.as_deref(), true);
    let now = || Beat::Now(HeartbeatResponse::default().with_error_code(code));
    let Some(connection) = connection.filter(|_| code == 0) else { return now() };
    let Some((changed, hold)) = state.groups.hold(&group_id, &member_id) else {
        return now();
    };
    let answer = {
        let state = std::sync::Arc::clone(state);
        move || {
            state.groups.heartbeat(&group_id, generation, &member_id, instance_id.as_deref(), false)
        }
    };
    let ticket = connection.hold(Box::new(answer.clone()));
    let mut shutdown = state.shutdown.subscribe();
    Beat::Held(Box::pin(async move {
        let mut ticket = ticket;
        let settled = tokio::select! {
            code = &mut ticket.answered => Some(code),
            _ = changed => None,
            _ = tokio::time::sleep(hold) => None,
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        let code = match settled {
            Some(Ok(code)) => code,
            // The connection dropped the hold without answering: answer as of now.
            Some(Err(_)) => answer(),
            None => ticket.settle(answer).await,
        };
        tracing::trace!(?hold, code, "held heartbeat answered");
        HeartbeatResponse::default().with_error_code(code)
    }))
}

pub(crate) fn leave_group(
    state: &State,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match state.groups.leave(&request.group_id, &members) {
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
        Ok(codes) => {
            let responses = members
                .into_iter()
                .zip(codes.iter())
                .map(|((id, instance), code)| {
                    MemberResponse::default()
                        .with_member_id(text(id))
                        .with_group_instance_id(instance.map(text))
                        .with_error_code(*code)
                })
                .collect();
            if version < 3 {
                return LeaveGroupResponse::default()
                    .with_error_code(codes.first().copied().unwrap_or(0));
            }
            LeaveGroupResponse::default().with_members(responses)
        }
    }
}

pub(crate) fn offset_commit(
    state: &State,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group = request.group_id.to_string();
    let check = if crate::groups::valid_group_id(&group) {
        let generation = request.generation_id_or_member_epoch;
        let instance = request.group_instance_id.as_deref();
        let member = request.member_id.as_str();
        match state.consumer_groups.check_commit(&group, member, generation, version, false) {
            Some(code) => code,
            None => state.groups.check_commit(&group, generation, member, instance),
        }
    } else {
        ResponseError::InvalidGroupId.code()
    };
    let now = now_ms();
    let mut records = Vec::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let known = state.topics.get(&topic.name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let metadata = p.committed_metadata.map(|m| m.to_string());
            let code = if check != 0 {
                check
            } else if known.as_ref().and_then(|t| t.partition(p.partition_index)).is_none() {
                ResponseError::UnknownTopicOrPartition.code()
            } else if metadata.as_ref().is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX) {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                let record = OffsetRecord {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                    commit_timestamp_ms: now,
                };
                records.push((topic.name.to_string(), p.partition_index, record));
                0
            };
            partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    if !records.is_empty() {
        if let Err(error) = state.store.commit_offsets(&group, &records) {
            tracing::error!(group = %group, %error, "offset commit failed");
            let code = error.code();
            for topic in &mut topics {
                for p in &mut topic.partitions {
                    if p.error_code == 0 {
                        p.error_code = code;
                    }
                }
            }
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// `(topic, partitions)` wanted, or `None` for every committed offset of the group.
type Wanted = Option<Vec<(TopicName, Vec<i32>)>>;

/// One committed offset: `(partition, offset, leader epoch, metadata, error code)`.
type Committed = (i32, i64, i32, Option<String>, i16);

/// Committed offsets of one group, by topic.
///
/// With `require_stable` (KIP-447), a partition with an offset pending in an open
/// transaction answers UNSTABLE_OFFSET_COMMIT, and the consumer retries. The pending ones
/// are taken before the store is read: a transaction that completes in between has its
/// offsets stored by then (read the other way round, a fetch could miss both).
fn committed(
    state: &State,
    group: &str,
    wanted: Wanted,
    require_stable: bool,
) -> Result<Vec<(TopicName, Vec<Committed>)>, i16> {
    let pending =
        if require_stable { state.transactions.pending_offsets(group) } else { Default::default() };
    let stored = state.store.group_offsets(group).map_err(|e| e.code())?;
    let wanted = wanted.unwrap_or_else(|| {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in stored.keys() {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        by_topic.into_iter().map(|(t, p)| (TopicName(text(t)), p)).collect()
    });
    Ok(wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let entries = partitions
                .into_iter()
                .map(|p| {
                    if pending.contains(&(topic.to_string(), p)) {
                        let unstable = ResponseError::UnstableOffsetCommit.code();
                        return (p, -1, -1, Some(String::new()), unstable);
                    }
                    match stored.get(&(topic.to_string(), p)) {
                        Some(r) => (p, r.offset, r.leader_epoch, r.metadata.clone(), 0),
                        None => (p, -1, -1, Some(String::new()), 0),
                    }
                })
                .collect();
            (topic, entries)
        })
        .collect())
}

pub(crate) fn offset_fetch(
    state: &State,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let member = g.member_id.as_deref();
                let check = state.consumer_groups.check_fetch(&g.group_id, member, g.member_epoch);
                let wanted = g
                    .topics
                    .map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
                let answer = match check {
                    Some(code) if code != 0 => Err(code),
                    _ => committed(state, &g.group_id, wanted, request.require_stable),
                };
                match answer {
                    Err(code) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code),
                    Ok(topics) => {
                        let topics = topics
                            .into_iter()
                            .map(|(name, entries)| {
                                let partitions = entries
                                    .into_iter()
                                    .map(|(p, offset, epoch, metadata, code)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_error_code(code)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(metadata.map(text))
                                    })
                                    .collect();
                                OffsetFetchResponseTopics::default()
                                    .with_name(name)
                                    .with_partitions(partitions)
                            })
                            .collect();
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_topics(topics)
                    }
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted =
        request.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
    match committed(state, &request.group_id, wanted, request.require_stable) {
        Err(code) => OffsetFetchResponse::default().with_error_code(code),
        Ok(topics) => {
            let topics = topics
                .into_iter()
                .map(|(name, entries)| {
                    let partitions = entries
                        .into_iter()
                        .map(|(p, offset, epoch, metadata, code)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(metadata.map(text))
                        })
                        .collect();
                    OffsetFetchResponseTopic::default().with_name(name).with_partitions(partitions)
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
    }
}

/// The type of a group of the classic protocol (ListGroups v5, KIP-848).
const GROUP_TYPE: &str = "classic";
/// The type (and protocol type) of a group of the consumer protocol (KIP-848).
const CONSUMER_TYPE: &str = "consumer";

pub(crate) fn list_groups(state: &State, request: ListGroupsRequest) -> ListGroupsResponse {
    let mut ids: Vec<String> = state.groups.ids();
    ids.extend(state.store.groups_with_offsets().unwrap_or_default());
    ids.extend(state.consumer_groups.ids());
    ids.sort();
    ids.dedup();
    let wanted = |group_state: &str, group_type: &str| {
        (request.states_filter.is_empty()
            || request.states_filter.iter().any(|s| s.eq_ignore_ascii_case(group_state)))
            && (request.types_filter.is_empty()
                || request.types_filter.iter().any(|t| t.eq_ignore_ascii_case(group_type)))
    };
    let groups = ids
        .into_iter()
        .filter_map(|id| {
            if let Some(view) = state.consumer_groups.describe(&id) {
                let group_state = consumer_groups::state_name(&view);
                return wanted(group_state, CONSUMER_TYPE).then(|| {
                    ListedGroup::default()
                        .with_group_id(GroupId(text(id)))
                        .with_protocol_type(text(CONSUMER_TYPE))
                        .with_group_state(text(group_state))
                        .with_group_type(text(CONSUMER_TYPE))
                });
            }
            let view = state.groups.describe(&id);
            let group_state = view.as_ref().map_or(GroupState::Empty, |v| v.state).name();
            let protocol_type = view
                .as_ref()
                .map(|v| v.protocol_type.clone())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "consumer".into());
            // Not a consumer-protocol group: a classic one (KIP-848's types).
            wanted(group_state, GROUP_TYPE).then(|| {
                ListedGroup::default()
                    .with_group_id(GroupId(text(id)))
                    .with_protocol_type(text(protocol_type))
                    .with_group_state(text(group_state))
                    .with_group_type(text(GROUP_TYPE))
            })
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(crate) fn describe_groups(
    state: &State,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let asked = request.include_authorized_operations;
    let operations = super::cluster::authorized_operations(asked, Resource::Group);
    let groups = request
        .groups
        .into_iter()
        .map(|id| match state.groups.describe(&id) {
            None if state.consumer_groups.describe(&id).is_some() => {
                // Kafka answers DescribeGroups for classic groups only (the message: v6+).
                let message =
                    format!("group {} is a consumer group; use ConsumerGroupDescribe", id.as_str());
                DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message((version >= 6).then(|| text(message)))
                    .with_group_state(text("Dead"))
                    .with_authorized_operations(operations)
            }
            Some(view) => {
                let members = view
                    .members
                    .into_iter()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(text(m.member_id))
                            .with_group_instance_id(m.instance_id.map(text))
                            .with_client_id(text(m.client_id))
                            .with_client_host(text(m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(m.assignment)
                    })
                    .collect();
                DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(text(view.state.name()))
                    .with_protocol_type(text(view.protocol_type))
                    .with_protocol_data(text(view.protocol))
                    .with_members(members)
                    .with_authorized_operations(operations)
            }
            // A group with committed offsets but no members is Empty; one Kafka does not
            // know at all is Dead, not an error.
            None => {
                let has_offsets =
                    state.store.group_offsets(&id).map(|o| !o.is_empty()).unwrap_or(false);
                let (group_state, protocol_type) =
                    if has_offsets { ("Empty", "consumer") } else { ("Dead", "") };
                DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(text(group_state))
                    .with_protocol_type(text(protocol_type))
                    .with_authorized_operations(operations)
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(crate) fn delete_groups(state: &State, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .into_iter()
        .map(|id| {
            let known = state.groups.exists(&id)
                || state.store.group_offsets(&id).map(|o| !o.is_empty()).unwrap_or(false);
            let consumer = state.consumer_groups.remove_if_empty(&id);
            let code = if let Err(code) = consumer {
                code
            } else if !known && consumer != Ok(true) {
                ResponseError::GroupIdNotFound.code()
            } else {
                match state.groups.remove_if_empty(&id) {
                    Err(code) => code,
                    Ok(()) => {
                        state.store.delete_offsets(&id, None).map_or_else(|e| e.code(), |()| 0)
                    }
                }
            };
            DeletableGroupResult::default().with_group_id(id).with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

/// OffsetDelete, as Kafka answers it: GROUP_ID_NOT_FOUND for a group with neither members
/// nor offsets, NON_EMPTY_GROUP for a live group of another protocol than `consumer`,
/// GROUP_SUBSCRIBED_TO_TOPIC for each partition of a topic a live member subscribes to,
/// UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist; the other partitions'
/// offsets are deleted. Unlike Kafka's, which runs in one coordinator step, the check of the
/// members' subscriptions and the deletion are two steps: a member that subscribes to a topic
/// between them, while an admin deletes that topic's offsets, finds none, as it would had
/// it joined a moment later.
pub(crate) fn offset_delete(state: &State, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = request.group_id.to_string();
    let has_offsets = match state.store.group_offsets(&group) {
        Ok(offsets) => !offsets.is_empty(),
        Err(error) => return OffsetDeleteResponse::default().with_error_code(error.code()),
    };
    let known = has_offsets || state.groups.exists(&group);
    let subscribed = if let Some(topics) = state.consumer_groups.subscribed_topics(&group) {
        Ok(crate::groups::Subscribed::Topics(topics))
    } else if known {
        state.groups.subscribed(&group)
    } else {
        Err(ResponseError::GroupIdNotFound.code())
    };
    let subscribed = match subscribed {
        Ok(subscribed) => subscribed,
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
    };
    let mut doomed = Vec::new();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            let topic = state.topics.get(&name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let index = p.partition_index;
                    let code = if topic.as_ref().and_then(|t| t.partition(index)).is_none() {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if subscribed.covers(&name) {
                        ResponseError::GroupSubscribedToTopic.code()
                    } else {
                        doomed.push((name.clone(), index));
                        0
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    let code = state.store.delete_offsets(&group, Some(&doomed)).map_or_else(|e| e.code(), |()| 0);
    OffsetDeleteResponse::default().with_error_code(code).with_topics(topics)
}

/// A group's consumer-protocol timing: its group configs, else the broker's defaults.
fn consumer_timing(state: &State, group_id: &str) -> Timing {
    let set = state.dynamic.group(group_id);
    let value = |name: &str, fallback: i32| {
        set.get(name)
            .and_then(|v| v.parse().ok())
            .or_else(|| {
                dynamic_config::group_default(&state.settings, name)
                    .and_then(|(v, _)| v.parse().ok())
            })
            .unwrap_or(fallback)
    };
    Timing {
        session_timeout_ms: value("consumer.session.timeout.ms", 45_000),
        heartbeat_interval_ms: value("consumer.heartbeat.interval.ms", 5000),
    }
}

/// ConsumerGroupHeartbeat (KIP-848): `crate::consumer_groups`.
pub(crate) fn consumer_group_heartbeat(
    state: &State,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.to_string();
    let owned = request.topic_partitions.map(|topics| {
        let mut owned = consumer_groups::Assignment::new();
        for topic in topics {
            owned.entry(topic.topic_id).or_default().extend(topic.partitions);
        }
        owned
    });
    let beat = ConsumerBeat {
        group_id: group_id.clone(),
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        topics: request.subscribed_topic_names.map(|t| t.iter().map(|n| n.to_string()).collect()),
        regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        assignor: request.server_assignor.map(|s| s.to_string()),
        owned,
    };
    let timing = consumer_timing(state, &group_id);
    let classic = state.groups.has_members(&group_id);
    let now = std::time::Instant::now();
    let answer = state.consumer_groups.heartbeat(beat, &state.topics, timing, classic, now);
    let assignment = answer.assignment.map(|assignment| {
        let topics = assignment
            .into_iter()
            .map(|(topic_id, partitions)| {
                consumer_group_heartbeat_response::TopicPartitions::default()
                    .with_topic_id(topic_id)
                    .with_partitions(partitions.into_iter().collect())
            })
            .collect();
        consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(topics)
    });
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(answer.error)
        .with_error_message(answer.message.map(text))
        .with_member_id((!answer.member_id.is_empty()).then(|| text(answer.member_id)))
        .with_member_epoch(answer.member_epoch)
        .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
        .with_assignment(assignment)
}

/// ConsumerGroupDescribe (KIP-848).
pub(crate) fn consumer_group_describe(
    state: &State,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let asked = request.include_authorized_operations;
    let operations = super::cluster::authorized_operations(asked, Resource::Group);
    // Topic names by id, looked up once for every member's assignments.
    let names: std::collections::HashMap<uuid::Uuid, String> =
        state.topics.all().iter().map(|t| (t.id, t.name.clone())).collect();
    let described = |assignment: &consumer_groups::Assignment| {
        let topics = assignment
            .iter()
            .map(|(topic_id, partitions)| {
                let name = names.get(topic_id).cloned().unwrap_or_default();
                consumer_group_describe_response::TopicPartitions::default()
                    .with_topic_id(*topic_id)
                    .with_topic_name(TopicName(text(name)))
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect();
        consumer_group_describe_response::Assignment::default().with_topic_partitions(topics)
    };
    let groups = request
        .group_ids
        .into_iter()
        .map(|id| {
            let group = consumer_group_describe_response::DescribedGroup::default()
                .with_authorized_operations(operations);
            let Some(view) = state.consumer_groups.describe(&id) else {
                let message = if state.groups.exists(&id) {
                    format!("group {} is not a consumer group", id.as_str())
                } else {
                    format!("group {} not found", id.as_str())
                };
                return group
                    .with_group_id(id)
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(text(message)))
                    .with_group_state(text("Dead"));
            };
            let members = view
                .members
                .iter()
                .map(|m| {
                    consumer_group_describe_response::Member::default()
                        .with_member_id(text(m.member_id.clone()))
                        .with_instance_id(m.instance_id.clone().map(text))
                        .with_rack_id(m.rack_id.clone().map(text))
                        .with_member_epoch(m.epoch)
                        .with_subscribed_topic_names(
                            m.topics.iter().map(|t| TopicName(text(t.clone()))).collect(),
                        )
                        .with_subscribed_topic_regex(m.regex.clone().map(text))
                        .with_assignment(described(&m.assigned))
                        .with_target_assignment(described(&m.target))
                        .with_member_type(1)
                })
                .collect();
            group
                .with_group_id(id)
                .with_error_message(None)
                .with_group_state(text(consumer_groups::state_name(&view)))
                .with_group_epoch(view.epoch)
                .with_assignment_epoch(view.target_epoch)
                .with_assignor_name(text(view.assignor.clone()))
                .with_members(members)
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
