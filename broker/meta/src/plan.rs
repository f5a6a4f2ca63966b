//! Planning: turning a request into a fully decided [`Command`] (validated names, partition
//! counts and replica placement). Pure functions of the current state and the request.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::{topic_config, ClusterState, Command, MetaError, Result};

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| MetaError::InvalidTopicName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid("longer than 249 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

/// Place `count` partitions of `topic` with `replication_factor` replicas each over the live
/// brokers that are not draining, balanced by count and by leadership within the topic (as Kafka does, so every
/// topic spreads over all brokers), ties going to the brokers with the least load over the
/// whole cluster. Each partition is led by the broker leading the fewest of the topic's
/// partitions, and followed by those holding the fewest of its replicas. Partitions the topic
/// already has count (CreatePartitions). Deterministic for a given state.
pub fn assign_replicas(
    state: &ClusterState,
    topic: &str,
    count: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<i32>>> {
    let live: Vec<i32> = state.placeable_brokers().collect();
    if replication_factor == 0 {
        return Err(MetaError::InvalidReplicationFactor(
            "replication factor must be at least 1".into(),
        ));
    }
    if replication_factor > live.len() {
        return Err(MetaError::InvalidReplicationFactor(format!(
            "replication factor {replication_factor} is larger than the {} available brokers",
            live.len()
        )));
    }
    let zero: BTreeMap<i32, usize> = live.iter().map(|b| (*b, 0)).collect();
    let count_into =
        |leaders: &mut BTreeMap<i32, usize>,
         replicas: &mut BTreeMap<i32, usize>,
         partitions: &mut dyn Iterator<Item = &crate::PartitionMeta>| {
            for p in partitions {
                if let Some(n) = leaders.get_mut(&p.leader) {
                    *n += 1;
                }
                for r in &p.replicas {
                    if let Some(n) = replicas.get_mut(r) {
                        *n += 1;
                    }
                }
            }
        };
    let (mut leaders, mut replicas) = (zero.clone(), zero.clone());
    count_into(
        &mut leaders,
        &mut replicas,
        &mut state
            .topics
            .get(topic)
            .into_iter()
            .flat_map(|t| &t.partitions),
    );
    let (mut all_leaders, mut all_replicas) = (zero.clone(), zero);
    count_into(
        &mut all_leaders,
        &mut all_replicas,
        &mut state.topics.values().flat_map(|t| &t.partitions),
    );
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let leader = *live
            .iter()
            .min_by_key(|b| {
                (
                    leaders[b],
                    replicas[b],
                    all_leaders[b],
                    all_replicas[b],
                    **b,
                )
            })
            .expect("replication factor >= 1 means a live broker exists");
        // Among followers with equally few replicas, prefer those leading more: they take no
        // leadership soon, while the others are about to get replicas as leaders anyway.
        let mut followers: Vec<i32> = live.iter().copied().filter(|b| *b != leader).collect();
        followers.sort_by_key(|b| {
            (
                replicas[b],
                std::cmp::Reverse(leaders[b]),
                all_replicas[b],
                all_leaders[b],
                *b,
            )
        });
        followers.truncate(replication_factor - 1);
        let mut assignment = vec![leader];
        assignment.extend(followers);
        for (l, r) in [
            (&mut leaders, &mut replicas),
            (&mut all_leaders, &mut all_replicas),
        ] {
            *l.get_mut(&leader).expect("live") += 1;
            for b in &assignment {
                *r.get_mut(b).expect("live") += 1;
            }
        }
        out.push(assignment);
    }
    Ok(out)
}

/// A CreateTopics request, after defaults were filled in by the caller.
#[derive(Debug, Clone)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Explicit placement, overriding partitions and replication factor when given.
    pub assignments: Option<Vec<Vec<i32>>>,
    pub configs: BTreeMap<String, String>,
}

pub fn plan_create_topic(state: &ClusterState, req: &CreateTopic, id: Uuid) -> Result<Command> {
    validate_topic_name(&req.name)?;
    if state.topics.contains_key(&req.name) {
        return Err(MetaError::TopicAlreadyExists(req.name.clone()));
    }
    let configs = topic_config::validate(&req.configs)?;
    let assignments = match &req.assignments {
        Some(a) => a.clone(),
        None => {
            if req.partitions < 1 {
                return Err(MetaError::InvalidPartitions(format!(
                    "number of partitions must be at least 1, got {}",
                    req.partitions
                )));
            }
            if req.replication_factor < 1 {
                return Err(MetaError::InvalidReplicationFactor(format!(
                    "replication factor must be at least 1, got {}",
                    req.replication_factor
                )));
            }
            assign_replicas(
                state,
                &req.name,
                req.partitions as usize,
                req.replication_factor as usize,
            )?
        }
    };
    let min_isr = topic_config::TopicConfig::from_overrides(&configs).min_insync_replicas;
    if let Some(first) = assignments.first() {
        if min_isr as usize > first.len() {
            return Err(MetaError::InvalidConfig {
                key: "min.insync.replicas".into(),
                reason: format!(
                    "{min_isr} is larger than the replication factor {}",
                    first.len()
                ),
            });
        }
    }
    let command = Command::CreateTopic {
        name: req.name.clone(),
        id,
        assignments,
        configs,
    };
    // Dry-run so validate_only answers exactly what a real create would.
    state.clone().apply(state.applied_index + 1, &command)?;
    Ok(command)
}

