//! Partition replication over the cluster port: the glue between chronik-kafka's replication
//! runtime (plain Rust types, no gRPC) and chronik-raft's `ReplicaService` (protobuf over tonic).
//! Only conversions live here.

use std::sync::Arc;
use std::time::Duration;

use chronik_kafka::replication::{
    EpochAnswer, EpochQuery, FetchPartition, FetchedPartition, LeaderLink, MarkerOutcome,
    ReplicaError, TxnMarkers,
};
use chronik_kafka::Broker;
use chronik_raft::proto;
use chronik_raft::{ReplicaClients, ReplicaHandler};

/// Serves the leader side of replication for the cluster port.
pub struct ReplicaBridge(pub Arc<Broker>);

#[async_trait::async_trait]
impl ReplicaHandler for ReplicaBridge {
    async fn fetch(&self, request: proto::ReplicaFetchRequest) -> proto::ReplicaFetchResponse {
        let partitions = request
            .partitions
            .into_iter()
            .map(|p| FetchPartition {
                topic: p.topic,
                partition: p.partition,
                leader_epoch: p.leader_epoch,
                fetch_offset: p.fetch_offset,
                max_bytes: p.max_bytes,
            })
            .collect();
        // Bounded so a follower's long poll cannot hold a leader task for long.
        let max_wait = Duration::from_millis(u64::from(request.max_wait_ms.min(5_000)));
        let fetched = self
            .0
            .serve_replica_fetch(request.replica_id, max_wait, partitions)
            .await;
        proto::ReplicaFetchResponse {
            partitions: fetched
                .into_iter()
                .map(|p| proto::PartitionData {
                    topic: p.topic,
                    partition: p.partition,
                    error: p.error.code(),
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                    log_end_offset: p.log_end_offset,
                    records: p.records,
                })
                .collect(),
        }
    }

    async fn epoch_end_offsets(
        &self,
        request: proto::EpochEndOffsetsRequest,
    ) -> proto::EpochEndOffsetsResponse {
        let queries = request
            .queries
            .into_iter()
            .map(|q| EpochQuery {
                topic: q.topic,
                partition: q.partition,
                leader_epoch: q.leader_epoch,
                requested_epoch: q.requested_epoch,
            })
            .collect();
        proto::EpochEndOffsetsResponse {
            answers: self
                .0
                .serve_epoch_end_offsets(request.replica_id, queries)
                .into_iter()
                .map(|a| proto::EpochAnswer {
                    topic: a.topic,
                    partition: a.partition,
                    error: a.error.code(),
                    epoch: a.epoch,
                    end_offset: a.end_offset,
                })
                .collect(),
        }
    }

    async fn write_txn_markers(
        &self,
        request: proto::WriteTxnMarkersRequest,
    ) -> proto::WriteTxnMarkersResponse {
        let Ok(producer_epoch) = i16::try_from(request.producer_epoch) else {
            let results = request
                .partitions
                .into_iter()
                .map(|p| proto::MarkerResult {
                    topic: p.topic,
                    partition: p.partition,
                    error: format!("producer epoch {} out of range", request.producer_epoch),
                    not_leader: false,
                })
                .collect();
            return proto::WriteTxnMarkersResponse { results };
        };
        let partitions: Vec<(String, i32)> = request
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect();
        let outcomes = self
            .0
            .serve_write_txn_markers(TxnMarkers {
                producer_id: request.producer_id,
                producer_epoch,
                commit: request.commit,
                partitions: partitions.clone(),
            })
            .await;
        proto::WriteTxnMarkersResponse {
            results: partitions
                .into_iter()
                .zip(outcomes)
                .map(|((topic, partition), outcome)| {
                    let (error, not_leader) = match outcome {
                        MarkerOutcome::Written => (String::new(), false),
                        MarkerOutcome::NotLeader => ("not the leader".to_string(), true),
                        MarkerOutcome::Failed(why) => (why, false),
                    };
                    proto::MarkerResult {
                        topic,
                        partition,
                        error,
                        not_leader,
                    }
                })
                .collect(),
        }
    }
}

fn marker_partitions(partitions: &[(String, i32)]) -> Vec<proto::MarkerPartition> {
    partitions
        .iter()
        .map(|(topic, partition)| proto::MarkerPartition {
            topic: topic.clone(),
            partition: *partition,
        })
        .collect()
}

/// A follower's (and a transaction coordinator's) way to partition leaders.
#[derive(Debug)]
pub struct GrpcLeaderLink(pub ReplicaClients);

#[async_trait::async_trait]
impl LeaderLink for GrpcLeaderLink {
    async fn fetch(
        &self,
        leader: i32,
        replica_id: i32,
        max_wait: Duration,
        partitions: Vec<FetchPartition>,
    ) -> Result<Vec<FetchedPartition>, String> {
        let request = proto::ReplicaFetchRequest {
            replica_id,
            max_wait_ms: max_wait.as_millis().min(u128::from(u32::MAX)) as u32,
            partitions: partitions
                .into_iter()
                .map(|p| proto::PartitionFetch {
                    topic: p.topic,
                    partition: p.partition,
                    leader_epoch: p.leader_epoch,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.max_bytes,
                })
                .collect(),
        };
        let response = self.0.fetch(leader, request).await?;
        Ok(response
            .partitions
            .into_iter()
            .map(|p| FetchedPartition {
                topic: p.topic,
                partition: p.partition,
                error: ReplicaError::from_code(p.error),
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
                log_end_offset: p.log_end_offset,
                records: p.records,
            })
            .collect())
    }

    async fn epoch_end_offsets(
        &self,
        leader: i32,
        replica_id: i32,
        queries: Vec<EpochQuery>,
    ) -> Result<Vec<EpochAnswer>, String> {
        let request = proto::EpochEndOffsetsRequest {
            replica_id,
            queries: queries
                .into_iter()
                .map(|q| proto::EpochQuery {
                    topic: q.topic,
                    partition: q.partition,
                    leader_epoch: q.leader_epoch,
                    requested_epoch: q.requested_epoch,
                })
                .collect(),
        };
        let response = self.0.epoch_end_offsets(leader, request).await?;
        Ok(response
            .answers
            .into_iter()
            .map(|a| EpochAnswer {
                topic: a.topic,
                partition: a.partition,
                error: ReplicaError::from_code(a.error),
                epoch: a.epoch,
                end_offset: a.end_offset,
            })
            .collect())
    }

    async fn write_txn_markers(
        &self,
        leader: i32,
        markers: TxnMarkers,
    ) -> Result<Vec<MarkerOutcome>, String> {
        let request = proto::WriteTxnMarkersRequest {
            producer_id: markers.producer_id,
            producer_epoch: i32::from(markers.producer_epoch),
            commit: markers.commit,
            partitions: marker_partitions(&markers.partitions),
        };
        let response = self.0.write_txn_markers(leader, request).await?;
        Ok(response
            .results
            .into_iter()
            .map(|r| match (r.not_leader, r.error.is_empty()) {
                (true, _) => MarkerOutcome::NotLeader,
                (false, true) => MarkerOutcome::Written,
                (false, false) => MarkerOutcome::Failed(r.error),
            })
            .collect())
    }
}
