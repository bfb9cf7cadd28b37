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
use crate::config::BROKER_PROPERTIES;
use crate::state::State;
use crate::topic_config::{self, source, TOPIC_CONFIGS};
use crate::{Error, Result};

/// DescribeConfigs resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

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
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = match overrides.get(def.name) {
                Some(v) => (v.clone(), source::TOPIC),
                None => topic_config::broker_value(&state.settings, def),
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
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let keys: Option<Vec<String>> =
                resource.configuration_keys.map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
            let configs = match resource.resource_type {
                RESOURCE_TOPIC => match state.topics.get(&resource.resource_name) {
                    Some(topic) => Ok(topic_entries(
                        state,
                        &topic.configs,
                        (request.include_synonyms, request.include_documentation),
                        &wanted,
                    )),
                    None => Err(Error::UnknownTopic(resource.resource_name.to_string())),
                },
                RESOURCE_BROKER => Ok(broker_entries(state, &wanted)),
                other => Err(Error::InvalidRequest(format!(
                    "resource type {other} is not supported; use 2 (topic) or 4 (broker)"
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

fn topic_entries(
    state: &State,
    overrides: &BTreeMap<String, String>,
    (synonyms, documentation): (bool, bool),
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<DescribeConfigsResourceResult> {
    TOPIC_CONFIGS
        .iter()
        .filter(|def| wanted(def.name))
        .map(|def| {
            let (broker_value, broker_source) = topic_config::broker_value(&state.settings, def);
            let (value, source) = match overrides.get(def.name) {
                Some(v) => (v.clone(), source::TOPIC),
                None => (broker_value.clone(), broker_source),
            };
            let mut list = Vec::new();
            if synonyms {
                if let Some(v) = overrides.get(def.name) {
                    list.push(synonym(def.name, v, source::TOPIC));
                }
                if let Some(key) = def.broker_synonym {
                    list.push(synonym(key, &broker_value, broker_source));
                }
            }
            DescribeConfigsResourceResult::default()
                .with_name(text(def.name))
                .with_value(Some(text(value)))
                .with_config_source(source)
                .with_synonyms(list)
                .with_config_type(def.kind)
                .with_documentation((documentation && !def.effect).then(|| {
                    text("Stored and described for compatibility; sluice does not act on it (single node, no compaction or tiered storage).")
                }))
        })
        .collect()
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(text(name))
        .with_value(Some(text(value)))
        .with_source(source)
}

fn broker_entries(
    state: &State,
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<DescribeConfigsResourceResult> {
    BROKER_PROPERTIES
        .iter()
        .filter(|(name, _)| wanted(name))
        .map(|(name, default)| {
            let set = state.settings.properties.get(*name);
            let source = if set.is_some() { source::STATIC_BROKER } else { source::DEFAULT };
            let value = set.cloned().unwrap_or_else(|| default.to_string());
            DescribeConfigsResourceResult::default()
                .with_name(text(*name))
                .with_value(Some(text(value)))
                .with_read_only(true)
                .with_config_source(source)
                .with_config_type(topic_config::kind::STRING)
        })
        .collect()
}

/// Applies a change to one resource: `Ok` when done (or validated).
fn alter_resource(
    state: &State,
    resource_type: i8,
    name: &str,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<()>,
    validate_only: bool,
) -> Result<()> {
    if resource_type != RESOURCE_TOPIC {
        return Err(Error::InvalidRequest(
            "broker configs are static in sluice: set them in the config file or with --override and restart".into(),
        ));
    }
    let topic = state.topics.get(name).ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
    let mut configs = topic.configs.clone();
    change(&mut configs)?;
    state.topics.set_configs(&state.settings, &state.store, name, configs, validate_only)
}

pub(crate) fn alter_configs(state: &State, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let outcome = alter_resource(
                state,
                resource.resource_type,
                &resource.resource_name,
                |configs| {
                    // AlterConfigs replaces the whole set of overrides.
                    configs.clear();
                    for c in &resource.configs {
                        if let Some(value) = &c.value {
                            configs
                                .insert(c.name.to_string(), topic_config::check(&c.name, value)?);
                        }
                    }
                    Ok(())
                },
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

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub(crate) fn incremental_alter_configs(
    state: &State,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let outcome = alter_resource(
                state,
                resource.resource_type,
                &resource.resource_name,
                |configs| {
                    for c in &resource.configs {
                        let key = c.name.to_string();
                        let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                        match c.config_operation {
                            OP_SET => {
                                configs.insert(key.clone(), topic_config::check(&key, &value)?);
                            }
                            OP_DELETE => {
                                configs.remove(&key);
                            }
                            OP_APPEND | OP_SUBTRACT => {
                                let mut items: Vec<String> = configs
                                    .get(&key)
                                    .map(|v| v.split(',').map(str::to_string).collect())
                                    .unwrap_or_default();
                                if c.config_operation == OP_APPEND {
                                    items.extend(
                                        value
                                            .split(',')
                                            .map(str::to_string)
                                            .filter(|v| !items.contains(v))
                                            .collect::<Vec<_>>(),
                                    );
                                } else {
                                    items.retain(|i| !value.split(',').any(|v| v == i));
                                }
                                configs.insert(
                                    key.clone(),
                                    topic_config::check(&key, &items.join(","))?,
                                );
                            }
                            other => {
                                return Err(Error::InvalidRequest(format!(
                                    "config operation {other} is not one of 0..=3"
                                )))
                            }
                        }
                    }
                    Ok(())
                },
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
