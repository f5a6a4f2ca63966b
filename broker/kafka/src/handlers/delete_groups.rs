//! DeleteGroups: remove empty groups with their offsets (tombstones in `__consumer_offsets`).
//! A group with members is NON_EMPTY_GROUP; an unknown one GROUP_ID_NOT_FOUND.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let outcome = if group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else {
            broker.groups.delete_group(&group_id).await
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(outcome.err().map_or(0, |e| e.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
