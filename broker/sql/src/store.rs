//! The columnar store: per topic an inferred schema, per partition a hot buffer of recent
//! records (published as Arrow batches) and the sealed Parquet files. Every query takes a
//! [`Snapshot`] of a partition under its lock, and a seal swaps records from hot to cold under
//! the same lock, so a query sees each record exactly once at any moment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Mutex, RwLock};

use crate::cold::{self, ColdFile};
use crate::rows::{build_batch, HotRecord};
use crate::schema::TopicSchema;
use crate::{SqlConfig, SqlError};

/// Published hot batches are merged into one when there are more than this many, so a
/// partition that publishes every few milliseconds does not hand queries thousands of slivers.
const MAX_HOT_BATCHES: usize = 32;

#[derive(Debug)]
pub struct Store {
    pub(crate) config: SqlConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Bytes held by every hot buffer of the node.
    hot_bytes: AtomicUsize,
}

#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub(crate) schema: RwLock<TopicSchema>,
    partitions: RwLock<BTreeMap<i32, Arc<Partition>>>,
}

#[derive(Debug)]
pub struct Partition {
    pub id: i32,
    dir: PathBuf,
    state: Mutex<PartitionState>,
}

#[derive(Debug)]
struct PartitionState {
    cold: Vec<ColdFile>,
    /// Where the hot buffer starts: the end of the last sealed file (the durable checkpoint),
    /// or where indexing started.
    checkpoint: i64,
    records: Vec<HotRecord>,
    /// `records[..published]` are visible, as `batches`.
    published: usize,
    /// The offset publishing covered up to (a run's `next_offset`).
    published_end: i64,
    /// The offset after the last indexed run.
    next: i64,
    batches: Vec<RecordBatch>,
    batches_version: u64,
    bytes: usize,
    oldest: Option<Instant>,
}

/// A consistent view of one partition: its sealed files and published hot batches.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub cold: Vec<ColdFile>,
    pub hot: Vec<RecordBatch>,
}

