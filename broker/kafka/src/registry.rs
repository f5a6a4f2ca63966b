//! The list of Kafka APIs this broker serves. The same list routes requests to their handler and
//! builds the ApiVersions answer, so nothing is advertised that is not served.
//!
//! A handler is either *inline* (its work is done before the next request of the connection is
//! read) or *deferred* (it does the ordered part, such as appending to the log, inline and returns
//! a future for the slow part, such as waiting for fsync or for data to arrive, which runs while
//! later requests are read; responses are still written in request order).

use std::sync::Arc;

use chronik_protocol::SupportedApi;
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::handlers;
use crate::Broker;

/// A response still being worked on; `None` means no response is sent (Produce with acks=0).
pub(crate) type Reply = BoxFuture<'static, Option<ResponseKind>>;

/// Who sent a request, for handlers that keep it (Kafka shows it in DescribeGroups).
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    /// The request header's client id ("" when absent).
    pub client_id: String,
    /// Kafka's form of the peer address: "/<ip>".
    pub client_host: String,
}

pub(crate) fn ready(response: ResponseKind) -> Reply {
    Box::pin(std::future::ready(Some(response)))
}

macro_rules! registry {
    ($( $flavour:ident $key:ident => $module:ident, $min:literal ..= $max:literal; )*) => {
        const SUPPORTED: &[SupportedApi] = &[
            $( SupportedApi { key: ApiKey::$key, min: $min, max: $max }, )*
        ];

        /// The API's name as a metric label.
        pub(crate) fn api_name(key: ApiKey) -> &'static str {
            match key {
                $( ApiKey::$key => stringify!($key), )*
                _ => "Other",
            }
        }

        /// Route a decoded request to its handler. `None` if the API is not served.
        pub(crate) async fn dispatch(
            broker: &Arc<Broker>,
            body: RequestKind,
            version: i16,
            client: &ClientInfo,
        ) -> Option<Reply> {
            match body {
                $( RequestKind::$key(request) => Some(registry!(@call $flavour $key $module broker request version client)), )*
                _ => None,
            }
        }
    };
    (@call inline $key:ident $module:ident $broker:ident $request:ident $version:ident $client:ident) => {
        ready(ResponseKind::$key(handlers::$module::handle($broker, $request, $version).await))
    };
    (@call deferred $key:ident $module:ident $broker:ident $request:ident $version:ident $client:ident) => {
        handlers::$module::handle($broker, $request, $version).await
    };
    // Handlers that record who is asking (group members' client id and host).
    (@call deferred_with_client $key:ident $module:ident $broker:ident $request:ident $version:ident $client:ident) => {
        handlers::$module::handle($broker, $request, $version, $client).await
    };
}

// Version ranges: the lowest is the first the kafka-protocol crate decodes and that uses v2
// record batches where records are involved; the highest is the last whose semantics the
// handler implements (e.g. Fetch stops at 12 because 13+ addresses topics by id only;
// DescribeGroups 6 reports KIP-848 groups' errors with messages, which are not written;
// ConsumerGroupHeartbeat starts at 1, where the client chooses its member id (KIP-1082);
// FindCoordinator 5+ adds transaction-abortable and share-group
// semantics; AddPartitionsToTxn 4+ is the brokers' batched verification of KIP-890, and
// EndTxn 5 and TxnOffsetCommit 5 are KIP-890 part 2, whose epoch bump per transaction this
// coordinator does not do; ListTransactions 2 filters by a Java regex, which is not served).
registry! {
    inline ApiVersions => api_versions, 0..=4;
    deferred Produce => produce, 3..=11;
    deferred Fetch => fetch, 4..=12;
    inline ListOffsets => list_offsets, 1..=7;
    inline Metadata => metadata, 0..=12;
    inline CreateTopics => create_topics, 2..=7;
    inline DeleteTopics => delete_topics, 1..=6;
    inline CreatePartitions => create_partitions, 0..=3;
    inline DescribeConfigs => describe_configs, 1..=4;
    inline AlterConfigs => alter_configs, 0..=2;
    inline IncrementalAlterConfigs => incremental_alter_configs, 0..=1;
    inline DeleteRecords => delete_records, 0..=2;
    inline DescribeCluster => describe_cluster, 0..=1;
    inline InitProducerId => init_producer_id, 0..=5;
    inline FindCoordinator => find_coordinator, 0..=4;
    deferred_with_client JoinGroup => join_group, 0..=9;
    deferred SyncGroup => sync_group, 0..=5;
    inline Heartbeat => heartbeat, 0..=4;
    inline LeaveGroup => leave_group, 0..=5;
    deferred OffsetCommit => offset_commit, 2..=9;
    inline OffsetFetch => offset_fetch, 1..=9;
    inline DescribeGroups => describe_groups, 0..=5;
    inline ListGroups => list_groups, 0..=5;
    inline DeleteGroups => delete_groups, 0..=2;
    inline OffsetDelete => offset_delete, 0..=0;
    inline AddPartitionsToTxn => add_partitions_to_txn, 0..=3;
    inline AddOffsetsToTxn => add_offsets_to_txn, 0..=4;
    inline EndTxn => end_txn, 0..=4;
    deferred TxnOffsetCommit => txn_offset_commit, 0..=4;
    inline DescribeTransactions => describe_transactions, 0..=0;
    inline ListTransactions => list_transactions, 0..=1;
    inline AlterPartitionReassignments => alter_partition_reassignments, 0..=1;
    inline ListPartitionReassignments => list_partition_reassignments, 0..=0;
    deferred_with_client ConsumerGroupHeartbeat => consumer_group_heartbeat, 1..=1;
    inline ConsumerGroupDescribe => consumer_group_describe, 0..=1;
}

/// The APIs and versions this broker serves.
pub fn supported_apis() -> &'static [SupportedApi] {
    SUPPORTED
}

pub(crate) fn supported(key: ApiKey) -> Option<&'static SupportedApi> {
    SUPPORTED.iter().find(|api| api.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_versions_are_decodable() {
        for api in SUPPORTED {
            let range = api.key.valid_versions();
            assert!(
                api.min >= range.min && api.max <= range.max && api.min <= api.max,
                "{:?} advertises {}..={} but the codec knows {}..={}",
                api.key,
                api.min,
                api.max,
                range.min,
                range.max
            );
        }
    }

    #[test]
    fn each_api_listed_once() {
        let mut keys: Vec<i16> = SUPPORTED.iter().map(|a| a.key as i16).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SUPPORTED.len());
    }
}
