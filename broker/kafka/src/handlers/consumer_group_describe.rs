//! ConsumerGroupDescribe (KIP-848): epochs, assignor and each member's subscription, current
//! and target assignment of "consumer" groups. Classic groups answer GROUP_ID_NOT_FOUND, as in
//! Kafka, so admin clients fall back to DescribeGroups for them.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};

use super::str_bytes;
use crate::coordinator::consumer_group;
use crate::Broker;

/// ConsumerGroupDescribe v1's member type of a member using the consumer protocol.
const CONSUMER_MEMBER: i8 = 1;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: ConsumerGroupDescribeRequest,
    _version: i16,
) -> ConsumerGroupDescribeResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in request.group_ids {
        let base = DescribedGroup::default().with_group_id(group_id.clone());
        if group_id.is_empty() {
            groups.push(base.with_error_code(ResponseError::InvalidGroupId.code()));
            continue;
        }
        let described = match broker.groups.describe_consumer_group(&group_id).await {
            Ok(d) => d,
            Err((error, message)) => {
                groups.push(
                    base.with_error_code(error.code())
                        .with_error_message((!message.is_empty()).then(|| str_bytes(message))),
                );
                continue;
            }
        };
        let names: HashMap<uuid::Uuid, String> = described.topic_names.into_iter().collect();
        let assignment = |a: &consumer_group::TopicPartitions| {
            Assignment::default().with_topic_partitions(
                a.iter()
                    .map(|(id, partitions)| {
                        TopicPartitions::default()
                            .with_topic_id(*id)
                            .with_topic_name(TopicName(str_bytes(
                                names.get(id).cloned().unwrap_or_default(),
                            )))
                            .with_partitions(partitions.iter().copied().collect())
                    })
                    .collect(),
            )
        };
        let members = described
            .members
            .iter()
            .map(|(m, target)| {
                Member::default()
                    .with_member_id(str_bytes(m.id.clone()))
                    .with_instance_id(m.instance_id.clone().map(str_bytes))
                    .with_rack_id(m.rack_id.clone().map(str_bytes))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(str_bytes(m.client_id.clone()))
                    .with_client_host(str_bytes(m.client_host.clone()))
                    .with_subscribed_topic_names(
                        m.subscribed_topic_names
                            .iter()
                            .map(|n| TopicName(str_bytes(n.clone())))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(m.subscribed_topic_regex.clone().map(str_bytes))
                    .with_assignment(assignment(&m.assigned))
                    .with_target_assignment(assignment(target))
                    .with_member_type(CONSUMER_MEMBER)
            })
            .collect();
        groups.push(
            base.with_group_state(str_bytes(described.state.name()))
                .with_group_epoch(described.group_epoch)
                .with_assignment_epoch(described.assignment_epoch)
                .with_assignor_name(str_bytes(described.assignor))
                .with_members(members),
        );
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
