//! Shared by the integration tests: real Kafka v2 batches built with kafka-protocol's encoder.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use chronik_log::{BatchHeader, BATCH_HEADER_LEN};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after epoch")
        .as_millis() as i64
}

/// One record for [`batch_of`]: key, value, timestamp.
pub type Rec<'a> = (Option<&'a str>, Option<&'a str>, i64);

/// One batch holding `records`, as a producer would send it (base offset 0, no producer id).
pub fn batch_of(records: &[Rec<'_>], compression: Compression) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value, timestamp))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: *timestamp,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// A batch of `n` keyed records with values `v0..`, all stamped `timestamp`.
pub fn batch(n: usize, timestamp: i64, compression: Compression) -> Bytes {
    let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let values: Vec<String> = (0..n)
        .map(|i| format!("value-{i}-{}", "x".repeat(40)))
        .collect();
    let recs: Vec<Rec<'_>> = (0..n)
        .map(|i| (Some(keys[i].as_str()), Some(values[i].as_str()), timestamp))
        .collect();
    batch_of(&recs, compression)
}

pub fn concat(parts: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for p in parts {
        out.extend_from_slice(p);
    }
    out.freeze()
}

/// Every record in stored bytes, decoded.
pub fn decode(mut bytes: Bytes) -> Vec<Record> {
    RecordBatchDecoder::decode_all(&mut bytes)
        .expect("stored bytes decode")
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

/// (offset, key, value) of every record, for readable assertions.
pub fn kv(bytes: Bytes) -> Vec<(i64, Option<String>, Option<String>)> {
    let s = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    decode(bytes)
        .into_iter()
        .map(|r| (r.offset, s(r.key), s(r.value)))
        .collect()
}

/// Headers of the concatenated batches in `bytes`.
pub fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + BATCH_HEADER_LEN <= bytes.len() {
        let h = BatchHeader::parse(&bytes[at..]).expect("header");
        at += h.total_len();
        out.push(h);
    }
    out
}

/// Base offsets of the batches in `bytes`.
pub fn base_offsets(bytes: &[u8]) -> Vec<i64> {
    headers(bytes).iter().map(|h| h.base_offset).collect()
}

/// A batch of `n` records from an idempotent producer: `producer_id`, `epoch`, sequences
/// `base_sequence..` (wrapping after `i32::MAX` to 0, as producers do).
pub fn idempotent_batch(n: usize, producer_id: i64, epoch: i16, base_sequence: i32) -> Bytes {
    producer_batch(n, producer_id, epoch, base_sequence, false)
}

/// Like [`idempotent_batch`], from a transactional producer (the batch's transactional bit set).
pub fn transactional_batch(n: usize, producer_id: i64, epoch: i16, base_sequence: i32) -> Bytes {
    producer_batch(n, producer_id, epoch, base_sequence, true)
}

fn producer_batch(
    n: usize,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    transactional: bool,
) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: ((i64::from(base_sequence) + i as i64) % (i64::from(i32::MAX) + 1)) as i32,
            timestamp: now_ms(),
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("seq-{base_sequence}+{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// The transaction marker a coordinator writes for `producer_id`.
pub fn marker(producer_id: i64, epoch: i16, kind: chronik_log::ControlKind) -> Bytes {
    chronik_log::control_batch(producer_id, epoch, kind, 0, now_ms())
}
