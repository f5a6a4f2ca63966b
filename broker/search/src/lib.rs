//! Full-text search over topics.
//!
//! This crate owns the Tantivy index of every partition of a searchable topic (fed by the
//! index pipeline through [`SearchIndexer`], the "search" [`chronik_index::Indexer`]), the
//! English analyzer, the translation of Elasticsearch's query DSL and aggregations to Tantivy,
//! and the Elasticsearch response shape ([`SearchEngine`]). HTTP lives in chronik-api; this
//! crate knows nothing of it.

mod aggs;
mod analyzer;
mod automaton;
mod collect;
mod combined;
mod dsl;
mod engine;
mod error;
mod highlight;
mod indexer;
mod keyword;
mod partition;
mod query_string;
mod request;
mod schema;

pub use analyzer::english as english_analyzer;
pub use engine::{IndexSummary, SearchEngine};
pub use error::SearchError;
pub use indexer::SearchIndexer;
