//! Idempotent producer state of one partition, as Kafka's ProducerStateManager keeps it:
//! for each producer id, its epoch and the sequence ranges and offsets of its last
//! [`PRODUCER_BATCHES_CACHED`] batches.
//!
//! - A batch whose sequence range equals a cached one (same epoch) is a retry: it is
//!   acknowledged with the original offsets and not appended again.
//! - Otherwise its first sequence must follow the last one (`last + 1`, wrapping at
//!   `i32::MAX` to 0), or be 0 on a new epoch: OUT_OF_ORDER_SEQUENCE_NUMBER if not.
//! - An older epoch is fenced: INVALID_PRODUCER_EPOCH.
//! - A producer id without state takes any sequence (KIP-360: its state may have expired or
//!   been removed with the log).
//!
//! Transactions: a transactional batch opens its producer's transaction in this partition
//! (the first such offset is kept) until a marker closes it. The smallest open first offset
//! is the first unstable offset, which caps the last stable offset (LSO) that
//! `read_committed` consumers read up to. An abort marker adds `(producer, first offset,
//! marker offset)` to the aborted list that Fetch returns to `read_committed` consumers.
//!
//! Durability: the state is a function of the log. [`crate::PartitionLog`] writes it to a
//! snapshot file when it rolls a segment and when it shuts down, and on open loads the newest
//! snapshot at or below the log end and replays the batches after it. The snapshot format is
//! in `docs/design/log.md`.
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;

use sluice_wire::batch::{BatchHeader, ControlType};

use crate::limits::{PRODUCERS_PER_PARTITION_MAX, PRODUCER_BATCHES_CACHED};
use crate::{Error, Result};

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of its first record.
    pub first_sequence: i32,
    /// Sequence of its last record.
    pub last_sequence: i32,
    /// Offset of its first record.
    pub first_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
}

/// What one producer id has appended to the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first; at most [`PRODUCER_BATCHES_CACHED`], all of `epoch`.
    batches: VecDeque<BatchMetadata>,
    /// The broker's clock at the producer's last append, for `producer.id.expiration.ms`.
    /// Kafka measures from the batches' own timestamps instead, so a producer that writes
    /// old CreateTime timestamps loses its state at the next check and then fails with
    /// OUT_OF_ORDER_SEQUENCE_NUMBER; the broker's clock keeps idle producers for the whole
    /// expiration.
    last_append_ms: i64,
    /// The first offset of the producer's open transaction in this partition.
    txn_first_offset: Option<i64>,
}

/// A transaction that aborted, as Fetch reports it to `read_committed` consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Its first offset in this partition.
    pub first_offset: i64,
    /// The offset of the abort marker.
    pub last_offset: i64,
}

/// A producer's transaction open in a partition (no marker has closed it yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTxn {
    /// The producer.
    pub producer_id: i64,
    /// The producer's epoch in this partition.
    pub producer_epoch: i16,
    /// The transaction's first offset here.
    pub first_offset: i64,
}

/// The outcome of checking a batch against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: answer with these offsets.
    Duplicate(BatchMetadata),
}

/// The producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    entries: HashMap<i64, ProducerEntry>,
    /// `(first offset, producer id)` of every open transaction.
    ongoing: BTreeSet<(i64, i64)>,
    /// Aborted transactions by marker offset, ascending.
    aborted: Vec<AbortedTxn>,
}

/// Whether `next` follows `last` (sequences wrap from `i32::MAX` to 0).
fn in_sequence(last: i32, next: i32) -> bool {
    (last == i32::MAX && next == 0) || i64::from(next) == i64::from(last) + 1
}

/// Whether a batch carries idempotent producer fields.
fn is_idempotent(header: &BatchHeader) -> bool {
    header.producer_id >= 0 && header.base_sequence >= 0 && !header.is_control()
}

