//! Configs changed while the broker runs, as Kafka's dynamic configs.
//!
//! - **Broker configs** (AlterConfigs and IncrementalAlterConfigs on a BROKER resource): set
//!   for this broker (its node id as the resource name) or as the cluster-wide default (an
//!   empty name). This broker's value wins over the default, and both over the config file.
//!   The broker synonyms of topic configs (`log.retention.ms`, `message.max.bytes`,
//!   `compression.type`, ...) change the default of every topic that does not override it,
//!   at once. The other configs Kafka changes at run time (thread pools, connection rates,
//!   listener SASL and SSL settings), and names Kafka does not define (which Kafka stores too),
//!   are validated, stored and described, for the tools that set them; sluice has nothing
//!   they change. Configs Kafka reads only at start are refused, as Kafka refuses them, with
//!   INVALID_REQUEST as Kafka answers every refused broker change (KAFKA-13609), and so are
//!   secrets (sluice keeps no secrets in its store).
//! - **Group configs** (GROUP resources, Kafka 4.0): `consumer.*` and `share.*`, checked
//!   against the broker's bounds as Kafka checks them and stored per group id.
//!   `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms` time the group's
//!   KIP-848 members (`crate::consumer_groups`); the `share.*` ones tune share groups, which
//!   sluice does not run, so they change nothing.
//!
//! Both are kept in the metadata store and survive restarts.
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use sluice_log::LogConfig;

use crate::config::{Settings, BROKER_PROPERTIES};
use crate::limits::{DYNAMIC_CONFIG_BYTES_MAX, DYNAMIC_CONFIG_KEYS_MAX};
use crate::topic_config::{self, kind, source, CompressionDefaults, TopicConfigDef, TOPIC_CONFIGS};
use crate::{Error, Result};

/// The store's name for broker resources.
pub const BROKER: &str = "broker";
/// The store's name for group resources.
pub const GROUP: &str = "group";

/// The dynamic broker configs: the cluster-wide default and this broker's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerLevels {
    /// Set on the empty broker name.
    pub cluster_default: BTreeMap<String, String>,
    /// Set on this broker's id.
    pub broker: BTreeMap<String, String>,
}

impl BrokerLevels {
    /// The dynamic value of `key` and its DescribeConfigs source: this broker's, else the
    /// cluster default's.
    pub fn get(&self, key: &str) -> Option<(&str, i8)> {
        match self.broker.get(key) {
            Some(value) => Some((value.as_str(), source::DYNAMIC_BROKER)),
            None => self
                .cluster_default
                .get(key)
                .map(|value| (value.as_str(), source::DYNAMIC_DEFAULT_BROKER)),
        }
    }
}

/// The defaults topics start from: the config file's, with the dynamic broker configs on top.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    /// Every topic's log config before its own overrides.
    pub log: LogConfig,
    /// `compression.type` and its levels before a topic's overrides.
    pub compression: CompressionDefaults,
}

impl TopicDefaults {
    /// The config file's defaults with `levels` applied.
    pub fn new(settings: &Settings, levels: &BrokerLevels) -> Result<TopicDefaults> {
        // The merged levels, as topic config names (this broker's value last, so it wins).
        let mut overrides = BTreeMap::new();
        for (key, value) in levels.cluster_default.iter().chain(&levels.broker) {
            if let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == Some(key)) {
                overrides.insert(def.name.to_string(), value.clone());
            }
        }
        let compression = settings.compression.with(&overrides)?;
        let log =
            topic_config::log_config(&settings.log_defaults, &settings.compression, &overrides)?;
        Ok(TopicDefaults { log, compression })
    }
}

/// What a broker config changed at run time does in sluice.
#[derive(Debug, Clone, Copy)]
pub enum BrokerKey {
    /// The broker synonym of a topic config: the default of every topic not overriding it.
    TopicDefault(&'static TopicConfigDef),
    /// Changed at run time in Kafka; stored and described here, but nothing reads it.
    Stored {
        /// Kafka's default, when the config has one sluice lists.
        default: Option<&'static str>,
        /// Kafka takes it only for one broker, never as the cluster-wide default.
        per_broker: bool,
        /// A comma-separated list (APPEND and SUBTRACT apply).
        list: bool,
    },
}

impl BrokerKey {
    /// DescribeConfigs `config_type`.
    pub fn kind(self) -> i8 {
        match self {
            BrokerKey::TopicDefault(def) => def.kind,
            BrokerKey::Stored { list: true, .. } => kind::LIST,
            BrokerKey::Stored { default: Some(d), .. } if d.parse::<i64>().is_ok() => kind::LONG,
            BrokerKey::Stored { default: Some(d), .. } if d.parse::<f64>().is_ok() => kind::DOUBLE,
            BrokerKey::Stored { .. } => kind::STRING,
        }
    }

