//! One partition's log: the ordered segments, offsets, roll, retention and recovery.
//!
//! Not thread-safe by itself: [`crate::Partition`] wraps it in a mutex and adds group
//! commit. Reads are split in two so the file I/O happens outside that mutex:
//! [`PartitionLog::locate`] under the lock, [`Located::read`] after it.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_wire::batch::{self, BatchHeader, ControlType};
use sluice_wire::limits::BATCH_HEADER_BYTES;
use sluice_wire::BatchError;

use crate::error::io;
use crate::limits::{
    PREALLOCATE_AHEAD_BYTES, RECORDS_PER_BATCH_MAX, SEGMENTS_PER_PARTITION_MAX,
    SEGMENT_OFFSETS_MAX, SNAPSHOT_BYTES_MAX,
};
use crate::producer_state::AbortedTxn;
use crate::producer_state::{list_snapshots, SNAPSHOT_EXTENSION};

/// A batch's or record's timestamp when it has none (Kafka's `RecordBatch.NO_TIMESTAMP`).
const NO_TIMESTAMP: i64 = -1;
use crate::segment::{stem, Segment, Wait};
use crate::{Check, Error, LogConfig, ProducerStates, Result, TimestampType};

/// The name of the file holding a log start offset moved by DeleteRecords.
const LOG_START_FILE: &str = "log-start-offset";

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The append time for LogAppendTime topics, else -1 (as ProduceResponse wants it).
    pub log_append_time_ms: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// The batch was a producer's retry of one already in the log: nothing was appended and
    /// the offsets are the original's.
    pub duplicate: bool,
}

/// One partition's segments.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset; never empty; the last one is active.
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// Set when any sync of this partition failed. After a failed fsync the kernel may have
    /// dropped the dirty pages and report the next fsync as clean, so nothing written since
    /// the last good sync can be trusted: the partition refuses appends, rolls, retention
    /// and syncs until the broker restarts and recovery re-reads the files. Reads go on.
    failed: bool,
    /// Whether the last append failed to write (a full disk): logged when it starts and when
    /// an append works again, not once per refused produce.
    writes_failing: bool,
    /// Idempotent producers' sequence state, rebuilt on open from a snapshot and the log.
    producers: ProducerStates,
    /// Transactions closed by a marker that is their only decision
    /// ([`PartitionLog::append_deciding_marker`]), as `(first offset, marker offset)`, until
    /// the marker is below the high watermark. In memory only: on open everything is synced.
    held_closes: Vec<(i64, i64)>,
    /// How much earlier than `segment.ms` the active segment rolls by age: drawn when it
    /// became active ([`draw_roll_jitter_ms`]) and kept until it rolls, as Kafka keeps a
    /// segment's (AlterConfigs on `segment.ms` or `segment.jitter.ms` applies from the next
    /// segment; a `segment.ms` lowered below it rolls at the next append).
    roll_jitter_ms: i64,
}

/// A read prepared under the lock and performed outside it.
pub struct Located {
    file: Arc<File>,
    path: PathBuf,
    /// Where to start scanning (an index hint at or before the wanted batch).
    hint_position: u64,
    /// Bytes of the segment that were whole batches when located.
    size_bytes: u64,
    /// The offset wanted.
    offset: i64,
}

