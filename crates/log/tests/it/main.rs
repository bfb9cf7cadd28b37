//! The log's integration tests: recovery, index rebuild, retention, timestamps.
use std::path::Path;

use proptest::prelude::*;
use sluice_log::{LogConfig, Partition, PartitionLog, Wait};
use sluice_wire::batch;

mod producer_state;

fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 4096, index_interval_bytes: 256, ..LogConfig::default() }
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(i % 37)).into_bytes()
}

/// Appends `count` single-record batches with values `value(first..)`, timestamps `ts0 + i`.
fn append_values(log: &mut PartitionLog, first: usize, count: usize, ts0: i64) {
    for i in first..first + count {
        let v = value(i);
        let b = batch::build(0, ts0 + i as i64, &[&v]);
        let info = log.append(&b, 0).unwrap();
        assert_eq!(info.base_offset, i as i64);
    }
}

/// Reads every batch from the start and returns the base offsets in order.
fn read_offsets(log: &PartitionLog, from: i64) -> Vec<i64> {
    let mut offsets = Vec::new();
    let mut next = from;
    loop {
        let Some(located) = log.locate(next).unwrap() else { break };
        let bytes = located.read(1 << 20, log.log_end_offset(), true).unwrap();
        if bytes.is_empty() {
            break;
        }
        let mut at = 0;
        while at < bytes.len() {
            let header = batch::validate(&bytes[at..]).unwrap();
            offsets.push(header.base_offset);
            next = header.next_offset();
            at += header.total_bytes;
        }
    }
    offsets
}

fn segment_files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn reopens_with_every_batch_across_rolled_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    append_values(&mut log, 0, 500, 1_000);
    assert!(segment_files(dir.path(), "log").len() > 3, "small segments roll");
    drop(log);
    let log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 500);
    assert_eq!(read_offsets(&log, 0), (0..500).collect::<Vec<_>>());
    assert_eq!(read_offsets(&log, 250), (250..500).collect::<Vec<_>>());
}

#[test]
fn rebuilds_missing_and_garbage_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    append_values(&mut log, 0, 300, 1_000);
    drop(log);
    let indexes = segment_files(dir.path(), "index");
    std::fs::remove_file(&indexes[0]).unwrap();
    std::fs::write(&indexes[1], b"garbage!garbage!").unwrap();
    std::fs::remove_file(&segment_files(dir.path(), "timeindex")[2]).unwrap();
    let log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 300);
    assert_eq!(read_offsets(&log, 0), (0..300).collect::<Vec<_>>());
    assert_eq!(log.offset_for_timestamp(1_100).unwrap(), Some((100, 1_100)));
}

/// A closed segment's offset index is trusted only when the batch at its last entry's
/// position has the base offset the entry names; an entry that names an earlier offset
/// would send a read of that offset past it.
#[test]
fn a_last_index_entry_naming_another_batch_rebuilds_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    append_values(&mut log, 0, 300, 1_000);
    drop(log);
    let index = &segment_files(dir.path(), "index")[0];
    let mut bytes = std::fs::read(index).unwrap();
    let last = bytes.len() - 8;
    let relative = u32::from_be_bytes(bytes[last..last + 4].try_into().unwrap());
    assert!(relative >= 2, "the first segment's last entry is past its first batches");
    // Each batch holds one record: the entry now names the batch before the one it points at.
    bytes[last..last + 4].copy_from_slice(&(relative - 1).to_be_bytes());
    std::fs::write(index, &bytes).unwrap();
    let log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 300);
    let named = i64::from(relative) - 1;
    assert_eq!(read_offsets(&log, named), (named..300).collect::<Vec<_>>());
    assert_eq!(read_offsets(&log, 0), (0..300).collect::<Vec<_>>());
}

#[test]
fn finds_offsets_by_timestamp_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    append_values(&mut log, 0, 200, 10_000);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 10_000)));
    assert_eq!(log.offset_for_timestamp(10_150).unwrap(), Some((150, 10_150)));
    assert_eq!(log.offset_for_timestamp(20_000).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), Some((10_199, 199)));
    // MAX_TIMESTAMP names the first record carrying the max, not its batch's last offset.
    let values: [&[u8]; 3] = [b"a", b"b", b"c"];
    let info = log.append(&batch::build(0, 30_000, &values), 0).unwrap();
    assert_eq!(info.base_offset, 200);
    assert_eq!(log.max_timestamp().unwrap(), Some((30_000, 200)));
}

