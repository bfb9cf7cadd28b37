//! Transaction requests (KIP-98): AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
//! EndTxn, DescribeTransactions and ListTransactions, over [`crate::transactions`].
//!
//! The coordinator's operations sync the metadata store and, for EndTxn, the log, so they
//! run on the blocking pool.
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::ResponseError;

use super::text;
use crate::clock::now_ms;
use crate::limits::{MARKER_SYNC_DELAY_MS, OFFSET_METADATA_BYTES_MAX};
use crate::state::State;
use crate::store::{OffsetRecord, PendingOffset};

/// Clients older than KIP-588 know INVALID_PRODUCER_EPOCH, not PRODUCER_FENCED: each API's
/// first version that may carry PRODUCER_FENCED.
fn fenced_for(error: ResponseError, version: i16, fenced_since: i16) -> ResponseError {
    if error == ResponseError::ProducerFenced && version < fenced_since {
        ResponseError::InvalidProducerEpoch
    } else {
        error
    }
}

/// Runs a coordinator operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &Arc<State>,
    work: impl FnOnce(&State) -> T + Send + 'static,
) -> std::result::Result<T, ResponseError> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || work(&state)).await.map_err(|error| {
        tracing::error!(%error, "transaction task failed");
        ResponseError::UnknownServerError
    })
}

pub(crate) async fn add_partitions_to_txn(
    state: &Arc<State>,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let id = request.v3_and_below_transactional_id.to_string();
    let producer_id = request.v3_and_below_producer_id.0;
    let epoch = request.v3_and_below_producer_epoch;
    let mut wanted: Vec<(String, i32)> = Vec::new();
    let mut unknown: Vec<(String, i32)> = Vec::new();
    for topic in &request.v3_and_below_topics {
        let known = state.topics.get(&topic.name);
        for index in &topic.partitions {
            let entry = (topic.name.to_string(), *index);
            if known.as_ref().and_then(|t| t.partition(*index)).is_some() {
                wanted.push(entry);
            } else {
                unknown.push(entry);
            }
        }
    }
    // Kafka adds nothing when any partition is unknown: that one fails and the rest say
    // OPERATION_NOT_ATTEMPTED.
    let outcome = if unknown.is_empty() {
        let list = wanted.clone();
        blocking(state, move |state| {
            state.transactions.add_partitions(state, &id, producer_id, epoch, &list)
        })
        .await
        .and_then(|result| result)
    } else {
        Err(ResponseError::OperationNotAttempted)
    };
    let code_for = |entry: &(String, i32)| match &outcome {
        Ok(()) => 0,
        Err(_) if unknown.contains(entry) => ResponseError::UnknownTopicOrPartition.code(),
        Err(error) => fenced_for(*error, version, 2).code(),
    };
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|index| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*index)
                        .with_partition_error_code(code_for(&(topic.name.to_string(), *index)))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

pub(crate) async fn add_offsets_to_txn(
    state: &Arc<State>,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.to_string();
    let group = request.group_id.to_string();
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    let outcome = if crate::groups::valid_group_id(&group) {
        blocking(state, move |state| {
            state.transactions.add_offsets(state, &id, producer_id, epoch, &group)
        })
        .await
        .and_then(|result| result)
    } else {
        Err(ResponseError::InvalidGroupId)
    };
    let code = outcome.err().map_or(0, |e| fenced_for(e, version, 2).code());
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub(crate) async fn txn_offset_commit(
    state: &Arc<State>,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group = request.group_id.to_string();
    let member = request.member_id.as_str();
    let consumer =
        state.consumer_groups.check_commit(&group, member, request.generation_id, version, true);
    let member_check = consumer.unwrap_or_else(|| {
        state.groups.check_txn_commit(
            &group,
            request.generation_id,
            member,
            request.group_instance_id.as_deref(),
        )
    });
    let now = now_ms();
    let mut pending = Vec::new();
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let known = state.topics.get(&topic.name);
        let mut topic_codes = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
            let code = if member_check != 0 {
                member_check
            } else if known.as_ref().and_then(|t| t.partition(p.partition_index)).is_none() {
                ResponseError::UnknownTopicOrPartition.code()
            } else if metadata.as_ref().is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX) {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                pending.push(PendingOffset {
                    group: group.clone(),
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                    record: OffsetRecord {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp_ms: now,
                    },
                });
                0
            };
            topic_codes.push(code);
        }
        codes.push(topic_codes);
    }
    if !pending.is_empty() {
        let id = request.transactional_id.to_string();
        let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
        let outcome = blocking(state, move |state| {
            state.transactions.commit_offsets(state, &id, producer_id, epoch, pending)
        })
        .await
        .and_then(|result| result);
        if let Err(error) = outcome {
            let code = fenced_for(error, version, 3).code();
            for code_slot in codes.iter_mut().flatten().filter(|c| **c == 0) {
                *code_slot = code;
            }
        }
    }
    let topics = request
        .topics
        .into_iter()
        .zip(codes)
        .map(|(topic, codes)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, code)| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

