//! Moving partition replicas between brokers, and draining a broker before it leaves.
//!
//! A reassignment follows Kafka's (KIP-455): the partition's replicas become the union of the
//! old and the new list, the joining replicas fetch from the leader like any follower, and once
//! every one of them is in the ISR the leaving ones are dropped in the same step (a new leader
//! is elected from the new list if the old leader leaves). Until then the ISR and
//! min.insync.replicas work as before, so a move never leaves a partition with fewer in-sync
//! replicas than it had: the new replica set is entirely in sync when it takes over.
//!
//! Draining a broker is a series of such moves that the controller starts (a bounded number at
//! a time, see [`drain_steps`]); when the broker holds no replica any more it leaves the Raft
//! quorum and is unregistered. Everything here is a pure function of the state.

use std::collections::{BTreeMap, BTreeSet};

use crate::replication::elect_leader;
use crate::state::partition_mut;
use crate::{ClusterState, Command, MetaError, PartitionMeta, Result, NO_LEADER};

impl PartitionMeta {
    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition will have once a reassignment in progress completes (its
    /// replicas when none is).
    pub fn target_replicas(&self) -> Vec<i32> {
        without(&self.replicas, &self.removing_replicas)
    }

    /// The replicas the partition had before the reassignment in progress began.
    pub fn original_replicas(&self) -> Vec<i32> {
        without(&self.replicas, &self.adding_replicas)
    }
}

fn without(list: &[i32], gone: &[i32]) -> Vec<i32> {
    list.iter().copied().filter(|r| !gone.contains(r)).collect()
}

/// Complete the reassignment in progress if every replica of the new list is in sync: the
/// leaving replicas go, and if the leader is among them the first live in-sync replica of the
/// new list takes over under a new leader epoch. No-op otherwise (also when the leader leaves
/// and no member of the new list is alive to take over).
pub(crate) fn complete(p: &mut PartitionMeta, alive: impl Fn(i32) -> bool) {
    if !p.is_reassigning() {
        return;
    }
    let target = p.target_replicas();
    if !target.iter().all(|r| p.isr.contains(r)) {
        return;
    }
    if !target.contains(&p.leader) {
        let Some(leader) = elect_leader(&target, &target, &alive) else {
            return;
        };
        p.leader = leader;
        p.leader_epoch += 1;
    }
    p.isr = target.clone();
    p.replicas = target;
    p.adding_replicas.clear();
    p.removing_replicas.clear();
    p.partition_epoch += 1;
}

impl ClusterState {
    /// Registered brokers that may receive new replicas: alive and not draining.
    pub fn placeable_brokers(&self) -> impl Iterator<Item = i32> + '_ {
        self.live_brokers().filter(|b| !self.draining.contains(b))
    }

