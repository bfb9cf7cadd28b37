//! A `[[function]]` of the solution file: [`FunctionConfig`] as written, and [`Function`],
//! what [`FunctionConfig::validate`] makes of it and the running code sees.
//!
//! Settings carry the names of Lambda's event source mapping, in snake_case
//! (`batch_size` is BatchSize, `maximum_batching_window_in_seconds` is
//! MaximumBatchingWindowInSeconds, ...), with Lambda's defaults and ranges, so a user moving
//! a function between Lambda and sluice translates nothing. Every setting is checked at
//! start-up; an error names the function, the setting, the value and the range.
//!
//! ```toml
//! [[function]]
//! name = "msk-consumer"
//! topics = ["MyTopic"]
//! runtime = "command"
//! command = ["python3", "handler.py"]
//! batch_size = 100
//! starting_position = "TRIM_HORIZON"
//! maximum_retry_attempts = 3
//! on_failure_destination = "kafka://MyTopic-dlq"
//! ```
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::filter::Filters;
use crate::limits::{
    BATCHING_WINDOW_MS_DEFAULT, BATCHING_WINDOW_SECS_MAX, BATCH_SIZE_DEFAULT, BATCH_SIZE_MAX,
    CONCURRENCY_DEFAULT, CONCURRENCY_MAX, FUNCTION_NAME_BYTES_MAX, MEMORY_MB_DEFAULT,
    MEMORY_MB_MAX, MEMORY_MB_MIN, RECORD_AGE_SECS_MAX, RECORD_AGE_SECS_MIN, RETRY_ATTEMPTS_MAX,
    RETRY_ATTEMPTS_WITH_DESTINATION, TIMEOUT_SECS_DEFAULT, TIMEOUT_SECS_MAX,
};

/// One `[[function]]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// The function's name: letters, digits, `-` and `_`, up to 64 (Lambda's FunctionName).
    pub name: String,
    /// Topics to consume (Lambda allows one; several are accepted here).
    pub topics: Vec<String>,
    /// `runtime`: `lambda` (the Lambda Runtime API), `command` or `builtin`.
    pub runtime: String,
    /// The argv of a `lambda` or `command` handler process.
    #[serde(default)]
    pub command: Vec<String>,
    /// The builtin handler (`log`), or Lambda's `_HANDLER` for a `lambda` runtime.
    pub handler: Option<String>,
    /// The handler's working folder and `LAMBDA_TASK_ROOT` (default: the current folder).
    pub code_dir: Option<PathBuf>,
    /// Environment variables of the handler process.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// BatchSize: records per invocation at most, 1 to 10000 (default 100).
    pub batch_size: Option<i64>,
    /// MaximumBatchingWindowInSeconds: how long to gather records, 0 to 300 (default 0.5).
    pub maximum_batching_window_in_seconds: Option<f64>,
    /// StartingPosition: `LATEST` (default), `TRIM_HORIZON` or `AT_TIMESTAMP`.
    pub starting_position: Option<String>,
    /// StartingPositionTimestamp for `AT_TIMESTAMP`: Unix seconds (fractions allowed).
    pub starting_position_timestamp: Option<f64>,
    /// The consumer group id (default `sluice-function-<name>`).
    pub consumer_group_id: Option<String>,
    /// FilterCriteria: `{ filters = [{ pattern = '{"value": ...}' }] }`.
    pub filter_criteria: Option<FilterCriteriaConfig>,
    /// Timeout of one invocation, seconds, 1 to 900 (default 300).
    pub timeout: Option<i64>,
    /// MemorySize, MB, 128 to 10240 (default 128): told to the handler, not enforced.
    pub memory_size: Option<i64>,
    /// MaximumRetryAttempts: -1 (until success, the default) or 0 to 10000.
    pub maximum_retry_attempts: Option<i64>,
    /// MaximumRecordAgeInSeconds: -1 (the default) or 60 to 604800.
    pub maximum_record_age_in_seconds: Option<i64>,
    /// BisectBatchOnFunctionError.
    pub bisect_batch_on_function_error: Option<bool>,
    /// FunctionResponseTypes: `[]` or `["ReportBatchItemFailures"]`.
    #[serde(default)]
    pub function_response_types: Vec<String>,
    /// DestinationConfig.OnFailure: `kafka://TOPIC`.
    pub on_failure_destination: Option<String>,
    /// Batches in flight at once, each for a different partition (default 10).
    pub maximum_concurrency: Option<i64>,
    /// The event's `eventSource`: `aws:kafka` (default, the MSK shape) or `SelfManagedKafka`.
    pub event_source: Option<String>,
}

