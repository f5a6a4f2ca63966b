//! Vector search over HTTP: POST /_vector/{topic}/search, POST /_vector/{topic}/hybrid,
//! GET /_vector/{topic}/stats, and POST /v1/embeddings in OpenAI's wire format.
//!
//! Embedding and the HNSW indexes sit behind [`VectorBackend`], which the composition root
//! implements over chronik-vector, so this crate never links the model. Hybrid search asks
//! the full-text backend for BM25 hits and the vector backend for nearest neighbours and fuses
//! the two lists here ([`crate::fusion`]), so the two engines stay independent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::fusion::{fuse, Fusion, Ranked};
use crate::routes::search::SearchFailure;
use crate::{coverage, ApiError, ApiState};

/// Why a vector call failed, in terms the HTTP layer maps to statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorFailure {
    BadRequest(String),
    NotFound(String),
    /// Embedding is not possible now (model missing, provider down).
    Unavailable(String),
    Internal(String),
}

/// A nearest-neighbour search of one topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VectorSearch {
    pub text: Option<String>,
    pub vector: Option<Vec<f32>>,
    pub k: usize,
    pub ef: Option<usize>,
    pub partitions: Option<Vec<i32>>,
    /// Inclusive bounds on the event timestamp, epoch milliseconds.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// One hit; `score` is a similarity (larger is better).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub partition: i32,
    pub offset: i64,
    pub score: f64,
    pub timestamp: i64,
    pub key: Option<String>,
    /// The event's value: its JSON, or a string when it is not JSON.
    pub source: Value,
}

/// Vectors for texts, from the server's embedding model.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read, when the provider can tell.
    pub tokens: Option<usize>,
}

/// The vector engine as the API sees it.
#[async_trait]
pub trait VectorBackend: Send + Sync + std::fmt::Debug {
    /// `settings` are the topic's vector.* keys, as the route found them in metadata.
    async fn search(
        &self,
        topic: &str,
        settings: &chronik_meta::VectorSettings,
        q: VectorSearch,
    ) -> Result<Vec<VectorHit>, VectorFailure>;
    async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, VectorFailure>;
    /// The stats document of a vector topic (GET /_vector/{topic}/stats).
    fn stats(&self, topic: &str) -> Result<Value, VectorFailure>;
}

fn backend(state: &ApiState) -> Result<Arc<dyn VectorBackend>, ApiError> {
    state.vector.clone().ok_or_else(|| {
        ApiError::NotImplemented("vector search is not enabled on this broker".into())
    })
}

/// The topic must exist and have vector.enabled.
fn vector_topic(state: &ApiState, topic: &str) -> Result<chronik_meta::TopicConfig, ApiError> {
    let meta = state.broker.meta.state();
    let t = meta
        .topics
        .get(topic)
        .ok_or_else(|| ApiError::NotFound(format!("no such topic [{topic}]")))?;
    let config = t.config();
    if !config.vector.enabled {
        return Err(ApiError::NotFound(format!(
            "topic [{topic}] has no vector index; set vector.enabled=true on it"
        )));
    }
    Ok(config)
}

fn body_object(bytes: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::BadRequest(format!(
            "request body must be a JSON object, got {other}"
        ))),
        Err(e) => Err(ApiError::BadRequest(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

fn bad(reason: impl Into<String>) -> ApiError {
    ApiError::BadRequest(reason.into())
}

fn reject_unknown(body: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "unknown field [{k}]; expected one of {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn positive(
    body: &Map<String, Value>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
            _ => Err(bad(format!(
                "[{name}] must be an integer between 1 and {max}, got {v}"
            ))),
        },
    }
}

fn number(body: &Map<String, Value>, name: &str, default: f64) -> Result<f64, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| bad(format!("[{name}] must be a number, got {v}"))),
    }
}

/// Largest k and ef accepted.
const MAX_K: usize = 10_000;
const MAX_EF: usize = 10_000;

