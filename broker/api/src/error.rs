//! The one place where API errors become HTTP statuses, in the SPEC's error shape:
//! `{"error": {"type": "...", "reason": "..."}}`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chronik_meta::MetaError;
use serde_json::json;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    /// The request body or a field in it is malformed.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A capability of the contract that this build does not have yet.
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    /// The request ran past its deadline and was cancelled.
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "not_implemented"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_type();
        let body = json!({"error": {"type": kind, "reason": self.to_string()}});
        (status, Json(body)).into_response()
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::UnknownTopic(_) | MetaError::UnknownBroker(_) => {
                ApiError::NotFound(e.to_string())
            }
            MetaError::StalePartitionState(_)
            | MetaError::CannotDrain(_)
            | MetaError::NoReassignmentInProgress(_) => ApiError::Conflict(e.to_string()),
            MetaError::TopicAlreadyExists(_) | MetaError::AlreadyMember(_) => {
                ApiError::Conflict(e.to_string())
            }
            MetaError::MembershipUnsupported(_) => ApiError::NotImplemented(e.to_string()),
            MetaError::Storage(_) => ApiError::Internal(e.to_string()),
            MetaError::ProducerIdsExhausted(_) | MetaError::Unavailable(_) => {
                ApiError::Unavailable(e.to_string())
            }
            MetaError::InvalidTopicName { .. }
            | MetaError::InvalidPartitions(_)
            | MetaError::InvalidReplicationFactor(_)
            | MetaError::InvalidReplicaAssignment(_)
            | MetaError::InvalidConfig { .. } => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<crate::SearchFailure> for ApiError {
    fn from(e: crate::SearchFailure) -> Self {
        match e {
            crate::SearchFailure::BadRequest(m) => ApiError::BadRequest(m),
            crate::SearchFailure::NotFound(m) => ApiError::NotFound(m),
            crate::SearchFailure::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<crate::VectorFailure> for ApiError {
    fn from(e: crate::VectorFailure) -> Self {
        match e {
            crate::VectorFailure::BadRequest(m) => ApiError::BadRequest(m),
            crate::VectorFailure::NotFound(m) => ApiError::NotFound(m),
            crate::VectorFailure::Unavailable(m) => ApiError::Unavailable(m),
            crate::VectorFailure::Internal(m) => ApiError::Internal(m),
        }
    }
}

/// Malformed JSON or a field of the wrong shape is a 400 whose reason says what is wrong
/// (axum's message names the field and position).
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

/// Bad SQL is the client's (DataFusion's message passes through); an unknown table is 404.
impl From<crate::SqlFailure> for ApiError {
    fn from(f: crate::SqlFailure) -> Self {
        use crate::SqlFailure;
        match f {
            SqlFailure::BadQuery(reason) => ApiError::BadRequest(reason),
            SqlFailure::UnknownTable(table) => {
                ApiError::NotFound(format!("table '{table}' not found"))
            }
            SqlFailure::Timeout(ms) => ApiError::Timeout(format!(
                "query exceeded its timeout of {ms} ms and was cancelled"
            )),
            SqlFailure::NotHosted(reason) => ApiError::NotImplemented(reason),
            SqlFailure::Internal(reason) => ApiError::Internal(reason),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}
