//! The topic registry: every topic's id, configs and partition logs.
//!
//! Readers take a cheap snapshot (`Arc<Topic>`) under a read lock; admin changes are
//! serialised by `admin` and replace a topic's `Arc` (copy on write), so a request that
//! holds an old snapshot keeps working on the partitions it saw.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use sluice_log::{LogConfig, Partition, PartitionLog, SyncedHook};

use crate::config::Settings;
use crate::dynamic_config::TopicDefaults;
use crate::limits::{PARTITIONS_PER_TOPIC_MAX, TOPICS_MAX, TOPIC_NAME_BYTES_MAX};
use crate::store::{Store, TopicRecord};
use crate::{topic_config, Error, Result};

/// One topic.
pub struct Topic {
    /// The name.
    pub name: String,
    /// The id.
    pub id: uuid::Uuid,
    /// Topic-level overrides.
    pub configs: BTreeMap<String, String>,
    /// The effective log config.
    pub log_config: LogConfig,
    /// The partitions, by index.
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// Partition `index`, if it exists.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }
}

/// All topics.
pub struct Topics {
    log_dir: PathBuf,
    /// Given to every partition: wakes the fetches waiting for it (`crate::wakeups`).
    synced_hook: SyncedHook,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// What topics start from before their overrides (the config file's defaults with the
    /// dynamic broker configs); replaced under `admin`.
    defaults: RwLock<Arc<TopicDefaults>>,
    admin: Mutex<()>,
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

/// Checks a topic name as Kafka does.
pub fn check_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::InvalidTopic { name: name.to_string(), reason: reason.to_string() })
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid("longer than 249 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return invalid("use only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

fn partition_dir(log_dir: &Path, topic: &str, index: i32) -> PathBuf {
    log_dir.join(format!("{topic}-{index}"))
}

impl Topics {
    /// Opens every stored topic's partitions (recovering each log).
    pub fn open(
        settings: &Settings,
        defaults: TopicDefaults,
        store: &Store,
        synced_hook: SyncedHook,
    ) -> Result<Topics> {
        let log_dir = settings.data_dir.join("log");
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| Error::Unavailable(format!("create {}: {e}", log_dir.display())))?;
        // Make `<data>/log` and `<data>/meta.redb` durable entries of `<data>`.
        std::fs::File::open(&settings.data_dir).and_then(|d| d.sync_all()).map_err(|e| {
            Error::Unavailable(format!("sync {}: {e}", settings.data_dir.display()))
        })?;
        let mut topics = BTreeMap::new();
        for (name, record) in store.topics()? {
            let log_config =
                topic_config::log_config(&defaults.log, &defaults.compression, &record.configs)?;
            let partitions = (0..record.partitions)
                .map(|i| open_partition(&log_dir, &name, i, &log_config, &synced_hook))
                .collect::<Result<Vec<_>>>()?;
            let topic = Topic {
                name: name.clone(),
                id: record.id,
                configs: record.configs,
                log_config,
                partitions,
            };
            topics.insert(name, Arc::new(topic));
        }
        remove_strays(&log_dir, &topics);
        Ok(Topics {
            log_dir,
            synced_hook,
            topics: RwLock::new(topics),
            defaults: RwLock::new(Arc::new(defaults)),
            admin: Mutex::new(()),
        })
    }

    /// The defaults topics start from before their overrides.
    pub fn defaults(&self) -> Arc<TopicDefaults> {
        Arc::clone(&self.defaults.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the defaults (a dynamic broker config changed): every topic's log config is
    /// derived again, and all are checked before `persist` runs and anything changes. With
    /// `validate_only`, only checks.
    pub fn replace_defaults(
        &self,
        defaults: TopicDefaults,
        validate_only: bool,
        persist: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let mut derived = Vec::new();
        for topic in self.all() {
            let log_config =
                topic_config::log_config(&defaults.log, &defaults.compression, &topic.configs)
                    .map_err(|error| match error {
                        Error::InvalidConfig { key, value, reason } => Error::InvalidConfig {
                            key,
                            value,
                            reason: format!(
                                "{reason} (in topic {}, with its overrides)",
                                topic.name
                            ),
                        },
                        other => other,
                    })?;
            derived.push((topic, log_config));
        }
        if validate_only {
            return Ok(());
        }
        persist()?;
        for (topic, log_config) in derived {
            for partition in &topic.partitions {
                partition.with_log(|log| log.set_config(log_config.clone()));
            }
            let updated = Topic {
                name: topic.name.clone(),
                id: topic.id,
                configs: topic.configs.clone(),
                log_config,
                partitions: topic.partitions.clone(),
            };
            self.write().insert(topic.name.clone(), Arc::new(updated));
        }
        *self.defaults.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(defaults);
        Ok(())
    }

    /// A snapshot of one topic.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().get(name).cloned()
    }

    /// A snapshot of the topic with this id.
    pub fn get_by_id(&self, id: uuid::Uuid) -> Option<Arc<Topic>> {
        self.read().values().find(|t| t.id == id).cloned()
    }

    /// Snapshots of every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a create request without changing anything; returns the effective settings.
    pub fn check_create(
        &self,
        settings: &Settings,
        name: &str,
        partitions: i32,
        replication: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(i32, LogConfig, BTreeMap<String, String>)> {
        check_name(name)?;
        if self.read().contains_key(name) {
            return Err(Error::TopicExists(name.to_string()));
        }
        if self.read().len() >= TOPICS_MAX {
            return Err(Error::LimitExceeded {
                what: "topics",
                limit: TOPICS_MAX as u64,
                hint: "delete unused topics",
            });
        }
        let partitions = if partitions == -1 { settings.num_partitions } else { partitions };
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(Error::InvalidPartitions(format!(
                "{partitions}: must be in 1..={PARTITIONS_PER_TOPIC_MAX}"
            )));
        }
        if replication != -1 && replication != 1 {
            return Err(Error::InvalidReplicationFactor(replication));
        }
        let mut checked = BTreeMap::new();
        for (key, value) in configs {
            checked.insert(key.clone(), topic_config::check(key, value)?);
        }
        let defaults = self.defaults();
        let log_config = topic_config::log_config(&defaults.log, &defaults.compression, &checked)?;
        Ok((partitions, log_config, checked))
    }

    /// Creates a topic. The partition folders are made first and the store record last, so
    /// a crash in between leaves stray folders (removed on the next start), never a topic
    /// without its logs.
    pub fn create(
        &self,
        settings: &Settings,
        store: &Store,
        name: &str,
        partitions: i32,
        replication: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<Arc<Topic>> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let (partitions, log_config, configs) =
            self.check_create(settings, name, partitions, replication, configs)?;
        for index in 0..partitions {
            remove_stale(&self.log_dir, name, index)?;
        }
        let logs = (0..partitions)
            .map(|i| open_partition(&self.log_dir, name, i, &log_config, &self.synced_hook))
            .collect::<Result<Vec<_>>>()?;
        let record = TopicRecord { id: uuid::Uuid::new_v4(), partitions, configs: configs.clone() };
        store.put_topic(name, &record)?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id: record.id,
            configs,
            log_config,
            partitions: logs,
        });
        self.write().insert(name.to_string(), Arc::clone(&topic));
        tracing::info!(topic = name, partitions, "topic created");
        Ok(topic)
    }

    /// Deletes a topic: the store record first, then the folders.
    pub fn delete(&self, store: &Store, name: &str) -> Result<Arc<Topic>> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self.get(name).ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        store.delete_topic(name)?;
        self.write().remove(name);
        for index in 0..topic.partitions.len() as i32 {
            let dir = partition_dir(&self.log_dir, name, index);
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), %error, "could not remove deleted topic's folder");
            }
        }
        tracing::info!(topic = name, "topic deleted");
        Ok(topic)
    }

    /// Raises a topic's partition count.
    pub fn add_partitions(
        &self,
        store: &Store,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<()> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self.get(name).ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(Error::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {count} must be larger"
            )));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(Error::InvalidPartitions(format!(
                "{count}: must be at most {PARTITIONS_PER_TOPIC_MAX}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let mut partitions = topic.partitions.clone();
        for index in current..count {
            remove_stale(&self.log_dir, name, index)?;
            let hook = &self.synced_hook;
            partitions.push(open_partition(&self.log_dir, name, index, &topic.log_config, hook)?);
        }
        let record =
            TopicRecord { id: topic.id, partitions: count, configs: topic.configs.clone() };
        store.put_topic(name, &record)?;
        let updated = Topic {
            name: name.to_string(),
            id: topic.id,
            configs: topic.configs.clone(),
            log_config: topic.log_config.clone(),
            partitions,
        };
        self.write().insert(name.to_string(), Arc::new(updated));
        Ok(())
    }

    /// Replaces a topic's overrides (already checked) and applies them to its logs.
    pub fn set_configs(
        &self,
        store: &Store,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<()> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self.get(name).ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        let defaults = self.defaults();
        let log_config = topic_config::log_config(&defaults.log, &defaults.compression, &configs)?;
        if validate_only {
            return Ok(());
        }
        store.put_topic(
            name,
            &TopicRecord {
                id: topic.id,
                partitions: topic.partitions.len() as i32,
                configs: configs.clone(),
            },
        )?;
        for partition in &topic.partitions {
            partition.with_log(|log| log.set_config(log_config.clone()));
        }
        let updated = Topic {
            name: name.to_string(),
            id: topic.id,
            configs,
            log_config,
            partitions: topic.partitions.clone(),
        };
        self.write().insert(name.to_string(), Arc::new(updated));
        Ok(())
    }
}

/// Removes a partition folder a failed delete left behind, so it cannot become a new
/// partition's data; refuses when it cannot be removed.
fn remove_stale(log_dir: &Path, topic: &str, index: i32) -> Result<()> {
    let dir = partition_dir(log_dir, topic, index);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| {
            Error::Unavailable(format!("stale folder {} cannot be removed: {e}", dir.display()))
        })?;
    }
    Ok(())
}

fn open_partition(
    log_dir: &Path,
    topic: &str,
    index: i32,
    config: &LogConfig,
    synced_hook: &SyncedHook,
) -> Result<Arc<Partition>> {
    let log = PartitionLog::open(&partition_dir(log_dir, topic, index), config.clone(), now_ms())?;
    Ok(Arc::new(Partition::with_synced_hook(log, Arc::clone(synced_hook))))
}

/// Removes partition folders that belong to no topic (a crash during create or delete).
fn remove_strays(log_dir: &Path, topics: &BTreeMap<String, Arc<Topic>>) {
    let Ok(entries) = std::fs::read_dir(log_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let owned = name.rsplit_once('-').is_some_and(|(topic, index)| {
            let index: Option<usize> = index.parse().ok();
            topics.get(topic).is_some_and(|t| index.is_some_and(|i| i < t.partitions.len()))
        });
        if !owned {
            tracing::warn!(dir = %entry.path().display(), "removing partition folder of no topic");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
