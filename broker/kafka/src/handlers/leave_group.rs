//! LeaveGroup: members leave (v3+: several at once, also by group.instance.id alone, which is
//! how an admin removes static members); the group rebalances without them.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::str_bytes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id
                        .as_ref()
                        .map(|i| i.to_string())
                        .filter(|i| !i.is_empty()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let outcome = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        broker.groups.leave(&group_id, &members).await
    };
    match outcome {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(results) if version < 3 => {
            // One member, so its outcome is the response's.
            let code = results.first().copied().flatten().map_or(0, |e| e.code());
            LeaveGroupResponse::default().with_error_code(code)
        }
        Ok(results) => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|((member_id, instance_id), e)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance_id.map(str_bytes))
                        .with_error_code(e.map_or(0, |e| e.code()))
                })
                .collect(),
        ),
    }
}
