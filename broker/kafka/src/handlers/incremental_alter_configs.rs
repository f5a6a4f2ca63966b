//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT operations on a topic's config
//! overrides; the resulting set is validated whole before anything is committed.

use std::sync::Arc;

use chronik_meta::plan::{plan_incremental_configs, ConfigOp};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::RESOURCE_TOPIC;
use super::{alter_configs, str_bytes};
use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let outcome = async {
            let current = if resource.resource_type == RESOURCE_TOPIC {
                let state = broker.meta.state();
                let topic = state
                    .topic(&name)
                    .map_err(|e| (error_codes::for_meta(&e).code(), e.to_string()))?;
                topic.configs.clone()
            } else {
                Default::default()
            };
            let ops = resource
                .configs
                .iter()
                .map(|c| {
                    let key = c.name.to_string();
                    let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    match c.config_operation {
                        0 => Ok(ConfigOp::Set(key, value)),
                        1 => Ok(ConfigOp::Delete(key)),
                        2 => Ok(ConfigOp::Append(key, value)),
                        3 => Ok(ConfigOp::Subtract(key, value)),
                        other => Err((
                            ResponseError::InvalidRequest.code(),
                            format!("unknown config operation {other} for {key}"),
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let next = plan_incremental_configs(&current, &ops)
                .map_err(|e| (error_codes::for_meta(&e).code(), e.to_string()))?;
            alter_configs::apply(
                broker,
                resource.resource_type,
                &name,
                next,
                request.validate_only,
            )
            .await
        }
        .await;
        responses.push(match outcome {
            Ok(()) => response,
            Err((code, message)) => response
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
