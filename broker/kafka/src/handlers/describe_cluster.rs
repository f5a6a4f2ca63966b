//! DescribeCluster: the cluster id, the controller and every registered broker.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let state = broker.meta.state();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(state.cluster_id.clone().unwrap_or_default()))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_brokers(
            state
                .brokers
                .values()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(str_bytes(b.host.clone()))
                        .with_port(b.port)
                        .with_rack(b.rack.clone().map(str_bytes))
                })
                .collect(),
        )
}
