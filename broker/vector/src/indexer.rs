//! [`VectorIndexer`]: the "vector" kind of [`Indexer`], one HNSW index per partition under
//! `<root>/<topic>/<partition>`, and the query side over them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chronik_index::{IndexError, Indexer, RecordRun};
use chronik_meta::{TopicConfig, VectorField, VectorMetric, VectorSettings};
use parking_lot::RwLock;

use crate::field::text_of;
use crate::hnsw::HnswParams;
use crate::metric::prepare;
use crate::partition::{
    NewRecord, PartitionHit, PartitionIndex, PartitionSettings, PartitionStats, TimeRange,
};
use crate::{Embedders, EmbeddingPool, VectorError};

const KIND: &str = "vector";
/// Texts per call to the embedding pool: long backlogs are embedded in slices so queries'
/// embeddings and other partitions get a turn between them.
const EMBED_SLICE: usize = 256;
/// Largest k a query may ask for.
pub const MAX_K: usize = 10_000;
/// Largest ef a query may ask for.
pub const MAX_EF: usize = 10_000;

/// A vector search over one topic.
#[derive(Debug, Clone, Default)]
pub struct VectorQuery {
    /// Text embedded with the topic's model...
    pub text: Option<String>,
    /// ...or a raw query vector of the index's dimension.
    pub vector: Option<Vec<f32>>,
    pub k: usize,
    /// Beam width; the topic's vector.hnsw.ef_search when absent.
    pub ef: Option<usize>,
    /// Only these partitions; all when absent.
    pub partitions: Option<Vec<i32>>,
    pub time: TimeRange,
}

/// One topic's index as a whole.
#[derive(Debug, Clone)]
pub struct TopicStats {
    pub model: String,
    pub dimensions: usize,
    pub metric: VectorMetric,
    pub partitions: Vec<PartitionStats>,
    /// The last embedding or indexing failure of the topic, while it lasts.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
struct Open {
    index: Arc<PartitionIndex>,
    field: VectorField,
    /// Embeds the topic's events and its text queries.
    pool: EmbeddingPool,
}

/// Vector indexes of every vector-enabled partition this broker indexes.
#[derive(Debug)]
pub struct VectorIndexer {
    root: PathBuf,
    embedders: Embedders,
    partitions: RwLock<HashMap<(String, i32), Open>>,
    errors: RwLock<HashMap<String, String>>,
}

fn failed(e: VectorError) -> IndexError {
    IndexError::Indexer {
        kind: KIND,
        reason: e.to_string(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VectorError> + Send + 'static,
) -> Result<T, VectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VectorError::Task(e.to_string()))?
}

impl VectorIndexer {
    /// Indexes live under `root` (the server passes `<data_dir>/index/vector`); each topic's
    /// events are embedded on the pool `embedders` picks for it.
    pub fn new(root: impl Into<PathBuf>, embedders: Embedders) -> Self {
        VectorIndexer {
            root: root.into(),
            embedders,
            partitions: RwLock::new(HashMap::new()),
            errors: RwLock::new(HashMap::new()),
        }
    }

    pub fn embedders(&self) -> &Embedders {
        &self.embedders
    }

