//! The records the transaction coordinator keeps in `__transaction_state`.
//!
//! Kafka's own layouts (version 0, non-flexible), one record per transactional id, the newest
//! winning (the topic is compacted):
//!
//! | | layout |
//! |---|---|
//! | key | `i16 0, str transactional_id` |
//! | value | `i16 0, i64 producer_id, i16 producer_epoch, i32 timeout_ms, i8 state, [str topic, [i32 partition]]? partitions, i64 last_update_timestamp, i64 start_timestamp` |
//!
//! `str` is an i16 length and UTF-8 bytes, `[x]` an i32 count (`-1` for null) of `x`. The
//! epoch before the last bump is not stored (it only spares a KIP-360 retry across a restart).

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::records::{get_i16, get_i32, get_i64, get_str, put_str, short};
use super::transaction::{TxnMetadata, TxnState};
use super::CoordinatorError;

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(KEY_VERSION);
    put_str(&mut buf, transactional_id);
    buf.freeze()
}

/// The transactional id of a key; `None` for key versions this broker does not know.
pub fn decode_key(mut buf: Bytes) -> Result<Option<String>, CoordinatorError> {
    match get_i16(&mut buf)? {
        KEY_VERSION => Ok(Some(get_str(&mut buf)?)),
        _ => Ok(None),
    }
}

pub fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(m.producer_id);
    buf.put_i16(m.producer_epoch);
    buf.put_i32(m.timeout_ms);
    buf.put_i8(m.state.code());
    // Grouped by topic, as Kafka writes them.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &m.partitions {
        match topics.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    buf.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_str(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i64(m.last_update_timestamp);
    buf.put_i64(m.start_timestamp);
    buf.freeze()
}

pub fn decode_value(
    transactional_id: &str,
    mut buf: Bytes,
) -> Result<TxnMetadata, CoordinatorError> {
    let version = get_i16(&mut buf)?;
    if version != VALUE_VERSION {
        return Err(CoordinatorError::Record(format!(
            "transaction state value version {version} is not supported"
        )));
    }
    let producer_id = get_i64(&mut buf)?;
    let producer_epoch = get_i16(&mut buf)?;
    let timeout_ms = get_i32(&mut buf)?;
    let code = buf.try_get_i8().map_err(|_| short())?;
    let state = TxnState::from_code(code)
        .ok_or_else(|| CoordinatorError::Record(format!("unknown transaction state {code}")))?;
    let mut partitions = BTreeSet::new();
    let topics = get_i32(&mut buf)?;
    for _ in 0..topics.max(0) {
        let topic = get_str(&mut buf)?;
        let count = get_i32(&mut buf)?;
        for _ in 0..count.max(0) {
            partitions.insert((topic.clone(), get_i32(&mut buf)?));
        }
    }
    Ok(TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        last_producer_epoch: -1,
        timeout_ms,
        state,
        partitions,
        last_update_timestamp: get_i64(&mut buf)?,
        start_timestamp: get_i64(&mut buf)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_truncation_is_an_error() {
        let mut m = TxnMetadata::new("tx-1", 42, 30_000, 100);
        m.add_partitions(
            42,
            0,
            [("b".to_string(), 3), ("a".into(), 1), ("b".into(), 0)],
            200,
        )
        .unwrap();
        let value = encode_value(&m);
        assert_eq!(decode_value("tx-1", value.clone()).unwrap(), m);
        assert_eq!(
            decode_key(encode_key("tx-1")).unwrap().as_deref(),
            Some("tx-1")
        );
        for len in 0..value.len() {
            assert!(
                decode_value("tx-1", value.slice(..len)).is_err(),
                "length {len}"
            );
        }
    }
}
