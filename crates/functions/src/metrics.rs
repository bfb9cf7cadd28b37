//! A function's metrics, named as Lambda's CloudWatch metrics are, so dashboards and alarms
//! translate one to one. Counters only grow; [`Metrics::snapshot`] reads them all, and each
//! is also emitted through the `metrics` facade (`Invocations`, `Errors`, `Duration`,
//! `PolledEventCount`, `FilteredOutEventCount`, `OnFailureDestinationDeliveredEventCount`,
//! `DroppedEventCount`, labelled `function`), which the dashboard's recorder reads; with no
//! recorder installed they cost nothing.
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters of one function.
#[derive(Debug, Default)]
pub struct Metrics {
    function: String,
    invocations: AtomicU64,
    errors: AtomicU64,
    duration_ms_total: AtomicU64,
    throttles: AtomicU64,
    polled_events: AtomicU64,
    filtered_events: AtomicU64,
    dead_letters: AtomicU64,
    dropped_events: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshot {
    /// Invocations, successful or not.
    pub invocations: u64,
    /// Invocations that failed (function error, timeout, bad response...).
    pub errors: u64,
    /// Time spent in invocations, milliseconds in all.
    pub duration_ms_total: u64,
    /// Invocations that waited for a free handler (always 0: batches wait for a slot).
    pub throttles: u64,
    /// Records polled from Kafka (PolledEventCount).
    pub polled_event_count: u64,
    /// Records FilterCriteria left out (FilteredOutEventCount).
    pub filtered_out_event_count: u64,
    /// Records written to the on-failure destination (DeadLetterErrors' successes).
    pub on_failure_destination_delivered_event_count: u64,
    /// Records given up on without a destination (DroppedEventCount).
    pub dropped_event_count: u64,
}

impl Metrics {
    /// The metrics of `function`.
    pub fn new(function: &str) -> Metrics {
        Metrics { function: function.to_string(), ..Metrics::default() }
    }

    fn emit(&self, name: &'static str, count: u64) {
        metrics::counter!(name, "function" => self.function.clone()).increment(count);
    }

    /// One invocation that took `ms` and failed or not.
    pub fn invoked(&self, ms: u64, failed: bool) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.duration_ms_total.fetch_add(ms, Ordering::Relaxed);
        self.emit("Invocations", 1);
        metrics::histogram!("Duration", "function" => self.function.clone()).record(ms as f64);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.emit("Errors", 1);
        }
    }

    /// `count` records polled.
    pub fn polled(&self, count: u64) {
        self.polled_events.fetch_add(count, Ordering::Relaxed);
        self.emit("PolledEventCount", count);
    }

    /// `count` records left out by FilterCriteria.
    pub fn filtered_out(&self, count: u64) {
        self.filtered_events.fetch_add(count, Ordering::Relaxed);
        self.emit("FilteredOutEventCount", count);
    }

    /// `count` records written to the on-failure destination.
    pub fn dead_lettered(&self, count: u64) {
        self.dead_letters.fetch_add(count, Ordering::Relaxed);
        self.emit("OnFailureDestinationDeliveredEventCount", count);
    }

    /// `count` records given up on with nowhere to go.
    pub fn dropped(&self, count: u64) {
        self.dropped_events.fetch_add(count, Ordering::Relaxed);
        self.emit("DroppedEventCount", count);
    }

    /// Every counter now.
    pub fn snapshot(&self) -> Snapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Snapshot {
            invocations: read(&self.invocations),
            errors: read(&self.errors),
            duration_ms_total: read(&self.duration_ms_total),
            throttles: read(&self.throttles),
            polled_event_count: read(&self.polled_events),
            filtered_out_event_count: read(&self.filtered_events),
            on_failure_destination_delivered_event_count: read(&self.dead_letters),
            dropped_event_count: read(&self.dropped_events),
        }
    }
}
