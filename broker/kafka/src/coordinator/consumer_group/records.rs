//! A consumer group's state as one record value in `__consumer_offsets`, so the group comes
//! back after a restart or a coordinator move with its epochs and assignments and its members
//! carry on without rejoining.
//!
//! Kafka splits this state over six record types with flexible encodings (key versions 3-8);
//! Chronik writes the whole group as one value under key version
//! [`CONSUMER_GROUP_KEY_VERSION`] (older readers skip key versions they do not know). Layout,
//! version 0, in the primitives of [`super::super::records`]:
//!
//! `i16 0, i32 group_epoch, i32 assignment_epoch, str assignor, [topic], [member]`, where a
//! topic is `str name, uuid id, i32 partitions`, a member is `str id, str? instance_id,
//! str? rack_id, str client_id, str client_host, [str] topics, str? regex, str? assignor,
//! i32 rebalance_timeout_ms, i32 epoch, i32 previous_epoch, i8 state, i8 left_temporarily,
//! partitions assigned, partitions revoking, partitions target`, and partitions are
//! `i32 count × (uuid topic, i32 count × i32 partition)`; `[x]` is an i32 count of x.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::{
    AssignorKind, ConsumerGroup, ConsumerGroupConfig, ConsumerMember, MemberState, TopicPartitions,
    TopicShape,
};
use crate::coordinator::records::{
    get_i16, get_i32, get_opt_str, get_str, put_opt_str, put_str, short,
};
use crate::coordinator::CoordinatorError;

/// The key version of a consumer group's record (Chronik's own; see the module docs).
pub const CONSUMER_GROUP_KEY_VERSION: i16 = 100;
const VALUE_VERSION: i16 = 0;

pub fn encode(g: &ConsumerGroup) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i32(g.group_epoch);
    buf.put_i32(g.assignment_epoch);
    put_str(&mut buf, g.assignor.name());
    buf.put_i32(g.subscribed_topics.len() as i32);
    for (name, shape) in &g.subscribed_topics {
        put_str(&mut buf, name);
        buf.put_slice(shape.id.as_bytes());
        buf.put_i32(shape.partitions);
    }
    buf.put_i32(g.members.len() as i32);
    for m in g.members.values() {
        put_str(&mut buf, &m.id);
        put_opt_str(&mut buf, m.instance_id.as_deref());
        put_opt_str(&mut buf, m.rack_id.as_deref());
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.subscribed_topic_names.len() as i32);
        for name in &m.subscribed_topic_names {
            put_str(&mut buf, name);
        }
        put_opt_str(&mut buf, m.subscribed_topic_regex.as_deref());
        put_opt_str(&mut buf, m.server_assignor.as_deref());
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.member_epoch);
        buf.put_i32(m.previous_member_epoch);
        buf.put_i8(match m.state {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        });
        buf.put_i8(i8::from(m.left_temporarily));
        put_partitions(&mut buf, &m.assigned);
        put_partitions(&mut buf, &m.revoking);
        put_partitions(
            &mut buf,
            g.target.get(&m.id).unwrap_or(&TopicPartitions::new()),
        );
    }
    buf.freeze()
}

