//! A bounded pool for embedding work.
//!
//! Inference is CPU-bound and long (tens of milliseconds per batch and more); it runs on
//! tokio's blocking threads, at most `workers` batches at once, so it never occupies an async
//! worker (the produce and query paths keep their threads) and never oversubscribes the CPU.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::{EmbeddingProvider, VectorError};

/// A provider behind a bounded set of concurrent embedding jobs.
#[derive(Debug, Clone)]
pub struct EmbeddingPool {
    provider: Arc<dyn EmbeddingProvider>,
    permits: Arc<Semaphore>,
}

impl EmbeddingPool {
    pub fn new(provider: Arc<dyn EmbeddingProvider>, workers: usize) -> Self {
        EmbeddingPool {
            provider,
            permits: Arc::new(Semaphore::new(workers.max(1))),
        }
    }

    pub fn provider(&self) -> &Arc<dyn EmbeddingProvider> {
        &self.provider
    }

    /// Length of the provider's vectors; a provider that cannot tell before answering is asked
    /// to embed one probe text.
    pub async fn dimensions(&self) -> Result<usize, VectorError> {
        if let Some(d) = self.provider.dimensions() {
            return Ok(d);
        }
        let probe = self.embed(vec!["dimensions probe".into()]).await?;
        Ok(probe.first().map_or(0, Vec::len))
    }

    /// Embed `texts` on the pool; waits for a free worker first.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, VectorError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| VectorError::Task(e.to_string()))?;
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = provider.embed(&refs)?;
            if vectors.len() != refs.len() {
                return Err(VectorError::Embedding(format!(
                    "provider returned {} vectors for {} texts",
                    vectors.len(),
                    refs.len()
                )));
            }
            Ok(vectors)
        })
        .await
        .map_err(|e| VectorError::Task(e.to_string()))?
    }
}
