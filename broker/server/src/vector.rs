//! Vector search wiring: the local embedding model and the chronik-vector indexes behind the
//! API's [`VectorBackend`].

use std::sync::Arc;

use async_trait::async_trait;
use chronik_api::{Embeddings, VectorBackend, VectorFailure, VectorHit, VectorSearch};
use chronik_meta::{EmbeddingProviderKind, VectorMetric, VectorSettings};
use chronik_vector::{
    Embedders, EmbeddingPool, LocalProvider, OpenAiConfig, TimeRange, VectorError, VectorIndexer,
    VectorQuery,
};
use serde_json::{json, Value};

use crate::config::ServerConfig;

/// The embedding providers the server runs with. The local model loads on first use (also
/// when the server default is another provider, for topics that ask for it); when it is the
/// default, a missing model is logged here and reported per topic, and the broker still starts.
pub fn embedders(config: &ServerConfig) -> Embedders {
    let default = match config.embedding_provider.as_str() {
        "local" => Some(EmbeddingProviderKind::Local),
        "openai" => Some(EmbeddingProviderKind::OpenAi),
        _ => None,
    };
    let (provider, present) = LocalProvider::lazy(config.model_dir());
    match (&default, present) {
        (Some(EmbeddingProviderKind::Local), Err(e)) => {
            tracing::error!(error = %e, "the local embedding model is not available; vector topics report this error until it is");
        }
        (None, _) => {
            tracing::info!(
                "no default embedding provider: only vector topics that name one are indexed"
            );
        }
        _ => {}
    }
    let local = EmbeddingPool::new(Arc::new(provider), config.embedding_workers);
    let mut openai = OpenAiConfig {
        api_key: config.embedding_api_key.clone(),
        timeout: std::time::Duration::from_millis(config.embedding_timeout_ms),
        ..OpenAiConfig::default()
    };
    if let Some(e) = &config.embedding_endpoint {
        openai.endpoint = e.clone();
    }
    if let (Some(m), Some(EmbeddingProviderKind::OpenAi)) = (&config.embedding_model, default) {
        openai.model = m.clone();
    }
    // Remote requests wait on the network, not the CPU: more of them may be in flight.
    let remote_workers = (config.embedding_workers * 4).min(64);
    Embedders::new(default, Some(local), openai, remote_workers)
}

/// Adapts [`VectorIndexer`] to the HTTP API's seam.
#[derive(Debug)]
pub struct VectorApi {
    indexer: Arc<VectorIndexer>,
}

impl VectorApi {
    pub fn new(indexer: Arc<VectorIndexer>) -> Self {
        VectorApi { indexer }
    }
}

fn failure(e: VectorError) -> VectorFailure {
    match e {
        VectorError::BadRequest(m) => VectorFailure::BadRequest(m),
        VectorError::NotFound(m) => VectorFailure::NotFound(m),
        e @ (VectorError::ModelMissing { .. }
        | VectorError::ModelInvalid { .. }
        | VectorError::Embedding(_)
        | VectorError::Unavailable(_)
        | VectorError::Unsupported(_)) => VectorFailure::Unavailable(e.to_string()),
        e => VectorFailure::Internal(e.to_string()),
    }
}

fn metric_name(m: VectorMetric) -> &'static str {
    match m {
        VectorMetric::Cosine => "cosine",
        VectorMetric::L2 => "l2",
        VectorMetric::Dot => "dot",
    }
}

#[async_trait]
impl VectorBackend for VectorApi {
    async fn search(
        &self,
        topic: &str,
        settings: &VectorSettings,
        q: VectorSearch,
    ) -> Result<Vec<VectorHit>, VectorFailure> {
        let hits = self
            .indexer
            .search(
                topic,
                settings,
                VectorQuery {
                    text: q.text,
                    vector: q.vector,
                    k: q.k,
                    ef: q.ef,
                    partitions: q.partitions,
                    time: TimeRange {
                        from: q.from_ms,
                        to: q.to_ms,
                    },
                },
            )
            .await
            .map_err(failure)?;
        Ok(hits
            .into_iter()
            .map(|h| VectorHit {
                partition: h.partition,
                offset: h.offset,
                score: f64::from(h.score),
                timestamp: h.timestamp,
                key: h.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                source: match h.value {
                    None => Value::Null,
                    Some(v) => serde_json::from_slice(&v).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&v).into_owned())
                    }),
                },
            })
            .collect())
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, VectorFailure> {
        let pool = self.indexer.embedders().default_pool().map_err(failure)?;
        let provider = pool.provider().clone();
        let vectors = pool.embed(texts.clone()).await.map_err(failure)?;
        let tokens = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            provider.count_tokens(&refs)
        })
        .await
        .ok()
        .flatten();
        Ok(Embeddings {
            model: pool.provider().model_id().to_string(),
            vectors,
            tokens,
        })
    }

    fn stats(&self, topic: &str) -> Result<Value, VectorFailure> {
        let Some(s) = self.indexer.stats(topic) else {
            return Err(VectorFailure::Unavailable(
                "no embedding provider is configured on this broker (CHRONIK_EMBEDDING_PROVIDER=none)"
                    .into(),
            ));
        };
        let lag = |p: i32| {
            chronik_index::metrics()
                .lag_records
                .get_metric_with_label_values(&[topic, &p.to_string(), "vector"])
                .map(|g| g.get())
                .unwrap_or(0)
        };
        let partitions: Vec<Value> = s
            .partitions
            .iter()
            .map(|p| {
                json!({
                    "partition": p.partition,
                    "vectors": p.vectors,
                    "graph_points": p.graph_points,
                    "skipped": p.skipped,
                    "indexed_offset": p.indexed_offset,
                    "published_offset": p.published_offset,
                    "durable_offset": p.durable_offset,
                    "lag": lag(p.partition),
                    "memory_bytes": p.memory_bytes,
                    "disk_bytes": p.disk_bytes,
                })
            })
            .collect();
        Ok(json!({
            "topic": topic,
            "total_vectors": s.partitions.iter().map(|p| p.vectors).sum::<u64>(),
            "dimensions": s.dimensions,
            "model": s.model,
            "metric": metric_name(s.metric),
            "lag": s.partitions.iter().map(|p| lag(p.partition)).sum::<i64>(),
            "memory_bytes": s.partitions.iter().map(|p| p.memory_bytes).sum::<u64>(),
            "disk_bytes": s.partitions.iter().map(|p| p.disk_bytes).sum::<u64>(),
            "skipped": s.partitions.iter().map(|p| p.skipped).sum::<u64>(),
            "partitions": partitions,
            "error": s.error,
        }))
    }
}
