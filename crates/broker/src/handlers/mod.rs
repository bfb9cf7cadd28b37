//! Request handlers: one function per API, grouped by concept. Each takes the decoded
//! request and returns the response body; [`handle`] encodes it at the request's version.
use bytes::BytesMut;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_wire::request::Request;

use crate::state::State;

mod admin;
mod cluster;
mod data;
mod group;
mod producer;
mod txn;

pub(crate) use producer::ProducerIds;

/// Who sent a request: the header's client id and the peer address, for group members.
pub(crate) struct Client {
    pub client_id: String,
    pub host: String,
    pub peer: std::net::SocketAddr,
}

/// What the requests of one connection share.
pub(crate) struct Connection {
    /// Set once the client names its software in ApiVersions (KIP-511, v3 and later).
    /// Those clients (librdkafka, the Java client and others) heartbeat from a thread or
    /// timer of their own, so a held heartbeat delays nothing else of theirs. kafkajs sends
    /// ApiVersions v2 at most and awaits each heartbeat inside its fetch loop: its
    /// heartbeats, and those of any client that does not say what it is, are never held.
    heartbeats_off_loop: std::sync::atomic::AtomicBool,
    /// The heartbeat held on this connection, if any.
    held: std::sync::Arc<std::sync::Mutex<Option<Held>>>,
    /// Numbers the holds, so a hold that ends on its own takes only itself off `held`.
    holds: std::sync::atomic::AtomicU64,
}

/// A held heartbeat, as the connection settles it.
struct Held {
    id: u64,
    /// The answer as of the moment it is called.
    answer: Box<dyn FnOnce() -> i16 + Send>,
    answered: tokio::sync::oneshot::Sender<i16>,
}

/// The holder's side of a held heartbeat: see [`Connection::hold`].
pub(crate) struct HeldTicket {
    id: u64,
    slot: std::sync::Arc<std::sync::Mutex<Option<Held>>>,
    /// Receives the answer if the connection settles the hold.
    pub answered: tokio::sync::oneshot::Receiver<i16>,
}

impl HeldTicket {
    /// Ends the hold from the holder's side: the answer as of now, unless the connection
    /// settled it first, in which case that answer.
    pub async fn settle(self, answer_now: impl FnOnce() -> i16) -> i16 {
        let mine = {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(held) if held.id == self.id => slot.take(),
                _ => None,
            }
        };
        match mine {
            Some(_) => answer_now(),
            None => match self.answered.await {
                Ok(code) => code,
                Err(_) => answer_now(),
            },
        }
    }
}

impl Connection {
    pub fn new() -> Connection {
        Connection {
            heartbeats_off_loop: std::sync::atomic::AtomicBool::new(false),
            held: std::sync::Arc::new(std::sync::Mutex::new(None)),
            holds: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Holds a heartbeat whose answer `answer` computes. The connection settles it (with
    /// the answer as of then) when the next request begins; the holder settles it otherwise.
    pub fn hold(&self, answer: Box<dyn FnOnce() -> i16 + Send>) -> HeldTicket {
        self.settle_held();
        let id = self.holds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, answered) = tokio::sync::oneshot::channel();
        let mut slot = self.held.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Held { id, answer, answered: sender });
        HeldTicket { id, slot: std::sync::Arc::clone(&self.held), answered }
    }

    /// A request begins, or the connection ends: a held heartbeat is answered now, before
    /// the request takes effect (as Kafka, which answers requests one at a time, would
    /// have answered it), and no reply waits behind it.
    pub fn next_request(&self) {
        self.settle_held();
    }

    fn settle_held(&self) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(held) = held {
            let code = (held.answer)();
            let _ = held.answered.send(code);
        }
    }
}

/// What to do after a request.
pub(crate) enum Reply {
    /// Send this frame.
    Frame(BytesMut),
    /// Send this frame, whose record batches go from their segment files to the socket
    /// (a Fetch answer).
    Split(sluice_wire::response::SplitFrame<sluice_log::LogSlice>),
    /// Wait for this (a produce's sync), then do what it says; later requests on the
    /// connection are read and served meanwhile, and replies still leave in order.
    Later(std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>),
    /// Send nothing (Produce with acks=0).
    Nothing,
    /// Close the connection: the response cannot be produced (a bug, logged once).
    Close,
}

