//! FindCoordinator, the classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), offsets (OffsetCommit, OffsetFetch, OffsetDelete) and group admin
//! (ListGroups, DescribeGroups, DeleteGroups).
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

pub(crate) fn offset_commit(state: &State, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = request.group_id.to_string();
    let check = if crate::groups::valid_group_id(&group) {
        let generation = request.generation_id_or_member_epoch;
        let instance = request.group_instance_id.as_deref();
        state.groups.check_commit(&group, generation, &request.member_id, instance)
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
                let wanted = g
                    .topics
                    .map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
                match committed(state, &g.group_id, wanted, request.require_stable) {
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

/// The type of every group sluice coordinates (ListGroups v5, KIP-848): the classic protocol.
const GROUP_TYPE: &str = "classic";

pub(crate) fn list_groups(state: &State, request: ListGroupsRequest) -> ListGroupsResponse {
    let mut ids: Vec<String> = state.groups.ids();
    ids.extend(state.store.groups_with_offsets().unwrap_or_default());
    ids.sort();
    ids.dedup();
    let groups = ids
        .into_iter()
        .filter_map(|id| {
            let view = state.groups.describe(&id);
            let group_state = view.as_ref().map_or(GroupState::Empty, |v| v.state).name();
            let protocol_type = view
                .as_ref()
                .map(|v| v.protocol_type.clone())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "consumer".into());
            // Every group here is a classic one (KIP-848's types: classic, consumer, ...).
            let keep = (request.states_filter.is_empty()
                || request.states_filter.iter().any(|s| s.eq_ignore_ascii_case(group_state)))
                && (request.types_filter.is_empty()
                    || request.types_filter.iter().any(|t| t.eq_ignore_ascii_case(GROUP_TYPE)));
            keep.then(|| {
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
) -> DescribeGroupsResponse {
    let asked = request.include_authorized_operations;
    let operations = super::cluster::authorized_operations(asked, Resource::Group);
    let groups = request
        .groups
        .into_iter()
        .map(|id| match state.groups.describe(&id) {
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
            let code = if !known {
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
    let subscribed = if known {
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
