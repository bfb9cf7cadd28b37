//! A delivery stream on a full disk: `sluice up` keeps its data folder (the broker's log,
//! its metadata store and the local object folder) on a small `tmpfs`, which fills up for
//! real while acknowledged records wait in a round.
//!
//! What a user needs then, and what this checks:
//! - the stream says why it cannot publish (the operating system's "No space left on
//!   device"), keeps retrying, leaves no partial object behind, and commits nothing it has
//!   not published;
//! - once there is room again, every acknowledged record is published, exactly once,
//!   without a restart, and a restart afterwards publishes nothing twice.
use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use sluice_testkit::SmallDisk;

use crate::delivery::{line_counts, objects};
use crate::support::{eventually, producer, Up};

/// The data folder's disk: the store (about 1.5 MiB) and the records fit with room to spare.
const DISK_BYTES: u64 = 32 << 20;
/// A file that takes the disk's last bytes.
const BALLAST: &str = "ballast";
/// Records per phase, about 300 bytes each.
const PHASE_RECORDS: usize = 500;
/// How long the disk stays full once the stream said it cannot publish.
const FULL_FOR: Duration = Duration::from_secs(3);
/// How long a stream may take to publish what it holds once it can.
const PUBLISH_LIMIT: Duration = Duration::from_secs(60);

/// The interval gives the test time to fill the disk between a round's first record and
/// its publish, on a loaded machine too.
const SOLUTION: &str = r#"
[broker]
listeners = "PLAINTEXT://127.0.0.1:0"
"group.initial.rebalance.delay.ms" = 0

[aws_api]
listen = "127.0.0.1:0"

[[topic]]
name = "events"
partitions = 2

[[delivery_stream]]
name = "events-lake"
source_topic = "events"
buffering_hints = { size_in_mbs = 1, interval_in_seconds = 10 }
append_delimiter_to_record = true
"#;

/// Produces `PHASE_RECORDS` records tagged `phase` and returns them, all acknowledged.
async fn produce_phase(bootstrap: &str, phase: &str) -> BTreeSet<String> {
    let producer = producer(bootstrap, &[("linger.ms", "5")]);
    let pad = "x".repeat(250);
    let mut deliveries = Vec::with_capacity(PHASE_RECORDS);
    for n in 0..PHASE_RECORDS {
        let line = format!(r#"{{"id":"{phase}-{n:04}","pad":"{pad}"}}"#);
        let record = FutureRecord::<(), _>::to("events").payload(&line);
        deliveries.push((line.clone(), producer.send_result(record).expect("queued")));
    }
    let mut acknowledged = BTreeSet::new();
    for (line, delivery) in deliveries {
        delivery.await.expect("delivered").expect("acknowledged while there is room");
        acknowledged.insert(line);
    }
    acknowledged
}

fn log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("sluice-up.log")).unwrap_or_default()
}

/// Waits until the lake holds every record of `expected`; then checks each is there once.
async fn assert_published_once(dir: &std::path::Path, expected: &BTreeSet<String>, when: &str) {
    let lake = dir.join("data/objects/events-lake");
    let published = eventually(PUBLISH_LIMIT, || {
        let counts = line_counts(&lake);
        expected.iter().all(|line| counts.contains_key(line)).then_some(counts)
    })
    .await;
    let Some(counts) = published else {
        let missing = expected.iter().filter(|l| !line_counts(&lake).contains_key(*l)).count();
        panic!("{when}: {missing} acknowledged records never published; log:\n{}", log(dir));
    };
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "{when}: records published twice: {twice:?}");
    let unknown = counts.keys().filter(|line| !expected.contains(*line)).count();
    assert_eq!(unknown, 0, "{when}: records nobody produced");
}

/// Once the stream has stopped, no partial upload is left.
fn assert_no_partial_uploads(dir: &std::path::Path) {
    for path in objects(&dir.join("data/objects/events-lake")) {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        assert!(!name.contains('#'), "a partial upload is left: {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_holds_delivery_back_and_loses_nothing_once_there_is_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = SmallDisk::mount(DISK_BYTES).expect("a small tmpfs mounts");
    std::os::unix::fs::symlink(disk.path(), dir.path().join("data")).expect("data on the tmpfs");
    std::fs::write(dir.path().join("solution.toml"), SOLUTION).expect("solution");
    let up = Up::start(dir.path());

    let mut acknowledged = produce_phase(&up.bootstrap, "room").await;
    assert_published_once(dir.path(), &acknowledged, "with room").await;

    // Acknowledged records wait in a round for its interval; the disk fills before it ends.
    let waiting = produce_phase(&up.bootstrap, "full").await;
    disk.fill(BALLAST).expect("the ballast fills the disk");
    acknowledged.extend(waiting.iter().cloned());
    let said = eventually(Duration::from_secs(20), || {
        let log = log(dir.path());
        log.lines()
            .any(|l| {
                l.contains("cannot publish an object") && l.contains("No space left on device")
            })
            .then_some(())
    })
    .await;
    assert!(
        said.is_some(),
        "no line says why the stream cannot publish; log:\n{}",
        log(dir.path())
    );
    // Full for a while: the stream retries with backoff and publishes nothing meanwhile.
    tokio::time::sleep(FULL_FOR).await;
    let lake = dir.path().join("data/objects/events-lake");
    let counts = line_counts(&lake);
    assert!(
        waiting.iter().all(|line| !counts.contains_key(line)),
        "records were published on a full disk (the test filled it too late)"
    );

    // Room again: the stream publishes without a restart, then commits.
    std::fs::remove_file(disk.path().join(BALLAST)).expect("the ballast goes");
    assert_published_once(dir.path(), &acknowledged, "with room again").await;

    // A restart resumes from the committed offsets: nothing published twice, and new
    // records still flow.
    let status = up.terminate();
    assert!(status.success(), "sluice up stops cleanly: {status}; log:\n{}", log(dir.path()));
    assert_no_partial_uploads(dir.path());
    let up = Up::start(dir.path());
    acknowledged.extend(produce_phase(&up.bootstrap, "after").await);
    assert_published_once(dir.path(), &acknowledged, "after a restart").await;
    let status = up.terminate();
    assert!(status.success(), "sluice up stops cleanly: {status}");
    assert_no_partial_uploads(dir.path());
}