/// FilterCriteria as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterCriteriaConfig {
    /// Filters; a record passes when any matches.
    #[serde(default)]
    pub filters: Vec<FilterConfig>,
}

/// One filter as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Lambda's filter pattern, JSON text.
    pub pattern: String,
}

/// A validated function: what the poller runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// The name.
    pub name: String,
    /// Topics to consume, at least one.
    pub topics: Vec<String>,
    /// How the function is invoked.
    pub runtime: Runtime,
    /// The handler's working folder.
    pub code_dir: PathBuf,
    /// Environment variables of the handler process.
    pub environment: BTreeMap<String, String>,
    /// Records per invocation at most, `1..=BATCH_SIZE_MAX`.
    pub batch_size: usize,
    /// How long a batch gathers records before it is sent anyway.
    pub batching_window: Duration,
    /// Where a partition without a committed offset starts.
    pub starting_position: StartingPosition,
    /// The consumer group.
    pub consumer_group_id: String,
    /// Records that match none of these are not invoked (their offsets are committed).
    pub filters: Filters,
    /// One invocation's limit.
    pub timeout: Duration,
    /// Reported as AWS_LAMBDA_FUNCTION_MEMORY_SIZE.
    pub memory_mb: u32,
    /// Retries after the first attempt; `None` retries until success.
    pub retry_attempts_max: Option<u32>,
    /// Records older than this are not retried any more; `None` is no limit.
    pub record_age_max: Option<Duration>,
    /// Split a failing batch in two and retry each half.
    pub bisect_on_error: bool,
    /// The handler reports failed records (ReportBatchItemFailures).
    pub report_batch_item_failures: bool,
    /// The topic failed records go to.
    pub on_failure_topic: Option<String>,
    /// Batches in flight at once, `1..=CONCURRENCY_MAX`.
    pub concurrency: usize,
    /// The event's shape.
    pub event_source: EventSource,
}

/// How a function is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// A process speaking the Lambda Runtime API (aws-lambda-ric, awslambdaric,
    /// lambda_runtime), started once and reused.
    Lambda {
        /// Its argv.
        command: Vec<String>,
        /// `_HANDLER`.
        handler: String,
    },
    /// A process per invocation: the event on stdin, the response on stdout.
    Command {
        /// Its argv.
        command: Vec<String>,
    },
    /// A handler built into sluice.
    Builtin(Builtin),
}

/// The builtin handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// Logs each record's decoded value and returns a count, as the seed's consumer does.
    Log,
    /// Sends each record to a delivery stream (PutRecordBatch), as the seed's forwarding
    /// function does.
    Deliver,
}

/// StartingPosition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartingPosition {
    /// Only records written after the function starts.
    Latest,
    /// The oldest record kept.
    TrimHorizon,
    /// The first record at or after this time, Unix milliseconds.
    AtTimestamp(i64),
}

/// The event's `eventSource`, which also decides whether it has an `eventSourceArn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// `aws:kafka`: Amazon MSK's shape.
    Msk,
    /// `SelfManagedKafka`.
    SelfManaged,
}

