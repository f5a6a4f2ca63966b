//! ListGroups: every group this broker coordinates, filtered by state (v4+, case-insensitive)
//! and by type (v5+: "classic" or "consumer", KIP-848).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::Broker;

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
    ListGroupsResponse::default().with_groups(
        groups
            .into_iter()
            .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
            .filter(|g| types.is_empty() || types.iter().any(|t| t == g.kind.name()))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(g.id)))
                    .with_protocol_type(str_bytes(g.protocol_type))
                    .with_group_state(str_bytes(g.state))
                    .with_group_type(str_bytes(g.kind.name()))
            })
            .collect(),
    )
}
