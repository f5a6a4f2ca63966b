//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3) or the first offset at or after a
//! timestamp, per partition. With isolation level read_committed (v2+) "latest" is the last
//! stable offset and lookups see nothing at or past it, as a read_committed consumer would.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::error_codes;
use crate::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let state = broker.meta.state();
    let committed = version >= 2 && request.isolation_level == 1;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let meta = state.topics.get(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let result = meta
                        .ok_or(ResponseError::UnknownTopicOrPartition)
                        .and_then(|m| {
                            let epoch = m
                                .partitions
                                .get(p.partition_index as usize)
                                .map_or(-1, |pm| pm.leader_epoch);
                            broker
                                .partition_log(m, p.partition_index)
                                .and_then(|log| lookup(&*log, p.timestamp, committed))
                                .map(|found| (found, epoch))
                        });
                    match result {
                        Ok(((timestamp, offset), epoch)) => {
                            let r = base.with_timestamp(timestamp).with_offset(offset);
                            // leader_epoch exists from v4
                            if version >= 4 {
                                r.with_leader_epoch(epoch)
                            } else {
                                r
                            }
                        }
                        Err(code) => base
                            .with_error_code(code.code())
                            .with_timestamp(-1)
                            .with_offset(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (timestamp, offset) for one partition; (-1, -1) when no record matches.
fn lookup(
    log: &dyn chronik_log::PartitionLog,
    timestamp: i64,
    committed: bool,
) -> Result<(i64, i64), ResponseError> {
    let visible_end = if committed {
        log.last_stable_offset()
    } else {
        log.high_watermark()
    };
    let found = match timestamp {
        LATEST => return Ok((-1, visible_end)),
        EARLIEST => return Ok((-1, log.log_start_offset())),
        MAX_TIMESTAMP => log.max_timestamp(),
        ts if ts >= 0 => log.offset_for_timestamp(ts),
        _ => return Err(ResponseError::InvalidRequest),
    };
    match found {
        // Records past the high watermark (or the LSO) are not yet visible to consumers.
        Ok(Some(t)) if t.offset < visible_end => Ok((t.timestamp, t.offset)),
        Ok(Some(_)) => Ok((-1, -1)),
        Ok(None) => Ok((-1, -1)),
        Err(e) => Err(error_codes::for_log(&e)),
    }
}
