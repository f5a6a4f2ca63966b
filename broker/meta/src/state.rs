//! The metadata state machine. `apply` is pure and deterministic: the same commands in the same
//! order give the same state on every node, which is what lets Raft replicate it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{replication, topic_config, MetaError, Result};

/// A broker known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub node_id: i32,
    /// Host and port Kafka clients are told to connect to.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Leader of a partition whose in-sync replicas are all down (Kafka's -1).
pub const NO_LEADER: i32 = -1;

/// One partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// [`NO_LEADER`] while no in-sync replica is alive.
    pub leader: i32,
    /// Bumped on every leader change so stale leaders and followers can be fenced.
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Bumped on every change of leader or ISR: an ISR change proposed against an older
    /// version (a concurrent change won) is refused, as Kafka's AlterPartition does.
    #[serde(default)]
    pub partition_epoch: i32,
    /// While a reassignment runs (`reassignment`): replicas joining, which are in `replicas`
    /// and fetch like any follower, and replicas leaving once every joining one is in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
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

    /// Partitions with no replica on `node_id`: what a query answered from that broker's
    /// indexes alone cannot see.
    pub fn partitions_not_on(&self, node_id: i32) -> Vec<i32> {
        self.partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.replicas.contains(&node_id))
            .map(|(i, _)| i as i32)
            .collect()
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
    /// Registered brokers the controller declared dead (lease expired): they lead nothing,
    /// are in no ISR (unless the last member), and get no new replicas.
    #[serde(default)]
    pub fenced: BTreeSet<i32>,
    /// Brokers asked to leave: they get no new replicas, the controller moves theirs away,
    /// then removes them from the quorum and unregisters them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub draining: BTreeSet<i32>,
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
    /// The controller lost `node_id`'s heartbeats: drop it from every ISR (never emptying
    /// one) and elect new leaders, from the ISR only, for the partitions it led.
    FenceBroker {
        node_id: i32,
    },
    /// `node_id` is alive again: partitions left without a leader whose ISR holds it get it
    /// back as leader. (It rejoins other ISRs by catching up, through `AlterIsr`.)
    UnfenceBroker {
        node_id: i32,
    },
    /// A partition leader changes the ISR (shrink: a follower lags; expand: it caught up).
    /// Applies only if `leader`, `leader_epoch` and `partition_epoch` are current.
    AlterIsr {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// Move a partition to this replica list (Kafka's AlterPartitionReassignments): the new
    /// replicas join and catch up, then the old ones leave. The list it already has cancels a
    /// reassignment in progress.
    ReassignPartition {
        topic: String,
        partition: i32,
        replicas: Vec<i32>,
    },
    /// Start draining a broker before it leaves the cluster.
    DrainBroker {
        node_id: i32,
    },
    /// Forget a drained broker (it holds no replica any more).
    UnregisterBroker {
        node_id: i32,
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

    /// One partition's placement, `None` when the topic or the partition does not exist.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionMeta> {
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)
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
                let restarted = self.brokers.insert(info.node_id, info.clone()).is_some();
                if restarted {
                    self.restart(info.node_id);
                }
                // A broker registers when it starts: it is alive.
                self.unfence(info.node_id);
            }
            Command::FenceBroker { node_id } => {
                if !self.brokers.contains_key(node_id) {
                    return Err(MetaError::UnknownBroker(*node_id));
                }
                self.fence(*node_id);
            }
            Command::UnfenceBroker { node_id } => {
                if !self.brokers.contains_key(node_id) {
                    return Err(MetaError::UnknownBroker(*node_id));
                }
                self.unfence(*node_id);
            }
            Command::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => self.alter_isr(
                topic,
                *partition,
                *leader,
                *leader_epoch,
                *partition_epoch,
                isr,
            )?,
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
                        partitions: assignments.iter().map(|r| PartitionMeta::new(r)).collect(),
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
                    .extend(assignments.iter().map(|r| PartitionMeta::new(r)));
            }
            Command::SetTopicConfigs { name, configs } => {
                let configs = topic_config::validate(configs)?;
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| MetaError::UnknownTopic(name.clone()))?;
                topic.configs = configs;
            }
            Command::ReassignPartition {
                topic,
                partition,
                replicas,
            } => self.reassign(topic, *partition, replicas)?,
            Command::DrainBroker { node_id } => self.drain(*node_id)?,
            Command::UnregisterBroker { node_id } => self.unregister(*node_id)?,
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

    /// Registered brokers that are not fenced, ascending.
    pub fn live_brokers(&self) -> impl Iterator<Item = i32> + '_ {
        self.brokers
            .keys()
            .copied()
            .filter(|b| !self.fenced.contains(b))
    }

    pub fn is_live(&self, node_id: i32) -> bool {
        self.brokers.contains_key(&node_id) && !self.fenced.contains(&node_id)
    }

    fn fence(&mut self, node_id: i32) {
        self.fenced.insert(node_id);
        let fenced = &self.fenced;
        let brokers = &self.brokers;
        for p in self.topics.values_mut().flat_map(|t| &mut t.partitions) {
            if !p.replicas.contains(&node_id) {
                continue;
            }
            let isr = replication::isr_without(&p.isr, node_id);
            if p.leader == node_id {
                p.leader = replication::elect_leader(&p.replicas, &isr, |r| {
                    brokers.contains_key(&r) && !fenced.contains(&r)
                })
                .unwrap_or(NO_LEADER);
                p.leader_epoch += 1;
            }
            if isr != p.isr || p.leader != node_id {
                p.isr = isr;
                p.partition_epoch += 1;
            }
        }
    }

    /// A broker registered again: it restarted, and its log may have lost a tail that was
    /// never fsynced. Replicated partitions it led move to another live ISR member, and it
    /// leaves their ISR until it has caught up; where no other member is alive it keeps the
    /// leadership under a new epoch, so followers truncate against its log again.
    fn restart(&mut self, node_id: i32) {
        let fenced = &self.fenced;
        let brokers = &self.brokers;
        for p in self.topics.values_mut().flat_map(|t| &mut t.partitions) {
            if p.leader != node_id || p.replicas.len() < 2 {
                continue;
            }
            let others = replication::isr_without(&p.isr, node_id);
            let next = replication::elect_leader(&p.replicas, &others, |r| {
                r != node_id && brokers.contains_key(&r) && !fenced.contains(&r)
            });
            if let Some(leader) = next {
                p.leader = leader;
                p.isr = others;
            }
            p.leader_epoch += 1;
            p.partition_epoch += 1;
        }
    }

    fn unfence(&mut self, node_id: i32) {
        if !self.fenced.remove(&node_id) {
            return;
        }
        for p in self.topics.values_mut().flat_map(|t| &mut t.partitions) {
            if p.leader == NO_LEADER && p.isr.contains(&node_id) {
                p.leader = node_id;
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
        }
    }

    fn alter_isr(
        &mut self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> Result<()> {
        let (brokers, fenced) = (&self.brokers, &self.fenced);
        let p = partition_mut(&mut self.topics, topic, partition)?;
        if p.leader != leader
            || p.leader_epoch != leader_epoch
            || p.partition_epoch != partition_epoch
        {
            return Err(MetaError::StalePartitionState(format!(
                "{topic}-{partition} is at leader {} epoch {} version {}, the change was made at leader {leader} epoch {leader_epoch} version {partition_epoch}",
                p.leader, p.leader_epoch, p.partition_epoch
            )));
        }
        if !isr.contains(&leader) || isr.iter().any(|r| !p.replicas.contains(r)) {
            return Err(MetaError::InvalidReplicaAssignment(format!(
                "ISR {isr:?} must hold the leader {leader} and only replicas of {:?}",
                p.replicas
            )));
        }
        if let Some(r) = isr
            .iter()
            .find(|r| !p.isr.contains(r) && fenced.contains(r))
        {
            return Err(MetaError::InvalidReplicaAssignment(format!(
                "broker {r} is fenced and cannot join the ISR of {topic}-{partition}"
            )));
        }
        let mut sorted = isr.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != isr.len() {
            return Err(MetaError::InvalidReplicaAssignment(format!(
                "duplicate broker in ISR {isr:?}"
            )));
        }
        // Kept in replica order, so the ISR reads the same on every broker.
        p.isr = p
            .replicas
            .iter()
            .copied()
            .filter(|r| isr.contains(r))
            .collect();
        p.partition_epoch += 1;
        // The replica that joins last completes a reassignment.
        crate::reassignment::complete(p, |r| brokers.contains_key(&r) && !fenced.contains(&r));
        Ok(())
    }

    pub(crate) fn check_assignments(&self, assignments: &[Vec<i32>]) -> Result<()> {
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

impl PartitionMeta {
    /// A new partition: every replica in sync, the first one leading.
    pub fn new(replicas: &[i32]) -> Self {
        PartitionMeta {
            leader: replicas.first().copied().unwrap_or(NO_LEADER),
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }
}

pub(crate) fn partition_mut<'a>(
    topics: &'a mut BTreeMap<String, TopicMeta>,
    topic: &str,
    partition: i32,
) -> Result<&'a mut PartitionMeta> {
    topics
        .get_mut(topic)
        .ok_or_else(|| MetaError::UnknownTopic(topic.to_string()))?
        .partitions
        .get_mut(usize::try_from(partition).unwrap_or(usize::MAX))
        .ok_or_else(|| MetaError::InvalidPartitions(format!("{topic}-{partition} does not exist")))
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

    fn replicated(s: &mut ClusterState, replicas: &[i32]) {
        for b in replicas {
            s.apply(1, &broker(*b)).unwrap();
        }
        s.apply(
            2,
            &Command::CreateTopic {
                name: "r".into(),
                id: Uuid::from_u128(9),
                assignments: vec![replicas.to_vec()],
                configs: BTreeMap::new(),
            },
        )
        .unwrap();
    }

    #[test]
    fn fencing_the_leader_elects_from_the_isr_and_bumps_the_epoch() {
        let mut s = ClusterState::default();
        replicated(&mut s, &[1, 2, 3]);
        s.apply(3, &Command::FenceBroker { node_id: 1 }).unwrap();
        let p = &s.topic("r").unwrap().partitions[0];
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (2, 1, vec![2, 3])
        );
        assert_eq!(s.live_brokers().collect::<Vec<_>>(), vec![2, 3]);
        // A follower's death only shrinks the ISR.
        s.apply(4, &Command::FenceBroker { node_id: 3 }).unwrap();
        let p = &s.topic("r").unwrap().partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (2, 1, vec![2]));
        // The last ISR member dies: offline, and it stays the only eligible leader.
        s.apply(5, &Command::FenceBroker { node_id: 2 }).unwrap();
        let p = &s.topic("r").unwrap().partitions[0];
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (NO_LEADER, 2, vec![2])
        );
        // Broker 1 returns: not in the ISR, so no unclean election.
        s.apply(6, &broker(1)).unwrap();
        assert_eq!(s.topic("r").unwrap().partitions[0].leader, NO_LEADER);
        s.apply(7, &Command::UnfenceBroker { node_id: 2 }).unwrap();
        let p = &s.topic("r").unwrap().partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (2, 3));
        assert!(s.fenced.contains(&3) && !s.fenced.contains(&2));
        assert!(matches!(
            s.apply(8, &Command::FenceBroker { node_id: 9 }),
            Err(MetaError::UnknownBroker(9))
        ));
    }

    #[test]
    fn a_restarted_leader_hands_replicated_partitions_to_the_isr() {
        let mut s = ClusterState::default();
        replicated(&mut s, &[1, 2, 3]);
        s.apply(3, &broker(1)).unwrap();
        let p = &s.topic("r").unwrap().partitions[0];
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (2, 1, vec![2, 3])
        );
        // Alone in the ISR: it keeps the partition under a new epoch.
        let mut s = ClusterState::default();
        replicated(&mut s, &[1, 2]);
        s.apply(3, &Command::FenceBroker { node_id: 2 }).unwrap();
        s.apply(4, &broker(1)).unwrap();
        let p = &s.topic("r").unwrap().partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (1, 1, vec![1]));
        // Single-replica partitions are untouched by restarts.
        let mut s = ClusterState::default();
        s.apply(1, &broker(1)).unwrap();
        s.apply(2, &create("one", 1)).unwrap();
        s.apply(3, &broker(1)).unwrap();
        assert_eq!(s.topic("one").unwrap().partitions[0].leader_epoch, 0);
    }

    #[test]
    fn isr_changes_are_fenced_by_leader_and_partition_epochs() {
        let mut s = ClusterState::default();
        replicated(&mut s, &[1, 2, 3]);
        let alter = |leader, leader_epoch, partition_epoch, isr: &[i32]| Command::AlterIsr {
            topic: "r".into(),
            partition: 0,
            leader,
            leader_epoch,
            partition_epoch,
            isr: isr.to_vec(),
        };
        s.apply(3, &alter(1, 0, 0, &[1, 3])).unwrap();
        assert_eq!(s.topic("r").unwrap().partitions[0].isr, vec![1, 3]);
        let before = s.clone();
        for bad in [
            alter(1, 0, 0, &[1]),       // stale partition epoch
            alter(2, 0, 1, &[2]),       // not the leader
            alter(1, 1, 1, &[1]),       // wrong leader epoch
            alter(1, 0, 1, &[3]),       // leader missing
            alter(1, 0, 1, &[1, 4]),    // not a replica
            alter(1, 0, 1, &[1, 3, 3]), // duplicate
        ] {
            assert!(s.apply(4, &bad).is_err(), "{bad:?} accepted");
            assert_eq!(s, before);
        }
        s.apply(4, &Command::FenceBroker { node_id: 2 }).unwrap();
        let p = s.topic("r").unwrap().partitions[0].clone();
        assert!(
            s.apply(5, &alter(1, 0, p.partition_epoch, &[1, 2, 3]))
                .is_err(),
            "a fenced broker cannot rejoin"
        );
        s.apply(5, &alter(1, 0, p.partition_epoch, &[3, 1]))
            .unwrap();
        assert_eq!(s.topic("r").unwrap().partitions[0].isr, vec![1, 3]);
    }

    #[test]
    fn commands_round_trip_through_json() {
        let c = create("x", 2);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), c);
    }
}
