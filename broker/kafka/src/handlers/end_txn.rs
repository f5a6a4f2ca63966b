//! EndTxn: commit or abort the producer's open transaction. Answered once the decision is
//! durable in `__transaction_state`; the COMMIT/ABORT markers are normally written to every
//! partition of the transaction before that (see `coordinator::transaction_coordinator`).

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    let result = broker
        .transactions
        .end_txn(
            broker,
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
            error_codes::fenced_code(version, 2),
        )
        .await;
    EndTxnResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}
