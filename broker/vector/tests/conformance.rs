//! The shared Indexer conformance suite, run against the vector index with the real local
//! model, plus the vector-specific behaviour of the indexer (fields, filters, compaction,
//! metrics, restart) through its query side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chronik_index::conformance::{self, Harness};
use chronik_index::{IndexRecord, Indexer, RecordRun};
use chronik_meta::TopicConfig;
use chronik_vector::{
    Embedders, EmbeddingPool, LocalProvider, TimeRange, VectorError, VectorIndexer, VectorQuery,
};

fn model_dir() -> PathBuf {
    match std::env::var_os("CHRONIK_EMBEDDING_MODEL_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME"))
            .join(".cache/chronik-models/all-minilm-l6-v2"),
    }
}

fn pool() -> EmbeddingPool {
    static PROVIDER: std::sync::OnceLock<Arc<LocalProvider>> = std::sync::OnceLock::new();
    let p = PROVIDER.get_or_init(|| {
        Arc::new(LocalProvider::load(model_dir()).unwrap_or_else(|e| panic!("{e}")))
    });
    EmbeddingPool::new(p.clone(), 1)
}

fn config(pairs: &[(&str, &str)]) -> TopicConfig {
    let mut m: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.insert("vector.enabled".into(), "true".into());
    TopicConfig::from_overrides(&m)
}

/// Opens real VectorIndexers and remembers them, to query the one the suite holds.
#[derive(Default)]
struct VectorHarness {
    opened: parking_lot::Mutex<Vec<Arc<VectorIndexer>>>,
}

