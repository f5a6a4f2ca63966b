//! The body of the `decode_request` fuzz target, shared by the libFuzzer entry point
//! (`fuzz_targets/decode_request.rs`, nightly) and the stable smoke runner
//! (`src/bin/decode_request_smoke.rs`), plus the valid encodings the smoke runner mutates.

use bytes::{BufMut, Bytes, BytesMut};
use chronik_protocol::kafka_protocol::messages::*;
use chronik_protocol::kafka_protocol::protocol::{Encodable, Request, StrBytes};
use chronik_protocol::{decode_request as decode, frame_length, peek_request_header};

/// The broker's default `CHRONIK_MAX_REQUEST_BYTES`.
pub const MAX_REQUEST_BYTES: usize = 100 << 20;

/// Feed bytes through the connection's decode path: the first four bytes are the length prefix
/// (checked on its own, as the connection does before reading a body), the rest is the frame.
/// Must never panic, and must never allocate more than the input can justify.
pub fn decode_request(data: &[u8]) {
    let Some((prefix, frame)) = data.split_first_chunk::<4>() else {
        return;
    };
    let _ = frame_length(*prefix, MAX_REQUEST_BYTES);
    if peek_request_header(frame).is_err() {
        return;
    }
    if let Ok(request) = decode(Bytes::copy_from_slice(frame)) {
        // Touch the decoded request so nothing is optimised away.
        std::hint::black_box(&request);
    }
}

/// One length-prefixed request frame.
pub fn frame<T: Request>(version: i16, body: &T) -> Option<Vec<u8>> {
    let key = ApiKey::try_from(T::KEY).ok()?;
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(T::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, key.request_header_version(version))
        .ok()?;
    body.encode(&mut buf, version).ok()?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Some(buf.to_vec())
}

fn all_versions<T: Request>(body: T, out: &mut Vec<Vec<u8>>) {
    let key = ApiKey::try_from(T::KEY).expect("known key");
    let range = key.valid_versions();
    for version in range.min..=range.max {
        out.extend(frame(version, &body));
    }
}

fn name(s: &'static str) -> StrBytes {
    StrBytes::from_static_str(s)
}

/// Valid encodings, every version the kafka-protocol crate knows, of the requests the broker
/// serves, with one element in each nested array so mutations reach the inner decoders too.
pub fn seed_requests() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let topic = || TopicName(name("t"));
    all_versions(ApiVersionsRequest::default(), &mut out);
    all_versions(
        MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
        ])),
        &mut out,
    );
    let records = Bytes::from_static(&[0u8; 61]);
    all_versions(
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default().with_records(Some(records)),
                ])]),
        &mut out,
    );
    all_versions(
        FetchRequest::default().with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic())
            .with_partitions(vec![fetch_request::FetchPartition::default()])]),
        &mut out,
    );
    all_versions(
        ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()]),
        ]),
        &mut out,
    );
    all_versions(
        CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic())
                .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                    .with_name(name("cleanup.policy"))]),
        ]),
        &mut out,
    );
    all_versions(
        DeleteTopicsRequest::default().with_topic_names(vec![topic()]),
        &mut out,
    );
    all_versions(
        CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default().with_name(topic()),
        ]),
        &mut out,
    );
    all_versions(
        DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_name(name("t"))
                .with_configuration_keys(Some(vec![name("retention.ms")])),
        ]),
        &mut out,
    );
    all_versions(
        AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_name(name("t"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(name("retention.ms"))]),
        ]),
        &mut out,
    );
    all_versions(
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_name(name("t"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(name("retention.ms")),
                ]),
        ]),
        &mut out,
    );
    all_versions(
        DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic())
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default(),
                ]),
        ]),
        &mut out,
    );
    all_versions(DescribeClusterRequest::default(), &mut out);
    // Requests the broker does not serve yet still go through decode_request.
    all_versions(FindCoordinatorRequest::default(), &mut out);
    all_versions(InitProducerIdRequest::default(), &mut out);
    all_versions(SaslHandshakeRequest::default(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode() {
        let seeds = seed_requests();
        assert!(seeds.len() > 100, "{} seeds", seeds.len());
        for s in &seeds {
            let size = frame_length(s[..4].try_into().unwrap(), MAX_REQUEST_BYTES).unwrap();
            assert_eq!(size, s.len() - 4);
            decode(Bytes::copy_from_slice(&s[4..])).unwrap();
        }
    }
}
