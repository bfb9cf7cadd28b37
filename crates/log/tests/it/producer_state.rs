//! Idempotent producers: a retried batch is not appended twice, across rolls, clean
//! shutdowns and crashes.
use sluice_log::{LogConfig, PartitionLog};
use sluice_wire::batch::{self, BatchSpec, KeyValue};

use super::small_segments;

const PRODUCER_ID: i64 = 42;

/// A batch of `count` records from producer 42 at `epoch`, sequences from `sequence`.
fn idempotent_batch(epoch: i16, sequence: i32, count: usize) -> Vec<u8> {
    let values: Vec<Vec<u8>> =
        (0..count).map(|i| format!("s{}", sequence as usize + i).into_bytes()).collect();
    let records: Vec<KeyValue<'_>> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    let spec = BatchSpec {
        timestamp_ms: 1_000,
        producer_id: PRODUCER_ID,
        producer_epoch: epoch,
        base_sequence: sequence,
        ..BatchSpec::default()
    };
    batch::build_batch(&spec, &records)
}

/// Appends 40 batches of 3 records (sequences 0..120) and returns the log end.
fn append_forty(log: &mut PartitionLog) -> i64 {
    for i in 0..40 {
        let info = log.append(&idempotent_batch(0, i * 3, 3), 0).unwrap();
        assert!(!info.duplicate);
        assert_eq!(info.base_offset, i64::from(i) * 3);
    }
    log.log_end_offset()
}

/// The last batch retried must be acknowledged with its original offsets and not appended.
fn assert_retry_is_deduplicated(log: &mut PartitionLog, end: i64) {
    let info = log.append(&idempotent_batch(0, 117, 3), 0).unwrap();
    assert!(info.duplicate, "a retry of the last batch is a duplicate");
    assert_eq!((info.base_offset, info.last_offset), (117, 119));
    assert_eq!(log.log_end_offset(), end, "a duplicate appends nothing");
    let gap = log.append(&idempotent_batch(0, 121, 1), 0).unwrap_err();
    assert!(
        gap.to_string().contains("expected 120"),
        "a gap is OUT_OF_ORDER_SEQUENCE_NUMBER naming the expected sequence: {gap}"
    );
    let next = log.append(&idempotent_batch(0, 120, 1), 0).unwrap();
    assert_eq!(next.base_offset, end);
}

#[test]
fn retries_are_deduplicated_after_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    let end = append_forty(&mut log);
    log.close().unwrap();
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_retry_is_deduplicated(&mut log, end);
}

#[test]
fn retries_are_deduplicated_after_a_crash_by_replaying_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    let end = append_forty(&mut log);
    drop(log); // no close: only roll snapshots, if any, and the log itself survive
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_retry_is_deduplicated(&mut log, end);
}

#[test]
fn retries_are_deduplicated_with_no_snapshot_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes: 1 << 20, ..LogConfig::default() };
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
    let end = append_forty(&mut log);
    drop(log);
    let snapshots = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "snapshot"))
        .count();
    assert_eq!(snapshots, 0, "nothing rolled and nothing closed");
    let mut log = PartitionLog::open(dir.path(), config, 0).unwrap();
    assert_retry_is_deduplicated(&mut log, end);
}

#[test]
fn a_corrupt_snapshot_is_skipped_and_the_log_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    let end = append_forty(&mut log);
    log.close().unwrap();
    drop(log);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "snapshot") {
            std::fs::write(&path, b"SLPS garbage").unwrap();
        }
    }
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_retry_is_deduplicated(&mut log, end);
}

#[test]
fn a_fenced_epoch_is_refused_and_a_new_epoch_starts_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    log.append(&idempotent_batch(1, 0, 2), 0).unwrap();
    let fenced = log.append(&idempotent_batch(0, 2, 1), 0).unwrap_err();
    assert!(fenced.to_string().contains("current epoch is 1"), "{fenced}");
    let restarted = log.append(&idempotent_batch(2, 5, 1), 0).unwrap_err();
    assert!(restarted.to_string().contains("expected 0"), "{restarted}");
    log.append(&idempotent_batch(2, 0, 1), 0).unwrap();
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn every_cached_batch_is_recognised_after_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    log.append(&idempotent_batch(0, 0, 3), 0).unwrap();
    log.append(&idempotent_batch(0, 3, 2), 0).unwrap();
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    let info = log.append(&idempotent_batch(0, 0, 3), 0).unwrap();
    assert!(info.duplicate, "{info:?}");
    assert_eq!(info.base_offset, 0);
}