    /// The default a list config's APPEND and SUBTRACT start from, or `None` for a config
    /// that is not a list.
    pub fn list_default(self) -> Option<&'static str> {
        match self {
            BrokerKey::TopicDefault(def) if def.kind == kind::LIST => Some(def.default),
            BrokerKey::Stored { list: true, default, .. } => Some(default.unwrap_or("")),
            _ => None,
        }
    }

    /// Whether sluice acts on it.
    pub fn effect(self) -> bool {
        matches!(self, BrokerKey::TopicDefault(def) if def.effect)
    }
}

/// The configs Kafka changes at run time that sluice stores but has nothing to apply to,
/// with Kafka's defaults.
const STORED: &[(&str, &str)] = &[
    ("background.threads", "10"),
    ("log.cleaner.backoff.ms", "15000"),
    ("log.cleaner.dedupe.buffer.size", "134217728"),
    ("log.cleaner.io.buffer.load.factor", "0.9"),
    ("log.cleaner.io.buffer.size", "524288"),
    ("log.cleaner.io.max.bytes.per.second", "1.7976931348623157E308"),
    ("log.cleaner.threads", "1"),
    ("max.connection.creation.rate", "2147483647"),
    ("max.connections.per.ip", "2147483647"),
    ("max.connections.per.ip.overrides", ""),
    ("metric.reporters", ""),
    ("num.io.threads", "8"),
    ("num.network.threads", "3"),
    ("num.recovery.threads.per.data.dir", "2"),
    ("num.replica.fetchers", "1"),
];

/// Lists among [`STORED`] and the per-broker listener settings (also under a
/// `listener.name.<listener>.` prefix), with Kafka's defaults.
const LISTS: &[(&str, &str)] = &[
    ("max.connections.per.ip.overrides", ""),
    ("metric.reporters", ""),
    ("sasl.enabled.mechanisms", "GSSAPI"),
    ("ssl.cipher.suites", ""),
    ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3"),
];

/// The list among [`LISTS`] that `key` names, with or without a listener prefix.
fn list_default_of(key: &str) -> Option<&'static str> {
    LISTS.iter().find_map(|(name, default)| {
        let prefixed = key.strip_suffix(name).is_some_and(|rest| rest.ends_with('.'));
        (key == *name || prefixed).then_some(*default)
    })
}

/// Listener settings Kafka changes per broker only (never as the cluster-wide default).
const PER_BROKER_PREFIXES: &[&str] = &["listener.name.", "sasl."];

/// Whether a config holds a secret (Kafka's PASSWORD type), never stored nor shown.
pub fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.ends_with("jaas.config")
        || key.ends_with("keystore.key")
}

/// The configs listed for the broker whatever is set, with their defaults: the ones
/// sluice reads, the topic synonyms and the stored ones.
pub fn broker_names() -> impl Iterator<Item = &'static str> {
    let read = BROKER_PROPERTIES.iter().map(|(key, _)| *key);
    let synonyms = TOPIC_CONFIGS.iter().filter_map(|def| def.broker_synonym);
    let stored = STORED.iter().map(|(key, _)| *key);
    let mut names: Vec<&'static str> = read.chain(synonyms).chain(stored).collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter()
}

/// Kafka's default of a broker config, as DescribeConfigs shows it.
pub fn broker_default(key: &str) -> Option<&'static str> {
    BROKER_PROPERTIES
        .iter()
        .chain(STORED)
        .find(|(k, _)| *k == key)
        .map(|(_, default)| *default)
        .or_else(|| TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == Some(key)).map(|d| d.default))
}

