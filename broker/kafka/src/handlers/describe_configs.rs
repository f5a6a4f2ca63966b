//! DescribeConfigs: every topic config with its effective value and source, and this broker's
//! own (read-only) settings.

use std::sync::Arc;

use chronik_meta::topic_config::{self, ConfigKind, ConfigSource, ResolvedConfig};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::Broker;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;
/// Kafka's config_source for static broker settings.
const STATIC_BROKER_CONFIG: i8 = 4;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let state = broker.meta.state();
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let configs = match resource.resource_type {
                RESOURCE_TOPIC => match state.topics.get(&name) {
                    Some(topic) => Ok(topic_config::resolve_all(&topic.configs)),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("unknown topic '{name}'"),
                    )),
                },
                RESOURCE_BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                    Ok(broker_configs(broker))
                }
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest,
                    format!("this is broker {}, not '{name}'", broker.config.node_id),
                )),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("config resource type {other} is not supported"),
                )),
            };
            match configs {
                Err((code, message)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(message))),
                Ok(configs) => result.with_configs(
                    configs
                        .into_iter()
                        .filter(|c| {
                            resource
                                .configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == c.name))
                        })
                        .map(|c| {
                            entry(
                                c,
                                resource.resource_type == RESOURCE_BROKER,
                                request.include_synonyms,
                                request.include_documentation,
                                version,
                            )
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn entry(
    c: ResolvedConfig,
    read_only: bool,
    synonyms: bool,
    documentation: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let source = if read_only {
        STATIC_BROKER_CONFIG
    } else {
        c.source.kafka_source()
    };
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(c.name))
        .with_value(Some(str_bytes(c.value.clone())))
        .with_read_only(read_only)
        .with_config_source(source);
    if synonyms && version >= 1 && c.source == ConfigSource::TopicOverride {
        e = e.with_synonyms(vec![DescribeConfigsSynonym::default()
            .with_name(str_bytes(c.name))
            .with_value(Some(str_bytes(c.value)))
            .with_source(source)]);
    }
    if version >= 3 {
        e = e.with_config_type(c.kind.kafka_type());
        if documentation {
            e = e.with_documentation(Some(str_bytes(c.doc)));
        }
    }
    e
}

fn broker_configs(broker: &Broker) -> Vec<ResolvedConfig> {
    let c = &broker.config;
    let setting =
        |name: &'static str, value: String, kind: ConfigKind, doc: &'static str| ResolvedConfig {
            name,
            value,
            source: ConfigSource::Default,
            kind,
            doc,
        };
    vec![
        setting(
            "broker.id",
            c.node_id.to_string(),
            ConfigKind::Int,
            "this broker's id",
        ),
        setting(
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            ConfigKind::Boolean,
            "create unknown topics on first use",
        ),
        setting(
            "num.partitions",
            c.default_partitions.to_string(),
            ConfigKind::Int,
            "partitions of auto-created topics",
        ),
        setting(
            "default.replication.factor",
            c.default_replication_factor.to_string(),
            ConfigKind::Int,
            "replication factor of auto-created topics",
        ),
        setting(
            "socket.request.max.bytes",
            c.max_request_bytes.to_string(),
            ConfigKind::Int,
            "largest request accepted",
        ),
    ]
}