fn parse_stem(path: &Path) -> Option<i64> {
    if path.extension()? != "log" {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

impl PartitionLog {
    /// Opens (or creates) the partition folder and recovers it.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<PartitionLog> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io("create partition dir", dir))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io("list partition dir", dir))? {
            let entry = entry.map_err(io("list partition dir", dir))?;
            if let Some(base) = parse_stem(&entry.path()) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let interval = u64::from(config.index_interval_bytes);
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            segments.push(Segment::open(dir, *base, active, now_ms, interval)?);
        }
        let stored_start = read_log_start(dir)?;
        if segments.is_empty() {
            let base = stored_start.unwrap_or(0);
            segments.push(Segment::create(dir, base, now_ms, interval)?);
            sync_dir(dir)?;
        }
        // What recovery kept may still be only in the page cache (a kill -9 keeps it there):
        // sync it before it counts as synced and becomes readable.
        if let Some(active) = segments.last() {
            active.sync_all()?;
        }
        let first_base = segments.first().map_or(0, |s| s.base_offset);
        let end = segments.last().map_or(0, |s| s.next_offset);
        let log_start_offset = stored_start.unwrap_or(first_base).max(first_base).min(end);
        let producers = load_producer_states(dir, &segments, end, now_ms)?;
        let roll_jitter_ms = draw_roll_jitter_ms(&config);
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            failed: false,
            writes_failing: false,
            producers,
            held_closes: Vec::new(),
            roll_jitter_ms,
        };
        log.apply_preallocate();
        Ok(log)
    }

    /// Sets what the active segment writes ahead: `PREALLOCATE_AHEAD_BYTES` of zeros with
    /// `preallocate`, none past `segment.bytes`.
    fn apply_preallocate(&mut self) {
        let ahead = if self.config.preallocate { PREALLOCATE_AHEAD_BYTES } else { 0 };
        let segment_bytes = u64::from(self.config.segment_bytes);
        let active = self.active_mut();
        active.preallocate_bytes = ahead;
        active.segment_bytes = segment_bytes;
    }

    /// The idempotent producer state.
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("a partition always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a partition always has an active segment")
    }

    /// The offset after the last record.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// The first readable offset.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The config in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the config (AlterConfigs); takes effect at the next append or retention.
    pub fn set_config(&mut self, config: LogConfig) {
        for segment in &mut self.segments {
            segment.index_interval_bytes = u64::from(config.index_interval_bytes);
        }
        self.config = config;
        self.apply_preallocate();
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    /// The active segment's file, for syncing outside the lock.
    pub fn active_file(&self) -> (Arc<File>, PathBuf) {
        (Arc::clone(&self.active().file), self.active().path.clone())
    }

    /// Marks the partition failed after a sync error (see the `failed` field).
    pub fn mark_failed(&mut self) {
        if !self.failed {
            tracing::error!(dir = %self.dir.display(), "a sync failed: the partition refuses writes until restart");
        }
        self.failed = true;
    }

    /// Errors when an earlier sync failed.
    pub fn check_healthy(&self) -> Result<()> {
        if self.failed {
            return Err(Error::Io {
                op: "write to partition after a failed sync",
                path: self.dir.clone(),
                source: std::io::Error::other(
                    "an earlier fsync failed; restart the broker to recover",
                ),
            });
        }
        Ok(())
    }

    /// Runs a sync, marking the partition failed if it errs.
    fn synced(&mut self, sync: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        self.check_healthy()?;
        let result = sync(self);
        if result.is_err() {
            self.mark_failed();
        }
        result
    }

    /// Validates the batches in `bytes`, assigns their offsets and writes them (no sync).
    ///
    /// `bytes` is not modified: each batch's first `BATCH_HEADER_BYTES` are patched in a copy
    /// (base offset, leader epoch, and for LogAppendTime the timestamp and CRC) and written
    /// with the untouched rest in one vectored write, so the payload is never copied in user
    /// space.
    pub fn append(&mut self, bytes: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.check_healthy()?;
        let mut headers = batch::check_all(bytes, self.config.max_message_bytes)?;
        if headers.iter().any(BatchHeader::is_control) {
            return Err(Error::InvalidRecord {
                reason: "clients may not write control batches (transaction markers)".into(),
            });
        }
        // The claimed counts are refused before the walk, which may decompress.
        let incoming_offsets = count_offsets(&headers)?;
        let mut keyless = Vec::new();
        batch::walk_all(bytes, &mut headers, self.config.compacted.then_some(&mut keyless))?;
        if !keyless.is_empty() {
            return Err(Error::KeylessRecords { indexes: keyless });
        }
        self.check_timestamps(&headers, now_ms)?;
        if let Check::Duplicate(original) = self.producers.check_all(&headers)? {
            return Ok(AppendInfo {
                base_offset: original.first_offset,
                last_offset: original.last_offset,
                log_append_time_ms: -1,
                log_start_offset: self.log_start_offset,
                duplicate: true,
            });
        }
        let rewritten;
        let (bytes, headers) = match self.recompressed(bytes, &headers)? {
            Some((batches, batch_headers)) => {
                rewritten = batches;
                (rewritten.as_slice(), batch_headers)
            }
            None => (bytes, headers),
        };
        let written = self.write_batches(bytes, headers, incoming_offsets, now_ms);
        let (info, headers) = self.note_write_outcome(written)?;
        for header in &headers {
            self.producers.record(header, now_ms);
        }
        Ok(info)
    }

    /// The validated batches of `bytes` rewritten in the topic's `compression.type` where
    /// their codec differs, with their headers, as Kafka's LogValidator recompresses; `None`
    /// when every batch is stored as sent. A rewritten batch larger than `max.message.bytes`
    /// is refused, as in Kafka (an uncompressed topic can refuse what a producer compressed).
    fn recompressed(
        &self,
        bytes: &[u8],
        headers: &[BatchHeader],
    ) -> Result<Option<(Vec<u8>, Vec<BatchHeader>)>> {
        let Some(target) = self.config.compression else { return Ok(None) };
        if !headers.iter().any(|header| target.rewrites(header.attributes)) {
            return Ok(None);
        }
        let mut batches = Vec::new();
        let mut changed = false;
        let mut at = 0usize;
        for header in headers {
            let end = at.saturating_add(header.total_bytes);
            let sent = bytes
                .get(at..end)
                .ok_or(BatchError::Truncated { needed: end, remaining: bytes.len() })?;
            match batch::recompress(sent, header, target, self.config.max_message_bytes)? {
                Some(rewritten) => {
                    changed = true;
                    batches.extend_from_slice(&rewritten);
                }
                None => batches.extend_from_slice(sent),
            }
            at = end;
        }
        if !changed {
            return Ok(None);
        }
        let mut rewritten = batch::check_all(&batches, self.config.max_message_bytes)?;
        // The same records: what the walk read of them holds.
        for (new, old) in rewritten.iter_mut().zip(headers) {
            new.record_timestamps = old.record_timestamps;
            new.offsets_in_order = old.offsets_in_order;
        }
        Ok(Some((batches, rewritten)))
    }

    /// Logs the start and the end of a run of failed writes (a full disk), once each.
    fn note_write_outcome<T>(&mut self, written: Result<T>) -> Result<T> {
        match (&written, self.writes_failing) {
            (Err(error @ Error::Io { .. }), false) => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    %error,
                    "appends to this partition fail (KAFKA_STORAGE_ERROR) until a write succeeds; reads go on"
                );
                self.writes_failing = true;
            }
            (Ok(_), true) => {
                tracing::info!(dir = %self.dir.display(), "appends to this partition work again");
                self.writes_failing = false;
            }
            _ => {}
        }
        written
    }

    /// Under CreateTime, refuses a batch with a record timestamp outside
    /// `[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]`, as
    /// Kafka does (KIP-937): every record's, read by validation (compressed batches
    /// decompressed). The header's `maxTimestamp` is not checked: it is set from the records
    /// when written. A timestamp of -1 (none) passes, as in Kafka; any other negative one
    /// is checked.
    fn check_timestamps(&self, headers: &[BatchHeader], now_ms: i64) -> Result<()> {
        if self.config.timestamp_type != TimestampType::CreateTime {
            return Ok(());
        }
        let earliest = now_ms.saturating_sub(self.config.timestamp_before_max_ms);
        let latest = now_ms.saturating_add(self.config.timestamp_after_max_ms);
        for (batch_index, header) in headers.iter().enumerate() {
            let (lowest, highest) =
                header.record_timestamps.unwrap_or((header.base_timestamp, header.max_timestamp));
            for timestamp in [lowest, highest] {
                if timestamp != NO_TIMESTAMP && !(earliest..=latest).contains(&timestamp) {
                    return Err(Error::InvalidTimestamp {
                        timestamp,
                        batch_index,
                        earliest,
                        latest,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes a transaction marker for `producer_id` (from the transaction coordinator) and
    /// closes the producer's open transaction in this partition (no sync).
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.check_healthy()?;
        self.producers.check_marker(producer_id, producer_epoch)?;
        let marker =
            batch::build_marker(producer_id, producer_epoch, control, coordinator_epoch, now_ms);
        let headers = batch::validate_all(&marker, u32::MAX)?;
        let incoming_offsets = count_offsets(&headers)?;
        let (info, headers) = self.write_batches(&marker, headers, incoming_offsets, now_ms)?;
        for header in &headers {
            self.producers.record_marker(header, control, now_ms);
        }
        Ok(info)
    }

    /// [`PartitionLog::append_marker`] for a marker that is its transaction's only decision
    /// (no coordinator record holds it): until the marker is below the high watermark
    /// (synced), the transaction stays unstable, so no `read_committed` reader sees an
    /// outcome a crash could still take back.
    pub fn append_deciding_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let first = self.producers.open_transaction_of(producer_id);
        let info =
            self.append_marker(producer_id, producer_epoch, control, coordinator_epoch, now_ms)?;
        if let Some(first) = first {
            self.held_closes.push((first, info.last_offset));
        }
        Ok(info)
    }

    /// The last stable offset: `read_committed` consumers read below it. It is the first
    /// offset of the oldest open transaction (or of one whose deciding marker is not yet
    /// below `high_watermark`), or `high_watermark` when there is none.
    pub fn last_stable_offset(&mut self, high_watermark: i64) -> i64 {
        self.held_closes.retain(|&(_, marker)| marker >= high_watermark);
        let held = self.held_closes.iter().map(|&(first, _)| first).min();
        let unstable = match (self.producers.first_unstable_offset(), held) {
            (Some(open), Some(held)) => Some(open.min(held)),
            (open, held) => open.or(held),
        };
        unstable.map_or(high_watermark, |f| f.min(high_watermark))
    }

    /// The aborted transactions a `read_committed` fetch of `[from, upper)` must skip.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        self.producers.aborted_between(from, upper)
    }

    /// Assigns offsets to validated batches claiming `incoming_offsets` (from
    /// `count_offsets`) and writes them (no sync); returns what was written and the headers
    /// with their offsets.
    fn write_batches(
        &mut self,
        bytes: &[u8],
        mut headers: Vec<BatchHeader>,
        incoming_offsets: i64,
        now_ms: i64,
    ) -> Result<(AppendInfo, Vec<BatchHeader>)> {
        debug_assert!(count_offsets(&headers).ok() == Some(incoming_offsets), "offsets miscounted");
        let log_append = self.config.timestamp_type == TimestampType::LogAppendTime;
        let incoming_timestamp = if log_append {
            now_ms
        } else {
            headers
                .iter()
                .map(|h| records_max_timestamp(h).unwrap_or(h.max_timestamp))
                .max()
                .unwrap_or(-1)
        };
        self.maybe_roll(bytes.len() as u64, incoming_offsets, incoming_timestamp, now_ms)?;
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        let mut at = 0usize;
        let mut heads = Vec::with_capacity(headers.len());
        let mut rests = Vec::with_capacity(headers.len());
        for header in &mut headers {
            let end = at + header.total_bytes;
            let one = bytes.get(at..end).expect("validate_all covered these bytes");
            let (head, rest) = one.split_at(BATCH_HEADER_BYTES);
            let mut head: [u8; BATCH_HEADER_BYTES] = head.try_into().expect("split at the size");
            batch::assign_base_offset(&mut head, next);
            header.base_offset = next;
            if log_append {
                batch::set_log_append_time_split(&mut head, rest, now_ms);
                header.max_timestamp = now_ms;
            } else if let Some(records_max) = records_max_timestamp(header) {
                // As Kafka's setMaxTimestamp(CREATE_TIME, max): also clears a LogAppendTime
                // bit the producer set.
                let marked = header.attributes & batch::ATTR_LOG_APPEND_TIME != 0;
                if records_max != header.max_timestamp || marked {
                    batch::set_max_timestamp_split(&mut head, rest, records_max, false);
                    header.max_timestamp = records_max;
                    header.attributes &= !batch::ATTR_LOG_APPEND_TIME;
                }
            }
            next = header.next_offset();
            at = end;
            heads.push(head);
            rests.push(rest);
        }
        let parts: Vec<&[u8]> =
            heads.iter().zip(&rests).flat_map(|(head, rest)| [&head[..], *rest]).collect();
        debug_assert!(
            parts.chunks(2).all(|p| batch::validate_stored(&p.concat()).is_ok()),
            "a patched batch fails its CRC"
        );
        self.active_mut().append(&parts, bytes.len(), &headers)?;
        debug_assert!(self.log_end_offset() == next, "end {} != {}", self.log_end_offset(), next);
        let info = AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time_ms: if log_append { now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            duplicate: false,
        };
        Ok((info, headers))
    }

    /// Rolls the active segment when the incoming batches would overfill it, or when it
    /// has waited `segment.ms`: as Kafka counts it, from the first batch's timestamp to the
    /// incoming batches' max timestamp, or from the segment's creation (or the broker's
    /// start) to now when the first batch has no timestamp.
    fn maybe_roll(
        &mut self,
        incoming_bytes: u64,
        incoming_offsets: i64,
        incoming_timestamp: i64,
        now_ms: i64,
    ) -> Result<()> {
        let active = self.active();
        if active.size_bytes == 0 {
            return Ok(());
        }
        let full = active.size_bytes + incoming_bytes > u64::from(self.config.segment_bytes);
        let waited = if active.first_batch_timestamp >= 0 {
            incoming_timestamp.saturating_sub(active.first_batch_timestamp)
        } else {
            now_ms.saturating_sub(active.created_ms)
        };
        let old = waited > self.config.segment_ms - self.roll_jitter_ms;
        let offsets_full =
            spans_too_many(active.next_offset - active.base_offset, incoming_offsets);
        if full || old || offsets_full {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment (syncing it) and starts a new one at the log end.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        if self.segments.len() >= SEGMENTS_PER_PARTITION_MAX {
            return Err(Error::LimitExceeded {
                what: "segments per partition",
                limit: SEGMENTS_PER_PARTITION_MAX as u64,
                value: self.segments.len() as u64,
                hint: "raise segment.bytes or lower retention",
            });
        }
        self.synced(|log| log.active_mut().close())?;
        let base = self.log_end_offset();
        let interval = u64::from(self.config.index_interval_bytes);
        let segment = Segment::create(&self.dir, base, now_ms, interval)?;
        self.write_producer_snapshot();
        self.synced(|log| sync_dir(&log.dir))?;
        self.segments.push(segment);
        self.apply_preallocate();
        self.roll_jitter_ms = draw_roll_jitter_ms(&self.config);
        Ok(())
    }

    /// Writes the producer state as of the log end to `<offset>.snapshot` and removes all
    /// but the newest two snapshots. Only ever called when the log up to its end is synced.
    /// Best effort: without a snapshot, open replays more of the log.
    fn write_producer_snapshot(&self) {
        let offset = self.log_end_offset();
        let path = self.dir.join(format!("{}.{SNAPSHOT_EXTENSION}", stem(offset)));
        let tmp = path.with_extension("snapshot.tmp");
        let written = File::create(&tmp)
            .and_then(|file| {
                file.write_all_at(&self.producers.encode(), 0)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "producer state snapshot not written");
            return;
        }
        if let Ok(snapshots) = list_snapshots(&self.dir) {
            let old = snapshots.len().saturating_sub(2);
            for (_, path) in snapshots.into_iter().take(old) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Prepares a read of whole batches starting with the one holding `offset`.
    /// `Ok(None)` means `offset` is the log end: nothing to read yet.
    pub fn locate(&self, offset: i64) -> Result<Option<Located>> {
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: end,
            });
        }
        let after = self.segments.partition_point(|s| s.base_offset <= offset);
        let first = after.saturating_sub(1);
        for segment in self.segments.iter().skip(first) {
            if offset >= segment.next_offset {
                continue; // the end of this segment: the offset starts the next one
            }
            let relative = (offset.max(segment.base_offset) - segment.base_offset) as u32;
            return Ok(Some(Located {
                file: Arc::clone(&segment.file),
                path: segment.path.clone(),
                hint_position: u64::from(segment.indexes.position_for(relative)),
                size_bytes: segment.size_bytes,
                offset,
            }));
        }
        Ok(None)
    }

    /// The first record with a timestamp at or after `timestamp_ms`: `(offset, timestamp)`.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        for segment in &self.segments {
            if segment.max_timestamp < timestamp_ms || segment.next_offset <= self.log_start_offset
            {
                continue;
            }
            let relative = segment.indexes.relative_offset_before_time(timestamp_ms);
            let mut position = u64::from(segment.indexes.position_for(relative));
            while position < segment.size_bytes {
                let bytes = read_batch_at(&segment.file, &segment.path, position)?;
                let header = batch::parse_header(&bytes)?;
                position += header.total_bytes as u64;
                if header.next_offset() <= self.log_start_offset {
                    continue;
                }
                if let Some((offset, ts)) = batch::first_record_at_or_after(&bytes, timestamp_ms)? {
                    return Ok(Some((offset.max(self.log_start_offset), ts)));
                }
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of the first record carrying it
    /// (ListOffsets MAX_TIMESTAMP, KIP-734; as Kafka 3.8 and later answer). The record is
    /// found in the first batch carrying the max; should its records not decode, the batch's
    /// last offset stands in.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        let best = self.segments.iter().filter(|s| s.max_timestamp >= 0).reduce(|best, next| {
            if next.max_timestamp > best.max_timestamp {
                next
            } else {
                best
            }
        });
        let Some(segment) = best else { return Ok(None) };
        let (timestamp, last) = (segment.max_timestamp, segment.offset_of_max_timestamp);
        let relative = (last - segment.base_offset) as u32;
        let hint = u64::from(segment.indexes.position_for(relative));
        let (file, path, size) = (&segment.file, &segment.path, segment.size_bytes);
        let found = Segment::position_of(file, path, hint, size, last, Wait::ForDisk)?;
        let Some((position, _)) = found else { return Ok(Some((timestamp, last))) };
        let bytes = read_batch_at(&segment.file, &segment.path, position)?;
        let first = batch::first_record_at_or_after(&bytes, timestamp).ok().flatten();
        Ok(Some((timestamp, first.map_or(last, |(offset, _)| offset))))
    }

    /// Moves the log start offset to `offset` (DeleteRecords) and deletes whole segments
    /// below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        self.check_healthy()?;
        let end = self.log_end_offset();
        if offset < 0 || offset > end {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: end,
            });
        }
        if offset > self.log_start_offset {
            write_log_start(&self.dir, offset)?;
            self.log_start_offset = offset;
            self.delete_segments_below_start()?;
        }
        Ok(self.log_start_offset)
    }

    fn delete_segments_below_start(&mut self) -> Result<()> {
        while self.segments.len() > 1
            && self.segments.first().is_some_and(|s| s.next_offset <= self.log_start_offset)
        {
            let segment = self.segments.remove(0);
            segment.delete_files()?;
        }
        sync_dir(&self.dir)
    }

    /// Deletes segments past `retention.ms` or beyond `retention.bytes`; returns how many.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        self.check_healthy()?;
        let expired = |s: &Segment, retention_ms: i64| {
            retention_ms >= 0 && s.max_timestamp >= 0 && now_ms - s.max_timestamp > retention_ms
        };
        if expired(self.active(), self.config.retention_ms) {
            self.roll(now_ms)?;
        }
        let mut deleted = 0;
        let mut total = self.size_bytes() as i64;
        while self.segments.len() > 1 {
            let Some(oldest) = self.segments.first() else { break };
            let over_bytes = self.config.retention_bytes >= 0
                && total - oldest.size_bytes as i64 >= self.config.retention_bytes;
            if !(expired(oldest, self.config.retention_ms) || over_bytes) {
                break;
            }
            let segment = self.segments.remove(0);
            total -= segment.size_bytes as i64;
            segment.delete_files()?;
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        let first_base = self.segments.first().map_or(0, |s| s.base_offset);
        if first_base > self.log_start_offset {
            self.log_start_offset = first_base;
        }
        self.producers.prune_aborted(self.log_start_offset);
        let expired = self.producers.expire(now_ms, self.config.producer_id_expiration_ms);
        if expired > 0 {
            tracing::debug!(dir = %self.dir.display(), expired, "producer ids expired");
        }
        Ok(deleted)
    }

    /// Syncs the active segment (closed ones were synced when rolled).
    pub fn sync_all(&mut self) -> Result<()> {
        self.synced(|log| log.active().sync_all())
    }

    /// Syncs the active segment and snapshots the producer state, so the next open need
    /// not replay the log (clean shutdown).
    pub fn close(&mut self) -> Result<()> {
        self.sync_all()?;
        self.write_producer_snapshot();
        sync_dir(&self.dir)
    }

    /// Removes the partition's folder.
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(io("delete partition dir", &dir))
    }
}

