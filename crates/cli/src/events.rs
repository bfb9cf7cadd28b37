//! The JSON-lines event stream of the verifiable tools: one object per line on stdout,
//! `timestamp` (ms since the epoch) and `name` first, then the event's own fields, in
//! the order Kafka's `VerifiableProducer` and `VerifiableConsumer` print them. Test
//! harnesses written for Kafka (ducktape services, scripts) parse these lines as they come,
//! so every event is flushed at once.
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

/// One event: the common head, then `body`'s fields flattened after it.
#[derive(Debug, Serialize)]
pub struct Event<'a, T: Serialize> {
    /// Milliseconds since the Unix epoch when the event was printed.
    pub timestamp: i64,
    /// The event name, e.g. `startup_complete`.
    pub name: &'a str,
    /// The event's own fields.
    #[serde(flatten)]
    pub body: T,
}

/// The body of events that carry nothing but their name.
#[derive(Debug, Serialize)]
pub struct NoFields {}

/// The event as one JSON line, without the newline.
pub fn to_line<T: Serialize>(timestamp: i64, name: &str, body: T) -> String {
    serde_json::to_string(&Event { timestamp, name, body })
        .expect("events hold only strings, integers, floats and lists, which always serialize")
}

/// Prints one event line to stdout and flushes it.
pub fn emit<T: Serialize>(name: &str, body: T) -> Result<()> {
    let mut line = to_line(now_ms(), name, body);
    line.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush()).context("cannot write stdout")
}

/// Milliseconds since the Unix epoch, like Java's `System.currentTimeMillis()`.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_timestamp_and_name_first() {
        #[derive(Serialize)]
        struct Body {
            z: u8,
            a: u8,
        }
        assert_eq!(
            to_line(5, "thing", Body { z: 1, a: 2 }),
            r#"{"timestamp":5,"name":"thing","z":1,"a":2}"#
        );
        assert_eq!(
            to_line(5, "startup_complete", NoFields {}),
            r#"{"timestamp":5,"name":"startup_complete"}"#
        );
    }
}
