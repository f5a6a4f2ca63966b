//! The metadata state machine. `apply` is pure and deterministic: the same commands in the same
//! order give the same state on every node, which is what lets Raft replicate it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{topic_config, MetaError, Result};

/// A broker known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub node_id: i32,
    /// Host and port Kafka clients are told to connect to.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// One partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub leader: i32,
    /// Bumped on every leader change so stale leaders and followers can be fenced.
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionMeta>,
    /// Only the keys a user set, under canonical names; the rest are defaults.
    pub configs: BTreeMap<String, String>,
}

impl TopicMeta {
    pub fn config(&self) -> topic_config::TopicConfig {
        topic_config::TopicConfig::from_overrides(&self.configs)
    }
}

/// Everything the cluster agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Index of the last command applied, so a store can resume after a snapshot.
    pub applied_index: u64,
    /// First producer id not yet handed to any broker. Ids are never reused, across restarts
    /// included, so a partition's producer state can never confuse two producers.
    #[serde(default)]
    pub next_producer_id: i64,
    /// The block of producer ids each broker was last given (Kafka's AllocateProducerIds);
    /// the broker hands them out from memory and asks for a new block when it runs out.
    #[serde(default)]
    pub producer_id_blocks: BTreeMap<i32, ProducerIdBlock>,
}

/// A range of producer ids reserved for one broker: `first..first + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub first: i64,
    pub size: i64,
}

/// A change to the metadata. Commands carry every decided value (ids, placements) so that
/// applying them needs nothing but the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Fix the cluster id; only the first one counts.
    InitCluster {
        cluster_id: String,
    },
    /// Add or update a broker's address.
    RegisterBroker(BrokerInfo),
    CreateTopic {
        name: String,
        id: Uuid,
        /// Replica list per partition; the first replica leads.
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Append partitions with these replica lists.
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<i32>>,
    },
    /// Replace a topic's overrides with exactly these.
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Reserve the next `size` producer ids for broker `node_id`; the block lands in
    /// `producer_id_blocks[node_id]`.
    AllocateProducerIds {
        node_id: i32,
        size: i64,
    },
}

impl ClusterState {
    pub fn topic(&self, name: &str) -> Result<&TopicMeta> {
        self.topics
            .get(name)
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.id == id)
    }

    /// Apply a command. On error the state is unchanged.
    pub fn apply(&mut self, index: u64, command: &Command) -> Result<()> {
        match command {
            Command::InitCluster { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                }
            }
            Command::RegisterBroker(info) => {
                self.brokers.insert(info.node_id, info.clone());
            }
            Command::CreateTopic {
                name,
                id,
                assignments,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(MetaError::TopicAlreadyExists(name.clone()));
                }
                crate::plan::validate_topic_name(name)?;
                self.check_assignments(assignments)?;
                let configs = topic_config::validate(configs)?;
                self.topics.insert(
                    name.clone(),
                    TopicMeta {
                        name: name.clone(),
                        id: *id,
                        partitions: assignments.iter().map(|r| new_partition(r)).collect(),
                        configs,
                    },
                );
            }
            Command::DeleteTopic { name } => {
                self.topics
                    .remove(name)
                    .ok_or_else(|| MetaError::UnknownTopic(name.clone()))?;
            }
            Command::CreatePartitions { name, assignments } => {
                self.check_assignments(assignments)?;
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| MetaError::UnknownTopic(name.clone()))?;
                topic
                    .partitions
                    .extend(assignments.iter().map(|r| new_partition(r)));
            }
            Command::SetTopicConfigs { name, configs } => {
                let configs = topic_config::validate(configs)?;
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| MetaError::UnknownTopic(name.clone()))?;
                topic.configs = configs;
            }
            Command::AllocateProducerIds { node_id, size } => {
                let end = self
                    .next_producer_id
                    .checked_add(*size)
                    .filter(|_| *size > 0)
                    .ok_or_else(|| {
                        MetaError::ProducerIdsExhausted(format!(
                            "cannot reserve {size} ids after {}",
                            self.next_producer_id
                        ))
                    })?;
                self.producer_id_blocks.insert(
                    *node_id,
                    ProducerIdBlock {
                        first: self.next_producer_id,
                        size: *size,
                    },
                );
                self.next_producer_id = end;
            }
        }
        self.applied_index = index;
        Ok(())
    }

    fn check_assignments(&self, assignments: &[Vec<i32>]) -> Result<()> {
        if assignments.is_empty() {
            return Err(MetaError::InvalidPartitions("no partitions".into()));
        }
        for replicas in assignments {
            if replicas.is_empty() {
                return Err(MetaError::InvalidReplicaAssignment(
                    "a partition has no replicas".into(),
                ));
            }
            for r in replicas {
                if !self.brokers.contains_key(r) {
                    return Err(MetaError::InvalidReplicaAssignment(format!(
                        "broker {r} is not registered"
                    )));
                }
            }
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != replicas.len() {
                return Err(MetaError::InvalidReplicaAssignment(format!(
                    "duplicate broker in {replicas:?}"
                )));
            }
        }
        Ok(())
    }
}

