//! DescribeTransactions: the coordinator's view of transactional ids (state, producer id and
//! epoch, timeout, start time, partitions). An id this broker does not know is
//! TRANSACTIONAL_ID_NOT_FOUND; one it does not coordinate, NOT_COORDINATOR.

use std::sync::Arc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::str_bytes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let base = TransactionState::default().with_transactional_id(id.clone());
        let state = match broker.transactions.describe(broker, &id).await {
            Ok(m) => {
                let mut topics: Vec<TopicData> = Vec::new();
                for (topic, partition) in &m.partitions {
                    match topics.last_mut() {
                        Some(t) if t.topic.0.as_str() == topic.as_str() => {
                            t.partitions.push(*partition)
                        }
                        _ => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(str_bytes(topic.clone())))
                                .with_partitions(vec![*partition]),
                        ),
                    }
                }
                base.with_transaction_state(str_bytes(m.state.name()))
                    .with_transaction_timeout_ms(m.timeout_ms)
                    .with_transaction_start_time_ms(m.start_timestamp)
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.producer_epoch)
                    .with_topics(topics)
            }
            Err(e) => base
                .with_error_code(e.code())
                .with_transaction_state(str_bytes(""))
                .with_transaction_start_time_ms(-1)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        };
        states.push(state);
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
