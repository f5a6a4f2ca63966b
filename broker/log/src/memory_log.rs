//! [`MemoryLog`]: the partition log held in memory, for tests of the crates above this one.
//!
//! It validates and stamps batches exactly as [`FileLog`](crate::FileLog) does and passes the same
//! conformance suite. Each batch plays the part of a segment for retention, except the newest,
//! which is never deleted (as the active segment is not); compaction covers every batch. Memory is
//! as durable as it gets, so the high watermark follows the log end at append.

use std::collections::VecDeque;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::batch::{self, BatchHeader};
use crate::compaction::{compact_batch, Compacted, OffsetMap, TombstonePolicy, TxnFilter};
use crate::decode;
use crate::producer_state::{ProducerStates, PRODUCER_ID_EXPIRATION_MS};
use crate::{
    AppendInfo, LeaderEpochHistory, LogConfig, LogError, PartitionLog, ReadResult, Result,
    TimestampOffset,
};

/// A partition log in memory.
#[derive(Debug)]
pub struct MemoryLog {
    state: RwLock<State>,
    hw_tx: watch::Sender<i64>,
    leo_tx: watch::Sender<i64>,
}

#[derive(Debug)]
struct Stored {
    header: BatchHeader,
    bytes: Bytes,
}

#[derive(Debug)]
struct State {
    config: LogConfig,
    batches: VecDeque<Stored>,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    closed: bool,
    /// Idempotent producers' sequence state, checked under this lock with every append.
    producers: ProducerStates,
    epochs: LeaderEpochHistory,
    /// Whether the high watermark follows the log end (single replica).
    auto_hw: bool,
}

impl State {
    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(LogError::Closed)
        } else {
            Ok(())
        }
    }

    fn out_of_range(&self, offset: i64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            start: self.log_start_offset,
            end: self.log_end_offset,
        }
    }

    fn last_stable_offset(&self) -> i64 {
        self.producers
            .first_unstable_offset()
            .map_or(self.high_watermark, |f| f.min(self.high_watermark))
    }

    /// Whole batches from the one holding `offset`, stopping before the first that reaches
    /// `limit` or overflows `max_bytes` (the first batch always fits).
    fn read_to(&self, offset: i64, max_bytes: usize, limit: i64) -> Result<ReadResult> {
        self.check_open()?;
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(self.out_of_range(offset));
        }
        let mut out = BytesMut::new();
        for b in self.batches.range(self.first_at_or_after(offset)..) {
            if b.header.last_offset() >= limit {
                break;
            }
            if !out.is_empty() && out.len() + b.bytes.len() > max_bytes {
                break;
            }
            out.extend_from_slice(&b.bytes);
        }
        Ok(ReadResult {
            records: out.freeze(),
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
            last_stable_offset: self.last_stable_offset(),
            aborted_transactions: Vec::new(),
        })
    }

    /// Index of the first batch whose last offset is >= `offset`.
    fn first_at_or_after(&self, offset: i64) -> usize {
        self.batches
            .partition_point(|b| b.header.last_offset() < offset)
    }
}

impl MemoryLog {
    pub fn new(config: LogConfig) -> MemoryLog {
        MemoryLog {
            state: RwLock::new(State {
                config,
                batches: VecDeque::new(),
                log_start_offset: 0,
                log_end_offset: 0,
                high_watermark: 0,
                closed: false,
                producers: ProducerStates::default(),
                epochs: LeaderEpochHistory::default(),
                auto_hw: true,
            }),
            hw_tx: watch::Sender::new(0),
            leo_tx: watch::Sender::new(0),
        }
    }

    fn publish_hw(&self, high_watermark: i64) {
        self.hw_tx.send_if_modified(|v| {
            let changed = *v != high_watermark;
            *v = high_watermark;
            changed
        });
    }

    fn compact(st: &mut State, now_ms: i64) -> Result<()> {
        let end = st.last_stable_offset();
        let txns = TxnFilter::new(end, &st.producers.aborted_between(i64::MIN, end));
        let mut map = OffsetMap::default();
        for b in &st.batches {
            map.add_batch(&b.bytes, &txns)?;
        }
        let mut tombstones = TombstonePolicy {
            now_ms,
            delete_retention_ms: st.config.delete_retention_ms,
            next_expiry_ms: None,
        };
        let mut kept = VecDeque::with_capacity(st.batches.len());
        for b in st.batches.drain(..) {
            match compact_batch(&b.bytes, &map, &mut tombstones, &txns)? {
                Compacted::Unchanged => kept.push_back(b),
                Compacted::Removed => {}
                Compacted::Rewritten(bytes) => {
                    for span in batch::split(&bytes)? {
                        kept.push_back(Stored {
                            header: span.header,
                            bytes: bytes.slice(span.position..span.end()),
                        });
                    }
                }
            }
        }
        st.batches = kept;
        Ok(())
    }
}

