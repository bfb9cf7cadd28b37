//! The transaction coordinator (KIP-98): transactional ids, their producer ids and epochs,
//! the partitions and offsets of each open transaction, and the markers that end it.
//!
//! What the metadata store (`transactions` table) holds, and when:
//! - `InitProducerId` binds a transactional id to a producer id and bumps its epoch, which
//!   fences older instances of the producer (synced). An open transaction is aborted first.
//! - An open transaction (`AddPartitionsToTxn`, `AddOffsetsToTxn`, `TxnOffsetCommit`) lives
//!   in memory only.
//! - `EndTxn` stores `PrepareCommit`/`PrepareAbort` (synced: it holds the decision, the
//!   partitions, the groups, the pending offsets, and each partition's log end offset), then
//!   writes a marker (control batch) to every partition, and stores
//!   `CompleteCommit`/`CompleteAbort` with a commit's offsets in one store transaction
//!   (unsynced). A completion without offsets is stored later, by the next tick or at
//!   shutdown, unless the id's next write (its next decision, say) supersedes it first: it
//!   only spares a restart from writing the markers again. The markers' syncs are deferred:
//!   a produce's sync of the partition covers them, or a sync a few milliseconds later, and
//!   every synced store commit syncs them first (`Store::defer_marker_syncs`), so the store
//!   never durably holds a completion whose markers a crash could take back.
//! - Except for a transaction of at most one partition and no offsets (the common
//!   producer's transaction): its marker is its decision, so `EndTxn` stores no prepare
//!   state; it writes the marker and syncs its partition (group commit with that
//!   partition's produces) before it answers, and stores the completion later as above.
//! - A transaction open longer than its timeout is aborted with a bumped epoch, fencing the
//!   producer that left it open.
//!
//! After a crash (`Transactions::recover`, before any request): a prepare state is
//! completed, except in a partition where the producer already has a transaction open from
//! the decision's log end onwards (the marker is there, and the open one is a later
//! transaction); then every transaction still open in a partition was never decided, so it
//! is aborted and its producer fenced (epoch bumped), as a timeout abort does. A producer
//! cannot commit a transaction a restart interrupted; it sees PRODUCER_FENCED and starts
//! again with InitProducerId.
//!
//! Operations on one transactional id run one at a time (a lock per id); operations on
//! different ids run at once. The in-memory map is behind a mutex held only to read or
//! replace a record, never across a store write or a sync. A synced store write commits
//! synced itself when no other sync is running, and otherwise shares one sync with the
//! writes of other ids (`Store::put_transaction`'s group commit). An `EndTxn` (or
//! an abort) shows its prepare state in memory before it writes anything, so from then on a
//! produce for the ending transaction is refused.
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::ResponseError;
use sluice_log::{FlushPolicy, Partition};
use sluice_wire::batch::ControlType;

use crate::clock::now_ms;
use crate::state::State;
use crate::store::{PendingOffset, Store, TxnRecord, TxnState};
use crate::Result;

/// A coordinator answer: the Kafka error a client sees.
pub(crate) type TxnResult<T> = std::result::Result<T, ResponseError>;

/// The coordinator's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxnSettings {
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an idle transactional id is forgotten after this.
    pub id_expiration_ms: i64,
}

#[derive(Default)]
struct Inner {
    records: HashMap<String, TxnRecord>,
    /// Producer id to transactional id.
    by_producer: HashMap<i64, String>,
}

impl Inner {
    fn insert(&mut self, id: &str, record: TxnRecord) {
        if let Some(old) = self.records.get(id) {
            if old.producer_id != record.producer_id {
                self.by_producer.remove(&old.producer_id);
            }
        }
        self.by_producer.insert(record.producer_id, id.to_string());
        self.records.insert(id.to_string(), record);
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.records.remove(id) {
            self.by_producer.remove(&old.producer_id);
        }
    }
}

