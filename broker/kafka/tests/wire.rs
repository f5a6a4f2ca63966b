//! The Kafka service over a real socket, spoken to with encoded requests: what a client sees.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::AsyncReadExt;

mod support;

use support::{Client, TestBroker};

/// A fresh broker on its own temporary directory (kept alive with the broker).
async fn start() -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestBroker::start(dir.path()).await, dir)
}

fn batch(values: &[&str], timestamp: i64) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: timestamp + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::Lz4,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Stored batches with the two broker-written header fields (base offset, leader epoch) zeroed.
fn without_broker_fields(batches: &[u8]) -> Vec<u8> {
    let mut out = batches.to_vec();
    let mut pos = 0;
    while pos + 12 <= out.len() {
        let len = i32::from_be_bytes(out[pos + 8..pos + 12].try_into().unwrap()) as usize;
        out[pos..pos + 8].fill(0);
        out[pos + 12..pos + 16].fill(0);
        pos += 12 + len;
    }
    out
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn produce_req(name: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

fn fetch_req(name: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

async fn create_topic(
    c: &mut Client,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).await;
    resp.topics[0].error_code
}

#[tokio::test]
async fn api_versions_lists_exactly_the_registry() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    let resp: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(resp.error_code, 0);
    let advertised: BTreeMap<i16, (i16, i16)> = resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect();
    let registry: BTreeMap<i16, (i16, i16)> = chronik_kafka::supported_apis()
        .iter()
        .map(|a| (a.key as i16, (a.min, a.max)))
        .collect();
    assert_eq!(advertised, registry);
    // KIP-848: librdkafka uses ConsumerGroupHeartbeat v1 only (client-chosen member ids).
    assert_eq!(
        advertised.get(&(ApiKey::ConsumerGroupHeartbeat as i16)),
        Some(&(1, 1))
    );
    // Share groups (KIP-932) are not served, so they are not advertised.
    assert!(!advertised.contains_key(&(ApiKey::ShareGroupHeartbeat as i16)));
}

#[tokio::test]
async fn api_versions_from_the_future_gets_v0_error_with_versions() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    let mut frame = c.frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    frame[6..8].copy_from_slice(&99i16.to_be_bytes());
    c.send_raw(&frame).await;
    let mut body = c.read_frame(ApiKey::ApiVersions, 0).await.unwrap();
    let resp = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(resp.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(!resp.api_keys.is_empty());
}

#[tokio::test]
async fn produced_batches_are_fetched_byte_for_byte() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    assert_eq!(create_topic(&mut c, "orders", 1, &[]).await, 0);
    let first = batch(&["a", "b", "c"], 1_000);
    let second = batch(&["d"], 2_000);
    for (records, expected_base) in [(first.clone(), 0), (second.clone(), 3)] {
        let resp: ProduceResponse = c
            .call(ApiKey::Produce, 9, &produce_req("orders", 0, records, -1))
            .await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, expected_base));
    }
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_req("orders", 0, 0)).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 4));
    let stored = p.records.clone().unwrap();
    // Only the base offset and partition leader epoch of each batch are the broker's to write.
    let mut expected = BytesMut::new();
    expected.extend_from_slice(&first);
    expected.extend_from_slice(&second);
    assert_eq!(
        without_broker_fields(&stored),
        without_broker_fields(&expected)
    );
    let records = RecordBatchDecoder::decode_all(&mut stored.clone()).unwrap();
    let values: Vec<_> = records
        .iter()
        .flat_map(|s| s.records.iter())
        .map(|r| (r.offset, r.value.clone().unwrap()))
        .collect();
    assert_eq!(values[3], (3, Bytes::from_static(b"d")));
}

#[tokio::test]
async fn corrupt_batch_is_refused_and_nothing_is_stored() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    assert_eq!(create_topic(&mut c, "t", 1, &[]).await, 0);
    let mut bad = batch(&["x", "y"], 5).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let resp: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req("t", 0, Bytes::from(bad), -1),
        )
        .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );
    let resp: ListOffsetsResponse = c
        .call(
            ApiKey::ListOffsets,
            7,
            &ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)]),
            ]),
        )
        .await;
    assert_eq!(resp.topics[0].partitions[0].offset, 0, "log end unchanged");
}

