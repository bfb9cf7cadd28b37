//! InitProducerId: producer ids for idempotent producers.
//!
//! Ids come from the store in blocks, so they are unique across restarts. Each partition's
//! log checks the sequence numbers of every batch and drops retries (see
//! `sluice_log::ProducerStates`). A transactional id goes to the transaction coordinator
//! (`crate::transactions`), which binds it to a producer id and bumps the epoch.
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::state::State;

pub(crate) async fn init_producer_id(
    state: &std::sync::Arc<State>,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    // Kafka refuses an empty transactional id; null means an idempotent producer.
    if request.transactional_id.as_ref().is_some_and(|id| id.is_empty()) {
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    if let Some(transactional_id) = request.transactional_id.as_ref() {
        let current =
            (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        let id = transactional_id.to_string();
        let timeout_ms = request.transaction_timeout_ms;
        let state = std::sync::Arc::clone(state);
        let outcome = tokio::task::spawn_blocking(move || {
            state.transactions.init_producer_id(&state, &id, timeout_ms, current)
        })
        .await
        .unwrap_or(Err(ResponseError::UnknownServerError));
        return match outcome {
            Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(mut error) => {
                // PRODUCER_FENCED arrived with InitProducerId v4 (KIP-588).
                if error == ResponseError::ProducerFenced && version < 4 {
                    error = ResponseError::InvalidProducerEpoch;
                }
                InitProducerIdResponse::default()
                    .with_error_code(error.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        };
    }
    // A producer re-initialising its id (KIP-360) keeps it with the next epoch.
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX
    {
        return InitProducerIdResponse::default()
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    // A new block of ids is a synced store write: off the async workers.
    let next = match state.producer_ids.take() {
        Some(id) => Ok(id),
        None => {
            let state = std::sync::Arc::clone(state);
            tokio::task::spawn_blocking(move || state.producer_ids.next(&state.store))
                .await
                .unwrap_or_else(|e| Err(crate::Error::Unavailable(e.to_string())))
        }
    };
    match next {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::error!(%error, "cannot allocate a producer id");
            InitProducerIdResponse::default()
                .with_error_code(error.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}

/// Hands out producer ids from blocks reserved in the store.
#[derive(Default)]
pub(crate) struct ProducerIds {
    /// The next id to hand out and the end of the reserved block.
    block: std::sync::Mutex<(i64, i64)>,
}

/// Ids reserved per store write.
const PRODUCER_ID_BLOCK_COUNT: i64 = 1000;

impl ProducerIds {
    /// The next id of the reserved block; `None` when a new block must be reserved.
    /// Never waits: while [`ProducerIds::next`] reserves a block (an fsync), `None` too.
    pub fn take(&self) -> Option<i64> {
        let mut block = match self.block.try_lock() {
            Ok(block) => block,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        (block.0 < block.1).then(|| {
            block.0 += 1;
            block.0 - 1
        })
    }

    /// The next id, reserving a new block in the store when this one is used up.
    pub fn next(&self, store: &crate::store::Store) -> crate::Result<i64> {
        let mut block = self.block.lock().unwrap_or_else(|p| p.into_inner());
        if block.0 >= block.1 {
            let first = store.allocate_producer_ids(PRODUCER_ID_BLOCK_COUNT)?;
            *block = (first, first + PRODUCER_ID_BLOCK_COUNT);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
