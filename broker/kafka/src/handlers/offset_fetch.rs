//! OffsetFetch: a group's committed offsets (v8+: several groups per request). Partitions with
//! nothing committed answer offset -1, as Kafka does; a null topic list means every committed
//! partition of the group. With require_stable (v7+) a partition whose offset a transaction has
//! committed but not yet completed answers UNSTABLE_OFFSET_COMMIT (the client retries) rather
//! than an offset that may still be rolled back. v9's member id and epoch (KIP-848) are
//! accepted and not checked: reading offsets changes nothing a stale member could break.

use std::sync::Arc;

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::str_bytes;
use crate::coordinator::TopicOffsets;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in request.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let group = match fetch(broker, &g.group_id, topics, request.require_stable).await {
                Ok((found, unstable)) => OffsetFetchResponseGroup::default().with_topics(
                    found
                        .into_iter()
                        .map(|(name, partitions)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(str_bytes(name.clone())))
                                .with_partitions(
                                    partitions
                                        .into_iter()
                                        .map(|(index, o)| {
                                            let (code, o) = stable(&unstable, &name, index, o);
                                            let (offset, epoch, metadata) = fields(o);
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(index)
                                                .with_error_code(code)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(Some(str_bytes(metadata)))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
                Err(e) => OffsetFetchResponseGroup::default().with_error_code(e.code()),
            };
            groups.push(group.with_group_id(g.group_id));
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }

    let topics = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let require_stable = version >= 7 && request.require_stable;
    match fetch(broker, &request.group_id, topics, require_stable).await {
        Ok((found, unstable)) => OffsetFetchResponse::default().with_topics(
            found
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(name.clone())))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, o)| {
                                    let (code, o) = stable(&unstable, &name, index, o);
                                    let (offset, epoch, metadata) = fields(o);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_error_code(code)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(metadata)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        // v2+ carries a top-level error; v1 only per-partition ones, which an empty list lacks.
        Err(e) => OffsetFetchResponse::default().with_error_code(e.code()),
    }
}

/// The group's offsets, and (with `require_stable`) the partitions whose offset is pending in
/// a transaction.
async fn fetch(
    broker: &Arc<Broker>,
    group_id: &GroupId,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<(Vec<TopicOffsets>, HashSet<(String, i32)>), ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let found = broker.groups.fetch_offsets(group_id, topics).await?;
    let unstable = if require_stable {
        broker.groups.pending_partitions(group_id)
    } else {
        HashSet::new()
    };
    Ok((found, unstable))
}

/// UNSTABLE_OFFSET_COMMIT and no offset for a partition with a pending transactional offset.
fn stable(
    unstable: &HashSet<(String, i32)>,
    topic: &str,
    partition: i32,
    o: Option<crate::coordinator::group::CommittedOffset>,
) -> (i16, Option<crate::coordinator::group::CommittedOffset>) {
    if unstable.contains(&(topic.to_string(), partition)) {
        (ResponseError::UnstableOffsetCommit.code(), None)
    } else {
        (0, o)
    }
}

fn fields(o: Option<crate::coordinator::group::CommittedOffset>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, o.metadata),
        None => (-1, -1, String::new()),
    }
}
