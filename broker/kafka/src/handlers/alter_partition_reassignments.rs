//! AlterPartitionReassignments: move partitions to new replica lists, or cancel a move in
//! progress (`replicas` null). Each move is planned and committed on its own; it then runs as
//! described in chronik-meta's `reassignment` (new replicas catch up, the old ones leave once
//! every new one is in sync). The answer comes once the move has started, as in Kafka.

use std::sync::Arc;

use chronik_meta::reassignment::plan_reassignment;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};

use super::str_bytes;
use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: AlterPartitionReassignmentsRequest,
    _version: i16,
) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let replicas = p
                .replicas
                .map(|list| list.into_iter().map(|b| b.0).collect());
            let state = broker.meta.state();
            let outcome = match plan_reassignment(
                &state,
                &name,
                p.partition_index,
                replicas,
                request.allow_replication_factor_change,
            ) {
                Ok(command) => broker.meta.propose(command).await,
                Err(e) => Err(e),
            };
            let answer =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(()) => answer,
                Err(e) => answer
                    .with_error_code(error_codes::for_meta(&e).code())
                    .with_error_message(Some(str_bytes(e.to_string()))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_responses(responses)
}