impl Located {
    /// Reads whole batches from the located one onward, at most `max_bytes`, stopping before
    /// any batch that reaches `upper_offset` (the high watermark). With `oversized_ok` (the
    /// first partition with data in a fetch, KIP-74) a first batch larger than `max_bytes` is
    /// returned whole so a consumer can always make progress; without it, nothing is.
    pub fn read(&self, max_bytes: usize, upper_offset: i64, oversized_ok: bool) -> Result<Vec<u8>> {
        match self.slice(max_bytes, upper_offset, oversized_ok, Wait::ForDisk)? {
            Some(slice) => slice.read(),
            None => Ok(Vec::new()),
        }
    }

    /// Where the batches [`Located::read`] would return lie in the segment file, without
    /// reading them: a fetch sends them from the file to the socket a buffer at a time
    /// ([`LogSlice::read_into`]) or with `sendfile` ([`LogSlice::send_to`]). `None` when no
    /// whole batch qualifies. The batch headers it walks are read as `wait` allows.
    pub fn slice(
        &self,
        max_bytes: usize,
        upper_offset: i64,
        oversized_ok: bool,
        wait: Wait,
    ) -> Result<Option<LogSlice>> {
        let Some((start, first)) = Segment::position_of(
            &self.file,
            &self.path,
            self.hint_position,
            self.size_bytes,
            self.offset,
            wait,
        )?
        else {
            return Ok(None);
        };
        let mut headers = HeaderWindow::new(&self.file, &self.path, wait, &first);
        let mut next = Some(first);
        let mut position = start;
        let mut end_offset = None;
        let mut any_zstd = false;
        while position < self.size_bytes {
            let header = match next.take() {
                Some(header) => header,
                None => match headers.header_at(position, self.size_bytes)? {
                    Some(header) => header,
                    None => break,
                },
            };
            let taken = position - start;
            let fits = taken + header.total_bytes as u64 <= max_bytes as u64;
            let whole = position + header.total_bytes as u64 <= self.size_bytes;
            if header.next_offset() > upper_offset
                || !whole
                || !(fits || (taken == 0 && oversized_ok))
            {
                break;
            }
            position += header.total_bytes as u64;
            end_offset = Some(header.next_offset());
            any_zstd |= header.attributes & batch::ATTR_COMPRESSION_MASK == batch::COMPRESSION_ZSTD;
            if !fits {
                break; // the oversized first batch goes alone (KIP-74)
            }
        }
        let Some(end_offset) = end_offset else { return Ok(None) };
        let len = usize::try_from(position - start).map_err(|_| Error::LimitExceeded {
            what: "bytes of one read",
            limit: usize::MAX as u64,
            value: position - start,
            hint: "fetch less at once (max.partition.fetch.bytes)",
        })?;
        debug_assert!(len > 0, "a slice holds at least one batch");
        Ok(Some(LogSlice {
            file: Arc::clone(&self.file),
            path: self.path.clone(),
            position: start,
            len,
            end_offset,
            any_zstd,
        }))
    }
}

