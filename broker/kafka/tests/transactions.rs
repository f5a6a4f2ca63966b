//! Transactions over a real socket: the coordinator's answers (epochs, fencing, state errors),
//! and what read_committed Fetch and ListOffsets see of open, aborted and committed
//! transactions, before and after a broker crash.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

mod support;

use support::{Client, TestBroker};

const TOPIC: &str = "txn-wire";

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.into()))
}

fn tid(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.into()))
}

/// What a read_committed (or read_uncommitted) fetch of partition 0 from offset 0 returns.
struct Fetched {
    values: Vec<String>,
    last_stable_offset: i64,
    high_watermark: i64,
    aborted: Vec<(i64, i64)>,
}

impl Client {
    async fn init(&mut self, id: &str) -> (i16, i64, i16) {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(tid(id)))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let resp: InitProducerIdResponse = self.call(ApiKey::InitProducerId, 4, &req).await;
        (resp.error_code, resp.producer_id.0, resp.producer_epoch)
    }

    /// AddPartitionsToTxn v3 for partition 0 of each topic; the codes per topic.
    async fn add_partitions(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        topics: &[&str],
    ) -> Vec<i16> {
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(tid(id))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(
                topics
                    .iter()
                    .map(|t| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(vec![0])
                    })
                    .collect(),
            );
        let resp: AddPartitionsToTxnResponse = self.call(ApiKey::AddPartitionsToTxn, 3, &req).await;
        resp.results_by_topic_v3_and_below
            .iter()
            .map(|t| t.results_by_partition[0].partition_error_code)
            .collect()
    }

    async fn end(&mut self, version: i16, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
        let req = EndTxnRequest::default()
            .with_transactional_id(tid(id))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let resp: EndTxnResponse = self.call(ApiKey::EndTxn, version, &req).await;
        resp.error_code
    }

    async fn produce(&mut self, records: Bytes) -> (i16, i64) {
        self.produce_as(None, records).await
    }

    /// Produce as a transactional producer does: the request names its transactional id.
    async fn produce_as(&mut self, id: Option<&str>, records: Bytes) -> (i16, i64) {
        let req = ProduceRequest::default()
            .with_transactional_id(id.map(tid))
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(TOPIC))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let resp: ProduceResponse = self.call(ApiKey::Produce, 9, &req).await;
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    async fn fetch(&mut self, isolation_level: i8) -> Fetched {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_isolation_level(isolation_level)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(TOPIC))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let resp: FetchResponse = self.call(ApiKey::Fetch, 11, &req).await;
        let p = &resp.partitions_of_first_topic();
        let mut records = p.records.clone().unwrap_or_default();
        let values = RecordBatchDecoder::decode_all(&mut records)
            .unwrap()
            .into_iter()
            .flat_map(|set| set.records)
            .filter(|r| !r.control)
            .map(|r| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned())
            .collect();
        Fetched {
            values,
            last_stable_offset: p.last_stable_offset,
            high_watermark: p.high_watermark,
            aborted: p
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect(),
        }
    }

    /// ListOffsets "latest" for partition 0 at the isolation level.
    async fn latest(&mut self, isolation_level: i8) -> i64 {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation_level)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let resp: ListOffsetsResponse = self.call(ApiKey::ListOffsets, 5, &req).await;
        resp.topics[0].partitions[0].offset
    }
}

trait FirstPartition {
    fn partitions_of_first_topic(&self) -> fetch_response::PartitionData;
}

impl FirstPartition for FetchResponse {
    fn partitions_of_first_topic(&self) -> fetch_response::PartitionData {
        self.responses[0].partitions[0].clone()
    }
}

