//! One batch, from its first invocation to the offset that may be committed: Lambda's retry
//! policy for Kafka sources.
//!
//! - A failed invocation (function error, timeout, bad or oversized response, crash) is
//!   retried with a doubling backoff, until it succeeds (MaximumRetryAttempts -1, the
//!   default) or the retries or the record age run out.
//! - BisectBatchOnFunctionError splits a failing batch in two and handles each half in turn;
//!   a split does not count as a retry, so a single poison record is isolated in
//!   log2(batch size) steps and then retried on its own.
//! - With ReportBatchItemFailures the handler names the records that failed; the records
//!   before the first of them are done, and the batch is retried from that record.
//! - Records given up on go to the on-failure destination (`kafka://topic`), one message per
//!   record: its key is the record's key, its value Lambda's invocation record for it, with
//!   the error, the attempts and where the record came from. Without a destination they are
//!   dropped, as Lambda drops them, and the drop is logged.
//!
//! The batch's end offset is returned only when every record is done; a stopping function
//! returns `None` (nothing is committed, the records are re-delivered).
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use tokio::sync::watch;

use crate::config::Function;
use crate::error::{Error, Result};
use crate::event::{Envelope, Prepared};
use crate::handler::{Failure, FailureKind, Handler};
use crate::limits::{RETRY_BACKOFF_MS_FIRST, RETRY_BACKOFF_MS_MAX};
use crate::log::{utc_timestamp, FunctionLog};
use crate::metrics::Metrics;
use crate::poller::Options;

/// Records of one partition, in offset order, to hand to the function.
pub struct Batch {
    /// The records.
    pub records: Vec<Prepared>,
}

/// What every batch of a function shares.
pub struct Invoker {
    name: String,
    function_arn: String,
    timeout: Duration,
    memory_mb: u32,
    retry_attempts_max: Option<u32>,
    record_age_max: Option<Duration>,
    bisect_on_error: bool,
    report_batch_item_failures: bool,
    destination: Option<(String, FutureProducer)>,
    handler: Arc<Handler>,
    log: Arc<FunctionLog>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
}

