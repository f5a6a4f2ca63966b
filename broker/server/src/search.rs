//! Full-text search wiring: the chronik-search engine behind the API's [`SearchBackend`].

use std::sync::Arc;

use chronik_api::{SearchBackend, SearchFailure, SearchIndexStats};
use chronik_search::{SearchEngine, SearchError, SearchIndexer};
use serde_json::Value;

/// Adapts [`SearchEngine`] to the HTTP API's seam.
#[derive(Debug, Clone)]
pub struct SearchApi {
    engine: SearchEngine,
}

impl SearchApi {
    pub fn new(indexer: Arc<SearchIndexer>) -> Self {
        SearchApi {
            engine: SearchEngine::new(indexer),
        }
    }
}

fn failure(e: SearchError) -> SearchFailure {
    match e {
        SearchError::BadRequest(m) => SearchFailure::BadRequest(m),
        e @ SearchError::IndexNotFound(_) => SearchFailure::NotFound(e.to_string()),
        e => SearchFailure::Internal(e.to_string()),
    }
}

impl SearchBackend for SearchApi {
    fn search(&self, topics: &[String], body: &Value) -> Result<Value, SearchFailure> {
        self.engine.search(topics, body).map_err(failure)
    }

    fn count(&self, topics: &[String], body: &Value) -> Result<Value, SearchFailure> {
        self.engine.count(topics, body).map_err(failure)
    }

    fn mapping(&self, topic: &str) -> Result<Value, SearchFailure> {
        self.engine.mapping(topic).map_err(failure)
    }

    fn indices(&self) -> Vec<SearchIndexStats> {
        self.engine
            .indices()
            .into_iter()
            .map(|s| SearchIndexStats {
                topic: s.topic,
                partitions: s.partitions,
                docs: s.docs,
                deleted_docs: s.deleted_docs,
                size_bytes: s.size_bytes,
            })
            .collect()
    }
}
