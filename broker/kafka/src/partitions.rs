//! Topic and partition operations shared by several handlers: finding (and lazily opening) a
//! partition's log from metadata, auto-creating topics, and keeping open logs in step with topic
//! config changes and deletions.

use std::collections::BTreeMap;
use std::sync::Arc;

use chronik_log::{CleanupPolicy, FlushPolicy, LogConfig, PartitionLog};
use chronik_meta::plan::{self, CreateTopic};
use chronik_meta::{ClusterState, Command, MetaError, TopicConfig, TopicMeta};
use kafka_protocol::error::ResponseError;

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
        if let Some(log) = self.logs.get(&topic.name, partition) {
            return Ok(log);
        }
        let meta = usize::try_from(partition)
            .ok()
            .and_then(|p| topic.partitions.get(p))
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        if meta.leader != self.config.node_id {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let config = log_config_for(&topic.config(), FlushPolicy::Group);
        self.logs
            .get_or_create(&topic.name, partition, config)
            .map_err(|e| {
                tracing::error!(topic = %topic.name, partition, error = %e, "cannot open partition log");
                error_codes::for_log(&e)
            })
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
                .min(state.brokers.len().max(1) as i16),
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
        let command = plan::plan_create_topic(&state, req, uuid::Uuid::new_v4())?;
        if !validate_only {
            self.meta.propose(command.clone()).await?;
        }
        Ok(command)
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
