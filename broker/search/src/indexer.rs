//! [`SearchIndexer`]: the "search" kind of [`Indexer`], one Tantivy index per partition under
//! `<root>/<topic>/<partition>`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chronik_index::{IndexError, Indexer, RecordRun};
use chronik_meta::TopicConfig;
use parking_lot::RwLock;

use crate::error::SearchError;
use crate::partition::{PartitionIndex, PartitionSettings};
use crate::schema::TextPaths;

const KIND: &str = "search";

/// Full-text indexes of every searchable partition this broker indexes.
#[derive(Debug)]
pub struct SearchIndexer {
    root: PathBuf,
    partitions: RwLock<HashMap<(String, i32), Arc<PartitionIndex>>>,
}

impl SearchIndexer {
    /// Indexes live under `root` (the server passes `<data_dir>/index/search`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SearchIndexer {
            root: root.into(),
            partitions: RwLock::new(HashMap::new()),
        }
    }

    fn dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.root.join(topic).join(partition.to_string())
    }

    fn get(&self, topic: &str, partition: i32) -> Result<Arc<PartitionIndex>, IndexError> {
        self.partitions
            .read()
            .get(&(topic.to_string(), partition))
            .cloned()
            .ok_or_else(|| IndexError::NotOpen {
                kind: KIND,
                topic: topic.to_string(),
                partition,
            })
    }

    /// A call on an open partition failed: forget the writer without committing, so nothing
    /// of a half-added run becomes durable, and the next open starts from the last commit.
    fn evict_on_error<T>(
        &self,
        part: &Arc<PartitionIndex>,
        result: Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        if result.is_err() {
            let mut partitions = self.partitions.write();
            let key = (part.topic.clone(), part.partition);
            if partitions.get(&key).is_some_and(|p| Arc::ptr_eq(p, part)) {
                partitions.remove(&key);
                tracing::warn!(topic = %part.topic, partition = part.partition, "search index call failed; uncommitted changes are dropped");
            }
        }
        result
    }

    /// The open partitions of `topic`, in partition order.
    pub fn partitions_of(&self, topic: &str) -> Vec<Arc<PartitionIndex>> {
        let mut out: Vec<Arc<PartitionIndex>> = self
            .partitions
            .read()
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(_, p)| p.clone())
            .collect();
        out.sort_by_key(|p| p.partition);
        out
    }

    /// Topics with at least one open partition, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .partitions
            .read()
            .keys()
            .map(|(t, _)| t.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn failed(e: SearchError) -> IndexError {
    IndexError::Indexer {
        kind: KIND,
        reason: e.to_string(),
    }
}

/// Run blocking index work off the async workers (commits fsync, indexing is CPU).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SearchError> + Send + 'static,
) -> Result<T, IndexError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| failed(SearchError::Task(e.to_string())))?
        .map_err(failed)
}

#[async_trait]
impl Indexer for SearchIndexer {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn enabled(&self, config: &TopicConfig) -> bool {
        config.searchable_enabled
    }

    async fn open_partition(
        &self,
        topic: &str,
        partition: i32,
        config: &TopicConfig,
        log_start: i64,
    ) -> chronik_index::Result<i64> {
        if let Some(open) = self.partitions.read().get(&(topic.to_string(), partition)) {
            return Ok(open.indexed());
        }
        let dir = self.dir(topic, partition);
        let settings = PartitionSettings {
            text_paths: TextPaths::new(config.search_fields.clone()),
            compacted: config.cleanup_policy.compact,
        };
        let (t, p) = (topic.to_string(), partition);
        let (index, resume) =
            blocking(move || PartitionIndex::open(&dir, &t, p, settings, log_start)).await?;
        let index = Arc::new(index);
        let mut partitions = self.partitions.write();
        let entry = partitions
            .entry((topic.to_string(), partition))
            .or_insert(index);
        tracing::debug!(topic, partition, resume, "search index opened");
        Ok(entry.indexed().max(resume))
    }

    async fn index(&self, run: RecordRun<'_>) -> chronik_index::Result<()> {
        let part = self.get(run.topic, run.partition)?;
        // Building documents is CPU work and handing them over can wait on the writer's
        // thread: tell a multi-threaded runtime so its other tasks move elsewhere meanwhile.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = if multi_thread {
            tokio::task::block_in_place(|| part.add(&run)).map_err(failed)
        } else {
            part.add(&run).map_err(failed)
        };
        self.evict_on_error(&part, result)
    }

    async fn publish(&self, topic: &str, partition: i32) -> chronik_index::Result<()> {
        let part = self.get(topic, partition)?;
        let p = part.clone();
        let result = blocking(move || p.commit().map(|_| ())).await;
        self.evict_on_error(&part, result)
    }

    async fn persist(&self, topic: &str, partition: i32) -> chronik_index::Result<i64> {
        let part = self.get(topic, partition)?;
        let p = part.clone();
        let result = blocking(move || p.commit()).await;
        self.evict_on_error(&part, result)
    }

    async fn forget_before(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> chronik_index::Result<()> {
        let part = self.get(topic, partition)?;
        let result = part.forget_before(offset).map_err(failed);
        self.evict_on_error(&part, result)
    }

    async fn close_partition(&self, topic: &str, partition: i32) -> chronik_index::Result<()> {
        let Some(part) = self
            .partitions
            .write()
            .remove(&(topic.to_string(), partition))
        else {
            return Ok(());
        };
        blocking(move || part.commit().map(|_| ())).await
    }

    async fn drop_topic(&self, topic: &str) -> chronik_index::Result<()> {
        let removed: Vec<Arc<PartitionIndex>> = {
            let mut partitions = self.partitions.write();
            let keys: Vec<(String, i32)> = partitions
                .keys()
                .filter(|(t, _)| t == topic)
                .cloned()
                .collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        drop(removed);
        let dir = self.root.join(topic);
        blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SearchError::Io {
                what: format!("removing {}", dir.display()),
                source,
            }),
        })
        .await
    }
}