#[async_trait]
impl PartitionLog for MemoryLog {
    fn append(&self, records: Bytes, leader_epoch: i32) -> Result<AppendInfo> {
        let mut st = self.state.write();
        st.check_open()?;
        let spans = batch::validate_records(&records, st.config.max_message_bytes)?;
        if st.config.cleanup_policy.compacts() {
            for span in &spans {
                decode::ensure_keys(&records.slice(span.position..span.end()))?;
            }
        }
        let mut buf = BytesMut::from(records);
        let base_offset = st.log_end_offset;
        let mut next = base_offset;
        let mut headers = Vec::with_capacity(spans.len());
        for span in &spans {
            batch::stamp(&mut buf[span.position..], next, leader_epoch);
            let mut header = span.header;
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            next = header.next_offset();
            headers.push(header);
        }
        let controls = spans.iter().map(|span| {
            span.header
                .is_control()
                .then(|| batch::control_kind(&buf[span.position..span.end()]))
                .flatten()
        });
        let staged = st.producers.check(headers.iter().zip(controls))?;
        st.producers.commit(staged);
        let bytes = buf.freeze();
        let mut max_timestamp = i64::MIN;
        for (span, header) in spans.iter().zip(headers) {
            max_timestamp = max_timestamp.max(header.max_timestamp);
            st.batches.push_back(Stored {
                header,
                bytes: bytes.slice(span.position..span.end()),
            });
        }
        st.log_end_offset = next;
        st.epochs.assign(leader_epoch, base_offset);
        self.leo_tx.send_replace(next);
        if st.auto_hw {
            st.high_watermark = next;
            self.publish_hw(next);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            max_timestamp,
            log_start_offset: st.log_start_offset,
        })
    }

    fn append_replicated(&self, records: Bytes) -> Result<AppendInfo> {
        let mut st = self.state.write();
        st.check_open()?;
        let spans = batch::validate_records(&records, usize::MAX)?;
        crate::file_log::check_replicated_offsets(&spans, st.log_end_offset)?;
        let first = spans
            .first()
            .map_or(st.log_end_offset, |s| s.header.base_offset);
        let mut max_timestamp = i64::MIN;
        for span in &spans {
            let bytes = records.slice(span.position..span.end());
            let control = span
                .header
                .is_control()
                .then(|| batch::control_kind(&bytes))
                .flatten();
            st.producers.replay(&span.header, control);
            st.epochs
                .assign(span.header.partition_leader_epoch, span.header.base_offset);
            max_timestamp = max_timestamp.max(span.header.max_timestamp);
            st.batches.push_back(Stored {
                header: span.header,
                bytes,
            });
        }
        let next = spans
            .last()
            .map_or(st.log_end_offset, |s| s.header.next_offset());
        st.log_end_offset = next;
        self.leo_tx.send_replace(next);
        if st.auto_hw {
            st.high_watermark = next;
            self.publish_hw(next);
        }
        Ok(AppendInfo {
            base_offset: first,
            last_offset: next - 1,
            max_timestamp,
            log_start_offset: st.log_start_offset,
        })
    }

    fn leader_epochs(&self) -> LeaderEpochHistory {
        self.state.read().epochs.clone()
    }

    fn assign_leader_epoch(&self, epoch: i32) -> Result<()> {
        let mut st = self.state.write();
        st.check_open()?;
        let end = st.log_end_offset;
        st.epochs.assign(epoch, end);
        Ok(())
    }

    fn set_auto_high_watermark(&self, enabled: bool) {
        let mut st = self.state.write();
        let was = std::mem::replace(&mut st.auto_hw, enabled);
        // Everything held in memory counts as durable here.
        if enabled && !was && st.log_end_offset > st.high_watermark {
            st.high_watermark = st.log_end_offset;
            self.publish_hw(st.high_watermark);
        }
    }

    fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.leo_tx.subscribe()
    }

    async fn wait_durable(&self, offset: i64) -> Result<()> {
        let st = self.state.read();
        st.check_open()?;
        if offset >= st.log_end_offset {
            return Err(st.out_of_range(offset));
        }
        Ok(())
    }

    fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        limit_to_high_watermark: bool,
    ) -> Result<ReadResult> {
        let st = self.state.read();
        let limit = if limit_to_high_watermark {
            st.high_watermark
        } else {
            st.log_end_offset
        };
        st.read_to(offset, max_bytes, limit)
    }

    fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let st = self.state.read();
        let mut result = st.read_to(offset, max_bytes, st.last_stable_offset())?;
        if let Some(end) = batch::end_offset(&result.records) {
            result.aborted_transactions = st.producers.aborted_between(offset, end);
        }
        Ok(result)
    }

    fn log_start_offset(&self) -> i64 {
        self.state.read().log_start_offset
    }

    fn log_end_offset(&self) -> i64 {
        self.state.read().log_end_offset
    }

    fn high_watermark(&self) -> i64 {
        self.state.read().high_watermark
    }

    fn last_stable_offset(&self) -> i64 {
        self.state.read().last_stable_offset()
    }

    fn set_high_watermark(&self, offset: i64) -> Result<()> {
        let mut st = self.state.write();
        st.check_open()?;
        if offset < st.log_start_offset || offset > st.log_end_offset {
            return Err(st.out_of_range(offset));
        }
        st.high_watermark = offset;
        self.publish_hw(offset);
        Ok(())
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    fn truncate_to(&self, offset: i64) -> Result<()> {
        let mut st = self.state.write();
        st.check_open()?;
        if offset >= st.log_end_offset {
            return Ok(());
        }
        if offset < st.log_start_offset {
            return Err(st.out_of_range(offset));
        }
        let cut = st.first_at_or_after(offset);
        let first_removed = st.batches.get(cut).map(|b| b.header.base_offset);
        st.batches.truncate(cut);
        // Rebuilt from what is left; producers known only from removed batches are forgotten
        // (there are no snapshots to reload from in memory).
        let mut producers = ProducerStates::default();
        for b in &st.batches {
            let control = b
                .header
                .is_control()
                .then(|| batch::control_kind(&b.bytes))
                .flatten();
            producers.replay(&b.header, control);
        }
        st.producers = producers;
        let new_end = first_removed.map_or(offset, |b| b.min(offset));
        st.log_end_offset = new_end;
        st.high_watermark = st.high_watermark.min(new_end);
        st.epochs.truncate_from_end(new_end);
        self.leo_tx.send_replace(new_end);
        self.publish_hw(st.high_watermark);
        Ok(())
    }

    fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let mut st = self.state.write();
        st.check_open()?;
        if offset > st.high_watermark || offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: st.log_start_offset,
                end: st.high_watermark,
            });
        }
        if offset > st.log_start_offset {
            st.log_start_offset = offset;
            while st
                .batches
                .front()
                .is_some_and(|b| b.header.next_offset() <= offset)
            {
                st.batches.pop_front();
            }
        }
        Ok(st.log_start_offset)
    }

    fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        let st = self.state.read();
        st.check_open()?;
        let start = st.log_start_offset;
        for b in st.batches.range(st.first_at_or_after(start)..) {
            if b.header.max_timestamp < timestamp {
                continue;
            }
            if let Some(found) = decode::first_record_at_or_after(&b.bytes, timestamp, start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn max_timestamp(&self) -> Result<Option<TimestampOffset>> {
        let st = self.state.read();
        st.check_open()?;
        let mut best: Option<&Stored> = None;
        for b in &st.batches {
            if best.is_none_or(|x| b.header.max_timestamp > x.header.max_timestamp) {
                best = Some(b);
            }
        }
        let Some(b) = best else {
            return Ok(None);
        };
        let fallback = TimestampOffset {
            timestamp: b.header.max_timestamp,
            offset: b.header.base_offset,
        };
        Ok(Some(
            decode::record_with_max_timestamp(&b.bytes)?.unwrap_or(fallback),
        ))
    }

    fn size_bytes(&self) -> u64 {
        let st = self.state.read();
        st.batches.iter().map(|b| b.bytes.len() as u64).sum()
    }

    fn update_config(&self, config: LogConfig) {
        self.state.write().config = config;
    }

    fn run_maintenance(&self, now_ms: i64) -> Result<()> {
        let mut st = self.state.write();
        if st.closed {
            return Ok(());
        }
        st.producers
            .remove_expired(now_ms, PRODUCER_ID_EXPIRATION_MS);
        let log_start_offset = st.log_start_offset;
        st.producers.prune_aborted(log_start_offset);
        if st.config.cleanup_policy.deletes() {
            let (retention_ms, retention_bytes) =
                (st.config.retention_ms, st.config.retention_bytes);
            let mut total: i64 = st.batches.iter().map(|b| b.bytes.len() as i64).sum();
            while st.batches.len() > 1 {
                let Some(b) = st.batches.front() else { break };
                if b.header.next_offset() > st.high_watermark {
                    break;
                }
                let expired = retention_ms >= 0
                    && b.header.max_timestamp < now_ms.saturating_sub(retention_ms);
                let size = b.bytes.len() as i64;
                let oversize = retention_bytes >= 0 && total - size >= retention_bytes;
                if !(expired || oversize) {
                    break;
                }
                total -= size;
                let next = b.header.next_offset();
                st.batches.pop_front();
                st.log_start_offset = st.log_start_offset.max(next);
            }
        }
        if st.config.cleanup_policy.compacts() {
            Self::compact(&mut st, now_ms)?;
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        self.state.write().closed = true;
        Ok(())
    }
}