pub fn plan_create_partitions(
    state: &ClusterState,
    name: &str,
    new_total: i32,
    assignments: Option<Vec<Vec<i32>>>,
) -> Result<Command> {
    let topic = state.topic(name)?;
    let current = topic.partitions.len();
    if new_total as i64 <= current as i64 {
        return Err(MetaError::InvalidPartitions(format!(
            "topic '{name}' has {current} partitions; the new count must be larger, got {new_total}"
        )));
    }
    let added = new_total as usize - current;
    let rf = topic
        .partitions
        .first()
        .map_or(1, |p| p.target_replicas().len());
    let assignments = match assignments {
        Some(a) if a.len() != added => {
            return Err(MetaError::InvalidReplicaAssignment(format!(
                "{} assignments given for {added} new partitions",
                a.len()
            )))
        }
        Some(a) => a,
        None => assign_replicas(state, name, added, rf)?,
    };
    let command = Command::CreatePartitions {
        name: name.to_string(),
        assignments,
    };
    state.clone().apply(state.applied_index + 1, &command)?;
    Ok(command)
}

/// One change of IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

/// Apply incremental operations to a topic's overrides; the result is validated whole.
pub fn plan_incremental_configs(
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp],
) -> Result<BTreeMap<String, String>> {
    let mut next = current.clone();
    for op in ops {
        match op {
            ConfigOp::Set(k, v) => {
                let key = topic_config::validate_entry(k, v)?;
                next.insert(key.to_string(), v.clone());
            }
            ConfigOp::Delete(k) => {
                let key = topic_config::definition(k).map_or(k.as_str(), |d| d.name);
                next.remove(key);
            }
            ConfigOp::Append(k, v) | ConfigOp::Subtract(k, v) => {
                let def = topic_config::definition(k).ok_or_else(|| MetaError::InvalidConfig {
                    key: k.clone(),
                    reason: "unknown config".into(),
                })?;
                if def.kind != topic_config::ConfigKind::List {
                    return Err(MetaError::InvalidConfig {
                        key: k.clone(),
                        reason: "APPEND and SUBTRACT apply only to list configs".into(),
                    });
                }
                let existing = next
                    .get(def.name)
                    .cloned()
                    .unwrap_or_else(|| def.default.to_string());
                let mut items: Vec<String> = existing
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let present = items.iter().any(|i| i == item);
                    match op {
                        ConfigOp::Append(..) if !present => items.push(item.to_string()),
                        ConfigOp::Subtract(..) => items.retain(|i| i != item),
                        _ => {}
                    }
                }
                next.insert(def.name.to_string(), items.join(","));
            }
        }
    }
    topic_config::validate(&next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerInfo;

    fn cluster(brokers: i32) -> ClusterState {
        let mut s = ClusterState::default();
        for id in 1..=brokers {
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
        s
    }

    fn req(name: &str, partitions: i32, rf: i16) -> CreateTopic {
        CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            assignments: None,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "orders.v1", "A_b-c", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "has space", "slash/", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn placement_balances_replicas_and_leaders_exhaustively() {
        for brokers in 1..=7 {
            for rf in 1..=brokers as usize {
                for count in 1..=30 {
                    let s = cluster(brokers);
                    let a = assign_replicas(&s, "t", count, rf).unwrap();
                    assert_eq!(a.len(), count);
                    let mut leaders = BTreeMap::<i32, usize>::new();
                    let mut replicas = BTreeMap::<i32, usize>::new();
                    for r in &a {
                        assert_eq!(r.len(), rf);
                        let mut d = r.clone();
                        d.sort_unstable();
                        d.dedup();
                        assert_eq!(d.len(), rf, "duplicate replica in {r:?}");
                        *leaders.entry(r[0]).or_default() += 1;
                        for b in r {
                            *replicas.entry(*b).or_default() += 1;
                        }
                    }
                    let spread = |m: &BTreeMap<i32, usize>, total: usize| {
                        let counts: Vec<usize> = (1..=brokers)
                            .map(|b| m.get(&b).copied().unwrap_or(0))
                            .collect();
                        assert_eq!(counts.iter().sum::<usize>(), total);
                        counts.iter().max().unwrap() - counts.iter().min().unwrap()
                    };
                    assert!(
                        spread(&leaders, count) <= 1,
                        "{brokers} brokers rf {rf}: {a:?}"
                    );
                    assert!(
                        spread(&replicas, count * rf) <= 1,
                        "{brokers} brokers rf {rf}: {a:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn placement_balances_each_topic_breaks_ties_by_cluster_load_and_skips_fenced_brokers() {
        let mut s = cluster(3);
        let c = plan_create_topic(&s, &req("a", 1, 1), Uuid::from_u128(1)).unwrap();
        s.apply(10, &c).unwrap();
        // Broker 1 already leads a partition of another topic: this topic starts elsewhere
        // but still spreads over every broker.
        assert_eq!(
            assign_replicas(&s, "b", 3, 1).unwrap(),
            vec![vec![2], vec![3], vec![1]]
        );
        // New partitions of "a" go where "a" has none.
        assert_eq!(
            assign_replicas(&s, "a", 2, 1).unwrap(),
            vec![vec![2], vec![3]]
        );
        s.apply(11, &Command::FenceBroker { node_id: 2 }).unwrap();
        assert_eq!(
            assign_replicas(&s, "b", 2, 1).unwrap(),
            vec![vec![3], vec![1]]
        );
        assert!(matches!(
            assign_replicas(&s, "b", 1, 3),
            Err(MetaError::InvalidReplicationFactor(_))
        ));
    }

    #[test]
    fn replication_factor_above_brokers_is_refused() {
        let s = cluster(1);
        assert!(matches!(
            plan_create_topic(&s, &req("t", 1, 3), Uuid::nil()),
            Err(MetaError::InvalidReplicationFactor(_))
        ));
        assert!(matches!(
            plan_create_topic(&s, &req("t", 0, 1), Uuid::nil()),
            Err(MetaError::InvalidPartitions(_))
        ));
    }

    #[test]
    fn replicated_topics_are_placed_over_live_brokers() {
        let mut s = cluster(3);
        let Command::CreateTopic { assignments, .. } =
            plan_create_topic(&s, &req("t", 3, 3), Uuid::nil()).unwrap()
        else {
            panic!("not a CreateTopic");
        };
        assert_eq!(
            assignments,
            vec![vec![1, 2, 3], vec![2, 1, 3], vec![3, 1, 2]]
        );
        s.apply(10, &Command::FenceBroker { node_id: 3 }).unwrap();
        assert!(matches!(
            plan_create_topic(&s, &req("t", 1, 3), Uuid::nil()),
            Err(MetaError::InvalidReplicationFactor(_))
        ));
        let mut r = req("t", 1, 2);
        r.configs.insert("min.insync.replicas".into(), "2".into());
        plan_create_topic(&s, &r, Uuid::nil()).unwrap();
    }

    #[test]
    fn min_isr_above_replication_factor_is_refused() {
        let s = cluster(1);
        let mut r = req("t", 1, 1);
        r.configs.insert("min.insync.replicas".into(), "2".into());
        assert!(matches!(
            plan_create_topic(&s, &r, Uuid::nil()),
            Err(MetaError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn create_partitions_must_grow() {
        let mut s = cluster(1);
        let c = plan_create_topic(&s, &req("t", 2, 1), Uuid::nil()).unwrap();
        s.apply(10, &c).unwrap();
        assert!(plan_create_partitions(&s, "t", 2, None).is_err());
        let c = plan_create_partitions(&s, "t", 5, None).unwrap();
        s.apply(11, &c).unwrap();
        assert_eq!(s.topic("t").unwrap().partitions.len(), 5);
        assert!(matches!(
            plan_create_partitions(&s, "nope", 5, None),
            Err(MetaError::UnknownTopic(_))
        ));
    }

    #[test]
    fn incremental_ops_set_delete_append_subtract() {
        let current = BTreeMap::from([("retention.ms".to_string(), "5".to_string())]);
        let next = plan_incremental_configs(
            &current,
            &[
                ConfigOp::Delete("retention.ms".into()),
                ConfigOp::Set("segment.ms".into(), "100".into()),
                ConfigOp::Append("cleanup.policy".into(), "compact".into()),
            ],
        )
        .unwrap();
        assert_eq!(next.get("retention.ms"), None);
        assert_eq!(next["segment.ms"], "100");
        assert_eq!(next["cleanup.policy"], "delete,compact");
        let next = plan_incremental_configs(
            &next,
            &[ConfigOp::Subtract("cleanup.policy".into(), "delete".into())],
        )
        .unwrap();
        assert_eq!(next["cleanup.policy"], "compact");
        assert!(
            plan_incremental_configs(&next, &[ConfigOp::Set("bogus".into(), "1".into())]).is_err()
        );
        assert!(plan_incremental_configs(
            &next,
            &[ConfigOp::Append("retention.ms".into(), "1".into())]
        )
        .is_err());
    }
}
