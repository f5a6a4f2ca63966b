//! TxnOffsetCommit: offsets committed as part of a producer's transaction
//! (send_offsets_to_transaction). They are stored as pending and become the group's committed
//! offsets only when the transaction commits (see `coordinator::transaction_offsets`). The
//! producer id and epoch must own the transactional id (a fenced producer's offsets are
//! refused) and its open transaction must include the group (AddOffsetsToTxn first, else
//! INVALID_TXN_STATE); from v3 the consumer's generation and member id are checked too (KIP-447).
//! Deferred: acknowledged once the records are durable.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::coordinator::group::CommittedOffset;
use crate::coordinator::OFFSETS_TOPIC;
use crate::error_codes;
use crate::registry::Reply;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> Reply {
    let group_id = request.group_id.0.to_string();
    let state = broker.meta.state();
    let max_metadata = broker.groups.config().offset_metadata_max_bytes;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);

    let mut checked = Vec::with_capacity(request.topics.len());
    let mut to_commit = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let known = state.topics.get(&name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let outcome = if group_id.is_empty() {
                Some(ResponseError::InvalidGroupId)
            } else if !known.is_some_and(|t| {
                p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len()
            }) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                to_commit.push((
                    name.clone(),
                    p.partition_index,
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 2 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata,
                        commit_timestamp: now,
                    },
                ));
                None
            };
            partitions.push((p.partition_index, outcome));
        }
        checked.push((topic.name.clone(), partitions));
    }

    let committed = if to_commit.is_empty() {
        Ok(None)
    } else {
        commit(broker, &request, version, to_commit).await.map(Some)
    };
    Box::pin(async move {
        let result = match committed {
            Ok(Some(durable)) => durable.await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        let topics = checked
            .into_iter()
            .map(|(name, partitions)| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(index, outcome)| {
                                let code = match outcome {
                                    Some(e) => e.code(),
                                    None => result.err().map_or(0, |e| e.code()),
                                };
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        Some(ResponseKind::TxnOffsetCommit(
            TxnOffsetCommitResponse::default().with_topics(topics),
        ))
    })
}

async fn commit(
    broker: &Arc<Broker>,
    request: &TxnOffsetCommitRequest,
    version: i16,
    offsets: Vec<(String, i32, CommittedOffset)>,
) -> Result<futures::future::BoxFuture<'static, Result<(), ResponseError>>, ResponseError> {
    // When the transaction coordinator is this broker: a producer that no longer owns the
    // transactional id (fenced, or timed out and bumped), or whose transaction does not
    // include the group (no AddOffsetsToTxn), stores nothing.
    broker
        .transactions
        .start(broker)
        .await
        .map_err(|e| error_codes::for_coordinator(&e))?;
    let offsets_partition = broker.groups.offsets_partition(&request.group_id);
    broker
        .transactions
        .check_producer(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            (OFFSETS_TOPIC.to_string(), offsets_partition),
        )
        .await
        .map_err(|e| error_codes::for_txn(e, error_codes::fenced_code(version, 3)))?;
    let (member_id, instance_id, generation) = if version >= 3 {
        (
            request.member_id.to_string(),
            request
                .group_instance_id
                .as_ref()
                .map(|i| i.to_string())
                .filter(|i| !i.is_empty()),
            request.generation_id,
        )
    } else {
        (String::new(), None, -1)
    };
    broker
        .groups
        .txn_commit(
            &request.group_id,
            request.producer_id.0,
            request.producer_epoch,
            &member_id,
            instance_id.as_deref(),
            generation,
            offsets,
        )
        .await
}
