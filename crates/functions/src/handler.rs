//! Invoking a function: one event in, one response or one [`Failure`] out.
//!
//! - `builtin` handlers run in sluice (`log`: what the seed's consumer does);
//! - `command` starts the handler's argv per invocation, writes the event to its stdin,
//!   and reads the response from its stdout; a non-zero exit is a function error;
//! - `lambda` speaks the Lambda Runtime API to a process started once (`runtime_api`).
//!
//! Whatever the handler does (print garbage, exit early, hang, answer 7 MB), the result is
//! a [`Failure`] naming what happened, which the retry policy handles, and a line in the
//! function's log: never a panic, a stuck partition or unbounded memory.
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::config::{Builtin, Function, Runtime};
use crate::limits::{HANDLER_OUTPUT_BYTES_MAX, PAYLOAD_BYTES_MAX};
use crate::log::FunctionLog;
use crate::runtime_api::RuntimeApi;

/// Why an invocation failed. Every kind goes through the same retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure, as Lambda's `errorType` would say.
    pub kind: FailureKind,
    /// A message for the log and the on-failure destination.
    pub message: String,
}

/// The kinds of [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The handler reported an error (it threw, or exited non-zero).
    Function,
    /// It ran past the function's timeout and was stopped.
    Timeout,
    /// Its response is not JSON, or not the shape the function's settings require.
    BadResponse,
    /// Its response is over Lambda's 6 MB limit.
    ResponseTooLarge,
    /// The event is over Lambda's 6 MB limit (one record larger than the limit).
    RequestTooLarge,
    /// The handler process died or could not be started.
    Crashed,
}

impl FailureKind {
    /// The name used in logs and destination records.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Function => "Function.Error",
            FailureKind::Timeout => "Sandbox.Timedout",
            FailureKind::BadResponse => "Function.BadResponse",
            FailureKind::ResponseTooLarge => "Function.ResponseSizeTooLarge",
            FailureKind::RequestTooLarge => "RequestTooLarge",
            FailureKind::Crashed => "Runtime.ExitError",
        }
    }
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }
}

/// A function's handler, ready to invoke.
pub enum Handler {
    /// `builtin` (`log`).
    Builtin(Builtin),
    /// `builtin` `deliver`, with its settings, or why they are missing.
    Deliver(Result<crate::deliver::Deliverer, String>),
    /// `command`.
    Command(CommandHandler),
    /// `lambda`.
    Lambda(RuntimeApi),
}

/// A `command` handler.
pub struct CommandHandler {
    command: Vec<String>,
    code_dir: PathBuf,
    environment: Vec<(String, String)>,
}

impl Handler {
    /// The handler `function` names; a `lambda` runtime's processes log to `log`.
    pub fn new(function: &Function, log: Arc<FunctionLog>) -> Handler {
        match &function.runtime {
            Runtime::Builtin(Builtin::Deliver) => {
                Handler::Deliver(crate::deliver::Deliverer::new(&function.environment))
            }
            Runtime::Builtin(builtin) => Handler::Builtin(*builtin),
            Runtime::Lambda { .. } => Handler::Lambda(RuntimeApi::new(function, log)),
            Runtime::Command { command } => Handler::Command(CommandHandler {
                command: command.clone(),
                code_dir: function.code_dir.clone(),
                environment: function
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }),
        }
    }

    /// Invokes the handler with `event` until `deadline`.
    pub async fn invoke(
        &self,
        request_id: &str,
        event: Bytes,
        deadline: Instant,
        log: &FunctionLog,
    ) -> Result<Vec<u8>, Failure> {
        if event.len() > PAYLOAD_BYTES_MAX {
            return Err(Failure::new(
                FailureKind::RequestTooLarge,
                format!(
                    "the event is {} bytes, over Lambda's {PAYLOAD_BYTES_MAX}-byte limit (one \
                     record larger than the limit cannot be delivered)",
                    event.len()
                ),
            ));
        }
        let response = match self {
            Handler::Builtin(_) => log_records(request_id, &event, log),
            Handler::Deliver(Ok(deliverer)) => deliverer.invoke(&event, deadline).await,
            Handler::Deliver(Err(missing)) => {
                Err(Failure::new(FailureKind::Function, format!("deliver: {missing}")))
            }
            Handler::Command(command) => command.invoke(request_id, &event, deadline, log).await,
            Handler::Lambda(api) => api.invoke(request_id, event, deadline).await,
        }?;
        check_response(response)
    }
}

