//! DeleteTopics: remove topics (by name, or by id from v6) from metadata and delete their logs.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::str_bytes;
use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // Up to v5 topics come as names; from v6 as (name or id) pairs.
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = request
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    targets.extend(
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let state = broker.meta.state();
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => state.topic_by_id(id).map(|t| t.name.clone()),
        };
        let mut result = DeletableTopicResult::default()
            .with_name(resolved.clone().or(name).map(|n| TopicName(str_bytes(n))));
        if version >= 6 {
            result = result.with_topic_id(id);
        }
        let outcome = match resolved {
            None => Err((
                ResponseError::UnknownTopicId,
                "unknown topic id".to_string(),
            )),
            Some(n) => broker
                .delete_topic(&n)
                .await
                .map(|()| tracing::info!(topic = %n, "deleted topic"))
                .map_err(|e| (error_codes::for_meta(&e), e.to_string())),
        };
        if let Err((code, message)) = outcome {
            result = result.with_error_code(code.code());
            // error_message from v5
            if version >= 5 {
                result = result.with_error_message(Some(str_bytes(message)));
            }
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