/// With rising timestamps (every batch raises the max) the time index stays sparse: one
/// entry per offset entry and one per closed segment, not one per batch as before. And a
/// closed segment whose time index lost its last entries still reports its max timestamp
/// (scanned from the last offset entry).
#[test]
fn rising_timestamps_keep_the_time_index_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        LogConfig { segment_bytes: 16_384, index_interval_bytes: 1024, ..LogConfig::default() };
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
    append_values(&mut log, 0, 600, 1_000);
    let entries = |ext: &str, size: u64| -> Vec<u64> {
        segment_files(dir.path(), ext)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len() / size)
            .collect()
    };
    let (offsets, times) = (entries("index", 8), entries("timeindex", 12));
    let closed = offsets.len() - 1;
    assert!(closed >= 2, "small segments roll");
    for segment in 0..closed {
        assert!(
            times[segment] <= offsets[segment] + 1,
            "segment {segment}: {times:?} / {offsets:?}"
        );
    }
    let first_segment_last = segment_files(dir.path(), "log")[1]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap()
        - 1;
    let batches_in_first = first_segment_last as u64 + 1;
    assert!(
        times[0] * 3 < batches_in_first,
        "{} time entries for {batches_in_first} batches",
        times[0]
    );
    // Cut the closing entry and the one before it off the first closed segment's time index.
    let first = &segment_files(dir.path(), "timeindex")[0];
    let bytes = std::fs::read(first).unwrap();
    std::fs::write(first, &bytes[..bytes.len() - 24]).unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), config, 0).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), Some((1_599, 599)));
    // The first segment's max still counts it in: a lookup of its last timestamp lands there.
    assert_eq!(
        log.offset_for_timestamp(1_000 + first_segment_last).unwrap(),
        Some((first_segment_last, 1_000 + first_segment_last))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The time index is sparse (an entry every `index.interval.bytes`, and one when a
    /// segment closes), and lookups by timestamp and the max timestamp still agree with a
    /// walk over every record, before and after a reopen, whatever order the timestamps
    /// come in.
    #[test]
    fn sparse_time_index_lookups_match_a_full_walk(
        batches in proptest::collection::vec((0i64..5_000, 0usize..300), 1..150),
        probes in proptest::collection::vec(0i64..5_200, 1..20),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 8192, index_interval_bytes: 700, ..LogConfig::default() };
        let mut log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
        for (i, (ts, size)) in batches.iter().enumerate() {
            let value = vec![b'v'; *size];
            let info = log.append(&batch::build(0, *ts, &[&value]), 0).unwrap();
            prop_assert_eq!(info.base_offset, i as i64);
        }
        let first_at_or_after = |target: i64| {
            batches.iter().position(|(ts, _)| *ts >= target).map(|i| (i as i64, batches[i].0))
        };
        let max = batches.iter().map(|(ts, _)| *ts).max().unwrap();
        let max_offset = batches.iter().position(|(ts, _)| *ts == max).unwrap() as i64;
        for reopened in [false, true] {
            if reopened {
                drop(log);
                log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
            }
            for probe in &probes {
                prop_assert_eq!(log.offset_for_timestamp(*probe).unwrap(), first_at_or_after(*probe));
            }
            prop_assert_eq!(log.max_timestamp().unwrap(), Some((max, max_offset)));
        }
        let entries = |ext: &str| -> u64 {
            segment_files(dir.path(), ext).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
        };
        let segments = segment_files(dir.path(), "log").len() as u64;
        prop_assert!(entries("timeindex") / 12 <= entries("index") / 8 + segments);
    }
}

#[test]
fn a_segment_rolls_when_its_records_span_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_ms: 1_000, ..LogConfig::default() };
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
    let value = value(1);
    // Counted from the first batch's timestamp to the incoming one's, not by the clock.
    for ts in [10_000, 10_400, 11_000] {
        log.append(&batch::build(0, ts, &[&value]), 500_000).unwrap();
    }
    assert_eq!(segment_files(dir.path(), "log").len(), 1, "exactly segment.ms does not roll");
    log.append(&batch::build(0, 11_001, &[&value]), 500_000).unwrap();
    assert_eq!(segment_files(dir.path(), "log").len(), 2);
    // A reopened log counts from the active segment's first batch too.
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config, 0).unwrap();
    log.append(&batch::build(0, 11_500, &[&value]), 900_000).unwrap();
    assert_eq!(segment_files(dir.path(), "log").len(), 2);
    log.append(&batch::build(0, 12_002, &[&value]), 900_000).unwrap();
    assert_eq!(segment_files(dir.path(), "log").len(), 3);
    assert_eq!(log.log_end_offset(), 6);
    // A first batch without a timestamp: counted from the segment's creation to now.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config_ms(1_000), 0).unwrap();
    log.append(&batch::build(0, -1, &[&value]), 100).unwrap();
    log.append(&batch::build(0, 50_000, &[&value]), 1_000).unwrap();
    assert_eq!(segment_files(dir.path(), "log").len(), 1);
    log.append(&batch::build(0, 50_000, &[&value]), 1_001).unwrap();
    assert_eq!(segment_files(dir.path(), "log").len(), 2);
}