impl Invoker {
    /// Prepares the invoker of `function` (and its destination's producer).
    pub fn new(
        function: &Function,
        options: &Options,
        handler: Arc<Handler>,
        log: Arc<FunctionLog>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Invoker> {
        let destination = match &function.on_failure_topic {
            None => None,
            Some(topic) => {
                let mut config = ClientConfig::new();
                config
                    .set("bootstrap.servers", &options.bootstrap_servers)
                    .set("client.id", format!("sluice-function-{}-destination", function.name))
                    .set("enable.idempotence", "true")
                    .set("acks", "all");
                for (key, value) in &options.client_properties {
                    config.set(key, value);
                }
                let producer = config
                    .create()
                    .map_err(|source| Error::Kafka { function: function.name.clone(), source })?;
                Some((topic.clone(), producer))
            }
        };
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        Ok(Invoker {
            name: function.name.clone(),
            function_arn: format!(
                "arn:aws:lambda:{region}:000000000000:function:{}",
                function.name
            ),
            timeout: function.timeout,
            memory_mb: function.memory_mb,
            retry_attempts_max: function.retry_attempts_max,
            record_age_max: function.record_age_max,
            bisect_on_error: function.bisect_on_error,
            report_batch_item_failures: function.report_batch_item_failures,
            destination,
            handler,
            log,
            metrics,
            shutdown,
        })
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Invokes once and logs it as Lambda does.
    async fn invoke_once(&self, event: Vec<u8>) -> (String, std::result::Result<Vec<u8>, Failure>) {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.log.start(&request_id);
        let started = Instant::now();
        let deadline = started + self.timeout;
        let result =
            self.handler.invoke(&request_id, Bytes::from(event), deadline, &self.log).await;
        let elapsed = started.elapsed();
        if let Err(failure) = &result {
            self.log.output(
                &request_id,
                &format!("ERROR\t{}: {}", failure.kind.name(), failure.message),
            );
        }
        self.log.end(&request_id, elapsed, self.memory_mb);
        self.metrics.invoked(elapsed.as_millis() as u64, result.is_err());
        (request_id, result)
    }
}

/// Handles `batch` of `topic`-`partition`; see the module docs. Returns the offset to commit.
pub async fn handle(
    invoker: &Invoker,
    (envelope, topic, partition): (Envelope, String, i32),
    batch: Batch,
) -> Option<i64> {
    let end = batch.records.last()?.offset + 1;
    invoker.metrics.polled(batch.records.len() as u64);
    let (records, filtered): (Vec<Prepared>, Vec<Prepared>) =
        batch.records.into_iter().partition(|r| !r.filtered);
    invoker.metrics.filtered_out(filtered.len() as u64);
    if records.is_empty() {
        return Some(end);
    }
    let mut queue: VecDeque<(Vec<Prepared>, u32)> = VecDeque::from([(records, 0)]);
    while let Some((records, attempts)) = queue.pop_front() {
        let event = envelope.event(&topic, partition, &records);
        let (request_id, result) = invoker.invoke_once(event).await;
        let (failed, failure) = match result {
            Ok(_) if !invoker.report_batch_item_failures => continue,
            Ok(response) => {
                match first_failed(&response, &records) {
                    Ok(None) => continue,
                    Ok(Some(index)) => {
                        let offset = records.get(index).map_or(-1, |r| r.offset);
                        let failure = Failure {
                        kind: FailureKind::Function,
                        message: format!("the function reported record {topic}-{partition}@{offset} as failed"),
                    };
                        (records.into_iter().skip(index).collect::<Vec<_>>(), failure)
                    }
                    Err(failure) => (records, failure),
                }
            }
            Err(failure) => (records, failure),
        };
        let attempts = attempts + 1;
        if invoker.stopping() {
            return None;
        }
        if let Some(reason) = give_up(invoker, &failed, attempts, &failure) {
            if !dispose(
                invoker,
                &request_id,
                (&topic, partition),
                &failed,
                attempts,
                &failure,
                reason,
            )
            .await
            {
                return None;
            }
            continue;
        }
        if invoker.bisect_on_error && failed.len() > 1 {
            let mut first = failed;
            let second = first.split_off(first.len() / 2);
            // A split is not a retry (Lambda's bisection does not use up the retries).
            queue.push_front((second, attempts - 1));
            queue.push_front((first, attempts - 1));
            continue;
        }
        tokio::time::sleep(backoff(attempts)).await;
        queue.push_front((failed, attempts));
    }
    Some(end)
}

/// Why to stop retrying, if it is time to.
fn give_up(
    invoker: &Invoker,
    records: &[Prepared],
    attempts: u32,
    failure: &Failure,
) -> Option<&'static str> {
    if failure.kind == FailureKind::RequestTooLarge {
        return Some("PayloadTooLarge");
    }
    if let (Some(age), Some(oldest)) = (invoker.record_age_max, records.first()) {
        let now_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        if oldest.timestamp_ms >= 0 && now_ms - oldest.timestamp_ms > age.as_millis() as i64 {
            return Some("RecordAgeExceeded");
        }
    }
    match invoker.retry_attempts_max {
        // `attempts` counts the first invocation too: MaximumRetryAttempts 2 is 3 attempts.
        Some(max) if attempts > max => Some("RetryAttemptsExhausted"),
        _ => None,
    }
}

/// Sends records given up on to the destination (or drops them, logged). `false` if the
/// function is stopping before the destination took them.
async fn dispose(
    invoker: &Invoker,
    request_id: &str,
    (topic, partition): (&str, i32),
    records: &[Prepared],
    attempts: u32,
    failure: &Failure,
    condition: &str,
) -> bool {
    let first = records.first().map_or(-1, |r| r.offset);
    let last = records.last().map_or(-1, |r| r.offset);
    let Some((destination, producer)) = &invoker.destination else {
        invoker.log.output(request_id, &format!(
            "ERROR\t{condition}: dropping {} records {topic}-{partition}@{first}..={last} after {attempts} attempts (no on_failure_destination)",
            records.len()
        ));
        tracing::warn!(function = %invoker.name, topic, partition, first, last, condition, "records dropped");
        invoker.metrics.dropped(records.len() as u64);
        return true;
    };
    for record in records {
        let body = invocation_record(
            invoker,
            request_id,
            (topic, partition),
            record,
            attempts,
            failure,
            condition,
        );
        let parsed: serde_json::Value = serde_json::from_slice(&record.json).unwrap_or_default();
        let key = parsed.get("key").and_then(|k| k.as_str()).and_then(|k| BASE64.decode(k).ok());
        let mut tries = 0u32;
        loop {
            let mut message = FutureRecord::<Vec<u8>, Vec<u8>>::to(destination).payload(&body);
            if let Some(key) = &key {
                message = message.key(key);
            }
            match producer.send(message, Duration::from_secs(30)).await {
                Ok(_) => break,
                Err((error, _)) => {
                    tries += 1;
                    tracing::warn!(function = %invoker.name, destination, %error, "on-failure destination write failed; retrying");
                    if invoker.stopping() {
                        return false;
                    }
                    tokio::time::sleep(backoff(tries)).await;
                }
            }
        }
    }
    invoker.log.output(request_id, &format!(
        "ERROR\t{condition}: {} records {topic}-{partition}@{first}..={last} sent to kafka://{destination} after {attempts} attempts",
        records.len()
    ));
    invoker.metrics.dead_lettered(records.len() as u64);
    true
}

/// Lambda's invocation record for one record given up on, with the record as a one-record
/// event in `payload`.
fn invocation_record(
    invoker: &Invoker,
    request_id: &str,
    (topic, partition): (&str, i32),
    record: &Prepared,
    attempts: u32,
    failure: &Failure,
    condition: &str,
) -> Vec<u8> {
    let record_json: serde_json::Value = serde_json::from_slice(&record.json).unwrap_or_default();
    let body = json!({
        "requestContext": {
            "requestId": request_id,
            "functionArn": invoker.function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": utc_timestamp(SystemTime::now()),
        "errorType": failure.kind.name(),
        "errorMessage": failure.message,
        "KafkaBatchInfo": {
            "batchSize": 1,
            "topic": topic,
            "partition": partition,
            "startOffset": record.offset,
            "endOffset": record.offset,
        },
        "payload": {
            "records": { format!("{topic}-{partition}"): [record_json] },
        },
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// ReportBatchItemFailures: the index of the first record the response names as failed, or
/// `None` if it names none. A response naming a record not in the batch, or not shaped as
/// Lambda documents, fails the whole batch.
fn first_failed(
    response: &[u8],
    records: &[Prepared],
) -> std::result::Result<Option<usize>, Failure> {
    let bad = |why: String| Failure { kind: FailureKind::BadResponse, message: why };
    let value: serde_json::Value =
        serde_json::from_slice(response).map_err(|e| bad(e.to_string()))?;
    let failures = match value.get("batchItemFailures") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(items)) => items,
        Some(other) => return Err(bad(format!("batchItemFailures must be a list, got {other}"))),
    };
    let mut first: Option<usize> = None;
    for item in failures {
        let identifier = item.get("itemIdentifier");
        let offset = match identifier {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => {
                s.rsplit(['@', '-', ':']).next().and_then(|o| o.parse().ok())
            }
            Some(serde_json::Value::Object(o)) => o
                .get("offset")
                .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))),
            _ => None,
        };
        let index = offset.and_then(|offset| records.iter().position(|r| r.offset == offset));
        let Some(index) = index else {
            return Err(bad(format!(
                "itemIdentifier {} names no record of the batch",
                identifier.cloned().unwrap_or_default()
            )));
        };
        first = Some(first.map_or(index, |f| f.min(index)));
    }
    Ok(first)
}