impl ProducerStates {
    /// How many producer ids have state here.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no producer has state here.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks the batches of one produce request (offsets not yet assigned) in order.
    ///
    /// A duplicate is only recognised when it is the request's only batch, as Kafka's
    /// clients send one batch per partition per request; a duplicate among several is
    /// refused with INVALID_RECORD rather than half-appended.
    pub fn check_all(&self, headers: &[BatchHeader]) -> Result<Check> {
        if let [only] = headers {
            return self.check(only);
        }
        let mut scratch: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut fake_offset = 0i64;
        for header in headers.iter().filter(|h| is_idempotent(h)) {
            let current =
                scratch.get(&header.producer_id).or(self.entries.get(&header.producer_id));
            match check_entry(current, header)? {
                Check::Append => {}
                Check::Duplicate(_) => {
                    return Err(Error::InvalidRecord {
                        reason: format!(
                            "producer {} sent a duplicate batch (sequence {}) among {} batches \
                             in one request; send one batch per partition per request",
                            header.producer_id,
                            header.base_sequence,
                            headers.len()
                        ),
                    })
                }
            }
            let mut entry = current.cloned().unwrap_or_else(|| new_entry(header, 0));
            let mut placed = *header;
            placed.base_offset = fake_offset;
            fake_offset = placed.next_offset();
            record_entry(&mut entry, &placed, 0);
            scratch.insert(header.producer_id, entry);
        }
        Ok(Check::Append)
    }

    /// Checks one batch (offsets not yet assigned).
    pub fn check(&self, header: &BatchHeader) -> Result<Check> {
        if !is_idempotent(header) {
            return Ok(Check::Append);
        }
        if !self.entries.contains_key(&header.producer_id)
            && self.entries.len() >= PRODUCERS_PER_PARTITION_MAX
        {
            return Err(Error::LimitExceeded {
                what: "producer ids with state in one partition",
                limit: PRODUCERS_PER_PARTITION_MAX as u64,
                value: self.entries.len() as u64 + 1,
                hint: "reuse producers, or lower producer.id.expiration.ms so idle ones expire",
            });
        }
        check_entry(self.entries.get(&header.producer_id), header)
    }

    /// Records a batch that is now in the log (its base offset assigned), appended at
    /// `append_ms` by the broker's clock (on replay: when the log was opened).
    pub fn record(&mut self, header: &BatchHeader, append_ms: i64) {
        if !is_idempotent(header) {
            return;
        }
        let entry =
            self.entries.entry(header.producer_id).or_insert_with(|| new_entry(header, append_ms));
        record_entry(entry, header, append_ms);
        if header.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(header.base_offset);
            self.ongoing.insert((header.base_offset, header.producer_id));
        }
    }

    /// Checks a transaction marker from the coordinator: its epoch may not be older than
    /// the producer's.
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<()> {
        match self.entries.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => {
                Err(Error::InvalidProducerEpoch { producer_id, epoch, current_epoch: entry.epoch })
            }
            _ => Ok(()),
        }
    }

    /// Records a transaction marker now in the log at `offset`: it closes the producer's
    /// open transaction here, if any, and an abort lists it as aborted.
    pub fn record_marker(&mut self, header: &BatchHeader, control: ControlType, append_ms: i64) {
        let offset = header.base_offset;
        let entry =
            self.entries.entry(header.producer_id).or_insert_with(|| new_entry(header, append_ms));
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_append_ms = entry.last_append_ms.max(append_ms);
        if let Some(first_offset) = entry.txn_first_offset.take() {
            self.ongoing.remove(&(first_offset, header.producer_id));
            if control == ControlType::Abort {
                debug_assert!(
                    self.aborted.last().is_none_or(|a| a.last_offset < offset),
                    "markers arrive in offset order"
                );
                self.aborted.push(AbortedTxn {
                    producer_id: header.producer_id,
                    first_offset,
                    last_offset: offset,
                });
            }
        }
    }

    /// The first offset of `producer_id`'s open transaction here, if it has one.
    pub fn open_transaction_of(&self, producer_id: i64) -> Option<i64> {
        self.entries.get(&producer_id).and_then(|entry| entry.txn_first_offset)
    }

    /// Every open transaction, oldest first.
    pub fn open_transactions(&self) -> Vec<OpenTxn> {
        self.ongoing
            .iter()
            .filter_map(|&(first_offset, producer_id)| {
                let entry = self.entries.get(&producer_id)?;
                Some(OpenTxn { producer_id, producer_epoch: entry.epoch, first_offset })
            })
            .collect()
    }

    /// The first offset of the oldest open transaction: the LSO may not pass it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|(offset, _)| *offset)
    }

    /// The aborted transactions a `read_committed` fetch of `[from, upper)` must skip: those
    /// whose marker is at or after `from` and that began before `upper`.
    pub fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted
            .get(start..)
            .unwrap_or_default()
            .iter()
            .filter(|a| a.first_offset < upper)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below `log_start` (their records are deleted).
    pub fn prune_aborted(&mut self, log_start: i64) {
        let below = self.aborted.partition_point(|a| a.last_offset < log_start);
        self.aborted.drain(..below);
    }

    /// Drops producers whose last batch is `expiration_ms` or more older than `now_ms`
    /// (`producer.id.expiration.ms`). Returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, entry| {
            entry.txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_append_ms) < expiration_ms
        });
        before - self.entries.len()
    }

    /// The cached batches of a producer (for tests and inspection).
    pub fn batches(&self, producer_id: i64) -> Vec<BatchMetadata> {
        self.entries
            .get(&producer_id)
            .map(|e| e.batches.iter().copied().collect())
            .unwrap_or_default()
    }
}

