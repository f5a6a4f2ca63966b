//! The records the coordinator keeps in `__consumer_offsets`.
//!
//! The byte layouts are Kafka's own (non-flexible versions), so Kafka's tooling could read the
//! topic and the choice needs no new format of ours:
//!
//! | record | key | value |
//! |---|---|---|
//! | committed offset | `i16 1, str group, str topic, i32 partition` | `i16 3, i64 offset, i32 leader_epoch, str metadata, i64 commit_timestamp` |
//! | group metadata | `i16 2, str group` | `i16 3, str protocol_type, i32 generation, str? protocol, str? leader, i64 state_timestamp, [member]` |
//! | KIP-848 consumer group | `i16 100, str group` | Chronik's own, see [`super::consumer_group::records`] |
//!
//! where `str` is an i16 length and UTF-8 bytes (`-1` for null), `[member]` an i32 count of
//! `str id, str? instance_id, str client_id, str client_host, i32 rebalance_timeout,
//! i32 session_timeout, bytes subscription, bytes assignment` and `bytes` an i32 length. A
//! record with a null value is a tombstone: the offset or group was deleted, and compaction
//! removes it and everything before it with the same key.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::consumer_group::records::CONSUMER_GROUP_KEY_VERSION;
use super::group::{CommittedOffset, StoredGroup, StoredMember};
use super::CoordinatorError;

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// What a record's key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    ConsumerGroup {
        group: String,
    },
}

impl Key {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                buf.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut buf, group);
                put_str(&mut buf, topic);
                buf.put_i32(*partition);
            }
            Key::Group { group } => {
                buf.put_i16(GROUP_KEY_VERSION);
                put_str(&mut buf, group);
            }
            Key::ConsumerGroup { group } => {
                buf.put_i16(CONSUMER_GROUP_KEY_VERSION);
                put_str(&mut buf, group);
            }
        }
        buf.freeze()
    }

    /// `None` for key versions this broker does not know (skipped on replay).
    pub fn decode(mut buf: Bytes) -> Result<Option<Key>, CoordinatorError> {
        let version = get_i16(&mut buf)?;
        Ok(match version {
            0 | 1 => Some(Key::Offset {
                group: get_str(&mut buf)?,
                topic: get_str(&mut buf)?,
                partition: get_i32(&mut buf)?,
            }),
            2 => Some(Key::Group {
                group: get_str(&mut buf)?,
            }),
            CONSUMER_GROUP_KEY_VERSION => Some(Key::ConsumerGroup {
                group: get_str(&mut buf)?,
            }),
            _ => None,
        })
    }
}

pub fn encode_offset(o: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(o.offset);
    buf.put_i32(o.leader_epoch);
    put_str(&mut buf, &o.metadata);
    buf.put_i64(o.commit_timestamp);
    buf.freeze()
}

pub fn decode_offset(mut buf: Bytes) -> Result<CommittedOffset, CoordinatorError> {
    let version = get_i16(&mut buf)?;
    if version != OFFSET_VALUE_VERSION {
        return Err(CoordinatorError::Record(format!(
            "offset value version {version} is not supported"
        )));
    }
    Ok(CommittedOffset {
        offset: get_i64(&mut buf)?,
        leader_epoch: get_i32(&mut buf)?,
        metadata: get_str(&mut buf)?,
        commit_timestamp: get_i64(&mut buf)?,
    })
}

pub fn encode_group(g: &StoredGroup) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut buf, &g.protocol_type);
    buf.put_i32(g.generation);
    put_opt_str(&mut buf, g.protocol_name.as_deref());
    put_opt_str(&mut buf, g.leader.as_deref());
    buf.put_i64(g.state_timestamp.unwrap_or(-1));
    buf.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut buf, &m.id);
        put_opt_str(&mut buf, m.instance_id.as_deref());
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

