//! DeleteRecords: advance a partition's log start offset; offset -1 means the high watermark.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let state = broker.meta.state();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let meta = state.topics.get(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let base = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    let outcome = meta
                        .ok_or(ResponseError::UnknownTopicOrPartition)
                        .and_then(|m| broker.partition_log(m, p.partition_index))
                        .and_then(|log| {
                            let offset = if p.offset == -1 {
                                log.high_watermark()
                            } else {
                                p.offset
                            };
                            log.delete_records_before(offset)
                                .map_err(|e| error_codes::for_log(&e))
                        });
                    match outcome {
                        Ok(low_watermark) => base.with_low_watermark(low_watermark),
                        Err(code) => base.with_error_code(code.code()).with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