    pub(crate) fn reassign(&mut self, topic: &str, partition: i32, target: &[i32]) -> Result<()> {
        self.check_assignments(std::slice::from_ref(&target.to_vec()))?;
        let (brokers, fenced) = (&self.brokers, &self.fenced);
        let alive = |r: i32| brokers.contains_key(&r) && !fenced.contains(&r);
        let p = partition_mut(&mut self.topics, topic, partition)?;
        let original = p.original_replicas();
        let adding = without(target, &original);
        let removing = without(&original, target);
        let mut replicas = target.to_vec();
        replicas.extend(&removing);
        let isr: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|r| p.isr.contains(r))
            .collect();
        if isr.is_empty() {
            return Err(MetaError::InvalidReplicaAssignment(format!(
                "{topic}-{partition}: none of {replicas:?} is in sync (ISR {:?}), so nothing could lead it",
                p.isr
            )));
        }
        if p.replicas == replicas && p.adding_replicas == adding {
            return Ok(());
        }
        p.replicas = replicas;
        p.isr = isr;
        p.adding_replicas = adding;
        p.removing_replicas = removing;
        p.partition_epoch += 1;
        if !p.replicas.contains(&p.leader) {
            // Cancelling a move whose new replica had taken over after a failover.
            p.leader = elect_leader(&p.replicas, &p.isr, alive).unwrap_or(NO_LEADER);
            p.leader_epoch += 1;
        }
        complete(p, alive);
        Ok(())
    }

    /// Checked here rather than only by the caller, so two drains racing cannot both pass
    /// against a state that has room for one.
    pub(crate) fn drain(&mut self, node_id: i32) -> Result<()> {
        if node_id < 0 {
            return Err(MetaError::UnknownBroker(node_id));
        }
        if !self.draining.contains(&node_id) {
            check_drain(self, node_id)?;
            self.draining.insert(node_id);
        }
        Ok(())
    }

    pub(crate) fn unregister(&mut self, node_id: i32) -> Result<()> {
        if !self.brokers.contains_key(&node_id) && !self.draining.contains(&node_id) {
            return Err(MetaError::UnknownBroker(node_id));
        }
        if let Some(held) = self.replicas_on(node_id).next() {
            return Err(MetaError::CannotDrain(format!(
                "broker {node_id} still holds a replica of {}-{}",
                held.0, held.1
            )));
        }
        self.brokers.remove(&node_id);
        self.fenced.remove(&node_id);
        self.draining.remove(&node_id);
        self.producer_id_blocks.remove(&node_id);
        Ok(())
    }

    /// Partitions (topic, index) whose replicas, joining and leaving ones included, hold `node_id`.
    pub fn replicas_on(&self, node_id: i32) -> impl Iterator<Item = (&str, i32)> + '_ {
        self.topics.values().flat_map(move |t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(move |(_, p)| p.replicas.contains(&node_id))
                .map(move |(i, _)| (t.name.as_str(), i as i32))
        })
    }
}

/// Whether `node_id` can be drained: some other broker stays, and every partition it holds can
/// keep its replication factor on the brokers that are neither draining nor `node_id`.
pub fn check_drain(state: &ClusterState, node_id: i32) -> Result<()> {
    let staying: BTreeSet<i32> = state
        .brokers
        .keys()
        .copied()
        .filter(|b| *b != node_id && !state.draining.contains(b))
        .collect();
    if staying.is_empty() {
        return Err(MetaError::CannotDrain(format!(
            "broker {node_id} is the last broker that is not leaving"
        )));
    }
    for topic in state.topics.values() {
        for (i, p) in topic.partitions.iter().enumerate() {
            let target = p.target_replicas();
            if target.contains(&node_id) && target.len() > staying.len() {
                return Err(MetaError::CannotDrain(format!(
                    "{}-{i} has {} replicas and only {} other brokers can hold one; add a broker \
                     or lower the topic's replication factor first",
                    topic.name,
                    target.len(),
                    staying.len()
                )));
            }
        }
    }
    Ok(())
}

/// AlterPartitionReassignments for one partition: `Some(replicas)` moves it there (new replicas
/// must be live brokers that are not draining; with `allow_rf_change` false the replica count
/// must stay), `None` cancels the reassignment in progress. Checked against the state as the
/// command would be applied.
pub fn plan_reassignment(
    state: &ClusterState,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<Command> {
    let p = state
        .partition(topic, partition)
        .ok_or_else(|| MetaError::UnknownTopic(format!("{topic}-{partition}")))?;
    let replicas = match replicas {
        None if !p.is_reassigning() => {
            return Err(MetaError::NoReassignmentInProgress(format!(
                "{topic}-{partition} is not being reassigned"
            )))
        }
        None => p.original_replicas(),
        Some(list) => {
            if let Some(b) = list
                .iter()
                .find(|b| !p.replicas.contains(b) && !state.placeable_brokers().any(|l| l == **b))
            {
                return Err(MetaError::InvalidReplicaAssignment(format!(
                    "broker {b} is not a live broker that can take replicas"
                )));
            }
            if !allow_rf_change && list.len() != p.original_replicas().len() {
                return Err(MetaError::InvalidReplicationFactor(format!(
                    "{topic}-{partition} has {} replicas; the reassignment names {}",
                    p.original_replicas().len(),
                    list.len()
                )));
            }
            list
        }
    };
    let command = Command::ReassignPartition {
        topic: topic.to_string(),
        partition,
        replicas,
    };
    state.clone().apply(state.applied_index + 1, &command)?;
    Ok(command)
}

/// What the controller does next for the brokers being drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainStep {
    /// Commit this command (a reassignment, or unregistering a drained broker).
    Propose(Command),
    /// Remove this drained broker from the Raft membership.
    LeaveQuorum(i32),
}

