//! SQL over columnar topics: POST /_sql, GET /_sql/tables, GET /_sql/tables/{table}.
//!
//! The engine sits behind [`SqlService`] so this crate does not build DataFusion; the server
//! wires chronik-sql in. Without an engine the routes answer 501.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{ApiError, ApiState};

/// Answer formats of POST /_sql.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqlFormat {
    Json,
    Ndjson,
    Arrow,
}

#[derive(Debug, Clone)]
pub struct SqlRequest {
    pub query: String,
    /// Rows returned at most (the answer says when it was truncated).
    pub limit: Option<usize>,
    pub timeout_ms: Option<u64>,
    pub format: SqlFormat,
}

/// A rendered answer: the body in the requested format.
#[derive(Debug)]
pub struct SqlAnswer {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SqlColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SqlTable {
    pub name: String,
    pub topic: String,
    /// `all` (hot and cold), `hot`, `cold` or `latest`.
    pub kind: String,
    pub columns: Vec<SqlColumn>,
}

/// Why a query failed; mapped to HTTP statuses in `error.rs`.
#[derive(Debug, Clone)]
pub enum SqlFailure {
    /// Does not parse, plan or run; the reason is the engine's message.
    BadQuery(String),
    UnknownTable(String),
    /// Cancelled after its timeout (milliseconds).
    Timeout(u64),
    /// Reads partitions this broker holds no replica of (no fan-out across brokers yet).
    NotHosted(String),
    Internal(String),
}

/// The SQL engine as the API sees it.
#[async_trait]
pub trait SqlService: Send + Sync + std::fmt::Debug {
    async fn query(&self, request: SqlRequest) -> Result<SqlAnswer, SqlFailure>;
    fn tables(&self) -> Vec<SqlTable>;
    /// The engine's Prometheus metrics, rendered by /metrics.
    fn metric_families(&self) -> Vec<prometheus::proto::MetricFamily> {
        Vec::new()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlBody {
    query: String,
    limit: Option<usize>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SqlParams {
    format: Option<SqlFormat>,
}

fn engine(state: &ApiState) -> Result<&Arc<dyn SqlService>, ApiError> {
    state
        .sql
        .as_ref()
        .ok_or_else(|| ApiError::NotImplemented("SQL is not enabled on this broker".into()))
}

pub(crate) async fn query(
    State(state): State<ApiState>,
    params: Result<Query<SqlParams>, QueryRejection>,
    body: Result<Json<SqlBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let Json(body) = body?;
    if body.query.trim().is_empty() {
        return Err(ApiError::BadRequest("field `query` is empty".into()));
    }
    if body.timeout_ms == Some(0) {
        return Err(ApiError::BadRequest(
            "field `timeout_ms` must be positive".into(),
        ));
    }
    let answer = engine(&state)?
        .query(SqlRequest {
            query: body.query,
            limit: body.limit,
            timeout_ms: body.timeout_ms,
            format: params.format.unwrap_or(SqlFormat::Json),
        })
        .await?;
    Ok(([(CONTENT_TYPE, answer.content_type)], answer.body).into_response())
}

pub(crate) async fn tables(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let tables = engine(&state)?.tables();
    Ok(Json(json!({ "tables": tables })))
}

pub(crate) async fn table(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SqlTable>, ApiError> {
    engine(&state)?
        .tables()
        .into_iter()
        .find(|t| t.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("table '{name}' not found")))
}
