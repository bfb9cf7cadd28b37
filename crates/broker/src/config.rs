//! Broker settings, named and defaulted as Kafka's `server.properties` names them.
//!
//! [`BrokerConfig`] is the config as written (properties); [`BrokerConfig::validate`] turns
//! it into [`Settings`], which is all the running broker sees. Unknown keys are logged and
//! ignored, as Kafka does, so a Kafka `server.properties` file loads unchanged.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_log::{FlushPolicy, LogConfig, TimestampType};

use crate::limits;
use crate::{Error, Result};

/// Broker settings as written: Kafka property names (`num.partitions`, `listeners`, ...).
#[derive(Debug, Clone, Default)]
pub struct BrokerConfig {
    /// The data folder (Kafka's `log.dirs`).
    pub data_dir: PathBuf,
    /// Every other property, Kafka-named.
    pub properties: BTreeMap<String, String>,
}

/// A listener: where to bind and what to advertise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Host or IP to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// Host clients are told to use (an IPv4 literal when bound to a loopback name).
    pub advertised_host: Option<String>,
    /// Port clients are told to use; `None` means the bound port.
    pub advertised_port: Option<u16>,
}

/// Validated broker settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data folder.
    pub data_dir: PathBuf,
    /// The plaintext listener.
    pub listener: Listener,
    /// `node.id` (or `broker.id`).
    pub node_id: i32,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// The broker-level defaults every topic starts from.
    pub log_defaults: LogConfig,
    /// `compression.type` and its levels: `log_defaults.compression` resolved from them, and
    /// what a topic that overrides only some of them falls back on.
    pub compression: crate::topic_config::CompressionDefaults,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// `socket.request.max.bytes`.
    pub frame_bytes_max: u32,
    /// `max.connections`.
    pub connections_max: usize,
    /// `queued.max.request.bytes`: request bytes in memory at once, all connections.
    pub queued_request_bytes_max: u64,
    /// `fetch.max.bytes`: the most a Fetch response carries, whatever the client asks.
    pub fetch_bytes_max: usize,
    /// `connections.max.idle.ms`: a connection silent this long between requests is closed.
    pub connection_idle_ms_max: u64,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.heartbeat.hold.max.ms` (sluice's own): how long the coordinator may hold a
    /// heartbeat so the member hears of a rebalance at once; 0 answers every heartbeat at
    /// once, as Kafka does.
    pub group_heartbeat_hold_max_ms: u64,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `transaction.max.timeout.ms`.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub transaction_cleanup_interval_ms: u64,
    /// Every property as written, for DescribeConfigs on the broker.
    pub properties: BTreeMap<String, String>,
}

/// Every broker property sluice reads, with Kafka's default.
pub const BROKER_PROPERTIES: &[(&str, &str)] = &[
    ("listeners", "PLAINTEXT://127.0.0.1:9092"),
    ("advertised.listeners", ""),
    ("node.id", "1"),
    ("broker.id", "1"),
    ("log.dirs", ""),
    ("num.partitions", "1"),
    ("default.replication.factor", "1"),
    ("auto.create.topics.enable", "true"),
    ("log.retention.ms", ""),
    ("log.retention.minutes", ""),
    ("log.retention.hours", "168"),
    ("log.retention.bytes", "-1"),
    ("log.segment.bytes", "1073741824"),
    ("log.roll.ms", ""),
    ("log.roll.hours", "168"),
    ("log.index.interval.bytes", "4096"),
    ("log.retention.check.interval.ms", "300000"),
    ("log.message.timestamp.type", "CreateTime"),
    ("log.message.timestamp.before.max.ms", "9223372036854775807"),
    ("log.message.timestamp.after.max.ms", "3600000"),
    ("log.flush", "always"),
    ("log.flush.interval.ms", "1000"),
    ("message.max.bytes", "1048588"),
    ("compression.type", "producer"),
    ("compression.gzip.level", "-1"),
    ("compression.lz4.level", "9"),
    ("compression.zstd.level", "3"),
    ("socket.request.max.bytes", "104857600"),
    ("max.connections", "1000"),
    ("queued.max.request.bytes", "-1"),
    ("connections.max.idle.ms", "600000"),
    ("fetch.max.bytes", "57671680"),
    ("group.initial.rebalance.delay.ms", "3000"),
    ("group.min.session.timeout.ms", "6000"),
    ("group.max.session.timeout.ms", "1800000"),
    ("group.heartbeat.hold.max.ms", "5000"),
    ("offsets.retention.minutes", "10080"),
    ("offsets.retention.check.interval.ms", "600000"),
    ("producer.id.expiration.ms", "86400000"),
    ("transaction.max.timeout.ms", "900000"),
    ("transactional.id.expiration.ms", "604800000"),
    ("transaction.abort.timed.out.transaction.cleanup.interval.ms", "10000"),
    // The defaults and bounds of group configs (`crate::dynamic_config::GROUP_CONFIGS`).
    ("group.consumer.heartbeat.interval.ms", "5000"),
    ("group.consumer.max.heartbeat.interval.ms", "15000"),
    ("group.consumer.max.session.timeout.ms", "60000"),
    ("group.consumer.min.heartbeat.interval.ms", "5000"),
    ("group.consumer.min.session.timeout.ms", "45000"),
    ("group.consumer.session.timeout.ms", "45000"),
    ("group.share.heartbeat.interval.ms", "5000"),
    ("group.share.max.heartbeat.interval.ms", "15000"),
    ("group.share.max.record.lock.duration.ms", "60000"),
    ("group.share.max.session.timeout.ms", "60000"),
    ("group.share.min.heartbeat.interval.ms", "5000"),
    ("group.share.min.record.lock.duration.ms", "15000"),
    ("group.share.min.session.timeout.ms", "45000"),
    ("group.share.record.lock.duration.ms", "30000"),
    ("group.share.session.timeout.ms", "45000"),
];

impl BrokerConfig {
    /// A config for `data_dir` with every property at its default.
    pub fn new(data_dir: impl Into<PathBuf>) -> BrokerConfig {
        BrokerConfig { data_dir: data_dir.into(), properties: BTreeMap::new() }
    }

    /// Sets one property (`--override key=value`); later calls win.
    pub fn set(&mut self, key: &str, value: &str) {
        self.properties.insert(key.trim().to_string(), value.trim().to_string());
    }

    /// Reads a Java-style properties file (`key=value` or `key: value`, `#`/`!` comments).
    pub fn load_properties_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((key, value)) = line.split_once(['=', ':']) else {
                return Err(Error::Config(format!(
                    "{}:{}: expected key=value, found {line:?}",
                    path.display(),
                    number + 1
                )));
            };
            self.set(key, value);
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                Error::Config(format!(
                    "{key} = {text:?} is not a valid {}",
                    std::any::type_name::<T>()
                ))
            }),
        }
    }

    /// Checks every setting and returns what the broker runs with.
    pub fn validate(&self) -> Result<Settings> {
        for key in self.properties.keys() {
            if !BROKER_PROPERTIES.iter().any(|(k, _)| k == key) {
                tracing::warn!(key = %key, "unknown broker property ignored");
            }
        }
        let data_dir = match self.get("log.dirs") {
            Some(dirs) if self.data_dir.as_os_str().is_empty() => {
                PathBuf::from(dirs.split(',').next().unwrap_or(dirs))
            }
            _ => self.data_dir.clone(),
        };
        if data_dir.as_os_str().is_empty() {
            return Err(Error::Config("no data folder: pass --data-dir or set log.dirs".into()));
        }
        let listener = self.listener()?;
        let node_id = self.parse("node.id", self.parse("broker.id", 1i32)?)?;
        let num_partitions = self.parse("num.partitions", 1i32)?;
        if !(1..=limits::PARTITIONS_PER_TOPIC_MAX).contains(&num_partitions) {
            return Err(Error::Config(format!(
                "num.partitions = {num_partitions} must be in 1..={}",
                limits::PARTITIONS_PER_TOPIC_MAX
            )));
        }
        let frame_bytes_max =
            self.parse("socket.request.max.bytes", sluice_wire::limits::FRAME_BYTES_DEFAULT)?;
        if frame_bytes_max < 1024 {
            return Err(Error::Config(format!(
                "socket.request.max.bytes = {frame_bytes_max} must be at least 1024"
            )));
        }
        let connections_max = self.parse("max.connections", limits::CONNECTIONS_DEFAULT)?;
        let queued = self.parse("queued.max.request.bytes", -1i64)?;
        let queued_request_bytes_max =
            if queued < 0 { limits::QUEUED_REQUEST_BYTES_DEFAULT } else { queued as u64 };
        if queued_request_bytes_max < u64::from(frame_bytes_max) {
            return Err(Error::Config(format!(
                "queued.max.request.bytes = {queued_request_bytes_max} is below socket.request.max.bytes = {frame_bytes_max}: one largest request must fit"
            )));
        }
        if connections_max == 0 {
            return Err(Error::Config("max.connections must be at least 1".into()));
        }
        let compression = crate::topic_config::CompressionDefaults {
            kind: self.get("compression.type").unwrap_or("producer").to_string(),
            gzip_level: self.parse("compression.gzip.level", -1i32)?,
            lz4_level: self.parse("compression.lz4.level", 9i32)?,
            zstd_level: self.parse("compression.zstd.level", 3i32)?,
        };
        for (key, level) in [
            ("compression.gzip.level", compression.gzip_level),
            ("compression.lz4.level", compression.lz4_level),
            ("compression.zstd.level", compression.zstd_level),
        ] {
            crate::topic_config::check_level(key, level)
                .map_err(|e| Error::Config(e.to_string()))?;
        }
        let group_configs =
            |k: &&str| k.starts_with("group.consumer.") || k.starts_with("group.share.");
        for (key, default) in BROKER_PROPERTIES.iter().filter(|(k, _)| group_configs(k)) {
            if self.parse::<i32>(key, 1)? < 1 {
                return Err(Error::Config(format!("{key} must be at least 1 (default {default})")));
            }
        }
        let mut log_defaults = self.log_defaults()?;
        log_defaults.compression =
            compression.recompression().map_err(|e| Error::Config(e.to_string()))?;
        Ok(Settings {
            data_dir,
            listener,
            node_id,
            num_partitions,
            auto_create_topics: self.parse("auto.create.topics.enable", true)?,
            log_defaults,
            compression,
            retention_check_interval_ms: self
                .parse("log.retention.check.interval.ms", 300_000u64)?
                .max(100),
            frame_bytes_max,
            connections_max,
            queued_request_bytes_max,
            fetch_bytes_max: self.parse("fetch.max.bytes", 57_671_680usize)?.max(1024),
            connection_idle_ms_max: self.parse("connections.max.idle.ms", 600_000u64)?.max(1),
            group_initial_rebalance_delay_ms: self
                .parse("group.initial.rebalance.delay.ms", 3000u64)?,
            group_min_session_timeout_ms: self.parse("group.min.session.timeout.ms", 6000i32)?,
            group_max_session_timeout_ms: self
                .parse("group.max.session.timeout.ms", 1_800_000i32)?,
            group_heartbeat_hold_max_ms: self.parse("group.heartbeat.hold.max.ms", 5000u64)?,
            offsets_retention_ms: self
                .parse("offsets.retention.minutes", 10_080i64)?
                .max(1)
                .saturating_mul(60_000),
            offsets_retention_check_interval_ms: self
                .parse("offsets.retention.check.interval.ms", 600_000u64)?
                .max(100),
            transaction_max_timeout_ms: self
                .parse("transaction.max.timeout.ms", 900_000i32)?
                .max(1),
            transactional_id_expiration_ms: self
                .parse("transactional.id.expiration.ms", 604_800_000i64)?
                .max(1),
            transaction_cleanup_interval_ms: self
                .parse("transaction.abort.timed.out.transaction.cleanup.interval.ms", 10_000u64)?
                .max(10),
            properties: self.properties.clone(),
        })
    }

    fn listener(&self) -> Result<Listener> {
        let text = self.get("listeners").unwrap_or("PLAINTEXT://127.0.0.1:9092");
        let (host, port) = parse_listener(text)?;
        let mut listener = Listener { host, port, advertised_host: None, advertised_port: None };
        if let Some(advertised) = self.get("advertised.listeners") {
            let (host, port) = parse_listener(advertised)?;
            listener.advertised_host = Some(host);
            listener.advertised_port = Some(port);
        }
        Ok(listener)
    }

    fn log_defaults(&self) -> Result<LogConfig> {
        let hour = 3_600_000i64;
        let retention_ms = match (self.get("log.retention.ms"), self.get("log.retention.minutes")) {
            (Some(_), _) => self.parse("log.retention.ms", 0i64)?,
            (None, Some(_)) => self.parse("log.retention.minutes", 0i64)? * 60_000,
            (None, None) => self.parse("log.retention.hours", 168i64)? * hour,
        };
        let segment_ms = match self.get("log.roll.ms") {
            Some(_) => self.parse("log.roll.ms", 0i64)?,
            None => self.parse("log.roll.hours", 168i64)? * hour,
        };
        let segment_jitter_ms = match self.get("log.roll.jitter.ms") {
            Some(_) => self.parse("log.roll.jitter.ms", 0i64)?,
            None => self.parse("log.roll.jitter.hours", 0i64)?.saturating_mul(hour),
        };
        let flush = match self.get("log.flush").unwrap_or("always") {
            "always" => FlushPolicy::Always,
            "interval" => FlushPolicy::Interval {
                interval_ms: self.parse("log.flush.interval.ms", 1000u64)?.max(1),
            },
            "never" => FlushPolicy::Never,
            other => {
                return Err(Error::Config(format!(
                    "log.flush = {other:?}: use always, interval or never"
                )));
            }
        };
        let config = LogConfig {
            segment_bytes: self.parse("log.segment.bytes", 1u32 << 30)?,
            segment_ms,
            segment_jitter_ms,
            retention_ms: if retention_ms < 0 { -1 } else { retention_ms },
            retention_bytes: self.parse("log.retention.bytes", -1i64)?,
            index_interval_bytes: self.parse("log.index.interval.bytes", 4096u32)?,
            max_message_bytes: self.parse("message.max.bytes", 1_048_588u32)?,
            timestamp_type: parse_timestamp_type(
                self.get("log.message.timestamp.type").unwrap_or("CreateTime"),
            )?,
            timestamp_before_max_ms: self.parse("log.message.timestamp.before.max.ms", i64::MAX)?,
            timestamp_after_max_ms: self
                .parse("log.message.timestamp.after.max.ms", 3_600_000i64)?,
            flush,
            producer_id_expiration_ms: self.parse("producer.id.expiration.ms", 86_400_000i64)?,
            compacted: is_compacted(self.get("log.cleanup.policy").unwrap_or("delete")),
            preallocate: self.parse("log.preallocate", false)?,
            compression: None,
        };
        config.validate().map_err(|e| Error::Config(e.to_string()))
    }
}

