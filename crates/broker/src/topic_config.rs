//! Topic configs: the names Kafka uses, their broker-level synonyms and defaults, and how
//! overrides turn into the log's [`LogConfig`].
//!
//! Every config Kafka lists for a topic is accepted and described, so tools that read or
//! copy configs work. Those marked `effect: false` are stored and shown but change nothing
//! in sluice (replication, compaction and tiered storage are the engines' job at scale).
use std::collections::BTreeMap;

use sluice_log::{LogConfig, TimestampType};
use sluice_wire::batch::Recompression;

use crate::config::Settings;
use crate::dynamic_config::BrokerLevels;
use crate::{Error, Result};

/// DescribeConfigs `config_source` values.
pub mod source {
    /// A topic-level override.
    pub const TOPIC: i8 = 1;
    /// Set at run time for this broker (AlterConfigs on its id).
    pub const DYNAMIC_BROKER: i8 = 2;
    /// Set at run time as the cluster-wide default (AlterConfigs on the empty broker name).
    pub const DYNAMIC_DEFAULT_BROKER: i8 = 3;
    /// Set in the broker's config file or `--override`.
    pub const STATIC_BROKER: i8 = 4;
    /// The default.
    pub const DEFAULT: i8 = 5;
    /// Set for a group (AlterConfigs on a GROUP resource).
    pub const GROUP: i8 = 8;
}

/// DescribeConfigs `config_type` values (v3+).
pub mod kind {
    /// true/false.
    pub const BOOLEAN: i8 = 1;
    /// Free text.
    pub const STRING: i8 = 2;
    /// 32-bit.
    pub const INT: i8 = 3;
    /// 64-bit.
    pub const LONG: i8 = 5;
    /// Floating point.
    pub const DOUBLE: i8 = 6;
    /// Comma-separated list.
    pub const LIST: i8 = 7;
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    /// Kafka's topic config name.
    pub name: &'static str,
    /// The broker property that sets its default, if any.
    pub broker_synonym: Option<&'static str>,
    /// Kafka's default when nothing sets it (broker-derived ones are computed).
    pub default: &'static str,
    /// `kind::*`.
    pub kind: i8,
    /// Whether sluice acts on it.
    pub effect: bool,
}

const fn def(
    name: &'static str,
    broker_synonym: Option<&'static str>,
    default: &'static str,
    kind: i8,
    effect: bool,
) -> TopicConfigDef {
    TopicConfigDef { name, broker_synonym, default, kind, effect }
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic config, sorted by name.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def("cleanup.policy", Some("log.cleanup.policy"), "delete", kind::LIST, false),
    def("compression.gzip.level", Some("compression.gzip.level"), "-1", kind::INT, true),
    def("compression.lz4.level", Some("compression.lz4.level"), "9", kind::INT, true),
    def("compression.type", Some("compression.type"), "producer", kind::STRING, true),
    def("compression.zstd.level", Some("compression.zstd.level"), "3", kind::INT, true),
    def(
        "delete.retention.ms",
        Some("log.cleaner.delete.retention.ms"),
        "86400000",
        kind::LONG,
        false,
    ),
    def("file.delete.delay.ms", Some("log.segment.delete.delay.ms"), "60000", kind::LONG, false),
    def("flush.messages", Some("log.flush.interval.messages"), LONG_MAX, kind::LONG, false),
    def("flush.ms", None, LONG_MAX, kind::LONG, false),
    def("index.interval.bytes", Some("log.index.interval.bytes"), "4096", kind::INT, true),
    def("local.retention.bytes", Some("log.local.retention.bytes"), "-2", kind::LONG, false),
    def("local.retention.ms", Some("log.local.retention.ms"), "-2", kind::LONG, false),
    def(
        "max.compaction.lag.ms",
        Some("log.cleaner.max.compaction.lag.ms"),
        LONG_MAX,
        kind::LONG,
        false,
    ),
    def("max.message.bytes", Some("message.max.bytes"), "1048588", kind::INT, true),
    def(
        "message.timestamp.after.max.ms",
        Some("log.message.timestamp.after.max.ms"),
        "3600000",
        kind::LONG,
        true,
    ),
    def(
        "message.timestamp.before.max.ms",
        Some("log.message.timestamp.before.max.ms"),
        LONG_MAX,
        kind::LONG,
        true,
    ),
    def(
        "message.timestamp.type",
        Some("log.message.timestamp.type"),
        "CreateTime",
        kind::STRING,
        true,
    ),
    def(
        "min.cleanable.dirty.ratio",
        Some("log.cleaner.min.cleanable.ratio"),
        "0.5",
        kind::DOUBLE,
        false,
    ),
    def("min.compaction.lag.ms", Some("log.cleaner.min.compaction.lag.ms"), "0", kind::LONG, false),
    def("min.insync.replicas", Some("min.insync.replicas"), "1", kind::INT, false),
    def("preallocate", Some("log.preallocate"), "false", kind::BOOLEAN, true),
    def("remote.storage.enable", None, "false", kind::BOOLEAN, false),
    def("retention.bytes", Some("log.retention.bytes"), "-1", kind::LONG, true),
    def("retention.ms", Some("log.retention.ms"), "604800000", kind::LONG, true),
    def("segment.bytes", Some("log.segment.bytes"), "1073741824", kind::INT, true),
    def("segment.index.bytes", Some("log.index.size.max.bytes"), "10485760", kind::INT, false),
    def("segment.jitter.ms", Some("log.roll.jitter.ms"), "0", kind::LONG, true),
    def("segment.ms", Some("log.roll.ms"), "604800000", kind::LONG, true),
    def(
        "unclean.leader.election.enable",
        Some("unclean.leader.election.enable"),
        "false",
        kind::BOOLEAN,
        false,
    ),
];

