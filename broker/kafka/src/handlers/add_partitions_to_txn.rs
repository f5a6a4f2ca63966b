//! AddPartitionsToTxn (v0–v3, as producers send it): the partitions a transactional producer is
//! about to write join its open transaction, so that its commit or abort reaches them.
//!
//! Every partition is checked first; if any is unknown, none is added: that one answers
//! UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as Kafka does. v4+
//! (batched, broker to broker for KIP-890 verification) is not served.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let state = broker.meta.state();
    // Per topic, per partition (request order): whether it exists.
    let exists: Vec<Vec<bool>> = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            let meta = state.topics.get(topic.name.0.as_str());
            topic
                .partitions
                .iter()
                .map(|&p| meta.is_some_and(|m| p >= 0 && (p as usize) < m.partitions.len()))
                .collect()
        })
        .collect();
    let outcome = if exists.iter().flatten().all(|e| *e) {
        let partitions = request
            .v3_and_below_topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
            .collect();
        broker
            .transactions
            .add_partitions(
                broker,
                &request.v3_and_below_transactional_id,
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                partitions,
                error_codes::fenced_code(version, 2),
            )
            .await
    } else {
        Err(ResponseError::OperationNotAttempted)
    };
    let code_for = |exists: bool| match (&outcome, exists) {
        (Ok(()), _) => 0,
        (Err(_), false) => ResponseError::UnknownTopicOrPartition.code(),
        (Err(e), true) => e.code(),
    };
    let topics = request
        .v3_and_below_topics
        .iter()
        .zip(&exists)
        .map(|(topic, exists)| {
            let results = topic
                .partitions
                .iter()
                .zip(exists)
                .map(|(&p, &e)| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code_for(e))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}
