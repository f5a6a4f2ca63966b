//! ListTransactions: the transactional ids this broker coordinates, filtered by state names
//! (unknown names are echoed back in `unknown_state_filters`, as Kafka does), producer ids,
//! and (v1, KIP-994) transactions running longer than `duration_filter` ms.

use std::sync::Arc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId};

use super::str_bytes;
use crate::coordinator::transaction::TxnState;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let all = match broker.transactions.list(broker).await {
        Ok(all) => all,
        Err(e) => return ListTransactionsResponse::default().with_error_code(e.code()),
    };
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match TxnState::ALL.iter().find(|s| s.name() == name.as_str()) {
            Some(s) => states.push(*s),
            None => unknown.push(name.clone()),
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let min_duration = if version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let listed = all
        .into_iter()
        .filter(|m| request.state_filters.is_empty() || states.contains(&m.state))
        .filter(|m| {
            request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(m.producer_id))
        })
        .filter(|m| {
            min_duration < 0
                || (m.start_timestamp >= 0 && now.saturating_sub(m.start_timestamp) > min_duration)
        })
        .map(|m| {
            TransactionState::default()
                .with_transactional_id(kafka_protocol::messages::TransactionalId(str_bytes(
                    m.transactional_id,
                )))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str_bytes(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
