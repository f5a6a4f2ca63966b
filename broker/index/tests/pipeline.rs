//! The pipeline against real partition logs and a real metadata store, feeding an index of our
//! own that records what it is given (a real implementation of the seam, kept in memory with a
//! "disk" that survives reopening).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chronik_index::{Indexer, PartitionLogs, Pipeline, PipelineConfig, RecordRun, Result};
use chronik_log::{FlushPolicy, LogConfig, LogManager, PartitionLog};
use chronik_meta::{
    BrokerInfo, Command, LocalMetadataStore, MetadataStore, TopicConfig, TopicMeta,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::Mutex;

#[derive(Debug, Default)]
struct PartitionIndex {
    /// Indexed, not yet published.
    pending: Vec<i64>,
    visible: Vec<i64>,
    next: i64,
}

/// What a partition's index keeps across a reopen: offsets and the checkpoint.
type Durable = (Vec<i64>, i64);

/// Keeps offsets per partition; `durable` is what survives a reopen (its "disk").
#[derive(Debug, Default)]
struct RecordingIndexer {
    open: Mutex<HashMap<(String, i32), PartitionIndex>>,
    durable: Mutex<HashMap<(String, i32), Durable>>,
    publishes: Mutex<u64>,
    forgets: Mutex<Vec<(String, i32, i64)>>,
    drops: Mutex<Vec<String>>,
    opens: Mutex<u64>,
    /// While positive, each run is taken only in part and the rest deferred (a remote service
    /// the index needs going away and coming back).
    defer_runs: Mutex<u32>,
}

impl RecordingIndexer {
    fn visible(&self, topic: &str, partition: i32) -> Vec<i64> {
        self.open
            .lock()
            .get(&(topic.to_string(), partition))
            .map(|p| p.visible.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Indexer for RecordingIndexer {
    fn kind(&self) -> &'static str {
        "recording"
    }
    /// The test index covers compacted topics, a topic setting the broker already serves.
    fn enabled(&self, config: &TopicConfig) -> bool {
        config.cleanup_policy.compact
    }
    async fn open_partition(
        &self,
        topic: &str,
        partition: i32,
        _config: &TopicConfig,
        log_start: i64,
    ) -> Result<i64> {
        let key = (topic.to_string(), partition);
        let (mut offsets, next) = self
            .durable
            .lock()
            .get(&key)
            .cloned()
            .unwrap_or((Vec::new(), log_start));
        offsets.retain(|o| *o >= log_start);
        let next = next.max(log_start);
        *self.opens.lock() += 1;
        self.open.lock().insert(
            key,
            PartitionIndex {
                pending: Vec::new(),
                visible: offsets,
                next,
            },
        );
        Ok(next)
    }
    async fn index(&self, run: RecordRun<'_>) -> Result<()> {
        let mut open = self.open.lock();
        let p = open
            .get_mut(&(run.topic.to_string(), run.partition))
            .expect("index before open");
        assert!(
            run.records.first().is_none_or(|r| r.offset >= p.next),
            "run starts at {:?} before {}",
            run.records.first().map(|r| r.offset),
            p.next
        );
        let mut defer = self.defer_runs.lock();
        if *defer > 0 && run.records.len() > 1 {
            *defer -= 1;
            let taken = &run.records[..run.records.len() / 2];
            p.pending.extend(taken.iter().map(|r| r.offset));
            p.next = run.records[taken.len()].offset;
            return Err(chronik_index::IndexError::Deferred {
                kind: "recording",
                reason: "service away".into(),
                resume: p.next,
            });
        }
        p.pending.extend(run.records.iter().map(|r| r.offset));
        p.next = run.next_offset;
        Ok(())
    }
    async fn publish(&self, topic: &str, partition: i32) -> Result<()> {
        *self.publishes.lock() += 1;
        let mut open = self.open.lock();
        if let Some(p) = open.get_mut(&(topic.to_string(), partition)) {
            let pending = std::mem::take(&mut p.pending);
            p.visible.extend(pending);
        }
        Ok(())
    }
    async fn persist(&self, topic: &str, partition: i32) -> Result<i64> {
        let key = (topic.to_string(), partition);
        let open = self.open.lock();
        let p = open.get(&key).expect("persist before open");
        let mut all = p.visible.clone();
        all.extend(&p.pending);
        self.durable.lock().insert(key, (all, p.next));
        Ok(p.next)
    }
    async fn forget_before(&self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        self.forgets
            .lock()
            .push((topic.to_string(), partition, offset));
        if let Some(p) = self.open.lock().get_mut(&(topic.to_string(), partition)) {
            p.visible.retain(|o| *o >= offset);
            p.pending.retain(|o| *o >= offset);
        }
        Ok(())
    }
    async fn close_partition(&self, topic: &str, partition: i32) -> Result<()> {
        self.persist(topic, partition).await?;
        self.open.lock().remove(&(topic.to_string(), partition));
        Ok(())
    }
    async fn drop_topic(&self, topic: &str) -> Result<()> {
        self.drops.lock().push(topic.to_string());
        self.durable.lock().retain(|(t, _), _| t != topic);
        self.open.lock().retain(|(t, _), _| t != topic);
        Ok(())
    }
}

#[derive(Debug)]
struct Logs(Arc<LogManager>);

impl PartitionLogs for Logs {
    fn log(&self, topic: &TopicMeta, partition: i32) -> Option<Arc<dyn PartitionLog>> {
        self.0
            .get_or_create(&topic.name, partition, LogConfig::default())
            .ok()
    }
}

fn batch(n: usize, compression: Compression) -> Bytes {
    encode_batch(n, compression, None)
}

/// A batch of `n` records; with `Some((producer_id, first_sequence))` a transactional one.
fn encode_batch(n: usize, compression: Compression, txn: Option<(i64, i32)>) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: txn.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: txn.map_or(-1, |(pid, _)| pid),
            producer_epoch: if txn.is_some() { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: txn.map_or(-1, |(_, seq)| seq + i as i32),
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!(r#"{{"i":{i}}}"#))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

struct Fixture {
    _dir: tempfile::TempDir,
    meta: Arc<dyn MetadataStore>,
    logs: Arc<LogManager>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetadataStore> =
        Arc::new(LocalMetadataStore::open(dir.path().join("meta")).unwrap());
    meta.propose(Command::RegisterBroker(BrokerInfo {
        node_id: 1,
        host: "localhost".into(),
        port: 9092,
        rack: None,
    }))
    .await
    .unwrap();
    let logs = Arc::new(LogManager::open(dir.path().join("logs"), FlushPolicy::Os).unwrap());
    Fixture {
        _dir: dir,
        meta,
        logs,
    }
}

async fn create_topic(f: &Fixture, name: &str, partitions: usize, indexed: bool) {
    let mut configs = BTreeMap::new();
    if indexed {
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
    }
    f.meta
        .propose(Command::CreateTopic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            assignments: vec![vec![1]; partitions],
            configs,
        })
        .await
        .unwrap();
}

async fn append(f: &Fixture, topic: &str, partition: i32, n: usize, compression: Compression) {
    let log = f
        .logs
        .get_or_create(topic, partition, LogConfig::default())
        .unwrap();
    let info = log.append(batch(n, compression), 0).unwrap();
    log.wait_durable(info.last_offset).await.unwrap();
}

fn config() -> PipelineConfig {
    PipelineConfig {
        persist_interval: Duration::from_millis(200),
        retry_after: Duration::from_millis(100),
        read_bytes: 2048,
        ..PipelineConfig::default()
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn start(f: &Fixture, ix: &Arc<RecordingIndexer>) -> Pipeline {
    Pipeline::start(
        f.meta.clone(),
        Arc::new(Logs(f.logs.clone())),
        vec![ix.clone() as Arc<dyn Indexer>],
        config(),
    )
}

#[tokio::test]
async fn indexes_every_acknowledged_record_once_and_publishes() {
    let f = fixture().await;
    create_topic(&f, "orders", 2, true).await;
    create_topic(&f, "plain", 1, false).await;
    let ix = Arc::new(RecordingIndexer::default());
    let pipeline = start(&f, &ix);
    append(&f, "orders", 0, 10, Compression::None).await;
    append(&f, "orders", 0, 50, Compression::Zstd).await;
    append(&f, "orders", 1, 7, Compression::Lz4).await;
    append(&f, "plain", 0, 5, Compression::None).await;
    eventually("partition 0 visible", || {
        ix.visible("orders", 0).len() == 60
    })
    .await;
    eventually("partition 1 visible", || ix.visible("orders", 1).len() == 7).await;
    assert_eq!(ix.visible("orders", 0), (0..60).collect::<Vec<_>>());
    // More data after catching up arrives through the high-watermark subscription.
    append(&f, "orders", 1, 3, Compression::Gzip).await;
    eventually("later records", || ix.visible("orders", 1).len() == 10).await;
    assert!(ix.visible("plain", 0).is_empty());
    pipeline.shutdown().await;
    assert!(ix.open.lock().is_empty(), "shutdown closes every partition");
    assert_eq!(ix.durable.lock()[&("orders".to_string(), 0)].1, 60);
}

#[tokio::test]
async fn indexes_only_what_read_committed_consumers_see() {
    use chronik_log::{control_batch, ControlKind};
    let f = fixture().await;
    create_topic(&f, "tx", 1, true).await;
    let ix = Arc::new(RecordingIndexer::default());
    let pipeline = start(&f, &ix);
    let log = f.logs.get_or_create("tx", 0, LogConfig::default()).unwrap();
    let write = |bytes: Bytes| {
        let log = log.clone();
        async move {
            let info = log.append(bytes, 0).unwrap();
            log.wait_durable(info.last_offset).await.unwrap();
        }
    };
    write(batch(2, Compression::None)).await; // 0..2 plain
    write(encode_batch(3, Compression::None, Some((7, 0)))).await; // 2..5 aborted below
    write(encode_batch(2, Compression::None, Some((8, 0)))).await; // 5..7 committed below
    write(batch(1, Compression::None)).await; // 7 plain, behind open transactions
    eventually("plain records before the open transactions", || {
        ix.visible("tx", 0) == vec![0, 1]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ix.visible("tx", 0),
        vec![0, 1],
        "open transactions are not indexed"
    );
    write(control_batch(
        7,
        0,
        ControlKind::Abort,
        0,
        1_700_000_000_000,
    ))
    .await; // 8
    write(control_batch(
        8,
        0,
        ControlKind::Commit,
        0,
        1_700_000_000_000,
    ))
    .await; // 9
    eventually("committed records", || ix.visible("tx", 0).len() == 5).await;
    assert_eq!(ix.visible("tx", 0), vec![0, 1, 5, 6, 7]);
    pipeline.shutdown().await;
    assert_eq!(ix.durable.lock()[&("tx".to_string(), 0)].1, 10);
}

#[tokio::test]
async fn deferred_runs_keep_the_index_open_and_are_offered_again() {
    let f = fixture().await;
    create_topic(&f, "t", 1, true).await;
    let ix = Arc::new(RecordingIndexer::default());
    *ix.defer_runs.lock() = 3;
    let pipeline = start(&f, &ix);
    append(&f, "t", 0, 40, Compression::None).await;
    eventually("every record after the deferrals", || {
        ix.visible("t", 0).len() == 40
    })
    .await;
    // Once each, in order (the index panics on a run that goes back), and never reopened.
    assert_eq!(ix.visible("t", 0), (0..40).collect::<Vec<_>>());
    assert_eq!(*ix.defer_runs.lock(), 0);
    assert_eq!(*ix.opens.lock(), 1);
    pipeline.shutdown().await;
}

#[tokio::test]
async fn resumes_from_the_checkpoint_after_restart() {
    let f = fixture().await;
    create_topic(&f, "t", 1, true).await;
    let ix = Arc::new(RecordingIndexer::default());
    let pipeline = start(&f, &ix);
    append(&f, "t", 0, 20, Compression::None).await;
    eventually("first records", || ix.visible("t", 0).len() == 20).await;
    pipeline.shutdown().await;
    append(&f, "t", 0, 5, Compression::None).await;
    let pipeline = start(&f, &ix);
    eventually("records after restart", || ix.visible("t", 0).len() == 25).await;
    // The recording index panics on a run that goes back; the count shows no record twice.
    assert_eq!(ix.visible("t", 0), (0..25).collect::<Vec<_>>());
    pipeline.shutdown().await;
}

#[tokio::test]
async fn enabling_backfills_and_disabling_or_deleting_drops() {
    let f = fixture().await;
    create_topic(&f, "t", 1, false).await;
    append(&f, "t", 0, 30, Compression::Snappy).await;
    let ix = Arc::new(RecordingIndexer::default());
    let pipeline = start(&f, &ix);
    let set = |on: bool| {
        let mut c = BTreeMap::new();
        let policy = if on { "compact" } else { "delete" };
        c.insert("cleanup.policy".to_string(), policy.to_string());
        Command::SetTopicConfigs {
            name: "t".into(),
            configs: c,
        }
    };
    f.meta.propose(set(true)).await.unwrap();
    eventually("backfill from the log start", || {
        ix.visible("t", 0).len() == 30
    })
    .await;
    f.meta.propose(set(false)).await.unwrap();
    eventually("drop on disable", || {
        ix.drops.lock().contains(&"t".to_string())
    })
    .await;
    assert!(ix.durable.lock().is_empty());
    f.meta.propose(set(true)).await.unwrap();
    eventually("rebuilt after re-enable", || ix.visible("t", 0).len() == 30).await;
    f.meta
        .propose(Command::DeleteTopic { name: "t".into() })
        .await
        .unwrap();
    eventually("drop on delete", || ix.drops.lock().len() == 2).await;
    pipeline.shutdown().await;
}

#[tokio::test]
async fn follows_the_log_start_when_records_are_deleted() {
    let f = fixture().await;
    create_topic(&f, "t", 1, true).await;
    let ix = Arc::new(RecordingIndexer::default());
    let pipeline = start(&f, &ix);
    append(&f, "t", 0, 10, Compression::None).await;
    append(&f, "t", 0, 10, Compression::None).await;
    eventually("indexed", || ix.visible("t", 0).len() == 20).await;
    let log = f.logs.get("t", 0).unwrap();
    log.delete_records_before(10).unwrap();
    append(&f, "t", 0, 1, Compression::None).await;
    eventually("forgotten", || {
        ix.visible("t", 0) == (10..21).collect::<Vec<_>>()
    })
    .await;
    assert_eq!(ix.forgets.lock().as_slice(), &[("t".to_string(), 0, 10)]);
    pipeline.shutdown().await;
}

#[tokio::test]
async fn a_failing_index_is_reopened_and_catches_up() {
    #[derive(Debug)]
    struct FailOnce {
        inner: RecordingIndexer,
        failed: Mutex<bool>,
    }
    #[async_trait]
    impl Indexer for FailOnce {
        fn kind(&self) -> &'static str {
            "fail-once"
        }
        fn enabled(&self, c: &TopicConfig) -> bool {
            self.inner.enabled(c)
        }
        async fn open_partition(&self, t: &str, p: i32, c: &TopicConfig, s: i64) -> Result<i64> {
            self.inner.open_partition(t, p, c, s).await
        }
        async fn index(&self, run: RecordRun<'_>) -> Result<()> {
            if !std::mem::replace(&mut *self.failed.lock(), true) {
                return Err(chronik_index::IndexError::Indexer {
                    kind: "fail-once",
                    reason: "injected".into(),
                });
            }
            self.inner.index(run).await
        }
        async fn publish(&self, t: &str, p: i32) -> Result<()> {
            self.inner.publish(t, p).await
        }
        async fn persist(&self, t: &str, p: i32) -> Result<i64> {
            self.inner.persist(t, p).await
        }
        async fn forget_before(&self, t: &str, p: i32, o: i64) -> Result<()> {
            self.inner.forget_before(t, p, o).await
        }
        async fn close_partition(&self, t: &str, p: i32) -> Result<()> {
            self.inner.close_partition(t, p).await
        }
        async fn drop_topic(&self, t: &str) -> Result<()> {
            self.inner.drop_topic(t).await
        }
    }
    let f = fixture().await;
    create_topic(&f, "t", 1, true).await;
    let ix = Arc::new(FailOnce {
        inner: RecordingIndexer::default(),
        failed: Mutex::new(false),
    });
    let pipeline = Pipeline::start(
        f.meta.clone(),
        Arc::new(Logs(f.logs.clone())),
        vec![ix.clone() as Arc<dyn Indexer>],
        config(),
    );
    append(&f, "t", 0, 15, Compression::None).await;
    eventually("caught up after the failure", || {
        ix.inner.visible("t", 0).len() == 15
    })
    .await;
    assert_eq!(ix.inner.visible("t", 0), (0..15).collect::<Vec<_>>());
    pipeline.shutdown().await;
}

#[tokio::test]
async fn a_steady_stream_is_published_at_the_minimum_gap_and_a_lone_record_at_once() {
    let f = fixture().await;
    create_topic(&f, "stream", 1, true).await;
    let ix = Arc::new(RecordingIndexer::default());
    let pipeline = Pipeline::start(
        f.meta.clone(),
        Arc::new(Logs(f.logs.clone())),
        vec![ix.clone() as Arc<dyn Indexer>],
        PipelineConfig {
            publish_min_gap: Duration::from_secs(1),
            publish_interval: Duration::from_secs(2),
            ..config()
        },
    );
    append(&f, "stream", 0, 1, Compression::None).await;
    eventually("the first record visible", || {
        ix.visible("stream", 0).len() == 1
    })
    .await;
    // After a quiet spell longer than the gap, a record is published as soon as it is indexed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    append(&f, "stream", 0, 1, Compression::None).await;
    let first = tokio::time::Instant::now();
    eventually("the lone record visible", || {
        ix.visible("stream", 0).len() == 2
    })
    .await;
    assert!(
        first.elapsed() < Duration::from_millis(900),
        "a record after a quiet spell waited for the gap"
    );
    let publishes = *ix.publishes.lock();
    // Records arriving within the gap wait for it, then are published together.
    for _ in 0..25 {
        append(&f, "stream", 0, 1, Compression::None).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if first.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            ix.visible("stream", 0).len(),
            2,
            "records published before the gap passed"
        );
    }
    eventually("the stream visible", || ix.visible("stream", 0).len() == 27).await;
    let more = *ix.publishes.lock() - publishes;
    assert!(
        (1..=2).contains(&more),
        "{more} publishes for 25 records inside about one gap"
    );
    pipeline.shutdown().await;
}
