//! Metadata: brokers, the controller, and topics with their partitions' leaders, replicas and
//! ISR. Unknown topics are auto-created when both the broker and the client allow it.

use std::collections::BTreeSet;
use std::sync::Arc;

use chronik_meta::{ClusterState, TopicMeta, NO_LEADER};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::str_bytes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let mut state = broker.meta.state();
    let unreachable = broker.meta.unreachable_brokers();
    // v0 has no auto-create flag: the broker setting alone decides.
    let client_allows = version < 4 || request.allow_auto_topic_creation;
    let topics = match request.topics {
        // null (or, in v0, empty) means every topic
        None => state
            .topics
            .values()
            .map(|t| topic_response(&state, t, &unreachable))
            .collect(),
        Some(list) if list.is_empty() && version == 0 => state
            .topics
            .values()
            .map(|t| topic_response(&state, t, &unreachable))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for requested in list {
                let by_name = requested.name.as_ref().map(|n| n.0.to_string());
                let name = match by_name {
                    Some(name) => name,
                    None => match state.topic_by_id(requested.topic_id) {
                        Some(t) => t.name.clone(),
                        None => {
                            out.push(
                                MetadataResponseTopic::default()
                                    .with_error_code(ResponseError::UnknownTopicId.code())
                                    .with_topic_id(requested.topic_id),
                            );
                            continue;
                        }
                    },
                };
                if !state.topics.contains_key(&name) && client_allows {
                    match broker.auto_create_topic(&name).await {
                        Ok(s) => state = s,
                        Err(code) => {
                            out.push(error_topic(&name, code));
                            continue;
                        }
                    }
                }
                match state.topics.get(&name) {
                    Some(t) => out.push(topic_response(&state, t, &unreachable)),
                    None => out.push(error_topic(&name, ResponseError::UnknownTopicOrPartition)),
                }
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers(&state))
        .with_cluster_id(state.cluster_id.clone().map(str_bytes))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_topics(topics)
}

/// Live brokers only, as Kafka lists them: a fenced broker leads nothing.
fn brokers(state: &ClusterState) -> Vec<MetadataResponseBroker> {
    state
        .brokers
        .values()
        .filter(|b| state.is_live(b.node_id))
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect()
}

fn error_topic(name: &str, code: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(Some(TopicName(str_bytes(name))))
}

/// `unreachable`: brokers whose cluster port just refused this broker's connections (see
/// `MetadataStore::unreachable_brokers`), crashed but not fenced yet. Their partitions are
/// answered without a leader, as during an election. A client that asks right after losing
/// its connection to a crashed leader then parks the partition instead of waiting on the dead
/// broker, and moves to the new leader at its next metadata refresh (librdkafka moves a
/// partition from a broker that is down to a new leader in two refreshes, a second apart).
fn topic_response(
    state: &ClusterState,
    topic: &TopicMeta,
    unreachable: &BTreeSet<i32>,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let leader = if unreachable.contains(&p.leader) {
                NO_LEADER
            } else {
                p.leader
            };
            // No live ISR member: offline until one returns (no unclean election).
            let code = if leader == NO_LEADER {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(code)
                .with_offline_replicas(
                    p.replicas
                        .iter()
                        .copied()
                        .filter(|r| !state.is_live(*r) || unreachable.contains(r))
                        .map(BrokerId)
                        .collect(),
                )
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
}
