//! POST /_query: one question across topics and engines. Every (topic, backend) pair runs
//! concurrently under one timeout; their ranked lists are fused by Reciprocal Rank Fusion. A
//! backend that fails or times out is reported beside the results, not fatal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::fusion::{fuse, Fusion, Ranked};
use crate::routes::vector::{VectorHit, VectorSearch};
use crate::{coverage, ApiError, ApiState};

const BACKENDS: &[&str] = &["search", "vector", "sql"];
const MAX_K: usize = 1000;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const RRF_K: f64 = 60.0;

fn bad(reason: impl Into<String>) -> ApiError {
    ApiError::BadRequest(reason.into())
}

fn strings(body: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("[{name}] entries must be strings, got {i}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => Err(bad(format!(
            "[{name}] must be an array of strings, got {v}"
        ))),
    }
}

/// The outcome of one (topic, backend) call.
struct Outcome {
    topic: String,
    backend: &'static str,
    took_ms: u64,
    result: Result<Vec<VectorHit>, String>,
}

async fn run_search(
    state: &ApiState,
    topic: &str,
    text: &str,
    k: usize,
) -> Result<Vec<VectorHit>, String> {
    let meta = state.broker.meta.state();
    if !meta
        .topics
        .get(topic)
        .is_some_and(|t| t.config().searchable_enabled)
    {
        return Err(format!(
            "topic [{topic}] is not searchable (searchable.enabled is false)"
        ));
    }
    let search = state
        .search
        .clone()
        .ok_or("full-text search is not enabled on this broker")?;
    let body =
        json!({"query": {"multi_match": {"query": text, "type": "cross_fields"}}, "size": k});
    let topics = vec![topic.to_string()];
    let out = tokio::task::spawn_blocking(move || search.search(&topics, &body))
        .await
        .map_err(|e| format!("search task failed: {e}"))?
        .map_err(|e| format!("{}", ApiError::from(e)))?;
    Ok(out["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| {
            Some(VectorHit {
                partition: h["_partition"].as_i64()? as i32,
                offset: h["_offset"].as_i64()?,
                score: h["_score"].as_f64().unwrap_or(0.0),
                timestamp: h["_timestamp"].as_i64().unwrap_or(0),
                key: h["_key"].as_str().map(str::to_string),
                source: h["_source"].clone(),
            })
        })
        .collect())
}