/// Whole batches of one segment file, located but not read: what a fetch returns for one
/// partition. The bytes stay valid while the slice lives: segments are append-only, and a
/// deleted segment's file lives on while a slice holds it open.
#[derive(Debug, Clone)]
pub struct LogSlice {
    file: Arc<File>,
    path: PathBuf,
    /// Byte position of the first batch in the file.
    pub position: u64,
    /// Bytes of the batches.
    pub len: usize,
    /// The offset after the last batch.
    pub end_offset: i64,
    /// Whether any batch is zstd-compressed (a Fetch older than v10 cannot carry it).
    pub any_zstd: bool,
}

impl LogSlice {
    /// The segment file, for `sendfile`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The segment file's path, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends the slice's bytes `sent..end` (relative to the slice; `end` at most its length)
    /// to `out` with one `sendfile(2)` call: the bytes go from the page cache to the socket
    /// without passing through this process. Returns how many went; a non-blocking `out` may
    /// take fewer, or answer `WouldBlock`. 0 before `end` means the file is shorter than the
    /// slice.
    pub fn send_to(
        &self,
        out: std::os::fd::BorrowedFd<'_>,
        sent: usize,
        end: usize,
    ) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        let left = end.min(self.len).saturating_sub(sent);
        if left == 0 {
            return Ok(0);
        }
        let at = self.position + sent as u64;
        let mut offset = libc::off_t::try_from(at).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: both descriptors are open for the call (the slice holds its file, `out` is
        // borrowed), and `offset` is a live off_t the kernel reads and updates.
        let n =
            unsafe { libc::sendfile(out.as_raw_fd(), self.file.as_raw_fd(), &mut offset, left) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }

    /// Reads `buf.len()` of the slice's bytes from `from` on (relative to the slice) into
    /// `buf`, for a fetch that copies them to the socket. An `UnexpectedEof` error means the
    /// file is shorter than the slice; asking past the slice's end is `InvalidInput`.
    pub fn read_into(&self, from: usize, buf: &mut [u8]) -> std::io::Result<()> {
        let end = from.checked_add(buf.len()).filter(|end| *end <= self.len);
        if end.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bytes {from}..+{} are outside a {}-byte slice", buf.len(), self.len),
            ));
        }
        self.file.read_exact_at(buf, self.position + from as u64).map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                let message = format!("{} ended before the fetched batches", self.path.display());
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message)
            } else {
                error
            }
        })
    }

    /// Reads what the page cache holds of `buf.len()` of the slice's bytes from `from` on,
    /// without waiting for the disk (`preadv2` with `RWF_NOWAIT`): how many bytes it read,
    /// from the start of `buf`. Fewer than asked means the rest must come from the disk (or
    /// the kernel cannot read without waiting here, or the file is shorter than the slice):
    /// [`LogSlice::read_into`] reads it, blocking.
    pub fn read_cached(&self, from: usize, buf: &mut [u8]) -> usize {
        if from.checked_add(buf.len()).is_none_or(|end| end > self.len) {
            return 0; // outside the slice: `read_into` says so
        }
        crate::segment::read_cached_at(&self.file, buf, self.position + from as u64).0
    }

    /// Reads the batches into memory.
    pub fn read(&self) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.len];
        self.read_into(0, &mut bytes).map_err(io("read segment", &self.path))?;
        Ok(bytes)
    }
}

