//! The columnar store: per topic an inferred schema, per partition a hot buffer of recent
//! records (published as Arrow batches) and the sealed Parquet files. Every query takes a
//! [`Snapshot`] of a partition under its lock, and a seal swaps records from hot to cold under
//! the same lock, so a query sees each record exactly once at any moment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Mutex, RwLock};

use crate::cold::{self, ColdFile};
use crate::hot_batches::HotBatches;
use crate::json_fields::RecordValue;
use crate::rows::{build_batch, builder_over, BatchBuilder, HotRecord};
use crate::schema::TopicSchema;
use crate::{SqlConfig, SqlError};

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
    /// `records[..published]` are visible, as `hot`.
    published: usize,
    /// The offset publishing covered up to (a run's `next_offset`).
    published_end: i64,
    /// The offset after the last indexed run.
    next: i64,
    hot: HotBatches,
    /// `records[published..]` as rows, when built under a schema version still current.
    open: Option<BatchBuilder>,
    bytes: usize,
    oldest: Option<Instant>,
}

impl PartitionState {
    /// Replace the hot batches by one batch of every published record under `schema`.
    fn rebuild_published(&mut self, partition: i32, schema: &TopicSchema) -> Result<(), SqlError> {
        if self.published > 0 {
            let batch = build_batch(partition, &self.records[..self.published], schema)?;
            self.hot.replace(batch, schema.version);
        } else {
            self.hot.reset(schema.version);
        }
        Ok(())
    }
}