/// `preallocate`: the active segment keeps zeros written ahead of its last batch, which
/// reads never see; a closed segment ends with its last batch; reopening cuts the zeros
/// and loses nothing.
#[test]
fn preallocate_keeps_zeros_ahead_of_the_active_segment_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes: 65_536, preallocate: true, ..LogConfig::default() };
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
    let file_len = |path: &Path| std::fs::metadata(path).unwrap().len();
    append_values(&mut log, 0, 1, 1_000);
    let (_, active) = log.active_file();
    // Zeros up to segment.bytes (here less than PREALLOCATE_AHEAD_BYTES), no further.
    assert_eq!(file_len(&active), 65_536, "zeros written ahead");
    // Appends inside the zeros overwrite them and write no more.
    append_values(&mut log, 1, 9, 1_000);
    assert_eq!(file_len(&active), 65_536);
    assert_eq!(read_offsets(&log, 0), (0..10).collect::<Vec<_>>());
    // Past a segment: the closed one is trimmed to its batches.
    append_values(&mut log, 10, 3000, 1_000);
    let logs = segment_files(dir.path(), "log");
    assert!(logs.len() >= 2, "segments rolled");
    for closed in &logs[..logs.len() - 1] {
        assert_eq!(file_len(closed), synced_size(closed, i64::MAX), "{closed:?} trimmed");
    }
    let (_, active) = log.active_file();
    assert!(file_len(&active) > synced_size(&active, i64::MAX), "zeros ahead");
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 3010);
    assert_eq!(read_offsets(&log, 0), (0..3010).collect::<Vec<_>>());
    assert_eq!(file_len(&active), synced_size(&active, i64::MAX), "recovery cut the zeros");
    append_values(&mut log, 3010, 1, 1_000);
    assert!(file_len(&active) > synced_size(&active, i64::MAX), "zeros ahead again");
    // Turned off, the zeros already written stay until the segment closes.
    log.set_config(LogConfig { preallocate: false, ..config });
    log.roll(0).unwrap();
    assert_eq!(file_len(&active), synced_size(&active, i64::MAX));
    append_values(&mut log, 3011, 1, 1_000);
    let (_, active) = log.active_file();
    assert_eq!(file_len(&active), synced_size(&active, i64::MAX), "no zeros when off");
}

/// `segment.jitter.ms`: each segment rolls by age a random amount earlier, below both the
/// jitter and `segment.ms`, drawn anew for each segment.
#[test]
fn segment_jitter_rolls_segments_early_by_a_random_amount() {
    let config =
        LogConfig { segment_ms: 10_000, segment_jitter_ms: 10_000, ..LogConfig::default() };
    let value = value(1);
    let mut rolled_at_half = 0;
    let logs = 40;
    for _ in 0..logs {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
        // A jitter is below segment.ms: no segment rolls before any time has passed.
        for ts in [100_000, 100_000] {
            log.append(&batch::build(0, ts, &[&value]), 100_000).unwrap();
        }
        assert_eq!(segment_files(dir.path(), "log").len(), 1);
        // Half of segment.ms: rolled when the jitter drawn is above 5 s, about half the time.
        log.append(&batch::build(0, 105_000, &[&value]), 100_000).unwrap();
        let rolled = segment_files(dir.path(), "log").len() == 2;
        rolled_at_half += usize::from(rolled);
        // Past segment.ms every segment has rolled.
        let first = if rolled { 105_000 } else { 100_000 };
        log.append(&batch::build(0, first + 10_001, &[&value]), 100_000).unwrap();
        assert_eq!(segment_files(dir.path(), "log").len(), 2 + usize::from(rolled));
    }
    assert!(
        (1..logs).contains(&rolled_at_half),
        "{rolled_at_half} of {logs} segments rolled at half segment.ms"
    );
    let refused = LogConfig { segment_jitter_ms: -1, ..LogConfig::default() }.validate();
    assert!(refused.is_err());
}

fn config_ms(segment_ms: i64) -> LogConfig {
    LogConfig { segment_ms, ..LogConfig::default() }
}

