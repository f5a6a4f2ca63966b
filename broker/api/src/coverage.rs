//! What a query answered on this broker cannot see. Indexes live on the brokers that host a
//! partition's replicas (leader and followers), and queries do not fan out across brokers yet,
//! so a search names the partitions it left out, in Elasticsearch's `_shards.failed` and
//! `_shards.failures`, instead of passing a partial answer off as whole.

use serde_json::{json, Value};

use crate::ApiState;

/// A partition of a queried topic with no replica on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unhosted {
    pub topic: String,
    pub partition: i32,
    /// Its leader, [`chronik_meta::NO_LEADER`] while it has none.
    pub leader: i32,
}

/// Partitions of `topics` (in order) and those of them this broker holds no replica of.
pub(crate) fn coverage(state: &ApiState, topics: &[String]) -> (usize, Vec<Unhosted>) {
    let meta = state.broker.meta.state();
    let node = state.broker.config.node_id;
    let mut total = 0;
    let mut missing = Vec::new();
    for name in topics {
        let Some(topic) = meta.topics.get(name) else {
            continue;
        };
        total += topic.partitions.len();
        for p in topic.partitions_not_on(node) {
            missing.push(Unhosted {
                topic: name.clone(),
                partition: p,
                leader: topic.partitions[p as usize].leader,
            });
        }
    }
    (total, missing)
}

/// The `_shards` object of a search over `topics` from this broker: one shard per partition,
/// failed where this broker hosts no replica.
pub(crate) fn shards(state: &ApiState, topics: &[String]) -> Value {
    let node = state.broker.config.node_id;
    let (total, missing) = coverage(state, topics);
    let mut out = json!({
        "total": total,
        "successful": total - missing.len(),
        "skipped": 0,
        "failed": missing.len(),
    });
    if !missing.is_empty() {
        out["failures"] = missing
            .iter()
            .map(|m| {
                json!({
                    "shard": m.partition,
                    "index": m.topic,
                    "node": m.leader.to_string(),
                    "reason": {
                        "type": "partition_not_hosted_exception",
                        "reason": format!(
                            "partition {} of [{}] has no replica on broker {node} and searches \
                             do not fan out across brokers yet; query a broker that hosts it \
                             (its leader is broker {}), or give the topic a replica on every broker",
                            m.partition, m.topic, m.leader
                        ),
                    },
                })
            })
            .collect();
    }
    out
}