    fn get(&self, topic: &str, partition: i32) -> Result<Open, IndexError> {
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

    /// Forget a partition whose call failed, so nothing of a half-added run is kept; the
    /// pipeline reopens it from its checkpoint.
    fn evict_on_error<T>(
        &self,
        topic: &str,
        part: &Arc<PartitionIndex>,
        result: Result<T, VectorError>,
    ) -> Result<T, IndexError> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                let mut partitions = self.partitions.write();
                let key = (topic.to_string(), part.partition);
                if partitions
                    .get(&key)
                    .is_some_and(|p| Arc::ptr_eq(&p.index, part))
                {
                    partitions.remove(&key);
                }
                self.errors.write().insert(topic.to_string(), e.to_string());
                Err(failed(e))
            }
        }
    }

    fn opened(&self, topic: &str) -> Vec<Open> {
        let mut out: Vec<Open> = self
            .partitions
            .read()
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(_, p)| p.clone())
            .collect();
        out.sort_by_key(|p| p.index.partition);
        out
    }

    fn partitions_of(&self, topic: &str) -> Vec<Arc<PartitionIndex>> {
        self.opened(topic).into_iter().map(|o| o.index).collect()
    }

    /// The `k` best hits of the topic's open partitions, best first. `settings` are the
    /// topic's vector.* keys (to check a query before any partition is open).
    pub async fn search(
        &self,
        topic: &str,
        settings: &VectorSettings,
        q: VectorQuery,
    ) -> Result<Vec<PartitionHit>, VectorError> {
        if q.k == 0 || q.k > MAX_K {
            return Err(VectorError::bad(format!(
                "[k] must be between 1 and {MAX_K}, got {}",
                q.k
            )));
        }
        if let Some(ef) = q.ef {
            if ef == 0 || ef > MAX_EF {
                return Err(VectorError::bad(format!(
                    "[ef] must be between 1 and {MAX_EF}, got {ef}"
                )));
            }
        }
        let opened = self.opened(topic);
        let Some(first) = opened.first() else {
            // Nothing open here: an index that failed to open says why rather than
            // answering "no hits".
            if let Some(e) = self.errors.read().get(topic) {
                return Err(VectorError::Unavailable(format!(
                    "the vector index of [{topic}] is not available: {e}"
                )));
            }
            let expected = match settings.dimensions {
                0 => self
                    .embedders
                    .for_topic(settings)
                    .ok()
                    .and_then(|p| p.provider().dimensions()),
                d => Some(d),
            };
            if let (Some(v), Some(d)) = (&q.vector, expected) {
                if v.len() != d {
                    return Err(VectorError::bad(format!(
                        "[vector] has {} dimensions, the index of [{topic}] has {d}",
                        v.len()
                    )));
                }
            }
            return Ok(Vec::new());
        };
        let settings = first.index.settings().clone();
        let pool = first.pool.clone();
        let mut parts: Vec<Arc<PartitionIndex>> = opened.into_iter().map(|o| o.index).collect();
        if let Some(wanted) = &q.partitions {
            parts.retain(|p| wanted.contains(&p.partition));
        }
        let dimensions = settings.dimensions;
        let mut vector = match (q.text, q.vector) {
            (Some(_), Some(_)) => {
                return Err(VectorError::bad(
                    "give either [query] or [vector], not both",
                ))
            }
            (None, None) => return Err(VectorError::bad("give [query] (text) or [vector]")),
            (Some(text), None) => {
                let mut v = pool.embed(vec![text]).await?;
                v.pop()
                    .ok_or_else(|| VectorError::Embedding("no vector for the query".into()))?
            }
            (None, Some(v)) => {
                if v.len() != dimensions {
                    return Err(VectorError::bad(format!(
                        "[vector] has {} dimensions, the index of [{topic}] has {dimensions}",
                        v.len()
                    )));
                }
                v
            }
        };
        if !prepare(settings.metric, &mut vector) {
            return Err(VectorError::bad(
                "[vector] must be finite (and not all zeros for the cosine metric)",
            ));
        }
        let (k, ef, time) = (q.k, q.ef.unwrap_or(settings.params.ef_search), q.time);
        blocking(move || {
            let mut hits: Vec<PartitionHit> = parts
                .iter()
                .flat_map(|p| p.search(&vector, k, ef, time))
                .collect();
            hits.sort_by(|a, b| b.score.total_cmp(&a.score));
            hits.truncate(k);
            Ok(hits)
        })
        .await
    }

    /// The topic's index, or `None` when no partition of it is open here.
    pub fn stats(&self, topic: &str) -> Option<TopicStats> {
        let parts = self.partitions_of(topic);
        let error = self.errors.read().get(topic).cloned();
        let (model, dimensions, metric) = match (parts.first(), self.embedders.default_pool()) {
            (Some(p), _) => (
                p.settings().model.clone(),
                p.settings().dimensions,
                p.settings().metric,
            ),
            (None, Ok(pool)) => (
                pool.provider().model_id().to_string(),
                pool.provider().dimensions().unwrap_or(0),
                VectorMetric::Cosine,
            ),
            (None, Err(_)) if error.is_some() => (String::new(), 0, VectorMetric::Cosine),
            (None, Err(_)) => return None,
        };
        Some(TopicStats {
            model,
            dimensions,
            metric,
            partitions: parts.iter().map(|p| p.stats()).collect(),
            error,
        })
    }

    /// Offsets of a partition a query can see now, ascending (conformance tests).
    pub fn visible_offsets(&self, topic: &str, partition: i32) -> Vec<i64> {
        self.partitions
            .read()
            .get(&(topic.to_string(), partition))
            .map_or_else(Vec::new, |p| p.index.visible_offsets())
    }

    /// The topic's pool and how the partition under `dir` is built. A remote provider whose
    /// vector length is not known yet is asked for it, unless the partition was built with the
    /// same model before: then the stored length is used, so a broker restarted while its
    /// endpoint is down still opens (and answers raw-vector queries from) its indexes. Should
    /// the endpoint answer with another length later, adding fails and the reopened partition
    /// starts afresh.
    async fn settings_for(
        &self,
        config: &TopicConfig,
        dir: &std::path::Path,
    ) -> Result<(EmbeddingPool, PartitionSettings), VectorError> {
        let pool = self.embedders.for_topic(&config.vector)?;
        let stored = || crate::store::stored_dimensions(dir, pool.provider().model_id());
        let dimensions = match pool.provider().dimensions().or_else(stored) {
            Some(d) => d,
            None => pool.dimensions().await?,
        };
        let v = &config.vector;
        if v.dimensions != 0 && v.dimensions != dimensions {
            return Err(VectorError::Unsupported(format!(
                "vector.embedding.dimensions is {} but the {} model gives {dimensions}",
                v.dimensions,
                pool.provider().model_id(),
            )));
        }
        let settings = PartitionSettings {
            metric: v.metric,
            params: HnswParams {
                m: v.m,
                ef_construction: v.ef_construction,
                ef_search: v.ef_search,
            },
            model: pool.provider().model_id().to_string(),
            dimensions,
            compacted: config.cleanup_policy.compact,
        };
        Ok((pool, settings))
    }
}