/// Batch headers read through a window: small batches are read many headers per `pread`,
/// large ones one header each.
struct HeaderWindow<'a> {
    file: &'a File,
    path: &'a Path,
    wait: Wait,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    at: u64,
    /// The last batch was large: read the next header alone, not a window of records.
    large: bool,
}

/// Bytes read at once while batches are small.
const HEADER_WINDOW_BYTES: usize = 64 * 1024;

/// A batch at least this large is read past header by header: a window would hold few
/// headers and mostly records.
const LARGE_BATCH_BYTES: usize = HEADER_WINDOW_BYTES / 4;

impl<'a> HeaderWindow<'a> {
    /// A window for the batches after `first`, whose size says how to read the next one.
    fn new(file: &'a File, path: &'a Path, wait: Wait, first: &BatchHeader) -> HeaderWindow<'a> {
        let large = first.total_bytes >= LARGE_BATCH_BYTES;
        HeaderWindow { file, path, wait, buf: Vec::new(), at: 0, large }
    }

    /// The header of the batch at `position`, or `None` when fewer than a header's bytes
    /// remain before `size_bytes`.
    fn header_at(&mut self, position: u64, size_bytes: u64) -> Result<Option<BatchHeader>> {
        let end = position + BATCH_HEADER_BYTES as u64;
        if end > size_bytes {
            return Ok(None);
        }
        let inside = position >= self.at && end <= self.at + self.buf.len() as u64;
        if !inside {
            let want = if self.large { BATCH_HEADER_BYTES } else { HEADER_WINDOW_BYTES };
            let want = want.min((size_bytes - position) as usize).max(BATCH_HEADER_BYTES);
            self.buf.resize(want, 0);
            crate::segment::read_exact_at(
                self.file,
                self.path,
                &mut self.buf,
                position,
                self.wait,
            )?;
            self.at = position;
        }
        let from = (position - self.at) as usize;
        let header = batch::parse_header(self.buf.get(from..).unwrap_or_default())?;
        self.large = header.total_bytes >= LARGE_BATCH_BYTES;
        Ok(Some(header))
    }
}