/// `{"partitions": [0, 1], "timestamp": {"gte": ms, "lte": ms, "gt": ms, "lt": ms}}`.
fn parse_filter(v: Option<&Value>, q: &mut VectorSearch) -> Result<(), ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let f = v
        .as_object()
        .ok_or_else(|| bad(format!("[filter] must be an object, got {v}")))?;
    reject_unknown(f, &["partitions", "timestamp"]).map_err(|e| bad(format!("[filter] {e}")))?;
    if let Some(p) = f.get("partitions") {
        let list = p.as_array().ok_or_else(|| {
            bad(format!(
                "[filter.partitions] must be an array of integers, got {p}"
            ))
        })?;
        let parts = list
            .iter()
            .map(|x| {
                x.as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        bad(format!(
                            "[filter.partitions] entries must be partition numbers, got {x}"
                        ))
                    })
            })
            .collect::<Result<Vec<i32>, ApiError>>()?;
        q.partitions = Some(parts);
    }
    if let Some(t) = f.get("timestamp") {
        let r = t.as_object().ok_or_else(|| {
            bad(format!(
                "[filter.timestamp] must be an object with gte/gt/lte/lt, got {t}"
            ))
        })?;
        reject_unknown(r, &["gte", "gt", "lte", "lt"])
            .map_err(|e| bad(format!("[filter.timestamp] {e}")))?;
        let ms = |name: &str| -> Result<Option<i64>, ApiError> {
            match r.get(name) {
                None => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                    bad(format!(
                        "[filter.timestamp.{name}] must be epoch milliseconds, got {v}"
                    ))
                }),
            }
        };
        let from = [ms("gte")?, ms("gt")?.map(|x| x.saturating_add(1))]
            .into_iter()
            .flatten()
            .max();
        let to = [ms("lte")?, ms("lt")?.map(|x| x.saturating_sub(1))]
            .into_iter()
            .flatten()
            .min();
        q.from_ms = from;
        q.to_ms = to;
    }
    Ok(())
}

fn parse_vector(v: &Value) -> Result<Vec<f32>, ApiError> {
    let list = v
        .as_array()
        .ok_or_else(|| bad(format!("[vector] must be an array of numbers, got {v}")))?;
    if list.is_empty() {
        return Err(bad("[vector] is empty"));
    }
    list.iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .filter(|f| f.is_finite())
                .ok_or_else(|| bad(format!("[vector] entries must be finite numbers, got {x}")))
        })
        .collect()
}

fn parse_text(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get("query") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(bad(format!("[query] must be a string, got {v}"))),
    }
}

fn hit_json(h: &VectorHit) -> Value {
    json!({
        "partition": h.partition,
        "offset": h.offset,
        "score": h.score,
        "key": h.key,
        "timestamp": h.timestamp,
        "source": h.source,
    })
}

