//! Topic and partition operations shared by several handlers: finding (and lazily opening) a
//! partition's log from metadata, auto-creating topics, and keeping open logs in step with topic
//! config changes and deletions — including those committed through another broker, which
//! [`Broker::spawn_partition_sync`] follows from the metadata store.

use std::collections::BTreeMap;
use std::sync::Arc;

use chronik_log::{CleanupPolicy, FlushPolicy, LogConfig, PartitionLog};
use chronik_meta::plan::{self, CreateTopic};
use chronik_meta::{ClusterState, Command, MetaError, TopicConfig, TopicMeta};
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

use crate::error_codes;
use crate::Broker;

/// The log settings a topic's partitions run with.
pub fn log_config_for(topic: &TopicConfig, flush: FlushPolicy) -> LogConfig {
    let cleanup_policy = match (topic.cleanup_policy.delete, topic.cleanup_policy.compact) {
        (true, true) => CleanupPolicy::CompactDelete,
        (false, true) => CleanupPolicy::Compact,
        _ => CleanupPolicy::Delete,
    };
    LogConfig {
        segment_bytes: topic.segment_bytes.max(1) as u64,
        segment_ms: topic.segment_ms,
        retention_ms: topic.retention_ms,
        retention_bytes: topic.retention_bytes,
        max_message_bytes: topic.max_message_bytes.max(0) as usize,
        cleanup_policy,
        delete_retention_ms: topic.delete_retention_ms,
        flush,
        ..LogConfig::default()
    }
}

impl Broker {
    /// The log of a partition this broker leads. Opening recovers it on first use.
    pub fn partition_log(
        &self,
        topic: &TopicMeta,
        partition: i32,
    ) -> Result<Arc<dyn PartitionLog>, ResponseError> {
        let meta = usize::try_from(partition)
            .ok()
            .and_then(|p| topic.partitions.get(p))
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        // Checked before the open log: a follower's log is open too, for replication only.
        if meta.leader == chronik_meta::NO_LEADER {
            return Err(ResponseError::LeaderNotAvailable);
        }
        if meta.leader != self.config.node_id {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        // A replicated partition serves clients once its leadership is set up here (the
        // high watermark then follows the ISR, not the local disk).
        if meta.replicas.len() > 1 && !self.leads_replicated(&topic.name, partition) {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        if let Some(log) = self.logs.get(&topic.name, partition) {
            return Ok(log);
        }
        let config = log_config_for(&topic.config(), FlushPolicy::Group);
        self.logs
            .get_or_create(&topic.name, partition, config)
            .map_err(|e| {
                tracing::error!(topic = %topic.name, partition, error = %e, "cannot open partition log");
                error_codes::for_log(&e)
            })
    }

    /// This broker's copy of a partition it hosts, for readers that follow committed data (the
    /// indexes): the leader's log, or a follower's replica once replication has opened it. A
    /// replica is only read up to its high watermark, which the leader sets, so what it shows
    /// is committed and survives any later truncation of the follower's tail.
    pub fn hosted_log(&self, topic: &TopicMeta, partition: i32) -> Option<Arc<dyn PartitionLog>> {
        let meta = usize::try_from(partition)
            .ok()
            .and_then(|p| topic.partitions.get(p))?;
        if !meta.replicas.contains(&self.config.node_id) {
            return None;
        }
        if meta.leader == self.config.node_id {
            if let Ok(log) = self.partition_log(topic, partition) {
                return Some(log);
            }
        }
        self.logs.get(&topic.name, partition)
    }

    /// Create `name` with default settings if it does not exist and auto-creation is on.
    /// Returns the state to use afterwards.
    pub(crate) async fn auto_create_topic(
        &self,
        name: &str,
    ) -> Result<Arc<ClusterState>, ResponseError> {
        let state = self.meta.state();
        if state.topics.contains_key(name) {
            return Ok(state);
        }
        if !self.config.auto_create_topics {
            return Err(ResponseError::UnknownTopicOrPartition);
        }
        let req = CreateTopic {
            name: name.to_string(),
            partitions: self.config.default_partitions,
            replication_factor: self
                .config
                .default_replication_factor
                .min(state.placeable_brokers().count().max(1) as i16),
            assignments: None,
            configs: BTreeMap::new(),
        };
        match self.create_topic(&req, false).await {
            Ok(_) | Err(MetaError::TopicAlreadyExists(_)) => {
                tracing::info!(topic = name, "auto-created topic");
                Ok(self.meta.state())
            }
            Err(MetaError::InvalidTopicName { .. }) => Err(ResponseError::InvalidTopicException),
            Err(e) => Err(error_codes::for_meta(&e)),
        }
    }

    /// Plan and (unless `validate_only`) commit a topic creation.
    pub async fn create_topic(
        &self,
        req: &CreateTopic,
        validate_only: bool,
    ) -> Result<Command, MetaError> {
        let state = self.meta.state();
        let req = &self.with_default_min_insync(&state, req);
        let command = plan::plan_create_topic(&state, req, uuid::Uuid::new_v4())?;
        if !validate_only {
            self.meta.propose(command.clone()).await?;
        }
        Ok(command)
    }

    /// CHRONIK_MIN_INSYNC_REPLICAS for a topic that does not set min.insync.replicas, capped
    /// at its replication factor (a single replica cannot ask for two).
    fn with_default_min_insync(&self, state: &ClusterState, req: &CreateTopic) -> CreateTopic {
        let mut req = req.clone();
        let default = self.config.default_min_insync_replicas;
        if default > 1 && !req.configs.contains_key("min.insync.replicas") {
            let rf = match &req.assignments {
                Some(a) => a.first().map_or(1, Vec::len),
                None => usize::try_from(req.replication_factor)
                    .unwrap_or(1)
                    .min(state.placeable_brokers().count()),
            };
            let min_isr = (default as usize).min(rf.max(1));
            if min_isr > 1 {
                req.configs
                    .insert("min.insync.replicas".into(), min_isr.to_string());
            }
        }
        req
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), MetaError> {
        self.meta
            .propose(Command::DeleteTopic {
                name: name.to_string(),
            })
            .await?;
        if let Err(e) = self.logs.remove_topic(name) {
            // The topic is gone from metadata; leftover files are removed at the next start.
            tracing::warn!(topic = name, error = %e, "could not remove deleted topic's logs");
        }
        Ok(())
    }

    /// Commit new overrides for a topic and hand the new settings to its open logs.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetaError> {
        self.meta
            .propose(Command::SetTopicConfigs {
                name: name.to_string(),
                configs,
            })
            .await?;
        let state = self.meta.state();
        let topic = state.topic(name)?;
        let config = log_config_for(&topic.config(), FlushPolicy::Group);
        for p in 0..topic.partitions.len() as i32 {
            if let Some(log) = self.logs.get(name, p) {
                log.update_config(config.clone());
            }
        }
        Ok(())
    }
}

/// What this broker must do to its logs when the metadata changes from one state to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionChange {
    /// The topic is gone (or was deleted and created again under the same name): close and
    /// delete its local logs.
    RemoveTopic(String),
    /// This broker now leads the partition: open (and so recover or create) its log.
    Open { topic: String, partition: i32 },
    /// The topic's settings changed: hand them to its open logs.
    UpdateConfig(String),
    /// The partition's replica moved to another broker (a reassignment completed): close and
    /// delete the local log. Applied after the replica roles are updated, so nothing leads or
    /// follows it here any more.
    RemoveReplica { topic: String, partition: i32 },
}