#[async_trait]
impl Harness for VectorHarness {
    async fn open(&self, dir: &Path) -> Arc<dyn Indexer> {
        let ix = Arc::new(VectorIndexer::new(dir, Embedders::local_only(pool())));
        self.opened.lock().push(ix.clone());
        ix
    }
    fn config(&self) -> TopicConfig {
        config(&[])
    }
    async fn visible_offsets(
        &self,
        ix: &Arc<dyn Indexer>,
        topic: &str,
        partition: i32,
    ) -> Vec<i64> {
        let ours = self
            .opened
            .lock()
            .iter()
            .find(|o| std::ptr::addr_eq(Arc::as_ptr(o), Arc::as_ptr(ix)))
            .cloned()
            .expect("an indexer this harness opened");
        let offsets = ours.visible_offsets(topic, partition);
        // The query path agrees with the visibility bookkeeping.
        if !offsets.is_empty() {
            let hits = ours
                .search(
                    topic,
                    &config(&[]).vector,
                    VectorQuery {
                        text: Some("record number".into()),
                        k: 10_000,
                        partitions: Some(vec![partition]),
                        ..Default::default()
                    },
                )
                .await
                .expect("search");
            let mut found: Vec<i64> = hits.iter().map(|h| h.offset).collect();
            found.sort_unstable();
            assert_eq!(found, offsets, "search and visibility disagree");
        }
        offsets
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexer_conformance() {
    conformance::run_all(&VectorHarness::default()).await;
}

fn rec(offset: i64, key: Option<&str>, value: Option<&str>) -> IndexRecord {
    IndexRecord {
        offset,
        timestamp: 1_000 * offset,
        key: key.map(|k| Bytes::from(k.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers: Vec::new(),
        batch: None,
    }
}

async fn feed(ix: &VectorIndexer, topic: &str, partition: i32, records: &[IndexRecord]) {
    let next = records.last().map_or(0, |r| r.offset + 1);
    ix.index(RecordRun {
        topic,
        partition,
        records,
        next_offset: next,
    })
    .await
    .expect("index");
    ix.publish(topic, partition).await.expect("publish");
}

fn q(text: &str, k: usize) -> VectorQuery {
    VectorQuery {
        text: Some(text.into()),
        k,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_path_field_skips_events_without_it() {
    let d = tempfile::tempdir().unwrap();
    let ix = VectorIndexer::new(d.path(), Embedders::local_only(pool()));
    let c = config(&[("vector.field", "$.doc.text")]);
    ix.open_partition("t", 0, &c, 0).await.unwrap();
    feed(
        &ix,
        "t",
        0,
        &[
            rec(
                0,
                None,
                Some(r#"{"doc": {"text": "the database ran out of connections"}}"#),
            ),
            rec(1, None, Some(r#"{"doc": {"other": "no text here"}}"#)),
            rec(2, None, Some("not json at all")),
            rec(
                3,
                None,
                Some(r#"{"doc": {"text": "a cat sleeps on the sofa"}}"#),
            ),
            rec(4, None, None),
        ],
    )
    .await;
    assert_eq!(ix.visible_offsets("t", 0), vec![0, 3]);
    let stats = ix.stats("t").unwrap();
    assert_eq!(stats.partitions[0].skipped, 3);
    assert_eq!(stats.partitions[0].vectors, 2);
    assert_eq!(stats.dimensions, 384);
    let hits = ix
        .search(
            "t",
            &config(&[]).vector,
            q("postgres connection pool exhausted", 1),
        )
        .await
        .unwrap();
    assert_eq!(hits[0].offset, 0);
    assert!(
        hits[0].score > 0.3 && hits[0].score <= 1.0001,
        "{}",
        hits[0].score
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_field_partitions_and_time_filters() {
    let d = tempfile::tempdir().unwrap();
    let ix = VectorIndexer::new(d.path(), Embedders::local_only(pool()));
    let c = config(&[("vector.field", "key")]);
    for p in 0..2 {
        ix.open_partition("t", p, &c, 0).await.unwrap();
    }
    feed(
        &ix,
        "t",
        0,
        &[
            rec(0, Some("disk full on node 3"), Some("{}")),
            rec(1, Some("payment declined"), Some("{}")),
        ],
    )
    .await;
    feed(
        &ix,
        "t",
        1,
        &[
            rec(0, Some("disk space exhausted"), Some("{}")),
            rec(1, None, Some("{}")),
        ],
    )
    .await;
    let hits = ix
        .search(
            "t",
            &config(&[]).vector,
            q("storage volume has no free space", 10),
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let only1 = ix
        .search(
            "t",
            &config(&[]).vector,
            VectorQuery {
                partitions: Some(vec![1]),
                ..q("disk", 10)
            },
        )
        .await
        .unwrap();
    assert!(only1.iter().all(|h| h.partition == 1) && only1.len() == 1);
    let late = ix
        .search(
            "t",
            &config(&[]).vector,
            VectorQuery {
                time: TimeRange {
                    from: Some(500),
                    to: None,
                },
                ..q("disk", 10)
            },
        )
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].partition, late[0].offset), (0, 1));
    assert_eq!(late[0].key.as_deref(), Some(&b"payment declined"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_show_only_the_latest_value_of_a_key() {
    let d = tempfile::tempdir().unwrap();
    let c = config(&[("cleanup.policy", "compact")]);
    {
        let ix = VectorIndexer::new(d.path(), Embedders::local_only(pool()));
        ix.open_partition("t", 0, &c, 0).await.unwrap();
        feed(
            &ix,
            "t",
            0,
            &[
                rec(0, Some("a"), Some("first value of a")),
                rec(1, Some("b"), Some("value of b")),
                rec(2, Some("a"), Some("second value of a")),
                rec(3, Some("b"), None),
                rec(4, None, Some("keyless")),
            ],
        )
        .await;
        assert_eq!(ix.visible_offsets("t", 0), vec![2, 4]);
        let durable = |ix: &VectorIndexer| ix.stats("t").unwrap().partitions[0].durable_offset;
        assert_eq!(durable(&ix), 0, "nothing is checkpointed before persist");
        ix.persist("t", 0).await.unwrap();
        assert_eq!(durable(&ix), 5);
    }
    // After a restart the stored tombstone still hides b.
    let ix = VectorIndexer::new(d.path(), Embedders::local_only(pool()));
    assert_eq!(ix.open_partition("t", 0, &c, 0).await.unwrap(), 5);
    assert_eq!(ix.stats("t").unwrap().partitions[0].durable_offset, 5);
    ix.publish("t", 0).await.unwrap();
    assert_eq!(ix.visible_offsets("t", 0), vec![2, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let ix = VectorIndexer::new(d.path(), Embedders::local_only(pool()));
    ix.open_partition("t", 0, &config(&[]), 0).await.unwrap();
    feed(&ix, "t", 0, &[rec(0, None, Some("hello"))]).await;
    for query in [
        q("x", 0),
        q("x", 1_000_000),
        VectorQuery {
            ef: Some(0),
            ..q("x", 1)
        },
        VectorQuery {
            vector: Some(vec![0.5; 3]),
            k: 1,
            ..Default::default()
        },
        VectorQuery {
            vector: Some(vec![0.0; 384]),
            k: 1,
            ..Default::default()
        },
        VectorQuery {
            k: 1,
            ..Default::default()
        },
        VectorQuery {
            vector: Some(vec![0.5; 384]),
            ..q("x", 1)
        },
    ] {
        match ix.search("t", &config(&[]).vector, query.clone()).await {
            Err(VectorError::BadRequest(_)) => {}
            other => panic!("{query:?}: {other:?}"),
        }
    }
    let ok = ix
        .search(
            "t",
            &config(&[]).vector,
            VectorQuery {
                vector: Some(vec![0.5; 384]),
                k: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_fails_indexing_with_the_directory_and_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no-model-here");
    let (provider, _) = LocalProvider::open(&missing);
    let ix = VectorIndexer::new(
        d.path().join("ix"),
        Embedders::local_only(EmbeddingPool::new(Arc::new(provider), 1)),
    );
    ix.open_partition("t", 0, &config(&[]), 0).await.unwrap();
    let records = [rec(0, None, Some("hello"))];
    let err = ix
        .index(RecordRun {
            topic: "t",
            partition: 0,
            records: &records,
            next_offset: 1,
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    let stats = ix.stats("t").unwrap();
    assert!(stats
        .error
        .unwrap()
        .contains(&missing.display().to_string()));
    // Nothing was checkpointed past the failed run: a reopen resumes before it.
    assert_eq!(ix.open_partition("t", 0, &config(&[]), 0).await.unwrap(), 0);
}
