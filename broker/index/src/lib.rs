//! Indexes built from partition logs, off the produce path.
//!
//! This crate owns the [`Indexer`] seam every index kind implements (columnar/SQL, full-text
//! search, vectors) and the pipeline that tails each partition's log after the write, decodes
//! and decompresses each stored batch once, and hands the same [`RecordRun`] to every indexer
//! enabled for the topic. Indexers never see the produce path: a slow or failing indexer falls
//! behind (its lag is a metric) and catches up from the log, it never slows a producer.
//!
//! Durability contract: each indexer owns its checkpoint and stores it atomically with its
//! data (a Tantivy commit payload, an offset range in a Parquet file's name), so that after a
//! crash the data and the checkpoint agree. The pipeline asks [`Indexer::open_partition`] where
//! to resume and replays the log from there; it never writes an indexer's state itself.

#[cfg(feature = "testing")]
pub mod conformance;
mod decode;
mod error;
mod metrics;
pub mod pipeline;

pub use decode::{decode_batches, Decoded};
pub use error::IndexError;
pub use metrics::{metrics, IndexMetrics};
pub use pipeline::{PartitionLogs, Pipeline, PipelineConfig};

use async_trait::async_trait;
use bytes::Bytes;
use chronik_meta::TopicConfig;

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// One record header as produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One record of a stored batch, decoded once by the pipeline and shared by every indexer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRecord {
    pub offset: i64,
    /// Milliseconds since the epoch: the record's create time, or the batch's max timestamp
    /// when the topic uses log append time.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// `None` is a tombstone (a compacted topic's delete marker).
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
    /// The stored batch the record was decoded from. When that batch was not compressed, key
    /// and value are slices of it, so an index may keep references into it instead of copies.
    pub batch: Option<Bytes>,
}

/// A contiguous stretch of one partition's log, in offset order.
///
/// Control batches and records of aborted transactions are already removed, and compaction
/// leaves holes, so offsets in `records` may skip; `next_offset` is where the stretch ends and is
/// the checkpoint an indexer reaches once the run is durable.
#[derive(Debug, Clone, Copy)]
pub struct RecordRun<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub records: &'a [IndexRecord],
    pub next_offset: i64,
}

/// One kind of index over topics (one value serves every topic and partition of that kind).
///
/// To ensure correctness an implementation must:
/// - after `open_partition` returns `resume`, have every record below `resume` in its durable
///   state and nothing at or above it that a replay would add twice (records at offsets it has
///   already stored are ignored when replayed);
/// - make indexed records visible to queries only on `publish`, so a query never sees half of
///   a run;
/// - keep its checkpoint atomic with its data: `persist` returns an offset only once both are
///   durable;
/// - never block the caller's thread on CPU-heavy work without yielding (embedding, merging):
///   the pipeline runs many partitions on a shared runtime.
#[async_trait]
pub trait Indexer: Send + Sync + std::fmt::Debug {
    /// Short stable name ("columnar", "search", "vector"): metrics label and directory name.
    fn kind(&self) -> &'static str;

    /// Whether this index is enabled for a topic with `config`.
    fn enabled(&self, config: &TopicConfig) -> bool;

    /// Open (or create) the partition's index and return the offset to resume indexing from:
    /// the log start offset for a new index, its durable checkpoint otherwise. `log_start` is
    /// the partition log's current start offset; anything the index holds below it may be
    /// dropped.
    async fn open_partition(
        &self,
        topic: &str,
        partition: i32,
        config: &TopicConfig,
        log_start: i64,
    ) -> Result<i64>;

    /// Add a run of records. Runs of one partition arrive in offset order and start at or after
    /// the offset `open_partition` (or the previous run) ended at. May buffer.
    async fn index(&self, run: RecordRun<'_>) -> Result<()>;

    /// Make everything indexed so far for the partition visible to queries. The pipeline calls
    /// this on a short cadence (well under a second) after new runs.
    async fn publish(&self, topic: &str, partition: i32) -> Result<()>;

    /// Make what has been indexed durable together with its checkpoint; returns the checkpoint
    /// (the offset indexing would resume from after a crash now).
    async fn persist(&self, topic: &str, partition: i32) -> Result<i64>;

    /// The log start offset moved (retention, DeleteRecords): records below `offset` are gone
    /// from the log and should disappear from query results.
    async fn forget_before(&self, topic: &str, partition: i32, offset: i64) -> Result<()>;

    /// Close the partition's index (the broker stops leading it or shuts down), persisting first.
    async fn close_partition(&self, topic: &str, partition: i32) -> Result<()>;

    /// Delete every trace of the topic (DeleteTopics, or the index was disabled).
    async fn drop_topic(&self, topic: &str) -> Result<()>;

    /// Topics this index holds data for (open or only on disk). At start-up the pipeline drops
    /// those whose topic was deleted, or whose index disabled, while the broker was down. The
    /// default (nothing known) leaves such leftovers in place.
    async fn known_topics(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