/// A CreateTime batch's `maxTimestamp` as Kafka sets it: the largest of its records'
/// timestamps, or -1 (none) when no record has one above that. `None` for a header that
/// was not walked.
fn records_max_timestamp(header: &BatchHeader) -> Option<i64> {
    header.record_timestamps.map(|(_, max)| max.max(NO_TIMESTAMP))
}

/// Kafka's `randomSegmentJitter`: a random amount in `[0, min(segment.jitter.ms,
/// segment.ms))`, 0 when `segment.jitter.ms` is 0.
fn draw_roll_jitter_ms(config: &LogConfig) -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let bound = config.segment_jitter_ms.min(config.segment_ms);
    match u64::try_from(bound) {
        // A fresh `RandomState` is seeded at random: its hash of nothing is a random number.
        Ok(bound) if bound > 0 => {
            let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
            i64::try_from(random % bound).unwrap_or(0)
        }
        _ => 0,
    }
}

/// Whether a segment spanning `spanned` offsets must roll before taking `incoming` more:
/// its index entries hold offsets relative to its base as u32.
fn spans_too_many(spanned: i64, incoming: i64) -> bool {
    spanned + incoming > SEGMENT_OFFSETS_MAX
}

/// The offsets a validated payload claims, within the per-batch and per-segment limits.
fn count_offsets(headers: &[BatchHeader]) -> Result<i64> {
    let mut total = 0i64;
    for header in headers {
        if header.records_count > RECORDS_PER_BATCH_MAX {
            return Err(Error::LimitExceeded {
                what: "records per batch",
                limit: RECORDS_PER_BATCH_MAX as u64,
                value: header.records_count.max(0) as u64,
                hint: "send smaller batches (batch.num.messages / batch.size)",
            });
        }
        total += i64::from(header.records_count);
    }
    if total > SEGMENT_OFFSETS_MAX {
        return Err(Error::LimitExceeded {
            what: "records per produce request",
            limit: SEGMENT_OFFSETS_MAX as u64,
            value: total as u64,
            hint: "send fewer records per request",
        });
    }
    Ok(total)
}

