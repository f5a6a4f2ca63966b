//! Partition replication between two in-process brokers on real sockets: they share one
//! metadata store (standing in for the Raft quorum, which chronik-raft tests on its own) and
//! each has its own logs; followers reach leaders through a `LeaderLink` that calls the
//! leader's replication service directly instead of over gRPC (the server's gRPC glue is
//! exercised by the end-to-end suite).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chronik_kafka::replication::{
    EpochAnswer, EpochQuery, FetchAnswers, FollowerMessages, LeaderLink, MarkerOutcome,
    ReplicationConfig, TxnMarkers,
};
use chronik_kafka::{listener, Broker, KafkaConfig};
use chronik_log::{FlushPolicy, LogManager, PartitionLog};
use chronik_meta::{BrokerInfo, Command, LocalMetadataStore, MetadataStore};
use futures::StreamExt;
use indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;

mod support;

use support::Client;

/// Followers call the leader's service in-process.
#[derive(Debug, Default)]
struct DirectLink {
    /// Brokers reachable by id; removing one cuts it off, open sessions included.
    brokers: Arc<Mutex<HashMap<i32, Weak<Broker>>>>,
}

impl DirectLink {
    fn broker(&self, id: i32) -> Result<Arc<Broker>, String> {
        self.brokers
            .lock()
            .get(&id)
            .and_then(Weak::upgrade)
            .ok_or_else(|| format!("broker {id} is down"))
    }
}

#[async_trait]
impl LeaderLink for DirectLink {
    async fn replicate(
        &self,
        leader: i32,
        messages: FollowerMessages,
    ) -> Result<FetchAnswers, String> {
        let b = self.broker(leader)?;
        let reachable = {
            let brokers = Arc::clone(&self.brokers);
            move || brokers.lock().contains_key(&leader)
        };
        let sent = reachable.clone();
        let messages = messages
            .take_while(move |_| std::future::ready(sent()))
            .boxed();
        let answers = b.serve_replica_session(messages).map(move |answer| {
            if reachable() {
                Ok(answer)
            } else {
                Err(format!("broker {leader} is cut off"))
            }
        });
        Ok(answers.boxed())
    }

    async fn epoch_end_offsets(
        &self,
        leader: i32,
        replica_id: i32,
        queries: Vec<EpochQuery>,
    ) -> Result<Vec<EpochAnswer>, String> {
        Ok(self
            .broker(leader)?
            .serve_epoch_end_offsets(replica_id, queries))
    }

    async fn write_txn_markers(
        &self,
        leader: i32,
        markers: TxnMarkers,
    ) -> Result<Vec<MarkerOutcome>, String> {
        Ok(self.broker(leader)?.serve_write_txn_markers(markers).await)
    }
}

struct Node {
    broker: Arc<Broker>,
    logs: Arc<LogManager>,
    addr: std::net::SocketAddr,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_node(
    id: i32,
    dir: &std::path::Path,
    meta: &Arc<dyn MetadataStore>,
    link: &Arc<DirectLink>,
) -> Node {
    start_node_with(id, dir, meta, link, ReplicationConfig::default()).await
}

/// Brokers 1 and 2 with replica.lag.time.max.ms = 400 ms.
async fn two_nodes_with_a_short_lag_time(
    dir: &std::path::Path,
    meta: &Arc<dyn MetadataStore>,
    link: &Arc<DirectLink>,
) -> (Node, Node) {
    let fast = ReplicationConfig {
        replica_lag_time_max_ms: 400,
        ..ReplicationConfig::default()
    };
    let n1 = start_node_with(1, dir, meta, link, fast.clone()).await;
    let n2 = start_node_with(2, dir, meta, link, fast).await;
    (n1, n2)
}

async fn start_node_with(
    id: i32,
    dir: &std::path::Path,
    meta: &Arc<dyn MetadataStore>,
    link: &Arc<DirectLink>,
    replication: ReplicationConfig,
) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    meta.propose(Command::RegisterBroker(BrokerInfo {
        node_id: id,
        host: "127.0.0.1".into(),
        port: addr.port() as i32,
        rack: None,
    }))
    .await
    .unwrap();
    let logs =
        Arc::new(LogManager::open(dir.join(format!("logs-{id}")), FlushPolicy::Group).unwrap());
    let config = KafkaConfig {
        node_id: id,
        advertised_port: addr.port() as i32,
        replication,
        ..KafkaConfig::default()
    };
    let broker = Arc::new(Broker::new(config, meta.clone(), logs.clone()));
    link.brokers.lock().insert(id, Arc::downgrade(&broker));
    let changes = meta.subscribe();
    let seen = meta.state();
    let replication = broker.start_replication(link.clone());
    let sync = broker.spawn_partition_sync(changes, seen);
    let (_shutdown, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn({
        let broker = broker.clone();
        async move {
            let _keep = _shutdown;
            let _ = listener::serve(listener, broker, rx).await;
        }
    });
    Node {
        broker,
        logs,
        addr,
        _tasks: vec![replication, sync, server],
    }
}

fn batch(value: &str) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_000,
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [record].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

async fn produce(node: &Node, topic: &str, value: &str, acks: i16, timeout_ms: i32) -> (i16, i64) {
    let mut c = Client {
        stream: tokio::net::TcpStream::connect(node.addr).await.unwrap(),
        correlation: 0,
    };
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(value)))])]);
    let resp: ProduceResponse = c.call(ApiKey::Produce, 8, &req).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// `produce`, retried while the broker answers NOT_LEADER_OR_FOLLOWER, as a client does after a
