//! SIGKILL of `sluice up` (broker and delivery stream in one process) at random moments
//! during delivery, ten times: after the last run has caught up, the union of published
//! objects holds every acknowledged record exactly once, and every object is whole. The
//! stream uses dynamic partitioning over three partitions, so a round holds several objects
//! and kills land between their publishes and before their commit.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::producer::FutureRecord;

use crate::delivery::{line_counts, objects};
use crate::support::{producer, Up};

/// Records of ~300 bytes produced at once, acknowledged before the next batch.
const BATCH_RECORDS: usize = 200;
const KILLS: usize = 10;

const SOLUTION: &str = r#"
[broker]
listeners = "PLAINTEXT://127.0.0.1:0"
"group.initial.rebalance.delay.ms" = 0

[aws_api]
listen = "127.0.0.1:0"

[[topic]]
name = "audit"
partitions = 3

[[delivery_stream]]
name = "audit-lake"
source_topic = "audit"
prefix = "bucket=!{partitionKeyFromQuery:bucket}/!{timestamp:yyyy/MM/dd/HH}/"
error_output_prefix = "errors/!{firehose:error-output-type}/"
dynamic_partitioning = true
metadata_extraction_query = "{bucket: .bucket}"
buffering_hints = { size_in_mbs = 1, interval_in_seconds = 0 }
append_delimiter_to_record = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_delivery_ten_times_publishes_every_record_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("solution.toml"), SOLUTION).expect("solution");
    let lake = dir.path().join("data/objects/audit-lake");
    let mut rng = rand::thread_rng();
    let (mut sent, mut acknowledged) = (BTreeSet::new(), BTreeSet::new());
    for kill in 0..KILLS {
        let running = Up::start(dir.path());
        // Records keep arriving while the stream delivers, and the kill lands wherever the
        // stream is: compressing, publishing one of a round's objects, or committing.
        let producer =
            producer(&running.bootstrap, &[("linger.ms", "5"), ("message.timeout.ms", "3000")]);
        let kill_after = Duration::from_millis(rng.gen_range(300..2000));
        let started = Instant::now();
        let pad = "x".repeat(300);
        let mut batch = 0;
        while started.elapsed() < kill_after {
            let mut deliveries = Vec::with_capacity(BATCH_RECORDS);
            for i in 0..BATCH_RECORDS {
                let bucket = ["a", "b", "c"][i % 3];
                let line = format!(
                    r#"{{"id":"{kill:02}-{batch:04}-{i:03}","bucket":"{bucket}","pad":"{pad}"}}"#
                );
                let record = FutureRecord::<(), _>::to("audit").payload(&line);
                deliveries.push((line.clone(), producer.send_result(record).expect("queued")));
                sent.insert(line);
            }
            for (line, delivery) in deliveries {
                if matches!(delivery.await, Ok(Ok(_))) {
                    acknowledged.insert(line);
                }
            }
            batch += 1;
        }
        running.kill9();
        drop(producer);
        eprintln!("kill {kill} after {kill_after:?}: {} records acknowledged", acknowledged.len());
    }
    let last = Up::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(120);
    while line_counts(&lake).len() < acknowledged.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last.kill9();
    for path in objects(&lake) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains('#'), "a partial upload is visible: {}", path.display());
    }
    // line_counts gunzips every object, so a torn object fails here.
    let counts = line_counts(&lake);
    let seen: BTreeSet<String> = counts.keys().cloned().collect();
    let missing: Vec<&String> = acknowledged.difference(&seen).collect();
    assert!(missing.is_empty(), "{} records never published: {missing:?}", missing.len());
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(duplicated.is_empty(), "{} records published twice: {duplicated:?}", duplicated.len());
    assert!(seen.is_subset(&sent), "no record the test did not produce");
}