/// `compression.type` and its levels (KIP-390) at the broker level, which topics override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionDefaults {
    /// `compression.type`: `producer` (store as sent), `uncompressed`, `gzip`, `snappy`,
    /// `lz4` or `zstd`.
    pub kind: String,
    /// `compression.gzip.level`: 1 to 9, or -1 for zlib's default (6).
    pub gzip_level: i32,
    /// `compression.lz4.level`: 1 to 17.
    pub lz4_level: i32,
    /// `compression.zstd.level`: -131072 to 22.
    pub zstd_level: i32,
}

impl Default for CompressionDefaults {
    fn default() -> Self {
        let kind = "producer".into();
        CompressionDefaults { kind, gzip_level: -1, lz4_level: LZ4_DEFAULT_LEVEL, zstd_level: 3 }
    }
}

impl CompressionDefaults {
    /// The codec batches are stored in: `None` for `producer`, which keeps them as sent.
    pub fn recompression(&self) -> Result<Option<Recompression>> {
        let gzip = if self.gzip_level == -1 { 6 } else { self.gzip_level };
        Ok(Some(match self.kind.as_str() {
            "producer" => return Ok(None),
            "uncompressed" => Recompression::None,
            "gzip" => Recompression::Gzip { level: gzip.clamp(1, 9) as u32 },
            "snappy" => Recompression::Snappy,
            // Kafka compresses its default level (9) with lz4's fast compressor, as before
            // KIP-390, and any other with the high-compression one at that level (liblz4's
            // high compression starts at 2).
            "lz4" if self.lz4_level == LZ4_DEFAULT_LEVEL => Recompression::Lz4 { level: 0 },
            "lz4" => Recompression::Lz4 { level: self.lz4_level.clamp(2, 17) as u32 },
            "zstd" => Recompression::Zstd { level: self.zstd_level },
            other => return Err(invalid("compression.type", other, COMPRESSION_TYPES)),
        }))
    }

    /// These defaults with a topic's overrides of them.
    pub(crate) fn with(&self, overrides: &BTreeMap<String, String>) -> Result<CompressionDefaults> {
        let level = |key: &str, default: i32| match overrides.get(key) {
            Some(value) => parse::<i32>(key, value),
            None => Ok(default),
        };
        Ok(CompressionDefaults {
            kind: overrides.get("compression.type").cloned().unwrap_or_else(|| self.kind.clone()),
            gzip_level: level("compression.gzip.level", self.gzip_level)?,
            lz4_level: level("compression.lz4.level", self.lz4_level)?,
            zstd_level: level("compression.zstd.level", self.zstd_level)?,
        })
    }
}

/// `compression.lz4.level`'s default.
const LZ4_DEFAULT_LEVEL: i32 = 9;

/// What `compression.type` takes, as Kafka lists it.
const COMPRESSION_TYPES: &str = "use uncompressed, zstd, lz4, snappy, gzip or producer";

/// Checks a compression level config (KIP-390's ranges); other keys pass.
pub fn check_level(key: &str, level: i32) -> Result<()> {
    let (ok, range) = match key {
        "compression.gzip.level" => (level == -1 || (1..=9).contains(&level), "1 to 9, or -1"),
        "compression.lz4.level" => ((1..=17).contains(&level), "1 to 17"),
        "compression.zstd.level" => ((-131_072..=22).contains(&level), "-131072 to 22"),
        _ => return Ok(()),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(key, &level.to_string(), format!("must be {range}")))
    }
}

