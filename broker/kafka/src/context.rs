//! What every handler can reach: this broker's identity and settings, the metadata store and
//! the partition logs.

use std::sync::{Arc, OnceLock};

use chronik_log::LogManager;
use chronik_meta::MetadataStore;

use crate::coordinator::consumer_group::ConsumerGroupConfig;
use crate::coordinator::group::GroupConfig;
use crate::coordinator::transaction_coordinator::{TransactionConfig, TransactionCoordinator};
use crate::coordinator::{Coordinator, CoordinatorConfig, CoordinatorError};
use crate::replication::{FetcherManager, ReplicaManager, ReplicationConfig};

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
    /// min.insync.replicas given to topics that do not set it (capped at their replication
    /// factor).
    pub default_min_insync_replicas: i32,
    /// Largest request frame accepted (socket.request.max.bytes); checked before allocating.
    pub max_request_bytes: usize,
    /// Requests of one connection being worked on at once (their responses still go out in
    /// order); bounds the memory one client can pin.
    pub max_in_flight_per_connection: usize,
    /// group.initial.rebalance.delay.ms: the first rebalance of an empty group waits this long
    /// for more members to arrive.
    pub group_initial_rebalance_delay_ms: i64,
    /// group.min.session.timeout.ms / group.max.session.timeout.ms: JoinGroup outside this
    /// range is INVALID_SESSION_TIMEOUT.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// group.consumer.session.timeout.ms: a KIP-848 consumer-group member silent this long
    /// is removed.
    pub group_consumer_session_timeout_ms: i64,
    /// group.consumer.heartbeat.interval.ms: how often KIP-848 members heartbeat (and so how
    /// soon they learn of a new assignment).
    pub group_consumer_heartbeat_interval_ms: i32,
    /// offsets.topic.num.partitions, used when `__consumer_offsets` is created.
    pub offsets_topic_partitions: i32,
    /// offsets.retention.minutes, in millis: how long an empty group's offsets are kept.
    pub offsets_retention_ms: i64,
    /// transaction.state.log.num.partitions, used when `__transaction_state` is created.
    pub transaction_state_partitions: i32,
    /// transaction.max.timeout.ms: the longest transaction.timeout.ms a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// transactional.id.expiration.ms: an idle transactional id is forgotten after this long.
    pub transactional_id_expiration_ms: i64,
    /// Partition replication between brokers (ISR lag, fetch sizes).
    pub replication: ReplicationConfig,
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
            default_min_insync_replicas: 1,
            max_request_bytes: 100 << 20,
            max_in_flight_per_connection: 16,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_consumer_session_timeout_ms: ConsumerGroupConfig::default().session_timeout_ms,
            group_consumer_heartbeat_interval_ms: ConsumerGroupConfig::default()
                .heartbeat_interval_ms,
            // Kafka defaults to 50; a single node gains nothing from that many (each is a log
            // with open files and a replay at start), while 8 still spreads groups over several
            // logs so one busy group's commits do not queue behind every other group's fsyncs.
            offsets_topic_partitions: 8,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            // Kafka has 50; fewer for the reason given for offsets_topic_partitions.
            transaction_state_partitions: 8,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            replication: ReplicationConfig::default(),
        }
    }
}

/// Shared state of the Kafka service.
#[derive(Debug)]
pub struct Broker {
    pub config: KafkaConfig,
    pub meta: Arc<dyn MetadataStore>,
    pub logs: Arc<LogManager>,
    /// Consumer groups and committed offsets (loaded from `__consumer_offsets` on first use).
    pub(crate) groups: Arc<Coordinator>,
    /// Producer ids for idempotent producers (InitProducerId), reserved in blocks.
    pub(crate) producer_ids: crate::handlers::init_producer_id::ProducerIdAllocator,
    /// Transactional ids and their transactions (loaded from `__transaction_state`).
    pub(crate) transactions: TransactionCoordinator,
    /// Leader side of partition replication: follower progress, ISR, high watermarks.
    pub(crate) replicas: Arc<ReplicaManager>,
    /// Follower side, started by [`Broker::start_replication`] (a broker without it serves
    /// only partitions with a single replica).
    pub(crate) fetchers: OnceLock<FetcherManager>,
}

impl Broker {
    pub fn new(config: KafkaConfig, meta: Arc<dyn MetadataStore>, logs: Arc<LogManager>) -> Self {
        let coordinator = CoordinatorConfig {
            group: GroupConfig {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                ..GroupConfig::default()
            },
            consumer: ConsumerGroupConfig {
                session_timeout_ms: config.group_consumer_session_timeout_ms,
                heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            },
            offsets_topic_partitions: config.offsets_topic_partitions,
            // Replicated like any topic (capped at the live brokers when it is created): the
            // group coordinator writes through the in-sync replicas and reloads a partition's
            // groups when it takes over its leadership.
            offsets_topic_replication_factor: config.default_replication_factor.max(1),
            offsets_retention_ms: config.offsets_retention_ms,
            offsets_retention_check_ms: 600_000,
            offset_metadata_max_bytes: 4096,
        };
        let replicas = Arc::new(ReplicaManager::default());
        let groups = Arc::new(Coordinator::new(
            config.node_id,
            coordinator,
            meta.clone(),
            logs.clone(),
            replicas.clone(),
        ));
        let transactions = TransactionCoordinator::new(
            config.node_id,
            TransactionConfig {
                partitions: config.transaction_state_partitions,
                // Replicated like __consumer_offsets (capped at the live brokers).
                replication_factor: config.default_replication_factor.max(1),
                max_timeout_ms: config.transaction_max_timeout_ms,
                id_expiration_ms: config.transactional_id_expiration_ms,
            },
            meta.clone(),
            logs.clone(),
            replicas.clone(),
        );
        Broker {
            config,
            meta,
            logs,
            groups,
            producer_ids: Default::default(),
            transactions,
            replicas,
            fetchers: OnceLock::new(),
        }
    }

    /// Create `__consumer_offsets` if needed and rebuild groups and offsets from it; then, if
    /// `__transaction_state` exists, rebuild the transactions, which finishes prepared commits
    /// and aborts and starts the timer that aborts open transactions past their timeout.
    /// Requests do this on first use; calling it at start-up moves the cost out of the first
    /// request, surfaces a problem early, and ends transactions left open by a crash even if
    /// no transactional client comes back.
    pub async fn start_group_coordinator(self: &Arc<Self>) -> Result<(), CoordinatorError> {
        self.groups.start().await?;
        self.transactions.start_if_present(self).await
    }

    pub fn cluster_id(&self) -> String {
        self.meta.state().cluster_id.clone().unwrap_or_default()
    }
}
