//! CreateTopics: validate names, partition counts, replication factors and configs, then commit
//! each topic through the metadata store (or only validate, with validate_only).

use std::collections::BTreeMap;
use std::sync::Arc;

use chronik_meta::plan::CreateTopic;
use chronik_meta::topic_config;
use chronik_meta::Command;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let mut configs = BTreeMap::new();
        for c in &topic.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        let assignments = (!topic.assignments.is_empty()).then(|| {
            let mut a = topic.assignments.clone();
            a.sort_by_key(|a| a.partition_index);
            a.into_iter()
                .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
                .collect()
        });
        let state = broker.meta.state();
        let req = CreateTopic {
            name: name.clone(),
            partitions: if topic.num_partitions == -1 {
                broker.config.default_partitions
            } else {
                topic.num_partitions
            },
            replication_factor: if topic.replication_factor == -1 {
                broker
                    .config
                    .default_replication_factor
                    .min(state.brokers.len().max(1) as i16)
            } else {
                topic.replication_factor
            },
            assignments,
            configs,
        };
        match broker.create_topic(&req, request.validate_only).await {
            Ok(Command::CreateTopic {
                id,
                assignments,
                configs,
                ..
            }) => {
                let mut ok = result
                    .with_num_partitions(assignments.len() as i32)
                    .with_replication_factor(assignments.first().map_or(0, |r| r.len() as i16));
                // topic_id from v7; configs, counts and replication factor from v5
                if version >= 7 && !request.validate_only {
                    ok = ok.with_topic_id(id);
                }
                if version >= 5 {
                    ok = ok.with_configs(Some(
                        topic_config::resolve_all(&configs)
                            .into_iter()
                            .map(|c| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(c.name))
                                    .with_value(Some(str_bytes(c.value)))
                                    .with_config_source(c.source.kafka_source())
                            })
                            .collect(),
                    ));
                }
                if !request.validate_only {
                    tracing::info!(topic = %name, partitions = assignments.len(), "created topic");
                }
                results.push(ok);
            }
            Ok(_) => unreachable_command(&mut results, result),
            Err(e) => {
                let mut failed = result.with_error_code(error_codes::for_meta(&e).code());
                // error_message from v1
                if version >= 1 {
                    failed = failed.with_error_message(Some(str_bytes(e.to_string())));
                }
                results.push(failed.with_num_partitions(-1).with_replication_factor(-1));
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// plan_create_topic only ever returns CreateTopic; anything else is a bug worth reporting
/// rather than a panic in the request path.
fn unreachable_command(results: &mut Vec<CreatableTopicResult>, result: CreatableTopicResult) {
    tracing::error!("topic creation planned an unexpected command");
    results.push(
        result.with_error_code(kafka_protocol::error::ResponseError::UnknownServerError.code()),
    );
}