/// The definition of `name`, if it is a topic config.
pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// The broker-level value of a topic config: `(value, source)`, the dynamic broker configs
/// (`levels`) first.
pub fn broker_value(
    settings: &Settings,
    levels: &BrokerLevels,
    def: &TopicConfigDef,
) -> (String, i8) {
    if let Some((value, source)) = def.broker_synonym.and_then(|key| levels.get(key)) {
        return (value.to_string(), source);
    }
    static_broker_value(settings, def)
}

/// The broker-level value of a topic config from the config file alone: `(value, source)`.
pub fn static_broker_value(settings: &Settings, def: &TopicConfigDef) -> (String, i8) {
    let set_in_file = def.broker_synonym.is_some_and(|k| settings.properties.contains_key(k));
    let source = if set_in_file { source::STATIC_BROKER } else { source::DEFAULT };
    let d = &settings.log_defaults;
    let value = match def.name {
        "retention.ms" => d.retention_ms.to_string(),
        "retention.bytes" => d.retention_bytes.to_string(),
        "segment.bytes" => d.segment_bytes.to_string(),
        "segment.ms" => d.segment_ms.to_string(),
        "segment.jitter.ms" => d.segment_jitter_ms.to_string(),
        "preallocate" => d.preallocate.to_string(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "index.interval.bytes" => d.index_interval_bytes.to_string(),
        "message.timestamp.before.max.ms" => d.timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => d.timestamp_after_max_ms.to_string(),
        "message.timestamp.type" => match d.timestamp_type {
            TimestampType::CreateTime => "CreateTime".to_string(),
            TimestampType::LogAppendTime => "LogAppendTime".to_string(),
        },
        _ => def
            .broker_synonym
            .and_then(|k| settings.properties.get(k).cloned())
            .unwrap_or_else(|| def.default.to_string()),
    };
    // Any broker-derived value counts as set by the broker when the file names a synonym
    // (log.retention.hours sets retention.ms too).
    let derived = matches!(def.name, "retention.ms")
        && settings.properties.keys().any(|k| k.starts_with("log.retention."))
        || matches!(def.name, "segment.ms")
            && settings
                .properties
                .keys()
                .any(|k| matches!(k.as_str(), "log.roll.ms" | "log.roll.hours"))
        || matches!(def.name, "segment.jitter.ms")
            && settings.properties.keys().any(|k| k.starts_with("log.roll.jitter."));
    (value, if derived { source::STATIC_BROKER } else { source })
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig { key: key.to_string(), value: value.to_string(), reason: reason.into() }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, format!("expected a {}", std::any::type_name::<T>())))
}

/// Checks one override and returns it normalised.
pub fn check(key: &str, value: &str) -> Result<String> {
    let def = find(key).ok_or_else(|| invalid(key, value, "not a topic config Kafka knows"))?;
    match def.kind {
        kind::INT => {
            let number = parse::<i32>(key, value)?;
            check_level(key, number)?;
            Ok(number.to_string())
        }
        kind::LONG => parse::<i64>(key, value).map(|v| v.to_string()),
        kind::DOUBLE => parse::<f64>(key, value).map(|_| value.trim().to_string()),
        kind::BOOLEAN => parse::<bool>(key, value).map(|v| v.to_string()),
        _ => match key {
            "compression.type" => {
                let compression =
                    CompressionDefaults { kind: value.to_string(), ..Default::default() };
                compression.recompression().map(|_| value.to_string())
            }
            "message.timestamp.type" => {
                crate::config::parse_timestamp_type(value).map(|_| value.to_string())
            }
            "cleanup.policy" => {
                let ok = value.split(',').all(|p| matches!(p.trim(), "delete" | "compact"));
                if ok {
                    Ok(value.to_string())
                } else {
                    Err(invalid(key, value, "use delete, compact or compact,delete"))
                }
            }
            _ => Ok(value.to_string()),
        },
    }
}