#[tokio::test]
async fn fetch_long_poll_returns_when_data_arrives() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    assert_eq!(create_topic(&mut c, "poll", 1, &[]).await, 0);
    let mut producer = Client::connect(&b).await;
    let started = Instant::now();
    let fetch = tokio::spawn(async move {
        let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_req("poll", 0, 5000)).await;
        resp
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: ProduceResponse = producer
        .call(
            ApiKey::Produce,
            9,
            &produce_req("poll", 0, batch(&["late"], 1), 1),
        )
        .await;
    let resp = fetch.await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200),
        "answered before data: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "waited for the full timeout: {elapsed:?}"
    );
    assert!(!resp.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn fetch_with_nothing_new_waits_max_wait() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    assert_eq!(create_topic(&mut c, "idle", 1, &[]).await, 0);
    let started = Instant::now();
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_req("idle", 0, 300)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(resp.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let (b, _dir) = start().await;
    let mut bad = Client::connect(&b).await;
    bad.send_raw(&(64i32 << 20).to_be_bytes()).await;
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), bad.stream.read(&mut byte))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection should be closed");
    let mut good = Client::connect(&b).await;
    let resp: MetadataResponse = good
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    assert_eq!(resp.brokers.len(), 1);
}

#[tokio::test]
async fn garbage_and_truncated_frames_do_not_hurt_the_broker() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    let mut frame = c.frame(ApiKey::Metadata, 12, &MetadataRequest::default());
    frame.truncate(frame.len() - 3);
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    c.send_raw(&frame).await;
    let mut junk = Client::connect(&b).await;
    junk.send_raw(&[
        0, 0, 0, 16, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ])
    .await;
    let mut good = Client::connect(&b).await;
    let resp: MetadataResponse = good
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    assert_eq!(resp.cluster_id.as_deref(), Some("test-cluster"));
}

#[tokio::test]
async fn unknown_config_is_invalid_config_naming_the_key() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic("cfg"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("retention.mss"))
            .with_value(Some(StrBytes::from_static_str("1")))])]);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).await;
    let t = &resp.topics[0];
    assert_eq!(t.error_code, 40, "INVALID_CONFIG");
    assert!(t
        .error_message
        .as_deref()
        .unwrap()
        .contains("retention.mss"));
    let resp: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    assert!(
        resp.topics
            .iter()
            .all(|t| t.name.as_ref().map(|n| n.0.as_str()) != Some("cfg")),
        "nothing created"
    );
}

#[tokio::test]
async fn pipelined_produces_are_answered_in_order_with_increasing_offsets() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    assert_eq!(create_topic(&mut c, "pipe", 1, &[]).await, 0);
    let mut frames = BytesMut::new();
    let first_correlation = c.correlation + 1;
    for i in 0..10 {
        frames.extend_from_slice(&c.frame(
            ApiKey::Produce,
            9,
            &produce_req("pipe", 0, batch(&[&format!("m{i}")], i), -1),
        ));
    }
    c.send_raw(&frames).await;
    for i in 0..10 {
        let mut len = [0u8; 4];
        c.stream.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        c.stream.read_exact(&mut body).await.unwrap();
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, 1).unwrap();
        assert_eq!(header.correlation_id, first_correlation + i);
        let resp = ProduceResponse::decode(&mut body, 9).unwrap();
        assert_eq!(
            resp.responses[0].partition_responses[0].base_offset,
            i as i64
        );
        assert!(!body.has_remaining());
    }
}

#[tokio::test]
async fn only_the_first_batch_of_a_fetch_may_exceed_max_bytes() {
    let (b, _dir) = start().await;
    let mut c = Client::connect(&b).await;
    assert_eq!(create_topic(&mut c, "big", 2, &[]).await, 0);
    // Pseudo-random printable text, so the LZ4-compressed batch stays ~600 kB.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: String = (0..600_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 94) as u8)
        })
        .collect();
    for partition in 0..2 {
        let resp: ProduceResponse = c
            .call(
                ApiKey::Produce,
                9,
                &produce_req("big", partition, batch(&[&big], 1), -1),
            )
            .await;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1_000_000)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("big"))
            .with_partitions(
                (0..2)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(20_000_000)
                    })
                    .collect(),
            )]);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await;
    let sizes: Vec<usize> = resp.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .collect();
    assert!(
        sizes[0] > 0,
        "the first batch is returned even though it is large"
    );
    assert_eq!(
        sizes[1], 0,
        "a second large batch would exceed max_bytes: {sizes:?}"
    );
    assert_eq!(resp.responses[0].partitions[1].high_watermark, 1);
}
