//! Stored batches into [`IndexRecord`]s: each batch is decoded and decompressed once, here, and
//! the result is shared by every indexer of the partition.

use bytes::Bytes;
use chronik_log::{AbortedTxn, BatchHeader};
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};

use crate::{IndexError, IndexRecord, RecordHeader, Result};

/// Records decoded from a read, and the offset the read ends at.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Records at or after the requested offset, in offset order.
    pub records: Vec<IndexRecord>,
    /// One past the last offset of the last whole batch decoded.
    pub next_offset: i64,
}

/// Decode every whole batch in `bytes` (concatenated stored batches, as a log read returns
/// them), keeping records at or after `from`. Control batches, and batches of the `aborted`
/// transactions a read_committed read reported, contribute no records but do advance
/// `next_offset`: indexes hold what a read_committed consumer sees. A read never ends
/// mid-batch, so a short tail is a corrupt log.
pub fn decode_batches(bytes: &Bytes, from: i64, aborted: &[AbortedTxn]) -> Result<Decoded> {
    let mut out = Decoded {
        records: Vec::new(),
        next_offset: from,
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        let header = BatchHeader::parse(&bytes[pos..]).map_err(|e| IndexError::Decode {
            offset: out.next_offset,
            reason: e.to_string(),
        })?;
        let end = pos + header.total_len();
        if header.total_len() < chronik_log::BATCH_HEADER_LEN {
            return Err(IndexError::Decode {
                offset: header.base_offset,
                reason: format!("batch length {} is too short", header.batch_length),
            });
        }
        if end > bytes.len() {
            return Err(IndexError::Decode {
                offset: header.base_offset,
                reason: format!(
                    "batch of {} bytes is cut short at {} bytes",
                    header.total_len(),
                    bytes.len() - pos
                ),
            });
        }
        if !header.is_control() && !is_aborted(&header, aborted) {
            let stored = bytes.slice(pos..end);
            let set = RecordBatchDecoder::decode(&mut stored.clone()).map_err(|e| {
                IndexError::Decode {
                    offset: header.base_offset,
                    reason: e.to_string(),
                }
            })?;
            let log_append_time = header.timestamp_type() == TimestampType::LogAppend;
            out.records.reserve(set.records.len());
            for r in set.records {
                if r.offset < from {
                    continue;
                }
                out.records.push(IndexRecord {
                    offset: r.offset,
                    timestamp: if log_append_time {
                        header.max_timestamp
                    } else {
                        r.timestamp
                    },
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(key, value)| RecordHeader {
                            key: key.to_string(),
                            value,
                        })
                        .collect(),
                    batch: Some(stored.clone()),
                });
            }
        }
        out.next_offset = out.next_offset.max(header.next_offset());
        pos = end;
    }
    Ok(out)
}

fn is_aborted(header: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    header.is_transactional()
        && aborted.iter().any(|txn| {
            txn.producer_id == header.producer_id
                && (txn.first_offset..=txn.last_offset).contains(&header.base_offset)
        })
}
