//! Index pipeline wiring: where the pipeline reads partition logs from (the broker, so a
//! partition is opened and recovered exactly as a produce would open it, and a follower's
//! replica is the one replication writes).

use std::sync::Arc;

use chronik_index::PartitionLogs;
use chronik_kafka::Broker;
use chronik_log::PartitionLog;
use chronik_meta::TopicMeta;

#[derive(Debug)]
pub struct BrokerLogs(pub Arc<Broker>);

impl PartitionLogs for BrokerLogs {
    fn log(&self, topic: &TopicMeta, partition: i32) -> Option<Arc<dyn PartitionLog>> {
        self.0.hosted_log(topic, partition)
    }
}