/// A batch as a producer sends it: transactional when `producer` is given.
fn batch(producer: Option<(i64, i16, i32)>, values: &[&str]) -> Bytes {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if producer.is_some() {
                seq + i as i32
            } else {
                -1
            },
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

#[tokio::test]
async fn read_committed_sees_committed_data_and_skips_aborted_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    assert_eq!(c.produce(batch(None, &["plain"])).await, (0, 0)); // creates the topic
    let (err, pid, epoch) = c.init("wire-tx").await;
    assert_eq!((err, epoch), (0, 0));

    // Not in a transaction yet: nothing to end, and an unknown topic adds nothing.
    assert_eq!(
        c.end(3, "wire-tx", pid, epoch, true).await,
        48,
        "INVALID_TXN_STATE"
    );
    assert_eq!(
        c.add_partitions("wire-tx", pid, epoch, &[TOPIC, "no-such-topic"])
            .await,
        [55, 3],
        "OPERATION_NOT_ATTEMPTED for the known topic, UNKNOWN_TOPIC_OR_PARTITION"
    );

    // An aborted transaction.
    assert_eq!(c.add_partitions("wire-tx", pid, epoch, &[TOPIC]).await, [0]);
    assert_eq!(
        c.produce(batch(Some((pid, epoch, 0)), &["a1", "a2"])).await,
        (0, 1)
    );
    let open = c.fetch(1).await;
    assert_eq!((open.values.len(), open.last_stable_offset), (1, 1));
    assert_eq!(open.high_watermark, 3);
    assert_eq!(c.latest(1).await, 1, "read_committed latest is the LSO");
    assert_eq!(c.latest(0).await, 3);
    assert_eq!(c.end(3, "wire-tx", pid, epoch, false).await, 0);

    // A committed one.
    assert_eq!(c.add_partitions("wire-tx", pid, epoch, &[TOPIC]).await, [0]);
    assert_eq!(
        c.produce(batch(Some((pid, epoch, 2)), &["c1"])).await,
        (0, 4)
    );
    assert_eq!(c.end(3, "wire-tx", pid, epoch, true).await, 0);
    assert_eq!(
        c.end(3, "wire-tx", pid, epoch, true).await,
        0,
        "a retried commit succeeds"
    );

    let committed = c.fetch(1).await;
    assert_eq!(committed.last_stable_offset, 6);
    assert_eq!(committed.high_watermark, 6);
    assert_eq!(committed.aborted, [(pid, 1)]);
    // The consumer drops the aborted batch itself; the broker returns it with the list.
    assert_eq!(committed.values, ["plain", "a1", "a2", "c1"]);
    assert!(
        c.fetch(0).await.aborted.is_empty(),
        "read_uncommitted gets no list"
    );

    // A second producer of the id fences the first, at the coordinator and at the partition.
    let (err, pid2, epoch2) = c.init("wire-tx").await;
    assert_eq!((err, pid2, epoch2), (0, pid, epoch + 1));
    assert_eq!(
        c.add_partitions("wire-tx", pid, epoch, &[TOPIC]).await,
        [90]
    );
    assert_eq!(
        c.end(1, "wire-tx", pid, epoch, true).await,
        47,
        "INVALID_PRODUCER_EPOCH before v2"
    );
    assert_eq!(
        c.end(2, "wire-tx", pid, epoch, true).await,
        90,
        "PRODUCER_FENCED"
    );

    // An open transaction survives a crash and holds the LSO until it ends.
    assert_eq!(
        c.add_partitions("wire-tx", pid2, epoch2, &[TOPIC]).await,
        [0]
    );
    assert_eq!(
        c.produce(batch(Some((pid2, epoch2, 0)), &["o1"])).await,
        (0, 6)
    );
    drop(c);
    broker.crash().await;
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    let after = c.fetch(1).await;
    assert_eq!((after.last_stable_offset, after.high_watermark), (6, 7));
    assert_eq!(
        after.aborted,
        [(pid, 1)],
        "the aborted-transaction index is rebuilt"
    );
    assert_eq!(c.end(4, "wire-tx", pid2, epoch2, true).await, 0);
    let done = c.fetch(1).await;
    assert_eq!(done.last_stable_offset, 8);
    assert_eq!(done.values, ["plain", "a1", "a2", "c1", "o1"]);
}

#[tokio::test]
async fn clients_may_not_write_markers_or_unsequenced_producer_batches() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    let marker = chronik_log::control_batch(7, 0, chronik_log::ControlKind::Commit, 0, 1);
    assert_eq!(c.produce(marker).await.0, 87, "INVALID_RECORD");
    assert_eq!(c.produce(batch(Some((7, 0, -1)), &["x"])).await.0, 87);
    assert_eq!(c.produce(batch(None, &["ok"])).await, (0, 0));
}

