//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs.
use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{alter_configs_response, incremental_alter_configs_response};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, TopicName,
};

use super::text;
use crate::dynamic_config::{self, BrokerLevels, TopicDefaults};
use crate::limits::{DYNAMIC_CONFIG_BYTES_MAX, GROUPS_MAX};
use crate::state::State;
use crate::topic_config::{self, source, TOPIC_CONFIGS};
use crate::{Error, Result};

/// DescribeConfigs resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;

pub(crate) fn create_topics(
    state: &State,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let name = wanted.name.to_string();
            let configs: BTreeMap<String, String> = wanted
                .configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                .collect();
            let assigned = !wanted.assignments.is_empty();
            let partitions =
                if assigned { wanted.assignments.len() as i32 } else { wanted.num_partitions };
            let bad_assignment = wanted.assignments.iter().any(|a| {
                a.broker_ids.iter().any(|b| b.0 != state.settings.node_id) || a.broker_ids.len() > 1
            });
            let outcome = if bad_assignment {
                Err(Error::InvalidReplicationFactor(2))
            } else if request.validate_only {
                state
                    .topics
                    .check_create(
                        &state.settings,
                        &name,
                        partitions,
                        wanted.replication_factor,
                        &configs,
                    )
                    .map(|(p, _, c)| (p, c, uuid::Uuid::nil()))
            } else {
                state
                    .topics
                    .create(
                        &state.settings,
                        &state.store,
                        &name,
                        partitions,
                        wanted.replication_factor,
                        &configs,
                    )
                    .map(|t| (t.partitions.len() as i32, t.configs.clone(), t.id))
            };
            match outcome {
                Ok((partitions, overrides, id)) => CreatableTopicResult::default()
                    .with_name(wanted.name)
                    .with_error_message(None)
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
                    .with_configs((version >= 5).then(|| created_configs(state, &overrides))),
                Err(error) => {
                    tracing::debug!(topic = %name, %error, "create topic refused");
                    CreatableTopicResult::default()
                        .with_name(wanted.name)
                        .with_error_code(error.code())
                        .with_error_message(Some(text(error.to_string())))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                }
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn created_configs(
    state: &State,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    let levels = state.dynamic.broker_levels();
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = match overrides.get(def.name) {
                Some(v) => (v.clone(), source::TOPIC),
                None => topic_config::broker_value(&state.settings, &levels, def),
            };
            CreatableTopicConfigs::default()
                .with_name(text(def.name))
                .with_value(Some(text(value)))
                .with_config_source(source)
        })
        .collect()
}

