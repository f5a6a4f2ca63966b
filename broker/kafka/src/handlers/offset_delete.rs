//! OffsetDelete: remove some committed offsets of a group. Allowed for an empty group, and for
//! a consumer group only on topics none of its members subscribes to (GROUP_SUBSCRIBED_TO_TOPIC).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code());
    }
    let state = broker.meta.state();
    // Unknown topics or partitions are answered without asking the group.
    let mut wanted = Vec::new();
    let mut answers = Vec::new();
    for topic in &request.topics {
        let known = state.topics.get(topic.name.0.as_str());
        for p in &topic.partitions {
            let exists = known.is_some_and(|t| {
                p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len()
            });
            if exists {
                wanted.push((topic.name.0.to_string(), p.partition_index));
                answers.push(None);
            } else {
                answers.push(Some(ResponseError::UnknownTopicOrPartition));
            }
        }
    }
    let results = match broker.groups.delete_offsets(&group_id, &wanted).await {
        Ok(r) => r,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
    };
    let mut results = results.into_iter();
    let mut answers = answers.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let error = match answers.next().flatten() {
                        Some(e) => Some(e),
                        None => results.next().flatten(),
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