/// Pure: the log changes `node_id` needs between two metadata states, topic removals first and
/// moved replicas last.
pub fn partition_changes(
    prev: &ClusterState,
    next: &ClusterState,
    node_id: i32,
) -> Vec<PartitionChange> {
    let mut removals = Vec::new();
    let mut rest = Vec::new();
    let mut moved = Vec::new();
    for (name, old) in &prev.topics {
        if next.topics.get(name).is_none_or(|t| t.id != old.id) {
            removals.push(PartitionChange::RemoveTopic(name.clone()));
        }
    }
    for (name, topic) in &next.topics {
        let old = prev.topics.get(name).filter(|t| t.id == topic.id);
        for (index, p) in topic.partitions.iter().enumerate() {
            let before = old.and_then(|t| t.partitions.get(index));
            let led_before = before.is_some_and(|o| o.leader == node_id);
            if before.is_some_and(|o| o.replicas.contains(&node_id))
                && !p.replicas.contains(&node_id)
            {
                moved.push(PartitionChange::RemoveReplica {
                    topic: name.clone(),
                    partition: index as i32,
                });
            }
            if p.leader == node_id && !led_before {
                rest.push(PartitionChange::Open {
                    topic: name.clone(),
                    partition: index as i32,
                });
            }
        }
        if old.is_some_and(|o| o.configs != topic.configs) {
            rest.push(PartitionChange::UpdateConfig(name.clone()));
        }
    }
    removals.extend(rest);
    removals.extend(moved);
    removals
}