/// What `key` does when changed at run time, or why it cannot be (INVALID_REQUEST, as Kafka
/// answers).
pub fn broker_key(key: &str) -> Result<BrokerKey> {
    if is_sensitive(key) {
        return Err(Error::InvalidRequest(format!(
            "{key} holds a secret, and sluice keeps no secrets in its metadata store; set it in the config file (a plaintext listener has no use for it)"
        )));
    }
    if let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == Some(key)) {
        return Ok(BrokerKey::TopicDefault(def));
    }
    let list_default = list_default_of(key);
    let list = list_default.is_some();
    if let Some((_, default)) = STORED.iter().find(|(k, _)| *k == key) {
        return Ok(BrokerKey::Stored { default: Some(default), per_broker: false, list });
    }
    if key.starts_with("ssl.") {
        return Err(Error::InvalidRequest(format!(
            "{key}: Kafka changes SSL settings per listener; use listener.name.<listener>.{key}"
        )));
    }
    if PER_BROKER_PREFIXES.iter().any(|prefix| key.starts_with(prefix)) {
        return Ok(BrokerKey::Stored { default: list_default, per_broker: true, list });
    }
    if BROKER_PROPERTIES.iter().any(|(k, _)| *k == key) {
        return Err(Error::InvalidRequest(format!(
            "{key} cannot be changed while the broker runs; set it in the broker's config file or with --override and restart"
        )));
    }
    // A name Kafka does not define: Kafka stores it (for plugins), and so does sluice.
    Ok(BrokerKey::Stored { default: None, per_broker: false, list: false })
}

/// Checks a broker config set at run time at `cluster_default` (or this broker's) level and
/// returns its value normalised.
pub fn check_broker(key: &str, value: &str, cluster_default: bool) -> Result<String> {
    if key.len() + value.len() > DYNAMIC_CONFIG_BYTES_MAX {
        return Err(Error::InvalidRequest(format!(
            "{key}: name and value hold {} bytes, above the {DYNAMIC_CONFIG_BYTES_MAX} a dynamic config may",
            key.len() + value.len()
        )));
    }
    let invalid_value = |reason: String| {
        Error::InvalidRequest(format!("invalid value {value:?} for {key}: {reason}"))
    };
    match broker_key(key)? {
        // Named as the broker config, not the topic config it sets.
        BrokerKey::TopicDefault(def) => {
            topic_config::check(def.name, value).map_err(|error| match error {
                Error::InvalidConfig { reason, .. } => invalid_value(reason),
                other => other,
            })
        }
        BrokerKey::Stored { per_broker: true, .. } if cluster_default => {
            Err(Error::InvalidRequest(format!(
                "{key} is set per broker only, as in Kafka: use the broker's id as the resource name, not the cluster default"
            )))
        }
        found @ BrokerKey::Stored { .. } => {
            let trimmed = value.trim();
            match found.kind() {
                kind::LONG => match trimmed.parse::<i64>() {
                    Ok(number) if number >= 0 => Ok(number.to_string()),
                    _ => Err(invalid_value("expected a whole number, 0 or more".into())),
                },
                kind::DOUBLE => match trimmed.parse::<f64>() {
                    Ok(number) if number >= 0.0 => Ok(trimmed.to_string()),
                    _ => Err(invalid_value("expected a number, 0 or more".into())),
                },
                _ => Ok(trimmed.to_string()),
            }
        }
    }
}

/// One group config (Kafka 4.0's `GroupConfig`).
#[derive(Debug, Clone, Copy)]
pub struct GroupConfigDef {
    /// The group config's name.
    pub name: &'static str,
    /// The broker property that sets its default.
    pub broker_default: Property,
    /// The broker properties bounding it from below and above.
    pub min: Property,
    /// See `min`.
    pub max: Property,
}

