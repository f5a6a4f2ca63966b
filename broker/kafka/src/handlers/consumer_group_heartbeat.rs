//! ConsumerGroupHeartbeat (KIP-848): the whole membership protocol of a "consumer" group in
//! one request. Joining, leaving, subscribing and learning the assignment all ride on the
//! heartbeat; the broker computes the assignment, so nothing waits for other members. Deferred:
//! a heartbeat that changed the group is answered once the change is durable.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ResponseKind,
};

use super::str_bytes;
use crate::coordinator::consumer_group::{self, Heartbeat};
use crate::registry::{ready, ClientInfo, Reply};
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: ConsumerGroupHeartbeatRequest,
    _version: i16,
    client: &ClientInfo,
) -> Reply {
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return ready(ResponseKind::ConsumerGroupHeartbeat(refused(
            ResponseError::InvalidRequest,
            "GroupId can't be empty.",
        )));
    }
    let owned = request.topic_partitions.map(|topics| {
        let mut owned = consumer_group::TopicPartitions::new();
        for t in topics {
            owned.entry(t.topic_id).or_default().extend(t.partitions);
        }
        owned
    });
    let heartbeat = Heartbeat {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
    };
    let broker = broker.clone();
    Box::pin(async move {
        Some(ResponseKind::ConsumerGroupHeartbeat(
            answer(&broker, &group_id, heartbeat).await,
        ))
    })
}

async fn answer(
    broker: &Arc<Broker>,
    group_id: &str,
    heartbeat: Heartbeat,
) -> ConsumerGroupHeartbeatResponse {
    match broker.groups.consumer_heartbeat(group_id, heartbeat).await {
        Ok(answer) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(answer.member_id)))
            .with_member_epoch(answer.member_epoch)
            .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
            .with_assignment(answer.assignment.map(|a| {
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(partitions.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err((error, message)) => refused(error, &message),
    }
}

fn refused(error: ResponseError, message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(error.code())
        .with_error_message((!message.is_empty()).then(|| str_bytes(message)))
}