pub(crate) fn delete_topics(state: &State, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id); earlier versions in `topic_names`.
    let mut wanted: Vec<(Option<String>, uuid::Uuid)> =
        request.topic_names.iter().map(|n| (Some(n.to_string()), uuid::Uuid::nil())).collect();
    wanted.extend(
        request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id)),
    );
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let name = name.or_else(|| state.topics.get_by_id(id).map(|t| t.name.clone()));
            let outcome = match &name {
                Some(name) => state.topics.delete(&state.store, name).map(|t| t.id),
                None => Err(Error::UnknownTopic(id.to_string())),
            };
            let result =
                DeletableTopicResult::default().with_name(name.map(|n| TopicName(text(n))));
            match outcome {
                Ok(id) => {
                    state.groups.forget_topic(
                        &result.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                    );
                    result.with_topic_id(id)
                }
                Err(error) => result
                    .with_topic_id(id)
                    .with_error_code(error.code())
                    .with_error_message(Some(text(error.to_string()))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(crate) fn create_partitions(
    state: &State,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|wanted| {
            let outcome = state.topics.add_partitions(
                &state.store,
                &wanted.name,
                wanted.count,
                request.validate_only,
            );
            let result = CreatePartitionsTopicResult::default().with_name(wanted.name);
            match outcome {
                Ok(()) => result,
                Err(error) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(text(error.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

pub(crate) fn describe_configs(
    state: &State,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let levels = state.dynamic.broker_levels();
    let flags = (request.include_synonyms, request.include_documentation);
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let keys: Option<Vec<String>> =
                resource.configuration_keys.map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
            let name = resource.resource_name.as_str();
            let configs = match resource.resource_type {
                RESOURCE_TOPIC => match state.topics.get(name) {
                    Some(topic) => Ok(topic_entries(state, &levels, &topic.configs, flags, &wanted)),
                    None => Err(Error::UnknownTopic(name.to_string())),
                },
                RESOURCE_BROKER => broker_entries(state, &levels, name, flags, &wanted),
                RESOURCE_GROUP => group_entries(state, name, flags.0, &wanted),
                other => Err(Error::InvalidRequest(format!(
                    "resource type {other} is not supported; use 2 (topic), 4 (broker) or 32 (group)"
                ))),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            match configs {
                Ok(configs) => result.with_error_message(None).with_configs(configs),
                Err(error) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(text(error.to_string()))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// What DescribeConfigs says of a config sluice stores but does not act on.
const NO_EFFECT: &str = "Stored and described for compatibility; sluice does not act on it (single node, no compaction, tiered storage, thread pools, SASL or SSL).";

fn topic_entries(
    state: &State,
    levels: &BrokerLevels,
    overrides: &BTreeMap<String, String>,
    (synonyms, documentation): (bool, bool),
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<DescribeConfigsResourceResult> {
    TOPIC_CONFIGS
        .iter()
        .filter(|def| wanted(def.name))
        .map(|def| {
            let (value, source) = match overrides.get(def.name) {
                Some(v) => (v.clone(), source::TOPIC),
                None => topic_config::broker_value(&state.settings, levels, def),
            };
            let mut list = Vec::new();
            if synonyms {
                if let Some(v) = overrides.get(def.name) {
                    list.push(synonym(def.name, v, source::TOPIC));
                }
                if let Some(key) = def.broker_synonym {
                    if let Some(v) = levels.broker.get(key) {
                        list.push(synonym(key, v, source::DYNAMIC_BROKER));
                    }
                    if let Some(v) = levels.cluster_default.get(key) {
                        list.push(synonym(key, v, source::DYNAMIC_DEFAULT_BROKER));
                    }
                    let (value, source) = topic_config::static_broker_value(&state.settings, def);
                    list.push(synonym(key, &value, source));
                }
            }
            DescribeConfigsResourceResult::default()
                .with_name(text(def.name))
                .with_value(Some(text(value)))
                .with_config_source(source)
                .with_synonyms(list)
                .with_config_type(def.kind)
                .with_documentation((documentation && !def.effect).then(|| text(NO_EFFECT)))
        })
        .collect()
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(text(name))
        .with_value(Some(text(value)))
        .with_source(source)
}

/// Whether a BROKER resource name means the cluster-wide default (the empty name) rather
/// than this broker (its id); any other name is refused.
fn cluster_default(state: &State, name: &str) -> Result<bool> {
    let node_id = state.settings.node_id;
    if name.is_empty() {
        return Ok(true);
    }
    match name.trim().parse::<i32>() {
        Ok(id) if id == node_id => Ok(false),
        Ok(id) => Err(Error::InvalidRequest(format!(
            "broker {id} is not in this cluster: sluice is the single broker {node_id}"
        ))),
        Err(_) => Err(Error::InvalidRequest(format!(
            "{name:?} is not a broker id: use {node_id}, or an empty name for the cluster-wide default"
        ))),
    }
}

fn broker_entries(
    state: &State,
    levels: &BrokerLevels,
    name: &str,
    (synonyms, documentation): (bool, bool),
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<DescribeConfigsResourceResult>> {
    let entry = |key: &str, found: &[(String, i8)]| {
        let dynamic = dynamic_config::broker_key(key).ok();
        let sensitive = dynamic_config::is_sensitive(key);
        let (value, source) =
            found.first().cloned().unwrap_or_else(|| (String::new(), source::DEFAULT));
        let list = if synonyms {
            found
                .iter()
                .map(|(v, s)| {
                    synonym(key, v, *s).with_value((!sensitive).then(|| text(v.as_str())))
                })
                .collect()
        } else {
            Vec::new()
        };
        DescribeConfigsResourceResult::default()
            .with_name(text(key))
            .with_value((!sensitive).then(|| text(value)))
            .with_read_only(dynamic.is_none())
            .with_is_sensitive(sensitive)
            .with_config_source(source)
            .with_synonyms(list)
            .with_config_type(dynamic.map_or(topic_config::kind::STRING, |k| k.kind()))
            .with_documentation(
                (documentation && dynamic.is_some_and(|k| !k.effect())).then(|| text(NO_EFFECT)),
            )
    };
    if cluster_default(state, name)? {
        // Kafka describes only what is set at the default level there.
        return Ok(levels
            .cluster_default
            .iter()
            .filter(|(key, _)| wanted(key))
            .map(|(key, value)| entry(key, &[(value.clone(), source::DYNAMIC_DEFAULT_BROKER)]))
            .collect());
    }
    let mut names: Vec<&str> = dynamic_config::broker_names().collect();
    names.extend(levels.broker.keys().map(String::as_str));
    names.extend(levels.cluster_default.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    Ok(names
        .into_iter()
        .filter(|key| wanted(key))
        .map(|key| {
            let mut found = Vec::new();
            if let Some(v) = levels.broker.get(key) {
                found.push((v.clone(), source::DYNAMIC_BROKER));
            }
            if let Some(v) = levels.cluster_default.get(key) {
                found.push((v.clone(), source::DYNAMIC_DEFAULT_BROKER));
            }
            let synonym_of = TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == Some(key));
            if let Some(def) = synonym_of {
                // What the broker derives from the file (log.retention.hours sets
                // log.retention.ms), as topics see it.
                found.push(topic_config::static_broker_value(&state.settings, def));
            } else {
                if let Some(v) = state.settings.properties.get(key) {
                    found.push((v.clone(), source::STATIC_BROKER));
                }
                if let Some(v) = dynamic_config::broker_default(key) {
                    found.push((v.to_string(), source::DEFAULT));
                }
            }
            entry(key, &found)
        })
        .collect())
}

fn group_entries(
    state: &State,
    group_id: &str,
    synonyms: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<DescribeConfigsResourceResult>> {
    if group_id.is_empty() {
        return Err(Error::InvalidRequest("a GROUP config resource needs a group id".into()));
    }
    let set = state.dynamic.group(group_id);
    Ok(dynamic_config::group_names()
        .filter(|name| wanted(name))
        .map(|name| {
            let (default, default_source) = dynamic_config::group_default(&state.settings, name)
                .unwrap_or_else(|| (String::new(), source::DEFAULT));
            let (value, source) = match set.get(name) {
                Some(v) => (v.clone(), source::GROUP),
                None => (default.clone(), default_source),
            };
            let mut list = Vec::new();
            if synonyms {
                if let Some(v) = set.get(name) {
                    list.push(synonym(name, v, source::GROUP));
                }
                let broker = dynamic_config::GROUP_CONFIGS.iter().find(|d| d.name == name);
                let broker_name = broker.map_or(name, |d| d.broker_default.0);
                list.push(synonym(broker_name, &default, default_source));
            }
            let kind = if name == dynamic_config::SHARE_AUTO_OFFSET_RESET {
                topic_config::kind::STRING
            } else {
                topic_config::kind::INT
            };
            DescribeConfigsResourceResult::default()
                .with_name(text(name))
                .with_value(Some(text(value)))
                .with_config_source(source)
                .with_synonyms(list)
                .with_config_type(kind)
        })
        .collect())
}

/// A change to one resource's configs.
enum Change {
    /// AlterConfigs: the whole set of configs at that resource's level, replaced.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs: operations on single configs.
    Incremental(Vec<dynamic_config::Op>),
}

impl Change {
    /// Applies this change to `configs`; `list_default` and `check` as in
    /// [`dynamic_config::apply_ops`].
    fn apply(
        &self,
        configs: &mut BTreeMap<String, String>,
        list_default: impl Fn(&str) -> Option<String>,
        check: impl Fn(&str, &str) -> Result<String>,
    ) -> Result<()> {
        match self {
            Change::Replace(pairs) => {
                configs.clear();
                for (key, value) in pairs {
                    if let Some(value) = value {
                        configs.insert(key.clone(), check(key, value)?);
                    }
                }
                dynamic_config::check_count(configs)
            }
            Change::Incremental(ops) => {
                dynamic_config::apply_ops(configs, ops, list_default, check)
            }
        }
    }

    /// Every config it gives a value (DELETE removes whatever it names, as in Kafka).
    fn set_keys(&self) -> Vec<&str> {
        match self {
            Change::Replace(pairs) => pairs.iter().map(|(k, _)| k.as_str()).collect(),
            Change::Incremental(ops) => ops
                .iter()
                .filter(|(_, op, _)| *op != dynamic_config::OP_DELETE)
                .map(|(k, _, _)| k.as_str())
                .collect(),
        }
    }

    /// Refuses an AlterConfigs entry without a value, as Kafka does for broker and group
    /// resources (it means nothing there: a config left out goes back to its default).
    fn refuse_nulls(&self) -> Result<()> {
        match self {
            Change::Replace(pairs) => match pairs.iter().find(|(_, value)| value.is_none()) {
                Some((key, _)) => Err(Error::InvalidRequest(format!(
                    "null value for {key}: leave a config out of AlterConfigs to reset it"
                ))),
                None => Ok(()),
            },
            Change::Incremental(_) => Ok(()),
        }
    }
}

/// Applies a change to one resource: `Ok` when done (or validated).
fn alter_resource(
    state: &State,
    resource_type: i8,
    name: &str,
    change: Change,
    validate_only: bool,
) -> Result<()> {
    match resource_type {
        RESOURCE_TOPIC => {
            let topic =
                state.topics.get(name).ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
            let mut configs = topic.configs.clone();
            let list_default = |key: &str| {
                topic_config::find(key)
                    .filter(|def| def.kind == topic_config::kind::LIST)
                    .map(|def| def.default.to_string())
            };
            change.apply(&mut configs, list_default, topic_config::check)?;
            state.topics.set_configs(&state.store, name, configs, validate_only)
        }
        RESOURCE_BROKER => alter_broker(state, name, change, validate_only),
        RESOURCE_GROUP => alter_group(state, name, change, validate_only),
        other => Err(Error::InvalidRequest(format!(
            "resource type {other} has no configs to alter; use 2 (topic), 4 (broker) or 32 (group)"
        ))),
    }
}

/// Changes this broker's dynamic configs (or the cluster default's): checked, then written
/// to the store, then applied to every topic that does not override them. Every refusal is
/// INVALID_REQUEST, as Kafka answers for broker resources (KAFKA-13609).
fn alter_broker(state: &State, name: &str, change: Change, validate_only: bool) -> Result<()> {
    let as_invalid_request = |error: Error| match error {
        Error::InvalidConfig { .. } => Error::InvalidRequest(error.to_string()),
        other => other,
    };
    let cluster_default = cluster_default(state, name)?;
    change.refuse_nulls()?;
    for key in change.set_keys() {
        dynamic_config::broker_key(key)?;
    }
    let _changes = state.dynamic.broker_changes.lock().unwrap_or_else(|p| p.into_inner());
    let mut next = BrokerLevels::clone(&state.dynamic.broker_levels());
    let configs = if cluster_default { &mut next.cluster_default } else { &mut next.broker };
    let list_default = |key: &str| {
        dynamic_config::broker_key(key).ok().and_then(|k| k.list_default()).map(str::to_string)
    };
    let check = |key: &str, value: &str| dynamic_config::check_broker(key, value, cluster_default);
    change.apply(configs, list_default, check).map_err(as_invalid_request)?;
    let stored = configs.clone();
    let defaults = TopicDefaults::new(&state.settings, &next).map_err(as_invalid_request)?;
    let store_name =
        if cluster_default { String::new() } else { state.settings.node_id.to_string() };
    let persist = || state.store.put_dynamic_configs(dynamic_config::BROKER, &store_name, &stored);
    state.topics.replace_defaults(defaults, validate_only, persist).map_err(as_invalid_request)?;
    if !validate_only {
        // Names only: values may be anything a user typed.
        let keys: Vec<&str> = stored.keys().map(String::as_str).collect();
        let level = if cluster_default { "cluster default" } else { "this broker" };
        tracing::info!(level, ?keys, "dynamic broker configs replaced");
        state.dynamic.set_broker_levels(next);
    }
    Ok(())
}

/// Changes a group's configs (Kafka 4.0 group configs): checked as a whole, then stored.
fn alter_group(state: &State, group_id: &str, change: Change, validate_only: bool) -> Result<()> {
    if group_id.is_empty() {
        return Err(Error::InvalidRequest("a GROUP config resource needs a group id".into()));
    }
    if group_id.len() > DYNAMIC_CONFIG_BYTES_MAX {
        return Err(Error::InvalidRequest(format!(
            "a group id of {} bytes; group configs take ids up to {DYNAMIC_CONFIG_BYTES_MAX}",
            group_id.len()
        )));
    }
    change.refuse_nulls()?;
    let _changes = state.dynamic.group_changes.lock().unwrap_or_else(|p| p.into_inner());
    let mut configs = state.dynamic.group(group_id);
    change.apply(&mut configs, |_| None, |_, value| Ok(value.to_string()))?;
    dynamic_config::check_group(&state.settings, &mut configs)?;
    let (count, known) = state.dynamic.group_count(group_id);
    if !known && !configs.is_empty() && count >= GROUPS_MAX {
        return Err(Error::LimitExceeded {
            what: "groups with configs",
            limit: GROUPS_MAX as u64,
            hint: "delete the configs of groups no longer used",
        });
    }
    if validate_only {
        return Ok(());
    }
    state.store.put_dynamic_configs(dynamic_config::GROUP, group_id, &configs)?;
    state.dynamic.set_group(group_id, configs);
    Ok(())
}

pub(crate) fn alter_configs(state: &State, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let pairs = resource
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            let outcome = alter_resource(
                state,
                resource.resource_type,
                &resource.resource_name,
                Change::Replace(pairs),
                request.validate_only,
            );
            let response = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            match outcome {
                Ok(()) => response.with_error_message(None),
                Err(error) => response
                    .with_error_code(error.code())
                    .with_error_message(Some(text(error.to_string()))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub(crate) fn incremental_alter_configs(
    state: &State,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let ops = resource
                .configs
                .iter()
                .map(|c| {
                    let value = c.value.as_ref().map(|v| v.to_string());
                    (c.name.to_string(), c.config_operation, value)
                })
                .collect();
            let outcome = alter_resource(
                state,
                resource.resource_type,
                &resource.resource_name,
                Change::Incremental(ops),
                request.validate_only,
            );
            let response =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name);
            match outcome {
                Ok(()) => response.with_error_message(None),
                Err(error) => response
                    .with_error_code(error.code())
                    .with_error_message(Some(text(error.to_string()))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
