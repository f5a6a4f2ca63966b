//! Vector search over topics.
//!
//! This crate owns the embedding providers (the [`EmbeddingProvider`] seam, the in-process
//! [`LocalProvider`], the remote [`OpenAiProvider`], the bounded [`EmbeddingPool`] they run on
//! and [`Embedders`], which picks a topic's pool) and the per-partition HNSW
//! indexes fed by the index pipeline through [`VectorIndexer`], the "vector"
//! [`chronik_index::Indexer`], with the query side over them. HTTP lives in chronik-api; this
//! crate knows nothing of it.

mod embedders;
mod error;
mod field;
mod hnsw;
mod indexer;
mod le_reader;
mod local;
mod metric;
mod openai;
mod partition;
mod pool;
mod provider;
mod store;

pub use embedders::Embedders;
pub use error::VectorError;
pub use hnsw::{HnswGraph, HnswParams};
pub use indexer::{TopicStats, VectorIndexer, VectorQuery, MAX_EF, MAX_K};
pub use local::{LocalProvider, LOCAL_MODEL_DIMENSIONS, LOCAL_MODEL_ID, MAX_TOKENS};
pub use openai::{
    embeddings_url, Backoff, OpenAiConfig, OpenAiProvider, DEFAULT_OPENAI_ENDPOINT,
    DEFAULT_OPENAI_MODEL, MAX_TEXT_CHARS,
};
pub use partition::{PartitionHit, PartitionStats, TimeRange};
pub use pool::EmbeddingPool;
pub use provider::EmbeddingProvider;