/// The producer state as of `log_end`: the newest readable snapshot at or below it, then the
/// batches after it. Snapshots above `log_end` (the log was cut after them) are deleted.
fn load_producer_states(
    dir: &Path,
    segments: &[Segment],
    log_end: i64,
    now_ms: i64,
) -> Result<ProducerStates> {
    let mut states = ProducerStates::default();
    let mut from = segments.first().map_or(0, |s| s.base_offset);
    for (offset, path) in list_snapshots(dir)?.into_iter().rev() {
        if offset > log_end {
            tracing::warn!(path = %path.display(), log_end, "removing snapshot beyond the log end");
            std::fs::remove_file(&path).map_err(io("remove stale snapshot", &path))?;
            continue;
        }
        let size = std::fs::metadata(&path).map_err(io("stat snapshot", &path))?.len();
        let decoded = if size > SNAPSHOT_BYTES_MAX {
            Err(format!("{size} bytes, over the {SNAPSHOT_BYTES_MAX} a snapshot can hold"))
        } else {
            std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| ProducerStates::decode(&bytes))
        };
        match decoded {
            Ok(loaded) => {
                states = loaded;
                from = from.max(offset);
                break;
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "skipping unreadable snapshot");
            }
        }
    }
    for segment in segments.iter().filter(|s| s.next_offset > from) {
        segment.for_each_batch(|_, header, bytes| {
            if header.base_offset < from {
                return Ok(());
            }
            if header.is_control() {
                // A marker the log kept is one the broker wrote; an unreadable one is corrupt.
                let control = batch::control_type(bytes)?;
                states.record_marker(header, control, now_ms);
            } else {
                states.record(header, now_ms);
            }
            Ok(())
        })?;
    }
    Ok(states)
}

