//! Offsets committed inside a transaction (TxnOffsetCommit, KIP-98/KIP-447), the group
//! coordinator's side.
//!
//! They are written to the group's `__consumer_offsets` partition as a transactional batch of
//! the producer (its id and epoch, no sequence) and held as *pending* until the transaction
//! coordinator writes the transaction's marker to that partition: COMMIT makes them the
//! group's committed offsets, ABORT drops them. Replay does the same with the markers it finds,
//! so a restart neither exposes an aborted commit nor loses a committed one; offsets of a
//! transaction still open at the end of the log stay pending until its marker arrives.
//! OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for a partition with a pending
//! offset, so a consumer never starts from an offset that may still be rolled back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use chronik_log::{control_batch, ControlKind, PartitionLog};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;

use super::group::{CommittedOffset, Group};
use super::records::{self, Key};
use super::{now_ms, Coordinator, CoordinatorError};
use crate::error_codes;

/// Offsets of open transactions: producer id -> group -> (topic, partition) -> offset.
pub(super) type PendingOffsets =
    HashMap<i64, HashMap<String, HashMap<(String, i32), CommittedOffset>>>;

impl Coordinator {
    /// TxnOffsetCommit: store `offsets` as pending offsets of the producer's transaction. The
    /// returned future resolves once they are durable.
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_commit(
        self: &Arc<Self>,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<BoxFuture<'static, Result<(), ResponseError>>, ResponseError> {
        self.ready().await?;
        self.check_owner(group_id)?;
        let now = now_ms();
        let mut inner = self.inner.lock();
        // KIP-447: a producer that sends its consumer's generation is fenced with it. Without
        // one (generation -1) the group is used as plain offset storage, as Kafka allows.
        if let Some(consumer) = inner.active_consumer_group(group_id) {
            if generation >= 0 {
                consumer.check_commit(member_id, generation)?;
            }
        } else if generation >= 0 {
            match inner.groups.get_mut(group_id) {
                Some(group) => group.check_commit(member_id, instance_id, generation, now)?,
                None => return Err(ResponseError::IllegalGeneration),
            }
        }
        if offsets.is_empty() {
            return Ok(Box::pin(std::future::ready(Ok(()))));
        }
        let records: Vec<(Bytes, Option<Bytes>)> = offsets
            .iter()
            .map(|(topic, partition, o)| {
                let key = Key::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                (key.encode(), Some(records::encode_offset(o)))
            })
            .collect();
        let log = self
            .offsets_log(self.offsets_partition(group_id))
            .map_err(|e| error_codes::for_coordinator(&e))?;
        let batch = records::txn_batch(&records, now, producer_id, producer_epoch)
            .map_err(|e| error_codes::for_coordinator(&e))?;
        // The log checks the producer's epoch: a fenced producer's commit stores nothing.
        let info = log.append(batch, 0).map_err(|e| error_codes::for_log(&e))?;
        let pending = inner
            .pending_txn
            .entry(producer_id)
            .or_default()
            .entry(group_id.to_string())
            .or_default();
        for (topic, partition, o) in offsets {
            pending.insert((topic, partition), o);
        }
        drop(inner);
        Ok(Box::pin(async move {
            log.wait_durable(info.last_offset)
                .await
                .map_err(|e| error_codes::for_coordinator(&e.into()))
        }))
    }

    /// Write the marker of `producer_id`'s transaction to `__consumer_offsets` partition
    /// `partition` and apply it to the pending offsets of the groups living there. Returns the
    /// log and the marker's offset, to wait on for durability.
    pub fn complete_txn(
        &self,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        kind: ControlKind,
    ) -> Result<(Arc<dyn PartitionLog>, i64), CoordinatorError> {
        let log = self.offsets_log(partition)?;
        let mut inner = self.inner.lock();
        let marker = control_batch(producer_id, producer_epoch, kind, 0, now_ms());
        let info = log.append(marker, 0)?;
        let groups: Vec<String> = inner
            .pending_txn
            .get(&producer_id)
            .map(|by_group| {
                by_group
                    .keys()
                    .filter(|g| self.offsets_partition(g) == partition)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for group_id in groups {
            let offsets = inner
                .pending_txn
                .get_mut(&producer_id)
                .and_then(|by_group| by_group.remove(&group_id))
                .unwrap_or_default();
            if kind == ControlKind::Commit {
                let now = now_ms();
                let group = inner
                    .groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(&group_id, self.config.group.clone(), now));
                for ((topic, p), o) in offsets {
                    group.set_offset(&topic, p, o);
                }
            }
        }
        if inner
            .pending_txn
            .get(&producer_id)
            .is_some_and(HashMap::is_empty)
        {
            inner.pending_txn.remove(&producer_id);
        }
        Ok((log, info.last_offset))
    }

    /// Partitions of `group_id` with an offset still waiting for its transaction's outcome.
    pub fn pending_partitions(&self, group_id: &str) -> HashSet<(String, i32)> {
        let inner = self.inner.lock();
        inner
            .pending_txn
            .values()
            .filter_map(|by_group| by_group.get(group_id))
            .flat_map(|offsets| offsets.keys().cloned())
            .collect()
    }
}

/// Replay of one transactional batch or marker found in `__consumer_offsets`.
pub(super) fn replay_txn_offsets(
    pending: &mut PendingOffsets,
    committed: &mut HashMap<String, HashMap<(String, i32), CommittedOffset>>,
    producer_id: i64,
    marker: Option<ControlKind>,
    offsets: Vec<(String, String, i32, Option<CommittedOffset>)>,
) {
    match marker {
        None => {
            let by_group = pending.entry(producer_id).or_default();
            for (group, topic, partition, o) in offsets {
                let entry = by_group.entry(group).or_default();
                match o {
                    Some(o) => {
                        entry.insert((topic, partition), o);
                    }
                    None => {
                        entry.remove(&(topic, partition));
                    }
                }
            }
        }
        Some(kind) => {
            let Some(by_group) = pending.remove(&producer_id) else {
                return;
            };
            if kind == ControlKind::Commit {
                for (group, offsets) in by_group {
                    committed.entry(group).or_default().extend(offsets);
                }
            }
        }
    }
}
