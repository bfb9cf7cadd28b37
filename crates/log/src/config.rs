//! Per-partition log settings, named as Kafka's topic configs name them.
use sluice_wire::batch::Recompression;

use crate::limits::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};
use crate::{Error, Result};

/// When appends are synced (`log.flush`: sluice's own setting; Kafka's nearest are
/// `flush.messages` / `flush.ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every acknowledged produce is synced first, with group commit (the default).
    Always,
    /// A background task syncs every `log.flush.interval.ms`; acks do not wait.
    Interval {
        /// Milliseconds between syncs.
        interval_ms: u64,
    },
    /// Never sync explicitly; the OS writes back pages when it likes.
    Never,
}

/// Which timestamp a batch carries (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamp (the default).
    CreateTime,
    /// The broker's append time.
    LogAppendTime,
}

/// Settings of one partition's log, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this.
    pub segment_bytes: u32,
    /// `segment.ms`: roll when the active segment's first batch is older than this.
    pub segment_ms: i64,
    /// `segment.jitter.ms`: each segment rolls by age up to this much earlier, an amount
    /// drawn at random when it becomes active (below `segment.ms` too), so that partitions
    /// created together do not all roll together. 0 (the default) rolls at `segment.ms`.
    pub segment_jitter_ms: i64,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes of log between offset index entries.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: under CreateTime, a batch with a timestamp further
    /// in the past than this is refused (KIP-937).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: under CreateTime, a batch with a timestamp further
    /// in the future than this is refused (KIP-937; Kafka 4's default, one hour).
    pub timestamp_after_max_ms: i64,
    /// `log.flush`.
    pub flush: FlushPolicy,
    /// `producer.id.expiration.ms` (a broker setting): idempotent producer state is dropped
    /// this long after the producer's last batch.
    pub producer_id_expiration_ms: i64,
    /// `cleanup.policy` includes `compact`: records without a key are refused (KIP-467).
    pub compacted: bool,
    /// `preallocate`: the active segment keeps zeros written ahead of its last batch
    /// (`PREALLOCATE_AHEAD_BYTES`), so that syncs overwrite instead of growing the file.
    pub preallocate: bool,
    /// `compression.type` with its level: batches in another codec are rewritten in this one
    /// on append; `None` (`producer`, the default) stores them as sent.
    pub compression: Option<Recompression>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_jitter_ms: 0,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            flush: FlushPolicy::Always,
            producer_id_expiration_ms: 86_400_000,
            compacted: false,
            preallocate: false,
            compression: None,
        }
    }
}

impl LogConfig {
    /// Checks every bound; the running log sees only validated configs.
    pub fn validate(self) -> Result<LogConfig> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(Error::Config {
                key: "segment.bytes",
                value: self.segment_bytes.to_string(),
                reason: format!("must be in {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}"),
            });
        }
        if self.segment_ms < 1 {
            return Err(Error::Config {
                key: "segment.ms",
                value: self.segment_ms.to_string(),
                reason: "must be at least 1".into(),
            });
        }
        if self.segment_jitter_ms < 0 {
            return Err(Error::Config {
                key: "segment.jitter.ms",
                value: self.segment_jitter_ms.to_string(),
                reason: "must be at least 0".into(),
            });
        }
        if self.retention_ms < -1 || self.retention_bytes < -1 {
            return Err(Error::Config {
                key: "retention.ms",
                value: format!("{} / retention.bytes {}", self.retention_ms, self.retention_bytes),
                reason: "must be -1 (unlimited) or at least 0".into(),
            });
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::Config {
                key: "index.interval.bytes",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        for (key, value) in [
            ("message.timestamp.before.max.ms", self.timestamp_before_max_ms),
            ("message.timestamp.after.max.ms", self.timestamp_after_max_ms),
        ] {
            if value < 0 {
                return Err(Error::Config {
                    key,
                    value: value.to_string(),
                    reason: "must be at least 0".into(),
                });
            }
        }
        if self.producer_id_expiration_ms < 1 {
            return Err(Error::Config {
                key: "producer.id.expiration.ms",
                value: self.producer_id_expiration_ms.to_string(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(self)
    }
}
