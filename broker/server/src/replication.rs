//! Partition replication over the cluster port: the glue between chronik-kafka's replication
//! runtime (plain Rust types, no gRPC) and chronik-raft's `ReplicaService` (protobuf over tonic).
//! Only conversions live here.

use std::sync::Arc;
use std::time::Duration;

use chronik_kafka::replication::{
    DurableOffset, EpochAnswer, EpochQuery, FetchAnswers, FetchPartition, FetchedPartition,
    FollowerMessage, FollowerMessages, LeaderLink, MarkerOutcome, ReplicaError, TxnMarkers,
};
use chronik_kafka::Broker;
use chronik_raft::proto;
use chronik_raft::{ReplicaClients, ReplicaHandler};
use futures::stream::{BoxStream, StreamExt};

/// Serves the leader side of replication for the cluster port.
pub struct ReplicaBridge(pub Arc<Broker>);

#[async_trait::async_trait]
impl ReplicaHandler for ReplicaBridge {
    fn replicate(
        &self,
        messages: BoxStream<'static, proto::FollowerMessage>,
    ) -> BoxStream<'static, proto::ReplicaFetchResponse> {
        let messages = messages
            .filter_map(|m| std::future::ready(from_proto(m)))
            .boxed();
        self.0
            .serve_replica_session(messages)
            .map(|answer| proto::ReplicaFetchResponse {
                partitions: answer
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
            })
            .boxed()
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

/// A follower's message as the leader's replication runtime takes it; `None` for a message
/// with nothing in it (a newer follower's kind this build does not know).
fn from_proto(message: proto::FollowerMessage) -> Option<FollowerMessage> {
    Some(match message.kind? {
        proto::follower_message::Kind::Fetch(fetch) => FollowerMessage::Fetch {
            replica_id: fetch.replica_id,
            // Bounded so a follower's long poll cannot hold a leader task for long.
            max_wait: Duration::from_millis(u64::from(fetch.max_wait_ms.min(5_000))),
            partitions: fetch
                .partitions
                .into_iter()
                .map(|p| FetchPartition {
                    topic: p.topic,
                    partition: p.partition,
                    leader_epoch: p.leader_epoch,
                    fetch_offset: p.fetch_offset,
                    durable_offset: p.durable_offset,
                    max_bytes: p.max_bytes,
                })
                .collect(),
        },
        proto::follower_message::Kind::Durable(durable) => FollowerMessage::Durable {
            replica_id: durable.replica_id,
            partitions: durable
                .partitions
                .into_iter()
                .map(|p| DurableOffset {
                    topic: p.topic,
                    partition: p.partition,
                    leader_epoch: p.leader_epoch,
                    offset: p.offset,
                })
                .collect(),
        },
    })
}

fn to_proto(message: FollowerMessage) -> proto::FollowerMessage {
    let kind = match message {
        FollowerMessage::Fetch {
            replica_id,
            max_wait,
            partitions,
        } => proto::follower_message::Kind::Fetch(proto::ReplicaFetchRequest {
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
                    durable_offset: p.durable_offset,
                })
                .collect(),
        }),
        FollowerMessage::Durable {
            replica_id,
            partitions,
        } => proto::follower_message::Kind::Durable(proto::DurableProgress {
            replica_id,
            partitions: partitions
                .into_iter()
                .map(|p| proto::DurableOffset {
                    topic: p.topic,
                    partition: p.partition,
                    leader_epoch: p.leader_epoch,
                    offset: p.offset,
                })
                .collect(),
        }),
    };
    proto::FollowerMessage { kind: Some(kind) }
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
    async fn replicate(
        &self,
        leader: i32,
        messages: FollowerMessages,
    ) -> Result<FetchAnswers, String> {
        let answers = self.0.replicate(leader, messages.map(to_proto)).await?;
        Ok(answers
            .map(|answer| {
                answer.map(|response| {
                    response
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
                        .collect()
                })
            })
            .boxed())
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