async fn run_vector(
    state: &ApiState,
    topic: &str,
    text: &str,
    k: usize,
) -> Result<Vec<VectorHit>, String> {
    let settings = state
        .broker
        .meta
        .state()
        .topics
        .get(topic)
        .map(|t| t.config().vector)
        .filter(|v| v.enabled)
        .ok_or_else(|| format!("topic [{topic}] has no vector index (vector.enabled is false)"))?;
    let vector = state
        .vector
        .clone()
        .ok_or("vector search is not enabled on this broker")?;
    vector
        .search(
            topic,
            &settings,
            VectorSearch {
                text: Some(text.to_string()),
                k,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ApiError::from(e).to_string())
}

/// POST /_query `{"query", "topics", "backends"?, "k"?, "timeout_ms"?}`
pub(crate) async fn query(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let start = Instant::now();
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        Ok(v) => return Err(bad(format!("request body must be a JSON object, got {v}"))),
        Err(e) => return Err(bad(format!("request body is not valid JSON: {e}"))),
    };
    if let Some(k) = body
        .keys()
        .find(|k| !["query", "topics", "backends", "k", "timeout_ms"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "unknown field [{k}]; expected query, topics, backends, k, timeout_ms"
        )));
    }
    let text = match body.get("query") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(v) => return Err(bad(format!("[query] must be a non-empty string, got {v}"))),
        None => return Err(bad("[query] is required")),
    };
    let topics = strings(&body, "topics")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("[topics] is required"))?;
    let backends =
        strings(&body, "backends")?.unwrap_or_else(|| vec!["search".into(), "vector".into()]);
    if backends.is_empty() {
        return Err(bad("[backends] is empty"));
    }
    let mut chosen: Vec<&'static str> = Vec::new();
    for b in &backends {
        let known = BACKENDS.iter().find(|k| **k == b.as_str()).ok_or_else(|| {
            bad(format!(
                "[backends] entry \"{b}\" is not one of search, vector, sql"
            ))
        })?;
        if !chosen.contains(known) {
            chosen.push(known);
        }
    }
    let k = match body.get("k") {
        None | Some(Value::Null) => 20,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=MAX_K as i64).contains(&n) => n as usize,
            _ => {
                return Err(bad(format!(
                    "[k] must be an integer between 1 and {MAX_K}, got {v}"
                )))
            }
        },
    };
    let timeout = match body.get("timeout_ms") {
        None | Some(Value::Null) => Duration::from_millis(DEFAULT_TIMEOUT_MS),
        Some(v) => match v.as_u64() {
            Some(ms) if (1..=300_000).contains(&ms) => Duration::from_millis(ms),
            _ => {
                return Err(bad(format!(
                    "[timeout_ms] must be between 1 and 300000, got {v}"
                )))
            }
        },
    };
    {
        let meta = state.broker.meta.state();
        if let Some(t) = topics
            .iter()
            .find(|t| !meta.topics.contains_key(t.as_str()))
        {
            return Err(ApiError::NotFound(format!("no such topic [{t}]")));
        }
    }

    let mut calls = Vec::new();
    for topic in &topics {
        for backend in &chosen {
            let (state, topic, text, backend) =
                (state.clone(), topic.clone(), text.clone(), *backend);
            calls.push(async move {
                let t = Instant::now();
                let work = async {
                    match backend {
                        "search" => run_search(&state, &topic, &text, k).await,
                        "vector" => run_vector(&state, &topic, &text, k).await,
                        _ => Err("SQL is not available in this build yet".to_string()),
                    }
                };
                let result = match tokio::time::timeout(timeout, work).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
                };
                Outcome {
                    topic,
                    backend,
                    took_ms: t.elapsed().as_millis() as u64,
                    result,
                }
            });
        }
    }
    let outcomes = futures::future::join_all(calls).await;

    let mut docs: HashMap<(String, i32, i64), VectorHit> = HashMap::new();
    let mut lists = Vec::new();
    let mut list_backend = Vec::new();
    let mut report = Vec::new();
    for o in outcomes {
        match o.result {
            Ok(hits) => {
                let mut entry = json!({"topic": o.topic, "backend": o.backend, "status": "ok", "hits": hits.len(), "took_ms": o.took_ms});
                // Partitions with no replica here are not searched (no fan-out across brokers).
                let (_, missing) = coverage::coverage(&state, std::slice::from_ref(&o.topic));
                if !missing.is_empty() {
                    entry["status"] = json!("partial");
                    entry["partitions_not_searched"] =
                        missing.iter().map(|m| m.partition).collect();
                }
                report.push(entry);
                let mut ranked = Vec::new();
                for h in hits {
                    let id = (o.topic.clone(), h.partition, h.offset);
                    ranked.push((id.clone(), h.score));
                    docs.entry(id).or_insert(h);
                }
                lists.push(Ranked {
                    weight: 1.0,
                    hits: ranked,
                });
                list_backend.push(o.backend);
            }
            Err(e) => {
                let status = if e.starts_with("timed out") {
                    "timeout"
                } else {
                    "error"
                };
                report.push(json!({"topic": o.topic, "backend": o.backend, "status": status, "error": e, "took_ms": o.took_ms}));
            }
        }
    }
    let fused = fuse(&lists, Fusion::Rrf { k: RRF_K });
    let results: Vec<Value> = fused
        .into_iter()
        .take(k)
        .filter_map(|f| {
            let d = docs.get(&f.id)?;
            let mut ranks = Map::new();
            for (i, r) in f.ranks.iter().enumerate() {
                if let Some(r) = r {
                    ranks.insert(list_backend[i].to_string(), json!(r));
                }
            }
            Some(json!({
                "topic": f.id.0, "partition": d.partition, "offset": d.offset, "score": f.score,
                "ranks": ranks, "key": d.key, "timestamp": d.timestamp, "source": d.source,
            }))
        })
        .collect();
    Ok(Json(json!({
        "results": results,
        "backends": report,
        "took_ms": start.elapsed().as_millis() as u64,
    })))
}