impl FunctionConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<Function> {
        let name = self.name.clone();
        check_name(&name)?;
        let invalid = |setting: &str, value: String, reason: &str| Error::InvalidConfig {
            function: name.clone(),
            setting: setting.to_string(),
            value,
            reason: reason.to_string(),
        };
        if self.topics.is_empty() {
            return Err(invalid("topics", "[]".into(), "name at least one topic"));
        }
        if let Some(bad) = self.topics.iter().find(|t| t.is_empty()) {
            return Err(invalid("topics", format!("{bad:?}"), "topic names are not empty"));
        }
        let runtime = self.runtime(&invalid)?;
        let batch_size =
            range(self.batch_size, BATCH_SIZE_DEFAULT as i64, 1, BATCH_SIZE_MAX as i64)
                .map_err(|v| invalid("batch_size", v, "use 1 to 10000 (Lambda's BatchSize)"))?;
        let window_secs = self
            .maximum_batching_window_in_seconds
            .unwrap_or(BATCHING_WINDOW_MS_DEFAULT as f64 / 1000.0);
        if !(0.0..=BATCHING_WINDOW_SECS_MAX).contains(&window_secs) {
            let reason = "use 0 to 300 seconds (Lambda's MaximumBatchingWindowInSeconds)";
            return Err(invalid(
                "maximum_batching_window_in_seconds",
                window_secs.to_string(),
                reason,
            ));
        }
        let starting_position = self.starting_position(&invalid)?;
        let timeout = range(self.timeout, TIMEOUT_SECS_DEFAULT as i64, 1, TIMEOUT_SECS_MAX as i64)
            .map_err(|v| invalid("timeout", v, "use 1 to 900 seconds (Lambda's Timeout)"))?;
        let memory_mb = range(
            self.memory_size,
            i64::from(MEMORY_MB_DEFAULT),
            i64::from(MEMORY_MB_MIN),
            i64::from(MEMORY_MB_MAX),
        )
        .map_err(|v| invalid("memory_size", v, "use 128 to 10240 MB (Lambda's MemorySize)"))?;
        let on_failure_topic = match &self.on_failure_destination {
            None => None,
            Some(url) => match url.strip_prefix("kafka://") {
                Some(topic) if !topic.is_empty() && !topic.contains('/') => Some(topic.to_string()),
                _ => {
                    let reason = "use kafka://TOPIC (a topic on the same cluster)";
                    return Err(invalid("on_failure_destination", url.clone(), reason));
                }
            },
        };
        let retries = self.maximum_retry_attempts.unwrap_or(-1);
        let retry_attempts_max = match retries {
            // Lambda caps "until success" at 10 retries when failed records have somewhere
            // to go.
            -1 if on_failure_topic.is_some() => Some(RETRY_ATTEMPTS_WITH_DESTINATION),
            -1 => None,
            n if (0..=RETRY_ATTEMPTS_MAX).contains(&n) => Some(n as u32),
            n => {
                let reason = "use -1 (until success) or 0 to 10000 (Lambda's MaximumRetryAttempts)";
                return Err(invalid("maximum_retry_attempts", n.to_string(), reason));
            }
        };
        let age = self.maximum_record_age_in_seconds.unwrap_or(-1);
        let record_age_max = match age {
            -1 => None,
            n if (RECORD_AGE_SECS_MIN..=RECORD_AGE_SECS_MAX).contains(&n) => {
                Some(Duration::from_secs(n as u64))
            }
            n => {
                let reason = "use -1 or 60 to 604800 seconds (Lambda's MaximumRecordAgeInSeconds)";
                return Err(invalid("maximum_record_age_in_seconds", n.to_string(), reason));
            }
        };
        let mut report_batch_item_failures = false;
        for kind in &self.function_response_types {
            if kind != "ReportBatchItemFailures" {
                let reason = "the only function response type is ReportBatchItemFailures";
                return Err(invalid("function_response_types", kind.clone(), reason));
            }
            report_batch_item_failures = true;
        }
        let concurrency =
            range(self.maximum_concurrency, CONCURRENCY_DEFAULT as i64, 1, CONCURRENCY_MAX as i64)
                .map_err(|v| invalid("maximum_concurrency", v, "use 1 to 1000"))?;
        let event_source = match self.event_source.as_deref() {
            None | Some("aws:kafka") => EventSource::Msk,
            Some("SelfManagedKafka") => EventSource::SelfManaged,
            Some(other) => {
                let reason = "use aws:kafka (Amazon MSK's event) or SelfManagedKafka";
                return Err(invalid("event_source", other.to_string(), reason));
            }
        };
        let patterns: Vec<String> = self
            .filter_criteria
            .iter()
            .flat_map(|c| c.filters.iter().map(|f| f.pattern.clone()))
            .collect();
        let filters = Filters::parse(&patterns).map_err(|reason: String| {
            invalid("filter_criteria", format!("{patterns:?}"), &reason)
        })?;
        let consumer_group_id = match &self.consumer_group_id {
            Some(id) if id.is_empty() => {
                return Err(invalid("consumer_group_id", "\"\"".into(), "omit it or name a group"))
            }
            Some(id) => id.clone(),
            None => format!("sluice-function-{name}"),
        };
        Ok(Function {
            topics: self.topics.clone(),
            runtime,
            code_dir: self.code_dir.clone().unwrap_or_else(|| PathBuf::from(".")),
            environment: self.environment.clone(),
            batch_size: batch_size as usize,
            batching_window: Duration::from_secs_f64(window_secs),
            starting_position,
            consumer_group_id,
            filters,
            timeout: Duration::from_secs(timeout as u64),
            memory_mb: memory_mb as u32,
            retry_attempts_max,
            record_age_max,
            bisect_on_error: self.bisect_batch_on_function_error.unwrap_or(false),
            report_batch_item_failures,
            on_failure_topic,
            concurrency: concurrency as usize,
            event_source,
            name,
        })
    }

    fn runtime(&self, invalid: &dyn Fn(&str, String, &str) -> Error) -> Result<Runtime> {
        let command = || {
            if self.command.is_empty() || self.command.iter().any(String::is_empty) {
                let reason =
                    "give the handler's argv, e.g. command = [\"python3\", \"handler.py\"]";
                return Err(invalid("command", format!("{:?}", self.command), reason));
            }
            Ok(self.command.clone())
        };
        match self.runtime.as_str() {
            "lambda" => {
                let handler = self.handler.clone().unwrap_or_default();
                if handler.is_empty() {
                    let reason = "name the handler, as Lambda's _HANDLER (e.g. index.handler)";
                    return Err(invalid("handler", handler, reason));
                }
                Ok(Runtime::Lambda { command: command()?, handler })
            }
            "command" => Ok(Runtime::Command { command: command()? }),
            "builtin" => match self.handler.as_deref() {
                Some("log") => Ok(Runtime::Builtin(Builtin::Log)),
                Some("deliver") => Ok(Runtime::Builtin(Builtin::Deliver)),
                other => Err(invalid(
                    "handler",
                    other.unwrap_or("(none)").to_string(),
                    "the builtin handlers are: log, deliver",
                )),
            },
            other => Err(invalid("runtime", other.to_string(), "use lambda, command or builtin")),
        }
    }

    fn starting_position(
        &self,
        invalid: &dyn Fn(&str, String, &str) -> Error,
    ) -> Result<StartingPosition> {
        let position = self.starting_position.as_deref().unwrap_or("LATEST");
        let timestamp = self.starting_position_timestamp;
        match (position, timestamp) {
            ("LATEST", None) => Ok(StartingPosition::Latest),
            ("TRIM_HORIZON", None) => Ok(StartingPosition::TrimHorizon),
            ("AT_TIMESTAMP", Some(secs)) if secs.is_finite() && secs >= 0.0 => {
                Ok(StartingPosition::AtTimestamp((secs * 1000.0) as i64))
            }
            ("AT_TIMESTAMP", other) => Err(invalid(
                "starting_position_timestamp",
                format!("{other:?}"),
                "AT_TIMESTAMP needs starting_position_timestamp, in Unix seconds",
            )),
            ("LATEST" | "TRIM_HORIZON", Some(secs)) => Err(invalid(
                "starting_position_timestamp",
                secs.to_string(),
                "only AT_TIMESTAMP takes a timestamp",
            )),
            (other, _) => Err(invalid(
                "starting_position",
                other.to_string(),
                "use LATEST, TRIM_HORIZON or AT_TIMESTAMP",
            )),
        }
    }
}

