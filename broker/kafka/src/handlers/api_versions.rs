//! ApiVersions: the versions of every API this broker serves, taken from the registry.

use std::sync::Arc;

use chronik_protocol::api_versions_response;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::registry::supported_apis;
use crate::Broker;

pub(crate) async fn handle(
    _broker: &Arc<Broker>,
    _request: ApiVersionsRequest,
    _version: i16,
) -> ApiVersionsResponse {
    api_versions_response(supported_apis(), 0)
}