impl Broker {
    /// Follow metadata changes committed anywhere in the cluster: open the logs of partitions
    /// this broker comes to lead (topics created through another broker), remove the logs of
    /// deleted topics, and apply config changes. `seen` is the state the caller last acted on
    /// and `changes` a receiver subscribed before that state was read, so nothing is missed.
    pub fn spawn_partition_sync(
        self: &Arc<Self>,
        mut changes: watch::Receiver<u64>,
        seen: Arc<ClusterState>,
    ) -> tokio::task::JoinHandle<()> {
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            let mut prev = seen;
            while changes.changed().await.is_ok() {
                let next = broker.meta.state();
                let (moved, changes): (Vec<_>, Vec<_>) =
                    partition_changes(&prev, &next, broker.config.node_id)
                        .into_iter()
                        .partition(|c| matches!(c, PartitionChange::RemoveReplica { .. }));
                for change in changes {
                    broker.apply_partition_change(&next, change);
                }
                broker.sync_replica_roles(&next);
                for change in moved {
                    broker.apply_partition_change(&next, change);
                }
                prev = next;
            }
        })
    }

    fn apply_partition_change(&self, state: &ClusterState, change: PartitionChange) {
        match change {
            PartitionChange::RemoveTopic(name) => {
                if let Err(e) = self.logs.remove_topic(&name) {
                    tracing::warn!(topic = %name, error = %e, "could not remove a deleted topic's logs");
                } else {
                    tracing::debug!(topic = %name, "removed logs of a deleted topic");
                }
            }
            PartitionChange::Open { topic, partition } => {
                let Some(meta) = state.topics.get(&topic) else {
                    return;
                };
                // Errors are logged there; a request for the partition retries the open.
                if self.partition_log(meta, partition).is_ok() {
                    tracing::debug!(%topic, partition, "opened a partition this broker leads");
                }
            }
            PartitionChange::RemoveReplica { topic, partition } => {
                match self.logs.remove_partition(&topic, partition) {
                    Ok(()) => {
                        tracing::info!(%topic, partition, "replica moved to another broker; removed the local log")
                    }
                    Err(e) => {
                        tracing::warn!(%topic, partition, error = %e, "could not remove a moved replica's log")
                    }
                }
            }
            PartitionChange::UpdateConfig(name) => {
                let Some(topic) = state.topics.get(&name) else {
                    return;
                };
                let config = log_config_for(&topic.config(), FlushPolicy::Group);
                for p in 0..topic.partitions.len() as i32 {
                    if let Some(log) = self.logs.get(&name, p) {
                        log.update_config(config.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod change_tests {
    use super::*;
    use chronik_meta::BrokerInfo;

    fn state(topics: &[(&str, u128, &[i32])]) -> ClusterState {
        let mut s = ClusterState::default();
        for id in 1..=3 {
            s.apply(
                id as u64,
                &Command::RegisterBroker(BrokerInfo {
                    node_id: id,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                }),
            )
            .unwrap();
        }
        for (name, id, leaders) in topics {
            s.apply(
                10,
                &Command::CreateTopic {
                    name: name.to_string(),
                    id: uuid::Uuid::from_u128(*id),
                    assignments: leaders.iter().map(|l| vec![*l]).collect(),
                    configs: BTreeMap::new(),
                },
            )
            .unwrap();
        }
        s
    }

    #[test]
    fn only_partitions_led_here_are_opened() {
        let prev = state(&[]);
        let next = state(&[("a", 1, &[1, 2, 3, 1])]);
        assert_eq!(
            partition_changes(&prev, &next, 1),
            vec![
                PartitionChange::Open {
                    topic: "a".into(),
                    partition: 0
                },
                PartitionChange::Open {
                    topic: "a".into(),
                    partition: 3
                },
            ]
        );
        assert!(partition_changes(&next, &next, 1).is_empty());
    }

    #[test]
    fn deleted_and_recreated_topics_are_removed_first() {
        let prev = state(&[("a", 1, &[2]), ("b", 2, &[1])]);
        let next = state(&[("a", 3, &[2])]);
        assert_eq!(
            partition_changes(&prev, &next, 2),
            vec![
                PartitionChange::RemoveTopic("a".into()),
                PartitionChange::RemoveTopic("b".into()),
                PartitionChange::Open {
                    topic: "a".into(),
                    partition: 0
                },
            ]
        );
    }

    #[test]
    fn config_changes_and_new_partitions_are_followed() {
        let prev = state(&[("a", 1, &[1])]);
        let mut next = prev.clone();
        next.apply(
            20,
            &Command::SetTopicConfigs {
                name: "a".into(),
                configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
            },
        )
        .unwrap();
        next.apply(
            21,
            &Command::CreatePartitions {
                name: "a".into(),
                assignments: vec![vec![2], vec![1]],
            },
        )
        .unwrap();
        assert_eq!(
            partition_changes(&prev, &next, 1),
            vec![
                PartitionChange::Open {
                    topic: "a".into(),
                    partition: 2
                },
                PartitionChange::UpdateConfig("a".into()),
            ]
        );
    }

    #[test]
    fn a_replica_moved_away_is_removed_last() {
        let prev = state(&[("a", 1, &[1, 2])]);
        let mut next = prev.clone();
        next.apply(
            20,
            &Command::ReassignPartition {
                topic: "a".into(),
                partition: 0,
                replicas: vec![3],
            },
        )
        .unwrap();
        assert!(
            partition_changes(&prev, &next, 1).is_empty(),
            "still a replica while the move runs"
        );
        // Broker 3 joined the ISR: the move completes and broker 1's replica goes; broker 3
        // leads partition 0 now.
        let mut done = next.clone();
        let p = done.topics["a"].partitions[0].clone();
        done.apply(
            21,
            &Command::AlterIsr {
                topic: "a".into(),
                partition: 0,
                leader: 1,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: vec![1, 3],
            },
        )
        .unwrap();
        assert_eq!(
            partition_changes(&next, &done, 1),
            vec![PartitionChange::RemoveReplica {
                topic: "a".into(),
                partition: 0
            }]
        );
        assert_eq!(
            partition_changes(&next, &done, 3),
            vec![PartitionChange::Open {
                topic: "a".into(),
                partition: 0
            }]
        );
        assert!(partition_changes(&next, &done, 2).is_empty());
    }
}