#[test]
fn create_time_topics_refuse_timestamps_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_700_000_000_000i64;
    let config = LogConfig { timestamp_before_max_ms: 60_000, ..LogConfig::default() };
    let mut log = PartitionLog::open(dir.path(), config, now).unwrap();
    let value = value(1);
    let hour = 3_600_000;
    for ts in [now, now - 60_000, now + hour, -1] {
        log.append(&batch::build(0, ts, &[&value]), now).unwrap();
    }
    for ts in [now - 60_001, now + hour + 1, 0] {
        let error = log.append(&batch::build(0, ts, &[&value]), now).unwrap_err();
        match error {
            sluice_log::Error::InvalidTimestamp { timestamp, batch_index, earliest, latest } => {
                assert_eq!((timestamp, batch_index), (ts, 0));
                assert_eq!((earliest, latest), (now - 60_000, now + hour));
            }
            other => panic!("expected InvalidTimestamp, got {other}"),
        }
    }
    assert_eq!(log.log_end_offset(), 4, "refused batches are not appended");
    // LogAppendTime replaces the producer's timestamps, so they are not checked.
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: sluice_log::TimestampType::LogAppendTime,
        timestamp_before_max_ms: 0,
        timestamp_after_max_ms: 0,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config, now).unwrap();
    log.append(&batch::build(0, 0, &[&value]), now).unwrap();
}

/// `batch` with its header's `maxTimestamp` set to `max`, under a valid CRC.
fn with_header_max_timestamp(batch: &[u8], max: i64) -> Vec<u8> {
    let mut batch = batch.to_vec();
    batch[35..43].copy_from_slice(&max.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// A topic's `compression.type` rewrites batches of another codec on append: the stored
/// batch is in the topic's codec with the same records, offsets and timestamps; a batch
/// already in it is stored as written; and a rewrite larger than `max.message.bytes` is
/// refused as too large, as in Kafka. (Control batches: `records.rs`'s tests.)
#[test]
fn batches_are_stored_in_the_topic_compression_type() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_700_000_000_000i64;
    let gzip = batch::Recompression::Gzip { level: 6 };
    let config = LogConfig { compression: Some(gzip), ..LogConfig::default() };
    let mut log = PartitionLog::open(dir.path(), config, now).unwrap();
    let values: Vec<Vec<u8>> = (0..50).map(value).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let plain = batch::build(0, now - 5, &refs);
    let as_lz4 = batch::compress(&plain, batch::Compression::Lz4).unwrap();
    let as_gzip = batch::compress(&plain, batch::Compression::Gzip).unwrap();
    for sent in [&plain, &as_lz4, &as_gzip] {
        log.append(sent, now).unwrap();
    }
    let stored = log.locate(0).unwrap().unwrap().read(1 << 20, log.log_end_offset(), true).unwrap();
    let mut at = 0;
    for expected_base in [0, 50, 100] {
        let header = batch::validate(&stored[at..]).unwrap();
        assert_eq!(header.attributes & 0x07, 1, "gzip at offset {expected_base}");
        assert_eq!((header.base_offset, header.records_count), (expected_base, 50));
        assert_eq!(header.max_timestamp, now - 5);
        let back = batch::recompress(
            &stored[at..at + header.total_bytes],
            &header,
            batch::Recompression::None,
            u32::MAX,
        )
        .unwrap()
        .unwrap();
        assert_eq!(back[16..], plain[16..], "the same records");
        at += header.total_bytes;
    }
    assert_eq!(&stored[at - as_gzip.len() + 16..at], &as_gzip[16..], "gzip was stored as sent");

    // Stored uncompressed, a well-compressed batch outgrows max.message.bytes.
    let config = LogConfig {
        compression: Some(batch::Recompression::None),
        max_message_bytes: 4096,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(&dir.path().join("small"), config, now).unwrap();
    let repetitive = vec![b'z'; 10_000];
    let packed = batch::compress(&batch::build(0, now, &[&repetitive]), batch::Compression::Zstd);
    match log.append(&packed.unwrap(), now).unwrap_err() {
        sluice_log::Error::InvalidBatch(sluice_wire::BatchError::TooLarge { limit, .. }) => {
            assert_eq!(limit, 4096)
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    assert_eq!(log.log_end_offset(), 0, "nothing was written");
}

/// Under CreateTime a batch's stored `maxTimestamp` is its records' largest timestamp,
/// whatever the producer's header says (Kafka rewrites it too), so the time index, ListOffsets
/// and `segment.ms` see the records; compressed batches are read through their codec for
/// this and for the KIP-937 limits.
#[test]
fn a_batch_max_timestamp_comes_from_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_700_000_000_000i64;
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), now).unwrap();
    let plain = batch::build(0, now - 5, &[b"a", b"b"]);
    log.append(&with_header_max_timestamp(&plain, now + 3_000_000), now).unwrap();
    let gzip = batch::compress(&batch::build(0, now - 2, &[b"c"]), batch::Compression::Gzip);
    log.append(&with_header_max_timestamp(&gzip.unwrap(), -1), now).unwrap();
    let stored = log.locate(0).unwrap().unwrap().read(1 << 20, log.log_end_offset(), true).unwrap();
    let first = batch::validate(&stored).unwrap();
    assert_eq!(first.max_timestamp, now - 5, "the header's claim is replaced (CRC valid)");
    let second = batch::validate(&stored[first.total_bytes..]).unwrap();
    assert_eq!(second.max_timestamp, now - 2);
    assert_eq!(log.max_timestamp().unwrap(), Some((now - 2, 2)));
    drop(log);
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), now).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), Some((now - 2, 2)), "as rebuilt from the files");

    // A record two hours ahead after one of now, inside a compressed batch whose header says
    // "now" for both its first and its max timestamp: only the walk sees it.
    let hour = 3_600_000;
    let ahead = batch::build_timestamped(now, &[(now, b"on time"), (now + 2 * hour, b"late")]);
    for compression in [batch::Compression::Zstd, batch::Compression::SnappyRaw] {
        let packed = batch::compress(&ahead, compression).unwrap();
        match log.append(&with_header_max_timestamp(&packed, now), now).unwrap_err() {
            sluice_log::Error::InvalidTimestamp { timestamp, .. } => {
                assert_eq!(timestamp, now + 2 * hour)
            }
            other => panic!("expected InvalidTimestamp, got {other}"),
        }
    }
    assert_eq!(log.log_end_offset(), 3);

    // A LogAppendTime bit a producer set on a CreateTime topic is cleared, as Kafka's
    // setMaxTimestamp(CREATE_TIME, ...) clears it.
    let mut marked = batch::build(0, now - 1, &[b"d"]);
    marked[22] |= 0x08;
    let crc = crc32c::crc32c(&marked[21..]);
    marked[17..21].copy_from_slice(&crc.to_be_bytes());
    log.append(&marked, now).unwrap();
    let last = log.locate(3).unwrap().unwrap().read(1 << 20, log.log_end_offset(), true).unwrap();
    let header = batch::validate(&last).unwrap();
    assert_eq!(header.attributes & batch::ATTR_LOG_APPEND_TIME, 0);
    assert_eq!(header.max_timestamp, now - 1);
}

