//! The conformance suite every [`Indexer`] runs (feature `testing`): the resume, replay,
//! publish, retention and drop semantics the pipeline relies on, checked through the index's
//! own query path. An implementation provides a [`Harness`] and calls [`run_all`] from a test.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chronik_meta::TopicConfig;

use crate::{IndexRecord, Indexer, RecordHeader, RecordRun};

/// How the suite drives one index implementation.
#[async_trait]
pub trait Harness: Send + Sync {
    /// An indexer keeping its state under `dir`. Opening the same `dir` again after dropping
    /// the previous one (without closing anything) is a crash and restart.
    async fn open(&self, dir: &Path) -> Arc<dyn Indexer>;
    /// A topic configuration that enables this index.
    fn config(&self) -> TopicConfig;
    /// Offsets of the partition's records that a query sees now, ascending, duplicates kept.
    async fn visible_offsets(
        &self,
        indexer: &Arc<dyn Indexer>,
        topic: &str,
        partition: i32,
    ) -> Vec<i64>;
}

/// A JSON record at `offset`, as a producer would write it.
pub fn record(offset: i64) -> IndexRecord {
    IndexRecord {
        offset,
        timestamp: 1_700_000_000_000 + offset,
        key: Some(Bytes::from(format!("k{}", offset % 5))),
        value: Some(Bytes::from(format!(
            r#"{{"n": {offset}, "text": "record number {offset}", "even": {}}}"#,
            offset % 2 == 0
        ))),
        headers: vec![RecordHeader {
            key: "h".into(),
            value: Some(Bytes::from_static(b"v")),
        }],
        batch: None,
    }
}

/// Index `offsets` (ascending) in runs of at most `run_len`, the last ending at `next_offset`.
pub async fn feed(
    indexer: &Arc<dyn Indexer>,
    topic: &str,
    partition: i32,
    offsets: &[i64],
    next_offset: i64,
    run_len: usize,
) {
    let records: Vec<IndexRecord> = offsets.iter().map(|o| record(*o)).collect();
    let chunks: Vec<&[IndexRecord]> = records.chunks(run_len.max(1)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let end = if i + 1 == chunks.len() {
            next_offset
        } else {
            chunks[i + 1][0].offset
        };
        indexer
            .index(RecordRun {
                topic,
                partition,
                records: chunk,
                next_offset: end,
            })
            .await
            .expect("index");
    }
}

fn range(from: i64, to: i64) -> Vec<i64> {
    (from..to).collect()
}