/// The log config of a topic: the broker defaults (`compression` for `compression.type`
/// and its levels) with the topic's overrides applied.
pub fn log_config(
    defaults: &LogConfig,
    compression: &CompressionDefaults,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig> {
    let mut config = defaults.clone();
    config.compression = compression.with(overrides)?.recompression()?;
    for (key, value) in overrides {
        match key.as_str() {
            "retention.ms" => config.retention_ms = parse::<i64>(key, value)?.max(-1),
            "retention.bytes" => config.retention_bytes = parse::<i64>(key, value)?.max(-1),
            "segment.bytes" => config.segment_bytes = parse(key, value)?,
            "segment.ms" => config.segment_ms = parse(key, value)?,
            "segment.jitter.ms" => config.segment_jitter_ms = parse(key, value)?,
            "preallocate" => config.preallocate = parse(key, value)?,
            "max.message.bytes" => config.max_message_bytes = parse(key, value)?,
            "index.interval.bytes" => config.index_interval_bytes = parse(key, value)?,
            "message.timestamp.before.max.ms" => {
                config.timestamp_before_max_ms = parse(key, value)?
            }
            "message.timestamp.after.max.ms" => config.timestamp_after_max_ms = parse(key, value)?,
            "message.timestamp.type" => {
                config.timestamp_type = crate::config::parse_timestamp_type(value)?
            }
            "cleanup.policy" => config.compacted = crate::config::is_compacted(value),
            _ => {}
        }
    }
    config.validate().map_err(|e| match e {
        sluice_log::Error::Config { key, value, reason } => invalid(key, &value, reason),
        other => Error::Log(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_sorted_and_unique() {
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} before {}", pair[0].name, pair[1].name);
        }
    }

    #[test]
    fn overrides_reach_the_log_config() {
        let mut overrides = BTreeMap::new();
        overrides.insert("retention.ms".to_string(), "1000".to_string());
        overrides.insert("segment.bytes".to_string(), "100000".to_string());
        overrides.insert("segment.jitter.ms".to_string(), "5000".to_string());
        overrides.insert("preallocate".to_string(), "true".to_string());
        let compression = CompressionDefaults::default();
        let config = log_config(&LogConfig::default(), &compression, &overrides).unwrap();
        assert!(config.preallocate);
        assert_eq!(config.retention_ms, 1000);
        assert_eq!(config.segment_bytes, 100_000);
        assert_eq!(config.segment_jitter_ms, 5000);
        overrides.insert("segment.jitter.ms".to_string(), "-1".to_string());
        let refused = log_config(&LogConfig::default(), &compression, &overrides).unwrap_err();
        assert!(refused.to_string().contains("segment.jitter.ms"), "{refused}");
        assert!(check("segment.bytes", "lots").is_err());
        assert!(check("no.such.config", "1").is_err());
        assert!(check("compression.type", "brotli").is_err());
        assert!(check("compression.lz4.level", "18").is_err());
    }

    #[test]
    fn compression_type_and_levels_reach_the_log_config() {
        let overrides = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let broker = CompressionDefaults::default();
        let resolved = |broker: &CompressionDefaults, pairs: &[(&str, &str)]| {
            log_config(&LogConfig::default(), broker, &overrides(pairs)).unwrap().compression
        };
        assert_eq!(resolved(&broker, &[]), None, "producer: stored as sent");
        assert_eq!(
            resolved(&broker, &[("compression.type", "gzip")]),
            Some(Recompression::Gzip { level: 6 })
        );
        let zstd = [("compression.type", "zstd"), ("compression.zstd.level", "-5")];
        assert_eq!(resolved(&broker, &zstd), Some(Recompression::Zstd { level: -5 }));
        assert_eq!(
            resolved(&broker, &[("compression.type", "uncompressed")]),
            Some(Recompression::None)
        );
        // A broker-level type and level, and a topic that overrides only the level.
        let lz4 = CompressionDefaults { kind: "lz4".into(), lz4_level: 12, ..Default::default() };
        assert_eq!(resolved(&lz4, &[]), Some(Recompression::Lz4 { level: 12 }));
        assert_eq!(
            resolved(&lz4, &[("compression.lz4.level", "3")]),
            Some(Recompression::Lz4 { level: 3 })
        );
        assert_eq!(resolved(&lz4, &[("compression.type", "producer")]), None);
        let default_lz4 = [("compression.type", "lz4")];
        assert_eq!(
            resolved(&broker, &default_lz4),
            Some(Recompression::Lz4 { level: 0 }),
            "Kafka's default lz4 level is its fast compressor"
        );
        for (key, value) in [("compression.type", "gzip"), ("compression.gzip.level", "-1")] {
            assert_eq!(check(key, value).unwrap(), value);
        }
        assert!(check("compression.gzip.level", "0").is_err());
        assert!(check("compression.zstd.level", "23").is_err());
    }
}