/// Serves one request.
pub(crate) async fn handle(
    state: &std::sync::Arc<State>,
    request: Request,
    peer: std::net::SocketAddr,
    connection: &Connection,
) -> Reply {
    let client = Client {
        client_id: request.header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        host: format!("/{}", peer.ip()),
        peer,
    };
    let api_key = request.api_key;
    let version = request.version();
    let correlation_id = request.correlation_id();
    let body = match request.body {
        RequestKind::ApiVersions(r) => {
            if version >= 3 && !r.client_software_name.is_empty() {
                connection.heartbeats_off_loop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            ResponseKind::ApiVersions(cluster::api_versions())
        }
        RequestKind::Metadata(r) => {
            // May create topics (auto-create): folders, segments, a synced store write.
            match on_blocking_pool(state, peer, move |s| cluster::metadata(s, r, version)).await {
                Some(response) => ResponseKind::Metadata(response),
                None => return Reply::Close,
            }
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(cluster::describe_cluster(state, r))
        }
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let staged = data::produce_append(state, r, version, &client).await;
            let spawn = staged.syncs_more_partitions();
            let finish = async move {
                let response = data::produce_finish(staged).await;
                if acks == 0 {
                    return Reply::Nothing;
                }
                encode(api_key, version, correlation_id, &ResponseKind::Produce(response), peer)
            };
            if !spawn {
                // Its one sync already runs on the thread that appended.
                return Reply::Later(Box::pin(finish));
            }
            // The other partitions' syncs start now, not when the writer reaches this reply:
            // pipelined requests then sync together, their fsyncs overlapping in the device
            // instead of running one after another.
            let finish = tokio::spawn(finish);
            return Reply::Later(Box::pin(async move {
                finish.await.unwrap_or_else(|error| {
                    tracing::error!(%peer, %error, "closing connection: a produce task failed");
                    Reply::Close
                })
            }));
        }
        RequestKind::Fetch(r) => {
            let data::Fetched { response, mut slices } = data::fetch(state, r, version).await;
            let take = |topic: usize, partition: usize| {
                let slice = slices.get_mut(topic)?.get_mut(partition)?.take()?;
                let len = slice.len;
                Some((slice, len))
            };
            return match sluice_wire::response::encode_fetch(
                version,
                correlation_id,
                &response,
                take,
            ) {
                Ok(frame) => Reply::Split(frame),
                Err(error) => {
                    tracing::error!(%peer, %error, "closing connection: cannot encode response");
                    Reply::Close
                }
            };
        }
        RequestKind::ListOffsets(r) => {
            // By timestamp it reads (and may decompress) batches from the segments.
            match on_blocking_pool(state, peer, move |s| data::list_offsets(s, r, version)).await {
                Some(response) => ResponseKind::ListOffsets(response),
                None => return Reply::Close,
            }
        }
        RequestKind::DeleteRecords(r) => {
            match on_blocking_pool(state, peer, move |s| data::delete_records(s, r)).await {
                Some(response) => {
                    // Long polls below the new log start offsets answer OFFSET_OUT_OF_RANGE now.
                    state.wakeups.wake_all();
                    ResponseKind::DeleteRecords(response)
                }
                None => return Reply::Close,
            }
        }
        RequestKind::CreateTopics(r) => {
            let create = move |s: &State| admin::create_topics(s, r, version);
            match on_blocking_pool(state, peer, create).await {
                Some(response) => ResponseKind::CreateTopics(response),
                None => return Reply::Close,
            }
        }
        RequestKind::DeleteTopics(r) => {
            match on_blocking_pool(state, peer, move |s| admin::delete_topics(s, r)).await {
                Some(response) => {
                    // Long polls of a deleted topic answer now (its partitions will not
                    // signal again, nor will those of a topic created under its name).
                    state.wakeups.wake_all();
                    ResponseKind::DeleteTopics(response)
                }
                None => return Reply::Close,
            }
        }
        RequestKind::CreatePartitions(r) => {
            match on_blocking_pool(state, peer, move |s| admin::create_partitions(s, r)).await {
                Some(response) => ResponseKind::CreatePartitions(response),
                None => return Reply::Close,
            }
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(state, r))
        }
        RequestKind::AlterConfigs(r) => {
            match on_blocking_pool(state, peer, move |s| admin::alter_configs(s, r)).await {
                Some(response) => ResponseKind::AlterConfigs(response),
                None => return Reply::Close,
            }
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            let alter = move |s: &State| admin::incremental_alter_configs(s, r);
            match on_blocking_pool(state, peer, alter).await {
                Some(response) => ResponseKind::IncrementalAlterConfigs(response),
                None => return Reply::Close,
            }
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer::init_producer_id(state, r, version).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions_to_txn(state, r, version).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets_to_txn(state, r, version).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(state, r, version).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end_txn(state, r, version).await),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(txn::describe_transactions(state, r))
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(txn::list_transactions(state, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(group::find_coordinator(state, r, version))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(group::join_group(state, r, version, &client).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(group::sync_group(state, r).await),
        RequestKind::Heartbeat(r) => {
            let off_loop =
                connection.heartbeats_off_loop.load(std::sync::atomic::Ordering::Relaxed);
            match group::heartbeat(state, r, off_loop.then_some(connection)) {
                group::Beat::Now(response) => ResponseKind::Heartbeat(response),
                group::Beat::Held(held) => {
                    return Reply::Later(Box::pin(async move {
                        let response = ResponseKind::Heartbeat(held.await);
                        encode(api_key, version, correlation_id, &response, peer)
                    }));
                }
            }
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(group::leave_group(state, r, version))
        }
        RequestKind::OffsetCommit(r) => {
            match on_blocking_pool(state, peer, move |s| group::offset_commit(s, r, version)).await
            {
                Some(response) => ResponseKind::OffsetCommit(response),
                None => return Reply::Close,
            }
        }
        RequestKind::OffsetFetch(r) => {
            match on_blocking_pool(state, peer, move |s| group::offset_fetch(s, r, version)).await {
                Some(response) => ResponseKind::OffsetFetch(response),
                None => return Reply::Close,
            }
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            ResponseKind::ConsumerGroupHeartbeat(group::consumer_group_heartbeat(state, r))
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(group::consumer_group_describe(state, r))
        }
        RequestKind::ListGroups(r) => {
            // It reads the store's offsets table.
            match on_blocking_pool(state, peer, move |s| group::list_groups(s, r)).await {
                Some(response) => ResponseKind::ListGroups(response),
                None => return Reply::Close,
            }
        }
        RequestKind::DescribeGroups(r) => {
            // An empty group's answer reads the store's offsets table.
            match on_blocking_pool(state, peer, move |s| group::describe_groups(s, r, version))
                .await
            {
                Some(response) => ResponseKind::DescribeGroups(response),
                None => return Reply::Close,
            }
        }
        RequestKind::DeleteGroups(r) => {
            match on_blocking_pool(state, peer, move |s| group::delete_groups(s, r)).await {
                Some(response) => ResponseKind::DeleteGroups(response),
                None => return Reply::Close,
            }
        }
        RequestKind::OffsetDelete(r) => {
            match on_blocking_pool(state, peer, move |s| group::offset_delete(s, r)).await {
                Some(response) => ResponseKind::OffsetDelete(response),
                None => return Reply::Close,
            }
        }
        other => {
            // versions::SUPPORTED lists only the APIs above, so decode never yields another.
            tracing::error!(api_key = ?api_key, "no handler for a supported api: {other:?}");
            return Reply::Close;
        }
    };
    encode(api_key, version, correlation_id, &body, peer)
}

/// Runs a handler that may wait on the disk (a synced store write, folder and segment work,
/// segment reads) on the blocking pool, so that a slow or full disk holds up its own request
/// and not every connection served by the same async worker. `None` when the handler
/// panicked (a bug, logged once): the connection closes.
async fn on_blocking_pool<T: Send + 'static>(
    state: &std::sync::Arc<State>,
    peer: std::net::SocketAddr,
    handler: impl FnOnce(&State) -> T + Send + 'static,
) -> Option<T> {
    let state = std::sync::Arc::clone(state);
    match tokio::task::spawn_blocking(move || handler(&state)).await {
        Ok(response) => Some(response),
        Err(error) => {
            tracing::error!(%peer, %error, "closing connection: a request handler failed");
            None
        }
    }
}

fn encode(
    api_key: kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
    peer: std::net::SocketAddr,
) -> Reply {
    match sluice_wire::response::encode(api_key, version, correlation_id, body) {
        Ok(frame) => Reply::Frame(frame),
        Err(error) => {
            tracing::error!(%peer, %error, "closing connection: cannot encode response");
            Reply::Close
        }
    }
}

/// A `StrBytes` from a `String`.
pub(crate) fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Encodable;
    use kafka_protocol::ResponseError;

    /// A broker on port 0 in a temp folder with topic `t` of `partitions` partitions.
    async fn broker_with_topic(
        partitions: i32,
    ) -> (crate::Broker, std::sync::Arc<State>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::BrokerConfig::new(dir.path());
        config.set("listeners", "PLAINTEXT://127.0.0.1:0");
        let broker = crate::Broker::start(config).await.unwrap();
        broker.create_topic("t", partitions, &Default::default()).await.unwrap();
        let state = broker.state_for_tests();
        (broker, state, dir)
    }

    /// OffsetDelete as Kafka answers it: an unknown group, a topic a member subscribes to,
    /// a partition that does not exist, and one whose offset goes.
    #[tokio::test]
    async fn offset_delete_keeps_offsets_of_subscribed_topics() {
        use offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::BrokerConfig::new(dir.path());
        config.set("listeners", "PLAINTEXT://127.0.0.1:0");
        config.set("group.initial.rebalance.delay.ms", "0");
        let broker = crate::Broker::start(config).await.unwrap();
        for topic in ["t", "u"] {
            broker.create_topic(topic, 1, &Default::default()).await.unwrap();
        }
        let state = broker.state_for_tests();
        let offset = |offset| crate::store::OffsetRecord {
            offset,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: 0,
        };
        let committed = [("t".to_string(), 0, offset(5)), ("u".to_string(), 0, offset(7))];
        state.store.commit_offsets("g", &committed).unwrap();
        let request = |group: &str, topics: &[(&str, &[i32])]| {
            let topics = topics
                .iter()
                .map(|(name, partitions)| {
                    let partitions = partitions
                        .iter()
                        .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p))
                        .collect();
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect();
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(topics)
        };
        let unknown = group::offset_delete(&state, request("nobody", &[("t", &[0])]));
        assert_eq!(unknown.error_code, ResponseError::GroupIdNotFound.code());

        // A member subscribed to `t` joins `g`.
        let join = crate::groups::JoinRequest {
            group_id: "g".into(),
            member_id: String::new(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), crate::groups::consumer_subscription(&["t"]))],
            require_known_member_id: false,
        };
        let joined = state.groups.join(join).unwrap().await.unwrap();
        assert_eq!((joined.error, joined.generation), (0, 1));
        let answer = group::offset_delete(
            &state,
            request("g", &[("t", &[0]), ("u", &[0, 5]), ("gone", &[0])]),
        );
        assert_eq!(answer.error_code, 0);
        let codes: Vec<(String, i32, i16)> = answer
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.error_code))
            })
            .collect();
        let unknown_partition = ResponseError::UnknownTopicOrPartition.code();
        let expected = vec![
            ("t".to_string(), 0, ResponseError::GroupSubscribedToTopic.code()),
            ("u".to_string(), 0, 0),
            ("u".to_string(), 5, unknown_partition),
            ("gone".to_string(), 0, unknown_partition),
        ];
        assert_eq!(codes, expected);
        let left: Vec<_> = state.store.group_offsets("g").unwrap().into_keys().collect();
        assert_eq!(left, vec![("t".to_string(), 0)], "only the unsubscribed offset went");
        drop(state);
        broker.shutdown().await.unwrap();
    }

    /// Without an authorizer Kafka answers every operation a resource type supports when a
    /// client asks (librdkafka's DescribeTopics and DescribeCluster count them), and
    /// "not asked" otherwise; ListGroups v5 filters by group type.
    #[tokio::test]
    async fn authorized_operations_and_group_types_are_answered_as_kafka_without_acls() {
        let (broker, state, _dir) = broker_with_topic(1).await;
        let topic = metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))));
        let asked = MetadataRequest::default()
            .with_topics(Some(vec![topic.clone()]))
            .with_include_topic_authorized_operations(true)
            .with_include_cluster_authorized_operations(true);
        let metadata = cluster::metadata(&state, asked, 10);
        assert_eq!(metadata.topics[0].topic_authorized_operations.count_ones(), 8);
        assert_eq!(metadata.cluster_authorized_operations.count_ones(), 7);
        let plain = MetadataRequest::default().with_topics(Some(vec![topic]));
        let metadata = cluster::metadata(&state, plain, 10);
        assert_eq!(metadata.topics[0].topic_authorized_operations, i32::MIN, "not asked");
        let request =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let described = cluster::describe_cluster(&state, request);
        // CREATE (5), ALTER (7), DESCRIBE (8), CLUSTER_ACTION (9), DESCRIBE_CONFIGS (10),
        // ALTER_CONFIGS (11), IDEMPOTENT_WRITE (12).
        assert_eq!(described.cluster_authorized_operations, 0b1_1111_1010_0000);
        let groups = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("g"))])
            .with_include_authorized_operations(true);
        let described = group::describe_groups(&state, groups, 5);
        assert_eq!(described.groups[0].authorized_operations.count_ones(), 5);

        let committed = crate::store::OffsetRecord {
            offset: 1,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: 0,
        };
        state.store.commit_offsets("g", &[("t".to_string(), 0, committed)]).unwrap();
        let listed = |types: &[&'static str]| {
            let types = types.iter().map(|t| StrBytes::from_static_str(t)).collect();
            let request = ListGroupsRequest::default().with_types_filter(types);
            group::list_groups(&state, request).groups.len()
        };
        assert_eq!(listed(&[]), 1);
        assert_eq!(listed(&["Classic"]), 1, "types match without regard to case");
        assert_eq!(listed(&["consumer"]), 0, "no KIP-848 groups here");
        drop(state);
        broker.shutdown().await.unwrap();
    }

    /// Partitions 0 and 1 of topic `t`: a transaction of both takes the two-phase path
    /// (a stored decision, then markers), one of one partition ends with its marker alone.
    fn two_partitions() -> [(String, i32); 2] {
        [("t".to_string(), 0), ("t".to_string(), 1)]
    }

    /// Stops the broker about as a crash would (`Broker::crash_for_tests`) and drops the
    /// test's handle on its state once nothing else holds it (a blocking task the crash
    /// interrupted may, for a moment), so the data folder can be opened again.
    async fn crash(broker: crate::Broker, state: std::sync::Arc<State>) {
        broker.crash_for_tests().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::sync::Arc::strong_count(&state) > 1 {
            assert!(std::time::Instant::now() < deadline, "the crashed broker's state is held");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Starts a broker again on the data folder of an earlier one (which must be stopped).
    async fn restart(dir: &std::path::Path) -> (crate::Broker, std::sync::Arc<State>) {
        let mut config = crate::BrokerConfig::new(dir);
        config.set("listeners", "PLAINTEXT://127.0.0.1:0");
        let broker = crate::Broker::start(config).await.unwrap();
        let state = broker.state_for_tests();
        (broker, state)
    }

    /// Appends one transactional record of the producer to `partition` and syncs it.
    fn append_transactional(
        partition: &sluice_log::Partition,
        producer: (i64, i16),
        base_sequence: i32,
    ) {
        let batch = transactional_batch(producer, base_sequence);
        let end = partition.append(&batch, crate::clock::now_ms()).unwrap().last_offset + 1;
        partition.sync_to(end).unwrap();
    }

    fn test_client() -> Client {
        Client {
            client_id: "c".into(),
            host: "/127.0.0.1".into(),
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    /// Encodes a default request of `key` at `version` as a frame body.
    fn frame_of(key: ApiKey, version: i16) -> bytes::Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header.encode(&mut buf, key.request_header_version(version)).unwrap();
        let body = match key {
            ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
            other => match RequestKind::decode(other, &mut realistic_body(other, version), version)
            {
                Ok(kind) => kind,
                Err(error) => panic!("{other:?} v{version}: {error}"),
            },
        };
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    /// The bytes of a request body that names topic `t` partition 0 wherever the API
    /// takes topics, so per-partition response fields are exercised too.
    fn realistic_body(key: ApiKey, version: i16) -> bytes::Bytes {
        fn enc<T: Encodable>(value: T, version: i16) -> bytes::Bytes {
            let mut b = BytesMut::new();
            value.encode(&mut b, version).unwrap();
            b.freeze()
        }
        let t = || TopicName(StrBytes::from_static_str("t"));
        let s = StrBytes::from_static_str;
        match key {
            ApiKey::Produce => {
                let records = bytes::Bytes::from(sluice_wire::batch::build(0, 1, &[b"v"]));
                let data = produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records));
                let topic = produce_request::TopicProduceData::default()
                    .with_name(t())
                    .with_partition_data(vec![data]);
                enc(ProduceRequest::default().with_acks(-1).with_topic_data(vec![topic]), version)
            }
            ApiKey::Fetch => {
                let p = fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20);
                let topic =
                    fetch_request::FetchTopic::default().with_topic(t()).with_partitions(vec![p]);
                enc(
                    FetchRequest::default()
                        .with_max_wait_ms(0)
                        .with_max_bytes(1 << 20)
                        .with_topics(vec![topic]),
                    version,
                )
            }
            ApiKey::ListOffsets => {
                let p = list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1);
                let topic = list_offsets_request::ListOffsetsTopic::default()
                    .with_name(t())
                    .with_partitions(vec![p]);
                enc(ListOffsetsRequest::default().with_topics(vec![topic]), version)
            }
            ApiKey::Metadata => {
                let topic = metadata_request::MetadataRequestTopic::default().with_name(Some(t()));
                enc(MetadataRequest::default().with_topics(Some(vec![topic])), version)
            }
            ApiKey::OffsetCommit => {
                let p = offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_committed_offset(1);
                let topic = offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(t())
                    .with_partitions(vec![p]);
                enc(
                    OffsetCommitRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_generation_id_or_member_epoch(-1)
                        .with_topics(vec![topic]),
                    version,
                )
            }
            ApiKey::OffsetFetch if version >= 8 => {
                let topic = offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(t())
                    .with_partition_indexes(vec![0]);
                let group = offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(Some(vec![topic]));
                enc(OffsetFetchRequest::default().with_groups(vec![group]), version)
            }
            ApiKey::OffsetFetch => {
                let topic = offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(t())
                    .with_partition_indexes(vec![0]);
                enc(
                    OffsetFetchRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_topics(Some(vec![topic])),
                    version,
                )
            }
            ApiKey::FindCoordinator if version >= 4 => {
                enc(FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]), version)
            }
            ApiKey::FindCoordinator => {
                enc(FindCoordinatorRequest::default().with_key(s("g")), version)
            }
            ApiKey::Heartbeat => {
                enc(HeartbeatRequest::default().with_group_id(GroupId(s("g"))), version)
            }
            ApiKey::LeaveGroup if version >= 3 => {
                let member = leave_group_request::MemberIdentity::default().with_member_id(s("m"));
                enc(
                    LeaveGroupRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_members(vec![member]),
                    version,
                )
            }
            ApiKey::LeaveGroup => enc(
                LeaveGroupRequest::default().with_group_id(GroupId(s("g"))).with_member_id(s("m")),
                version,
            ),
            ApiKey::SyncGroup => {
                enc(SyncGroupRequest::default().with_group_id(GroupId(s("g"))), version)
            }
            ApiKey::DescribeGroups => {
                enc(DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]), version)
            }
            ApiKey::ListGroups => enc(ListGroupsRequest::default(), version),
            ApiKey::ApiVersions => enc(ApiVersionsRequest::default(), version),
            ApiKey::CreateTopics => {
                let name = TopicName(StrBytes::from_string(format!("created-{version}")));
                let topic = create_topics_request::CreatableTopic::default()
                    .with_name(name)
                    .with_num_partitions(1)
                    .with_replication_factor(1);
                let failing = create_topics_request::CreatableTopic::default()
                    .with_name(t())
                    .with_num_partitions(1)
                    .with_replication_factor(1);
                enc(CreateTopicsRequest::default().with_topics(vec![topic, failing]), version)
            }
            ApiKey::DeleteTopics if version >= 6 => {
                let topic = delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(TopicName(s("missing"))));
                enc(DeleteTopicsRequest::default().with_topics(vec![topic]), version)
            }
            ApiKey::DeleteTopics => enc(
                DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("missing"))]),
                version,
            ),
            ApiKey::DeleteRecords => {
                let p = delete_records_request::DeleteRecordsPartition::default().with_offset(0);
                let topic = delete_records_request::DeleteRecordsTopic::default()
                    .with_name(t())
                    .with_partitions(vec![p]);
                enc(DeleteRecordsRequest::default().with_topics(vec![topic]), version)
            }
            ApiKey::DescribeConfigs => {
                let topic = describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"));
                let broker = describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("1"));
                enc(
                    DescribeConfigsRequest::default()
                        .with_resources(vec![topic, broker])
                        .with_include_synonyms(version >= 1),
                    version,
                )
            }
            ApiKey::AlterConfigs => {
                let config = alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1000")));
                let resource = alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![config]);
                enc(AlterConfigsRequest::default().with_resources(vec![resource]), version)
            }
            ApiKey::IncrementalAlterConfigs => {
                let config = incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("2000")));
                let resource = incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![config]);
                enc(
                    IncrementalAlterConfigsRequest::default().with_resources(vec![resource]),
                    version,
                )
            }
            ApiKey::CreatePartitions => {
                let topic = create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(t())
                    .with_count(1);
                enc(CreatePartitionsRequest::default().with_topics(vec![topic]), version)
            }
            ApiKey::DeleteGroups => enc(
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("none"))]),
                version,
            ),
            ApiKey::OffsetDelete => {
                enc(OffsetDeleteRequest::default().with_group_id(GroupId(s("g"))), version)
            }
            ApiKey::DescribeCluster => enc(DescribeClusterRequest::default(), version),
            ApiKey::InitProducerId => enc(
                InitProducerIdRequest::default()
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                version,
            ),
            ApiKey::AddPartitionsToTxn => {
                let topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(t())
                    .with_partitions(vec![0]);
                enc(
                    AddPartitionsToTxnRequest::default()
                        .with_v3_and_below_transactional_id(TransactionalId(s("x")))
                        .with_v3_and_below_producer_id(ProducerId(1))
                        .with_v3_and_below_topics(vec![topic]),
                    version,
                )
            }
            ApiKey::AddOffsetsToTxn => enc(
                AddOffsetsToTxnRequest::default()
                    .with_transactional_id(TransactionalId(s("x")))
                    .with_group_id(GroupId(s("g"))),
                version,
            ),
            ApiKey::TxnOffsetCommit => {
                let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                    .with_committed_offset(1);
                let topic = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(t())
                    .with_partitions(vec![p]);
                enc(
                    TxnOffsetCommitRequest::default()
                        .with_transactional_id(TransactionalId(s("x")))
                        .with_group_id(GroupId(s("g")))
                        .with_topics(vec![topic]),
                    version,
                )
            }
            ApiKey::EndTxn => enc(
                EndTxnRequest::default().with_transactional_id(TransactionalId(s("x"))),
                version,
            ),
            ApiKey::DescribeTransactions => enc(
                DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId(s("x"))]),
                version,
            ),
            ApiKey::ListTransactions => enc(ListTransactionsRequest::default(), version),
            ApiKey::ConsumerGroupHeartbeat => enc(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s("cg")))
                    .with_member_id(s(if version >= 1 { "m" } else { "" }))
                    .with_rebalance_timeout_ms(30_000)
                    .with_subscribed_topic_names(Some(vec![t()])),
                version,
            ),
            ApiKey::ConsumerGroupDescribe => enc(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("cg"))]),
                version,
            ),
            other => panic!("add {other:?} to realistic_body"),
        }
    }

    /// Every served API at every served version answers a default request with a frame:
    /// no response field is set that the version lacks.
    #[tokio::test]
    async fn every_supported_version_encodes_a_response() {
        let (broker, state, _dir) = broker_with_topic(2).await;
        let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        for api in sluice_wire::versions::SUPPORTED {
            for version in api.min..=api.max {
                let request = sluice_wire::request::decode(frame_of(api.key, version)).unwrap();
                let mut reply = handle(&state, request, peer, &Connection::new()).await;
                if let Reply::Later(later) = reply {
                    reply = later.await;
                }
                match reply {
                    Reply::Later(_) => {
                        panic!("{:?} v{version}: a later reply waits again", api.key)
                    }
                    Reply::Frame(_) | Reply::Split(_) => {}
                    Reply::Nothing => panic!("{:?} v{version}: no reply", api.key),
                    Reply::Close => panic!("{:?} v{version}: cannot encode", api.key),
                }
            }
        }
        broker.shutdown().await.unwrap();
    }

    /// EndTxn of a transaction of two partitions answers once its decision is stored; the
    /// markers follow, and the next operation on the transactional id writes them first if
    /// they are not written yet, so a producer that begins its next transaction at once is
    /// never refused.
    #[tokio::test]
    async fn markers_follow_end_txn_and_the_next_operation_completes_it_first() {
        use crate::store::TxnState;
        let (broker, state, _dir) = broker_with_topic(2).await;
        let txns = &state.transactions;
        let log_end = || {
            let topic = state.topics.get("t").unwrap();
            let end = topic.partition(0).unwrap().with_log(|log| log.log_end_offset());
            end
        };
        let txn_state = || txns.snapshot().into_iter().find(|(id, _)| id == "x").unwrap().1.state;
        let partitions = two_partitions();
        let (producer, epoch) = txns.init_producer_id(&state, "x", 60_000, None).unwrap();
        txns.add_partitions(&state, "x", producer, epoch, &partitions).unwrap();
        assert_eq!(txns.end_txn(&state, "x", producer, epoch, true), Ok(true), "markers to come");
        assert_eq!(txn_state(), TxnState::PrepareCommit);
        assert_eq!(log_end(), 0, "no marker yet");
        // The next transaction begins before the markers are written: they are written first.
        txns.add_partitions(&state, "x", producer, epoch, &partitions).unwrap();
        assert_eq!(log_end(), 1, "the commit marker");
        assert_eq!(txn_state(), TxnState::Ongoing);
        assert_eq!(txns.end_txn(&state, "x", producer, epoch, false), Ok(true));
        txns.complete_pending(&state, "x");
        assert_eq!((log_end(), txn_state()), (2, TxnState::CompleteAbort));
        txns.complete_pending(&state, "x");
        assert_eq!(log_end(), 2, "completing twice writes no second marker");
        // A retry of the EndTxn that completed succeeds; the other outcome does not.
        assert_eq!(txns.end_txn(&state, "x", producer, epoch, false), Ok(false));
        assert_eq!(
            txns.end_txn(&state, "x", producer, epoch, true),
            Err(ResponseError::InvalidTxnState)
        );
        broker.shutdown().await.unwrap();
    }

    /// A marker's sync is deferred, and no synced store commit (of any id, or of anything
    /// else) happens before it: the completed state written after the marker can never be
    /// durable without it.
    #[tokio::test]
    async fn a_synced_store_commit_syncs_the_markers_before_it() {
        let (broker, state, _dir) = broker_with_topic(2).await;
        let txns = &state.transactions;
        let partition = std::sync::Arc::clone(state.topics.get("t").unwrap().partition(0).unwrap());
        let (producer, epoch) = txns.init_producer_id(&state, "x", 60_000, None).unwrap();
        txns.add_partitions(&state, "x", producer, epoch, &two_partitions()).unwrap();
        assert_eq!(txns.end_txn(&state, "x", producer, epoch, true), Ok(true));
        txns.complete_pending(&state, "x");
        let end = partition.with_log(|log| log.log_end_offset());
        assert_eq!((end, partition.synced_offset()), (1, 0), "the marker is written, not synced");
        // Another id's InitProducerId is a synced commit.
        txns.init_producer_id(&state, "y", 60_000, None).unwrap();
        assert_eq!(partition.synced_offset(), 1, "the marker was synced first");
        broker.shutdown().await.unwrap();
    }

    /// At start: a decided transaction whose marker a crash kept, with its producer's next
    /// transaction already open after it, gets no second marker (which would close the next
    /// one with the first one's outcome); a transaction nothing decided is aborted, and its
    /// producer fenced so it cannot commit it.
    #[tokio::test]
    async fn a_restart_completes_decided_transactions_and_aborts_open_ones() {
        use crate::store::TxnState;
        use sluice_wire::batch::ControlType;
        let (broker, state, dir) = broker_with_topic(2).await;
        let txns = &state.transactions;
        let (producer, epoch) = txns.init_producer_id(&state, "x", 60_000, None).unwrap();
        let partition = std::sync::Arc::clone(state.topics.get("t").unwrap().partition(0).unwrap());
        let append = |sequence: i32| append_transactional(&partition, (producer, epoch), sequence);
        // Transaction 1 (offset 0) is decided: its prepare state is stored.
        txns.add_partitions(&state, "x", producer, epoch, &two_partitions()).unwrap();
        append(0);
        assert_eq!(txns.end_txn(&state, "x", producer, epoch, true), Ok(true));
        // Its marker (offset 1) and transaction 2's record (offset 2) reach the log, but the
        // crash comes before the store holds anything after the prepare state.
        let marker = partition.append_marker(producer, epoch, ControlType::Commit, 0, 0).unwrap();
        partition.sync_to(marker.last_offset + 1).unwrap();
        append(1);
        drop(partition);
        broker.shutdown().await.unwrap();
        drop(state);

        let (broker, state) = restart(dir.path()).await;
        let partition = std::sync::Arc::clone(state.topics.get("t").unwrap().partition(0).unwrap());
        let (stable, high_watermark) = partition.stable_offsets();
        assert_eq!((stable, high_watermark), (4, 4), "one abort marker, nothing left open");
        let aborted = partition.with_log(|log| log.aborted_transactions(0, 4));
        assert_eq!(aborted.len(), 1, "only transaction 2 aborted: {aborted:?}");
        assert_eq!((aborted[0].first_offset, aborted[0].last_offset), (2, 3));
        let (_, record) =
            state.transactions.snapshot().into_iter().find(|(id, _)| id == "x").unwrap();
        assert_eq!((record.state, record.producer_epoch), (TxnState::CompleteAbort, epoch + 1));
        assert_eq!(
            state.transactions.end_txn(&state, "x", producer, epoch, true),
            Err(ResponseError::ProducerFenced),
            "the producer that left transaction 2 open cannot commit it"
        );
        broker.shutdown().await.unwrap();
    }

    /// A transaction of one partition and no offsets ends with its marker alone: EndTxn
    /// stores no decision, and answers once the marker is synced, so a crash right after
    /// the answer keeps the commit (recovery finds nothing open to abort).
    #[tokio::test]
    async fn a_one_partition_transaction_is_decided_by_its_synced_marker() {
        use crate::store::TxnState;
        let (broker, state, dir) = broker_with_topic(1).await;
        let txns = &state.transactions;
        let (producer, epoch) = txns.init_producer_id(&state, "x", 60_000, None).unwrap();
        let partition = std::sync::Arc::clone(state.topics.get("t").unwrap().partition(0).unwrap());
        txns.add_partitions(&state, "x", producer, epoch, &[("t".to_string(), 0)]).unwrap();
        append_transactional(&partition, (producer, epoch), 0);
        assert_eq!(txns.end_txn(&state, "x", producer, epoch, true), Ok(false), "nothing pending");
        assert_eq!(partition.stable_offsets(), (2, 2), "the marker is written and synced");
        let stored = state.store.transactions().unwrap()["x"].state;
        assert_eq!(stored, TxnState::Empty, "no decision stored");
        // A crash now: the store is left as it is (no shutdown stores the completion).
        drop(partition);
        crash(broker, state).await;

        let (broker, state) = restart(dir.path()).await;
        let partition = std::sync::Arc::clone(state.topics.get("t").unwrap().partition(0).unwrap());
        assert_eq!(partition.stable_offsets(), (2, 2), "committed, and nothing written after");
        assert!(partition.with_log(|log| log.aborted_transactions(0, 2)).is_empty());
        let (_, record) =
            state.transactions.snapshot().into_iter().find(|(id, _)| id == "x").unwrap();
        assert_eq!(record.producer_epoch, epoch, "its producer is not fenced");
        broker.shutdown().await.unwrap();
    }

    /// One transactional batch of one record from the producer, timestamped now (so
    /// retention keeps it).
    fn transactional_batch(
        (producer_id, producer_epoch): (i64, i16),
        base_sequence: i32,
    ) -> Vec<u8> {
        use sluice_wire::batch::{build_batch, BatchSpec, ATTR_TRANSACTIONAL};
        let spec = BatchSpec {
            attributes: ATTR_TRANSACTIONAL,
            producer_id,
            producer_epoch,
            base_sequence,
            timestamp_ms: crate::clock::now_ms(),
            ..BatchSpec::default()
        };
        build_batch(&spec, &[(None, Some(b"v".as_slice()))])
    }

    /// A Produce (acks=all) of `records` to partition 0 of `t`.
    fn produce_request(records: Vec<u8>) -> ProduceRequest {
        let data = produce_request::PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(bytes::Bytes::from(records)));
        let topic = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![data]);
        ProduceRequest::default().with_acks(-1).with_topic_data(vec![topic])
    }

    /// Produces `records` to partition 0 of `t` through the Produce handler (v9) and returns
    /// the partition's error code.
    async fn produce_records(state: &std::sync::Arc<State>, records: Vec<u8>) -> i16 {
        let response = data::produce(state, produce_request(records), 9, &test_client()).await;
        response.responses[0].partition_responses[0].error_code
    }

    /// A Fetch (v12) of partition `partition` of `t` from `offset`, waiting up to 10 s for a
    /// byte.
    fn long_poll(partition: i32, offset: i64, read_committed: bool) -> FetchRequest {
        let wanted = fetch_request::FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20);
        let topic = fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![wanted]);
        FetchRequest::default()
            .with_max_wait_ms(10_000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_isolation_level(i8::from(read_committed))
            .with_topics(vec![topic])
    }

    /// A long-polling Fetch is woken by what makes its own partition readable: a produce's
    /// sync, the marker (and its sync) that ends a transaction for `read_committed`, in a
    /// one-partition transaction (decided by its marker) and a two-phase one (markers after
    /// the stored decision). Data in another partition leaves it waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_poll_wakes_when_its_own_partition_becomes_readable() {
        use std::time::Duration;
        let (broker, state, _dir) = broker_with_topic(2).await;
        let poll = |offset: i64, read_committed: bool| {
            let state = std::sync::Arc::clone(&state);
            tokio::spawn(async move {
                let request = long_poll(0, offset, read_committed);
                // Records are sent from the file: whether there are any is the slice's.
                let fetched = data::fetch(&state, request, 12).await;
                fetched.slices[0][0].is_some()
            })
        };
        let answer = |waiting: tokio::task::JoinHandle<bool>, what: &'static str| async move {
            let records = tokio::time::timeout(Duration::from_secs(3), waiting)
                .await
                .unwrap_or_else(|_| panic!("{what}: the long poll was not woken"))
                .unwrap();
            assert!(records, "{what}: no records");
        };

        let waiting = poll(0, false);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut other = produce_request(sluice_wire::batch::build(0, 1, &[b"v"]));
        other.topic_data[0].partition_data[0].index = 1;
        let response = data::produce(&state, other, 9, &test_client()).await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "answered with another partition's data");
        assert_eq!(produce_records(&state, sluice_wire::batch::build(0, 1, &[b"v"])).await, 0);
        answer(waiting, "a produce").await;

        let txns = &state.transactions;
        let partition = std::sync::Arc::clone(state.topics.get("t").unwrap().partition(0).unwrap());
        let (producer, epoch) = txns.init_producer_id(&state, "x", 60_000, None).unwrap();
        txns.add_partitions(&state, "x", producer, epoch, &[("t".to_string(), 0)]).unwrap();
        append_transactional(&partition, (producer, epoch), 0);
        let waiting = poll(1, true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "read_committed answered before the decision");
        assert_eq!(txns.end_txn(&state, "x", producer, epoch, true), Ok(false));
        answer(waiting, "a one-partition commit").await;

        txns.add_partitions(&state, "x", producer, epoch, &two_partitions()).unwrap();
        append_transactional(&partition, (producer, epoch), 1);
        let waiting = poll(3, true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "read_committed answered before the decision");
        assert_eq!(txns.end_txn(&state, "x", producer, epoch, true), Ok(true));
        txns.complete_pending(&state, "x");
        answer(waiting, "a two-phase commit").await;
        broker.shutdown().await.unwrap();
    }

    /// A Fetch whose batch headers the page cache no longer holds walks them on the
    /// blocking pool (`data::fetch_from_disk`), not on the async worker, and answers the
    /// same batches as before they were dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fetch_walks_headers_from_the_disk_on_the_blocking_pool() {
        let (broker, state, dir) = broker_with_topic(1).await;
        for value in [b"a", b"b", b"c"] {
            // Timestamps of now: the retention pass must not delete them meanwhile.
            let now = crate::clock::now_ms();
            let records = sluice_wire::batch::build(0, now, &[value.as_slice()]);
            assert_eq!(produce_records(&state, records).await, 0);
        }
        let place = |fetched: &data::Fetched| {
            let slice = fetched.slices[0][0].as_ref()?;
            Some((slice.position, slice.len, slice.end_offset, slice.read().unwrap()))
        };
        let cached = place(&data::fetch(&state, long_poll(0, 0, false), 12).await);
        assert_eq!(cached.as_ref().map(|c| c.2), Some(3), "three batches");
        let partition_dir = dir.path().join("log").join("t-0");
        let segments = std::fs::read_dir(&partition_dir).unwrap().map(|e| e.unwrap().path());
        let mut evicted = true;
        for segment in segments.filter(|p| p.extension().is_some_and(|e| e == "log")) {
            // Synced before the produce was answered, so the pages are clean and can go.
            let file = std::fs::File::open(&segment).unwrap();
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
            let mut byte = [0u8; 1];
            let mut probe = [std::io::IoSliceMut::new(&mut byte)];
            let nowait = rustix::io::ReadWriteFlags::NOWAIT;
            evicted &= rustix::io::preadv2(&file, &mut probe, 0, nowait).is_err();
        }
        if evicted {
            let from_disk = place(&data::fetch(&state, long_poll(0, 0, false), 12).await);
            assert_eq!(from_disk, cached);
        } else {
            eprintln!("the file system keeps segments in memory: nothing to read from the disk");
        }
        broker.shutdown().await.unwrap();
    }

    /// A Produce decoded from a pooled body holds no part of it once appended: the records
    /// went with the append, and the topic names its response keeps until the reply is
    /// written (after the sync, and after every earlier reply on the connection) are copies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_appended_produce_holds_no_part_of_its_pooled_body() {
        use kafka_protocol::protocol::{Decodable, Encodable};
        struct Body(crate::buffer_pool::PooledBuffer, usize);
        impl AsRef<[u8]> for Body {
            fn as_ref(&self) -> &[u8] {
                &self.0.as_slice()[..self.1]
            }
        }
        let (broker, state, _dir) = broker_with_topic(1).await;
        let pool = std::sync::Arc::new(crate::buffer_pool::BufferPool::new(1, 1 << 20));
        let records = sluice_wire::batch::build(0, crate::clock::now_ms(), &[b"v"]);
        let mut encoded = bytes::BytesMut::new();
        produce_request(records).encode(&mut encoded, 9).unwrap();
        let mut buffer = pool.take().unwrap();
        buffer.bytes()[..encoded.len()].copy_from_slice(&encoded);
        let body = bytes::Bytes::from_owner(Body(buffer, encoded.len()));
        let request = ProduceRequest::decode(&mut body.clone(), 9).unwrap();
        drop(body);
        assert_eq!(pool.counts(), (0, 0), "the decoded request holds the buffer");
        let staged = data::produce_append(&state, request, 9, &test_client()).await;
        assert_eq!(pool.counts(), (1, 0), "appended: the buffer is back before the sync");
        let response = data::produce_finish(staged).await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        broker.shutdown().await.unwrap();
    }

    /// With `log.flush = never` a record is readable once appended: the append wakes the
    /// long poll, with no sync to do it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_syncs_the_append_wakes_a_long_poll() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::BrokerConfig::new(dir.path());
        config.set("listeners", "PLAINTEXT://127.0.0.1:0");
        config.set("log.flush", "never");
        let broker = crate::Broker::start(config).await.unwrap();
        broker.create_topic("t", 1, &Default::default()).await.unwrap();
        let state = broker.state_for_tests();
        let polling = std::sync::Arc::clone(&state);
        let waiting = tokio::spawn(async move {
            data::fetch(&polling, long_poll(0, 0, false), 12).await.slices[0][0].is_some()
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!waiting.is_finished());
        assert_eq!(produce_records(&state, sluice_wire::batch::build(0, 1, &[b"v"])).await, 0);
        let records = tokio::time::timeout(std::time::Duration::from_secs(3), waiting)
            .await
            .expect("the long poll was not woken")
            .unwrap();
        assert!(records, "no records");
        broker.shutdown().await.unwrap();
    }

    /// Every transactional batch of a produce is checked against its producer's open
    /// transaction, not only the first: a second batch from a producer with none is refused
    /// with the partition's whole part, and nothing is appended.
    #[tokio::test]
    async fn every_transactional_batch_of_a_produce_is_verified() {
        let (broker, state, _dir) = broker_with_topic(1).await;
        let txns = &state.transactions;
        let (producer, epoch) = txns.init_producer_id(&state, "x", 60_000, None).unwrap();
        txns.add_partitions(&state, "x", producer, epoch, &[("t".to_string(), 0)]).unwrap();
        let stray = [
            transactional_batch((producer, epoch), 0),
            transactional_batch((producer + 1000, 0), 0),
        ]
        .concat();
        let code = produce_records(&state, stray).await;
        assert_eq!(code, ResponseError::InvalidProducerIdMapping.code());
        let partition = state.topics.get("t").unwrap().partition(0).unwrap().clone();
        assert_eq!(partition.with_log(|log| log.log_end_offset()), 0, "nothing appended");
        assert_eq!(produce_records(&state, transactional_batch((producer, epoch), 0)).await, 0);
        broker.shutdown().await.unwrap();
    }

    /// A transactional produce racing EndTxn (a client that ends its transaction without
    /// awaiting its produces) lands before the marker or is refused, never after it: no
    /// stray transaction is left open in the partition to hold its last stable offset.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_produce_racing_end_txn_never_lands_after_the_marker() {
        let (broker, state, _dir) = broker_with_topic(1).await;
        let txns = &state.transactions;
        let (producer, epoch) = txns.init_producer_id(&state, "x", 60_000, None).unwrap();
        let partition = state.topics.get("t").unwrap().partition(0).unwrap().clone();
        let mut sequence = 0;
        for round in 0..300 {
            txns.add_partitions(&state, "x", producer, epoch, &[("t".to_string(), 0)]).unwrap();
            let producing = {
                let state = std::sync::Arc::clone(&state);
                let batch = transactional_batch((producer, epoch), sequence);
                tokio::spawn(async move { produce_records(&state, batch).await })
            };
            let ending = {
                let state = std::sync::Arc::clone(&state);
                tokio::task::spawn_blocking(move || {
                    state.transactions.end_txn(&state, "x", producer, epoch, false)
                })
            };
            let code = producing.await.unwrap();
            assert_eq!(ending.await.unwrap(), Ok(false), "round {round}");
            if code == 0 {
                sequence += 1;
            } else {
                assert_eq!(code, ResponseError::InvalidTxnState.code(), "round {round}");
            }
            let open = partition.with_log(|log| log.producers().open_transactions());
            assert!(open.is_empty(), "round {round}: a stray transaction {open:?}");
        }
        broker.shutdown().await.unwrap();
    }

    /// A completion without offsets is stored later (by the tick, or at shutdown), and
    /// never over a decision the id stored after it: the store would lose that decision.
    #[tokio::test]
    async fn a_completion_is_stored_later_and_never_over_a_newer_decision() {
        use crate::store::TxnState;
        let (broker, state, dir) = broker_with_topic(2).await;
        let txns = &state.transactions;
        let stored = || state.store.transactions().unwrap()["x"].state;
        let (producer, epoch) = txns.init_producer_id(&state, "x", 60_000, None).unwrap();
        let decide = || {
            txns.add_partitions(&state, "x", producer, epoch, &two_partitions()).unwrap();
            assert_eq!(txns.end_txn(&state, "x", producer, epoch, true), Ok(true));
            txns.complete_pending(&state, "x");
        };
        decide();
        assert_eq!(stored(), TxnState::PrepareCommit, "the completion waits for the tick");
        txns.save_completions(&state, false).unwrap();
        assert_eq!(stored(), TxnState::CompleteCommit);
        // The next transaction completes, unsaved; the one after stores its decision.
        decide();
        txns.add_partitions(&state, "x", producer, epoch, &two_partitions()).unwrap();
        assert_eq!(txns.end_txn(&state, "x", producer, epoch, true), Ok(true));
        txns.save_completions(&state, false).unwrap();
        assert_eq!(stored(), TxnState::PrepareCommit, "the newer decision stays stored");
        txns.complete_pending(&state, "x");
        broker.shutdown().await.unwrap();
        drop(state);
        let reopened = crate::store::Store::open(&dir.path().join("meta.redb")).unwrap();
        let record = &reopened.transactions().unwrap()["x"];
        assert_eq!(record.state, TxnState::CompleteCommit, "shutdown stores the completion");
    }

    /// A zstd batch in a Produce older than v7 is refused with UNSUPPORTED_COMPRESSION_TYPE
    /// (KIP-110); at v7 it is stored.
    #[tokio::test]
    async fn zstd_needs_produce_v7() {
        let (broker, state, _dir) = broker_with_topic(1).await;
        use sluice_wire::batch::{self, Compression};
        let batch = batch::compress(&batch::build(0, 1, &[b"v"]), Compression::Zstd).unwrap();
        let request = produce_request(batch);
        let client = test_client();
        for (version, expected) in [(6, ResponseError::UnsupportedCompressionType.code()), (7, 0)] {
            let response = data::produce(&state, request.clone(), version, &client).await;
            let code = response.responses[0].partition_responses[0].error_code;
            assert_eq!(code, expected, "produce v{version}");
        }
        broker.shutdown().await.unwrap();
    }

    /// A batch that declares more records than it holds, compressed or not, is
    /// INVALID_RECORD (as Kafka's "Incorrect declared batch size", not retriable), so is
    /// compressed data that does not decompress; a compression id naming no codec is
    /// UNSUPPORTED_COMPRESSION_TYPE; a record two hours ahead (past Kafka 4's default
    /// `message.timestamp.after.max.ms`), also inside a compressed batch, is
    /// INVALID_TIMESTAMP; and none of them appends anything.
    #[tokio::test]
    async fn bad_record_counts_and_timestamps_get_their_kafka_errors() {
        let (broker, state, _dir) = broker_with_topic(1).await;
        let now = crate::clock::now_ms();
        let mut claiming = sluice_wire::batch::build(0, now, &[b"v"]);
        claiming[23..27].copy_from_slice(&1i32.to_be_bytes()); // lastOffsetDelta
        claiming[57..61].copy_from_slice(&2i32.to_be_bytes()); // recordsCount
        let crc = crc32c::crc32c(&claiming[21..]);
        claiming[17..21].copy_from_slice(&crc.to_be_bytes());
        use sluice_wire::batch::{self, Compression};
        let packed = batch::compress(&claiming, Compression::Zstd).unwrap();
        assert_eq!(produce_records(&state, claiming).await, ResponseError::InvalidRecord.code());
        assert_eq!(produce_records(&state, packed).await, ResponseError::InvalidRecord.code());
        let mut not_gzip = sluice_wire::batch::build(0, now, &[b"v"]);
        not_gzip[22] |= 1;
        let crc = crc32c::crc32c(&not_gzip[21..]);
        not_gzip[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            produce_records(&state, not_gzip.clone()).await,
            ResponseError::InvalidRecord.code()
        );
        let mut no_codec = not_gzip;
        no_codec[22] |= 7;
        let crc = crc32c::crc32c(&no_codec[21..]);
        no_codec[17..21].copy_from_slice(&crc.to_be_bytes());
        let unsupported = ResponseError::UnsupportedCompressionType.code();
        assert_eq!(produce_records(&state, no_codec).await, unsupported);
        let ahead = sluice_wire::batch::build(0, now + 7_200_000, &[b"v"]);
        // Inside a compressed batch, behind a first record of now, with a header claiming
        // now as the max: only the walk sees the late record.
        let late = batch::build_timestamped(now, &[(now, b"v"), (now + 7_200_000, b"w")]);
        let mut packed = batch::compress(&late, Compression::Lz4).unwrap();
        packed[35..43].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c(&packed[21..]);
        packed[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(produce_records(&state, ahead).await, ResponseError::InvalidTimestamp.code());
        assert_eq!(produce_records(&state, packed).await, ResponseError::InvalidTimestamp.code());
        let partition = state.topics.get("t").unwrap().partition(0).unwrap().clone();
        assert_eq!(partition.with_log(|log| log.log_end_offset()), 0, "nothing appended");
        let fine = sluice_wire::batch::build(0, now, &[b"v"]);
        assert_eq!(produce_records(&state, fine).await, 0);
        broker.shutdown().await.unwrap();
    }

    /// A compacted topic refuses a batch holding keyless records, compressed or not, naming
    /// them in `record_errors` (KIP-467); a batch that fails validation gets the append's own
    /// error rather than the compacted check's.
    #[tokio::test]
    async fn compacted_topics_refuse_keyless_records() {
        use sluice_wire::batch::{self, BatchSpec, Compression};
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::BrokerConfig::new(dir.path());
        config.set("listeners", "PLAINTEXT://127.0.0.1:0");
        let broker = crate::Broker::start(config).await.unwrap();
        let configs = [("cleanup.policy".to_string(), "compact".to_string())].into();
        broker.create_topic("t", 1, &configs).await.unwrap();
        let state = broker.state_for_tests();
        let now = crate::clock::now_ms();
        let spec = BatchSpec { timestamp_ms: now, ..BatchSpec::default() };
        let keyless = batch::build_batch(&spec, &[(Some(b"k"), Some(b"a")), (None, Some(b"b"))]);
        for records in [keyless.clone(), batch::compress(&keyless, Compression::Gzip).unwrap()] {
            let response = data::produce(&state, produce_request(records), 9, &test_client()).await;
            let partition = &response.responses[0].partition_responses[0];
            assert_eq!(partition.error_code, ResponseError::InvalidRecord.code());
            let named: Vec<i32> = partition.record_errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(named, vec![1]);
            let message = partition.error_message.as_ref().map(|m| m.to_string());
            let expected =
                "Compacted topic cannot accept message without key in topic partition t-0.";
            assert_eq!(message.as_deref(), Some(expected));
        }
        let mut claiming = keyless;
        claiming[57..61].copy_from_slice(&3i32.to_be_bytes());
        claiming[23..27].copy_from_slice(&2i32.to_be_bytes());
        let crc = crc32c::crc32c(&claiming[21..]);
        claiming[17..21].copy_from_slice(&crc.to_be_bytes());
        let code = produce_records(&state, claiming).await;
        assert_eq!(
            code,
            ResponseError::InvalidRecord.code(),
            "the count mismatch, from the append"
        );
        let keyed = batch::build_batch(&spec, &[(Some(b"k"), Some(b"a"))]);
        assert_eq!(produce_records(&state, keyed).await, 0);
        broker.shutdown().await.unwrap();
    }

    /// Group ids are store keys: NUL is refused. A group with committed offsets and no
    /// members describes as Empty, one with neither as Dead.
    #[tokio::test]
    async fn group_ids_are_checked_and_offset_only_groups_are_empty() {
        let (broker, state, _dir) = broker_with_topic(1).await;
        let client = test_client();
        let protocol = join_group_request::JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"));
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("a\0b")))
            .with_session_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![protocol]);
        let joined = group::join_group(&state, join, 5, &client).await;
        assert_eq!(joined.error_code, ResponseError::InvalidGroupId.code());

        let commit = |group: &'static str| {
            let p = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_committed_offset(5);
            let topic = offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![p]);
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![topic])
        };
        let refused = group::offset_commit(&state, commit("g\0"), 8);
        assert_eq!(
            refused.topics[0].partitions[0].error_code,
            ResponseError::InvalidGroupId.code()
        );
        let accepted = group::offset_commit(&state, commit("offsets-only"), 8);
        assert_eq!(accepted.topics[0].partitions[0].error_code, 0);

        let ids = ["offsets-only", "unknown"].map(|g| GroupId(StrBytes::from_static_str(g)));
        let described = group::describe_groups(
            &state,
            DescribeGroupsRequest::default().with_groups(ids.to_vec()),
            5,
        );
        let states: Vec<String> =
            described.groups.iter().map(|g| g.group_state.to_string()).collect();
        assert_eq!(states, ["Empty", "Dead"]);
        broker.shutdown().await.unwrap();
    }
}