fn read_batch_at(file: &File, path: &Path, position: u64) -> Result<Vec<u8>> {
    let mut header = [0u8; sluice_wire::limits::BATCH_HEADER_BYTES];
    file.read_exact_at(&mut header, position).map_err(io("read segment", path))?;
    let parsed: BatchHeader = batch::parse_header(&header)?;
    let mut whole = vec![0u8; parsed.total_bytes];
    file.read_exact_at(&mut whole, position).map_err(io("read segment", path))?;
    Ok(whole)
}

fn read_log_start(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(LOG_START_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(offset) => Ok(Some(offset)),
            Err(_) => Err(Error::Config {
                key: "log-start-offset",
                value: text.trim().to_string(),
                reason: format!(
                    "{} is not a decimal offset; fix or remove the file",
                    path.display()
                ),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &path)(e)),
    }
}

fn write_log_start(dir: &Path, offset: i64) -> Result<()> {
    let tmp = dir.join(format!("{LOG_START_FILE}.tmp"));
    let path = dir.join(LOG_START_FILE);
    {
        let file = File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all_at(offset.to_string().as_bytes(), 0).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    sync_dir(dir)
}

/// Syncs a directory so that files created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync dir", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_rolls_before_its_offset_span_passes_the_limit() {
        assert!(!spans_too_many(SEGMENT_OFFSETS_MAX - 10, 10));
        assert!(spans_too_many(SEGMENT_OFFSETS_MAX - 10, 11));
        assert!(spans_too_many(0, SEGMENT_OFFSETS_MAX + 1));
    }
}
