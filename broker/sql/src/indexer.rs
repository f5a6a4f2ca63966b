//! The columnar [`Indexer`]: the pipeline's calls mapped onto the [`Store`].

use std::sync::Arc;

use async_trait::async_trait;
use chronik_index::{Indexer, RecordRun, Result};
use chronik_meta::TopicConfig;

use crate::metrics::metrics;
use crate::store::Store;

/// Feeds columnar topics into the store. Its checkpoint is the end offset in the name of the
/// newest sealed Parquet file; the hot buffer above it is rebuilt from the log after a restart.
#[derive(Debug)]
pub struct ColumnarIndexer {
    store: Arc<Store>,
}

impl ColumnarIndexer {
    pub fn new(store: Arc<Store>) -> Self {
        ColumnarIndexer { store }
    }

    fn report(&self) {
        metrics()
            .hot_bytes
            .set(i64::try_from(self.store.hot_bytes()).unwrap_or(i64::MAX));
    }
}

#[async_trait]
impl Indexer for ColumnarIndexer {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn enabled(&self, config: &TopicConfig) -> bool {
        config.columnar_enabled
    }

    async fn open_partition(
        &self,
        topic: &str,
        partition: i32,
        _config: &TopicConfig,
        log_start: i64,
    ) -> Result<i64> {
        let store = self.store.clone();
        let topic = topic.to_string();
        // Opening reads file footers and may rewrite a file; keep it off the async workers.
        let resume =
            tokio::task::spawn_blocking(move || store.open_partition(&topic, partition, log_start))
                .await
                .map_err(|e| crate::SqlError::Internal(e.to_string()))??;
        Ok(resume)
    }

    async fn index(&self, run: RecordRun<'_>) -> Result<()> {
        self.store
            .index(run.topic, run.partition, run.records, run.next_offset)?;
        self.report();
        Ok(())
    }

    async fn publish(&self, topic: &str, partition: i32) -> Result<()> {
        self.store.publish(topic, partition).await?;
        self.report();
        Ok(())
    }

    async fn persist(&self, topic: &str, partition: i32) -> Result<i64> {
        let checkpoint = self.store.persist(topic, partition).await?;
        self.report();
        Ok(checkpoint)
    }

    async fn forget_before(&self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let store = self.store.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || store.forget_before(&topic, partition, offset))
            .await
            .map_err(|e| crate::SqlError::Internal(e.to_string()))??;
        self.report();
        Ok(())
    }

    async fn close_partition(&self, topic: &str, partition: i32) -> Result<()> {
        self.store.close_partition(topic, partition);
        self.report();
        Ok(())
    }

    async fn drop_topic(&self, topic: &str) -> Result<()> {
        self.store.drop_topic(topic)?;
        self.report();
        Ok(())
    }

    async fn known_topics(&self) -> Result<Vec<String>> {
        Ok(self.store.known_topics()?)
    }
}