#[async_trait]
impl Indexer for VectorIndexer {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn enabled(&self, config: &TopicConfig) -> bool {
        config.vector.enabled
    }

    async fn open_partition(
        &self,
        topic: &str,
        partition: i32,
        config: &TopicConfig,
        log_start: i64,
    ) -> chronik_index::Result<i64> {
        if let Some(open) = self.partitions.read().get(&(topic.to_string(), partition)) {
            return Ok(open.index.indexed());
        }
        let dir = self.root.join(topic).join(partition.to_string());
        let (pool, settings) = self.settings_for(config, &dir).await.map_err(|e| {
            self.errors.write().insert(topic.to_string(), e.to_string());
            failed(e)
        })?;
        let (index, resume) =
            blocking(move || PartitionIndex::open(&dir, partition, settings, log_start))
                .await
                .map_err(failed)?;
        let open = Open {
            index: Arc::new(index),
            field: config.vector.field.clone(),
            pool,
        };
        let mut partitions = self.partitions.write();
        let entry = partitions
            .entry((topic.to_string(), partition))
            .or_insert(open);
        tracing::debug!(topic, partition, resume, "vector index opened");
        Ok(entry.index.indexed().max(resume))
    }

    async fn index(&self, run: RecordRun<'_>) -> chronik_index::Result<()> {
        let open = self.get(run.topic, run.partition)?;
        let part = open.index.clone();
        let pool = open.pool.clone();
        let from = part.indexed();
        let compacted = part.settings().compacted;
        let records: Vec<&chronik_index::IndexRecord> =
            run.records.iter().filter(|r| r.offset >= from).collect();
        // A long backlog is embedded and added slice by slice, so it shows up (stats, and the
        // next publish) as it goes rather than all at once.
        let mut at = 0;
        loop {
            let mut slice = Vec::new();
            let mut texts = Vec::new();
            let mut skipped = 0u64;
            while at < records.len() && texts.len() < EMBED_SLICE {
                let r = records[at];
                at += 1;
                let new = NewRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.clone(),
                    value: r.value.clone(),
                    vector: None,
                };
                if r.value.is_none() && compacted {
                    slice.push((new, None));
                    continue;
                }
                match text_of(&open.field, r.key.as_deref(), r.value.as_deref()) {
                    Some(text) => {
                        slice.push((new, Some(texts.len())));
                        texts.push(text);
                    }
                    None => skipped += 1,
                }
            }
            let mut vectors: Vec<Option<Vec<f32>>> = match pool.embed(texts).await {
                Ok(v) => v.into_iter().map(Some).collect(),
                // Nothing of this slice was added and the index is intact: it stays open
                // (raw-vector queries keep working) and the pipeline offers the slice again.
                Err(e) => {
                    let reason = e.to_string();
                    self.errors
                        .write()
                        .insert(run.topic.to_string(), reason.clone());
                    return Err(IndexError::Deferred {
                        kind: KIND,
                        reason,
                        resume: part.indexed(),
                    });
                }
            };
            let batch: Vec<NewRecord> = slice
                .into_iter()
                .map(|(mut r, i)| {
                    r.vector = i.and_then(|i| vectors[i].take());
                    r
                })
                .collect();
            let next = records.get(at).map_or(run.next_offset, |r| r.offset);
            let p = part.clone();
            let result = blocking(move || p.add(batch, skipped, next)).await;
            self.evict_on_error(run.topic, &part, result)?;
            if at >= records.len() {
                break;
            }
        }
        self.errors.write().remove(run.topic);
        Ok(())
    }

    async fn publish(&self, topic: &str, partition: i32) -> chronik_index::Result<()> {
        self.get(topic, partition)?.index.publish();
        Ok(())
    }

    async fn persist(&self, topic: &str, partition: i32) -> chronik_index::Result<i64> {
        let part = self.get(topic, partition)?.index;
        let p = part.clone();
        let result = blocking(move || p.persist()).await;
        self.evict_on_error(topic, &part, result)
    }

    async fn forget_before(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> chronik_index::Result<()> {
        self.get(topic, partition)?.index.forget_before(offset);
        Ok(())
    }

    async fn close_partition(&self, topic: &str, partition: i32) -> chronik_index::Result<()> {
        let Some(open) = self
            .partitions
            .write()
            .remove(&(topic.to_string(), partition))
        else {
            return Ok(());
        };
        blocking(move || open.index.persist().map(|_| ()))
            .await
            .map_err(failed)
    }

    async fn drop_topic(&self, topic: &str) -> chronik_index::Result<()> {
        {
            let mut partitions = self.partitions.write();
            partitions.retain(|(t, _), _| t != topic);
        }
        self.errors.write().remove(topic);
        let dir = self.root.join(topic);
        blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VectorError::io(format!("removing {}", dir.display()), e)),
        })
        .await
        .map_err(failed)
    }

    async fn known_topics(&self) -> chronik_index::Result<Vec<String>> {
        let root = self.root.clone();
        blocking(move || {
            let entries = match std::fs::read_dir(&root) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(VectorError::io(format!("listing {}", root.display()), e)),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry =
                    entry.map_err(|e| VectorError::io(format!("listing {}", root.display()), e))?;
                if entry.path().is_dir() {
                    out.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(failed)
    }
}
