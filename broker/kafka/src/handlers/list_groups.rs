//! ListGroups: every group this broker coordinates, filtered by state (v4+, case-insensitive)
//! and by type (v5+: all groups here are "classic").

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::Broker;

/// The only group type this broker runs (KIP-848 "consumer" groups are not served).
const GROUP_TYPE: &str = "classic";

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: ListGroupsRequest,
    _version: i16,
) -> ListGroupsResponse {
    let groups = match broker.groups.list().await {
        Ok(g) => g,
        Err(e) => return ListGroupsResponse::default().with_error_code(e.code()),
    };
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    if !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE) {
        return ListGroupsResponse::default();
    }
    ListGroupsResponse::default().with_groups(
        groups
            .into_iter()
            .filter(|(_, _, state)| {
                states.is_empty() || states.contains(&state.name().to_lowercase())
            })
            .map(|(id, protocol_type, state)| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(id)))
                    .with_protocol_type(str_bytes(protocol_type))
                    .with_group_state(str_bytes(state.name()))
                    .with_group_type(str_bytes(GROUP_TYPE))
            })
            .collect(),
    )
}