fn new_entry(header: &BatchHeader, append_ms: i64) -> ProducerEntry {
    ProducerEntry {
        epoch: header.producer_epoch,
        batches: VecDeque::with_capacity(PRODUCER_BATCHES_CACHED),
        last_append_ms: append_ms,
        txn_first_offset: None,
    }
}

fn record_entry(entry: &mut ProducerEntry, header: &BatchHeader, append_ms: i64) {
    if header.producer_epoch != entry.epoch {
        entry.epoch = header.producer_epoch;
        entry.batches.clear();
    }
    if entry.batches.len() >= PRODUCER_BATCHES_CACHED {
        entry.batches.pop_front();
    }
    entry.batches.push_back(BatchMetadata {
        first_sequence: header.base_sequence,
        last_sequence: header.last_sequence(),
        first_offset: header.base_offset,
        last_offset: header.last_offset(),
    });
    entry.last_append_ms = entry.last_append_ms.max(append_ms);
    debug_assert!(entry.batches.len() <= PRODUCER_BATCHES_CACHED, "{}", entry.batches.len());
}

fn check_entry(entry: Option<&ProducerEntry>, header: &BatchHeader) -> Result<Check> {
    let Some(entry) = entry else {
        return Ok(Check::Append);
    };
    let first = header.base_sequence;
    if header.producer_epoch < entry.epoch {
        return Err(Error::InvalidProducerEpoch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            current_epoch: entry.epoch,
        });
    }
    if header.producer_epoch > entry.epoch {
        // A new epoch starts its sequences over.
        if first != 0 {
            return Err(Error::OutOfOrderSequence {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                expected: 0,
                got: first,
            });
        }
        return Ok(Check::Append);
    }
    let last = header.last_sequence();
    if let Some(batch) =
        entry.batches.iter().find(|b| b.first_sequence == first && b.last_sequence == last)
    {
        return Ok(Check::Duplicate(*batch));
    }
    let last_sequence = entry.batches.back().map_or(-1, |b| b.last_sequence);
    if !in_sequence(last_sequence, first) {
        let expected = if last_sequence == i32::MAX { 0 } else { last_sequence + 1 };
        return Err(Error::OutOfOrderSequence {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            expected,
            got: first,
        });
    }
    Ok(Check::Append)
}

// ---- snapshot files ----

/// Snapshot file extension: `<20-digit offset>.snapshot`, the state as of that offset.
pub(crate) const SNAPSHOT_EXTENSION: &str = "snapshot";
/// First bytes of a snapshot file.
const SNAPSHOT_MAGIC: [u8; 4] = *b"SLPS";
/// The snapshot format version.
const SNAPSHOT_VERSION: i16 = 1;
/// Bytes before the entries: magic, version, CRC32C, entry count.
const SNAPSHOT_HEADER_BYTES: usize = 4 + 2 + 4 + 4;
/// Bytes of one entry before its batches: id, epoch, timestamp, open transaction, count.
const ENTRY_BYTES: usize = 8 + 2 + 8 + 8 + 1;
/// Bytes of one aborted transaction.
const ABORTED_BYTES: usize = 8 + 8 + 8;
/// Bytes of one cached batch.
const BATCH_BYTES: usize = 4 + 4 + 8 + 8;