/// Lambda's function name rule: 1 to 64 of letters, digits, `-` and `_`.
fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= FUNCTION_NAME_BYTES_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            function: name.to_string(),
            setting: "name".into(),
            value: format!("{name:?}"),
            reason: "use 1 to 64 letters, digits, '-' or '_' (Lambda's FunctionName)".into(),
        })
    }
}

/// `value` (or `default`) if within `min..=max`, else the value as text for the error.
fn range(value: Option<i64>, default: i64, min: i64, max: i64) -> std::result::Result<i64, String> {
    let value = value.unwrap_or(default);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Function> {
        let config: FunctionConfig = toml_like(text);
        config.validate()
    }

    /// The tests write configs as JSON (serde_json is a dependency; toml is the CLI's).
    fn toml_like(json: &str) -> FunctionConfig {
        serde_json::from_str(json).expect("test configs are valid JSON")
    }

    #[test]
    fn defaults_are_lambdas() {
        let f = parse(r#"{"name": "f", "topics": ["t"], "runtime": "builtin", "handler": "log"}"#)
            .unwrap();
        assert_eq!(f.batch_size, 100);
        assert_eq!(f.batching_window, Duration::from_millis(500));
        assert_eq!(f.starting_position, StartingPosition::Latest);
        assert_eq!(f.consumer_group_id, "sluice-function-f");
        assert_eq!(f.timeout, Duration::from_secs(300));
        assert_eq!(f.retry_attempts_max, None, "retry until success");
        assert_eq!(f.event_source, EventSource::Msk);
        assert!(!f.bisect_on_error && !f.report_batch_item_failures);
    }

    #[test]
    fn a_destination_caps_endless_retries_at_ten() {
        let f = parse(
            r#"{"name": "f", "topics": ["t"], "runtime": "builtin", "handler": "log",
                "on_failure_destination": "kafka://dlq"}"#,
        )
        .unwrap();
        assert_eq!(f.retry_attempts_max, Some(10));
        assert_eq!(f.on_failure_topic.as_deref(), Some("dlq"));
    }

    #[test]
    fn out_of_range_settings_name_the_setting_and_the_range() {
        let base = r#""name": "f", "topics": ["t"], "runtime": "builtin", "handler": "log""#;
        let cases = [
            (r#""batch_size": 10001"#, "batch_size"),
            (r#""maximum_batching_window_in_seconds": 301"#, "maximum_batching_window_in_seconds"),
            (r#""timeout": 0"#, "timeout"),
            (r#""maximum_retry_attempts": -2"#, "maximum_retry_attempts"),
            (r#""maximum_record_age_in_seconds": 59"#, "maximum_record_age_in_seconds"),
            (r#""function_response_types": ["Nope"]"#, "function_response_types"),
            (r#""on_failure_destination": "s3://bucket""#, "on_failure_destination"),
            (r#""starting_position": "AT_TIMESTAMP""#, "starting_position_timestamp"),
            (r#""starting_position": "EARLIEST""#, "starting_position"),
            (r#""event_source": "aws:kinesis""#, "event_source"),
        ];
        for (extra, setting) in cases {
            let error = parse(&format!("{{{base}, {extra}}}")).unwrap_err().to_string();
            assert!(error.contains(setting), "{extra}: {error}");
            assert!(error.contains("function f"), "{extra}: {error}");
        }
    }

    #[test]
    fn runtimes_need_their_settings() {
        let lambda =
            parse(r#"{"name": "f", "topics": ["t"], "runtime": "lambda", "command": ["node"]}"#);
        assert!(lambda.unwrap_err().to_string().contains("handler"));
        let command = parse(r#"{"name": "f", "topics": ["t"], "runtime": "command"}"#);
        assert!(command.unwrap_err().to_string().contains("command"));
        let name =
            parse(r#"{"name": "a b", "topics": ["t"], "runtime": "builtin", "handler": "log"}"#);
        assert!(name.unwrap_err().to_string().contains("FunctionName"));
        let at = parse(
            r#"{"name": "f", "topics": ["t"], "runtime": "command", "command": ["cat"],
                "starting_position": "AT_TIMESTAMP", "starting_position_timestamp": 1700000000.5}"#,
        )
        .unwrap();
        assert_eq!(at.starting_position, StartingPosition::AtTimestamp(1_700_000_000_500));
    }
}
