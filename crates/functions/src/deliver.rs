//! The builtin `deliver` handler: what the seed's forwarding function does, sending every
//! record of the event to a delivery stream with Firehose's `PutRecordBatch`.
//!
//! The stream and endpoint come from the function's environment, as a Lambda function's
//! would: `DELIVERY_STREAM_NAME`, and `AWS_ENDPOINT_URL_FIREHOSE` or `AWS_ENDPOINT_URL`
//! (`sluice up` sets all three to its own Firehose API). `DELIVER_RECORD_FORMAT` picks what
//! is sent per record: `envelope` (the default: the record as the event carries it, one
//! JSON line) or `value` (the record's decoded value, as is).
//!
//! Records go in calls of at most 500 records and 4 MiB. Records a call reports failed are
//! sent again, up to `DELIVER_ATTEMPTS_MAX` times with backoff; what still fails fails the
//! invocation, and Lambda's retry policy takes over (at least once: a retried batch sends
//! its records again).
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use crate::handler::{Failure, FailureKind};

/// Firehose's PutRecordBatch limits.
const BATCH_RECORDS_MAX: usize = 500;
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Calls per group of records before the invocation fails.
const DELIVER_ATTEMPTS_MAX: u32 = 5;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// The `deliver` handler's settings.
pub struct Deliverer {
    client: reqwest::Client,
    endpoint: String,
    stream: String,
    value_only: bool,
}

impl Deliverer {
    /// Reads the settings from the function's environment; `Err` says what is missing.
    pub fn new(
        environment: &std::collections::BTreeMap<String, String>,
    ) -> Result<Deliverer, String> {
        let get = |key: &str| environment.get(key).cloned().or_else(|| std::env::var(key).ok());
        let endpoint = get("AWS_ENDPOINT_URL_FIREHOSE").or_else(|| get("AWS_ENDPOINT_URL")).ok_or(
            "set AWS_ENDPOINT_URL_FIREHOSE (the Firehose API, e.g. http://127.0.0.1:4566)",
        )?;
        let stream = get("DELIVERY_STREAM_NAME").ok_or("set DELIVERY_STREAM_NAME")?;
        let value_only = match get("DELIVER_RECORD_FORMAT").as_deref() {
            None | Some("envelope") => false,
            Some("value") => true,
            Some(other) => {
                return Err(format!("DELIVER_RECORD_FORMAT={other}: use envelope or value"))
            }
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
        Ok(Deliverer { client, endpoint, stream, value_only })
    }

    /// Sends every record of `event`; the response is a count, like the log handler's.
    pub async fn invoke(&self, event: &[u8], deadline: Instant) -> Result<Vec<u8>, Failure> {
        let failure = |message: String| Failure { kind: FailureKind::Function, message };
        let parsed: Value = serde_json::from_slice(event)
            .map_err(|e| failure(format!("event is not JSON: {e}")))?;
        let mut data: Vec<String> = Vec::new();
        let batches = parsed.get("records").and_then(|r| r.as_object());
        for records in batches.into_iter().flat_map(|b| b.values()) {
            for record in records.as_array().into_iter().flatten() {
                let bytes = if self.value_only {
                    let value = record.get("value").and_then(|v| v.as_str()).unwrap_or_default();
                    BASE64
                        .decode(value)
                        .map_err(|e| failure(format!("a record's value is not base64: {e}")))?
                } else {
                    let mut line = record.to_string().into_bytes();
                    line.push(b'\n');
                    line
                };
                data.push(BASE64.encode(bytes));
            }
        }
        let count = data.len();
        let mut start = 0;
        while start < data.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < data.len()
                && end - start < BATCH_RECORDS_MAX
                && bytes + data[end].len() * 3 / 4 <= BATCH_BYTES_MAX
            {
                bytes += data[end].len() * 3 / 4;
                end += 1;
            }
            // A single record over the call limit still goes alone: Firehose names the error.
            let end = end.max(start + 1);
            self.put_all(&data[start..end], deadline).await.map_err(failure)?;
            start = end;
        }
        Ok(serde_json::to_vec(&format!("Successfully delivered {count} records."))
            .unwrap_or_default())
    }

    /// Puts records until none fails, or gives up.
    async fn put_all(&self, records: &[String], deadline: Instant) -> Result<(), String> {
        let mut pending: Vec<&String> = records.iter().collect();
        let mut backoff = BACKOFF_FIRST;
        for attempt in 1..=DELIVER_ATTEMPTS_MAX {
            let body = json!({
                "DeliveryStreamName": self.stream,
                "Records": pending.iter().map(|d| json!({"Data": d})).collect::<Vec<_>>(),
            });
            let response = self
                .client
                .post(&self.endpoint)
                .header("Content-Type", "application/x-amz-json-1.1")
                .header("X-Amz-Target", "Firehose_20150804.PutRecordBatch")
                .body(body.to_string())
                .send()
                .await;
            let last_error = match response {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if !status.is_success() {
                        // A rejected call (unknown stream, over a limit) will not get better.
                        return Err(format!(
                            "PutRecordBatch to {} failed: {status}: {text}",
                            self.stream
                        ));
                    }
                    let responses =
                        parsed["RequestResponses"].as_array().cloned().unwrap_or_default();
                    if responses.len() != pending.len() {
                        format!(
                            "PutRecordBatch answered {} entries for {} records",
                            responses.len(),
                            pending.len()
                        )
                    } else {
                        let failed: Vec<&String> = pending
                            .iter()
                            .zip(&responses)
                            .filter(|(_, r)| r.get("ErrorCode").is_some())
                            .map(|(d, _)| *d)
                            .collect();
                        if failed.is_empty() {
                            return Ok(());
                        }
                        let first = responses.iter().find(|r| r.get("ErrorCode").is_some());
                        let message = format!(
                            "{} of {} records failed: {}",
                            failed.len(),
                            pending.len(),
                            first.map(|r| r.to_string()).unwrap_or_default()
                        );
                        pending = failed;
                        message
                    }
                }
                Err(error) => {
                    format!("cannot reach the Firehose API at {}: {error}", self.endpoint)
                }
            };
            if attempt == DELIVER_ATTEMPTS_MAX || Instant::now() + backoff >= deadline {
                return Err(last_error);
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        Err("unreachable: the loop returns".into())
    }
}