/// The wait before retry `attempts` (1 is the first retry).
fn backoff(attempts: u32) -> Duration {
    let ms = RETRY_BACKOFF_MS_FIRST.saturating_mul(1u64 << attempts.saturating_sub(1).min(16));
    Duration::from_millis(ms.min(RETRY_BACKOFF_MS_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(offsets: &[i64]) -> Vec<Prepared> {
        offsets
            .iter()
            .map(|&offset| Prepared {
                offset,
                timestamp_ms: 0,
                json: b"{}".to_vec(),
                filtered: false,
            })
            .collect()
    }

    #[test]
    fn reported_failures_name_the_first_failed_record() {
        let batch = records(&[10, 11, 12]);
        assert_eq!(first_failed(b"{}", &batch).unwrap(), None);
        assert_eq!(first_failed(br#"{"batchItemFailures": []}"#, &batch).unwrap(), None);
        let two = br#"{"batchItemFailures": [{"itemIdentifier": 12}, {"itemIdentifier": "11"}]}"#;
        assert_eq!(first_failed(two, &batch).unwrap(), Some(1));
        let unknown = br#"{"batchItemFailures": [{"itemIdentifier": 99}]}"#;
        assert_eq!(first_failed(unknown, &batch).unwrap_err().kind, FailureKind::BadResponse);
    }

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(30), Duration::from_millis(RETRY_BACKOFF_MS_MAX));
    }
}