/// The controller's next drain steps: start moves for partitions held by draining brokers
/// (at most `max_moves` reassignments in progress at once, counting those already running);
/// a drained broker still in the Raft membership (`members`) leaves it, and one that left is
/// unregistered. A partition without a leader is not moved (its new replicas could not catch
/// up); it holds the drain until an in-sync replica returns.
pub fn drain_steps(
    state: &ClusterState,
    members: &BTreeSet<i32>,
    max_moves: usize,
) -> Vec<DrainStep> {
    let mut steps = Vec::new();
    if state.draining.is_empty() {
        return steps;
    }
    let running = state
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.is_reassigning())
        .count();
    let mut budget = max_moves.saturating_sub(running);
    // Replicas per broker that can take more, so moves spread over the least loaded.
    let mut load: BTreeMap<i32, usize> = state.placeable_brokers().map(|b| (b, 0)).collect();
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        for r in p.target_replicas() {
            if let Some(n) = load.get_mut(&r) {
                *n += 1;
            }
        }
    }
    'topics: for topic in state.topics.values() {
        for (i, p) in topic.partitions.iter().enumerate() {
            if budget == 0 {
                break 'topics;
            }
            if p.is_reassigning() || p.leader == NO_LEADER {
                continue;
            }
            if !p.replicas.iter().any(|r| state.draining.contains(r)) {
                continue;
            }
            let mut target: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| !state.draining.contains(r))
                .collect();
            let mut chosen = Vec::new();
            for _ in target.len()..p.replicas.len() {
                let pick = load
                    .iter()
                    .filter(|(b, _)| !target.contains(b))
                    .min_by_key(|(b, n)| (**n, **b))
                    .map(|(b, _)| *b);
                match pick {
                    Some(b) => {
                        target.push(b);
                        chosen.push(b);
                    }
                    None => break,
                }
            }
            if target.len() < p.replicas.len() {
                continue;
            }
            for b in chosen {
                *load.entry(b).or_default() += 1;
            }
            steps.push(DrainStep::Propose(Command::ReassignPartition {
                topic: topic.name.clone(),
                partition: i as i32,
                replicas: target,
            }));
            budget -= 1;
        }
    }
    for node in &state.draining {
        if state.replicas_on(*node).next().is_some() {
            continue;
        }
        if members.contains(node) {
            steps.push(DrainStep::LeaveQuorum(*node));
        } else {
            steps.push(DrainStep::Propose(Command::UnregisterBroker {
                node_id: *node,
            }));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::BrokerInfo;

    fn cluster(brokers: &[i32], partitions: &[&[i32]]) -> ClusterState {
        let mut s = ClusterState::default();
        for b in brokers {
            s.apply(
                1,
                &Command::RegisterBroker(BrokerInfo {
                    node_id: *b,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                }),
            )
            .unwrap();
        }
        s.apply(
            2,
            &Command::CreateTopic {
                name: "t".into(),
                id: Uuid::from_u128(1),
                assignments: partitions.iter().map(|p| p.to_vec()).collect(),
                configs: BTreeMap::new(),
            },
        )
        .unwrap();
        s
    }

    fn reassign(partition: i32, replicas: &[i32]) -> Command {
        Command::ReassignPartition {
            topic: "t".into(),
            partition,
            replicas: replicas.to_vec(),
        }
    }

    fn p(s: &ClusterState, i: usize) -> &PartitionMeta {
        &s.topic("t").unwrap().partitions[i]
    }

    /// The leader adds in-sync followers, as its replication runtime would.
    fn join_isr(s: &mut ClusterState, partition: usize, joining: &[i32]) -> Result<()> {
        let m = p(s, partition).clone();
        let mut isr = m.isr.clone();
        isr.extend(joining);
        s.apply(
            9,
            &Command::AlterIsr {
                topic: "t".into(),
                partition: partition as i32,
                leader: m.leader,
                leader_epoch: m.leader_epoch,
                partition_epoch: m.partition_epoch,
                isr,
            },
        )
    }

    #[test]
    fn a_move_completes_when_every_new_replica_is_in_sync() {
        let mut s = cluster(&[1, 2, 3, 4, 5], &[&[1, 2, 3]]);
        s.apply(3, &reassign(0, &[2, 4, 5])).unwrap();
        let m = p(&s, 0);
        assert_eq!(m.replicas, vec![2, 4, 5, 1, 3]);
        assert_eq!(
            (m.adding_replicas.clone(), m.removing_replicas.clone()),
            (vec![4, 5], vec![1, 3])
        );
        assert_eq!((m.leader, m.isr.clone()), (1, vec![2, 1, 3]));
        // One of two new replicas in sync: nothing leaves yet.
        join_isr(&mut s, 0, &[4]).unwrap();
        assert!(p(&s, 0).is_reassigning());
        assert_eq!(p(&s, 0).isr, vec![2, 4, 1, 3]);
        join_isr(&mut s, 0, &[5]).unwrap();
        let m = p(&s, 0);
        assert!(!m.is_reassigning());
        assert_eq!(m.replicas, vec![2, 4, 5]);
        assert_eq!(m.isr, vec![2, 4, 5]);
        // The old leader left: the first in-sync replica of the new list leads, new epoch.
        assert_eq!((m.leader, m.leader_epoch), (2, 1));
    }

    #[test]
    fn a_move_that_keeps_the_leader_keeps_its_epoch() {
        let mut s = cluster(&[1, 2, 3], &[&[1, 2]]);
        s.apply(3, &reassign(0, &[1, 3])).unwrap();
        join_isr(&mut s, 0, &[3]).unwrap();
        let m = p(&s, 0);
        assert_eq!((m.leader, m.leader_epoch), (1, 0));
        assert_eq!(
            (m.replicas.clone(), m.isr.clone()),
            (vec![1, 3], vec![1, 3])
        );
        // Shrinking the replica list needs no catch-up at all.
        s.apply(4, &reassign(0, &[3])).unwrap();
        let m = p(&s, 0);
        assert_eq!(
            (m.leader, m.leader_epoch, m.replicas.clone()),
            (3, 1, vec![3])
        );
    }

    #[test]
    fn the_new_replica_set_is_in_sync_whenever_a_move_completes() {
        // Exhaustive over small moves and ISR growth orders: min.insync.replicas is never at
        // risk, because completion needs the whole new list in the ISR.
        let lists: Vec<Vec<i32>> = vec![
            vec![1, 2, 3],
            vec![2, 3, 4],
            vec![4, 5, 1],
            vec![5],
            vec![3, 4],
        ];
        for target in &lists {
            let mut s = cluster(&[1, 2, 3, 4, 5], &[&[1, 2, 3]]);
            s.apply(3, &reassign(0, target)).unwrap();
            for joining in p(&s, 0).adding_replicas.clone() {
                assert!(p(&s, 0).is_reassigning());
                join_isr(&mut s, 0, &[joining]).unwrap();
            }
            let m = p(&s, 0);
            assert!(!m.is_reassigning(), "{target:?}");
            assert_eq!(&m.replicas, target);
            assert_eq!(&m.isr, target);
            assert!(target.contains(&m.leader));
        }
    }

    #[test]
    fn cancelling_returns_to_the_original_replicas() {
        let mut s = cluster(&[1, 2, 3, 4], &[&[1, 2, 3]]);
        s.apply(3, &reassign(0, &[1, 2, 4])).unwrap();
        let before = p(&s, 0).partition_epoch;
        s.apply(4, &reassign(0, &[1, 2, 3])).unwrap();
        let m = p(&s, 0);
        assert!(!m.is_reassigning());
        assert_eq!(
            (m.replicas.clone(), m.isr.clone()),
            (vec![1, 2, 3], vec![1, 2, 3])
        );
        assert!(m.partition_epoch > before);
        // Unregistered brokers and empty lists are refused without change.
        let before = s.clone();
        assert!(s.apply(5, &reassign(0, &[1, 9])).is_err());
        assert!(s.apply(5, &reassign(0, &[])).is_err());
        assert!(s.apply(5, &reassign(0, &[2, 2])).is_err());
        assert_eq!(s, before);
    }

    #[test]
    fn a_move_away_from_a_fenced_leader_waits_for_a_live_one() {
        let mut s = cluster(&[1, 2, 3], &[&[1]]);
        s.apply(3, &reassign(0, &[2])).unwrap();
        assert!(p(&s, 0).is_reassigning());
        join_isr(&mut s, 0, &[]).unwrap();
        assert!(p(&s, 0).is_reassigning(), "2 is not in sync yet");
        s.apply(4, &Command::FenceBroker { node_id: 2 }).unwrap();
        let m = p(&s, 0).clone();
        // 2 is fenced: it cannot join, so the move cannot complete.
        assert!(join_isr(&mut s, 0, &[2]).is_err());
        assert_eq!(p(&s, 0), &m);
    }

    #[test]
    fn drain_moves_replicas_to_the_least_loaded_brokers_then_removes_the_broker() {
        let mut s = cluster(
            &[1, 2, 3, 4],
            &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2], &[2, 3, 4]],
        );
        check_drain(&s, 1).unwrap();
        s.apply(3, &Command::DrainBroker { node_id: 1 }).unwrap();
        let members = BTreeSet::from([1, 2, 3, 4]);
        let steps = drain_steps(&s, &members, 2);
        // At most two moves at a time; broker 4 (fewest replicas) takes them.
        assert_eq!(
            steps,
            vec![
                DrainStep::Propose(reassign(0, &[2, 3, 4])),
                DrainStep::Propose(reassign(1, &[2, 3, 4])),
            ]
        );
        for step in steps {
            let DrainStep::Propose(c) = step else {
                unreachable!()
            };
            s.apply(4, &c).unwrap();
        }
        assert!(drain_steps(&s, &members, 2).is_empty(), "budget spent");
        join_isr(&mut s, 0, &[4]).unwrap();
        join_isr(&mut s, 1, &[4]).unwrap();
        assert_eq!(p(&s, 0).leader, 2, "the old leader left");
        let steps = drain_steps(&s, &members, 2);
        assert_eq!(steps, vec![DrainStep::Propose(reassign(2, &[3, 2, 4]))]);
        let DrainStep::Propose(c) = &steps[0] else {
            unreachable!()
        };
        s.apply(5, c).unwrap();
        join_isr(&mut s, 2, &[4]).unwrap();
        assert_eq!(p(&s, 2).leader, 3, "the leader stayed");
        assert_eq!(s.replicas_on(1).count(), 0);
        // Nothing left on 1: it leaves the quorum, then is unregistered.
        assert_eq!(
            drain_steps(&s, &members, 2),
            vec![DrainStep::LeaveQuorum(1)]
        );
        let members = BTreeSet::from([2, 3, 4]);
        assert_eq!(
            drain_steps(&s, &members, 2),
            vec![DrainStep::Propose(Command::UnregisterBroker { node_id: 1 })]
        );
        s.apply(6, &Command::UnregisterBroker { node_id: 1 })
            .unwrap();
        assert!(!s.brokers.contains_key(&1) && s.draining.is_empty());
        assert!(drain_steps(&s, &members, 2).is_empty());
    }

    #[test]
    fn drains_that_would_lose_replicas_are_refused() {
        let mut s = cluster(&[1, 2, 3], &[&[1, 2, 3]]);
        assert!(matches!(check_drain(&s, 1), Err(MetaError::CannotDrain(_))));
        let before = s.clone();
        assert!(s.apply(3, &Command::DrainBroker { node_id: 1 }).is_err());
        assert_eq!(s, before);
        // Room for one drain only: the second is refused by the state, whoever checked first.
        let mut s = cluster(&[1, 2, 3, 4], &[&[1, 2, 3]]);
        s.apply(3, &Command::DrainBroker { node_id: 4 }).unwrap();
        assert!(s.apply(4, &Command::DrainBroker { node_id: 1 }).is_err());
        s.apply(5, &Command::DrainBroker { node_id: 4 }).unwrap();
        let s = cluster(&[1], &[&[1]]);
        assert!(matches!(check_drain(&s, 1), Err(MetaError::CannotDrain(_))));
        let s = cluster(&[1, 2], &[&[1]]);
        check_drain(&s, 1).unwrap();
        // Broker 1 still holds its replica and may not be forgotten.
        let mut s = s;
        assert!(matches!(
            s.apply(3, &Command::UnregisterBroker { node_id: 1 }),
            Err(MetaError::CannotDrain(_))
        ));
    }

    #[test]
    fn draining_brokers_get_no_new_replicas_and_offline_partitions_wait() {
        let mut s = cluster(&[1, 2, 3], &[&[1], &[2]]);
        s.apply(3, &Command::DrainBroker { node_id: 1 }).unwrap();
        assert_eq!(s.placeable_brokers().collect::<Vec<_>>(), vec![2, 3]);
        let placed = crate::plan::assign_replicas(&s, "u", 4, 2).unwrap();
        assert!(placed.iter().flatten().all(|b| *b != 1));
        s.apply(4, &Command::FenceBroker { node_id: 1 }).unwrap();
        assert_eq!(p(&s, 0).leader, NO_LEADER);
        let members = BTreeSet::from([1, 2, 3]);
        assert!(
            drain_steps(&s, &members, 8).is_empty(),
            "its only copy is on the dead broker"
        );
    }

    #[test]
    fn requested_reassignments_are_checked_before_they_are_proposed() {
        let mut s = cluster(&[1, 2, 3, 4], &[&[1, 2]]);
        s.apply(3, &Command::FenceBroker { node_id: 4 }).unwrap();
        assert_eq!(
            plan_reassignment(&s, "t", 0, Some(vec![2, 3]), false).unwrap(),
            reassign(0, &[2, 3])
        );
        for (replicas, rf_change) in [
            (Some(vec![2, 4]), true), // fenced
            (Some(vec![2, 9]), true), // unknown
            (Some(vec![]), true),
            (Some(vec![2, 2]), true),
            (Some(vec![1, 2, 3]), false), // replication factor change not allowed
            (None, true),                 // nothing to cancel
        ] {
            assert!(
                plan_reassignment(&s, "t", 0, replicas.clone(), rf_change).is_err(),
                "{replicas:?}"
            );
        }
        assert!(matches!(
            plan_reassignment(&s, "t", 0, None, true),
            Err(MetaError::NoReassignmentInProgress(_))
        ));
        assert!(plan_reassignment(&s, "t", 1, Some(vec![1]), true).is_err());
        assert!(plan_reassignment(&s, "u", 0, Some(vec![1]), true).is_err());
        s.apply(4, &reassign(0, &[1, 2, 3])).unwrap();
        assert_eq!(
            plan_reassignment(&s, "t", 0, None, true).unwrap(),
            reassign(0, &[1, 2]),
            "cancelling returns to the original replicas"
        );
    }

    #[test]
    fn reassignment_state_survives_serialization_and_old_snapshots_load() {
        let mut s = cluster(&[1, 2], &[&[1]]);
        s.apply(3, &reassign(0, &[2])).unwrap();
        s.apply(4, &Command::DrainBroker { node_id: 1 }).unwrap();
        let restored: ClusterState =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(restored, s);
        let old: PartitionMeta =
            serde_json::from_str(r#"{"leader":1,"leader_epoch":0,"replicas":[1],"isr":[1]}"#)
                .unwrap();
        assert!(!old.is_reassigning());
    }
}
