//! ListPartitionReassignments: the moves in progress, over all topics or the partitions asked
//! for (partitions that are not moving, or do not exist, are left out, as Kafka does).

use std::sync::Arc;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::str_bytes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    let state = broker.meta.state();
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let brokers = |ids: &[i32]| ids.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for topic in state.topics.values() {
        let asked: Option<&Vec<i32>> = match &wanted {
            None => None,
            Some(list) => match list.iter().find(|(n, _)| *n == topic.name) {
                Some((_, parts)) => Some(parts),
                None => continue,
            },
        };
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| p.is_reassigning() && asked.is_none_or(|a| a.contains(&(*i as i32))))
            .map(|(i, p)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(brokers(&p.replicas))
                    .with_adding_replicas(brokers(&p.adding_replicas))
                    .with_removing_replicas(brokers(&p.removing_replicas))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(topic.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