/// What a seal writes: the published batches when they are current, else the records to
/// build them from.
enum SealRows {
    Built(Vec<RecordBatch>),
    Records(Vec<HotRecord>),
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
            hot: HotBatches::default(),
            open: None,
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
        let mut guard = p.state.lock();
        let st = &mut *guard;
        let fresh = records.iter().filter(|r| r.offset >= st.next);
        let mut added = 0;
        for r in fresh {
            let value = RecordValue::read(r.value.as_deref());
            let version = {
                let schema = t.schema.read();
                if schema.fits(&value) {
                    schema.version
                } else {
                    drop(schema);
                    let mut schema = t.schema.write();
                    schema.observe_record(&value);
                    schema.version
                }
            };
            if st.open.as_ref().is_none_or(|b| b.version() != version) {
                // First record since publishing, or the schema widened (here or in another
                // partition): rows so far are rebuilt under the new columns.
                let schema = t.schema.read().clone();
                st.open = Some(builder_over(p.id, &st.records[st.published..], schema));
            }
            let h = HotRecord::from_index(r);
            if let Some(b) = st.open.as_mut() {
                b.append(&h, &value);
            }
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
            let mut guard = p.state.lock();
            let st = &mut *guard;
            if st.hot.version() != schema.version {
                st.rebuild_published(p.id, &schema)?;
            }
            let unpublished = st.records.len() - st.published;
            if unpublished > 0 {
                let builder = match st.open.take() {
                    Some(b) if b.version() == schema.version && b.len() == unpublished => b,
                    _ => builder_over(p.id, &st.records[st.published..], schema.clone()),
                };
                st.hot
                    .push(builder.finish()?)
                    .map_err(|e| SqlError::Internal(format!("cannot merge hot batches: {e}")))?;
                st.published = st.records.len();
            }
            st.open = None;
            st.published_end = st.next;
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
        let schema = t.schema.read().clone();
        let (rows, start, end) = {
            let st = p.state.lock();
            let rows = if st.hot.version() == schema.version && st.hot.rows() == st.published {
                // The published batches are these very rows under this schema.
                SealRows::Built(st.hot.batches().to_vec())
            } else {
                SealRows::Records(st.records[..st.published].to_vec())
            };
            (rows, st.checkpoint, st.published_end)
        };
        let count = match &rows {
            SealRows::Built(batches) => batches.iter().map(RecordBatch::num_rows).sum(),
            SealRows::Records(records) => records.len(),
        };
        if count == 0 || end <= start {
            return Ok(());
        }
        let dir = p.dir.clone();
        let props = self.props();
        let chunk = self.config.row_group_rows.max(1);
        let id = p.id;
        let file = tokio::task::spawn_blocking(move || {
            let batches = match rows {
                SealRows::Built(batches) => batches,
                SealRows::Records(records) => records
                    .chunks(chunk)
                    .map(|c| build_batch(id, c, &schema))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            cold::write(&dir, start, end, schema.stored_arrow(), &batches, props)
        })
        .await
        .map_err(|e| SqlError::Internal(format!("seal task failed: {e}")))??;
        let mut st = p.state.lock();
        let freed: usize = st.records[..count].iter().map(HotRecord::size).sum();
        st.records.drain(..count);
        st.published -= count;
        st.cold.push(file);
        st.checkpoint = end;
        st.bytes -= freed;
        self.hot_bytes.fetch_sub(freed, Ordering::Relaxed);
        st.oldest = (!st.records.is_empty()).then(Instant::now);
        // The partition's indexing task is what publishes and seals, so nothing was published
        // while the file was written; rows of any later run are rebuilt when next published.
        let schema = t.schema.read().clone();
        st.rebuild_published(p.id, &schema)?;
        st.open = None;
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
            st.rebuild_published(p.id, &schema)?;
            st.open = None;
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
            hot: st.hot.batches().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use chronik_index::IndexRecord;
    use datafusion::arrow::compute::{cast, concat_batches};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    /// A record whose value is a slice of a stored batch (as the log hands values over).
    fn record(offset: i64, value: Option<&str>) -> IndexRecord {
        let batch = Bytes::from(format!("<batch>{}</batch>", value.unwrap_or_default()));
        IndexRecord {
            offset,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from(format!("k{offset}"))),
            value: value.map(|v| batch.slice(7..7 + v.len())),
            headers: Vec::new(),
            batch: Some(batch),
        }
    }

    fn run(from: i64, values: &[Option<&str>]) -> Vec<IndexRecord> {
        (0..)
            .zip(values)
            .map(|(i, v)| record(from + i, *v))
            .collect()
    }

    /// All of `records` built from scratch under the topic's current schema.
    fn rebuilt(store: &Store, partition: i32, records: &[IndexRecord]) -> RecordBatch {
        let schema = store.topic("t").unwrap().schema.read().clone();
        let hot: Vec<HotRecord> = records.iter().map(HotRecord::from_index).collect();
        build_batch(partition, &hot, &schema).unwrap()
    }

    fn snapshot(store: &Store, partition: i32) -> Snapshot {
        let t = store.topic("t").unwrap();
        let p = t.partitions().into_iter().find(|p| p.id == partition);
        p.unwrap().snapshot()
    }

    fn published(store: &Store, partition: i32) -> RecordBatch {
        let schema = store.topic("t").unwrap().schema.read().hot_arrow();
        concat_batches(&schema, &snapshot(store, partition).hot).unwrap()
    }

    fn sealed(store: &Store, partition: i32) -> Vec<RecordBatch> {
        snapshot(store, partition)
            .cold
            .iter()
            .map(|f| {
                let file = std::fs::File::open(&f.path).unwrap();
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
                let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
                let stored = concat_batches(&batches[0].schema(), &batches).unwrap();
                // Files keep strings as `Utf8`; hot batches hold them as views.
                let hot = crate::schema::scan_form(&stored.schema());
                let columns = stored
                    .columns()
                    .iter()
                    .zip(hot.fields())
                    .map(|(c, f)| cast(c, f.data_type()).unwrap())
                    .collect();
                RecordBatch::try_new(hot, columns).unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn rows_built_while_indexing_equal_a_rebuild_under_the_final_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SqlConfig::new(dir.path().to_path_buf());
        config.seal_age = Duration::ZERO;
        let store = Store::new(config);
        store.open_partition("t", 0, 0).unwrap();
        store.open_partition("t", 1, 0).unwrap();

        // A column appears in the middle of a run.
        let first = run(0, &[Some(r#"{"a": 1}"#), Some(r#"{"a": 2, "b": "x"}"#)]);
        store.index("t", 0, &first, 2).unwrap();
        // Another partition widens `a` to a float while partition 0 has unpublished rows.
        store
            .index("t", 1, &run(0, &[Some(r#"{"a": 1.5}"#)]), 1)
            .unwrap();
        let second = run(
            2,
            &[
                Some(r#"{"a": 3, "b": "y"}"#),
                None,
                Some("not json"),
                Some(r#"{"c": [1, {"d": 2}]}"#),
            ],
        );
        store.index("t", 0, &second, 6).unwrap();
        store.publish("t", 0).await.unwrap();
        let all: Vec<IndexRecord> = first.iter().chain(&second).cloned().collect();
        assert_eq!(published(&store, 0), rebuilt(&store, 0, &all));

        // Several publishes of rows that fit: merged tiers still read as the same rows.
        let mut more = all.clone();
        for i in 0..20 {
            let offset = 6 + i;
            let value = format!(r#"{{"a": {i}, "b": "v{i}"}}"#);
            let r = run(offset, &[Some(value.as_str())]);
            store.index("t", 0, &r, offset + 1).unwrap();
            store.publish("t", 0).await.unwrap();
            more.extend(r);
        }
        assert_eq!(published(&store, 0), rebuilt(&store, 0, &more));

        // The schema widens in another partition between indexing and publishing.
        let r = run(26, &[Some(r#"{"a": 8}"#)]);
        store.index("t", 0, &r, 27).unwrap();
        store
            .index("t", 1, &run(1, &[Some(r#"{"a": "text"}"#)]), 2)
            .unwrap();
        store.publish("t", 0).await.unwrap();
        more.extend(r);
        assert_eq!(published(&store, 0), rebuilt(&store, 0, &more));

        // Sealing writes the published batches as they are...
        store.persist("t", 0).await.unwrap();
        assert_eq!(sealed(&store, 0), vec![rebuilt(&store, 0, &more)]);
        assert!(store.topic("t").unwrap().partitions()[0]
            .snapshot()
            .hot
            .is_empty());

        // ...or rebuilds the rows when the schema widened after they were published.
        let last = run(27, &[Some(r#"{"a": 7}"#)]);
        store.index("t", 0, &last, 28).unwrap();
        store.publish("t", 0).await.unwrap();
        store
            .index("t", 1, &run(2, &[Some(r#"{"e": true}"#)]), 3)
            .unwrap();
        store.persist("t", 0).await.unwrap();
        let files = sealed(&store, 0);
        assert_eq!(files.len(), 2);
        assert_eq!(files[1], rebuilt(&store, 0, &last));
    }
}