impl Store {
    pub fn new(config: SqlConfig) -> Self {
        Store {
            config,
            topics: RwLock::new(BTreeMap::new()),
            hot_bytes: AtomicUsize::new(0),
        }
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn hot_bytes(&self) -> usize {
        self.hot_bytes.load(Ordering::Relaxed)
    }

    fn topic_or_create(&self, name: &str) -> Arc<Topic> {
        if let Some(t) = self.topic(name) {
            return t;
        }
        self.topics
            .write()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Topic {
                    name: name.to_string(),
                    schema: RwLock::new(TopicSchema::default()),
                    partitions: RwLock::new(BTreeMap::new()),
                })
            })
            .clone()
    }

    fn partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<Topic>, Arc<Partition>), SqlError> {
        let t = self
            .topic(topic)
            .ok_or_else(|| SqlError::Internal(format!("columnar index of {topic} is not open")))?;
        let p = t
            .partitions
            .read()
            .get(&partition)
            .cloned()
            .ok_or_else(|| {
                SqlError::Internal(format!("columnar index of {topic}-{partition} is not open"))
            })?;
        Ok((t, p))
    }

    fn topic_dir(&self, topic: &str) -> PathBuf {
        self.config.dir.join(topic)
    }

    /// Open a partition from its files; returns the offset to resume indexing from.
    pub fn open_partition(
        &self,
        topic: &str,
        partition: i32,
        log_start: i64,
    ) -> Result<i64, SqlError> {
        let t = self.topic_or_create(topic);
        let dir = self.topic_dir(topic).join(partition.to_string());
        let mut files = Vec::new();
        for f in cold::list(&dir)? {
            if f.end <= log_start {
                std::fs::remove_file(&f.path).map_err(|e| SqlError::io(&f.path, e))?;
            } else if f.start < log_start {
                files.push(cold::rewrite_from(&f, log_start, self.props())?);
            } else {
                files.push(f);
            }
        }
        {
            let mut schema = t.schema.write();
            for f in &files {
                let stored = cold::read_schema(&f.path)?;
                schema.merge_arrow(stored.as_ref());
            }
        }
        let checkpoint = files
            .iter()
            .map(|f| f.end)
            .max()
            .unwrap_or(log_start)
            .max(log_start);
        let state = PartitionState {
            cold: files,
            checkpoint,
            records: Vec::new(),
            published: 0,
            published_end: checkpoint,
            next: checkpoint,
            batches: Vec::new(),
            batches_version: 0,
            bytes: 0,
            oldest: None,
        };
        let old = t.partitions.write().insert(
            partition,
            Arc::new(Partition {
                id: partition,
                dir,
                state: Mutex::new(state),
            }),
        );
        if let Some(old) = old {
            self.release(&old);
        }
        Ok(checkpoint)
    }

    fn release(&self, p: &Partition) {
        let bytes = std::mem::take(&mut p.state.lock().bytes);
        self.hot_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn props(&self) -> datafusion::parquet::file::properties::WriterProperties {
        cold::writer_properties(self.config.row_group_rows)
    }

    /// Buffer a run of records (not yet visible).
    pub fn index(
        &self,
        topic: &str,
        partition: i32,
        records: &[chronik_index::IndexRecord],
        next_offset: i64,
    ) -> Result<(), SqlError> {
        let (t, p) = self.partition(topic, partition)?;
        let mut st = p.state.lock();
        let fresh: Vec<&chronik_index::IndexRecord> =
            records.iter().filter(|r| r.offset >= st.next).collect();
        {
            let mut schema = t.schema.write();
            for r in &fresh {
                schema.observe_value(r.value.as_deref());
            }
        }
        let mut added = 0;
        for r in fresh {
            let h = HotRecord::from_index(r);
            added += h.size();
            st.records.push(h);
        }
        st.bytes += added;
        self.hot_bytes.fetch_add(added, Ordering::Relaxed);
        if added > 0 && st.oldest.is_none() {
            st.oldest = Some(Instant::now());
        }
        st.next = st.next.max(next_offset);
        Ok(())
    }

    /// Make every buffered record visible, then seal if a threshold is crossed.
    pub async fn publish(&self, topic: &str, partition: i32) -> Result<(), SqlError> {
        let (t, p) = self.partition(topic, partition)?;
        let seal = {
            let schema = t.schema.read().clone();
            let mut st = p.state.lock();
            if st.batches_version != schema.version && st.published > 0 {
                let batch = build_batch(p.id, &st.records[..st.published], &schema)?;
                st.batches = vec![batch];
            }
            st.batches_version = schema.version;
            if st.published < st.records.len() {
                let batch = build_batch(p.id, &st.records[st.published..], &schema)?;
                st.batches.push(batch);
                st.published = st.records.len();
            }
            st.published_end = st.next;
            if st.batches.len() > MAX_HOT_BATCHES {
                let merged = concat_batches(&schema.stored_arrow(), &st.batches)
                    .map_err(|e| SqlError::Internal(format!("cannot merge hot batches: {e}")))?;
                st.batches = vec![merged];
            }
            st.published > 0
                && (st.published >= self.config.seal_rows
                    || st.bytes >= self.config.seal_bytes
                    || self.hot_bytes() > self.config.hot_buffer_bytes)
        };
        if seal {
            self.seal(&t, &p).await?;
        }
        Ok(())
    }

    /// Seal if the hot buffer is old enough; returns the durable checkpoint.
    pub async fn persist(&self, topic: &str, partition: i32) -> Result<i64, SqlError> {
        let (t, p) = self.partition(topic, partition)?;
        let old = {
            let st = p.state.lock();
            st.published > 0
                && st
                    .oldest
                    .is_some_and(|o| o.elapsed() >= self.config.seal_age)
        };
        if old {
            self.seal(&t, &p).await?;
        }
        let checkpoint = p.state.lock().checkpoint;
        Ok(checkpoint)
    }

    /// Write the published hot records to a Parquet file, then swap them from hot to cold in
    /// one step under the partition lock.
    async fn seal(&self, t: &Topic, p: &Arc<Partition>) -> Result<(), SqlError> {
        let (records, start, end) = {
            let st = p.state.lock();
            (
                st.records[..st.published].to_vec(),
                st.checkpoint,
                st.published_end,
            )
        };
        if records.is_empty() || end <= start {
            return Ok(());
        }
        let schema = t.schema.read().clone();
        let dir = p.dir.clone();
        let props = self.props();
        let chunk = self.config.row_group_rows.max(1);
        let id = p.id;
        let count = records.len();
        let file = tokio::task::spawn_blocking(move || {
            let batches = records
                .chunks(chunk)
                .map(|c| build_batch(id, c, &schema))
                .collect::<Result<Vec<_>, _>>()?;
            cold::write(&dir, start, end, schema.stored_arrow(), &batches, props)
        })
        .await
        .map_err(|e| SqlError::Internal(format!("seal task failed: {e}")))??;
        let mut st = p.state.lock();
        let freed: usize = st.records[..count].iter().map(HotRecord::size).sum();
        st.records.drain(..count);
        st.published -= count;
        st.batches.clear();
        st.cold.push(file);
        st.checkpoint = end;
        st.bytes -= freed;
        self.hot_bytes.fetch_sub(freed, Ordering::Relaxed);
        st.oldest = (!st.records.is_empty()).then(Instant::now);
        if st.published > 0 {
            // Only reachable if records were published while the file was written.
            let schema = t.schema.read().clone();
            st.batches = vec![build_batch(p.id, &st.records[..st.published], &schema)?];
        }
        crate::metrics::metrics().seals.inc();
        tracing::debug!(topic = %t.name, partition = p.id, start, end, rows = count, "sealed hot buffer");
        Ok(())
    }

    /// Remove records below `offset` from the hot buffer and the files.
    pub fn forget_before(&self, topic: &str, partition: i32, offset: i64) -> Result<(), SqlError> {
        let (t, p) = self.partition(topic, partition)?;
        let schema = t.schema.read().clone();
        let mut st = p.state.lock();
        let dropped_published = st.records[..st.published]
            .iter()
            .filter(|r| r.offset < offset)
            .count();
        let freed: usize = st
            .records
            .iter()
            .filter(|r| r.offset < offset)
            .map(HotRecord::size)
            .sum();
        if freed > 0 || dropped_published > 0 {
            st.records.retain(|r| r.offset >= offset);
            st.published -= dropped_published;
            st.bytes -= freed;
            self.hot_bytes.fetch_sub(freed, Ordering::Relaxed);
            st.batches = if st.published > 0 {
                vec![build_batch(p.id, &st.records[..st.published], &schema)?]
            } else {
                Vec::new()
            };
            st.batches_version = schema.version;
        }
        let mut kept = Vec::with_capacity(st.cold.len());
        for f in std::mem::take(&mut st.cold) {
            if f.end <= offset {
                std::fs::remove_file(&f.path).map_err(|e| SqlError::io(&f.path, e))?;
            } else if f.start < offset {
                kept.push(cold::rewrite_from(&f, offset, self.props())?);
            } else {
                kept.push(f);
            }
        }
        st.cold = kept;
        Ok(())
    }

    pub fn close_partition(&self, topic: &str, partition: i32) {
        if let Some(t) = self.topic(topic) {
            if let Some(p) = t.partitions.write().remove(&partition) {
                self.release(&p);
            }
        }
    }

    pub fn drop_topic(&self, topic: &str) -> Result<(), SqlError> {
        if let Some(t) = self.topics.write().remove(topic) {
            for p in t.partitions.read().values() {
                self.release(p);
            }
        }
        let dir = self.topic_dir(topic);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SqlError::io(&dir, e)),
        }
    }

    /// Topics with files on disk or open in memory.
    pub fn known_topics(&self) -> Result<Vec<String>, SqlError> {
        let mut out: Vec<String> = self.topics.read().keys().cloned().collect();
        match std::fs::read_dir(&self.config.dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        out.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SqlError::io(&self.config.dir, e)),
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl Topic {
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }
}

impl Partition {
    pub fn snapshot(&self) -> Snapshot {
        let st = self.state.lock();
        Snapshot {
            cold: st.cold.clone(),
            hot: st.batches.clone(),
        }
    }
}
