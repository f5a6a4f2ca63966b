//! Vector search over topics.
//!
//! This crate owns the embedding providers (the [`EmbeddingProvider`] seam, the in-process
//! [`LocalProvider`] and the bounded [`EmbeddingPool`] they run on) and the per-partition HNSW
//! indexes fed by the index pipeline through [`VectorIndexer`], the "vector"
//! [`chronik_index::Indexer`], with the query side over them. HTTP lives in chronik-api; this
//! crate knows nothing of it.

mod error;
mod field;
mod graph;
mod indexer;
mod local;
mod metric;
mod partition;
mod pool;
mod provider;
mod store;

pub use error::VectorError;
pub use graph::{HnswGraph, HnswParams};
pub use indexer::{TopicStats, VectorIndexer, VectorQuery, MAX_EF, MAX_K};
pub use local::{LocalProvider, LOCAL_MODEL_DIMENSIONS, LOCAL_MODEL_ID, MAX_TOKENS};
pub use partition::{PartitionHit, PartitionStats, TimeRange};
pub use pool::EmbeddingPool;
pub use provider::EmbeddingProvider;
