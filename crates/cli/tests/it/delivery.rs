//! Delivery streams end to end through `sluice up`: records produced by librdkafka land in
//! gzip objects under the seed's Hive-style prefix, exactly once, cut by time and by size.
//! Formats readable by standard tools, the Firehose API from AWS SDKs and an S3 destination
//! are covered by the Python suite (tests/e2e/python/test_delivery.py).
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::producer::FutureRecord;

use crate::support::{eventually, producer, Up};

/// Every object file under `root` (recursively), by path relative to it.
pub fn objects(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

/// The lines of a gzip object; panics on a corrupt one.
pub fn gunzip_lines(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("object readable");
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{} is not whole gzip: {e}", path.display()));
    text.lines().map(str::to_string).collect()
}

/// How many times each line appears across every object under `root`; an upload in
/// progress (object_store's staged `<name>#<n>`) is not an object yet.
pub fn line_counts(root: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for path in objects(root) {
        if path.file_name().is_some_and(|name| name.to_string_lossy().contains('#')) {
            continue;
        }
        for line in gunzip_lines(&path) {
            *counts.entry(line).or_insert(0) += 1;
        }
    }
    counts
}

const SOLUTION: &str = r#"
[broker]
listeners = "PLAINTEXT://127.0.0.1:0"
"group.initial.rebalance.delay.ms" = 0

[aws_api]
listen = "127.0.0.1:0"

[[topic]]
name = "orders"
partitions = 2

[[delivery_stream]]
name = "orders-lake"
source_topic = "orders"
prefix = "data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
error_output_prefix = "errors/!{firehose:error-output-type}/"
buffering_hints = { size_in_mbs = 1, interval_in_seconds = 1 }
append_delimiter_to_record = true

[[delivery_stream]]
name = "by-size"
source_topic = "orders"
buffering_hints = { size_in_mbs = 1, interval_in_seconds = 900 }
append_delimiter_to_record = true
"#;

fn is_key_of(relative: &str, stream: &str) -> bool {
    // data/year=YYYY/month=MM/day=dd/hour=HH/<stream>-1-YYYY-MM-dd-HH-mm-ss-<uuid>.gz
    let parts: Vec<&str> = relative.split('/').collect();
    let [data, year, month, day, hour, name] = parts.as_slice() else { return false };
    let uuid_len = 36;
    *data == "data"
        && year.len() == 9
        && year.starts_with("year=")
        && month.len() == 8
        && month.starts_with("month=")
        && day.len() == 6
        && day.starts_with("day=")
        && hour.len() == 7
        && hour.starts_with("hour=")
        && name.starts_with(&format!("{stream}-1-{}-", &year[5..]))
        && name.ends_with(".gz")
        && name.len() == stream.len() + "-1-".len() + "yyyy-MM-dd-HH-mm-ss-".len() + uuid_len + 3
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_records_land_once_in_gzip_objects_under_the_seeds_prefix_cut_by_time_and_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("solution.toml"), SOLUTION).expect("solution");
    let up = Up::start(dir.path());
    assert!(up.aws_api.is_some(), "sluice up serves the Firehose API with delivery streams");
    let producer = producer(&up.bootstrap, &[("linger.ms", "5")]);
    // 4,500 records of ~1 KiB over two partitions: however they split, some partition
    // holds more than 1 MiB, so the size-cut stream (1 MiB, 900 s) must cut by size.
    let pad = "x".repeat(1000);
    let mut sent = Vec::new();
    for i in 0..4500 {
        let line = format!(r#"{{"id":{i},"pad":"{pad}"}}"#);
        let record = FutureRecord::<(), _>::to("orders").payload(&line);
        sent.push(producer.send_result(record).expect("queued"));
    }
    for delivery in sent {
        delivery.await.expect("delivered").expect("acknowledged");
    }
    let lake = dir.path().join("data/objects/orders-lake");
    let counts = eventually(Duration::from_secs(60), || {
        let counts = line_counts(&lake);
        (counts.len() == 4500).then_some(counts)
    })
    .await
    .unwrap_or_else(|| panic!("orders-lake holds {} distinct records", line_counts(&lake).len()));
    assert!(counts.values().all(|&n| n == 1), "every record exactly once");
    for path in objects(&lake) {
        let relative = path.strip_prefix(&lake).unwrap().to_string_lossy().into_owned();
        assert!(is_key_of(&relative, "orders-lake"), "unexpected key {relative}");
    }
    // The size-cut stream: objects of at least 1 MiB of records are out long before 900 s.
    let by_size = dir.path().join("data/objects/by-size");
    let cut = eventually(Duration::from_secs(30), || {
        let objects = objects(&by_size);
        (objects.len() >= 2).then_some(objects)
    })
    .await
    .unwrap_or_else(|| {
        let log = std::fs::read_to_string(dir.path().join("sluice-up.log")).unwrap_or_default();
        panic!("by-size published no full objects without waiting for its interval:\n{log}")
    });
    for path in &cut {
        let lines = gunzip_lines(path);
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        assert!(bytes >= 1024 * 1024, "{} holds {bytes} bytes of records", path.display());
    }
    // A clean stop publishes what is buffered: then every record is there, once.
    let status = up.terminate();
    assert!(status.success(), "sluice up stops cleanly: {status}");
    let counts = line_counts(&by_size);
    assert_eq!(counts.len(), 4500);
    assert!(counts.values().all(|&n| n == 1), "every record exactly once");
}