impl ProducerStates {
    /// Encodes the state (big-endian; see docs/design/log.md).
    pub fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.entries.keys().collect();
        ids.sort_unstable();
        let mut body = Vec::with_capacity(self.entries.len() * (ENTRY_BYTES + BATCH_BYTES));
        body.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for id in ids {
            let Some(entry) = self.entries.get(id) else { continue };
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.extend_from_slice(&entry.last_append_ms.to_be_bytes());
            body.extend_from_slice(&entry.txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                body.extend_from_slice(&batch.first_sequence.to_be_bytes());
                body.extend_from_slice(&batch.last_sequence.to_be_bytes());
                body.extend_from_slice(&batch.first_offset.to_be_bytes());
                body.extend_from_slice(&batch.last_offset.to_be_bytes());
            }
        }
        body.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for aborted in &self.aborted {
            body.extend_from_slice(&aborted.producer_id.to_be_bytes());
            body.extend_from_slice(&aborted.first_offset.to_be_bytes());
            body.extend_from_slice(&aborted.last_offset.to_be_bytes());
        }
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len());
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a snapshot, checking its magic, version, CRC and limits.
    pub fn decode(bytes: &[u8]) -> std::result::Result<ProducerStates, String> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4)? != SNAPSHOT_MAGIC {
            return Err("not a producer state snapshot (bad magic)".into());
        }
        let version = reader.i16()?;
        if version != SNAPSHOT_VERSION {
            return Err(format!("snapshot version {version}, expected {SNAPSHOT_VERSION}"));
        }
        let crc = reader.i32()? as u32;
        let body = bytes.get(reader.at..).unwrap_or_default();
        if crc32c::crc32c(body) != crc {
            return Err("snapshot CRC mismatch".into());
        }
        let count = reader.i32()? as u32 as usize;
        if count > PRODUCERS_PER_PARTITION_MAX {
            return Err(format!("{count} producers, over {PRODUCERS_PER_PARTITION_MAX}"));
        }
        let mut entries = HashMap::with_capacity(count);
        let mut ongoing = BTreeSet::new();
        let mut previous_id: Option<i64> = None;
        for _ in 0..count {
            let id = reader.i64()?;
            // Ids are written sorted, once each: anything else is not a snapshot we wrote.
            if previous_id.is_some_and(|previous| previous >= id) {
                return Err(format!("producer {id} out of order"));
            }
            previous_id = Some(id);
            let epoch = reader.i16()?;
            let last_append_ms = reader.i64()?;
            let txn_first_offset = match reader.i64()? {
                -1 => None,
                offset if offset >= 0 => Some(offset),
                other => return Err(format!("producer {id} has open transaction at {other}")),
            };
            if let Some(first) = txn_first_offset {
                ongoing.insert((first, id));
            }
            let batch_count = usize::from(reader.take(1)?.first().copied().unwrap_or(0));
            if batch_count > PRODUCER_BATCHES_CACHED {
                return Err(format!("producer {id} has {batch_count} batches"));
            }
            let mut batches = VecDeque::with_capacity(PRODUCER_BATCHES_CACHED);
            for _ in 0..batch_count {
                batches.push_back(BatchMetadata {
                    first_sequence: reader.i32()?,
                    last_sequence: reader.i32()?,
                    first_offset: reader.i64()?,
                    last_offset: reader.i64()?,
                });
            }
            entries.insert(id, ProducerEntry { epoch, batches, last_append_ms, txn_first_offset });
        }
        let aborted_count = reader.i32()? as u32 as usize;
        if aborted_count > (bytes.len() - reader.at) / ABORTED_BYTES {
            return Err(format!("{aborted_count} aborted transactions do not fit the file"));
        }
        let mut aborted = Vec::with_capacity(aborted_count);
        for _ in 0..aborted_count {
            aborted.push(AbortedTxn {
                producer_id: reader.i64()?,
                first_offset: reader.i64()?,
                last_offset: reader.i64()?,
            });
        }
        if !aborted.windows(2).all(|w| matches!(w, [a, b] if a.last_offset < b.last_offset)) {
            return Err("aborted transactions out of order".into());
        }
        if reader.at != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - reader.at));
        }
        Ok(ProducerStates { entries, ongoing, aborted })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let out = self.bytes.get(self.at..self.at + n).ok_or("snapshot truncated")?;
        self.at += n;
        Ok(out)
    }
    fn i16(&mut self) -> std::result::Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().map_err(|_| "short")?))
    }
    fn i32(&mut self) -> std::result::Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().map_err(|_| "short")?))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().map_err(|_| "short")?))
    }
}

