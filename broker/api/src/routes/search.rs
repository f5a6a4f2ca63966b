//! Full-text search over HTTP in Elasticsearch's shapes: POST /_search, POST /{topics}/_search
//! (comma lists and `*` wildcards), POST /{topics}/_count, GET /{topic}/_mapping and
//! GET /_cat/indices.
//!
//! The search engine itself sits behind [`SearchBackend`], which the composition root
//! implements over chronik-search, so this crate never links Tantivy. This module resolves
//! topic names against metadata (only topics with searchable.enabled are indexes) and runs
//! the blocking search off the async workers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{coverage, ApiError, ApiState};

/// Why a search failed, in terms the HTTP layer maps to statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchFailure {
    /// The request is malformed or unsupported; the reason says what.
    BadRequest(String),
    NotFound(String),
    Internal(String),
}

/// One search index (a searchable topic) as `_cat/indices` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchIndexStats {
    pub topic: String,
    pub partitions: usize,
    pub docs: u64,
    pub deleted_docs: u64,
    pub size_bytes: u64,
}

/// The search engine as the API sees it. Calls block (CPU, mmap reads); the routes run them
/// on the blocking pool.
pub trait SearchBackend: Send + Sync + std::fmt::Debug {
    /// Run an Elasticsearch search request over `topics`; answers the response body.
    fn search(&self, topics: &[String], body: &Value) -> Result<Value, SearchFailure>;
    /// `{"count": n, "_shards": {...}}` for the request's query.
    fn count(&self, topics: &[String], body: &Value) -> Result<Value, SearchFailure>;
    /// `{topic: {"mappings": {...}}}`.
    fn mapping(&self, topic: &str) -> Result<Value, SearchFailure>;
    /// Every index this broker holds.
    fn indices(&self) -> Vec<SearchIndexStats>;
}

fn backend(state: &ApiState) -> Result<Arc<dyn SearchBackend>, ApiError> {
    state.search.clone().ok_or_else(|| {
        ApiError::NotImplemented("full-text search is not enabled on this broker".into())
    })
}

/// Parse a JSON body; an empty body is `null` (match_all).
fn body_json(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (head.len()..=text.len())
                    .filter(|i| text.is_char_boundary(*i))
                    .any(|i| glob(tail, &text[i..]))
        }
    }
}

/// Resolve index expressions (names, `*` patterns, `_all`) to searchable topics. A named topic
/// that does not exist is a 404; one that exists without searchable.enabled is a 400.
fn resolve(state: &ApiState, expressions: &[String]) -> Result<Vec<String>, ApiError> {
    let meta = state.broker.meta.state();
    let searchable: Vec<&String> = meta
        .topics
        .values()
        .filter(|t| t.config().searchable_enabled)
        .map(|t| &t.name)
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut push = |t: &String| {
        if !out.contains(t) {
            out.push(t.clone());
        }
    };
    if expressions.is_empty() {
        searchable.into_iter().for_each(&mut push);
        return Ok(out);
    }
    for expr in expressions {
        let expr = expr.trim();
        if expr.is_empty() {
            continue;
        }
        if expr == "_all" || expr.contains('*') {
            let pattern = if expr == "_all" { "*" } else { expr };
            searchable
                .iter()
                .filter(|t| glob(pattern, t))
                .for_each(|t| push(t));
            continue;
        }
        match meta.topics.get(expr) {
            None => return Err(ApiError::NotFound(format!("no such index [{expr}]"))),
            Some(t) if !t.config().searchable_enabled => {
                return Err(ApiError::BadRequest(format!(
                    "topic [{expr}] is not searchable; set searchable.enabled=true on it"
                )))
            }
            Some(t) => push(&t.name),
        }
    }
    Ok(out)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// The `index` of a POST /_search body: `"t1,t2"` or `["t1", "t2"]`.
fn body_indexes(body: &Value) -> Result<Vec<String>, ApiError> {
    match body.get("index") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(split_list(s)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::BadRequest(format!("[index] entries must be strings, got {i}"))
                })
            })
            .collect(),
        Some(other) => Err(ApiError::BadRequest(format!(
            "[index] must be a string or an array, got {other}"
        ))),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SearchFailure> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("search task failed: {e}")))?
        .map_err(ApiError::from)
}

