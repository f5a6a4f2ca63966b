//! The ApiVersions answer. The list of APIs comes from the broker's handler registry, so what is
//! advertised is exactly what is served.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// One API the broker serves, with the versions it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

impl SupportedApi {
    pub fn supports(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// Build the ApiVersions response body. `error_code` is UNSUPPORTED_VERSION when the client
/// asked with a version we do not speak; the list is still included so it can retry.
pub fn api_versions_response(apis: &[SupportedApi], error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(
            apis.iter()
                .map(|api| {
                    ApiVersion::default()
                        .with_api_key(api.key as i16)
                        .with_min_version(api.min)
                        .with_max_version(api.max)
                })
                .collect(),
        )
        .with_finalized_features_epoch(-1)
}
