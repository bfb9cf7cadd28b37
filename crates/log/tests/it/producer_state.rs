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

/// The fuzz corpus of the snapshot decoder, replayed: nothing panics, and whatever decodes
/// re-encodes to the same bytes. `SLUICE_WRITE_SEEDS=1` (re)writes the seed snapshots first.
#[test]
fn fuzz_corpus_replays_without_panics() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus/producer_snapshot");
    if std::env::var_os("SLUICE_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&corpus).unwrap();
        for (name, bytes) in seed_snapshots() {
            std::fs::write(corpus.join(name), bytes).unwrap();
        }
    }
    let mut count = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if let Ok(states) = sluice_log::ProducerStates::decode(&bytes) {
            assert_eq!(states.encode(), bytes);
        }
        let _ = batch::control_type(&bytes);
        count += 1;
    }
    assert!(count >= 3, "the corpus has {count} files; seeds are checked in");
}

/// Snapshots of a few producer states: idempotent batches, an open transaction, an abort.
fn seed_snapshots() -> Vec<(&'static str, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    let empty = ("seed-empty", sluice_log::ProducerStates::default().encode());
    for i in 0..7 {
        log.append(&idempotent_batch(0, i * 2, 2), 0).unwrap();
    }
    let idempotent = ("seed-idempotent", log.producers().encode());
    let spec = BatchSpec {
        timestamp_ms: 1_000,
        attributes: batch::ATTR_TRANSACTIONAL,
        producer_id: 77,
        producer_epoch: 0,
        base_sequence: 0,
        ..BatchSpec::default()
    };
    log.append(&batch::build_batch(&spec, &[(None, Some(b"t"))]), 0).unwrap();
    let open = ("seed-open-transaction", log.producers().encode());
    log.append_marker(77, 0, batch::ControlType::Abort, 0, 0).unwrap();
    let aborted = ("seed-aborted", log.producers().encode());
    let marker = ("seed-marker", batch::build_marker(77, 0, batch::ControlType::Commit, 0, 0));
    vec![empty, idempotent, open, aborted, marker]
}

/// A marker that is its transaction's only decision keeps the transaction unstable (the last
/// stable offset at its first record) until the marker is below the high watermark; a
/// marker written after a stored decision releases it at once.
#[test]
fn a_deciding_marker_holds_the_last_stable_offset_until_it_is_below_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    let transactional = |producer_id: i64| {
        let spec = BatchSpec {
            attributes: batch::ATTR_TRANSACTIONAL,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            ..BatchSpec::default()
        };
        batch::build_batch(&spec, &[(None, Some(b"t"))])
    };
    log.append(&transactional(77), 0).unwrap();
    let marker = log.append_deciding_marker(77, 0, batch::ControlType::Commit, 0, 0).unwrap();
    assert_eq!(marker.last_offset, 1);
    assert_eq!(log.last_stable_offset(1), 0, "the marker is not below the high watermark yet");
    assert_eq!(log.last_stable_offset(2), 2, "synced: the transaction is stable");
    log.append(&transactional(78), 0).unwrap();
    log.append_marker(78, 0, batch::ControlType::Commit, 0, 0).unwrap();
    assert_eq!(log.last_stable_offset(3), 3, "a stored decision's marker releases at once");
}