#[test]
fn retention_by_bytes_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_bytes: 8192, ..small_segments() };
    let mut log = PartitionLog::open(dir.path(), config, 0).unwrap();
    append_values(&mut log, 0, 500, 1_000);
    let deleted = log.apply_retention(0).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() <= 8192 + 4096, "size {}", log.size_bytes());
    let start = log.log_start_offset();
    assert!(start > 0);
    assert!(log.locate(start - 1).is_err(), "below the log start is out of range");
    assert_eq!(read_offsets(&log, start), (start..500).collect::<Vec<_>>());
}

#[test]
fn delete_records_persists_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    append_values(&mut log, 0, 100, 1_000);
    assert_eq!(log.delete_records_before(42).unwrap(), 42);
    drop(log);
    let log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(log.log_start_offset(), 42);
    assert_eq!(read_offsets(&log, 42).first(), Some(&42));
}

#[test]
fn group_commit_syncs_and_raises_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    let partition = std::sync::Arc::new(Partition::new(log));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let partition = partition.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let v = value(t * 100 + i);
                    let b = batch::build(0, 1, &[&v]);
                    let info = partition.append(&b, 0).unwrap();
                    partition.sync_to(info.last_offset + 1).unwrap();
                    assert!(partition.synced_offset() > info.last_offset);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(partition.high_watermark(), 160);
    assert!(!partition.read(0, 1 << 20, true).unwrap().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever a crash leaves at the tail of the active segment (a cut anywhere, or
    /// garbage appended), recovery keeps exactly the whole batches before it, and the log
    /// accepts appends again at the next offset.
    #[test]
    fn recovers_prefix_after_torn_write(count in 1usize..120, cut_back in 0usize..400, garbage in proptest::collection::vec(any::<u8>(), 0..64)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
        append_values(&mut log, 0, count, 1_000);
        drop(log);
        let active = segment_files(dir.path(), "log").pop().unwrap();
        let len = std::fs::metadata(&active).unwrap().len();
        let cut = len.saturating_sub(cut_back as u64);
        let file = std::fs::OpenOptions::new().write(true).open(&active).unwrap();
        file.set_len(cut).unwrap();
        use std::os::unix::fs::FileExt;
        file.write_all_at(&garbage, cut).unwrap();
        drop(file);

        let mut log = PartitionLog::open(dir.path(), small_segments(), 0).unwrap();
        let end = log.log_end_offset();
        prop_assert!(end as usize <= count);
        let offsets = read_offsets(&log, 0);
        prop_assert_eq!(offsets, (0..end).collect::<Vec<_>>());
        let v = value(end as usize);
        let b = batch::build(0, 5, &[&v]);
        let info = log.append(&b, 0).unwrap();
        prop_assert_eq!(info.base_offset, end);
    }
}

/// A gzip batch (by its attributes) holding one uncompressed record and claiming `count`
/// (the CRC recomputed).
fn batch_claiming(count: i32) -> Vec<u8> {
    let mut b = batch::build(0, 1, &[b"v"]);
    b[21..23].copy_from_slice(&1i16.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch claiming more than `RECORDS_PER_BATCH_MAX` records is refused from its header,
/// before its records are decompressed and walked; below the limit, the walk finds that a
/// batch holds fewer records than it claims, compressed or not. (That a segment rolls
/// before its offset span passes u32 is `spans_too_many`'s unit test: reaching it here
/// would take 2^31 real records.)
#[test]
fn batches_claiming_more_records_than_they_hold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    let too_many = batch_claiming(sluice_log::limits::RECORDS_PER_BATCH_MAX + 1);
    assert!(matches!(log.append(&too_many, 0), Err(sluice_log::Error::LimitExceeded { .. })));
    match log.append(&batch_claiming(sluice_log::limits::RECORDS_PER_BATCH_MAX), 0) {
        // Marked gzip but not gzip: the walk stops at the codec.
        Err(sluice_log::Error::InvalidBatch(sluice_wire::BatchError::Decompression { .. })) => {}
        other => panic!("expected a decompression error, got {other:?}"),
    }
    let mut claiming = batch::build(0, 1, &[b"v"]);
    claiming[23..27].copy_from_slice(&(1000i32 - 1).to_be_bytes());
    claiming[57..61].copy_from_slice(&1000i32.to_be_bytes());
    let crc = crc32c::crc32c(&claiming[21..]);
    claiming[17..21].copy_from_slice(&crc.to_be_bytes());
    let packed = batch::compress(&claiming, batch::Compression::Lz4).unwrap();
    for bad in [claiming, packed] {
        match log.append(&bad, 0) {
            Err(sluice_log::Error::InvalidBatch(
                sluice_wire::BatchError::RecordsCountMismatch { declared: 1000, found: 1 },
            )) => {}
            other => panic!("expected a count mismatch, got {other:?}"),
        }
    }
    assert_eq!(log.log_end_offset(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Power loss at any point: whatever was synced survives, whatever came after may be
    /// cut anywhere or left as garbage, and recovery serves exactly a gap-free prefix that
    /// holds every record acknowledged (synced) before the crash, with its value.
    #[test]
    fn acknowledged_records_survive_power_loss(
        ops in proptest::collection::vec((1usize..6, any::<bool>()), 1..40),
        keep in 0.0f64..1.0,
        garbage in proptest::collection::vec(any::<u8>(), 0..80),
        preallocate in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { preallocate, ..small_segments() };
        let log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
        let partition = Partition::new(log);
        let mut next = 0usize;
        let mut acked = 0i64;
        for (count, sync) in ops {
            for _ in 0..count {
                let v = value(next);
                let b = batch::build(0, 1_000 + next as i64, &[&v]);
                partition.append(&b, 0).unwrap();
                next += 1;
            }
            if sync {
                partition.sync_to(next as i64).unwrap();
                acked = next as i64;
            }
        }
        // The crash: the active segment keeps its synced bytes, then some fraction of the
        // unsynced tail, then garbage (a torn page). Closed segments were synced on roll.
        // With `preallocate` the zeros written ahead were synced too and stay after it.
        let (synced_bytes, active) = partition.with_log(|log| {
            let (_, path) = log.active_file();
            (synced_size(&path, acked), path)
        });
        drop(partition);
        let len = std::fs::metadata(&active).unwrap().len();
        let cut = synced_bytes + ((len - synced_bytes) as f64 * keep) as u64;
        let file = std::fs::OpenOptions::new().write(true).open(&active).unwrap();
        use std::os::unix::fs::FileExt;
        if preallocate {
            // The file keeps its synced length; what was not synced reads back as the zeros
            // written there before.
            file.write_all_at(&vec![0; (len - cut) as usize], cut).unwrap();
        } else {
            file.set_len(cut).unwrap();
        }
        file.write_all_at(&garbage, cut).unwrap();
        drop(file);

        let log = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
        prop_assert!(log.log_end_offset() >= acked, "end {} < acked {}", log.log_end_offset(), acked);
        let offsets = read_offsets(&log, 0);
        prop_assert_eq!(offsets, (0..log.log_end_offset()).collect::<Vec<_>>());
        for offset in 0..log.log_end_offset() {
            let bytes = log.locate(offset).unwrap().unwrap().read(1 << 16, offset + 1, true).unwrap();
            let expected = value(offset as usize);
            prop_assert!(bytes.windows(expected.len()).any(|w| w == expected.as_slice()), "offset {} holds its value", offset);
        }
        // Appends go on after recovery, zeros written ahead again, and survive a reopen.
        let mut log = log;
        let end = log.log_end_offset();
        append_values(&mut log, end as usize, 3, 1_000 + end);
        drop(log);
        let log = PartitionLog::open(dir.path(), config, 0).unwrap();
        prop_assert_eq!(read_offsets(&log, 0), (0..end + 3).collect::<Vec<_>>());
    }
}

/// Bytes of the active segment that hold offsets below `acked` (what the last sync covered
/// in this test, where syncs are exactly at the acked points).
fn synced_size(path: &Path, acked: i64) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0usize;
    while at < bytes.len() {
        // Zeros written ahead (`preallocate`) end the batches.
        let Ok(header) = batch::parse_header(&bytes[at..]) else { break };
        if header.base_offset >= acked {
            break;
        }
        at += header.total_bytes;
    }
    at as u64
}

#[test]
fn an_oversized_first_batch_is_returned_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    let big = vec![7u8; 5000];
    let b = batch::build(0, 1, &[&big]);
    log.append(&b, 0).unwrap();
    let located = log.locate(0).unwrap().unwrap();
    assert_eq!(located.read(1000, 1, true).unwrap().len(), b.len(), "KIP-74: whole first batch");
    assert!(located.read(1000, 1, false).unwrap().is_empty(), "never past max_bytes otherwise");
}

#[test]
fn log_append_time_topics_store_the_append_time_with_a_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: sluice_log::TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config, 0).unwrap();
    let b = batch::build(0, 1_000, &[b"a", b"b"]);
    let info = log.append(&b, 77_000).unwrap();
    assert_eq!(info.log_append_time_ms, 77_000);
    let bytes = log.locate(0).unwrap().unwrap().read(1 << 20, 2, true).unwrap();
    let header = batch::validate(&bytes).unwrap();
    assert_eq!(header.max_timestamp, 77_000);
    assert_ne!(header.attributes & batch::ATTR_LOG_APPEND_TIME, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A slice holds exactly the whole batches a plain walk of the log picks: from the
    /// batch holding `from`, in order, within `max_bytes` (a first batch over it only when
    /// allowed), below `upper`. Batches from a few bytes to past the header window (64
    /// KiB) exercise both ways headers are read.
    #[test]
    fn a_slice_is_the_batches_a_walk_picks(
        sizes in proptest::collection::vec(prop_oneof![3 => 1usize..600, 1 => 10_000usize..90_000], 1..40),
        from_pick in any::<prop::sample::Index>(),
        upper_back in 0i64..5,
        max_bytes in 1usize..300_000,
        oversized_ok in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 64 << 20, ..LogConfig::default() };
        let mut log = PartitionLog::open(dir.path(), config, 0).unwrap();
        let mut batches = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let records: Vec<Vec<u8>> = (0..1 + i % 3).map(|_| vec![b'v'; *size]).collect();
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            let info = log.append(&batch::build(0, i as i64, &refs), 0).unwrap();
            batches.push((info.base_offset, info.last_offset + 1));
        }
        let end = log.log_end_offset();
        let from = from_pick.index(end as usize) as i64;
        let upper = (end - upper_back).max(0);
        let located = log.locate(from).unwrap().unwrap();
        let slice = located.slice(max_bytes, upper, oversized_ok, Wait::ForDisk).unwrap();
        // Just written, so in the page cache: the walk that may not wait finds the same.
        let cached = located.slice(max_bytes, upper, oversized_ok, Wait::CachedOnly).unwrap();
        let place = |s: &Option<sluice_log::LogSlice>| s.as_ref().map(|s| (s.position, s.len, s.end_offset));
        prop_assert_eq!(place(&cached), place(&slice));
        // The walk: whole batches whose end is at or below `upper`, from the one holding `from`.
        let whole = std::fs::read(segment_files(dir.path(), "log")[0].clone()).unwrap();
        let mut at = 0usize;
        let mut picked: Option<(usize, usize, i64)> = None;
        while at < whole.len() {
            let header = batch::validate(&whole[at..]).unwrap();
            let next = header.next_offset();
            if next > from {
                let (start, len, _) = picked.unwrap_or((at, 0, 0));
                let fits = len + header.total_bytes <= max_bytes;
                if next > upper || !(fits || (len == 0 && oversized_ok)) {
                    break;
                }
                picked = Some((start, len + header.total_bytes, next));
                if !fits {
                    break;
                }
            }
            at += header.total_bytes;
        }
        match (slice, picked) {
            (None, None) => {}
            (Some(slice), Some((start, len, end_offset))) => {
                prop_assert_eq!(slice.position, start as u64);
                prop_assert_eq!(slice.len, len);
                prop_assert_eq!(slice.end_offset, end_offset);
                prop_assert_eq!(&slice.read().unwrap()[..], &whole[start..start + len]);
            }
            (slice, picked) => prop_assert!(false, "slice {:?} but the walk picked {:?}", slice, picked),
        }
    }
}

