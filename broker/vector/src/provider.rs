//! The embedding seam: a provider turns a batch of texts into vectors.

use crate::VectorError;

/// Something that embeds text. Calls block (model inference or an HTTP round trip); callers
/// run them through an [`crate::EmbeddingPool`], never on an async worker.
pub trait EmbeddingProvider: Send + Sync + std::fmt::Debug {
    /// One vector per text, in order, each of [`Self::dimensions`] values.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, VectorError>;
    /// Length of every vector this provider returns, once known: a remote model's length is
    /// learned from its first answer (see [`crate::EmbeddingPool::dimensions`]).
    fn dimensions(&self) -> Option<usize>;
    /// Stable model identifier (reported by stats and /v1/embeddings, stored with an index so
    /// vectors of different models are never mixed).
    fn model_id(&self) -> &str;
    /// Tokens the model reads for `texts` (after truncation), when the provider can tell.
    fn count_tokens(&self, _texts: &[&str]) -> Option<usize> {
        None
    }
}
