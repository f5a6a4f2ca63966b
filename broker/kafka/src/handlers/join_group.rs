//! JoinGroup: enter (or re-enter) a group's rebalance. Deferred: the answer comes when the
//! group's join phase completes, which may take the whole rebalance timeout, and meanwhile the
//! connection keeps serving the client's other requests (responses still go out in order).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};

use super::str_bytes;
use crate::coordinator::group::{JoinRequest, JoinResult};
use crate::registry::{ready, ClientInfo, Reply};
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: JoinGroupRequest,
    version: i16,
    client: &ClientInfo,
) -> Reply {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    if group_id.is_empty() {
        return ready(ResponseKind::JoinGroup(response(
            JoinResult::failed(ResponseError::InvalidGroupId, &member_id),
            version,
        )));
    }
    let instance_id = request
        .group_instance_id
        .map(|i| i.to_string())
        .filter(|i| !i.is_empty());
    // Kafka prefixes generated ids with the client id (static members: the instance id), so
    // members sort by client id, which client-side assignors' tie-breaks rely on.
    let prefix = instance_id.as_deref().unwrap_or(&client.client_id);
    let join = JoinRequest {
        member_id,
        instance_id: instance_id.clone(),
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout; Kafka uses the session timeout for it.
        rebalance_timeout_ms: if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        fresh_member_id: format!("{prefix}-{}", uuid::Uuid::new_v4()),
    };
    let pending = broker.groups.join(&group_id, join).await;
    Box::pin(async move { Some(ResponseKind::JoinGroup(response(pending.await, version))) })
}

fn response(r: JoinResult, version: i16) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable on the wire.
    let protocol_name = match r.protocol_name {
        None if version < 7 => Some(str_bytes("")),
        other => other.map(str_bytes),
    };
    JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(m.instance_id.map(str_bytes))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
