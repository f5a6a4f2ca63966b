//! Where the keys of the internal topics live: Kafka's placement of a group id or transactional
//! id on a partition of `__consumer_offsets` / `__transaction_state`, whether this broker
//! coordinates it, and the log a coordinator writes through.

use std::sync::Arc;

use chronik_log::{FlushPolicy, LogManager, PartitionLog};
use chronik_meta::MetadataStore;
use kafka_protocol::error::ResponseError;

use super::CoordinatorError;
use crate::partitions::log_config_for;
use crate::replication::ReplicaManager;

/// The log of partition `partition` of an internal topic (`__consumer_offsets`,
/// `__transaction_state`), opened on first use; NotLeader unless this broker leads it.
pub(crate) fn internal_partition_log(
    logs: &LogManager,
    meta: &Arc<dyn MetadataStore>,
    replicas: &ReplicaManager,
    node_id: i32,
    topic_name: &str,
    partition: i32,
) -> Result<Arc<dyn PartitionLog>, CoordinatorError> {
    let state = meta.state();
    let topic = state.topic(topic_name)?;
    // Leadership first: a follower's log of the partition is open too, for replication.
    match topic.partitions.get(partition as usize) {
        Some(p) if p.leader == node_id && p.replicas.len() > 1 => {
            // Writes go through the in-sync replicas, as acks=all.
            return replicas
                .committed_log(node_id, meta, topic_name, partition)
                .ok_or(CoordinatorError::NotLeader(partition));
        }
        Some(p) if p.leader == node_id => {}
        _ => return Err(CoordinatorError::NotLeader(partition)),
    }
    if let Some(log) = logs.get(topic_name, partition) {
        return Ok(log);
    }
    let config = log_config_for(&topic.config(), FlushPolicy::Group);
    Ok(logs.get_or_create(topic_name, partition, config)?)
}

/// Java's `String.hashCode` (over UTF-16 code units), which Kafka uses to place groups and
/// transactional ids on partitions of their internal topics.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The partition of an internal topic (`__consumer_offsets`, `__transaction_state`) that
/// holds `key`, when this broker leads it.
pub(crate) struct LedPartition {
    pub partition: i32,
    pub leader_epoch: i32,
    /// Partitions of the topic (keys are placed by hashing over them).
    pub partitions: i32,
}

/// Which coordinator answers for `key`: this broker (its partition), another broker
/// (NOT_COORDINATOR), or none yet (COORDINATOR_NOT_AVAILABLE: no topic or no leader).
pub(crate) fn led_partition(
    state: &chronik_meta::ClusterState,
    topic: &str,
    key: &str,
    node_id: i32,
) -> Result<LedPartition, ResponseError> {
    let Some(t) = state.topics.get(topic) else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    let partitions = t.partitions.len() as i32;
    let partition = partition_for(key, partitions);
    let Some(p) = t.partitions.get(partition as usize) else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    if p.leader == chronik_meta::NO_LEADER {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if p.leader != node_id {
        return Err(ResponseError::NotCoordinator);
    }
    Ok(LedPartition {
        partition,
        leader_epoch: p.leader_epoch,
        partitions,
    })
}

/// The partition of an internal topic with `partitions` partitions that owns `key`.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    (java_string_hash(key) & 0x7fff_ffff) % partitions.max(1)
}