fn took(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// POST /_vector/{topic}/search
pub(crate) async fn search(
    State(state): State<ApiState>,
    Path(topic): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let start = Instant::now();
    let backend = backend(&state)?;
    let config = vector_topic(&state, &topic)?;
    let body = body_object(&body)?;
    reject_unknown(&body, &["query", "vector", "k", "filter", "ef"])?;
    let mut q = VectorSearch {
        text: parse_text(&body)?,
        vector: body
            .get("vector")
            .filter(|v| !v.is_null())
            .map(parse_vector)
            .transpose()?,
        k: positive(&body, "k", 10, MAX_K)?,
        ef: body
            .get("ef")
            .is_some()
            .then(|| positive(&body, "ef", 0, MAX_EF))
            .transpose()?,
        ..Default::default()
    };
    match (&q.text, &q.vector) {
        (Some(_), Some(_)) => return Err(bad("give either [query] (text) or [vector], not both")),
        (None, None) => return Err(bad("give [query] (text) or [vector]")),
        _ => {}
    }
    parse_filter(body.get("filter"), &mut q)?;
    let hits = backend.search(&topic, &config.vector, q).await?;
    Ok(Json(json!({
        "results": hits.iter().map(hit_json).collect::<Vec<_>>(),
        "_shards": coverage::shards(&state, std::slice::from_ref(&topic)),
        "took_ms": took(start),
    })))
}

/// POST /_vector/{topic}/hybrid: BM25 and vector hits fused by RRF (default) or linearly.
pub(crate) async fn hybrid(
    State(state): State<ApiState>,
    Path(topic): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let start = Instant::now();
    let vectors = backend(&state)?;
    let config = vector_topic(&state, &topic)?;
    if !config.searchable_enabled {
        return Err(bad(format!(
            "hybrid search of [{topic}] needs its full-text index; set searchable.enabled=true on it"
        )));
    }
    let search = state.search.clone().ok_or_else(|| {
        ApiError::NotImplemented("full-text search is not enabled on this broker".into())
    })?;
    let body = body_object(&body)?;
    reject_unknown(
        &body,
        &[
            "query",
            "k",
            "filter",
            "ef",
            "vector_weight",
            "rrf_k",
            "fusion",
            "candidates",
            "fields",
        ],
    )?;
    let text = parse_text(&body)?.ok_or_else(|| bad("[query] (text) is required"))?;
    let k = positive(&body, "k", 10, MAX_K)?;
    let candidates = positive(&body, "candidates", k.max(100), MAX_K)?.max(k);
    let vector_weight = number(&body, "vector_weight", 0.5)?;
    if !(0.0..=1.0).contains(&vector_weight) {
        return Err(bad(format!(
            "[vector_weight] must be between 0 and 1, got {vector_weight}"
        )));
    }
    let rrf_k = number(&body, "rrf_k", 60.0)?;
    if !(rrf_k >= 0.0 && rrf_k.is_finite()) {
        return Err(bad(format!(
            "[rrf_k] must be a non-negative number, got {rrf_k}"
        )));
    }
    let fusion = match body.get("fusion") {
        None | Some(Value::Null) => Fusion::Rrf { k: rrf_k },
        Some(Value::String(s)) if s == "rrf" => Fusion::Rrf { k: rrf_k },
        Some(Value::String(s)) if s == "linear" => Fusion::Linear,
        Some(v) => {
            return Err(bad(format!(
                "[fusion] must be \"rrf\" or \"linear\", got {v}"
            )))
        }
    };
    let mut q = VectorSearch {
        text: Some(text.clone()),
        k: candidates,
        ef: body
            .get("ef")
            .is_some()
            .then(|| positive(&body, "ef", 0, MAX_EF))
            .transpose()?,
        ..Default::default()
    };
    parse_filter(body.get("filter"), &mut q)?;
    let (parts, from, to) = (q.partitions.clone(), q.from_ms, q.to_ms);

    let mut multi_match = json!({"query": text, "type": "cross_fields"});
    if let Some(fields) = body.get("fields") {
        multi_match["fields"] = fields.clone();
    }
    let bm25_body = json!({"query": {"multi_match": multi_match}, "size": candidates});
    let topics = vec![topic.clone()];
    let bm25 = tokio::task::spawn_blocking(move || search.search(&topics, &bm25_body));
    let (vector_hits, bm25) = tokio::join!(vectors.search(&topic, &config.vector, q), bm25);
    let vector_hits = vector_hits?;
    let bm25 = bm25
        .map_err(|e| ApiError::Internal(format!("search task failed: {e}")))?
        .map_err(|e: SearchFailure| ApiError::from(e))?;

    // BM25 hits as VectorHit-shaped documents, restricted by the same filter.
    let mut docs: HashMap<(i32, i64), VectorHit> = HashMap::new();
    let mut text_list = Vec::new();
    for h in bm25["hits"]["hits"].as_array().into_iter().flatten() {
        let (Some(p), Some(o)) = (h["_partition"].as_i64(), h["_offset"].as_i64()) else {
            continue;
        };
        let p = p as i32;
        let ts = h["_timestamp"].as_i64().unwrap_or(0);
        if parts.as_ref().is_some_and(|ps| !ps.contains(&p))
            || from.is_some_and(|f| ts < f)
            || to.is_some_and(|t| ts > t)
        {
            continue;
        }
        let score = h["_score"].as_f64().unwrap_or(0.0);
        text_list.push(((p, o), score));
        docs.entry((p, o)).or_insert_with(|| VectorHit {
            partition: p,
            offset: o,
            score,
            timestamp: ts,
            key: h["_key"].as_str().map(str::to_string),
            source: h["_source"].clone(),
        });
    }
    let mut vector_list = Vec::new();
    for h in vector_hits {
        vector_list.push(((h.partition, h.offset), h.score));
        docs.insert((h.partition, h.offset), h);
    }
    let bm25_scores: HashMap<(i32, i64), f64> = text_list.iter().copied().collect();
    let vector_scores: HashMap<(i32, i64), f64> = vector_list.iter().copied().collect();
    let fused = fuse(
        &[
            Ranked {
                weight: vector_weight,
                hits: vector_list,
            },
            Ranked {
                weight: 1.0 - vector_weight,
                hits: text_list,
            },
        ],
        fusion,
    );
    let results: Vec<Value> = fused
        .into_iter()
        .take(k)
        .filter_map(|f| {
            let d = docs.get(&f.id)?;
            let mut v = hit_json(d);
            v["score"] = json!(f.score);
            v["vector_rank"] = json!(f.ranks[0]);
            v["search_rank"] = json!(f.ranks[1]);
            v["vector_score"] = json!(vector_scores.get(&f.id));
            v["search_score"] = json!(bm25_scores.get(&f.id));
            Some(v)
        })
        .collect();
    Ok(Json(json!({
        "results": results,
        "fusion": match fusion { Fusion::Rrf { .. } => "rrf", Fusion::Linear => "linear" },
        "_shards": coverage::shards(&state, std::slice::from_ref(&topic)),
        "took_ms": took(start),
    })))
}

/// GET /_vector/{topic}/stats
pub(crate) async fn stats(
    State(state): State<ApiState>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let backend = backend(&state)?;
    vector_topic(&state, &topic)?;
    Ok(Json(backend.stats(&topic)?))
}

/// POST /v1/embeddings: `{"input": "text" | ["text", ...], "model"?, "encoding_format"?}`.
pub(crate) async fn embeddings(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let backend = backend(&state)?;
    let body = body_object(&body)?;
    reject_unknown(
        &body,
        &["input", "model", "encoding_format", "dimensions", "user"],
    )?;
    let texts: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("[input] entries must be strings, got {i}")))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => return Err(bad("[input] is empty")),
        Some(v) => {
            return Err(bad(format!(
                "[input] must be a string or an array of strings, got {v}"
            )))
        }
        None => return Err(bad("[input] is required")),
    };
    const MAX_INPUTS: usize = 2048;
    if texts.len() > MAX_INPUTS {
        return Err(bad(format!(
            "[input] has {} texts; at most {MAX_INPUTS}",
            texts.len()
        )));
    }
    match body.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "float" => {}
        Some(v) => return Err(bad(format!("[encoding_format] must be \"float\", got {v}"))),
    }
    let out = backend.embed(texts).await?;
    if let Some(m) = body.get("model").and_then(Value::as_str) {
        if !m.is_empty()
            && m != out.model
            && !out.model.ends_with(&format!("/{m}"))
            && !m.ends_with(&format!("/{}", out.model))
        {
            return Err(bad(format!(
                "[model] \"{m}\" is not served here; this server embeds with \"{}\"",
                out.model
            )));
        }
    }
    if let Some(d) = body.get("dimensions").filter(|d| !d.is_null()) {
        let dims = out.vectors.first().map_or(0, Vec::len);
        if d.as_u64() != Some(dims as u64) {
            return Err(bad(format!(
                "[dimensions] must be {dims} for \"{}\", got {d}",
                out.model
            )));
        }
    }
    let tokens = out.tokens;
    Ok(Json(json!({
        "object": "list",
        "data": out.vectors.into_iter().enumerate().map(|(i, v)| json!({
            "object": "embedding", "index": i, "embedding": v,
        })).collect::<Vec<_>>(),
        "model": out.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_bad_ones_are_named() {
        let mut q = VectorSearch::default();
        parse_filter(
            Some(&json!({"partitions": [0, 2], "timestamp": {"gt": 10, "lte": 20}})),
            &mut q,
        )
        .unwrap();
        assert_eq!(q.partitions, Some(vec![0, 2]));
        assert_eq!((q.from_ms, q.to_ms), (Some(11), Some(20)));
        for f in [
            json!(3),
            json!({"partitions": "0"}),
            json!({"partitions": [-1]}),
            json!({"timestamp": {"after": 3}}),
            json!({"timestamp": {"gte": "yesterday"}}),
            json!({"colour": "red"}),
        ] {
            assert!(
                parse_filter(Some(&f), &mut VectorSearch::default()).is_err(),
                "{f}"
            );
        }
    }

    #[test]
    fn vectors_must_be_finite_numbers() {
        assert_eq!(parse_vector(&json!([1, 2.5])).unwrap(), vec![1.0, 2.5]);
        assert!(parse_vector(&json!([])).is_err());
        assert!(parse_vector(&json!(["a"])).is_err());
        assert!(parse_vector(&json!([1e300])).is_err());
        assert!(parse_vector(&json!("1,2")).is_err());
    }
}