/// A fetch reads a slice in pieces: from the page cache without waiting (`read_cached`),
/// the rest blocking (`read_into`); both give the slice's own bytes, and neither reads past
/// the slice.
#[test]
fn a_slice_reads_in_pieces_from_the_page_cache_or_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    for size in [5000usize, 70_000, 300] {
        log.append(&batch::build(0, 0, &[&vec![b'v'; size]]), 0).unwrap();
    }
    let slice =
        log.locate(0).unwrap().unwrap().slice(usize::MAX, i64::MAX, true, Wait::ForDisk).unwrap();
    let slice = slice.unwrap();
    let whole = slice.read().unwrap();
    // Just written, so in the page cache: the read without waiting gets all of it (a kernel
    // without RWF_NOWAIT for this file system would get none, and every copy would wait on
    // the blocking pool).
    let mut cached = vec![0u8; slice.len];
    assert_eq!(slice.read_cached(0, &mut cached), slice.len);
    assert_eq!(cached, whole);
    let mut piece = vec![0u8; 1000];
    assert_eq!(slice.read_cached(4000, &mut piece), 1000);
    assert_eq!(piece, whole[4000..5000]);
    slice.read_into(slice.len - 1000, &mut piece).unwrap();
    assert_eq!(piece, whole[slice.len - 1000..]);
    // Past the slice's end: nothing read, and the blocking read says why.
    assert_eq!(slice.read_cached(slice.len - 10, &mut piece), 0);
    let error = slice.read_into(slice.len - 10, &mut piece).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

