//! `runtime = "lambda"`: a handler written for AWS Lambda with the official Rust runtime
//! (`lambda_runtime`, the `lambda_handler` example of this crate) runs unchanged against
//! sluice's Runtime API: started once and reused, its errors retried, and a crash, a hang or
//! a 7 MB answer failing clearly without sticking the partition.
use std::path::PathBuf;

use crate::functions::{committed, produce, FunctionProcess, GROUP, WAIT};
use crate::support::{create_topic, eventually, read_all, start_broker, SLUICE_BIN};

/// The example handler Cargo built next to the `sluice` binary.
fn handler_binary() -> PathBuf {
    let debug = std::path::Path::new(SLUICE_BIN).parent().expect("target/debug");
    let path = debug.join("examples").join("lambda_handler");
    assert!(
        path.exists(),
        "{} is built by cargo build --all-targets (or cargo test)",
        path.display()
    );
    path
}

fn lambda_settings(extra: &str) -> String {
    format!(
        "runtime = \"lambda\"\ncommand = [{:?}]\nhandler = \"bootstrap\"\n{extra}",
        handler_binary().display().to_string()
    )
}

#[tokio::test]
async fn a_lambda_runtime_handler_is_started_once_and_reused() {
    let broker = start_broker();
    create_topic(&broker, "clicks", 1, &[]).await;
    let records: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
    produce(&broker, "clicks", 0, &records).await;
    let settings = lambda_settings("batch_size = 5\nmaximum_batching_window_in_seconds = 0.1");
    let function = FunctionProcess::start_with(&broker, "clicks", &settings, &[]);
    let done =
        eventually(WAIT, || (committed(&broker, GROUP, "clicks", 1)[&0] == 30).then_some(())).await;
    let log = function.log();
    assert!(done.is_some(), "30 records committed; log:\n{log}");
    assert_eq!(log.matches("INIT_START").count(), 1, "one process, reused:\n{log}");
    assert!(log.matches("START RequestId").count() >= 6, "batches of 5:\n{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test]
async fn a_lambda_handler_error_is_retried_then_sent_to_the_destination() {
    let broker = start_broker();
    create_topic(&broker, "pay", 1, &[]).await;
    create_topic(&broker, "pay-dlq", 1, &[]).await;
    let records: Vec<String> = ["p0", "p1", "poison", "p3"].map(String::from).to_vec();
    produce(&broker, "pay", 0, &records).await;
    let settings = lambda_settings(
        "maximum_retry_attempts = 2\nbisect_batch_on_function_error = true\n\
         on_failure_destination = \"kafka://pay-dlq\"\nmaximum_batching_window_in_seconds = 0.3",
    );
    // The handler compares base64 values: "poison" is cG9pc29u.
    let env = [("HANDLER_MODE", "fail-on"), ("HANDLER_FAIL_ON", "cG9pc29u")];
    let function = FunctionProcess::start_with(&broker, "pay", &settings, &env);
    let done =
        eventually(WAIT, || (committed(&broker, GROUP, "pay", 1)[&0] == 4).then_some(())).await;
    let log = function.log();
    assert!(done.is_some(), "all committed; log:\n{log}");
    let dead = read_all(&broker, "pay-dlq", 1, std::time::Duration::from_secs(30)).await;
    let dead = dead.get(&0).cloned().unwrap_or_default();
    assert_eq!(dead.len(), 1, "only the poison record went to the destination:\n{log}");
    assert_eq!(dead[0].key.as_deref(), Some(&b"k-poison"[..]));
    assert!(log.contains("Function.Error: "), "the runtime's error report is logged:\n{log}");
    assert!(log.contains("poison record cG9pc29u"), "{log}");
}

/// A misbehaving Lambda handler fails its invocation clearly, is replaced by a fresh
/// process, and the partition moves on (no retries, no destination: dropped, logged).
async fn misbehaving_lambda(mode: &str, settings: &str, expected: &str) {
    let broker = start_broker();
    create_topic(&broker, "bad", 1, &[]).await;
    produce(&broker, "bad", 0, &["r0".to_string()]).await;
    produce(&broker, "bad", 0, &["r1".to_string()]).await;
    let settings = lambda_settings(&format!(
        "maximum_retry_attempts = 0\nbatch_size = 1\nmaximum_batching_window_in_seconds = 0\n{settings}"
    ));
    let function =
        FunctionProcess::start_with(&broker, "bad", &settings, &[("HANDLER_MODE", mode)]);
    let moved =
        eventually(WAIT, || (committed(&broker, GROUP, "bad", 1)[&0] == 2).then_some(())).await;
    let log = function.log();
    assert!(moved.is_some(), "{mode}: the partition moves on; log:\n{log}");
    assert!(log.contains(expected), "{mode}: the log says {expected:?}:\n{log}");
    assert!(log.contains("RetryAttemptsExhausted: dropping 1 records bad-0@0..=0"), "{log}");
}

#[tokio::test]
async fn a_crashing_lambda_handler_is_restarted() {
    misbehaving_lambda("exit", "", "Runtime.ExitError: the runtime process exited").await;
}

#[tokio::test]
async fn a_hanging_lambda_handler_is_stopped_at_the_timeout() {
    misbehaving_lambda("hang", "timeout = 2", "Sandbox.Timedout: Task timed out after").await;
}

#[tokio::test]
async fn a_lambda_handler_answering_7_mb_gets_413() {
    misbehaving_lambda(
        "big",
        "",
        "Function.ResponseSizeTooLarge: Exceeded maximum allowed payload",
    )
    .await;
}