#[tokio::test]
async fn describe_and_list_transactions_report_the_coordinator_state() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    assert_eq!(c.produce(batch(None, &["plain"])).await, (0, 0));
    let (_, pid, epoch) = c.init("listed-open").await;
    let (_, idle_pid, _) = c.init("listed-idle").await;
    assert_eq!(
        c.add_partitions("listed-open", pid, epoch, &[TOPIC]).await,
        [0]
    );

    let req = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![tid("listed-open"), tid("never-seen")]);
    let resp: DescribeTransactionsResponse = c.call(ApiKey::DescribeTransactions, 0, &req).await;
    let open = &resp.transaction_states[0];
    assert_eq!(open.error_code, 0);
    assert_eq!(open.transaction_state.as_str(), "Ongoing");
    assert_eq!((open.producer_id.0, open.producer_epoch), (pid, epoch));
    assert_eq!(open.transaction_timeout_ms, 60_000);
    assert!(open.transaction_start_time_ms > 0);
    assert_eq!(open.topics.len(), 1);
    assert_eq!(open.topics[0].topic.0.as_str(), TOPIC);
    assert_eq!(open.topics[0].partitions, [0]);
    assert_eq!(
        resp.transaction_states[1].error_code, 105,
        "TRANSACTIONAL_ID_NOT_FOUND"
    );

    let list = |states: &[&str], pids: &[i64]| {
        ListTransactionsRequest::default()
            .with_state_filters(
                states
                    .iter()
                    .map(|s| StrBytes::from_string(s.to_string()))
                    .collect(),
            )
            .with_producer_id_filters(pids.iter().map(|p| ProducerId(*p)).collect())
            .with_duration_filter(-1)
    };
    let ids = |resp: &ListTransactionsResponse| -> Vec<(String, String)> {
        resp.transaction_states
            .iter()
            .map(|t| {
                (
                    t.transactional_id.0.to_string(),
                    t.transaction_state.to_string(),
                )
            })
            .collect()
    };
    let all: ListTransactionsResponse = c.call(ApiKey::ListTransactions, 1, &list(&[], &[])).await;
    assert_eq!(
        ids(&all),
        [
            ("listed-idle".to_string(), "Empty".to_string()),
            ("listed-open".to_string(), "Ongoing".to_string())
        ]
    );
    let ongoing: ListTransactionsResponse = c
        .call(
            ApiKey::ListTransactions,
            1,
            &list(&["Ongoing", "Bogus"], &[]),
        )
        .await;
    assert_eq!(ids(&ongoing).len(), 1);
    assert_eq!(
        ongoing.unknown_state_filters,
        [StrBytes::from_static_str("Bogus")]
    );
    let by_pid: ListTransactionsResponse = c
        .call(ApiKey::ListTransactions, 0, &list(&[], &[idle_pid]))
        .await;
    assert_eq!(ids(&by_pid)[0].0, "listed-idle");
    assert_eq!(ids(&by_pid).len(), 1);
}

/// A `__transaction_state` value (Kafka's v0 layout) for a transaction of `pid` on partition 0
/// of `TOPIC` in state `code`.
fn state_record(id: &str, pid: i64, epoch: i16, code: i8, start: i64) -> Bytes {
    use bytes::BufMut;
    let str16 = |buf: &mut BytesMut, s: &str| {
        buf.put_i16(s.len() as i16);
        buf.put_slice(s.as_bytes());
    };
    let mut key = BytesMut::new();
    key.put_i16(0);
    str16(&mut key, id);
    let mut value = BytesMut::new();
    value.put_i16(0);
    value.put_i64(pid);
    value.put_i16(epoch);
    value.put_i32(60_000);
    value.put_i8(code);
    value.put_i32(1);
    str16(&mut value, TOPIC);
    value.put_i32(1);
    value.put_i32(0);
    value.put_i64(start);
    value.put_i64(start);
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
        timestamp: start,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
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

/// A crash after a commit was decided (PrepareCommit durable) but before its markers were
/// written: after the restart the coordinator finishes the commit on its own.
#[tokio::test]
async fn a_prepared_commit_is_finished_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    assert_eq!(c.produce(batch(None, &["plain"])).await, (0, 0));
    let (_, pid, epoch) = c.init("prepared").await;
    assert_eq!(
        c.add_partitions("prepared", pid, epoch, &[TOPIC]).await,
        [0]
    );
    assert_eq!(
        c.produce(batch(Some((pid, epoch, 0)), &["t1", "t2"])).await,
        (0, 1)
    );
    assert_eq!(c.fetch(1).await.last_stable_offset, 1);

    // The id's record is in exactly one partition of __transaction_state; append the decision
    // there as the coordinator would have before writing markers.
    let state_log = (0..8)
        .filter_map(|p| broker.logs.get("__transaction_state", p))
        .find(|log| log.log_end_offset() > 0)
        .expect("the id's state partition");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let info = state_log
        .append(state_record("prepared", pid, epoch, 2, now), 0)
        .unwrap();
    state_log.wait_durable(info.last_offset).await.unwrap();
    drop(c);
    broker.crash().await;

    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let f = c.fetch(1).await;
        if f.last_stable_offset == 4 {
            assert_eq!(f.values, ["plain", "t1", "t2"]);
            assert!(f.aborted.is_empty(), "committed, not aborted");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "commit not finished: LSO {}",
            f.last_stable_offset
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![tid("prepared")]);
    let resp: DescribeTransactionsResponse = c.call(ApiKey::DescribeTransactions, 0, &req).await;
    assert_eq!(
        resp.transaction_states[0].transaction_state.as_str(),
        "CompleteCommit"
    );
}