/// The snapshot files in `dir`, sorted by offset.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<(i64, std::path::PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(crate::error::io("list partition dir", dir))? {
        let path = entry.map_err(crate::error::io("list partition dir", dir))?.path();
        if path.extension().is_some_and(|e| e == SNAPSHOT_EXTENSION) {
            if let Some(offset) = path.file_stem().and_then(|s| s.to_str()?.parse().ok()) {
                found.push((offset, path));
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            total_bytes: 100,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 1000,
            max_timestamp: 1000,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            records_count: count,
            record_timestamps: None,
            offsets_in_order: None,
        }
    }

    fn appended(states: &mut ProducerStates, mut h: BatchHeader, offset: i64) -> BatchHeader {
        assert_eq!(states.check(&h).unwrap(), Check::Append);
        h.base_offset = offset;
        states.record(&h, 1000);
        h
    }

    #[test]
    fn retry_of_a_cached_batch_is_a_duplicate_with_its_offsets() {
        let mut states = ProducerStates::default();
        appended(&mut states, header(7, 0, 0, 10), 100);
        appended(&mut states, header(7, 0, 10, 5), 110);
        let check = states.check(&header(7, 0, 0, 10)).unwrap();
        assert_eq!(
            check,
            Check::Duplicate(BatchMetadata {
                first_sequence: 0,
                last_sequence: 9,
                first_offset: 100,
                last_offset: 109
            })
        );
    }

    #[test]
    fn gap_in_sequence_is_out_of_order() {
        let mut states = ProducerStates::default();
        appended(&mut states, header(7, 0, 0, 10), 0);
        let error = states.check(&header(7, 0, 11, 1)).unwrap_err();
        assert!(matches!(error, Error::OutOfOrderSequence { expected: 10, got: 11, .. }));
    }

    #[test]
    fn older_epoch_is_fenced_and_new_epoch_restarts_at_zero() {
        let mut states = ProducerStates::default();
        appended(&mut states, header(7, 1, 0, 1), 0);
        assert!(matches!(
            states.check(&header(7, 0, 1, 1)).unwrap_err(),
            Error::InvalidProducerEpoch { current_epoch: 1, .. }
        ));
        assert!(matches!(
            states.check(&header(7, 2, 5, 1)).unwrap_err(),
            Error::OutOfOrderSequence { expected: 0, .. }
        ));
        appended(&mut states, header(7, 2, 0, 1), 1);
        assert_eq!(states.batches(7).len(), 1);
    }

    #[test]
    fn unknown_producer_takes_any_sequence() {
        let states = ProducerStates::default();
        assert_eq!(states.check(&header(9, 3, 12345, 1)).unwrap(), Check::Append);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut states = ProducerStates::default();
        let h = appended(&mut states, header(7, 0, i32::MAX - 1, 2), 0);
        assert_eq!(h.last_sequence(), i32::MAX);
        appended(&mut states, header(7, 0, 0, 1), 2);
        let h = header(7, 0, i32::MAX, 3);
        assert_eq!(h.last_sequence(), 1);
    }

    #[test]
    fn only_five_batches_are_cached() {
        let mut states = ProducerStates::default();
        for i in 0..8 {
            appended(&mut states, header(7, 0, i, 1), i64::from(i));
        }
        assert_eq!(states.batches(7).len(), PRODUCER_BATCHES_CACHED);
        // The oldest are gone: a retry of sequence 0 is now out of order, not a duplicate.
        assert!(states.check(&header(7, 0, 0, 1)).is_err());
    }

    #[test]
    fn idle_producers_expire_after_the_expiration() {
        let mut states = ProducerStates::default();
        appended(&mut states, header(7, 0, 0, 1), 0);
        assert_eq!(states.expire(1000 + 59_000, 60_000), 0);
        assert_eq!(states.expire(1000 + 60_000, 60_000), 1);
        assert!(states.is_empty());
    }

    #[test]
    fn duplicate_among_several_batches_is_refused() {
        let mut states = ProducerStates::default();
        appended(&mut states, header(7, 0, 0, 1), 0);
        let error = states.check_all(&[header(7, 0, 1, 1), header(7, 0, 0, 1)]).unwrap_err();
        assert!(matches!(error, Error::InvalidRecord { .. }));
        assert_eq!(
            states.check_all(&[header(7, 0, 1, 1), header(7, 0, 2, 1)]).unwrap(),
            Check::Append
        );
    }

    fn transactional(producer_id: i64, sequence: i32, count: i32, offset: i64) -> BatchHeader {
        let mut h = header(producer_id, 0, sequence, count);
        h.attributes = sluice_wire::batch::ATTR_TRANSACTIONAL;
        h.base_offset = offset;
        h
    }

    fn marker(producer_id: i64, offset: i64) -> BatchHeader {
        let mut h = header(producer_id, 0, -1, 1);
        h.attributes = sluice_wire::batch::ATTR_TRANSACTIONAL | sluice_wire::batch::ATTR_CONTROL;
        h.base_offset = offset;
        h
    }

    #[test]
    fn open_transactions_hold_the_lso_and_aborts_are_listed() {
        let mut states = ProducerStates::default();
        states.record(&transactional(1, 0, 5, 10), 0);
        states.record(&transactional(2, 0, 5, 15), 0);
        states.record(&transactional(1, 5, 5, 20), 0);
        assert_eq!(states.first_unstable_offset(), Some(10));
        states.record_marker(&marker(1, 25), ControlType::Abort, 0);
        assert_eq!(states.first_unstable_offset(), Some(15));
        states.record_marker(&marker(2, 26), ControlType::Commit, 0);
        assert_eq!(states.first_unstable_offset(), None);
        let aborted = AbortedTxn { producer_id: 1, first_offset: 10, last_offset: 25 };
        assert_eq!(states.aborted_between(0, 30), vec![aborted]);
        assert_eq!(states.aborted_between(26, 30), vec![]);
        assert_eq!(states.aborted_between(0, 10), vec![]);
        let round_trip = ProducerStates::decode(&states.encode()).unwrap();
        assert_eq!(round_trip, states);
        states.prune_aborted(26);
        assert!(states.aborted_between(0, 30).is_empty());
    }

    #[test]
    fn a_producer_in_a_transaction_never_expires() {
        let mut states = ProducerStates::default();
        states.record(&transactional(1, 0, 1, 0), 0);
        assert_eq!(states.expire(i64::MAX / 2, 1), 0);
        states.record_marker(&marker(1, 1), ControlType::Commit, 0);
        assert_eq!(states.expire(i64::MAX / 2, 1), 1);
    }

    proptest! {
        #[test]
        fn snapshot_round_trips(
            producers in proptest::collection::vec(
                (0i64..1000, 0i16..5, proptest::collection::vec(1i32..100, 0..8)), 0..20)
        ) {
            let mut states = ProducerStates::default();
            let mut offset = 0i64;
            for (id, epoch, sizes) in producers {
                let mut sequence = 0;
                for size in sizes {
                    let mut h = header(id, epoch, sequence, size);
                    h.base_offset = offset;
                    states.record(&h, 1000);
                    offset = h.next_offset();
                    sequence += size;
                }
            }
            let decoded = ProducerStates::decode(&states.encode()).unwrap();
            prop_assert_eq!(decoded, states);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ProducerStates::decode(&bytes);
        }
    }
}
