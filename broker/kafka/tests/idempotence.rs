//! Idempotent producers over a real socket: InitProducerId, and Produce retries that must be
//! stored once and answered with the original offsets, before and after a broker restart.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

mod support;

use support::{Client, TestBroker};

/// Requests this file sends beyond the shared client's.
impl Client {
    async fn init_producer_id(
        &mut self,
        version: i16,
        req: InitProducerIdRequest,
    ) -> (i16, i64, i16) {
        let resp: InitProducerIdResponse = self.call(ApiKey::InitProducerId, version, &req).await;
        (resp.error_code, resp.producer_id.0, resp.producer_epoch)
    }

    /// Produce one batch to partition 0; (error code, base offset).
    async fn produce(&mut self, topic: &str, records: Bytes) -> (i16, i64) {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let resp: ProduceResponse = self.call(ApiKey::Produce, 9, &req).await;
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// Every record value in partition 0, in offset order.
    async fn values(&mut self, topic: &str) -> Vec<(i64, String)> {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let resp: FetchResponse = self.call(ApiKey::Fetch, 11, &req).await;
        let mut records = resp.responses[0].partitions[0]
            .records
            .clone()
            .unwrap_or_default();
        RecordBatchDecoder::decode_all(&mut records)
            .unwrap()
            .into_iter()
            .flat_map(|set| set.records)
            .map(|r| {
                let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                (r.offset, v.unwrap_or_default())
            })
            .collect()
    }
}

/// A batch as an idempotent producer sends it: `values` with sequences from `base_sequence`.
fn batch(producer_id: i64, epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
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

fn idempotent_init() -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

#[tokio::test]
async fn init_producer_id_gives_fresh_ids_that_are_never_reused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    let (err, first, epoch) = c.init_producer_id(0, idempotent_init()).await;
    assert_eq!((err, epoch), (0, 0));
    assert!(first >= 0);
    // v4 with the current id and epoch (what a client sends to recover): a fresh id, epoch 0,
    // as Kafka answers requests without a transactional id.
    let (err, second, epoch) = c
        .init_producer_id(
            4,
            idempotent_init()
                .with_producer_id(ProducerId(first))
                .with_producer_epoch(0),
        )
        .await;
    assert_eq!((err, epoch), (0, 0));
    assert_ne!(second, first);
    drop(c);
    broker.crash().await;

    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    let (err, third, _) = c.init_producer_id(4, idempotent_init()).await;
    assert_eq!(err, 0);
    assert!(
        third > second,
        "ids handed out before the restart ({first}, {second}) must not come back, got {third}"
    );
}

#[tokio::test]
async fn a_transactional_id_keeps_its_producer_id_and_bumps_the_epoch_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    let txn = || {
        idempotent_init()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx-1"))))
            .with_transaction_timeout_ms(60_000)
    };
    let (err, pid, epoch) = c.init_producer_id(4, txn()).await;
    assert_eq!((err, epoch), (0, 0));
    assert!(pid >= 0);
    assert_eq!(c.init_producer_id(4, txn()).await, (0, pid, 1));
    drop(c);
    broker.crash().await;

    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    assert_eq!(
        c.init_producer_id(4, txn()).await,
        (0, pid, 2),
        "the epoch survives a crash"
    );
    // KIP-360: re-initialising with an identity that is no longer current is a zombie's.
    let stale = || {
        txn()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0)
    };
    assert_eq!(
        c.init_producer_id(4, stale()).await,
        (90, -1, -1),
        "PRODUCER_FENCED"
    );
    assert_eq!(
        c.init_producer_id(3, stale()).await,
        (47, -1, -1),
        "INVALID_PRODUCER_EPOCH"
    );
    let too_long = txn().with_transaction_timeout_ms(3_600_000);
    assert_eq!(
        c.init_producer_id(4, too_long).await.0,
        50,
        "INVALID_TRANSACTION_TIMEOUT"
    );
}

#[tokio::test]
async fn malformed_init_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    let empty = idempotent_init()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(""))));
    assert_eq!(c.init_producer_id(1, empty).await.0, 42, "INVALID_REQUEST");
    let half = idempotent_init().with_producer_id(ProducerId(5));
    assert_eq!(c.init_producer_id(3, half).await.0, 42, "INVALID_REQUEST");
}

#[tokio::test]
async fn a_resent_batch_is_acked_with_its_original_offset_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    let (_, pid, _) = c.init_producer_id(4, idempotent_init()).await;

    let first = batch(pid, 0, 0, &["a", "b"]);
    assert_eq!(c.produce("idem", first.clone()).await, (0, 0));
    assert_eq!(c.produce("idem", batch(pid, 0, 2, &["c"])).await, (0, 2));
    assert_eq!(
        c.produce("idem", first).await,
        (0, 0),
        "a duplicate is answered NONE with the original base offset"
    );
    let (gap, _) = c.produce("idem", batch(pid, 0, 9, &["x"])).await;
    assert_eq!(gap, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    assert_eq!(c.produce("idem", batch(pid, 1, 0, &["d"])).await, (0, 3));
    let (fenced, _) = c.produce("idem", batch(pid, 0, 3, &["zombie"])).await;
    assert_eq!(fenced, 47, "INVALID_PRODUCER_EPOCH");

    let values = c.values("idem").await;
    assert_eq!(
        values,
        vec![
            (0, "a".to_string()),
            (1, "b".to_string()),
            (2, "c".to_string()),
            (3, "d".to_string())
        ]
    );
}

#[tokio::test]
async fn a_retry_after_a_broker_crash_is_still_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    let (_, pid, _) = c.init_producer_id(4, idempotent_init()).await;
    for i in 0..4 {
        let v = format!("v{i}");
        assert_eq!(
            c.produce("crashy", batch(pid, 0, i, &[&v])).await,
            (0, i64::from(i))
        );
    }
    let last = batch(pid, 0, 4, &["v4"]);
    assert_eq!(c.produce("crashy", last.clone()).await, (0, 4));
    drop(c);
    broker.crash().await;

    let broker = TestBroker::start(dir.path()).await;
    let mut c = Client::connect(&broker).await;
    // The client never saw the ack for seq 4 and resends it, then carries on.
    assert_eq!(c.produce("crashy", last).await, (0, 4));
    assert_eq!(c.produce("crashy", batch(pid, 0, 5, &["v5"])).await, (0, 5));
    let values: Vec<String> = c
        .values("crashy")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["v0", "v1", "v2", "v3", "v4", "v5"]);
}