/// Drops `path`'s pages from the page cache (they must be clean: synced); false when they
/// stay, as on a file system kept in memory (tmpfs).
fn evict_from_page_cache(path: &Path) -> bool {
    let file = std::fs::File::open(path).unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let mut byte = [0u8; 1];
    let mut probe = [std::io::IoSliceMut::new(&mut byte)];
    rustix::io::preadv2(&file, &mut probe, 0, rustix::io::ReadWriteFlags::NOWAIT).is_err()
}

/// A fetch on an async worker walks batch headers only as far as the page cache holds them
/// (`Wait::CachedOnly`): a header that must come from the disk is `NotCached`, for the fetch
/// to walk again where it may wait, which finds the same slice.
#[test]
fn headers_not_in_the_page_cache_are_not_read_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
    for size in [70_000usize, 300, 300, 20_000, 5] {
        log.append(&batch::build(0, 0, &[&vec![b'v'; size]]), 0).unwrap();
    }
    log.sync_all().unwrap();
    let located = log.locate(1).unwrap().unwrap();
    let place = |s: sluice_log::LogSlice| (s.position, s.len, s.end_offset);
    let cached = located.slice(usize::MAX, i64::MAX, true, Wait::CachedOnly).unwrap();
    let expected = located.slice(usize::MAX, i64::MAX, true, Wait::ForDisk).unwrap();
    assert_eq!(cached.map(place), expected.clone().map(place));
    if !evict_from_page_cache(&segment_files(dir.path(), "log")[0]) {
        eprintln!("the file system keeps the segment in memory: nothing to read from the disk");
        return;
    }
    match located.slice(usize::MAX, i64::MAX, true, Wait::CachedOnly) {
        Err(sluice_log::Error::NotCached { position, .. }) => assert!(position < 80_000),
        other => panic!("expected NotCached, got {other:?}"),
    }
    let from_disk = located.slice(usize::MAX, i64::MAX, true, Wait::ForDisk).unwrap();
    assert_eq!(from_disk.map(place), expected.map(place));
}
