//! Loading groups from `__consumer_offsets`: at start-up for every partition this broker
//! leads, and for one partition when its leadership arrives here (a failover or a restart).
//! Committed offsets, classic group generations, KIP-848 consumer groups and the offsets of
//! transactions still open are rebuilt from the log; later records win, tombstones delete.

use std::collections::HashMap;

use bytes::Bytes;
use chronik_log::{control_kind, BatchHeader, PartitionLog};

use super::group::{self, CommittedOffset, Group};
use super::records::{self, Key};
use super::transaction_offsets::{replay_txn_offsets, PendingOffsets};
use super::{
    consumer_group, now_ms, partition_for, Coordinator, CoordinatorError, Inner, OFFSETS_TOPIC,
};

/// Bytes read per step when replaying a partition.
const REPLAY_READ_BYTES: usize = 4 << 20;

impl Coordinator {
    /// Replace the groups of one `__consumer_offsets` partition with what its log holds.
    pub(super) fn load_partition(
        &self,
        partition: i32,
        leader_epoch: i32,
        partitions: i32,
    ) -> Result<(), CoordinatorError> {
        let log = self.offsets_log(partition)?;
        let mut replayed = Replayed::default();
        let mut pending = PendingOffsets::new();
        replay_partition(&*log, &mut replayed, &mut pending)?;
        let now = now_ms();
        let mut inner = self.inner.lock();
        let here = |id: &str| partition_for(id, partitions) == partition;
        inner.groups.retain(|id, _| !here(id));
        inner.consumer_groups.retain(|id, _| !here(id));
        for by_group in inner.pending_txn.values_mut() {
            by_group.retain(|id, _| !here(id));
        }
        for (pid, by_group) in pending {
            inner.pending_txn.entry(pid).or_default().extend(by_group);
        }
        let groups = replayed.classic.len() + replayed.consumer.len();
        self.install(&mut inner, replayed, now);
        inner.loaded_epochs.insert(partition, leader_epoch);
        tracing::info!(
            partition,
            leader_epoch,
            groups,
            "loaded __consumer_offsets partition"
        );
        Ok(())
    }

    /// Rebuild groups and offsets from every `__consumer_offsets` partition this broker leads.
    pub(super) fn replay(&self) -> Result<(), CoordinatorError> {
        let state = self.meta.state();
        let topic = state.topic(OFFSETS_TOPIC)?;
        let mut replayed = Replayed::default();
        let mut open_txns = PendingOffsets::new();
        let mut loaded = Vec::new();
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader != self.node_id {
                continue;
            }
            let log = match self.offsets_log(index as i32) {
                Ok(log) => log,
                // A replicated partition whose leadership is still being set up here: its
                // first request loads it.
                Err(CoordinatorError::NotLeader(_)) => continue,
                Err(e) => return Err(e),
            };
            loaded.push((index as i32, p.leader_epoch));
            // Per partition: a marker ends its producer's transaction on that partition only.
            let mut pending = PendingOffsets::new();
            replay_partition(&*log, &mut replayed, &mut pending)?;
            for (pid, by_group) in pending {
                open_txns.entry(pid).or_default().extend(by_group);
            }
        }
        let now = now_ms();
        let mut inner = self.inner.lock();
        inner.pending_txn = open_txns;
        inner.loaded_epochs.extend(loaded);
        let restored_offsets = self.install(&mut inner, replayed, now);
        tracing::info!(
            groups = inner.groups.len(),
            consumer_groups = inner.consumer_groups.len(),
            offsets = restored_offsets,
            "group coordinator loaded"
        );
        Ok(())
    }

    /// Put replayed groups and offsets in place; returns how many offsets there were. A
    /// consumer group whose record cannot be read is left out: its members get
    /// UNKNOWN_MEMBER_ID and rejoin, which loses nothing but a rebalance.
    fn install(&self, inner: &mut Inner, replayed: Replayed, now: i64) -> usize {
        for (id, s) in replayed.classic {
            inner
                .groups
                .insert(id, Group::restore(s, self.config.group.clone(), now));
        }
        for (id, value) in replayed.consumer {
            match consumer_group::records::decode(&id, value, self.config.consumer.clone(), now) {
                Ok(g) => {
                    inner.consumer_groups.insert(id, g);
                }
                Err(e) => tracing::warn!(group = %id, error = %e, "consumer group record skipped"),
            }
        }
        let mut restored_offsets = 0usize;
        for (id, group_offsets) in replayed.offsets {
            let group = inner
                .groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(&id, self.config.group.clone(), now));
            for ((topic, partition), o) in group_offsets {
                group.set_offset(&topic, partition, o);
                restored_offsets += 1;
            }
        }
        restored_offsets
    }
}

