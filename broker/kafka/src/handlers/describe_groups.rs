//! DescribeGroups: state, protocol and members of each group. Member metadata and assignments
//! are only filled for a Stable group, as in Kafka; an unknown group is reported as Dead.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::str_bytes;
use crate::Broker;

/// Kafka's "authorized operations not requested" marker.
const NO_AUTHORIZED_OPERATIONS: i32 = i32::MIN;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: DescribeGroupsRequest,
    _version: i16,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let base = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_authorized_operations(NO_AUTHORIZED_OPERATIONS);
        let described = if group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else {
            broker.groups.describe(&group_id).await
        };
        groups.push(match described {
            Err(e) => base
                .with_error_code(e.code())
                .with_group_state(str_bytes("Dead")),
            Ok(d) => base
                .with_group_state(str_bytes(d.state.name()))
                .with_protocol_type(str_bytes(d.protocol_type))
                .with_protocol_data(str_bytes(d.protocol_name))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(m.member_id))
                                .with_group_instance_id(m.instance_id.map(str_bytes))
                                .with_client_id(str_bytes(m.client_id))
                                .with_client_host(str_bytes(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
