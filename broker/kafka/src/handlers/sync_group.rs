//! SyncGroup: the leader hands in the assignment, every member receives its share. Deferred:
//! followers wait until the leader's assignment is stored.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use crate::coordinator::group::{SyncRequest, SyncResult};
use crate::registry::{ready, Reply};
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: SyncGroupRequest,
    _version: i16,
) -> Reply {
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return ready(ResponseKind::SyncGroup(response(SyncResult::failed(
            ResponseError::InvalidGroupId,
        ))));
    }
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        instance_id: request
            .group_instance_id
            .map(|i| i.to_string())
            .filter(|i| !i.is_empty()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.map(|s| s.to_string()),
        protocol_name: request.protocol_name.map(|s| s.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let pending = broker.groups.sync(&group_id, sync).await;
    Box::pin(async move { Some(ResponseKind::SyncGroup(response(pending.await))) })
}

fn response(r: SyncResult) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(r.protocol_name.map(str_bytes))
        .with_assignment(r.assignment)
}
