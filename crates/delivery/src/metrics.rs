//! A stream's metrics, with Firehose's CloudWatch names and the stream name as the
//! `delivery_stream_name` label, through the `metrics` facade (whatever recorder the binary
//! installs sees them). The same numbers are kept in [`Stats`] for `sluice` itself.
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{counter, gauge, Counter, Gauge};

/// Counters of one stream, readable without a recorder.
#[derive(Debug, Default)]
pub struct Stats {
    /// IncomingRecords.
    pub incoming_records: AtomicU64,
    /// IncomingBytes.
    pub incoming_bytes: AtomicU64,
    /// DeliveryToS3.Records: records in published data objects.
    pub delivered_records: AtomicU64,
    /// DeliveryToS3.Bytes: bytes of published objects.
    pub delivered_bytes: AtomicU64,
    /// Objects published (DeliveryToS3.Success counts each).
    pub objects: AtomicU64,
    /// Records sent to the error prefix.
    pub failed_records: AtomicU64,
    /// Failed attempts to publish an object.
    pub publish_failures: AtomicU64,
}

/// The metric handles of one stream.
pub struct Metrics {
    /// The plain counters.
    pub stats: std::sync::Arc<Stats>,
    incoming_records: Counter,
    incoming_bytes: Counter,
    success: Counter,
    records: Counter,
    bytes: Counter,
    freshness: Gauge,
    failed_records: Counter,
    failures: Counter,
}

impl Metrics {
    /// Handles labelled with the stream's name.
    pub fn new(stream: &str) -> Metrics {
        let label = [("delivery_stream_name", stream.to_string())];
        Metrics {
            stats: Default::default(),
            incoming_records: counter!("IncomingRecords", &label),
            incoming_bytes: counter!("IncomingBytes", &label),
            success: counter!("DeliveryToS3.Success", &label),
            records: counter!("DeliveryToS3.Records", &label),
            bytes: counter!("DeliveryToS3.Bytes", &label),
            freshness: gauge!("DeliveryToS3.DataFreshness", &label),
            failed_records: counter!("DeliveryToS3.FailedRecords", &label),
            failures: counter!("DeliveryToS3.PublishFailures", &label),
        }
    }

    /// A record consumed.
    pub fn incoming(&self, bytes: usize) {
        self.incoming_records.increment(1);
        self.incoming_bytes.increment(bytes as u64);
        self.stats.incoming_records.fetch_add(1, Ordering::Relaxed);
        self.stats.incoming_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// An object published; `age_secs` is how long its first record waited.
    pub fn published(&self, records: u64, bytes: usize, age_secs: f64, error_object: bool) {
        self.success.increment(1);
        self.bytes.increment(bytes as u64);
        self.freshness.set(age_secs);
        self.stats.objects.fetch_add(1, Ordering::Relaxed);
        self.stats.delivered_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if error_object {
            self.failed_records.increment(records);
            self.stats.failed_records.fetch_add(records, Ordering::Relaxed);
        } else {
            self.records.increment(records);
            self.stats.delivered_records.fetch_add(records, Ordering::Relaxed);
        }
    }

    /// A publish attempt failed.
    pub fn publish_failed(&self) {
        self.failures.increment(1);
        self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
    }
}