/// The group as stored, with every member given a fresh session from `now` (as Kafka does when
/// it loads a group) and a fresh rebalance timeout if it was revoking.
pub fn decode(
    id: &str,
    mut buf: Bytes,
    config: ConsumerGroupConfig,
    now: i64,
) -> Result<ConsumerGroup, CoordinatorError> {
    let version = get_i16(&mut buf)?;
    if version != VALUE_VERSION {
        return Err(CoordinatorError::Record(format!(
            "consumer group value version {version} is not supported"
        )));
    }
    let mut g = ConsumerGroup::new(id, config);
    g.group_epoch = get_i32(&mut buf)?;
    g.assignment_epoch = get_i32(&mut buf)?;
    let assignor = get_str(&mut buf)?;
    g.assignor = AssignorKind::parse(&assignor)
        .ok_or_else(|| CoordinatorError::Record(format!("unknown assignor {assignor}")))?;
    for _ in 0..get_count(&mut buf)? {
        let name = get_str(&mut buf)?;
        let shape = TopicShape {
            id: get_uuid(&mut buf)?,
            partitions: get_i32(&mut buf)?,
        };
        g.subscribed_topics.insert(name, shape);
    }
    for _ in 0..get_count(&mut buf)? {
        let id = get_str(&mut buf)?;
        let instance_id = get_opt_str(&mut buf)?;
        let rack_id = get_opt_str(&mut buf)?;
        let client_id = get_str(&mut buf)?;
        let client_host = get_str(&mut buf)?;
        let mut subscribed_topic_names = BTreeSet::new();
        for _ in 0..get_count(&mut buf)? {
            subscribed_topic_names.insert(get_str(&mut buf)?);
        }
        let subscribed_topic_regex = get_opt_str(&mut buf)?;
        let server_assignor = get_opt_str(&mut buf)?;
        let rebalance_timeout_ms = get_i32(&mut buf)?;
        let member_epoch = get_i32(&mut buf)?;
        let previous_member_epoch = get_i32(&mut buf)?;
        let state = match buf.try_get_i8().map_err(|_| short())? {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            other => {
                return Err(CoordinatorError::Record(format!(
                    "unknown member state {other}"
                )))
            }
        };
        let left_temporarily = buf.try_get_i8().map_err(|_| short())? != 0;
        let assigned = get_partitions(&mut buf)?;
        let revoking = get_partitions(&mut buf)?;
        let target = get_partitions(&mut buf)?;
        for (topic, partitions) in assigned.iter().chain(&revoking) {
            for p in partitions {
                g.owners.insert((*topic, *p), id.clone());
            }
        }
        if let Some(instance) = &instance_id {
            g.static_members.insert(instance.clone(), id.clone());
        }
        g.target.insert(id.clone(), target);
        let revocation_deadline = (state == MemberState::UnrevokedPartitions)
            .then(|| now + i64::from(rebalance_timeout_ms.max(0)));
        g.members.insert(
            id.clone(),
            ConsumerMember {
                id,
                instance_id,
                rack_id,
                client_id,
                client_host,
                subscribed_topic_names,
                regex_matcher: subscribed_topic_regex
                    .as_deref()
                    .and_then(super::whole_name_matcher),
                subscribed_topic_regex,
                server_assignor,
                rebalance_timeout_ms,
                member_epoch,
                previous_member_epoch,
                state,
                assigned,
                revoking,
                last_heartbeat: now,
                revocation_deadline,
                left_temporarily,
                unconfirmed_since: None,
            },
        );
    }
    Ok(g)
}

fn put_partitions(buf: &mut BytesMut, tps: &TopicPartitions) {
    buf.put_i32(tps.len() as i32);
    for (topic, partitions) in tps {
        buf.put_slice(topic.as_bytes());
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(*p);
        }
    }
}

fn get_partitions(buf: &mut Bytes) -> Result<TopicPartitions, CoordinatorError> {
    let mut out = BTreeMap::new();
    for _ in 0..get_count(buf)? {
        let topic = get_uuid(buf)?;
        let mut partitions = BTreeSet::new();
        for _ in 0..get_count(buf)? {
            partitions.insert(get_i32(buf)?);
        }
        out.insert(topic, partitions);
    }
    Ok(out)
}

/// A count that cannot exceed what the remaining bytes could hold, so a damaged record cannot
/// make the loop run for billions of rounds.
fn get_count(buf: &mut Bytes) -> Result<usize, CoordinatorError> {
    let count = usize::try_from(get_i32(buf)?).unwrap_or(0);
    if count > buf.remaining() {
        return Err(short());
    }
    Ok(count)
}

fn get_uuid(buf: &mut Bytes) -> Result<Uuid, CoordinatorError> {
    if buf.remaining() < 16 {
        return Err(short());
    }
    let mut raw = [0u8; 16];
    buf.copy_to_slice(&mut raw);
    Ok(Uuid::from_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::super::{Heartbeat, JOIN_EPOCH};
    use super::*;

    #[test]
    fn a_group_round_trips_and_members_keep_their_epochs() {
        let config = ConsumerGroupConfig::default();
        let mut g = ConsumerGroup::new("g", config.clone());
        let topics: BTreeMap<String, TopicShape> = [(
            "t".to_string(),
            TopicShape {
                id: Uuid::from_u128(5),
                partitions: 3,
            },
        )]
        .into_iter()
        .collect();
        for (member, instance) in [("m1", Some("i1")), ("m2", None)] {
            let hb = Heartbeat {
                member_id: member.into(),
                member_epoch: JOIN_EPOCH,
                instance_id: instance.map(Into::into),
                rebalance_timeout_ms: 1000,
                subscribed_topic_names: Some(vec!["t".into()]),
                subscribed_topic_regex: Some("x.*".into()),
                owned: Some(TopicPartitions::new()),
                client_id: "c".into(),
                ..Heartbeat::default()
            };
            g.heartbeat(hb, &topics, 0).unwrap();
        }
        let bytes = encode(&g);
        let back = decode("g", bytes.clone(), config, 50).unwrap();
        assert_eq!(encode(&back), bytes);
        assert_eq!(back.group_epoch(), 2);
        assert_eq!(back.owners, g.owners);
        assert_eq!(back.static_members, g.static_members);
        assert_eq!(back.state(), g.state());
        for len in 0..bytes.len() {
            assert!(
                decode("g", bytes.slice(..len), ConsumerGroupConfig::default(), 0).is_err(),
                "length {len}"
            );
        }
    }
}