pub fn decode_group(id: &str, mut buf: Bytes) -> Result<StoredGroup, CoordinatorError> {
    let version = get_i16(&mut buf)?;
    if version != GROUP_VALUE_VERSION {
        return Err(CoordinatorError::Record(format!(
            "group value version {version} is not supported"
        )));
    }
    let protocol_type = get_str(&mut buf)?;
    let generation = get_i32(&mut buf)?;
    let protocol_name = get_opt_str(&mut buf)?;
    let leader = get_opt_str(&mut buf)?;
    let state_timestamp = Some(get_i64(&mut buf)?).filter(|t| *t >= 0);
    let count = get_i32(&mut buf)?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        members.push(StoredMember {
            id: get_str(&mut buf)?,
            instance_id: get_opt_str(&mut buf)?,
            client_id: get_str(&mut buf)?,
            client_host: get_str(&mut buf)?,
            rebalance_timeout_ms: get_i32(&mut buf)?,
            session_timeout_ms: get_i32(&mut buf)?,
            subscription: get_bytes(&mut buf)?,
            assignment: get_bytes(&mut buf)?,
        });
    }
    Ok(StoredGroup {
        id: id.to_string(),
        protocol_type,
        generation,
        protocol_name,
        leader,
        state_timestamp,
        members,
    })
}

/// One uncompressed v2 batch holding `records` (key, value-or-tombstone), ready to append.
pub fn batch(records: &[(Bytes, Option<Bytes>)], now: i64) -> Result<Bytes, CoordinatorError> {
    encode_batch(records, now, None)
}

/// Like [`batch`], as part of a producer's transaction (TxnOffsetCommit): the transactional
/// bit and the producer's id and epoch set, no sequence (the coordinator writes it). The
/// offsets take effect when the transaction's COMMIT marker follows.
pub fn txn_batch(
    records: &[(Bytes, Option<Bytes>)],
    now: i64,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<Bytes, CoordinatorError> {
    encode_batch(records, now, Some((producer_id, producer_epoch)))
}

fn encode_batch(
    records: &[(Bytes, Option<Bytes>)],
    now: i64,
    producer: Option<(i64, i16)>,
) -> Result<Bytes, CoordinatorError> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| CoordinatorError::Record(format!("cannot encode records: {e}")))?;
    Ok(buf.freeze())
}

pub(super) fn put_str(buf: &mut BytesMut, s: &str) {
    // Kafka strings are at most i16::MAX bytes; longer input was refused by the handlers.
    let len = s.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&s.as_bytes()[..len]);
}

pub(super) fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

pub(super) fn short() -> CoordinatorError {
    CoordinatorError::Record("record is shorter than its fields".into())
}

pub(super) fn get_i16(buf: &mut Bytes) -> Result<i16, CoordinatorError> {
    buf.try_get_i16().map_err(|_| short())
}

pub(super) fn get_i32(buf: &mut Bytes) -> Result<i32, CoordinatorError> {
    buf.try_get_i32().map_err(|_| short())
}

pub(super) fn get_i64(buf: &mut Bytes) -> Result<i64, CoordinatorError> {
    buf.try_get_i64().map_err(|_| short())
}

pub(super) fn get_opt_str(buf: &mut Bytes) -> Result<Option<String>, CoordinatorError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(short());
    }
    let raw = buf.split_to(len);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| CoordinatorError::Record("string is not UTF-8".into()))
}

pub(super) fn get_str(buf: &mut Bytes) -> Result<String, CoordinatorError> {
    Ok(get_opt_str(buf)?.unwrap_or_default())
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, CoordinatorError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(short());
    }
    Ok(buf.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        assert_eq!(Key::decode(key.encode()).unwrap(), Some(key));
        let key = Key::Group { group: "g".into() };
        assert_eq!(Key::decode(key.encode()).unwrap(), Some(key));
        let key = Key::ConsumerGroup { group: "g".into() };
        assert_eq!(Key::decode(key.encode()).unwrap(), Some(key));
        let offset = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp: 1000,
        };
        assert_eq!(decode_offset(encode_offset(&offset)).unwrap(), offset);
        let group = StoredGroup {
            id: "g".into(),
            protocol_type: "consumer".into(),
            generation: 4,
            protocol_name: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: Some(99),
            members: vec![StoredMember {
                id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300,
                session_timeout_ms: 100,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group("g", encode_group(&group)).unwrap(), group);
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let full = encode_offset(&CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: "x".into(),
            commit_timestamp: 5,
        });
        for len in 0..full.len() {
            assert!(decode_offset(full.slice(..len)).is_err(), "length {len}");
        }
    }
}
