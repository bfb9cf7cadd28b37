//! Consumer functions (`sluice function run`) against the real broker, with a Python
//! `command` handler: Lambda's event shape on the wire, batching, retries that keep offsets
//! in place, bisection, ReportBatchItemFailures and the on-failure destination.
//!
//! The handler (`HANDLER_PY`) appends one JSON line per invocation to a results file (the
//! records it saw: partition, offset, key, value, headers) and then behaves as its `MODE`
//! says, so each test reads back exactly what the function was given.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use sluice_testkit::BrokerProcess;

use crate::support::{
    client_config, create_topic, eventually, producer, read_all, start_broker, SLUICE_BIN,
};

/// The test handler: records what it got, then succeeds or fails as `MODE` says.
const HANDLER_PY: &str = r#"
import base64, json, os, sys
event = json.load(sys.stdin)
records = [r for batch in event["records"].values() for r in batch]
def text(b64):
    return None if b64 is None else base64.b64decode(b64).decode()
seen = [{"partition": r["partition"], "offset": r["offset"], "key": text(r.get("key")),
         "value": text(r.get("value")), "headers": r["headers"], "timestampType": r["timestampType"]}
        for r in records]
with open(os.environ["RESULTS"], "a") as f:
    f.write(json.dumps({"eventSource": event["eventSource"], "keys": list(event["records"]),
                        "records": seen}) + "\n")
mode = os.environ.get("MODE", "ok")
if mode == "garbage":
    print("this is not JSON")
    sys.exit(0)
if mode == "exit-early":
    os._exit(2)
if mode == "hang":
    import time
    time.sleep(3600)
if mode == "big":
    sys.stdout.write(json.dumps({"padding": "x" * (7 * 1024 * 1024)}))
    sys.exit(0)
if mode == "fail-until-marker" and not os.path.exists(os.environ["MARKER"]):
    print("the marker is not there yet", file=sys.stderr)
    sys.exit(1)
if mode == "poison" and any("poison" in (r["value"] or "") for r in seen):
    raise SystemExit("poison record in the batch")
if mode == "report":
    state = os.environ["STATE"]
    done = set(open(state).read().split()) if os.path.exists(state) else set()
    bad = [r for r in seen if (r["value"] or "").startswith("bad") and r["value"] not in done]
    with open(state, "a") as f:
        for r in bad:
            f.write(r["value"] + "\n")
    # Lambda's Kafka item identifier: {"partition": "<topic>-<partition>", "offset": N}.
    failures = [{"itemIdentifier": {"partition": f"items-{r['partition']}", "offset": r["offset"]}}
                for r in bad]
    print(json.dumps({"batchItemFailures": failures}))
    sys.exit(0)
print(json.dumps({"handled": len(seen)}))
"#;

/// A `sluice function run` child process, stopped when dropped.
pub struct FunctionProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl FunctionProcess {
    /// Writes the handler and a solution file with one function (`settings` are extra TOML
    /// lines of its `[[function]]` table) and starts `sluice function run`.
    fn start(
        broker: &BrokerProcess,
        topic: &str,
        settings: &str,
        env: &[(&str, &str)],
    ) -> FunctionProcess {
        let runtime = "runtime = \"command\"\ncommand = [\"python3\", \"handler.py\"]";
        FunctionProcess::start_with(broker, topic, &format!("{runtime}\n{settings}"), env)
    }

    /// Like `start`, with the runtime settings in `settings` too.
    pub fn start_with(
        broker: &BrokerProcess,
        topic: &str,
        settings: &str,
        env: &[(&str, &str)],
    ) -> FunctionProcess {
        FunctionProcess::start_with_position(broker, topic, "TRIM_HORIZON", settings, env)
    }

