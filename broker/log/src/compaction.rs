//! Key-based compaction of record batches, independent of where the batches are stored.
//!
//! Two passes, as Kafka's cleaner does: [`OffsetMap`] records the latest offset of every key over
//! the batches being cleaned, then [`compact_batch`] rewrites each batch keeping only records that
//! are still the latest for their key, and tombstones (null value) younger than
//! `delete.retention.ms`. A retained record keeps its offset; the rewritten batch keeps its
//! compression.
//!
//! Transactions ([`TxnFilter`]): only batches below the last stable offset are cleaned, since an
//! open transaction may still abort. Below it, a batch of an aborted transaction (per the
//! aborted-transaction index) is removed and supersedes nothing, so compaction never lets an
//! aborted value replace a committed one nor brings an aborted record back; committed
//! transactional batches are compacted like any other. Control batches (markers) are kept.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

use crate::batch::BatchHeader;
use crate::producer_state::AbortedTxn;
use crate::{decode, LogError, Result};

/// What compaction needs to know about transactions.
#[derive(Debug)]
pub struct TxnFilter {
    /// Batches ending at or after this offset (the last stable offset) are left alone.
    pub cleanable_end: i64,
    /// Aborted transactions' offset ranges by producer id.
    aborted: HashMap<i64, Vec<(i64, i64)>>,
}

/// How compaction treats one batch.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    /// Records that may supersede and be superseded.
    Data,
    /// Kept as is and supersedes nothing: markers, and anything not yet stable.
    Untouched,
    /// Data of an aborted transaction: removed, supersedes nothing.
    Aborted,
}

impl TxnFilter {
    pub fn new(cleanable_end: i64, aborted: &[AbortedTxn]) -> TxnFilter {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in aborted {
            by_producer
                .entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        TxnFilter {
            cleanable_end,
            aborted: by_producer,
        }
    }

    fn role(&self, header: &BatchHeader) -> Role {
        if header.is_control() || header.last_offset() >= self.cleanable_end {
            return Role::Untouched;
        }
        if header.is_transactional() {
            let aborted = self.aborted.get(&header.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|(first, last)| (*first..=*last).contains(&header.base_offset))
            });
            if aborted {
                return Role::Aborted;
            }
        }
        Role::Data
    }
}

/// Latest offset of every key seen in the batches being compacted.
#[derive(Debug, Default)]
pub struct OffsetMap {
    latest: HashMap<Bytes, i64>,
}

impl OffsetMap {
    pub fn add_batch(&mut self, batch: &Bytes, txns: &TxnFilter) -> Result<()> {
        let header = BatchHeader::parse(batch)?;
        if txns.role(&header) != Role::Data {
            return Ok(());
        }
        for record in decode::records(batch)? {
            if let Some(key) = record.key {
                let slot = self.latest.entry(key).or_insert(record.offset);
                *slot = (*slot).max(record.offset);
            }
        }
        Ok(())
    }
}

/// What compaction made of one batch.
#[derive(Debug)]
pub enum Compacted {
    /// Every record is retained: keep the original bytes.
    Unchanged,
    /// No record is retained: drop the batch.
    Removed,
    /// Some records are retained, re-encoded into these bytes (one or more batches).
    Rewritten(Bytes),
}

/// When tombstones may be dropped, and when the earliest retained one will expire.
#[derive(Debug)]
pub struct TombstonePolicy {
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    /// Set to the earliest time a retained tombstone becomes removable, so the caller knows when
    /// another compaction pass has work to do.
    pub next_expiry_ms: Option<i64>,
}

impl TombstonePolicy {
    fn keep(&mut self, timestamp: i64) -> bool {
        let expires = timestamp.saturating_add(self.delete_retention_ms);
        if expires <= self.now_ms {
            return false;
        }
        self.next_expiry_ms = Some(self.next_expiry_ms.map_or(expires, |e| e.min(expires)));
        true
    }
}

/// Compact one whole batch against `map`.
pub fn compact_batch(
    batch: &Bytes,
    map: &OffsetMap,
    tombstones: &mut TombstonePolicy,
    txns: &TxnFilter,
) -> Result<Compacted> {
    let header = BatchHeader::parse(batch)?;
    match txns.role(&header) {
        Role::Untouched => return Ok(Compacted::Unchanged),
        Role::Aborted => return Ok(Compacted::Removed),
        Role::Data => {}
    }
    let records = decode::records(batch)?;
    let total = records.len();
    let kept: Vec<_> = records
        .into_iter()
        .filter(|r| {
            let Some(key) = &r.key else {
                // Kafka drops null-keyed records from compacted topics.
                return false;
            };
            if map.latest.get(key) != Some(&r.offset) {
                return false;
            }
            r.value.is_some() || tombstones.keep(r.timestamp)
        })
        .collect();
    if kept.len() == total {
        return Ok(Compacted::Unchanged);
    }
    if kept.is_empty() {
        return Ok(Compacted::Removed);
    }
    let options = RecordEncodeOptions {
        version: 2,
        compression: header.compression().unwrap_or(Compression::None),
    };
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, kept.iter(), &options)
        .map_err(|e| LogError::CorruptBatch(format!("cannot re-encode compacted batch: {e}")))?;
    Ok(Compacted::Rewritten(out.freeze()))
}
