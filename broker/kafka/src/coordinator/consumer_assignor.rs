//! Server-side assignors of KIP-848 consumer groups: pure functions from the members'
//! subscriptions and the subscribed topics' partitions to a target assignment.
//!
//! `uniform` (Kafka's default) balances partition counts across members and keeps each
//! member's previous partitions where balance allows, so a rebalance moves as few partitions as
//! it can. `range` gives each member of a topic a contiguous range of its partitions, Kafka's
//! classic range assignment done on the broker.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// A member's partitions, by topic id.
pub type TopicPartitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// A subscribed topic as the assignor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicShape {
    pub id: Uuid,
    pub partitions: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignorKind {
    Uniform,
    Range,
}

impl AssignorKind {
    /// Served assignors; the first is the default (Kafka's group.consumer.assignors order).
    pub const ALL: [AssignorKind; 2] = [AssignorKind::Uniform, AssignorKind::Range];

    pub fn name(self) -> &'static str {
        match self {
            AssignorKind::Uniform => "uniform",
            AssignorKind::Range => "range",
        }
    }

    pub fn parse(name: &str) -> Option<AssignorKind> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The target assignment: every member of `subscriptions` gets an entry (possibly empty)
    /// and every partition of every subscribed topic goes to exactly one subscriber.
    pub fn assign(
        self,
        subscriptions: &BTreeMap<String, BTreeSet<String>>,
        topics: &BTreeMap<String, TopicShape>,
        previous: &BTreeMap<String, TopicPartitions>,
    ) -> BTreeMap<String, TopicPartitions> {
        match self {
            AssignorKind::Uniform => uniform(subscriptions, topics, previous),
            AssignorKind::Range => range(subscriptions, topics),
        }
    }
}

fn empty_assignment(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, TopicPartitions> {
    subscriptions
        .keys()
        .map(|m| (m.clone(), TopicPartitions::new()))
        .collect()
}

fn range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, TopicShape>,
) -> BTreeMap<String, TopicPartitions> {
    let mut out = empty_assignment(subscriptions);
    for (name, shape) in topics {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, subscribed)| subscribed.contains(name))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let count = members.len() as i32;
        let (per, extra) = (shape.partitions / count, shape.partitions % count);
        let mut start = 0;
        for (i, member) in members.into_iter().enumerate() {
            let len = per + i32::from((i as i32) < extra);
            if len > 0 {
                out.entry(member.clone())
                    .or_default()
                    .insert(shape.id, (start..start + len).collect());
            }
            start += len;
        }
    }
    out
}

fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, TopicShape>,
    previous: &BTreeMap<String, TopicPartitions>,
) -> BTreeMap<String, TopicPartitions> {
    let mut out = empty_assignment(subscriptions);
    if subscriptions.is_empty() {
        return out;
    }
    let names_by_id: BTreeMap<Uuid, &String> = topics.iter().map(|(n, s)| (s.id, n)).collect();
    let subscribes = |member: &str, id: Uuid| {
        names_by_id
            .get(&id)
            .is_some_and(|name| subscriptions.get(member).is_some_and(|s| s.contains(*name)))
    };
    let all: Vec<(Uuid, i32)> = topics
        .iter()
        .filter(|(name, _)| subscriptions.values().any(|s| s.contains(*name)))
        .flat_map(|(_, shape)| (0..shape.partitions).map(move |p| (shape.id, p)))
        .collect();
    let cap = all.len().div_ceil(subscriptions.len());
    let exists = |id: Uuid, p: i32| {
        names_by_id
            .get(&id)
            .and_then(|n| topics.get(*n))
            .is_some_and(|s| p < s.partitions)
    };
    let mut owner: BTreeMap<(Uuid, i32), String> = BTreeMap::new();
    let mut count: BTreeMap<&str, usize> = subscriptions.keys().map(|m| (m.as_str(), 0)).collect();
    // Stickiness: what a member had stays with it, up to an even share.
    for (member, had) in previous {
        let Some(n) = count.get_mut(member.as_str()) else {
            continue;
        };
        for (&id, partitions) in had {
            for &p in partitions {
                if *n < cap
                    && exists(id, p)
                    && subscribes(member, id)
                    && !owner.contains_key(&(id, p))
                {
                    owner.insert((id, p), member.clone());
                    *n += 1;
                }
            }
        }
    }
    // The rest to the least loaded subscriber.
    for &(id, p) in &all {
        if owner.contains_key(&(id, p)) {
            continue;
        }
        let least: Option<&str> = count
            .iter()
            .filter(|(m, _)| subscribes(m, id))
            .min_by_key(|(_, n)| **n)
            .map(|(m, _)| *m);
        if let Some(member) = least {
            if let Some(n) = count.get_mut(member) {
                *n += 1;
            }
            owner.insert((id, p), member.to_string());
        }
    }
    // Even out what stickiness and differing subscriptions left uneven: move one partition at a
    // time from a member to a subscriber holding at least two fewer.
    for _ in 0..all.len() {
        let moved = owner.iter().rev().find_map(|(&(id, p), from)| {
            let from_count = count[from.as_str()];
            count
                .iter()
                .filter(|(m, n)| **n + 1 < from_count && subscribes(m, id))
                .min_by_key(|(_, n)| **n)
                .map(|(to, _)| ((id, p), from.clone(), to.to_string()))
        });
        let Some((tp, from, to)) = moved else { break };
        if let Some(n) = count.get_mut(from.as_str()) {
            *n -= 1;
        }
        if let Some(n) = count.get_mut(to.as_str()) {
            *n += 1;
        }
        owner.insert(tp, to);
    }
    for ((id, p), member) in owner {
        out.entry(member)
            .or_default()
            .entry(id)
            .or_default()
            .insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128, partitions: i32) -> TopicShape {
        TopicShape {
            id: Uuid::from_u128(n),
            partitions,
        }
    }

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        members
            .iter()
            .map(|(m, t)| (m.to_string(), t.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn counts(a: &BTreeMap<String, TopicPartitions>) -> Vec<usize> {
        a.values()
            .map(|t| t.values().map(BTreeSet::len).sum())
            .collect()
    }

    /// Every partition of a subscribed topic is assigned once, to a subscriber.
    fn check_complete(
        a: &BTreeMap<String, TopicPartitions>,
        subscriptions: &BTreeMap<String, BTreeSet<String>>,
        topics: &BTreeMap<String, TopicShape>,
    ) {
        let mut seen = BTreeSet::new();
        for (member, tps) in a {
            for (id, ps) in tps {
                let name = topics.iter().find(|(_, s)| s.id == *id).unwrap().0;
                assert!(subscriptions[member].contains(name), "{member} got {name}");
                for p in ps {
                    assert!(seen.insert((*id, *p)), "{id}/{p} assigned twice");
                }
            }
        }
        let expected: usize = topics
            .iter()
            .filter(|(n, _)| subscriptions.values().any(|s| s.contains(*n)))
            .map(|(_, s)| s.partitions as usize)
            .sum();
        assert_eq!(seen.len(), expected);
    }

    #[test]
    fn uniform_balances_and_is_sticky() {
        let topics: BTreeMap<String, TopicShape> =
            [("a".to_string(), topic(1, 12))].into_iter().collect();
        let three = subs(&[("m1", &["a"]), ("m2", &["a"]), ("m3", &["a"])]);
        let first = AssignorKind::Uniform.assign(&three, &topics, &BTreeMap::new());
        check_complete(&first, &three, &topics);
        assert_eq!(counts(&first), vec![4, 4, 4]);

        let five = subs(&[
            ("m1", &["a"]),
            ("m2", &["a"]),
            ("m3", &["a"]),
            ("m4", &["a"]),
            ("m5", &["a"]),
        ]);
        let second = AssignorKind::Uniform.assign(&five, &topics, &first);
        check_complete(&second, &five, &topics);
        let mut c = counts(&second);
        c.sort_unstable();
        assert_eq!(c, vec![2, 2, 2, 3, 3]);
        // Old members only lost partitions; none moved between them.
        for m in ["m1", "m2", "m3"] {
            for (id, ps) in &second[m] {
                assert!(
                    ps.is_subset(&first[m][id]),
                    "{m} gained a partition it did not have"
                );
            }
        }
    }

    #[test]
    fn uniform_respects_differing_subscriptions() {
        let topics: BTreeMap<String, TopicShape> = [
            ("a".to_string(), topic(1, 4)),
            ("b".to_string(), topic(2, 2)),
            ("c".to_string(), topic(3, 3)),
        ]
        .into_iter()
        .collect();
        let s = subs(&[("m1", &["a", "b"]), ("m2", &["a"]), ("m3", &["b"])]);
        let a = AssignorKind::Uniform.assign(&s, &topics, &BTreeMap::new());
        check_complete(&a, &s, &topics);
        assert_eq!(counts(&a), vec![2, 2, 2]);
    }

    #[test]
    fn uniform_drops_partitions_of_vanished_topics_and_members() {
        let topics: BTreeMap<String, TopicShape> =
            [("a".to_string(), topic(1, 2))].into_iter().collect();
        let previous: BTreeMap<String, TopicPartitions> = [
            (
                "gone".to_string(),
                [(Uuid::from_u128(1), [0, 1].into())].into(),
            ),
            (
                "m1".to_string(),
                [
                    (Uuid::from_u128(9), [0].into()),
                    (Uuid::from_u128(1), [7].into()),
                ]
                .into(),
            ),
        ]
        .into_iter()
        .collect();
        let s = subs(&[("m1", &["a"])]);
        let a = AssignorKind::Uniform.assign(&s, &topics, &previous);
        check_complete(&a, &s, &topics);
        assert_eq!(a["m1"], [(Uuid::from_u128(1), [0, 1].into())].into());
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let topics: BTreeMap<String, TopicShape> = [
            ("a".to_string(), topic(1, 7)),
            ("b".to_string(), topic(2, 2)),
        ]
        .into_iter()
        .collect();
        let s = subs(&[("m1", &["a", "b"]), ("m2", &["a", "b"]), ("m3", &["a"])]);
        let a = AssignorKind::Range.assign(&s, &topics, &BTreeMap::new());
        check_complete(&a, &s, &topics);
        let a_id = Uuid::from_u128(1);
        assert_eq!(a["m1"][&a_id], [0, 1, 2].into());
        assert_eq!(a["m2"][&a_id], [3, 4].into());
        assert_eq!(a["m3"][&a_id], [5, 6].into());
        assert_eq!(a["m1"][&Uuid::from_u128(2)], [0].into());
        assert_eq!(a["m2"][&Uuid::from_u128(2)], [1].into());
    }

    #[test]
    fn assignor_names_round_trip() {
        for a in AssignorKind::ALL {
            assert_eq!(AssignorKind::parse(a.name()), Some(a));
        }
        assert_eq!(AssignorKind::parse("sticky"), None);
    }
}
