//! A consumer function written for AWS Lambda with the official Rust runtime,
//! `lambda_runtime`, unchanged: sluice's tests and benchmarks run it under
//! `runtime = "lambda"`.
//!
//! It answers `{"records": N}` for an event of N records. `HANDLER_MODE` makes it misbehave
//! for the tests: `fail-on` fails an event holding a record whose base64 value is
//! `HANDLER_FAIL_ON` (an `Err`, which the runtime reports to `/invocation/{id}/error`),
//! `hang` sleeps an hour, `exit` exits the process mid-invocation, `big` answers 7 MB.
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let batches = event.payload["records"].as_object().cloned().unwrap_or_default();
    let records: Vec<&Value> =
        batches.values().flat_map(|batch| batch.as_array().into_iter().flatten()).collect();
    match std::env::var("HANDLER_MODE").unwrap_or_default().as_str() {
        "fail-on" => {
            let poison = std::env::var("HANDLER_FAIL_ON").unwrap_or_default();
            if records.iter().any(|record| record["value"] == poison.as_str()) {
                return Err(format!("poison record {poison}").into());
            }
        }
        "hang" => tokio::time::sleep(std::time::Duration::from_secs(3600)).await,
        "exit" => std::process::exit(3),
        "big" => return Ok(json!({ "padding": "x".repeat(7 * 1024 * 1024) })),
        _ => {}
    }
    Ok(json!({ "records": records.len() }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
