//! CreatePartitions: grow a topic's partition count (never shrink), optionally with explicit
//! replica placement.

use std::sync::Arc;

use chronik_meta::plan;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let assignments = topic.assignments.map(|list| {
            list.into_iter()
                .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
                .collect()
        });
        let state = broker.meta.state();
        let outcome = match plan::plan_create_partitions(&state, &name, topic.count, assignments) {
            Ok(command) if !request.validate_only => broker.meta.propose(command).await,
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        let result = CreatePartitionsTopicResult::default().with_name(topic.name);
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(error_codes::for_meta(&e).code())
                .with_error_message(Some(str_bytes(e.to_string()))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
