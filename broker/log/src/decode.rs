//! Record-level views of one stored batch, decoded with kafka-protocol (which handles every
//! compression codec). This is the only place the log looks inside a batch's records: exact
//! timestamp lookups, the null-key check of compacted topics, and compaction. None of it runs on
//! the append path of a non-compacted topic.

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder, TimestampType};

use crate::batch::BatchHeader;
use crate::{LogError, Result, TimestampOffset};

/// Decode the records of one whole batch.
pub fn records(batch: &Bytes) -> Result<Vec<Record>> {
    let mut buf = batch.clone();
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| LogError::CorruptBatch(format!("cannot decode records: {e}")))?;
    Ok(set.records)
}

/// A record's effective timestamp: with log-append time every record carries the batch's.
fn timestamp_of(header: &BatchHeader, record: &Record) -> i64 {
    match header.timestamp_type() {
        TimestampType::LogAppend => header.max_timestamp,
        TimestampType::Creation => record.timestamp,
    }
}

/// The first record at or after `min_offset` whose timestamp is >= `timestamp`.
pub fn first_record_at_or_after(
    batch: &Bytes,
    timestamp: i64,
    min_offset: i64,
) -> Result<Option<TimestampOffset>> {
    let header = BatchHeader::parse(batch)?;
    Ok(records(batch)?
        .iter()
        .filter(|r| r.offset >= min_offset)
        .map(|r| TimestampOffset {
            timestamp: timestamp_of(&header, r),
            offset: r.offset,
        })
        .find(|t| t.timestamp >= timestamp))
}

/// The first record carrying the batch's largest timestamp.
pub fn record_with_max_timestamp(batch: &Bytes) -> Result<Option<TimestampOffset>> {
    let header = BatchHeader::parse(batch)?;
    let mut best: Option<TimestampOffset> = None;
    for r in records(batch)? {
        let timestamp = timestamp_of(&header, &r);
        if best.is_none_or(|b| timestamp > b.timestamp) {
            best = Some(TimestampOffset {
                timestamp,
                offset: r.offset,
            });
        }
    }
    Ok(best)
}

/// Compacted topics need a key on every record (Kafka refuses null keys there at produce time).
pub fn ensure_keys(batch: &Bytes) -> Result<()> {
    let header = BatchHeader::parse(batch)?;
    if header.is_control() {
        return Ok(());
    }
    let indexes: Vec<i32> = records(batch)?
        .iter()
        .enumerate()
        .filter(|(_, r)| r.key.is_none())
        .map(|(i, _)| i as i32)
        .collect();
    if !indexes.is_empty() {
        return Err(LogError::InvalidRecords {
            reason: "compacted topics do not accept records with a null key".into(),
            indexes,
        });
    }
    Ok(())
}