/// The transaction coordinator.
pub(crate) struct Transactions {
    inner: Mutex<Inner>,
    /// One lock per transactional id, held for a whole operation on it.
    ops: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Completions not yet stored (a commit without offsets, or an abort): the completed
    /// record per transactional id, written by the next tick or at shutdown unless a later
    /// write of the id stores something newer first (see [`Transactions::save`]).
    unsaved: Mutex<HashMap<String, TxnRecord>>,
    settings: TxnSettings,
}

/// The first error of a request about a transactional id and its producer.
fn check_producer(
    record: Option<&TxnRecord>,
    producer_id: i64,
    producer_epoch: i16,
) -> TxnResult<TxnRecord> {
    let Some(record) = record else {
        return Err(ResponseError::InvalidProducerIdMapping);
    };
    if record.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if record.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(record.clone())
}

fn storage_error(error: crate::Error) -> ResponseError {
    tracing::error!(%error, "transaction state write failed");
    ResponseError::CoordinatorNotAvailable
}

impl Transactions {
    /// Loads every transactional id from the store.
    pub fn load(store: &Store, settings: TxnSettings) -> Result<Transactions> {
        let mut inner = Inner::default();
        for (id, record) in store.transactions()? {
            inner.insert(&id, record);
        }
        Ok(Transactions {
            inner: Mutex::new(inner),
            ops: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
            settings,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lock of one transactional id's operations (take it with [`lock_op`]).
    fn op(&self, transactional_id: &str) -> Arc<Mutex<()>> {
        let mut ops = self.ops.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(ops.entry(transactional_id.to_string()).or_default())
    }

    /// Forgets the lock of an id nobody holds or waits for (a holder took it from the map,
    /// under the map's mutex, so a count of one means no holder).
    fn forget_op(&self, transactional_id: &str) {
        let mut ops = self.ops.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if ops.get(transactional_id).is_some_and(|op| Arc::strong_count(op) == 1) {
            ops.remove(transactional_id);
        }
    }

    /// A copy of one record.
    fn get(&self, transactional_id: &str) -> Option<TxnRecord> {
        self.lock().records.get(transactional_id).cloned()
    }

    /// Replaces one record in memory.
    fn set(&self, transactional_id: &str, record: TxnRecord) {
        self.lock().insert(transactional_id, record);
    }

    /// Every store write of an id goes through here, with the id's lock held: it stores
    /// `record` (`None` removes the id) and drops the id's unsaved completion, which the
    /// write supersedes.
    fn save(
        &self,
        state: &State,
        transactional_id: &str,
        record: Option<&TxnRecord>,
        offsets: &[PendingOffset],
        durable: bool,
    ) -> Result<()> {
        self.unsaved_lock().remove(transactional_id);
        state.store.put_transaction(transactional_id, record, offsets, durable)
    }

    fn unsaved_lock(&self) -> MutexGuard<'_, HashMap<String, TxnRecord>> {
        self.unsaved.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores every completion not stored yet (unsynced, or synced with `durable`). A
    /// completion only spares a restart from completing the transaction again: until it
    /// is stored, the store holds the prepare state, whose markers recovery would write
    /// again (a marker that closes nothing is harmless).
    pub fn save_completions(&self, state: &State, durable: bool) -> Result<()> {
        let ids: Vec<String> = self.unsaved_lock().keys().cloned().collect();
        for id in ids {
            let op = self.op(&id);
            let _op = lock_op(&op);
            // Taken under the id's lock: a newer write of the id removed it already.
            let Some(record) = self.unsaved_lock().remove(&id) else { continue };
            if let Err(error) = state.store.put_transaction(&id, Some(&record), &[], false) {
                self.unsaved_lock().entry(id).or_insert(record);
                return Err(error);
            }
        }
        if durable {
            state.store.sync()?;
        }
        Ok(())
    }

    /// InitProducerId with a transactional id: returns the producer id and its new epoch.
    /// `current` is the producer id and epoch a producer re-initialising sends (KIP-360).
    pub fn init_producer_id(
        &self,
        state: &State,
        transactional_id: &str,
        timeout_ms: i32,
        current: Option<(i64, i16)>,
    ) -> TxnResult<(i64, i16)> {
        if timeout_ms <= 0 || timeout_ms > self.settings.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let op = self.op(transactional_id);
        let _op = lock_op(&op);
        let now = now_ms();
        // A decided transaction completes first (`settled`), whoever left it.
        let Some(mut record) = self.settled(state, transactional_id)? else {
            let producer_id = state.producer_ids.next(&state.store).map_err(storage_error)?;
            let record = TxnRecord {
                producer_id,
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                pending_offsets: Vec::new(),
                started_ms: -1,
                updated_ms: now,
                prepared_ends: Vec::new(),
            };
            self.save(state, transactional_id, Some(&record), &[], true).map_err(storage_error)?;
            self.set(transactional_id, record);
            return Ok((producer_id, 0));
        };
        if let Some((producer_id, epoch)) = current {
            if producer_id != record.producer_id || epoch != record.producer_epoch {
                return Err(ResponseError::ProducerFenced);
            }
        }
        match record.state {
            TxnState::Ongoing => {
                // A new instance takes over: abort what the old one left open, fenced.
                record.producer_epoch = record.producer_epoch.saturating_add(1);
                record = prepare_and_complete(state, self, transactional_id, record, false)?;
            }
            // `settled` completed any prepare state above.
            TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort => {}
        }
        if record.producer_epoch >= i16::MAX - 1 {
            // Epochs are exhausted: a new producer id starts again at epoch 0.
            record.producer_id = state.producer_ids.next(&state.store).map_err(storage_error)?;
            record.producer_epoch = 0;
        } else {
            record.producer_epoch += 1;
        }
        record.timeout_ms = timeout_ms;
        record.state = TxnState::Empty;
        record.started_ms = -1;
        record.updated_ms = now;
        self.save(state, transactional_id, Some(&record), &[], true).map_err(storage_error)?;
        let answer = (record.producer_id, record.producer_epoch);
        self.set(transactional_id, record);
        Ok(answer)
    }

    /// Checks a request that adds to the transaction and returns its record, opened.
    fn open_for_add(
        current: Option<&TxnRecord>,
        producer_id: i64,
        producer_epoch: i16,
    ) -> TxnResult<TxnRecord> {
        let mut record = check_producer(current, producer_id, producer_epoch)?;
        match record.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {}
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                record.state = TxnState::Ongoing;
                record.started_ms = now_ms();
                record.partitions.clear();
                record.groups.clear();
                record.pending_offsets.clear();
            }
        }
        record.updated_ms = now_ms();
        Ok(record)
    }

    /// AddPartitionsToTxn: the partitions must exist (the handler checks) before this.
    pub fn add_partitions(
        &self,
        state: &State,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> TxnResult<()> {
        let op = self.op(transactional_id);
        let _op = lock_op(&op);
        let current = self.settled(state, transactional_id)?;
        let mut record = Self::open_for_add(current.as_ref(), producer_id, producer_epoch)?;
        let before = record.partitions.len();
        record.partitions.extend(partitions.iter().cloned());
        if record.partitions.len() == before
            && current.is_some_and(|r| r.state == TxnState::Ongoing)
        {
            return Ok(()); // a retry: nothing new
        }
        // Not stored: an open transaction lives in memory, and after a crash the
        // partitions' own open-transaction state says where its records are (`recover`).
        self.set(transactional_id, record);
        Ok(())
    }

    /// AddOffsetsToTxn.
    pub fn add_offsets(
        &self,
        state: &State,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
    ) -> TxnResult<()> {
        let op = self.op(transactional_id);
        let _op = lock_op(&op);
        let current = self.settled(state, transactional_id)?;
        let mut record = Self::open_for_add(current.as_ref(), producer_id, producer_epoch)?;
        record.groups.insert(group.to_string());
        self.set(transactional_id, record);
        Ok(())
    }

    /// TxnOffsetCommit: keeps the offsets pending until the transaction ends.
    pub fn commit_offsets(
        &self,
        state: &State,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets: Vec<PendingOffset>,
    ) -> TxnResult<()> {
        let op = self.op(transactional_id);
        let _op = lock_op(&op);
        let mut record = check_producer(
            self.settled(state, transactional_id)?.as_ref(),
            producer_id,
            producer_epoch,
        )?;
        if record.state != TxnState::Ongoing
            || offsets.iter().any(|o| !record.groups.contains(&o.group))
        {
            // AddOffsetsToTxn must come first (it is what opens the group to the txn).
            return Err(ResponseError::InvalidTxnState);
        }
        for offset in offsets {
            record.pending_offsets.retain(|p| {
                (&p.group, &p.topic, p.partition)
                    != (&offset.group, &offset.topic, offset.partition)
            });
            record.pending_offsets.push(offset);
        }
        record.updated_ms = now_ms();
        self.set(transactional_id, record);
        Ok(())
    }

    /// EndTxn: decides the open transaction. Returns once the decision (the prepare state)
    /// is durable; `true` means its markers are still to be written: call
    /// [`Transactions::complete_pending`] (any other operation on the id completes it first
    /// too, so a producer never sees the transaction it ended as still ending).
    pub fn end_txn(
        &self,
        state: &State,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> TxnResult<bool> {
        let op = self.op(transactional_id);
        let _op = lock_op(&op);
        // A decided transaction completes first, so a retry of its EndTxn finds it complete.
        let current = self.settled(state, transactional_id)?;
        let record = check_producer(current.as_ref(), producer_id, producer_epoch)?;
        match (record.state, commit) {
            (TxnState::Ongoing, _) if ends_alone(&record) => {
                end_alone(state, self, transactional_id, record, commit)?;
                Ok(false)
            }
            (TxnState::Ongoing, _) => {
                prepare(state, self, transactional_id, record, commit)?;
                Ok(true)
            }
            // A retry of an EndTxn that completed.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(false),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// Writes the markers of a transaction EndTxn decided, and stores it complete, unless
    /// another operation on the id did first. A failure leaves the prepare state for the
    /// next operation on the id, or the next tick, to complete.
    pub fn complete_pending(&self, state: &State, transactional_id: &str) {
        let op = self.op(transactional_id);
        let _op = lock_op(&op);
        if let Err(error) = self.settled(state, transactional_id) {
            tracing::warn!(%transactional_id, ?error, "transaction markers not written; retrying later");
        }
    }

    /// The id's record, with a decided transaction (a prepare state) completed first: the
    /// start of every operation that follows an EndTxn. Call with the id's lock held.
    fn settled(&self, state: &State, transactional_id: &str) -> TxnResult<Option<TxnRecord>> {
        match self.get(transactional_id) {
            Some(record)
                if matches!(record.state, TxnState::PrepareCommit | TxnState::PrepareAbort) =>
            {
                let commit = record.state == TxnState::PrepareCommit;
                complete(state, self, transactional_id, record, commit, false).map(Some)
            }
            current => Ok(current),
        }
    }

    /// Checks a transactional batch before it is appended: its producer must have an open
    /// transaction that holds the partition, at the current epoch. Without this check, a
    /// batch outside any transaction would hold the partition's last stable offset forever.
    pub fn verify_produce(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> TxnResult<()> {
        let inner = self.lock();
        let record = inner.by_producer.get(&producer_id).and_then(|id| inner.records.get(id));
        let Some(record) = record else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        if producer_epoch < record.producer_epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        let added = record.partitions.contains(&(topic.to_string(), partition));
        if record.state != TxnState::Ongoing || producer_epoch != record.producer_epoch || !added {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(())
    }

    /// The group's partitions for which an open or committing transaction holds an offset
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them, KIP-447).
    /// A transaction's offsets are in the store before its record leaves these states, so a
    /// caller that takes this before reading the store never misses a commit in between.
    pub fn pending_offsets(&self, group: &str) -> BTreeSet<(String, i32)> {
        let inner = self.lock();
        inner
            .records
            .values()
            .filter(|r| matches!(r.state, TxnState::Ongoing | TxnState::PrepareCommit))
            .flat_map(|r| &r.pending_offsets)
            .filter(|p| p.group == group)
            .map(|p| (p.topic.clone(), p.partition))
            .collect()
    }

    /// Aborts transactions open past their timeout (with a bumped epoch, fencing their
    /// producer), completes any left in a prepare state, and forgets idle transactional ids.
    pub fn tick(&self, state: &State) {
        if let Err(error) = state.store.sync_markers() {
            tracing::warn!(%error, "transaction marker sync failed; retrying next tick");
        }
        if let Err(error) = self.save_completions(state, false) {
            tracing::warn!(%error, "storing completed transactions failed; retrying next tick");
        }
        let now = now_ms();
        let ids: Vec<String> = self.lock().records.keys().cloned().collect();
        for id in ids {
            let op = self.op(&id);
            let _op = lock_op(&op);
            let Some(record) = self.get(&id) else { continue };
            let outcome = match record.state {
                TxnState::Ongoing if now - record.started_ms > i64::from(record.timeout_ms) => {
                    tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
                    let mut fenced = record;
                    fenced.producer_epoch = fenced.producer_epoch.saturating_add(1);
                    prepare_and_complete(state, self, &id, fenced, false).map(|_| ())
                }
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    self.settled(state, &id).map(|_| ())
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    if now - record.updated_ms > self.settings.id_expiration_ms =>
                {
                    match self.save(state, &id, None, &[], false) {
                        Ok(()) => {
                            self.lock().remove(&id);
                            Ok(())
                        }
                        Err(error) => Err(storage_error(error)),
                    }
                }
                _ => Ok(()),
            };
            if let Err(error) = outcome {
                tracing::warn!(transactional_id = %id, ?error, "transaction upkeep failed; retrying next tick");
            }
            drop(_op);
            drop(op);
            if self.get(&id).is_none() {
                self.forget_op(&id);
            }
        }
    }

    /// Start-up recovery, before any request: completes every decided transaction (a
    /// prepare state), then aborts every transaction still open in a partition, because
    /// nothing decided it and its producer's state in memory is gone. The producer of such
    /// a transaction is fenced (its epoch bumped, as a timeout abort does), so it cannot
    /// go on to commit a transaction that lost its records' abort. Blocking.
    pub fn recover(&self, state: &State) -> Result<()> {
        let failed = |what: &str, id: &str, error: ResponseError| {
            crate::Error::Unavailable(format!(
                "transaction recovery: {what} for transactional id {id:?} failed ({error:?}); \
                 check the data folder's disk and restart"
            ))
        };
        let ids: Vec<String> = self.lock().records.keys().cloned().collect();
        for id in &ids {
            let Some(record) = self.get(id) else { continue };
            match record.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    let commit = record.state == TxnState::PrepareCommit;
                    complete(state, self, id, record, commit, true)
                        .map_err(|e| failed("completing a decided transaction", id, e))?;
                }
                TxnState::Ongoing => {
                    // Stored by an older version, which stored open transactions.
                    let mut fenced = record;
                    fenced.producer_epoch = fenced.producer_epoch.saturating_add(1);
                    prepare_and_complete(state, self, id, fenced, false)
                        .map_err(|e| failed("aborting an open transaction", id, e))?;
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {}
            }
        }
        // Every transaction still open in a partition: (partition, its name, the open one).
        let mut open = Vec::new();
        for topic in state.topics.all() {
            for (index, partition) in (0i32..).zip(&topic.partitions) {
                for txn in partition.with_log(|log| log.producers().open_transactions()) {
                    open.push((Arc::clone(partition), topic.name.clone(), index, txn));
                }
            }
        }
        // Fence each producer that still holds the epoch of a transaction left open.
        let mut fenced: HashMap<String, TxnRecord> = HashMap::new();
        for (_, _, _, txn) in &open {
            let owner = {
                let inner = self.lock();
                inner
                    .by_producer
                    .get(&txn.producer_id)
                    .and_then(|id| inner.records.get(id).map(|record| (id.clone(), record.clone())))
            };
            let Some((id, record)) = owner else { continue };
            let current = fenced.get(&id).map_or(record.producer_epoch, |r| r.producer_epoch);
            if current <= txn.producer_epoch {
                fenced.entry(id).or_insert(record).producer_epoch =
                    txn.producer_epoch.saturating_add(1);
            }
        }
        let now = now_ms();
        let mut markers = Vec::new();
        for (partition, topic, index, txn) in &open {
            let epoch = fenced
                .values()
                .find(|record| record.producer_id == txn.producer_id)
                .map_or(txn.producer_epoch, |record| record.producer_epoch.max(txn.producer_epoch));
            tracing::info!(%topic, partition = index, producer_id = txn.producer_id, first_offset = txn.first_offset, "aborting a transaction a restart left open");
            let info = partition
                .append_marker(txn.producer_id, epoch, ControlType::Abort, 0, now)
                .map_err(crate::Error::Log)?;
            markers.push((Arc::clone(partition), info.last_offset + 1));
        }
        // Synced before any synced commit below (the fences), and at the latest at the end.
        state.store.defer_marker_syncs(markers);
        for (id, mut record) in fenced {
            record.state = TxnState::CompleteAbort;
            record.partitions.clear();
            record.groups.clear();
            record.pending_offsets.clear();
            record.prepared_ends.clear();
            record.started_ms = -1;
            record.updated_ms = now;
            self.save(state, &id, Some(&record), &[], true)?;
            self.set(&id, record);
        }
        state.store.sync_markers()?;
        if !open.is_empty() {
            state.wakeups.wake_all();
        }
        Ok(())
    }

    /// Every transactional id with its record, for DescribeTransactions/ListTransactions.
    pub fn snapshot(&self) -> Vec<(String, TxnRecord)> {
        let inner = self.lock();
        let mut all: Vec<(String, TxnRecord)> =
            inner.records.iter().map(|(id, r)| (id.clone(), r.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Stores the prepare state, then completes.
fn prepare_and_complete(
    state: &State,
    txns: &Transactions,
    transactional_id: &str,
    record: TxnRecord,
    commit: bool,
) -> TxnResult<TxnRecord> {
    let prepared = prepare(state, txns, transactional_id, record, commit)?;
    complete(state, txns, transactional_id, prepared, commit, false)
}

/// Stores the prepare state (synced: it holds the decision). It shows in memory first, so
/// a produce for the ending transaction is refused from the moment it starts to end.
fn prepare(
    state: &State,
    txns: &Transactions,
    transactional_id: &str,
    mut record: TxnRecord,
    commit: bool,
) -> TxnResult<TxnRecord> {
    let before = txns.get(transactional_id);
    record.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
    record.updated_ms = now_ms();
    txns.set(transactional_id, record.clone());
    // After the prepare state shows, so no record of the transaction comes after these.
    record.prepared_ends = log_ends(state, &record);
    if let Err(error) = txns.save(state, transactional_id, Some(&record), &[], true) {
        // Not decided after all: memory goes back to what the store holds.
        match before {
            Some(before) => txns.set(transactional_id, before),
            None => txns.lock().remove(transactional_id),
        }
        return Err(storage_error(error));
    }
    Ok(record)
}

/// Whether a transaction's marker can be its decision: it holds at most one partition and
/// no offsets, so one marker ends it and nothing else has to agree with it.
fn ends_alone(record: &TxnRecord) -> bool {
    record.partitions.len() <= 1 && record.groups.is_empty() && record.pending_offsets.is_empty()
}

/// EndTxn of a transaction [`ends_alone`] allows: no prepare state is stored, because the
/// marker itself is the decision. It is written and synced (with the records before it, in
/// the partition's group commit) before the answer, and until it is synced the partition's
/// last stable offset stays below the transaction, so no `read_committed` reader sees an
/// outcome a power loss could take back. The completion is stored later, as any completion
/// without offsets. A crash before the marker is durable leaves the transaction open in its
/// partition, so recovery aborts it and fences the producer, which was never answered; a
/// crash after it finds nothing open. One sync of the partition instead of a synced store
/// commit, a marker sync and the store's write lock. Under `log.flush` other than `always`
/// nothing is synced before answering, as no produce is: a power loss may then lose the
/// marker, and recovery aborts a transaction its producer was told committed.
fn end_alone(
    state: &State,
    txns: &Transactions,
    transactional_id: &str,
    record: TxnRecord,
    commit: bool,
) -> TxnResult<()> {
    debug_assert!(ends_alone(&record) && record.state == TxnState::Ongoing);
    // Shown first, as a prepare state is: from now on a produce for it is refused.
    let mut ending = record.clone();
    ending.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
    txns.set(transactional_id, ending);
    let control = if commit { ControlType::Commit } else { ControlType::Abort };
    let markers = match write_markers(state, &record, control, Writing::Deciding) {
        Ok(markers) => markers,
        Err(error) => {
            // No marker was written: the transaction is still open.
            txns.set(transactional_id, record);
            return Err(error);
        }
    };
    let mut synced = true;
    for outcome in Partition::sync_each(&markers) {
        if let Err(error) = outcome {
            tracing::error!(%transactional_id, %error, "transaction marker sync failed");
            synced = false;
        }
    }
    // The markers' syncs woke the fetches waiting for their partitions (`crate::wakeups`).
    if !synced {
        // The marker is in the log but may not be on disk, and a failed sync leaves its log
        // refusing writes until a restart. The decision stays in memory only: every later
        // operation on the id tries to complete it, is refused by the log, and fails, so no
        // retry of this EndTxn is told it succeeded; the restart's recovery finds the marker
        // on disk or aborts the transaction. Its last stable offset stays below it.
        return Err(ResponseError::KafkaStorageError);
    }
    completed(txns, state, transactional_id, record, commit, false)?;
    Ok(())
}

/// Writes the markers (their syncs deferred), then stores the completed state with a
/// commit's offsets, unsynced. On error the record stays in its prepare state for the next
/// tick to finish. `recovering`: see [`write_markers`].
fn complete(
    state: &State,
    txns: &Transactions,
    transactional_id: &str,
    record: TxnRecord,
    commit: bool,
    recovering: bool,
) -> TxnResult<TxnRecord> {
    let control = if commit { ControlType::Commit } else { ControlType::Abort };
    let writing = if recovering { Writing::Recovering } else { Writing::Decided };
    let markers = write_markers(state, &record, control, writing)?;
    // Registered before the completed state is written: no synced commit can make that
    // state durable before the markers are (`Store::defer_marker_syncs`).
    state.store.defer_marker_syncs(markers);
    completed(txns, state, transactional_id, record, commit, recovering)
}

/// The completed state of a transaction whose markers are written: stored with a commit's
/// offsets (unsynced), or, without offsets, left for the next tick to store.
fn completed(
    txns: &Transactions,
    state: &State,
    transactional_id: &str,
    mut record: TxnRecord,
    commit: bool,
    recovering: bool,
) -> TxnResult<TxnRecord> {
    let offsets = if commit { std::mem::take(&mut record.pending_offsets) } else { Vec::new() };
    record.pending_offsets.clear();
    record.partitions.clear();
    record.groups.clear();
    record.prepared_ends.clear();
    record.state = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
    record.updated_ms = now_ms();
    if offsets.is_empty() && !recovering {
        // Nothing but the state changes: stored by the next tick, unless the id's next
        // write (its next decision, say) stores something newer first.
        txns.unsaved_lock().insert(transactional_id.to_string(), record.clone());
    } else {
        txns.save(state, transactional_id, Some(&record), &offsets, false)
            .map_err(storage_error)?;
    }
    txns.set(transactional_id, record.clone());
    Ok(record)
}

/// Takes one transactional id's operation lock.
fn lock_op(op: &Mutex<()>) -> MutexGuard<'_, ()> {
    op.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Each partition's log end offset now, for a prepare state (`TxnRecord::prepared_ends`).
fn log_ends(state: &State, record: &TxnRecord) -> Vec<(String, i32, i64)> {
    record
        .partitions
        .iter()
        .filter_map(|(topic, index)| {
            let partition = state.topics.get(topic)?.partition(*index).map(Arc::clone)?;
            Some((topic.clone(), *index, partition.with_log(|log| log.log_end_offset())))
        })
        .collect()
}

/// A marker to sync: the partition and the offset after the marker.
type Marker = (Arc<Partition>, i64);

/// How [`write_markers`] writes a transaction's markers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writing {
    /// After the decision was stored (the two-phase path).
    Decided,
    /// At start, for a stored decision: see [`write_markers`].
    Recovering,
    /// The marker is the decision (one partition, [`end_alone`]): it holds the partition's
    /// last stable offset until it is synced (`PartitionLog::append_deciding_marker`).
    Deciding,
}

/// Appends a marker to every partition of the transaction and returns the ones to sync
/// (partitions with `log.flush = always`); the caller defers their syncs
/// (`Store::defer_marker_syncs`), or, for a deciding marker, syncs it before it answers.
/// A partition whose topic was deleted needs no marker.
///
/// [`Writing::Recovering`] (a prepare state found at start): a partition where the producer has a
/// transaction open from the decision's log end onwards already has this marker (that
/// open transaction is a later one, which only a durable marker could precede), so it
/// gets none; anywhere else a marker is written, and one that closes nothing is harmless.
fn write_markers(
    state: &State,
    record: &TxnRecord,
    control: ControlType,
    writing: Writing,
) -> TxnResult<Vec<Marker>> {
    let now = now_ms();
    let mut to_sync = Vec::with_capacity(record.partitions.len());
    for (topic_name, index) in &record.partitions {
        let Some(topic) = state.topics.get(topic_name) else { continue };
        let Some(partition) = topic.partition(*index) else { continue };
        if writing == Writing::Recovering {
            let end = record
                .prepared_ends
                .iter()
                .find(|(t, p, _)| t == topic_name && p == index)
                .map(|(_, _, end)| *end);
            let later_open = partition.with_log(|log| {
                log.producers().open_transactions().iter().any(|open| {
                    open.producer_id == record.producer_id
                        && end.is_some_and(|end| open.first_offset >= end)
                })
            });
            if later_open {
                continue;
            }
        }
        let (producer_id, epoch) = (record.producer_id, record.producer_epoch);
        let appended = if writing == Writing::Deciding {
            partition.append_deciding_marker(producer_id, epoch, control, 0, now)
        } else {
            partition.append_marker(producer_id, epoch, control, 0, now)
        };
        match appended {
            Ok(info) => {
                // A two-phase marker moves the last stable offset now (a deciding one only
                // once the high watermark passes it: under `log.flush = always` at its sync,
                // which wakes them again; otherwise now).
                state.wakeups.wake(partition);
                if partition.with_log(|log| log.config().flush == FlushPolicy::Always) {
                    to_sync.push((Arc::clone(partition), info.last_offset + 1));
                }
            }
            Err(error) => {
                tracing::error!(topic = %topic_name, partition = index, %error, "transaction marker not written");
                return Err(crate::Error::Log(error).kafka_error());
            }
        }
    }
    Ok(to_sync)
}
