//! The Indexer conformance suite (resume, replay, publish, retention, drop) run against the
//! search index, observed through search itself.

use std::path::Path;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use chronik_index::conformance::{run_all, Harness};
use chronik_index::Indexer;
use chronik_meta::TopicConfig;
use chronik_search::{SearchEngine, SearchIndexer};
use parking_lot::Mutex;
use serde_json::json;

/// Weak references, so dropping an indexer (the suite's crash) really releases it.
#[derive(Default)]
struct SearchHarness {
    opened: Mutex<Vec<Weak<SearchIndexer>>>,
}

#[async_trait]
impl Harness for SearchHarness {
    async fn open(&self, dir: &Path) -> Arc<dyn Indexer> {
        let ix = Arc::new(SearchIndexer::new(dir));
        self.opened.lock().push(Arc::downgrade(&ix));
        ix
    }

    fn config(&self) -> TopicConfig {
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert("searchable.enabled".to_string(), "true".to_string());
        TopicConfig::from_overrides(&overrides)
    }

    async fn visible_offsets(
        &self,
        indexer: &Arc<dyn Indexer>,
        topic: &str,
        partition: i32,
    ) -> Vec<i64> {
        let target = Arc::as_ptr(indexer) as *const ();
        let ix = self
            .opened
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|ix| Arc::as_ptr(ix) as *const () == target)
            .expect("an indexer this harness opened");
        let engine = SearchEngine::new(ix);
        let r = engine
            .search(
                &[topic.to_string()],
                &json!({"size": 10000, "sort": [{"_offset": "asc"}], "query": {"term": {"_partition": partition}}}),
            )
            .expect("search");
        r["hits"]["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| h["_offset"].as_i64().expect("offset"))
            .collect()
    }
}

#[tokio::test]
async fn search_indexer_conforms() {
    run_all(&SearchHarness::default()).await;
}