    /// Like `start_with`, from `position`.
    pub fn start_with_position(
        broker: &BrokerProcess,
        topic: &str,
        position: &str,
        settings: &str,
        env: &[(&str, &str)],
    ) -> FunctionProcess {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("handler.py"), HANDLER_PY).expect("write the handler");
        let mut environment = format!("RESULTS = {:?}\n", dir.path().join("results.jsonl"));
        for (key, value) in env {
            environment.push_str(&format!("{key} = {value:?}\n"));
        }
        let solution = format!(
            "[[function]]\nname = \"f\"\ntopics = [\"{topic}\"]\ncode_dir = {:?}\n\
             starting_position = \"{position}\"\n{settings}\n[function.environment]\n{environment}",
            dir.path()
        );
        let config = dir.path().join("solution.toml");
        std::fs::write(&config, solution).expect("write the solution");
        let child = Command::new(SLUICE_BIN)
            .args(["function", "run", "--config"])
            .arg(&config)
            .args(["--bootstrap-server", &broker.bootstrap(), "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sluice function run starts");
        FunctionProcess { child, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Every invocation the handler recorded, in order.
    pub fn invocations(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path("results.jsonl")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("handler lines are JSON"))
            .collect()
    }

    /// The function's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("functions/f.log")).unwrap_or_default()
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values of every record the handler saw, over all invocations.
fn values(invocations: &[Value]) -> Vec<String> {
    invocations
        .iter()
        .flat_map(|i| i["records"].as_array().cloned().unwrap_or_default())
        .map(|r| r["value"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Produces `values` to partition `partition` of `topic`, each with key `k-<value>` and a
/// header `h` = the value.
pub async fn produce(broker: &BrokerProcess, topic: &str, partition: i32, values: &[String]) {
    let producer = producer(&broker.bootstrap(), &[]);
    for value in values {
        let key = format!("k-{value}");
        let headers =
            OwnedHeaders::new().insert(Header { key: "h", value: Some(value.as_bytes()) });
        let record =
            FutureRecord::to(topic).partition(partition).key(&key).payload(value).headers(headers);
        producer.send(record, Duration::from_secs(10)).await.expect("the broker acknowledges");
    }
}

/// The group's committed offsets of `topic`'s `partitions`.
pub fn committed(
    broker: &BrokerProcess,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let consumer: StreamConsumer =
        client_config(&broker.bootstrap()).set("group.id", group).create().expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("OffsetFetch");
    committed
        .elements()
        .iter()
        .map(|e| (e.partition(), if let Offset::Offset(o) = e.offset() { o } else { -1 }))
        .collect()
}

pub const GROUP: &str = "sluice-function-f";
pub const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_command_handler_gets_lambda_events_in_batches_and_offsets_are_committed() {
    let broker = start_broker();
    create_topic(&broker, "orders", 2, &[]).await;
    let first: Vec<String> = (0..15).map(|i| format!("a{i:02}")).collect();
    let second: Vec<String> = (0..10).map(|i| format!("b{i:02}")).collect();
    produce(&broker, "orders", 0, &first).await;
    produce(&broker, "orders", 1, &second).await;
    let function = FunctionProcess::start(
        &broker,
        "orders",
        "batch_size = 4\nmaximum_batching_window_in_seconds = 0.2",
        &[],
    );
    let seen = eventually(WAIT, || {
        let invocations = function.invocations();
        (values(&invocations).len() >= 25).then_some(invocations)
    })
    .await
    .unwrap_or_else(|| panic!("25 records handled; log:\n{}", function.log()));
    let mut all = values(&seen);
    all.sort();
    let mut expected: Vec<String> = first.iter().chain(&second).cloned().collect();
    expected.sort();
    assert_eq!(all, expected, "each record once: nothing failed, so nothing is retried");
    for invocation in &seen {
        assert_eq!(invocation["eventSource"], "aws:kafka");
        let records = invocation["records"].as_array().expect("records");
        assert!((1..=4).contains(&records.len()), "batch_size 4: {invocation}");
        let partition = records[0]["partition"].as_i64().expect("partition");
        assert_eq!(invocation["keys"], serde_json::json!([format!("orders-{partition}")]));
        for record in records {
            let value = record["value"].as_str().expect("value");
            assert_eq!(record["key"], format!("k-{value}"), "base64 key decodes");
            let header: Vec<u8> =
                serde_json::from_value(record["headers"][0]["h"].clone()).expect("bytes");
            assert_eq!(header, value.as_bytes(), "headers are byte arrays");
            assert_eq!(record["timestampType"], "CREATE_TIME");
        }
    }
    let offsets = eventually(WAIT, || {
        let offsets = committed(&broker, GROUP, "orders", 2);
        (offsets == BTreeMap::from([(0, 15), (1, 10)])).then_some(offsets)
    })
    .await;
    assert!(
        offsets.is_some(),
        "committed after each batch: {:?}",
        committed(&broker, GROUP, "orders", 2)
    );
}

#[tokio::test]
async fn a_failing_handler_gets_the_same_batch_again_and_offsets_do_not_move() {
    let broker = start_broker();
    create_topic(&broker, "jobs", 1, &[]).await;
    let records: Vec<String> = (0..3).map(|i| format!("j{i}")).collect();
    produce(&broker, "jobs", 0, &records).await;
    let function = FunctionProcess::start(
        &broker,
        "jobs",
        "batch_size = 10\nmaximum_batching_window_in_seconds = 0.1",
        // The marker is never created: every attempt fails.
        &[("MODE", "fail-until-marker"), ("MARKER", "never-created")],
    );
    let retried = eventually(WAIT, || {
        let invocations = function.invocations();
        (invocations.len() >= 3).then_some(invocations)
    })
    .await
    .unwrap_or_else(|| panic!("retries; log:\n{}", function.log()));
    for invocation in &retried {
        assert_eq!(values(std::slice::from_ref(invocation)), records, "the same batch each time");
    }
    assert_eq!(committed(&broker, GROUP, "jobs", 1)[&0], -1, "nothing committed while failing");
    assert!(function.log().contains("exited with exit status: 1"), "{}", function.log());
}

#[tokio::test]
async fn retries_run_out_into_the_on_failure_topic_with_bisection_isolating_the_poison() {
    let broker = start_broker();
    create_topic(&broker, "events", 1, &[]).await;
    create_topic(&broker, "events-dlq", 1, &[]).await;
    let records: Vec<String> =
        (0..8).map(|i| if i == 5 { "poison-5".to_string() } else { format!("e{i}") }).collect();
    produce(&broker, "events", 0, &records).await;
    let function = FunctionProcess::start(
        &broker,
        "events",
        "batch_size = 8\nmaximum_batching_window_in_seconds = 0.5\nmaximum_retry_attempts = 1\n\
         bisect_batch_on_function_error = true\non_failure_destination = \"kafka://events-dlq\"",
        &[("MODE", "poison")],
    );
    let done = eventually(WAIT, || {
        let offsets = committed(&broker, GROUP, "events", 1);
        (offsets[&0] == 8).then_some(())
    })
    .await;
    assert!(done.is_some(), "all 8 committed; log:\n{}", function.log());
    let dead = read_all(&broker, "events-dlq", 1, Duration::from_secs(30)).await;
    let dead = dead.get(&0).cloned().unwrap_or_default();
    assert_eq!(dead.len(), 1, "only the poison record: {dead:?}\n{}", function.log());
    let letter: Value =
        serde_json::from_slice(dead[0].value.as_deref().expect("a value")).expect("JSON");
    assert_eq!(dead[0].key.as_deref(), Some(&b"k-poison-5"[..]), "the record's own key");
    assert_eq!(letter["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(letter["requestContext"]["approximateInvokeCount"], 2, "1 retry = 2 attempts");
    assert_eq!(letter["KafkaBatchInfo"]["topic"], "events");
    assert_eq!(letter["KafkaBatchInfo"]["startOffset"], 5);
    assert!(letter["errorMessage"].as_str().unwrap_or_default().contains("poison"), "{letter}");
    let handled: Vec<String> = values(&function.invocations());
    for good in records.iter().filter(|v| !v.contains("poison")) {
        assert!(handled.contains(good), "{good} was handled successfully in some batch");
    }
}

#[tokio::test]
async fn reported_item_failures_commit_up_to_the_first_failed_record() {
    let broker = start_broker();
    create_topic(&broker, "items", 1, &[]).await;
    let records: Vec<String> =
        ["i0", "i1", "bad-2", "i3", "bad-4", "i5"].map(String::from).to_vec();
    produce(&broker, "items", 0, &records).await;
    let function = FunctionProcess::start(
        &broker,
        "items",
        "batch_size = 10\nmaximum_batching_window_in_seconds = 0.5\n\
         function_response_types = [\"ReportBatchItemFailures\"]",
        // Relative to the handler's working folder, the test's temp dir.
        &[("MODE", "report"), ("STATE", "reported.txt")],
    );
    let done =
        eventually(WAIT, || (committed(&broker, GROUP, "items", 1)[&0] == 6).then_some(())).await;
    assert!(done.is_some(), "all committed; log:\n{}", function.log());
    let starts: Vec<i64> = function
        .invocations()
        .iter()
        .map(|i| i["records"][0]["offset"].as_i64().expect("offset"))
        .collect();
    // The handler fails each bad record once: the whole batch (bad-2 and bad-4 reported),
    // then from bad-2 (it succeeds now; bad-4 was reported already, so it succeeds too).
    assert_eq!(starts.first(), Some(&0), "{starts:?}");
    assert!(starts.contains(&2), "retried from the first failed record: {starts:?}");
    assert!(
        !starts.iter().any(|s| *s == 1 || *s == 3),
        "never from a record that succeeded: {starts:?}"
    );
}

/// A misbehaving command handler gets a clear error in the log and the retry policy; with
/// no retries and no destination the records are dropped (logged) and the partition moves on.
async fn misbehaving_command(mode: &str, settings: &str, expected: &str) {
    let broker = start_broker();
    create_topic(&broker, "bad", 1, &[]).await;
    produce(&broker, "bad", 0, &["r0".to_string(), "r1".to_string()]).await;
    let settings =
        format!("maximum_retry_attempts = 0\nmaximum_batching_window_in_seconds = 0.2\n{settings}");
    let function = FunctionProcess::start(&broker, "bad", &settings, &[("MODE", mode)]);
    let moved =
        eventually(WAIT, || (committed(&broker, GROUP, "bad", 1)[&0] == 2).then_some(())).await;
    let log = function.log();
    assert!(moved.is_some(), "{mode}: the partition moves on; log:\n{log}");
    assert!(log.contains(expected), "{mode}: the log says {expected:?}:\n{log}");
    assert!(log.contains("RetryAttemptsExhausted: dropping 2 records bad-0@0..=1"), "{log}");
}

#[tokio::test]
async fn a_command_handler_printing_garbage_is_a_bad_response() {
    misbehaving_command("garbage", "", "Function.BadResponse: the response is not JSON").await;
}

#[tokio::test]
async fn a_command_handler_exiting_early_is_a_function_error() {
    misbehaving_command("exit-early", "", "Function.Error: the handler exited with exit status: 2")
        .await;
}

#[tokio::test]
async fn a_command_handler_hanging_past_the_timeout_is_stopped() {
    misbehaving_command("hang", "timeout = 2", "Sandbox.Timedout: Task timed out after").await;
}

#[tokio::test]
async fn a_command_handler_answering_7_mb_is_refused() {
    misbehaving_command("big", "", "Function.ResponseSizeTooLarge").await;
}

#[tokio::test]
async fn filter_criteria_drop_non_matching_records_and_still_commit_them() {
    let broker = start_broker();
    create_topic(&broker, "orders", 1, &[]).await;
    let records: Vec<String> = [
        r#"{"status": "active", "amount": 5}"#,
        r#"{"status": "done", "amount": 7}"#,
        "not json at all",
        r#"{"status": "active", "amount": 500}"#,
        r#"{"status": "pending", "amount": 9}"#,
    ]
    .map(String::from)
    .to_vec();
    produce(&broker, "orders", 0, &records).await;
    let settings = r#"maximum_batching_window_in_seconds = 0.2

[function.filter_criteria]
filters = [
  { pattern = '{"value": {"status": ["active"], "amount": [{"numeric": ["<", 100]}]}}' },
  { pattern = '{"value": {"status": [{"prefix": "pend"}]}}' },
]"#;
    let function = FunctionProcess::start(&broker, "orders", settings, &[]);
    let done =
        eventually(WAIT, || (committed(&broker, GROUP, "orders", 1)[&0] == 5).then_some(())).await;
    assert!(done.is_some(), "every offset committed, filtered or not; log:\n{}", function.log());
    let seen = values(&function.invocations());
    assert_eq!(seen, vec![records[0].clone(), records[4].clone()], "only the matching records");
}

#[tokio::test]
async fn at_timestamp_starts_at_the_first_record_at_or_after_the_time() {
    let broker = start_broker();
    create_topic(&broker, "history", 1, &[]).await;
    let before: Vec<String> = (0..3).map(|i| format!("old-{i}")).collect();
    produce(&broker, "history", 0, &before).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after: Vec<String> = (0..4).map(|i| format!("new-{i}")).collect();
    produce(&broker, "history", 0, &after).await;
    // `start` sets TRIM_HORIZON; a later key in the same table would be a duplicate, so the
    // runtime settings are spelled out here.
    let settings = format!(
        "runtime = \"command\"\ncommand = [\"python3\", \"handler.py\"]\n\
         maximum_batching_window_in_seconds = 0.2\nstarting_position_timestamp = {at}"
    );
    let function = start_at_timestamp(&broker, "history", &settings);
    let done =
        eventually(WAIT, || (committed(&broker, GROUP, "history", 1)[&0] == 7).then_some(())).await;
    assert!(done.is_some(), "committed to the end; log:\n{}", function.log());
    assert_eq!(values(&function.invocations()), after, "only the records at or after the time");
}

/// `FunctionProcess::start_with` with AT_TIMESTAMP instead of TRIM_HORIZON.
fn start_at_timestamp(broker: &BrokerProcess, topic: &str, settings: &str) -> FunctionProcess {
    FunctionProcess::start_with_position(broker, topic, "AT_TIMESTAMP", settings, &[])
}

#[tokio::test]
async fn the_batching_window_gathers_records_into_one_invocation() {
    let broker = start_broker();
    create_topic(&broker, "slow", 1, &[]).await;
    // batch_size 100 is never reached: the 1.5 s window decides when the batch goes.
    let function = FunctionProcess::start(
        &broker,
        "slow",
        "batch_size = 100\nmaximum_batching_window_in_seconds = 1.5",
        &[],
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // joined and waiting
    let records: Vec<String> = (0..5).map(|i| format!("w{i}")).collect();
    let sent = std::time::Instant::now();
    produce(&broker, "slow", 0, &records).await;
    let seen = eventually(WAIT, || {
        let invocations = function.invocations();
        (values(&invocations).len() >= 5).then_some(invocations)
    })
    .await
    .unwrap_or_else(|| panic!("5 records handled; log:\n{}", function.log()));
    let waited = sent.elapsed();
    assert_eq!(seen.len(), 1, "one invocation for records arriving within the window: {seen:?}");
    assert!(waited >= Duration::from_millis(1200), "the window was waited out: {waited:?}");
}

#[tokio::test]
async fn a_shell_script_is_a_command_handler() {
    let broker = start_broker();
    create_topic(&broker, "sh", 1, &[]).await;
    produce(&broker, "sh", 0, &["s0".to_string(), "s1".to_string()]).await;
    // A POSIX shell handler: the event on stdin, the answer on stdout.
    let script = r#"event=$(cat); printf '%s\n' "$event" >> events.jsonl; echo '{"ok": true}'"#;
    let settings = format!(
        "runtime = \"command\"\ncommand = [\"sh\", \"-c\", {script:?}]\n\
         maximum_batching_window_in_seconds = 0.2"
    );
    let function = FunctionProcess::start_with(&broker, "sh", &settings, &[]);
    let done =
        eventually(WAIT, || (committed(&broker, GROUP, "sh", 1)[&0] == 2).then_some(())).await;
    assert!(done.is_some(), "committed; log:\n{}", function.log());
    let events = std::fs::read_to_string(function.path("events.jsonl")).expect("the script ran");
    let first: Value = serde_json::from_str(events.lines().next().expect("a line")).expect("JSON");
    assert_eq!(first["eventSource"], "aws:kafka");
    assert_eq!(first["records"]["sh-0"][0]["value"], "czA=", "base64 of s0");
}
