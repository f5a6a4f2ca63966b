//! The columnar indexer against the shared Indexer conformance suite, observed through SQL:
//! once with everything in the hot buffer, once sealing every few records so that files,
//! the hot/cold boundary and retention rewrites are all exercised.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chronik_index::conformance::{self, Harness};
use chronik_index::Indexer;
use chronik_meta::TopicConfig;
use chronik_sql::{Format, Query, SqlConfig, SqlEngine, SqlError};
use parking_lot::Mutex;

struct Columnar {
    seal_rows: usize,
    engine: Mutex<Option<Arc<SqlEngine>>>,
}

impl Columnar {
    fn new(seal_rows: usize) -> Self {
        Columnar {
            seal_rows,
            engine: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Harness for Columnar {
    async fn open(&self, dir: &Path) -> Arc<dyn Indexer> {
        let mut config = SqlConfig::new(dir.to_path_buf());
        config.seal_rows = self.seal_rows;
        config.row_group_rows = 4;
        let (_, indexer, engine) = chronik_sql::open(config);
        *self.engine.lock() = Some(engine);
        indexer
    }

    fn config(&self) -> TopicConfig {
        let mut c = std::collections::BTreeMap::new();
        c.insert("columnar.enabled".to_string(), "true".to_string());
        TopicConfig::from_overrides(&c)
    }

    async fn visible_offsets(
        &self,
        _indexer: &Arc<dyn Indexer>,
        topic: &str,
        partition: i32,
    ) -> Vec<i64> {
        let engine = self.engine.lock().clone().expect("opened");
        let q = Query {
            sql: format!(
                "SELECT _offset FROM {topic} WHERE _partition = {partition} ORDER BY _offset"
            ),
            limit: Some(1_000_000),
            timeout: None,
            format: Format::Ndjson,
        };
        match engine.query(q).await {
            Ok(answer) => String::from_utf8(answer.body)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["_offset"]
                        .as_i64()
                        .unwrap()
                })
                .collect(),
            Err(SqlError::UnknownTable(_)) => Vec::new(),
            Err(e) => panic!("query failed: {e}"),
        }
    }
}

#[tokio::test]
async fn hot_buffer_only() {
    conformance::run_all(&Columnar::new(usize::MAX)).await;
}

#[tokio::test]
async fn sealing_every_few_records() {
    conformance::run_all(&Columnar::new(7)).await;
}