/// What replaying `__consumer_offsets` partitions found, by group id.
#[derive(Default)]
struct Replayed {
    classic: HashMap<String, group::StoredGroup>,
    /// KIP-848 groups' records, decoded when they are loaded.
    consumer: HashMap<String, Bytes>,
    offsets: HashMap<String, HashMap<(String, i32), CommittedOffset>>,
}

fn replay_partition(
    log: &dyn PartitionLog,
    replayed: &mut Replayed,
    pending: &mut PendingOffsets,
) -> Result<(), CoordinatorError> {
    let Replayed {
        classic: stored,
        consumer,
        offsets,
    } = replayed;
    let mut position = log.log_start_offset();
    let end = log.log_end_offset();
    while position < end {
        let read = log.read(position, REPLAY_READ_BYTES, false)?;
        if read.records.is_empty() {
            break;
        }
        let mut at = 0usize;
        let bytes = read.records;
        while at < bytes.len() {
            let header = BatchHeader::parse(&bytes[at..])?;
            let len = header.total_len();
            if len == 0 || at + len > bytes.len() {
                break;
            }
            let batch = bytes.slice(at..at + len);
            at += len;
            position = header.next_offset();
            if header.is_control() {
                if let Some(kind) = control_kind(&batch) {
                    replay_txn_offsets(
                        pending,
                        offsets,
                        header.producer_id,
                        Some(kind),
                        Vec::new(),
                    );
                }
                continue;
            }
            let mut buf = batch;
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
                .map_err(|e| CoordinatorError::Record(format!("cannot decode batch: {e}")))?;
            if header.is_transactional() {
                let mut txn_offsets = Vec::new();
                for record in set.records {
                    let Some(key) = record.key else { continue };
                    if let Some(Key::Offset {
                        group,
                        topic,
                        partition,
                    }) = Key::decode(key)?
                    {
                        let value = record.value.map(records::decode_offset).transpose()?;
                        txn_offsets.push((group, topic, partition, value));
                    }
                }
                replay_txn_offsets(pending, offsets, header.producer_id, None, txn_offsets);
                continue;
            }
            for record in set.records {
                let Some(key) = record.key else { continue };
                match Key::decode(key)? {
                    Some(Key::Offset {
                        group,
                        topic,
                        partition,
                    }) => {
                        let entry = offsets.entry(group).or_default();
                        match record.value {
                            Some(v) => {
                                entry.insert((topic, partition), records::decode_offset(v)?);
                            }
                            None => {
                                entry.remove(&(topic, partition));
                            }
                        }
                    }
                    Some(Key::Group { group }) => match record.value {
                        Some(v) => {
                            let g = records::decode_group(&group, v)?;
                            stored.insert(group, g);
                        }
                        None => {
                            stored.remove(&group);
                            offsets.remove(&group);
                        }
                    },
                    Some(Key::ConsumerGroup { group }) => match record.value {
                        Some(v) => {
                            consumer.insert(group, v);
                        }
                        None => {
                            consumer.remove(&group);
                        }
                    },
                    None => {}
                }
            }
        }
    }
    Ok(())
}
