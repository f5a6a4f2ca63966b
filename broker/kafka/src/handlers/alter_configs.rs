//! AlterConfigs: replace a topic's config overrides with exactly the given set (the legacy,
//! non-incremental semantics: keys not listed return to their defaults).

use std::collections::BTreeMap;
use std::sync::Arc;

use chronik_meta::topic_config;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let configs: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        let outcome = apply(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            configs,
            request.validate_only,
        )
        .await;
        responses.push(match outcome {
            Ok(()) => response,
            Err((code, message)) => response
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Validate and (unless validate_only) commit a topic's full set of overrides. Shared with
/// IncrementalAlterConfigs, which computes the full set first.
pub(crate) async fn apply(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    use kafka_protocol::error::ResponseError;
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err((
                ResponseError::InvalidRequest.code(),
                "broker settings are static: set them in the server's config file or environment"
                    .into(),
            ))
        }
        other => {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("config resource type {other} is not supported"),
            ))
        }
    }
    let state = broker.meta.state();
    let meta_err = |e: chronik_meta::MetaError| (error_codes::for_meta(&e).code(), e.to_string());
    state.topic(name).map_err(meta_err)?;
    let configs = topic_config::validate(&configs).map_err(meta_err)?;
    if validate_only {
        return Ok(());
    }
    broker
        .set_topic_configs(name, configs)
        .await
        .map_err(meta_err)?;
    tracing::info!(topic = name, "altered topic configs");
    Ok(())
}
