//! OffsetCommit: store consumed positions in `__consumer_offsets`. Members of classic groups
//! are checked against the group's generation, members of KIP-848 consumer groups against
//! their member epoch (STALE_MEMBER_EPOCH); standalone consumers (generation -1, no member id)
//! may commit to a group with no members. Deferred: acknowledged once the records are durable.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, ResponseKind, TopicName,
};

use super::str_bytes;
use crate::coordinator::group::CommittedOffset;
use crate::registry::Reply;
use crate::Broker;

/// A topic's partitions, each with the error that refused it up front, or `None` if it goes to
/// the group.
type CheckedTopic = (String, Vec<(i32, Option<ResponseError>)>);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: OffsetCommitRequest,
    version: i16,
) -> Reply {
    let group_id = request.group_id.0.to_string();
    let state = broker.meta.state();
    let max_metadata = broker.groups.config().offset_metadata_max_bytes;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);

    let mut checked: Vec<CheckedTopic> = Vec::with_capacity(request.topics.len());
    let mut to_commit = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let known = state.topics.get(&name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let metadata = p
                .committed_metadata
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
                let offset = CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata,
                    commit_timestamp: now,
                };
                to_commit.push((name.clone(), p.partition_index, offset));
                None
            };
            partitions.push((p.partition_index, outcome));
        }
        checked.push((name, partitions));
    }

    let committed = if to_commit.is_empty() {
        Ok(None)
    } else {
        let instance_id = request
            .group_instance_id
            .map(|i| i.to_string())
            .filter(|i| !i.is_empty());
        broker
            .groups
            .commit(
                &group_id,
                &request.member_id,
                instance_id.as_deref(),
                request.generation_id_or_member_epoch,
                to_commit,
            )
            .await
            .map(Some)
    };
    Box::pin(async move {
        // One outcome for the whole group write: the records went in one batch.
        let result = match committed {
            Ok(Some(durable)) => durable.await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        let topics = checked
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(index, outcome)| {
                                let code = match outcome {
                                    Some(e) => e.code(),
                                    None => result.err().map_or(0, |e| e.code()),
                                };
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        Some(ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(topics),
        ))
    })
}