impl Client {
    async fn add_offsets(&mut self, id: &str, pid: i64, epoch: i16, group: &str) -> i16 {
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(tid(id))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(StrBytes::from_string(group.into())));
        let resp: AddOffsetsToTxnResponse = self.call(ApiKey::AddOffsetsToTxn, 3, &req).await;
        resp.error_code
    }

    async fn txn_commit(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        offset: i64,
    ) -> i16 {
        use kafka_protocol::messages::txn_offset_commit_request::{
            TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
        };
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(tid(id))
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        let resp: TxnOffsetCommitResponse = self.call(ApiKey::TxnOffsetCommit, 3, &req).await;
        resp.topics[0].partitions[0].error_code
    }

    /// OffsetFetch v7 of partition 0: (error code, offset).
    async fn committed(&mut self, group: &str, require_stable: bool) -> (i16, i64) {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_require_stable(require_stable)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partition_indexes(vec![0])]));
        let resp: OffsetFetchResponse = self.call(ApiKey::OffsetFetch, 7, &req).await;
        let p = &resp.topics[0].partitions[0];
        (p.error_code, p.committed_offset)
    }
}

#[tokio::test]
async fn transactional_offsets_take_effect_on_commit_only_also_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    assert_eq!(c.produce(batch(None, &["plain"])).await, (0, 0));
    let (_, pid, epoch) = c.init("offsets-tx").await;
    assert_eq!(
        c.add_partitions("offsets-tx", pid, epoch, &[TOPIC]).await,
        [0]
    );
    assert_eq!(
        c.txn_commit("offsets-tx", pid, epoch, "g1", 5).await,
        48,
        "INVALID_TXN_STATE: the group is not in the transaction"
    );
    assert_eq!(c.add_offsets("offsets-tx", pid, epoch, "g1").await, 0);
    assert_eq!(c.txn_commit("offsets-tx", pid, epoch, "g1", 5).await, 0);
    assert_eq!(
        c.committed("g1", true).await,
        (88, -1),
        "UNSTABLE_OFFSET_COMMIT"
    );
    assert_eq!(c.committed("g1", false).await, (0, -1), "not committed yet");
    assert_eq!(c.end(3, "offsets-tx", pid, epoch, false).await, 0);
    assert_eq!(
        c.committed("g1", true).await,
        (0, -1),
        "aborted offsets are dropped"
    );

    assert_eq!(c.add_offsets("offsets-tx", pid, epoch, "g1").await, 0);
    assert_eq!(c.txn_commit("offsets-tx", pid, epoch, "g1", 7).await, 0);
    drop(c);
    broker.crash().await;

    // Still pending after the restart (replayed from __consumer_offsets), then committed.
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    assert_eq!(c.committed("g1", true).await, (88, -1));
    assert_eq!(c.end(3, "offsets-tx", pid, epoch, true).await, 0);
    assert_eq!(c.committed("g1", true).await, (0, 7));
    drop(c);
    broker.crash().await;

    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    assert_eq!(
        c.committed("g1", true).await,
        (0, 7),
        "committed offsets are replayed"
    );
    // A fenced producer's offsets are refused.
    let (_, _, new_epoch) = c.init("offsets-tx").await;
    assert_eq!(new_epoch, epoch + 1);
    assert_eq!(c.txn_commit("offsets-tx", pid, epoch, "g1", 9).await, 90);
}

#[tokio::test]
async fn a_transactional_batch_outside_the_open_transaction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    assert_eq!(c.produce(batch(None, &["plain"])).await, (0, 0));
    let (_, pid, epoch) = c.init("verified").await;
    let early = c
        .produce_as(Some("verified"), batch(Some((pid, epoch, 0)), &["x"]))
        .await;
    assert_eq!(
        early.0, 48,
        "INVALID_TXN_STATE: the partition was not added"
    );
    assert_eq!(
        c.add_partitions("verified", pid, epoch, &[TOPIC]).await,
        [0]
    );
    let wrong_epoch = c
        .produce_as(Some("verified"), batch(Some((pid, epoch + 1, 0)), &["x"]))
        .await;
    assert_eq!(wrong_epoch.0, 47, "INVALID_PRODUCER_EPOCH");
    assert_eq!(
        c.produce_as(Some("verified"), batch(Some((pid, epoch, 0)), &["x"]))
            .await,
        (0, 1)
    );
    assert_eq!(c.end(3, "verified", pid, epoch, true).await, 0);
    // The transaction is over: a late batch of it would never get a marker.
    let late = c
        .produce_as(Some("verified"), batch(Some((pid, epoch, 1)), &["y"]))
        .await;
    assert_eq!(late.0, 48);
    assert_eq!(c.fetch(1).await.last_stable_offset, 3, "nothing hangs");
}