/// A broker property and Kafka's default of it.
pub type Property = (&'static str, i32);

/// Every group config but `share.auto.offset.reset` (a string), sorted by name.
pub const GROUP_CONFIGS: &[GroupConfigDef] = &[
    GroupConfigDef {
        name: "consumer.heartbeat.interval.ms",
        broker_default: ("group.consumer.heartbeat.interval.ms", 5000),
        min: ("group.consumer.min.heartbeat.interval.ms", 5000),
        max: ("group.consumer.max.heartbeat.interval.ms", 15000),
    },
    GroupConfigDef {
        name: "consumer.session.timeout.ms",
        broker_default: ("group.consumer.session.timeout.ms", 45000),
        min: ("group.consumer.min.session.timeout.ms", 45000),
        max: ("group.consumer.max.session.timeout.ms", 60000),
    },
    GroupConfigDef {
        name: "share.heartbeat.interval.ms",
        broker_default: ("group.share.heartbeat.interval.ms", 5000),
        min: ("group.share.min.heartbeat.interval.ms", 5000),
        max: ("group.share.max.heartbeat.interval.ms", 15000),
    },
    GroupConfigDef {
        name: "share.record.lock.duration.ms",
        broker_default: ("group.share.record.lock.duration.ms", 30000),
        min: ("group.share.min.record.lock.duration.ms", 15000),
        max: ("group.share.max.record.lock.duration.ms", 60000),
    },
    GroupConfigDef {
        name: "share.session.timeout.ms",
        broker_default: ("group.share.session.timeout.ms", 45000),
        min: ("group.share.min.session.timeout.ms", 45000),
        max: ("group.share.max.session.timeout.ms", 60000),
    },
];

/// `share.auto.offset.reset`: the one group config that is not a number.
pub const SHARE_AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";

/// Every group config name, sorted.
pub fn group_names() -> impl Iterator<Item = &'static str> {
    let mut names: Vec<&'static str> = GROUP_CONFIGS.iter().map(|def| def.name).collect();
    names.push(SHARE_AUTO_OFFSET_RESET);
    names.sort_unstable();
    names.into_iter()
}

