//! OffsetFetch: a group's committed offsets (v8+: several groups per request). Partitions with
//! nothing committed answer offset -1, as Kafka does; a null topic list means every committed
//! partition of the group.

use std::sync::Arc;

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
            let group = match fetch(broker, &g.group_id, topics).await {
                Ok(found) => OffsetFetchResponseGroup::default().with_topics(
                    found
                        .into_iter()
                        .map(|(name, partitions)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(str_bytes(name)))
                                .with_partitions(
                                    partitions
                                        .into_iter()
                                        .map(|(index, o)| {
                                            let (offset, epoch, metadata) = fields(o);
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(index)
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
    match fetch(broker, &request.group_id, topics).await {
        Ok(found) => OffsetFetchResponse::default().with_topics(
            found
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, o)| {
                                    let (offset, epoch, metadata) = fields(o);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
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

async fn fetch(
    broker: &Arc<Broker>,
    group_id: &GroupId,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<TopicOffsets>, ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    broker.groups.fetch_offsets(group_id, topics).await
}

fn fields(o: Option<crate::coordinator::group::CommittedOffset>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, o.metadata),
        None => (-1, -1, String::new()),
    }
}
