//! Transaction markers (Kafka's WriteTxnMarkers): the COMMIT or ABORT control batch that ends
//! a transaction on each of its partitions. The coordinator writes the markers of partitions
//! this broker leads itself and sends the others to their leaders over the cluster port
//! ([`LeaderLink::write_txn_markers`]); a leader answers once its markers are durable, and on
//! replicated partitions below the high watermark, so a new leader still has them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chronik_log::{control_batch, ControlKind, LogError};
use kafka_protocol::error::ResponseError;

use super::TransactionCoordinator;
use crate::coordinator::transaction::TxnMetadata;
use crate::coordinator::{now_ms, Appended, CoordinatorError, OFFSETS_TOPIC};
use crate::replication::{LeaderLink, MarkerOutcome, TxnMarkers};
use crate::Broker;

impl TransactionCoordinator {
    /// Write `kind` markers of the producer to these partitions, led here; one result per
    /// partition, in order, once all writes are durable. A partition whose topic was deleted
    /// needs no marker.
    pub(crate) async fn write_markers_here(
        &self,
        broker: &Broker,
        producer_id: i64,
        producer_epoch: i16,
        kind: ControlKind,
        partitions: &[(String, i32)],
    ) -> Vec<Result<(), CoordinatorError>> {
        let state = self.meta.state();
        let now = now_ms();
        let mut results: Vec<Result<(), CoordinatorError>> = Vec::with_capacity(partitions.len());
        let mut written = Vec::new();
        for (i, (topic, partition)) in partitions.iter().enumerate() {
            let appended = if topic == OFFSETS_TOPIC {
                broker
                    .groups
                    .complete_txn(*partition, producer_id, producer_epoch, kind)
                    .map(Some)
            } else {
                let marker = control_batch(producer_id, producer_epoch, kind, 0, now);
                self.append_marker(broker, &state, topic, *partition, marker)
            };
            match appended {
                Ok(Some(at)) => {
                    written.push((i, at));
                    results.push(Ok(()));
                }
                Ok(None) => results.push(Ok(())),
                Err(e) => results.push(Err(e)),
            }
        }
        let waits = written
            .iter()
            .map(|(_, (log, offset))| log.wait_durable(*offset));
        let durable = futures::future::join_all(waits).await;
        for ((i, _), outcome) in written.iter().zip(durable) {
            if let Err(e) = outcome {
                results[*i] = Err(e.into());
            }
        }
        results
    }

    /// Append one marker to a partition led here: `None` when the partition is gone.
    fn append_marker(
        &self,
        broker: &Broker,
        state: &chronik_meta::ClusterState,
        topic: &str,
        partition: i32,
        marker: Bytes,
    ) -> Result<Option<Appended>, CoordinatorError> {
        let Some(meta) = state.topics.get(topic) else {
            return Ok(None);
        };
        let log = match broker.partition_log(meta, partition) {
            Ok(log) => log,
            Err(ResponseError::UnknownTopicOrPartition) => return Ok(None),
            Err(_) => return Err(CoordinatorError::NotLeader(partition)),
        };
        let placement = meta.partitions.get(partition as usize);
        // On a replicated partition the marker counts once the in-sync replicas have it: a
        // new leader without it would keep the transaction open for good.
        let log = if placement.is_some_and(|p| p.replicas.len() > 1) {
            self.replicas
                .committed_log(self.node_id, &self.meta, topic, partition)
                .ok_or(CoordinatorError::NotLeader(partition))?
        } else {
            log
        };
        match log.append(marker, placement.map_or(0, |p| p.leader_epoch)) {
            Ok(info) => Ok(Some((log, info.last_offset))),
            Err(LogError::Closed) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Send the markers of partitions other brokers lead, one request per leader, all at once.
    pub(super) async fn send_markers(
        &self,
        broker: &Broker,
        m: &TxnMetadata,
        kind: ControlKind,
        by_leader: BTreeMap<i32, Vec<(String, i32)>>,
    ) -> Result<(), CoordinatorError> {
        if by_leader.is_empty() {
            return Ok(());
        }
        let Some(link) = broker.fetchers.get().map(|f| Arc::clone(f.link())) else {
            let partition = by_leader.values().flatten().next().map_or(-1, |p| p.1);
            return Err(CoordinatorError::NotLeader(partition));
        };
        let sends = by_leader.into_iter().map(|(leader, partitions)| {
            let link: Arc<dyn LeaderLink> = Arc::clone(&link);
            let markers = TxnMarkers {
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                commit: kind == ControlKind::Commit,
                partitions,
            };
            async move {
                let asked = markers.partitions.clone();
                let outcomes = link.write_txn_markers(leader, markers).await?;
                if outcomes.len() != asked.len() {
                    return Err(format!(
                        "broker {leader} answered {} of {} markers",
                        outcomes.len(),
                        asked.len()
                    ));
                }
                match asked
                    .iter()
                    .zip(&outcomes)
                    .find(|(_, outcome)| **outcome != MarkerOutcome::Written)
                {
                    Some(((topic, partition), outcome)) => Err(format!(
                        "marker for {topic}-{partition} on broker {leader}: {outcome:?}"
                    )),
                    None => Ok(()),
                }
            }
        });
        for result in futures::future::join_all(sends).await {
            if let Err(why) = result {
                tracing::debug!(transactional_id = %m.transactional_id, %why, "transaction markers not written yet");
                return Err(CoordinatorError::Remote(why));
            }
        }
        Ok(())
    }
}

impl Broker {
    /// WriteTxnMarkers from another broker's transaction coordinator: write the markers of the
    /// partitions asked for (led here), answering each once durable.
    pub async fn serve_write_txn_markers(&self, markers: TxnMarkers) -> Vec<MarkerOutcome> {
        let kind = if markers.commit {
            ControlKind::Commit
        } else {
            ControlKind::Abort
        };
        self.transactions
            .write_markers_here(
                self,
                markers.producer_id,
                markers.producer_epoch,
                kind,
                &markers.partitions,
            )
            .await
            .into_iter()
            .map(|result| match result {
                Ok(()) => MarkerOutcome::Written,
                Err(CoordinatorError::NotLeader(_)) => MarkerOutcome::NotLeader,
                Err(e) => MarkerOutcome::Failed(e.to_string()),
            })
            .collect()
    }
}