pub(crate) async fn end_txn(
    state: &Arc<State>,
    request: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    let id = request.transactional_id.to_string();
    let (producer_id, epoch, commit) =
        (request.producer_id.0, request.producer_epoch, request.committed);
    // One blocking task decides, hands the answer back, then writes the markers (as in
    // Kafka, behind the answer; the next operation on this transactional id completes the
    // transaction first if this has not yet).
    let (answer, answered) = tokio::sync::oneshot::channel();
    let deciding = Arc::clone(state);
    let task = tokio::task::spawn_blocking(move || {
        let state = &deciding;
        let outcome = state.transactions.end_txn(state, &id, producer_id, epoch, commit);
        let pending = outcome == Ok(true);
        let _ = answer.send(outcome);
        if pending {
            state.transactions.complete_pending(state, &id);
        }
        pending
    });
    let outcome = match answered.await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::error!("transaction task failed");
            Err(ResponseError::UnknownServerError)
        }
    };
    if outcome == Ok(true) {
        // The markers' syncs wait a moment for a produce's sync of the same partitions to
        // cover them; only markers still unsynced then cost a sync.
        let state = Arc::clone(state);
        tokio::spawn(async move {
            if !matches!(task.await, Ok(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(MARKER_SYNC_DELAY_MS)).await;
            if !state.store.markers_unsynced() {
                return;
            }
            // The syncs wake the fetches waiting for the markers' partitions.
            let syncing = Arc::clone(&state);
            match tokio::task::spawn_blocking(move || syncing.store.sync_markers()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "transaction marker sync failed; retrying later")
                }
                Err(_) => {}
            }
        });
    }
    let code = outcome.err().map_or(0, |e| fenced_for(e, version, 2).code());
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

pub(crate) fn describe_transactions(
    state: &State,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let all = state.transactions.snapshot();
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let found = all.iter().find(|(name, _)| name.as_str() == id.as_str());
            let answer = describe_transactions_response::TransactionState::default()
                .with_transactional_id(id.clone());
            let Some((_, record)) = found else {
                return answer
                    .with_error_code(ResponseError::TransactionalIdNotFound.code())
                    .with_transaction_state(text(String::new()))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            };
            let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
            for (topic, partition) in &record.partitions {
                by_topic.entry(topic).or_default().push(*partition);
            }
            let topics = by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicData::default()
                        .with_topic(TopicName(text(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect();
            answer
                .with_transaction_state(text(record.state.kafka_name().to_string()))
                .with_transaction_timeout_ms(record.timeout_ms)
                .with_transaction_start_time_ms(record.started_ms)
                .with_producer_id(ProducerId(record.producer_id))
                .with_producer_epoch(record.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub(crate) fn list_transactions(
    state: &State,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    const STATES: [&str; 7] = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "PrepareEpochFence",
    ];
    let now = now_ms();
    let filters: Vec<String> = request.state_filters.iter().map(|s| s.to_string()).collect();
    let unknown =
        filters.iter().filter(|f| !STATES.contains(&f.as_str())).map(|f| text(f.clone())).collect();
    let states = state
        .transactions
        .snapshot()
        .into_iter()
        .filter(|(_, r)| filters.is_empty() || filters.iter().any(|f| f == r.state.kafka_name()))
        .filter(|(_, r)| {
            request.producer_id_filters.is_empty()
                || request.producer_id_filters.contains(&ProducerId(r.producer_id))
        })
        .filter(|(_, r)| {
            // v1 (KIP-994): only transactions open longer than this many ms.
            request.duration_filter < 0
                || (r.started_ms >= 0 && now - r.started_ms >= request.duration_filter)
        })
        .map(|(id, r)| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(text(id)))
                .with_producer_id(ProducerId(r.producer_id))
                .with_transaction_state(text(r.state.kafka_name().to_string()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
