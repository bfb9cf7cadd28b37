//! ApiVersions, Metadata (with auto topic creation) and DescribeCluster.
use std::collections::BTreeMap;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterRequest, DescribeClusterResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::text;
use crate::state::State;
use crate::topics::Topic;
use crate::Error;

/// Kafka's "authorized operations not requested" value.
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// A resource type whose authorized operations a client may ask for.
#[derive(Clone, Copy)]
pub(crate) enum Resource {
    Topic,
    Group,
    Cluster,
}

/// What a client may do to a resource, as the bit field Kafka answers when asked to
/// (`include_*_authorized_operations`; bit n is ACL operation code n), or Kafka's "not asked"
/// value. Sluice has no authorizer, and Kafka without one answers every operation the
/// resource type supports (Kafka 4's `AclEntry.supportedOperations`): a topic's READ, WRITE,
/// CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS and ALTER_CONFIGS; a group's READ,
/// DELETE, DESCRIBE, DESCRIBE_CONFIGS and ALTER_CONFIGS (what ACLs could allow, whether or not
/// group configs are served); the cluster's CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS and IDEMPOTENT_WRITE.
pub(crate) fn authorized_operations(asked: bool, resource: Resource) -> i32 {
    const READ: u32 = 3;
    const WRITE: u32 = 4;
    const CREATE: u32 = 5;
    const DELETE: u32 = 6;
    const ALTER: u32 = 7;
    const DESCRIBE: u32 = 8;
    const CLUSTER_ACTION: u32 = 9;
    const DESCRIBE_CONFIGS: u32 = 10;
    const ALTER_CONFIGS: u32 = 11;
    const IDEMPOTENT_WRITE: u32 = 12;
    if !asked {
        return OPERATIONS_OMITTED;
    }
    let operations: &[u32] = match resource {
        Resource::Topic => {
            &[READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]
        }
        Resource::Group => &[READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS],
        Resource::Cluster => &[
            CREATE,
            ALTER,
            DESCRIBE,
            CLUSTER_ACTION,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
            IDEMPOTENT_WRITE,
        ],
    };
    operations.iter().fold(0i32, |bits, operation| bits | (1 << operation))
}

pub(crate) fn api_versions() -> ApiVersionsResponse {
    sluice_wire::response::api_versions_body(0)
}

fn broker(state: &State) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(state.settings.node_id))
        .with_host(text(state.advertised_host.clone()))
        .with_port(state.advertised_port)
}

/// A topic's metadata; `operations` is its authorized operations field.
fn topic_metadata(state: &State, topic: &Topic, operations: i32) -> MetadataResponseTopic {
    let node = BrokerId(state.settings.node_id);
    let partitions = (0..topic.partitions.len() as i32)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(text(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations)
}

/// A topic entry that is only an error; `operations` as [`topic_metadata`] takes it (Kafka
/// sets it on every topic entry when asked).
fn topic_error(
    name: Option<TopicName>,
    id: uuid::Uuid,
    error: ResponseError,
    operations: i32,
) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(error.code())
        .with_topic_authorized_operations(operations)
}

pub(crate) fn metadata(state: &State, request: MetadataRequest, version: i16) -> MetadataResponse {
    // v0 says "all topics" with an empty list; v1+ with a null one.
    let wanted = match request.topics {
        Some(list) if version == 0 && list.is_empty() => None,
        other => other,
    };
    let auto_create =
        state.settings.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let operations =
        authorized_operations(request.include_topic_authorized_operations, Resource::Topic);
    let topics = match wanted {
        None => state.topics.all().iter().map(|t| topic_metadata(state, t, operations)).collect(),
        Some(list) => list
            .into_iter()
            .map(|wanted| match wanted.name {
                Some(name) => named_topic(state, name, auto_create, operations),
                None => match state.topics.get_by_id(wanted.topic_id) {
                    Some(topic) => topic_metadata(state, &topic, operations),
                    None => topic_error(
                        None,
                        wanted.topic_id,
                        ResponseError::UnknownTopicId,
                        operations,
                    ),
                },
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![broker(state)])
        .with_cluster_id(Some(text(state.cluster_id.clone())))
        .with_controller_id(BrokerId(state.settings.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(authorized_operations(
            request.include_cluster_authorized_operations,
            Resource::Cluster,
        ))
}

fn named_topic(
    state: &State,
    name: TopicName,
    auto_create: bool,
    operations: i32,
) -> MetadataResponseTopic {
    if let Some(topic) = state.topics.get(&name) {
        return topic_metadata(state, &topic, operations);
    }
    if !auto_create {
        let unknown = ResponseError::UnknownTopicOrPartition;
        return topic_error(Some(name), uuid::Uuid::nil(), unknown, operations);
    }
    let created =
        state.topics.create(&state.settings, &state.store, &name, -1, -1, &BTreeMap::new());
    match created {
        Ok(topic) => topic_metadata(state, &topic, operations),
        // Another connection created it first.
        Err(Error::TopicExists(_)) => match state.topics.get(&name) {
            Some(topic) => topic_metadata(state, &topic, operations),
            None => {
                let unknown = ResponseError::UnknownTopicOrPartition;
                topic_error(Some(name), uuid::Uuid::nil(), unknown, operations)
            }
        },
        Err(error) => {
            tracing::warn!(topic = %name.0, %error, "auto-create failed");
            topic_error(Some(name), uuid::Uuid::nil(), error.kafka_error(), operations)
        }
    }
}

pub(crate) fn describe_cluster(
    state: &State,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(state.settings.node_id))
        .with_host(text(state.advertised_host.clone()))
        .with_port(state.advertised_port);
    DescribeClusterResponse::default()
        .with_cluster_id(text(state.cluster_id.clone()))
        .with_controller_id(BrokerId(state.settings.node_id))
        .with_brokers(vec![broker])
        .with_cluster_authorized_operations(authorized_operations(
            request.include_cluster_authorized_operations,
            Resource::Cluster,
        ))
}
