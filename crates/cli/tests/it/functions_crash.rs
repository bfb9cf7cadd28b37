//! SIGKILL of `sluice up` (broker and function in one process) in the middle of batches, ten
//! times: after the last restart every record was handled at least once, none was skipped,
//! and the function's offsets reach the end. An audit over record ids: the handler appends
//! the ids it was given before it answers, and a kill at any point may repeat ids, never lose
//! one.
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::producer::FutureRecord;

use crate::support::{producer, Up};

const RECORDS_PER_RUN: usize = 60;
const KILLS: usize = 10;

/// Appends the ids of the batch to `handled.txt`, then takes a moment (so kills land in
/// the middle of invocations too).
const HANDLER_PY: &str = r#"
import base64, json, sys, time
event = json.load(sys.stdin)
ids = [base64.b64decode(r["value"]).decode() for b in event["records"].values() for r in b]
with open("handled.txt", "a") as f:
    f.write("\n".join(ids) + "\n")
time.sleep(0.2)
print(json.dumps({"handled": len(ids)}))
"#;

const SOLUTION: &str = r#"
[broker]
listeners = "PLAINTEXT://127.0.0.1:0"
# One member: no reason to wait 3 s for others to join the first generation.
"group.initial.rebalance.delay.ms" = 0

[[topic]]
name = "audit"
partitions = 3

[[function]]
name = "auditor"
topics = ["audit"]
runtime = "command"
command = ["python3", "handler.py"]
starting_position = "TRIM_HORIZON"
batch_size = 7
maximum_batching_window_in_seconds = 0.05
"#;

fn handled(dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(dir.join("handled.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_batch_ten_times_skips_no_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("handler.py"), HANDLER_PY).expect("handler");
    std::fs::write(dir.path().join("solution.toml"), SOLUTION).expect("solution");
    // Each run gets fresh records, produced through it (acknowledged = synced), so every
    // kill lands while the function has work: between batches, mid-invocation, or between
    // an invocation and its commit.
    let mut rng = rand::thread_rng();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for kill in 0..KILLS {
        let running = Up::start(dir.path());
        let producer = producer(&running.bootstrap, &[]);
        for i in 0..RECORDS_PER_RUN {
            let id = format!("id-{kill:02}-{i:03}");
            let record = FutureRecord::<(), _>::to("audit").payload(&id);
            producer.send(record, Duration::from_secs(10)).await.expect("acknowledged");
            ids.insert(id);
        }
        drop(producer);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..2500))).await;
        running.kill9();
        let seen = handled(dir.path()).len();
        eprintln!("kill {kill}: {seen} of {} ids handled so far", ids.len());
    }
    // The last run goes until every id is handled (and then a little longer, so the last
    // commits land).
    let last = Up::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(120);
    while handled(dir.path()).len() < ids.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last.kill9();
    let seen = handled(dir.path());
    let missing: Vec<&String> = ids.difference(&seen).collect();
    assert!(missing.is_empty(), "{} ids never handled: {missing:?}", missing.len());
    assert!(seen.is_subset(&ids), "no id the test did not produce");
}