/// leadership change: the metadata names the new leader before its broker has applied it.
async fn produce_to_new_leader(node: &Node, topic: &str, value: &str, acks: i16) -> (i16, i64) {
    for _ in 0..200 {
        let answer = produce(node, topic, value, acks, 5_000).await;
        if answer.0 != 6 {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("broker never took the leadership of {topic}-0");
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn stored(log: &Arc<dyn PartitionLog>) -> Bytes {
    log.read(0, 1 << 20, false).unwrap().records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_all_waits_for_the_follower_and_replicas_hold_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetadataStore> =
        Arc::new(LocalMetadataStore::open(dir.path().join("meta")).unwrap());
    let link = Arc::new(DirectLink::default());
    let n1 = start_node(1, dir.path(), &meta, &link).await;
    let n2 = start_node(2, dir.path(), &meta, &link).await;
    meta.propose(Command::CreateTopic {
        name: "r".into(),
        id: uuid::Uuid::from_u128(1),
        assignments: vec![vec![1, 2]],
        configs: BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]),
    })
    .await
    .unwrap();
    let leader = &n1;
    wait_for("leadership set up", || {
        leader.logs.get("r", 0).is_some() && n2.logs.get("r", 0).is_some()
    })
    .await;

    for i in 0..5 {
        let (code, base) = produce(leader, "r", &format!("v{i}"), -1, 5_000).await;
        assert_eq!((code, base), (0, i), "acks=all produce {i}");
        // Acknowledged means the follower has it.
        assert!(n2.logs.get("r", 0).unwrap().log_end_offset() > i);
    }
    let leader_log = leader.logs.get("r", 0).unwrap();
    let follower_log = n2.logs.get("r", 0).unwrap();
    assert_eq!(leader_log.high_watermark(), 5);
    assert_eq!(stored(&follower_log), stored(&leader_log));
    assert_eq!(follower_log.leader_epochs(), leader_log.leader_epochs());
    wait_for("the follower's high watermark", || {
        follower_log.high_watermark() == 5
    })
    .await;
    // Readers of committed data (the indexes) get each broker's own copy: the leader's log,
    // and the follower's replica, which shows what its high watermark covers.
    let topic = meta.state().topics["r"].clone();
    let hosted = |n: &Node, p: i32| n.broker.hosted_log(&topic, p);
    assert!(Arc::ptr_eq(&hosted(leader, 0).unwrap(), &leader_log));
    assert!(Arc::ptr_eq(&hosted(&n2, 0).unwrap(), &follower_log));
    assert!(hosted(&n2, 1).is_none(), "no such partition");

    // The follower is fenced: the ISR shrinks to the leader, below min.insync.replicas.
    link.brokers.lock().remove(&2);
    meta.propose(Command::FenceBroker { node_id: 2 })
        .await
        .unwrap();
    let (code, _) = produce(leader, "r", "refused", -1, 5_000).await;
    assert_eq!(code, 19, "NOT_ENOUGH_REPLICAS");
    assert_eq!(leader_log.log_end_offset(), 5, "nothing written");
    // acks=1 is still taken, and (the leader alone in the ISR) visible at once.
    let (code, base) = produce(leader, "r", "one", 1, 5_000).await;
    assert_eq!((code, base), (0, 5));
    wait_for("high watermark with the leader alone", || {
        leader_log.high_watermark() == 6
    })
    .await;

    // Broker 2 is back: it catches up and rejoins the ISR; acks=all works again.
    link.brokers.lock().insert(2, Arc::downgrade(&n2.broker));
    meta.propose(Command::UnfenceBroker { node_id: 2 })
        .await
        .unwrap();
    wait_for("broker 2 back in the ISR", || {
        meta.state().topics["r"].partitions[0].isr == vec![1, 2]
    })
    .await;
    let (code, base) = produce(leader, "r", "again", -1, 5_000).await;
    assert_eq!((code, base), (0, 6));
    assert_eq!(stored(&follower_log), stored(&leader_log));

    // DeleteRecords on the leader reaches the follower with its next fetch.
    assert_eq!(leader_log.delete_records_before(3).unwrap(), 3);
    produce(leader, "r", "after-delete", -1, 5_000).await;
    wait_for("the follower's log start", || {
        follower_log.log_start_offset() == 3
    })
    .await;
}

/// A follower fetches the next records before the last ones are synced, so the fetch that
/// would report them is held open at the leader (nothing new): its report on the session,
/// sent once they are durable, is what lets acks=all answer. With a 30 s long poll, a leader
/// that counted only fetches would time these produces out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_reports_move_the_high_watermark_while_a_fetch_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetadataStore> =
        Arc::new(LocalMetadataStore::open(dir.path().join("meta")).unwrap());
    let link = Arc::new(DirectLink::default());
    let held = ReplicationConfig {
        fetch_max_wait: Duration::from_secs(30),
        ..ReplicationConfig::default()
    };
    let n1 = start_node_with(1, dir.path(), &meta, &link, held.clone()).await;
    let n2 = start_node_with(2, dir.path(), &meta, &link, held).await;
    meta.propose(Command::CreateTopic {
        name: "d".into(),
        id: uuid::Uuid::from_u128(4),
        assignments: vec![vec![1, 2]],
        configs: BTreeMap::new(),
    })
    .await
    .unwrap();
    wait_for("leadership set up", || n2.logs.get("d", 0).is_some()).await;
    assert_eq!(produce_to_new_leader(&n1, "d", "first", -1).await, (0, 0));
    for i in 1..4 {
        // One at a time: each waits for the follower with its fetch already held open.
        assert_eq!(produce(&n1, "d", &format!("v{i}"), -1, 5_000).await, (0, i));
    }
    let leader_log = n1.logs.get("d", 0).unwrap();
    let follower_log = n2.logs.get("d", 0).unwrap();
    assert_eq!(leader_log.high_watermark(), 4);
    assert_eq!(stored(&follower_log), stored(&leader_log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_truncates_the_old_leaders_unreplicated_tail() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetadataStore> =
        Arc::new(LocalMetadataStore::open(dir.path().join("meta")).unwrap());
    let link = Arc::new(DirectLink::default());
    let n1 = start_node(1, dir.path(), &meta, &link).await;
    let n2 = start_node(2, dir.path(), &meta, &link).await;
    meta.propose(Command::CreateTopic {
        name: "f".into(),
        id: uuid::Uuid::from_u128(2),
        assignments: vec![vec![1, 2]],
        configs: BTreeMap::new(),
    })
    .await
    .unwrap();
    wait_for("leadership set up", || n2.logs.get("f", 0).is_some()).await;
    assert_eq!(produce_to_new_leader(&n1, "f", "a0", -1).await, (0, 0));
    for i in 1..3 {
        assert_eq!(produce(&n1, "f", &format!("a{i}"), -1, 5_000).await, (0, i));
    }
    // Cut broker 1 off from its follower (a fetch already held open by the leader ends
    // within its 500 ms wait), then let it take writes nobody replicates.
    link.brokers.lock().remove(&1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, base) = produce(&n1, "f", "lost", 1, 5_000).await;
    assert_eq!((code, base), (0, 3), "acks=1 is the leader's write alone");
    let (code, _) = produce(&n1, "f", "never", -1, 300).await;
    assert_eq!(
        code, 7,
        "acks=all cannot be acknowledged without the follower"
    );
    // The controller fences broker 1: broker 2 (in the ISR) leads under epoch 1.
    meta.propose(Command::FenceBroker { node_id: 1 })
        .await
        .unwrap();
    assert_eq!(meta.state().topics["f"].partitions[0].leader, 2);
    let (code, base) = produce_to_new_leader(&n2, "f", "b0", -1).await;
    assert_eq!((code, base), (0, 3));
    // Broker 1 returns as a follower: its divergent offsets 3 and 4 go, the new leader's
    // history replaces them byte for byte.
    link.brokers.lock().insert(1, Arc::downgrade(&n1.broker));
    meta.propose(Command::UnfenceBroker { node_id: 1 })
        .await
        .unwrap();
    let old = n1.logs.get("f", 0).unwrap();
    let new = n2.logs.get("f", 0).unwrap();
    wait_for("the old leader caught up", || {
        old.log_end_offset() == new.log_end_offset() && stored(&old) == stored(&new)
    })
    .await;
    assert_eq!(old.log_end_offset(), 4);
    assert_eq!(old.leader_epochs(), new.leader_epochs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_that_stops_fetching_leaves_the_isr_after_the_lag_time() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetadataStore> =
        Arc::new(LocalMetadataStore::open(dir.path().join("meta")).unwrap());
    let link = Arc::new(DirectLink::default());
    let (n1, n2) = two_nodes_with_a_short_lag_time(dir.path(), &meta, &link).await;
    meta.propose(Command::CreateTopic {
        name: "lag".into(),
        id: uuid::Uuid::from_u128(3),
        assignments: vec![vec![1, 2]],
        configs: BTreeMap::new(),
    })
    .await
    .unwrap();
    wait_for("leadership set up", || n2.logs.get("lag", 0).is_some()).await;
    assert_eq!(produce(&n1, "lag", "x", -1, 5_000).await, (0, 0));
    // Broker 2 stays registered and unfenced but can no longer reach its leader.
    link.brokers.lock().remove(&1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, base) = produce(&n1, "lag", "y", -1, 5_000).await;
    // Held until the leader drops the silent follower from the ISR (400 ms without catching
    // up), then acknowledged by the leader alone (min.insync.replicas is 1).
    assert_eq!((code, base), (0, 1));
    assert_eq!(meta.state().topics["lag"].partitions[0].isr, vec![1]);
    assert_eq!(n2.logs.get("lag", 0).unwrap().log_end_offset(), 1);
    // Reachable again: it catches up and is added back.
    link.brokers.lock().insert(1, Arc::downgrade(&n1.broker));
    wait_for("broker 2 back in the ISR", || {
        meta.state().topics["lag"].partitions[0].isr == vec![1, 2]
    })
    .await;
    assert_eq!(n2.logs.get("lag", 0).unwrap().log_end_offset(), 2);
}

/// A metadata store whose quorum can be lost: proposals fail, the state stays where it was
/// (two of three brokers down takes the Raft majority with them).
#[derive(Debug)]
struct LosableQuorum {
    inner: LocalMetadataStore,
    lost: std::sync::atomic::AtomicBool,
    /// What the store reports as `unreachable_brokers`.
    unreachable: Mutex<std::collections::BTreeSet<i32>>,
}

impl LosableQuorum {
    fn open(dir: &std::path::Path) -> Arc<Self> {
        Arc::new(LosableQuorum {
            inner: LocalMetadataStore::open(dir.join("meta")).unwrap(),
            lost: Default::default(),
            unreachable: Default::default(),
        })
    }
}

#[async_trait]
impl MetadataStore for LosableQuorum {
    async fn propose(&self, command: Command) -> chronik_meta::Result<()> {
        if self.lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(chronik_meta::MetaError::Storage("quorum lost".into()));
        }
        self.inner.propose(command).await
    }

    fn state(&self) -> Arc<chronik_meta::ClusterState> {
        self.inner.state()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }

    fn unreachable_brokers(&self) -> std::collections::BTreeSet<i32> {
        self.unreachable.lock().clone()
    }
}

/// The partitions' leaders as one broker's Metadata answers them: (error code, leader id).
async fn metadata_leaders(node: &Node, topic: &str) -> Vec<(i16, i32)> {
    let mut c = Client {
        stream: tokio::net::TcpStream::connect(node.addr).await.unwrap(),
        correlation: 0,
    };
    let req = kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string())))),
    ]));
    let resp: kafka_protocol::messages::MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.leader_id.0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_names_no_leader_for_partitions_of_an_unreachable_broker() {
    let dir = tempfile::tempdir().unwrap();
    let quorum = LosableQuorum::open(dir.path());
    let meta: Arc<dyn MetadataStore> = quorum.clone();
    let link = Arc::new(DirectLink::default());
    let n1 = start_node(1, dir.path(), &meta, &link).await;
    let _n2 = start_node(2, dir.path(), &meta, &link).await;
    meta.propose(Command::CreateTopic {
        name: "u".into(),
        id: uuid::Uuid::from_u128(5),
        assignments: vec![vec![1, 2], vec![2, 1]],
        configs: BTreeMap::new(),
    })
    .await
    .unwrap();
    assert_eq!(metadata_leaders(&n1, "u").await, vec![(0, 1), (0, 2)]);
    // Broker 2's port refused this broker: until the controller fences it (or it answers
    // again), clients are told its partition has no leader, so they look again soon.
    quorum.unreachable.lock().insert(2);
    assert_eq!(metadata_leaders(&n1, "u").await, vec![(0, 1), (5, -1)]);
    quorum.unreachable.lock().clear();
    assert_eq!(metadata_leaders(&n1, "u").await, vec![(0, 1), (0, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_quorum_to_shrink_the_isr_silent_followers_still_refuse_acks_all() {
    let dir = tempfile::tempdir().unwrap();
    let quorum = LosableQuorum::open(dir.path());
    let meta: Arc<dyn MetadataStore> = quorum.clone();
    let link = Arc::new(DirectLink::default());
    let (n1, n2) = two_nodes_with_a_short_lag_time(dir.path(), &meta, &link).await;
    meta.propose(Command::CreateTopic {
        name: "q".into(),
        id: uuid::Uuid::from_u128(4),
        assignments: vec![vec![1, 2]],
        configs: BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]),
    })
    .await
    .unwrap();
    wait_for("leadership set up", || n2.logs.get("q", 0).is_some()).await;
    assert_eq!(produce(&n1, "q", "x", -1, 5_000).await, (0, 0));

    // The follower goes silent and the quorum is gone with it: the committed ISR stays [1, 2].
    quorum.lost.store(true, std::sync::atomic::Ordering::SeqCst);
    link.brokers.lock().remove(&1);
    // Taken before the lag time runs out, then not acknowledged: once the follower has been
    // silent for the lag time, the wait ends as NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    let (code, _) = produce(&n1, "q", "in flight", -1, 1_500).await;
    assert_eq!(code, 20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND");
    // Refused before it is written.
    let leader_log = n1.logs.get("q", 0).unwrap();
    let end = leader_log.log_end_offset();
    let (code, _) = produce(&n1, "q", "refused", -1, 5_000).await;
    assert_eq!(code, 19, "NOT_ENOUGH_REPLICAS");
    assert_eq!(leader_log.log_end_offset(), end, "nothing written");
    assert_eq!(
        leader_log.high_watermark(),
        1,
        "nothing unreplicated is visible"
    );
    assert_eq!(meta.state().topics["q"].partitions[0].isr, vec![1, 2]);

    // Quorum and follower back: it catches up (the leader may have shrunk the ISR meanwhile
    // and adds it back), and acks=all is taken again; a client retries NOT_ENOUGH_REPLICAS.
    quorum
        .lost
        .store(false, std::sync::atomic::Ordering::SeqCst);
    link.brokers.lock().insert(1, Arc::downgrade(&n1.broker));
    let mut answer = (19, -1);
    for _ in 0..100 {
        answer = produce(&n1, "q", "again", -1, 5_000).await;
        if answer.0 != 19 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer, (0, end));
    assert_eq!(n2.logs.get("q", 0).unwrap().log_end_offset(), end + 1);
}