fn new_partition(replicas: &[i32]) -> PartitionMeta {
    PartitionMeta {
        leader: replicas[0],
        leader_epoch: 0,
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> Command {
        Command::RegisterBroker(BrokerInfo {
            node_id: id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        })
    }

    fn create(name: &str, parts: usize) -> Command {
        Command::CreateTopic {
            name: name.into(),
            id: Uuid::from_u128(7),
            assignments: vec![vec![1]; parts],
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn create_topic_then_duplicate_is_refused_without_change() {
        let mut s = ClusterState::default();
        s.apply(1, &broker(1)).unwrap();
        s.apply(2, &create("orders", 3)).unwrap();
        let before = s.clone();
        assert_eq!(
            s.apply(3, &create("orders", 1)),
            Err(MetaError::TopicAlreadyExists("orders".into()))
        );
        assert_eq!(s, before);
        let t = s.topic("orders").unwrap();
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(t.partitions[0].leader, 1);
        assert_eq!(t.partitions[0].isr, vec![1]);
    }

    #[test]
    fn assignments_must_name_registered_distinct_brokers() {
        let mut s = ClusterState::default();
        s.apply(1, &broker(1)).unwrap();
        let bad = Command::CreateTopic {
            name: "t".into(),
            id: Uuid::nil(),
            assignments: vec![vec![1, 2]],
            configs: BTreeMap::new(),
        };
        assert!(matches!(
            s.apply(2, &bad),
            Err(MetaError::InvalidReplicaAssignment(_))
        ));
    }

    #[test]
    fn partitions_and_configs_change_and_delete_removes() {
        let mut s = ClusterState::default();
        s.apply(1, &broker(1)).unwrap();
        s.apply(2, &create("t", 1)).unwrap();
        s.apply(
            3,
            &Command::CreatePartitions {
                name: "t".into(),
                assignments: vec![vec![1], vec![1]],
            },
        )
        .unwrap();
        assert_eq!(s.topic("t").unwrap().partitions.len(), 3);
        let cfg = BTreeMap::from([("retention.ms".to_string(), "10".to_string())]);
        s.apply(
            4,
            &Command::SetTopicConfigs {
                name: "t".into(),
                configs: cfg.clone(),
            },
        )
        .unwrap();
        assert_eq!(s.topic("t").unwrap().configs, cfg);
        assert_eq!(s.topic("t").unwrap().config().retention_ms, 10);
        s.apply(5, &Command::DeleteTopic { name: "t".into() })
            .unwrap();
        assert!(s.topic("t").is_err());
        assert_eq!(s.applied_index, 5);
    }

    #[test]
    fn producer_id_blocks_never_overlap_and_survive_serialization() {
        let mut s = ClusterState::default();
        let alloc = |node_id| Command::AllocateProducerIds {
            node_id,
            size: 1000,
        };
        s.apply(1, &alloc(1)).unwrap();
        s.apply(2, &alloc(2)).unwrap();
        s.apply(3, &alloc(1)).unwrap();
        assert_eq!(
            s.producer_id_blocks[&1],
            ProducerIdBlock {
                first: 2000,
                size: 1000
            }
        );
        assert_eq!(s.producer_id_blocks[&2].first, 1000);
        assert_eq!(s.next_producer_id, 3000);
        let before = s.clone();
        assert!(s
            .apply(
                4,
                &Command::AllocateProducerIds {
                    node_id: 1,
                    size: 0
                }
            )
            .is_err());
        assert_eq!(s, before);
        let restored: ClusterState =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(restored, s);
        // A snapshot written before producer ids existed still loads.
        let old: ClusterState = serde_json::from_str(
            r#"{"cluster_id":null,"brokers":{},"topics":{},"applied_index":3}"#,
        )
        .unwrap();
        assert_eq!(old.next_producer_id, 0);
    }

    #[test]
    fn commands_round_trip_through_json() {
        let c = create("x", 2);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), c);
    }
}