/// Lambda's limit and JSON shape apply to every response: an empty response is `null`.
fn check_response(response: Vec<u8>) -> Result<Vec<u8>, Failure> {
    if response.len() > PAYLOAD_BYTES_MAX {
        return Err(Failure::new(
            FailureKind::ResponseTooLarge,
            format!(
                "the response is over Lambda's {PAYLOAD_BYTES_MAX}-byte limit ({} bytes or more)",
                response.len()
            ),
        ));
    }
    if response.iter().all(u8::is_ascii_whitespace) {
        return Ok(b"null".to_vec());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(&response) {
        Ok(_) => Ok(response),
        Err(error) => {
            let start = String::from_utf8_lossy(&response[..response.len().min(80)]).into_owned();
            Err(Failure::new(
                FailureKind::BadResponse,
                format!("the response is not JSON ({error}); it starts with {start:?}"),
            ))
        }
    }
}

/// The seed's consumer: log every record's decoded value, return how many there were.
fn log_records(request_id: &str, event: &[u8], log: &FunctionLog) -> Result<Vec<u8>, Failure> {
    let parsed: serde_json::Value = serde_json::from_slice(event)
        .map_err(|e| Failure::new(FailureKind::Function, format!("event is not JSON: {e}")))?;
    let mut count = 0usize;
    let batches = parsed.get("records").and_then(|r| r.as_object());
    for records in batches.into_iter().flat_map(|b| b.values()) {
        for record in records.as_array().into_iter().flatten() {
            count += 1;
            let value = record.get("value").and_then(|v| v.as_str()).unwrap_or_default();
            let decoded = BASE64.decode(value).unwrap_or_default();
            log.output(request_id, &format!("INFO\t{}", String::from_utf8_lossy(&decoded)));
        }
    }
    let message = format!("Successfully processed {count} records.");
    Ok(serde_json::to_vec(&message).unwrap_or_default())
}

impl CommandHandler {
    async fn invoke(
        &self,
        request_id: &str,
        event: &[u8],
        deadline: Instant,
        log: &FunctionLog,
    ) -> Result<Vec<u8>, Failure> {
        let (program, args) = self.command.split_first().ok_or_else(|| {
            Failure::new(FailureKind::Crashed, "the function has no command".to_string())
        })?;
        let mut child = Command::new(program)
            .args(args)
            .current_dir(&self.code_dir)
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_REQUEST_ID", request_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Failure::new(FailureKind::Crashed, format!("cannot start {program:?}: {e}"))
            })?;
        let mut stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let run = async {
            // A handler may exit without reading its input: a broken pipe is not an error.
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(event).await;
            }
            drop(stdin);
            let (out, err, status) =
                tokio::join!(read_bounded(stdout), read_bounded(stderr), child.wait());
            (out, err, status)
        };
        let timeout = deadline.saturating_duration_since(Instant::now());
        let Ok((out, err, status)) = tokio::time::timeout(timeout, run).await else {
            // Dropping the future dropped `child`, and kill_on_drop stops the process.
            return Err(Failure::new(
                FailureKind::Timeout,
                format!("Task timed out after {:.2} seconds", timeout.as_secs_f64()),
            ));
        };
        let err = String::from_utf8_lossy(&err).into_owned();
        if !err.is_empty() {
            log.output(request_id, err.trim_end());
        }
        match status {
            Ok(status) if status.success() => Ok(out),
            Ok(status) => {
                let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
                Err(Failure::new(
                    FailureKind::Function,
                    format!("the handler exited with {status}: {last}"),
                ))
            }
            Err(error) => Err(Failure::new(FailureKind::Crashed, format!("wait failed: {error}"))),
        }
    }
}

/// Reads a pipe to its end, keeping at most `HANDLER_OUTPUT_BYTES_MAX` bytes (the rest is
/// read and dropped, so the handler never blocks on a full pipe).
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut pipe) = pipe else { return Vec::new() };
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = HANDLER_OUTPUT_BYTES_MAX.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_must_be_json_within_the_limit() {
        assert_eq!(check_response(b" \n".to_vec()).unwrap(), b"null");
        assert!(check_response(b"{\"a\":1}".to_vec()).is_ok());
        let garbage = check_response(b"hello".to_vec()).unwrap_err();
        assert_eq!(garbage.kind, FailureKind::BadResponse);
        let big = check_response(vec![b' '; PAYLOAD_BYTES_MAX + 1]).unwrap_err();
        assert_eq!(big.kind, FailureKind::ResponseTooLarge);
    }
}