/// A broker property the group configs read: set in the config file, else Kafka's default.
fn group_property(settings: &Settings, (key, default): (&str, i32)) -> i32 {
    // `BrokerConfig::validate` parsed it already.
    settings.properties.get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// The broker-level value of a group config and its source.
pub fn group_default(settings: &Settings, name: &str) -> Option<(String, i8)> {
    if name == SHARE_AUTO_OFFSET_RESET {
        return Some(("latest".to_string(), source::DEFAULT));
    }
    let def = GROUP_CONFIGS.iter().find(|d| d.name == name)?;
    let set = settings.properties.contains_key(def.broker_default.0);
    let source = if set { source::STATIC_BROKER } else { source::DEFAULT };
    Some((group_property(settings, def.broker_default).to_string(), source))
}

/// Checks a group's whole set of configs as Kafka does (names, types, the broker's bounds,
/// session timeouts above heartbeat intervals), normalising the values in place.
pub fn check_group(settings: &Settings, configs: &mut BTreeMap<String, String>) -> Result<()> {
    let invalid = |key: &str, value: &str, reason: String| Error::InvalidConfig {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    for (key, value) in configs.iter_mut() {
        if key == SHARE_AUTO_OFFSET_RESET {
            if !matches!(value.trim(), "latest" | "earliest") {
                return Err(invalid(key, value, "use latest or earliest".into()));
            }
            *value = value.trim().to_string();
            continue;
        }
        let Some(def) = GROUP_CONFIGS.iter().find(|d| d.name == key) else {
            let names: Vec<_> = group_names().collect();
            return Err(invalid(
                key,
                value,
                format!("unknown group config; use one of {}", names.join(", ")),
            ));
        };
        let number: i32 = value
            .trim()
            .parse()
            .map_err(|_| invalid(key, value, "expected a whole number".into()))?;
        let (low, high) = (group_property(settings, def.min), group_property(settings, def.max));
        if !(low..=high).contains(&number) {
            return Err(invalid(
                key,
                value,
                format!("must be from {low} ({}) to {high} ({})", def.min.0, def.max.0),
            ));
        }
        *value = number.to_string();
    }
    let effective = |name: &str| -> i32 {
        configs
            .get(name)
            .and_then(|v| v.parse().ok())
            .or_else(|| group_default(settings, name).and_then(|(v, _)| v.parse().ok()))
            .unwrap_or(0)
    };
    for prefix in ["consumer", "share"] {
        let session = format!("{prefix}.session.timeout.ms");
        let heartbeat = format!("{prefix}.heartbeat.interval.ms");
        if effective(&session) <= effective(&heartbeat) {
            let value = effective(&session).to_string();
            return Err(invalid(&session, &value, format!("must be greater than {heartbeat}")));
        }
    }
    Ok(())
}

/// IncrementalAlterConfigs operations.
pub const OP_SET: i8 = 0;
/// Back to the default.
pub const OP_DELETE: i8 = 1;
/// Add to a list.
pub const OP_APPEND: i8 = 2;
/// Remove from a list.
pub const OP_SUBTRACT: i8 = 3;

/// One IncrementalAlterConfigs operation: the config, the operation, its value.
pub type Op = (String, i8, Option<String>);

/// Applies IncrementalAlterConfigs operations to one resource's `configs`, as Kafka does:
/// a key at most once; APPEND and SUBTRACT only on lists (`list_default` gives the default a
/// list starts from when unset, `None` for a config that is no list); every value set goes
/// through `check`.
pub fn apply_ops(
    configs: &mut BTreeMap<String, String>,
    ops: &[Op],
    list_default: impl Fn(&str) -> Option<String>,
    check: impl Fn(&str, &str) -> Result<String>,
) -> Result<()> {
    if ops.len() > DYNAMIC_CONFIG_KEYS_MAX {
        return Err(too_many());
    }
    let mut seen = HashSet::with_capacity(ops.len());
    for (key, _, _) in ops {
        if !seen.insert(key.as_str()) {
            return Err(Error::InvalidRequest(format!(
                "config {key} appears more than once in one resource; give each config one operation"
            )));
        }
    }
    for (key, op, value) in ops {
        let value = value.as_deref().unwrap_or_default();
        match *op {
            OP_SET => {
                configs.insert(key.clone(), check(key, value)?);
            }
            OP_DELETE => {
                configs.remove(key);
            }
            OP_APPEND | OP_SUBTRACT => {
                let Some(default) = list_default(key) else {
                    return Err(Error::InvalidConfig {
                        key: key.clone(),
                        value: value.to_string(),
                        reason: "APPEND and SUBTRACT apply to list configs only; use SET".into(),
                    });
                };
                let current = configs.get(key).cloned().unwrap_or(default);
                let mut items: Vec<String> = current
                    .split(',')
                    .map(|item| item.trim().to_string())
                    .filter(|item| !item.is_empty())
                    .collect();
                let given = value.split(',').map(str::trim).filter(|item| !item.is_empty());
                if *op == OP_APPEND {
                    let mut present: HashSet<String> = items.iter().cloned().collect();
                    for item in given {
                        if present.insert(item.to_string()) {
                            items.push(item.to_string());
                        }
                    }
                } else {
                    let given: HashSet<&str> = given.collect();
                    items.retain(|item| !given.contains(item.as_str()));
                }
                configs.insert(key.clone(), check(key, &items.join(","))?);
            }
            other => {
                return Err(Error::InvalidRequest(format!(
                    "config operation {other} on {key} is not one of 0 (SET), 1 (DELETE), 2 (APPEND), 3 (SUBTRACT)"
                )))
            }
        }
    }
    check_count(configs)
}

fn too_many() -> Error {
    Error::LimitExceeded {
        what: "configs per resource",
        limit: DYNAMIC_CONFIG_KEYS_MAX as u64,
        hint: "set fewer configs on one resource",
    }
}

/// Refuses a set of configs larger than one resource may hold.
pub fn check_count(configs: &BTreeMap<String, String>) -> Result<()> {
    if configs.len() > DYNAMIC_CONFIG_KEYS_MAX {
        return Err(too_many());
    }
    Ok(())
}

/// The dynamic configs in memory, loaded from the store at start; each change is written
/// to the store before it is applied here. Readers (DescribeConfigs, on the async runtime)
/// take short read locks; changes are serialised by their own mutexes, held across the
/// store write, which readers never wait for.
#[derive(Debug, Default)]
pub struct DynamicConfigs {
    broker: RwLock<Arc<BrokerLevels>>,
    /// Held for the whole of a broker-level change.
    pub broker_changes: Mutex<()>,
    groups: RwLock<BTreeMap<String, BTreeMap<String, String>>>,
    /// Held for the whole of a group-config change.
    pub group_changes: Mutex<()>,
}

impl DynamicConfigs {
    /// Loads the configs stored for this broker, the cluster default and groups, and the
    /// topic defaults they make. A stored config that no longer passes its check (a stricter
    /// later version) is left out with an error logged, as Kafka skips an invalid dynamic
    /// config, so the broker still starts; the next change of its level rewrites it away.
    pub fn load(
        store: &crate::store::Store,
        settings: &Settings,
    ) -> Result<(DynamicConfigs, TopicDefaults)> {
        let mut brokers = store.dynamic_configs(BROKER)?;
        let mut keep_valid = |name: &str, cluster_default: bool| -> BTreeMap<String, String> {
            let mut configs = brokers.remove(name).unwrap_or_default();
            configs.retain(|key, value| match check_broker(key, value, cluster_default) {
                Ok(_) => true,
                Err(error) => {
                    tracing::error!(key = %key, %error, "stored dynamic broker config ignored");
                    false
                }
            });
            configs
        };
        let mut levels = BrokerLevels {
            cluster_default: keep_valid("", true),
            broker: keep_valid(&settings.node_id.to_string(), false),
        };
        let defaults = match TopicDefaults::new(settings, &levels) {
            Ok(defaults) => defaults,
            Err(error) => {
                tracing::error!(%error, "stored dynamic broker configs ignored: together they are invalid");
                levels = BrokerLevels::default();
                TopicDefaults::new(settings, &levels)?
            }
        };
        let mut groups = store.dynamic_configs(GROUP)?;
        groups.retain(|group, configs| match check_group(settings, configs) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(group = %group, %error, "stored group configs ignored");
                false
            }
        });
        let dynamic = DynamicConfigs {
            broker: RwLock::new(Arc::new(levels)),
            broker_changes: Mutex::new(()),
            groups: RwLock::new(groups),
            group_changes: Mutex::new(()),
        };
        Ok((dynamic, defaults))
    }

    /// The broker levels now.
    pub fn broker_levels(&self) -> Arc<BrokerLevels> {
        Arc::clone(&self.broker.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Publishes new broker levels (after they were stored and applied).
    pub fn set_broker_levels(&self, levels: BrokerLevels) {
        *self.broker.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(levels);
    }

    /// A copy of one group's configs.
    pub fn group(&self, group_id: &str) -> BTreeMap<String, String> {
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        groups.get(group_id).cloned().unwrap_or_default()
    }

    /// How many groups have configs, and whether `group_id` is one of them.
    pub fn group_count(&self, group_id: &str) -> (usize, bool) {
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        (groups.len(), groups.contains_key(group_id))
    }

    /// Publishes a group's configs (after they were stored); none removes the group.
    pub fn set_group(&self, group_id: &str, configs: BTreeMap<String, String>) {
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        if configs.is_empty() {
            groups.remove(group_id);
        } else {
            groups.insert(group_id.to_string(), configs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        crate::config::BrokerConfig::new("/tmp/unused").validate().unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn broker_keys_are_classified_as_kafka_does() {
        assert!(matches!(broker_key("log.retention.ms"), Ok(BrokerKey::TopicDefault(_))));
        assert!(matches!(broker_key("message.max.bytes"), Ok(BrokerKey::TopicDefault(_))));
        assert!(matches!(
            broker_key("background.threads"),
            Ok(BrokerKey::Stored { per_broker: false, .. })
        ));
        assert!(matches!(
            broker_key("sasl.kerberos.min.time.before.relogin"),
            Ok(BrokerKey::Stored { per_broker: true, .. })
        ));
        let stat = broker_key("log.dirs").unwrap_err();
        assert!(stat.to_string().contains("restart"), "{stat}");
        assert_eq!(stat.code(), 42, "INVALID_REQUEST");
        assert!(
            matches!(broker_key("plugin.setting"), Ok(BrokerKey::Stored { .. })),
            "Kafka stores unknown names"
        );
        assert_eq!(broker_key("ssl.keystore.location").unwrap_err().code(), 42, "SSL per listener");
        let mechanisms = broker_key("listener.name.x.sasl.enabled.mechanisms").unwrap();
        assert_eq!(mechanisms.list_default(), Some("GSSAPI"));
        let secret = check_broker("ssl.keystore.password", "hunter2", false).unwrap_err();
        assert!(!secret.to_string().contains("hunter2"), "{secret}");
        let renamed = check_broker("log.retention.ms", "soon", true).unwrap_err();
        assert!(renamed.to_string().contains("log.retention.ms"), "{renamed}");
        assert_eq!(renamed.code(), 42, "Kafka answers INVALID_REQUEST for a bad broker value");
        assert!(check_broker("sasl.kerberos.min.time.before.relogin", "1", true).is_err());
        assert!(check_broker("sasl.kerberos.min.time.before.relogin", "1", false).is_ok());
        assert!(check_broker("background.threads", "many", false).is_err());
        assert_eq!(check_broker("background.threads", " 9 ", true).unwrap(), "9");
        assert!(check_broker("log.retention.ms", "soon", true).is_err());
    }

    #[test]
    fn levels_reach_the_topic_defaults_broker_first() {
        let settings = settings();
        let levels = BrokerLevels {
            cluster_default: map(&[("log.retention.ms", "1000"), ("log.segment.bytes", "100000")]),
            broker: map(&[("log.retention.ms", "2000"), ("compression.type", "zstd")]),
        };
        let defaults = TopicDefaults::new(&settings, &levels).unwrap();
        assert_eq!(defaults.log.retention_ms, 2000);
        assert_eq!(defaults.log.segment_bytes, 100_000);
        assert_eq!(defaults.compression.kind, "zstd");
        assert_eq!(levels.get("log.retention.ms"), Some(("2000", source::DYNAMIC_BROKER)));
        assert_eq!(
            levels.get("log.segment.bytes"),
            Some(("100000", source::DYNAMIC_DEFAULT_BROKER))
        );
        let empty = TopicDefaults::new(&settings, &BrokerLevels::default()).unwrap();
        assert_eq!(empty.log, settings.log_defaults);
    }

    #[test]
    fn incremental_operations_follow_kafka() {
        let list = |key: &str| (key == "log.cleanup.policy").then(|| "delete".to_string());
        let ok = |_: &str, v: &str| Ok(v.to_string());
        let op = |k: &str, o: i8, v: &str| (k.to_string(), o, Some(v.to_string()));
        let mut configs = BTreeMap::new();
        apply_ops(&mut configs, &[op("log.cleanup.policy", OP_APPEND, "compact")], list, ok)
            .unwrap();
        assert_eq!(
            configs["log.cleanup.policy"], "delete,compact",
            "APPEND starts from the default"
        );
        apply_ops(&mut configs, &[op("log.cleanup.policy", OP_SUBTRACT, "compact")], list, ok)
            .unwrap();
        assert_eq!(configs["log.cleanup.policy"], "delete");
        apply_ops(&mut configs, &[op("background.threads", OP_SET, "9")], list, ok).unwrap();
        apply_ops(&mut configs, &[op("background.threads", OP_DELETE, "")], list, ok).unwrap();
        assert!(!configs.contains_key("background.threads"));
        let append = apply_ops(&mut configs, &[op("x", OP_APPEND, "1")], list, ok).unwrap_err();
        assert_eq!(append.code(), 40);
        let twice = [op("a", OP_SET, "1"), op("a", OP_DELETE, "")];
        assert_eq!(apply_ops(&mut configs, &twice, list, ok).unwrap_err().code(), 42);
        assert_eq!(apply_ops(&mut configs, &[op("a", 9, "")], list, ok).unwrap_err().code(), 42);
    }

    #[test]
    fn group_configs_are_checked_against_the_broker_bounds() {
        let settings = settings();
        let mut ok = map(&[("consumer.session.timeout.ms", " 50000 ")]);
        check_group(&settings, &mut ok).unwrap();
        assert_eq!(ok["consumer.session.timeout.ms"], "50000");
        for bad in [
            ("consumer.session.timeout.ms", "1000"),
            ("consumer.session.timeout.ms", "soon"),
            ("consumer.heartbeat.interval.ms", "20000"),
            ("share.auto.offset.reset", "middle"),
            ("no.such.config", "1"),
        ] {
            let error = check_group(&settings, &mut map(&[bad])).unwrap_err();
            assert_eq!(error.code(), 40, "{bad:?}: {error}");
        }
        assert_eq!(group_default(&settings, "consumer.session.timeout.ms").unwrap().0, "45000");
        assert_eq!(group_names().count(), 6);
    }
}