/// Whether a `cleanup.policy` list includes `compact`.
pub(crate) fn is_compacted(policy: &str) -> bool {
    policy.split(',').any(|p| p.trim() == "compact")
}

/// Parses `PLAINTEXT://host:port` (only the plaintext protocol is served).
fn parse_listener(text: &str) -> Result<(String, u16)> {
    let first = text.split(',').next().unwrap_or(text).trim();
    let rest = first.strip_prefix("PLAINTEXT://").ok_or_else(|| {
        Error::Config(format!("listener {first:?}: sluice serves PLAINTEXT://HOST:PORT only (TLS and SASL are not built yet)"))
    })?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| Error::Config(format!("listener {first:?} has no :PORT")))?;
    let port = port
        .parse()
        .map_err(|_| Error::Config(format!("listener {first:?}: bad port {port:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok((host, port))
}

/// Parses `message.timestamp.type`.
pub fn parse_timestamp_type(text: &str) -> Result<TimestampType> {
    match text {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        other => Err(Error::Config(format!(
            "message.timestamp.type = {other:?}: use CreateTime or LogAppendTime"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let settings = BrokerConfig::new("/tmp/x").validate().unwrap();
        assert_eq!(settings.num_partitions, 1);
        assert_eq!(settings.listener.port, 9092);
        assert_eq!(settings.log_defaults.retention_ms, 168 * 3_600_000);
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut config = BrokerConfig::new("/tmp/x");
        config.set("num.partitions", "many");
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("num.partitions"), "{error}");
        let mut config = BrokerConfig::new("/tmp/x");
        config.set("listeners", "SSL://0.0.0.0:9093");
        assert!(config.validate().unwrap_err().to_string().contains("PLAINTEXT"));
    }
}