async fn run_search(
    state: ApiState,
    expressions: Vec<String>,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let backend = backend(&state)?;
    let topics = resolve(&state, &expressions)?;
    let shards = coverage::shards(&state, &topics);
    let mut out = blocking(move || backend.search(&topics, &body)).await?;
    out["_shards"] = shards;
    Ok(Json(out))
}

/// POST (or GET) /_search
pub(crate) async fn search_all(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = body_json(&body)?;
    let indexes = body_indexes(&body)?;
    run_search(state, indexes, body).await
}

/// POST (or GET) /{topics}/_search
pub(crate) async fn search_topics(
    State(state): State<ApiState>,
    Path(topics): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = body_json(&body)?;
    run_search(state, split_list(&topics), body).await
}

/// POST (or GET) /{topics}/_count
pub(crate) async fn count(
    State(state): State<ApiState>,
    Path(topics): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = body_json(&body)?;
    let backend = backend(&state)?;
    let topics = resolve(&state, &split_list(&topics))?;
    let shards = coverage::shards(&state, &topics);
    let mut out = blocking(move || backend.count(&topics, &body)).await?;
    out["_shards"] = shards;
    Ok(Json(out))
}

/// GET /{topic}/_mapping
pub(crate) async fn mapping(
    State(state): State<ApiState>,
    Path(topics): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let backend = backend(&state)?;
    let topics = resolve(&state, &split_list(&topics))?;
    let out = blocking(move || {
        let mut all = serde_json::Map::new();
        for t in &topics {
            if let Value::Object(m) = backend.mapping(t)? {
                all.extend(m);
            }
        }
        Ok(Value::Object(all))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CatParams {
    format: Option<String>,
    v: Option<String>,
}

/// GET /_cat/indices: a text table like Elasticsearch's, or JSON with `?format=json`.
pub(crate) async fn cat_indices(
    State(state): State<ApiState>,
    Query(params): Query<CatParams>,
) -> Result<Response, ApiError> {
    let backend = backend(&state)?;
    let searchable = resolve(&state, &[])?;
    let stats = tokio::task::spawn_blocking(move || backend.indices())
        .await
        .map_err(|e| ApiError::Internal(format!("search task failed: {e}")))?;
    // Every searchable topic is listed, also before its first event is indexed here.
    let rows: Vec<SearchIndexStats> = searchable
        .iter()
        .map(|t| {
            stats
                .iter()
                .find(|s| &s.topic == t)
                .cloned()
                .unwrap_or(SearchIndexStats {
                    topic: t.clone(),
                    partitions: 0,
                    docs: 0,
                    deleted_docs: 0,
                    size_bytes: 0,
                })
        })
        .collect();
    match params.format.as_deref() {
        Some("json") => Ok(Json(Value::Array(
            rows.iter()
                .map(|r| {
                    json!({
                        "health": "green", "status": "open", "index": r.topic,
                        "pri": r.partitions.to_string(), "rep": "0",
                        "docs.count": r.docs.to_string(), "docs.deleted": r.deleted_docs.to_string(),
                        "store.size": r.size_bytes.to_string(),
                    })
                })
                .collect(),
        ))
        .into_response()),
        None | Some("txt" | "text") => {
            let mut text = String::new();
            if params.v.is_some() {
                text.push_str("health status index pri rep docs.count docs.deleted store.size\n");
            }
            for r in &rows {
                text.push_str(&format!(
                    "green open {} {} 0 {} {} {}b\n",
                    r.topic, r.partitions, r.docs, r.deleted_docs, r.size_bytes
                ));
            }
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        Some(other) => Err(ApiError::BadRequest(format!("[format] must be json or txt, got \"{other}\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_patterns() {
        assert!(glob("log*", "logs-2024"));
        assert!(glob("*-2024", "logs-2024"));
        assert!(!glob("log*", "blog"));
        assert_eq!(split_list(" a, b ,,c"), vec!["a", "b", "c"]);
        assert_eq!(
            body_indexes(&json!({"index": "a,b"})).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(body_indexes(&json!({"index": ["a"]})).unwrap(), vec!["a"]);
        assert!(body_indexes(&json!({"index": 3})).is_err());
    }
}