/// Run every check; each uses its own directory and panics with what went wrong.
pub async fn run_all(h: &dyn Harness) {
    new_partition_starts_at_log_start(h).await;
    publish_makes_runs_visible(h).await;
    crash_then_replay_is_exact(h).await;
    close_then_reopen_is_exact(h).await;
    offsets_with_holes(h).await;
    forget_before_hides_old_records(h).await;
    drop_topic_removes_everything(h).await;
    partitions_are_independent(h).await;
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub async fn new_partition_starts_at_log_start(h: &dyn Harness) {
    let d = dir();
    let ix = h.open(d.path()).await;
    let c = h.config();
    assert_eq!(ix.open_partition("t", 0, &c, 0).await.unwrap(), 0);
    assert_eq!(ix.open_partition("t", 1, &c, 42).await.unwrap(), 42);
    assert!(h.visible_offsets(&ix, "t", 0).await.is_empty());
}

pub async fn publish_makes_runs_visible(h: &dyn Harness) {
    let d = dir();
    let ix = h.open(d.path()).await;
    ix.open_partition("t", 0, &h.config(), 0).await.unwrap();
    feed(&ix, "t", 0, &range(0, 10), 10, 4).await;
    assert!(
        h.visible_offsets(&ix, "t", 0).await.is_empty(),
        "records are visible before publish"
    );
    ix.publish("t", 0).await.unwrap();
    assert_eq!(h.visible_offsets(&ix, "t", 0).await, range(0, 10));
    feed(&ix, "t", 0, &range(10, 25), 25, 100).await;
    ix.publish("t", 0).await.unwrap();
    assert_eq!(h.visible_offsets(&ix, "t", 0).await, range(0, 25));
    let checkpoint = ix.persist("t", 0).await.unwrap();
    assert!(
        (0..=25).contains(&checkpoint),
        "checkpoint {checkpoint} outside what was indexed"
    );
}

/// Index, persist, index more, crash; after reopening and replaying from the resume offset the
/// index holds every record exactly once.
pub async fn crash_then_replay_is_exact(h: &dyn Harness) {
    let d = dir();
    let checkpoint = {
        let ix = h.open(d.path()).await;
        ix.open_partition("t", 0, &h.config(), 0).await.unwrap();
        feed(&ix, "t", 0, &range(0, 30), 30, 8).await;
        ix.publish("t", 0).await.unwrap();
        let checkpoint = ix.persist("t", 0).await.unwrap();
        feed(&ix, "t", 0, &range(30, 50), 50, 8).await;
        ix.publish("t", 0).await.unwrap();
        checkpoint
    };
    let ix = h.open(d.path()).await;
    let resume = ix.open_partition("t", 0, &h.config(), 0).await.unwrap();
    assert!(
        resume >= checkpoint && resume <= 50,
        "resume {resume} is not between the checkpoint {checkpoint} and the indexed end 50"
    );
    feed(&ix, "t", 0, &range(resume, 60), 60, 8).await;
    ix.publish("t", 0).await.unwrap();
    assert_eq!(h.visible_offsets(&ix, "t", 0).await, range(0, 60));
}

pub async fn close_then_reopen_is_exact(h: &dyn Harness) {
    let d = dir();
    {
        let ix = h.open(d.path()).await;
        ix.open_partition("t", 0, &h.config(), 0).await.unwrap();
        feed(&ix, "t", 0, &range(0, 40), 40, 16).await;
        ix.publish("t", 0).await.unwrap();
        ix.persist("t", 0).await.unwrap();
        ix.close_partition("t", 0).await.unwrap();
    }
    let ix = h.open(d.path()).await;
    let resume = ix.open_partition("t", 0, &h.config(), 0).await.unwrap();
    assert!((0..=40).contains(&resume), "resume {resume}");
    feed(&ix, "t", 0, &range(resume, 45), 45, 16).await;
    ix.publish("t", 0).await.unwrap();
    assert_eq!(h.visible_offsets(&ix, "t", 0).await, range(0, 45));
}

/// Compaction leaves holes in offsets; a run's `next_offset` may lie past its last record.
pub async fn offsets_with_holes(h: &dyn Harness) {
    let d = dir();
    let ix = h.open(d.path()).await;
    ix.open_partition("t", 0, &h.config(), 0).await.unwrap();
    let offsets = vec![0, 3, 4, 9, 15];
    feed(&ix, "t", 0, &offsets, 20, 2).await;
    feed(&ix, "t", 0, &[], 25, 2).await;
    ix.publish("t", 0).await.unwrap();
    assert_eq!(h.visible_offsets(&ix, "t", 0).await, offsets);
}

pub async fn forget_before_hides_old_records(h: &dyn Harness) {
    let d = dir();
    {
        let ix = h.open(d.path()).await;
        ix.open_partition("t", 0, &h.config(), 0).await.unwrap();
        feed(&ix, "t", 0, &range(0, 30), 30, 10).await;
        ix.publish("t", 0).await.unwrap();
        ix.persist("t", 0).await.unwrap();
        ix.forget_before("t", 0, 12).await.unwrap();
        ix.publish("t", 0).await.unwrap();
        assert_eq!(h.visible_offsets(&ix, "t", 0).await, range(12, 30));
    }
    // A restart with the log start past some indexed records keeps them hidden.
    let ix = h.open(d.path()).await;
    let resume = ix.open_partition("t", 0, &h.config(), 20).await.unwrap();
    assert!((20..=30).contains(&resume), "resume {resume}");
    feed(&ix, "t", 0, &range(resume, 35), 35, 10).await;
    ix.publish("t", 0).await.unwrap();
    assert_eq!(h.visible_offsets(&ix, "t", 0).await, range(20, 35));
}

pub async fn drop_topic_removes_everything(h: &dyn Harness) {
    let d = dir();
    let ix = h.open(d.path()).await;
    ix.open_partition("t", 0, &h.config(), 0).await.unwrap();
    ix.open_partition("u", 0, &h.config(), 0).await.unwrap();
    feed(&ix, "t", 0, &range(0, 10), 10, 10).await;
    feed(&ix, "u", 0, &range(0, 5), 5, 10).await;
    for t in ["t", "u"] {
        ix.publish(t, 0).await.unwrap();
        ix.persist(t, 0).await.unwrap();
    }
    ix.close_partition("t", 0).await.unwrap();
    ix.drop_topic("t").await.unwrap();
    let known = ix.known_topics().await.unwrap();
    assert!(
        !known.contains(&"t".to_string()),
        "dropped topic still known: {known:?}"
    );
    drop(ix);
    let ix = h.open(d.path()).await;
    assert_eq!(ix.open_partition("t", 0, &h.config(), 0).await.unwrap(), 0);
    assert!(h.visible_offsets(&ix, "t", 0).await.is_empty());
    let resume = ix.open_partition("u", 0, &h.config(), 0).await.unwrap();
    feed(&ix, "u", 0, &range(resume, 5), 5, 10).await;
    ix.publish("u", 0).await.unwrap();
    assert_eq!(h.visible_offsets(&ix, "u", 0).await, range(0, 5));
}

pub async fn partitions_are_independent(h: &dyn Harness) {
    let d = dir();
    let ix = h.open(d.path()).await;
    for p in 0..3 {
        ix.open_partition("t", p, &h.config(), 0).await.unwrap();
    }
    feed(&ix, "t", 0, &range(0, 10), 10, 3).await;
    feed(&ix, "t", 2, &range(0, 4), 4, 3).await;
    ix.publish("t", 0).await.unwrap();
    ix.publish("t", 2).await.unwrap();
    assert_eq!(h.visible_offsets(&ix, "t", 0).await, range(0, 10));
    assert!(h.visible_offsets(&ix, "t", 1).await.is_empty());
    assert_eq!(h.visible_offsets(&ix, "t", 2).await, range(0, 4));
}
