//! What every handler can reach: this broker's identity and settings, the metadata store and
//! the partition logs.

use std::sync::Arc;

use chronik_log::LogManager;
use chronik_meta::MetadataStore;

/// Kafka-facing settings of one broker. Defaults and validation live in chronik-server's config.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub node_id: i32,
    /// Host and port given to clients in Metadata responses.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Create unknown topics on Metadata (when the client allows) and Produce.
    pub auto_create_topics: bool,
    /// Partitions of a topic created without an explicit count (Kafka's num.partitions).
    pub default_partitions: i32,
    pub default_replication_factor: i16,
    /// Largest request frame accepted (socket.request.max.bytes); checked before allocating.
    pub max_request_bytes: usize,
    /// Requests of one connection being worked on at once (their responses still go out in
    /// order); bounds the memory one client can pin.
    pub max_in_flight_per_connection: usize,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            node_id: 1,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            max_request_bytes: 100 << 20,
            max_in_flight_per_connection: 16,
        }
    }
}

/// Shared state of the Kafka service.
#[derive(Debug)]
pub struct Broker {
    pub config: KafkaConfig,
    pub meta: Arc<dyn MetadataStore>,
    pub logs: Arc<LogManager>,
}

impl Broker {
    pub fn new(config: KafkaConfig, meta: Arc<dyn MetadataStore>, logs: Arc<LogManager>) -> Self {
        Broker { config, meta, logs }
    }

    pub fn cluster_id(&self) -> String {
        self.meta.state().cluster_id.clone().unwrap_or_default()
    }
}
