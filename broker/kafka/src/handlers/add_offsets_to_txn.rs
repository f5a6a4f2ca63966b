//! AddOffsetsToTxn: a transactional producer will commit a group's offsets in its transaction
//! (send_offsets_to_transaction), so the group's `__consumer_offsets` partition joins the
//! transaction and gets its marker. The offsets themselves come with TxnOffsetCommit.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::coordinator::OFFSETS_TOPIC;
use crate::error_codes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let code = match add(broker, &request, version).await {
        Ok(()) => 0,
        Err(e) => e.code(),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

async fn add(
    broker: &Arc<Broker>,
    request: &AddOffsetsToTxnRequest,
    version: i16,
) -> Result<(), ResponseError> {
    if request.group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    broker.groups.start().await.map_err(|e| {
        tracing::warn!(error = %e, "group coordinator not available");
        error_codes::for_coordinator(&e)
    })?;
    let partition = broker.groups.offsets_partition(&request.group_id);
    broker
        .transactions
        .add_partitions(
            broker,
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            vec![(OFFSETS_TOPIC.to_string(), partition)],
            error_codes::fenced_code(version, 2),
        )
        .await
}
