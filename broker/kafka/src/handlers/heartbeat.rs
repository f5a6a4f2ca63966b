//! Heartbeat: keeps a member's session alive and tells it when a rebalance has started
//! (REBALANCE_IN_PROGRESS), so it rejoins.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let error = if group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        let instance_id = request
            .group_instance_id
            .map(|i| i.to_string())
            .filter(|i| !i.is_empty());
        broker
            .groups
            .heartbeat(
                &group_id,
                &request.member_id,
                instance_id.as_deref(),
                request.generation_id,
            )
            .await
    };
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}
