//! Server configuration: one typed struct with its defaults in one place, loaded from a TOML
//! file, then overridden by environment variables, then by command-line flags, and validated
//! before anything starts. A bad value stops start-up with a message naming the setting.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chronik_log::FlushPolicy;
use serde::Deserialize;

/// Every broker setting. Field names are the TOML keys; each has an environment variable.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// CHRONIK_DATA_DIR: all local state.
    pub data_dir: PathBuf,
    /// CHRONIK_BIND_ADDR: listen address for every port.
    pub bind_addr: String,
    /// CHRONIK_ADVERTISED_ADDR: host given to Kafka clients.
    pub advertised_addr: Option<String>,
    /// CHRONIK_KAFKA_PORT
    pub kafka_port: u16,
    /// CHRONIK_UNIFIED_API_PORT: the HTTP API.
    pub unified_api_port: u16,
    /// CHRONIK_CLUSTER_PORT: Raft RPCs between brokers (gRPC).
    pub cluster_port: u16,
    /// CHRONIK_PG_PORT: the PostgreSQL wire protocol over the SQL tables; off unless set.
    pub pg_port: Option<u16>,
    /// CHRONIK_ADMIN_API_KEY: required by /admin; without it /admin answers only on loopback.
    pub admin_api_key: Option<String>,
    /// CHRONIK_NODE_ID
    pub node_id: i32,
    /// CHRONIK_PEERS: `1@host:5001,2@host:5001`, the initial Raft voters (the same list on
    /// every node). Unset: a single-node cluster.
    pub peers: Option<String>,
    /// CHRONIK_FLUSH: group, os or interval:<ms>.
    pub flush: String,
    /// CHRONIK_DEFAULT_REPLICATION_FACTOR: unset means min(3, live brokers).
    pub default_replication_factor: Option<i16>,
    /// CHRONIK_MIN_INSYNC_REPLICAS
    pub min_insync_replicas: i32,
    /// CHRONIK_AUTO_CREATE_TOPICS
    pub auto_create_topics: bool,
    /// CHRONIK_DEFAULT_PARTITIONS: partitions of auto-created topics.
    pub default_partitions: i32,
    /// CHRONIK_MAX_REQUEST_BYTES: Kafka's socket.request.max.bytes.
    pub max_request_bytes: usize,
    /// CHRONIK_LOG_MAINTENANCE_MS: how often retention and compaction run.
    pub log_maintenance_ms: u64,
    /// CHRONIK_REPLICA_LAG_TIME_MAX_MS: Kafka's replica.lag.time.max.ms, how long a follower
    /// may go without catching up before it leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS: Kafka's group.initial.rebalance.delay.ms.
    pub group_initial_rebalance_delay_ms: u64,
    /// CHRONIK_GROUP_MIN_SESSION_TIMEOUT_MS: Kafka's group.min.session.timeout.ms.
    pub group_min_session_timeout_ms: i32,
    /// CHRONIK_GROUP_MAX_SESSION_TIMEOUT_MS: Kafka's group.max.session.timeout.ms.
    pub group_max_session_timeout_ms: i32,
    /// CHRONIK_GROUP_CONSUMER_SESSION_TIMEOUT_MS: Kafka's group.consumer.session.timeout.ms
    /// (KIP-848 consumer groups).
    pub group_consumer_session_timeout_ms: u64,
    /// CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS: Kafka's
    /// group.consumer.heartbeat.interval.ms.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// CHRONIK_OFFSETS_TOPIC_PARTITIONS: partitions of `__consumer_offsets` when created.
    pub offsets_topic_partitions: i32,
    /// CHRONIK_OFFSETS_RETENTION_MINUTES: how long an empty group's offsets are kept.
    pub offsets_retention_minutes: u64,
    /// CHRONIK_TRANSACTION_STATE_PARTITIONS: partitions of `__transaction_state` when created
    /// (Kafka's transaction.state.log.num.partitions).
    pub transaction_state_partitions: i32,
    /// CHRONIK_TRANSACTIONAL_ID_EXPIRATION_MS: a transactional id with no transaction open and
    /// no activity for this long is forgotten (Kafka's transactional.id.expiration.ms).
    pub transactional_id_expiration_ms: u64,
    /// CHRONIK_EMBEDDING_PROVIDER: `local` (the in-process model), `openai` (an
    /// OpenAI-compatible /v1/embeddings endpoint) or `none`; topics may choose another.
    pub embedding_provider: String,
    /// CHRONIK_EMBEDDING_MODEL: the model of the provider (local: all-MiniLM-L6-v2; openai:
    /// text-embedding-3-small unless set).
    pub embedding_model: Option<String>,
    /// CHRONIK_EMBEDDING_ENDPOINT: the openai provider's URL (a `.../v1` base or the full
    /// `/v1/embeddings` URL); default OpenAI's.
    pub embedding_endpoint: Option<String>,
    /// OPENAI_API_KEY: bearer token sent to the openai provider's endpoint.
    pub embedding_api_key: Option<String>,
    /// CHRONIK_EMBEDDING_TIMEOUT_MS: time limit of one request to a remote endpoint.
    pub embedding_timeout_ms: u64,
    /// CHRONIK_EMBEDDING_MODEL_DIR: where the local model's files are (`make model` fills it);
    /// default `$HOME/.cache/chronik-models/all-minilm-l6-v2`.
    pub embedding_model_dir: Option<PathBuf>,
    /// CHRONIK_EMBEDDING_WORKERS: embedding batches run at once (each uses every core).
    pub embedding_workers: usize,
    /// CHRONIK_SQL_HOT_BUFFER_BYTES: budget for every columnar hot buffer of the node; past it
    /// partitions seal early.
    pub sql_hot_buffer_bytes: usize,
    /// CHRONIK_SQL_SEAL_ROWS: a partition's hot buffer is sealed into Parquet at this many rows,
    pub sql_seal_rows: usize,
    /// CHRONIK_SQL_SEAL_BYTES: ...or this many bytes,
    pub sql_seal_bytes: usize,
    /// CHRONIK_SQL_SEAL_AGE_MS: ...or when its oldest row is this old.
    pub sql_seal_age_ms: u64,
    /// CHRONIK_SQL_ROW_GROUP_ROWS: rows per Parquet row group.
    pub sql_row_group_rows: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let kafka = chronik_kafka::KafkaConfig::default();
        ServerConfig {
            data_dir: PathBuf::from("./data"),
            bind_addr: "127.0.0.1".into(),
            advertised_addr: None,
            kafka_port: 9092,
            unified_api_port: 6092,
            cluster_port: 5001,
            pg_port: None,
            admin_api_key: None,
            node_id: 1,
            peers: None,
            flush: "group".into(),
            default_replication_factor: None,
            min_insync_replicas: 1,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: 100 << 20,
            log_maintenance_ms: 30_000,
            replica_lag_time_max_ms: 30_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            // The group coordinator's defaults (Kafka's group.consumer.*), not repeated here.
            group_consumer_session_timeout_ms: kafka.group_consumer_session_timeout_ms.max(0)
                as u64,
            group_consumer_heartbeat_interval_ms: kafka.group_consumer_heartbeat_interval_ms,
            offsets_topic_partitions: 8,
            offsets_retention_minutes: 7 * 24 * 60,
            transaction_state_partitions: 8,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            embedding_provider: "local".into(),
            embedding_model: None,
            embedding_endpoint: None,
            embedding_api_key: None,
            embedding_timeout_ms: 30_000,
            embedding_model_dir: None,
            embedding_workers: 1,
            sql_hot_buffer_bytes: 1 << 30,
            sql_seal_rows: 1_000_000,
            sql_seal_bytes: 128 << 20,
            sql_seal_age_ms: 300_000,
            sql_row_group_rows: 128 * 1024,
        }
    }
}

/// A setting that cannot be used, named as the user wrote it.
#[derive(Debug, PartialEq)]
pub struct ConfigError {
    pub setting: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid setting {}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Settings of the product contract whose capability is not in this build. Setting one stops
/// start-up: ignoring it would be worse (a broker told to require SASL must not quietly accept
/// anonymous clients, and one told to tier to S3 must not quietly keep everything local).
const UNAVAILABLE_SETTINGS: &[(&str, &str)] = &[
    ("CHRONIK_SASL_USERS", "SASL authentication"),
    ("CHRONIK_TLS_CERT", "TLS"),
    ("CHRONIK_TLS_KEY", "TLS"),
    ("OBJECT_STORE_URL", "tiered storage"),
    ("CHRONIK_LOCAL_RETENTION_MS", "tiered storage"),
];

fn invalid(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_string(),
        reason: reason.into(),
    }
}

impl ServerConfig {
    /// Defaults, then the TOML file if given, then environment variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| invalid("--config", format!("{}: {e}", path.display())))?;
                toml::from_str(&text)
                    .map_err(|e| invalid(&path.display().to_string(), e.to_string()))?
            }
            None => ServerConfig::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.trim()
                .parse()
                .map_err(|e: T::Err| invalid(name, format!("'{v}': {e}")))
        }
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        for (name, capability) in UNAVAILABLE_SETTINGS {
            if get(name).is_some() {
                return Err(invalid(
                    name,
                    format!("{capability} is not available in this build yet; unset it"),
                ));
            }
        }
        if let Some(v) = get("CHRONIK_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("CHRONIK_BIND_ADDR") {
            self.bind_addr = v;
        }
        if let Some(v) = get("CHRONIK_ADVERTISED_ADDR") {
            self.advertised_addr = Some(v);
        }
        if let Some(v) = get("CHRONIK_KAFKA_PORT") {
            self.kafka_port = parse("CHRONIK_KAFKA_PORT", &v)?;
        }
        if let Some(v) = get("CHRONIK_UNIFIED_API_PORT") {
            self.unified_api_port = parse("CHRONIK_UNIFIED_API_PORT", &v)?;
        }
        if let Some(v) = get("CHRONIK_CLUSTER_PORT") {
            self.cluster_port = parse("CHRONIK_CLUSTER_PORT", &v)?;
        }
        if let Some(v) = get("CHRONIK_PG_PORT") {
            self.pg_port = Some(parse("CHRONIK_PG_PORT", &v)?);
        }
        if let Some(v) = get("CHRONIK_ADMIN_API_KEY") {
            self.admin_api_key = Some(v);
        }
        if let Some(v) = get("CHRONIK_NODE_ID") {
            self.node_id = parse("CHRONIK_NODE_ID", &v)?;
        }
        if let Some(v) = get("CHRONIK_PEERS") {
            self.peers = Some(v);
        }
        if let Some(v) = get("CHRONIK_FLUSH") {
            self.flush = v;
        }
        if let Some(v) = get("CHRONIK_DEFAULT_REPLICATION_FACTOR") {
            self.default_replication_factor =
                Some(parse("CHRONIK_DEFAULT_REPLICATION_FACTOR", &v)?);
        }
        if let Some(v) = get("CHRONIK_MIN_INSYNC_REPLICAS") {
            self.min_insync_replicas = parse("CHRONIK_MIN_INSYNC_REPLICAS", &v)?;
        }
        if let Some(v) = get("CHRONIK_AUTO_CREATE_TOPICS") {
            self.auto_create_topics = parse("CHRONIK_AUTO_CREATE_TOPICS", &v)?;
        }
        if let Some(v) = get("CHRONIK_DEFAULT_PARTITIONS") {
            self.default_partitions = parse("CHRONIK_DEFAULT_PARTITIONS", &v)?;
        }
        if let Some(v) = get("CHRONIK_MAX_REQUEST_BYTES") {
            self.max_request_bytes = parse("CHRONIK_MAX_REQUEST_BYTES", &v)?;
        }
        if let Some(v) = get("CHRONIK_LOG_MAINTENANCE_MS") {
            self.log_maintenance_ms = parse("CHRONIK_LOG_MAINTENANCE_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_REPLICA_LAG_TIME_MAX_MS") {
            self.replica_lag_time_max_ms = parse("CHRONIK_REPLICA_LAG_TIME_MAX_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS") {
            self.group_initial_rebalance_delay_ms =
                parse("CHRONIK_GROUP_INITIAL_REBALANCE_DELAY_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_GROUP_MIN_SESSION_TIMEOUT_MS") {
            self.group_min_session_timeout_ms = parse("CHRONIK_GROUP_MIN_SESSION_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_GROUP_MAX_SESSION_TIMEOUT_MS") {
            self.group_max_session_timeout_ms = parse("CHRONIK_GROUP_MAX_SESSION_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_GROUP_CONSUMER_SESSION_TIMEOUT_MS") {
            self.group_consumer_session_timeout_ms =
                parse("CHRONIK_GROUP_CONSUMER_SESSION_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS") {
            self.group_consumer_heartbeat_interval_ms =
                parse("CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_OFFSETS_TOPIC_PARTITIONS") {
            self.offsets_topic_partitions = parse("CHRONIK_OFFSETS_TOPIC_PARTITIONS", &v)?;
        }
        if let Some(v) = get("CHRONIK_SQL_HOT_BUFFER_BYTES") {
            self.sql_hot_buffer_bytes = parse("CHRONIK_SQL_HOT_BUFFER_BYTES", &v)?;
        }
        if let Some(v) = get("CHRONIK_SQL_SEAL_ROWS") {
            self.sql_seal_rows = parse("CHRONIK_SQL_SEAL_ROWS", &v)?;
        }
        if let Some(v) = get("CHRONIK_SQL_SEAL_BYTES") {
            self.sql_seal_bytes = parse("CHRONIK_SQL_SEAL_BYTES", &v)?;
        }
        if let Some(v) = get("CHRONIK_SQL_SEAL_AGE_MS") {
            self.sql_seal_age_ms = parse("CHRONIK_SQL_SEAL_AGE_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_SQL_ROW_GROUP_ROWS") {
            self.sql_row_group_rows = parse("CHRONIK_SQL_ROW_GROUP_ROWS", &v)?;
        }
        if let Some(v) = get("CHRONIK_OFFSETS_RETENTION_MINUTES") {
            self.offsets_retention_minutes = parse("CHRONIK_OFFSETS_RETENTION_MINUTES", &v)?;
        }
        if let Some(v) = get("CHRONIK_TRANSACTION_STATE_PARTITIONS") {
            self.transaction_state_partitions = parse("CHRONIK_TRANSACTION_STATE_PARTITIONS", &v)?;
        }
        if let Some(v) = get("CHRONIK_TRANSACTIONAL_ID_EXPIRATION_MS") {
            self.transactional_id_expiration_ms =
                parse("CHRONIK_TRANSACTIONAL_ID_EXPIRATION_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_EMBEDDING_PROVIDER") {
            self.embedding_provider = v.trim().to_string();
        }
        if let Some(v) = get("CHRONIK_EMBEDDING_MODEL") {
            self.embedding_model = Some(v.trim().to_string());
        }
        if let Some(v) = get("CHRONIK_EMBEDDING_ENDPOINT") {
            self.embedding_endpoint = Some(v.trim().to_string());
        }
        if let Some(v) = get("OPENAI_API_KEY") {
            self.embedding_api_key = Some(v.trim().to_string());
        }
        if let Some(v) = get("CHRONIK_EMBEDDING_TIMEOUT_MS") {
            self.embedding_timeout_ms = parse("CHRONIK_EMBEDDING_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("CHRONIK_EMBEDDING_MODEL_DIR") {
            self.embedding_model_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("CHRONIK_EMBEDDING_WORKERS") {
            self.embedding_workers = parse("CHRONIK_EMBEDDING_WORKERS", &v)?;
        }
        Ok(())
    }

    /// Check every setting; the first bad one is reported by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bind: IpAddr = self.bind_addr.parse().map_err(|_| {
            invalid(
                "CHRONIK_BIND_ADDR",
                format!("'{}' is not an IP address", self.bind_addr),
            )
        })?;
        if bind.is_unspecified() && self.advertised_addr.is_none() {
            return Err(invalid(
                "CHRONIK_ADVERTISED_ADDR",
                "required when binding to all interfaces, so clients know where to connect",
            ));
        }
        if self.kafka_port == 0 {
            return Err(invalid("CHRONIK_KAFKA_PORT", "must not be 0"));
        }
        if self.unified_api_port == 0 {
            return Err(invalid("CHRONIK_UNIFIED_API_PORT", "must not be 0"));
        }
        if self.unified_api_port == self.kafka_port {
            return Err(invalid(
                "CHRONIK_UNIFIED_API_PORT",
                "must differ from CHRONIK_KAFKA_PORT",
            ));
        }
        if self.node_id < 0 {
            return Err(invalid("CHRONIK_NODE_ID", "must be zero or positive"));
        }
        self.flush_policy()?;
        if self.group_min_session_timeout_ms < 1 {
            return Err(invalid(
                "CHRONIK_GROUP_MIN_SESSION_TIMEOUT_MS",
                "must be at least 1",
            ));
        }
        if self.group_max_session_timeout_ms < self.group_min_session_timeout_ms {
            return Err(invalid(
                "CHRONIK_GROUP_MAX_SESSION_TIMEOUT_MS",
                "must not be below CHRONIK_GROUP_MIN_SESSION_TIMEOUT_MS",
            ));
        }
        if self.group_consumer_heartbeat_interval_ms < 1 {
            return Err(invalid(
                "CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
                "must be at least 1",
            ));
        }
        if self.group_consumer_session_timeout_ms
            <= self.group_consumer_heartbeat_interval_ms.max(0) as u64
        {
            return Err(invalid(
                "CHRONIK_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
                "must be above CHRONIK_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
            ));
        }
        if self.offsets_topic_partitions < 1 {
            return Err(invalid(
                "CHRONIK_OFFSETS_TOPIC_PARTITIONS",
                "must be at least 1",
            ));
        }
        if self.transaction_state_partitions < 1 {
            return Err(invalid(
                "CHRONIK_TRANSACTION_STATE_PARTITIONS",
                "must be at least 1",
            ));
        }
        if self.offsets_retention_minutes < 1 {
            return Err(invalid(
                "CHRONIK_OFFSETS_RETENTION_MINUTES",
                "must be at least 1",
            ));
        }
        if self.transactional_id_expiration_ms < 1
            || i64::try_from(self.transactional_id_expiration_ms).is_err()
        {
            return Err(invalid(
                "CHRONIK_TRANSACTIONAL_ID_EXPIRATION_MS",
                "must be at least 1",
            ));
        }
        if self.cluster_port == 0 {
            return Err(invalid("CHRONIK_CLUSTER_PORT", "must not be 0"));
        }
        if self.cluster_port == self.kafka_port || self.cluster_port == self.unified_api_port {
            return Err(invalid(
                "CHRONIK_CLUSTER_PORT",
                "must differ from CHRONIK_KAFKA_PORT and CHRONIK_UNIFIED_API_PORT",
            ));
        }
        if let Some(pg) = self.pg_port {
            if pg == 0 || [self.kafka_port, self.unified_api_port, self.cluster_port].contains(&pg)
            {
                return Err(invalid(
                    "CHRONIK_PG_PORT",
                    "must be non-zero and differ from the Kafka, HTTP and cluster ports",
                ));
            }
        }
        self.initial_voters()?;
        if let Some(rf) = self.default_replication_factor {
            if rf < 1 {
                return Err(invalid(
                    "CHRONIK_DEFAULT_REPLICATION_FACTOR",
                    "must be at least 1",
                ));
            }
        }
        if self.min_insync_replicas < 1 {
            return Err(invalid("CHRONIK_MIN_INSYNC_REPLICAS", "must be at least 1"));
        }
        if self.default_partitions < 1 {
            return Err(invalid("CHRONIK_DEFAULT_PARTITIONS", "must be at least 1"));
        }
        if self.max_request_bytes < 1024 {
            return Err(invalid(
                "CHRONIK_MAX_REQUEST_BYTES",
                "must be at least 1024",
            ));
        }
        if self.replica_lag_time_max_ms == 0 || self.replica_lag_time_max_ms > i64::MAX as u64 {
            return Err(invalid(
                "CHRONIK_REPLICA_LAG_TIME_MAX_MS",
                "must be positive",
            ));
        }
        if self.log_maintenance_ms == 0 {
            return Err(invalid("CHRONIK_LOG_MAINTENANCE_MS", "must be positive"));
        }
        let local = match self.embedding_provider.as_str() {
            "local" => true,
            "openai" | "none" => false,
            other => {
                return Err(invalid(
                    "CHRONIK_EMBEDDING_PROVIDER",
                    format!("'{other}' is not local, openai or none"),
                ))
            }
        };
        if let Some(e) = &self.embedding_endpoint {
            chronik_meta::check_embedding_endpoint(e)
                .map_err(|reason| invalid("CHRONIK_EMBEDDING_ENDPOINT", reason))?;
        }
        if !(1..=600_000).contains(&self.embedding_timeout_ms) {
            return Err(invalid(
                "CHRONIK_EMBEDDING_TIMEOUT_MS",
                "must be between 1 and 600000",
            ));
        }
        if let Some(m) = self.embedding_model.as_ref().filter(|_| local) {
            if !matches!(
                m.as_str(),
                "all-MiniLM-L6-v2" | "sentence-transformers/all-MiniLM-L6-v2"
            ) {
                return Err(invalid(
                    "CHRONIK_EMBEDDING_MODEL",
                    format!("'{m}' is not a model of the local provider (all-MiniLM-L6-v2)"),
                ));
            }
        }
        if !(1..=64).contains(&self.embedding_workers) {
            return Err(invalid(
                "CHRONIK_EMBEDDING_WORKERS",
                "must be between 1 and 64",
            ));
        }
        if self.sql_hot_buffer_bytes < 1 << 20 {
            return Err(invalid(
                "CHRONIK_SQL_HOT_BUFFER_BYTES",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        for (setting, value) in [
            ("CHRONIK_SQL_SEAL_ROWS", self.sql_seal_rows),
            ("CHRONIK_SQL_SEAL_BYTES", self.sql_seal_bytes),
            ("CHRONIK_SQL_ROW_GROUP_ROWS", self.sql_row_group_rows),
        ] {
            if value == 0 {
                return Err(invalid(setting, "must be positive"));
            }
        }
        if self.sql_seal_age_ms == 0 {
            return Err(invalid("CHRONIK_SQL_SEAL_AGE_MS", "must be positive"));
        }
        Ok(())
    }

    /// Where the local embedding model is read from.
    pub fn model_dir(&self) -> PathBuf {
        self.embedding_model_dir.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".cache/chronik-models/all-minilm-l6-v2")
        })
    }

    pub fn flush_policy(&self) -> Result<FlushPolicy, ConfigError> {
        self.flush
            .parse()
            .map_err(|e: String| invalid("CHRONIK_FLUSH", e))
    }

    /// The initial Raft voters and their cluster-port addresses: CHRONIK_PEERS
    /// (`id@host:port,...`), or this node alone when no peers are configured. This node need
    /// not be listed: then it waits to be added to the cluster.
    pub fn initial_voters(&self) -> Result<BTreeMap<i32, String>, ConfigError> {
        let Some(peers) = self.peers.as_deref().filter(|p| !p.trim().is_empty()) else {
            return Ok(BTreeMap::from([(self.node_id, self.cluster_address())]));
        };
        let mut voters = BTreeMap::new();
        for peer in peers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why: &str| invalid("CHRONIK_PEERS", format!("'{peer}': {why}"));
            let (id, addr) = peer
                .split_once('@')
                .ok_or_else(|| bad("expected <node id>@<host>:<port>"))?;
            let id: i32 = id
                .trim()
                .parse()
                .map_err(|_| bad("the node id is not a number"))?;
            if id < 0 {
                return Err(bad("the node id must be zero or positive"));
            }
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| bad("expected <host>:<port> after '@'"))?;
            if host.is_empty() {
                return Err(bad("the host is empty"));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(bad("the port is not a number from 1 to 65535")),
            }
            if voters.insert(id, addr.to_string()).is_some() {
                return Err(bad("node id listed twice"));
            }
        }
        if voters.is_empty() {
            return Err(invalid("CHRONIK_PEERS", "lists no peers"));
        }
        Ok(voters)
    }

    /// Where other brokers reach this one's cluster port.
    pub fn cluster_address(&self) -> String {
        format!("{}:{}", self.advertised_host(), self.cluster_port)
    }

    pub fn advertised_host(&self) -> String {
        self.advertised_addr
            .clone()
            .unwrap_or_else(|| self.bind_addr.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_follow_the_spec_and_validate() {
        let c = ServerConfig::load(None, env(&[])).unwrap();
        assert_eq!(
            (c.kafka_port, c.unified_api_port, c.cluster_port),
            (9092, 6092, 5001)
        );
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.flush_policy().unwrap(), FlushPolicy::Group);
        c.validate().unwrap();
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "kafka_port = 1000\nnode_id = 4\n").unwrap();
        let c = ServerConfig::load(Some(&file), env(&[("CHRONIK_KAFKA_PORT", "2000")])).unwrap();
        assert_eq!((c.kafka_port, c.node_id), (2000, 4));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = ServerConfig::load(None, env(&[("CHRONIK_KAFKA_PORT", "x")])).unwrap_err();
        assert_eq!(e.setting, "CHRONIK_KAFKA_PORT");
        let c = ServerConfig::load(None, env(&[("CHRONIK_FLUSH", "sometimes")])).unwrap();
        assert_eq!(c.validate().unwrap_err().setting, "CHRONIK_FLUSH");
        let c = ServerConfig::load(None, env(&[("CHRONIK_BIND_ADDR", "0.0.0.0")])).unwrap();
        assert_eq!(c.validate().unwrap_err().setting, "CHRONIK_ADVERTISED_ADDR");
        for bad in [
            "1@a:5001,1@b:5001",
            "x@a:5001",
            "1@a",
            "1@:5001",
            "1@a:0",
            "1a:5001",
        ] {
            let c = ServerConfig::load(None, env(&[("CHRONIK_PEERS", bad)])).unwrap();
            assert_eq!(c.validate().unwrap_err().setting, "CHRONIK_PEERS", "{bad}");
        }
        let c =
            ServerConfig::load(None, env(&[("CHRONIK_DEFAULT_REPLICATION_FACTOR", "3")])).unwrap();
        c.validate().unwrap();
        let c =
            ServerConfig::load(None, env(&[("CHRONIK_DEFAULT_REPLICATION_FACTOR", "0")])).unwrap();
        assert_eq!(
            c.validate().unwrap_err().setting,
            "CHRONIK_DEFAULT_REPLICATION_FACTOR"
        );
        let c = ServerConfig::load(None, env(&[("CHRONIK_CLUSTER_PORT", "9092")])).unwrap();
        assert_eq!(c.validate().unwrap_err().setting, "CHRONIK_CLUSTER_PORT");
        let c = ServerConfig::load(None, env(&[("CHRONIK_PG_PORT", "9092")])).unwrap();
        assert_eq!(c.validate().unwrap_err().setting, "CHRONIK_PG_PORT");
        let c = ServerConfig::load(None, env(&[("CHRONIK_PG_PORT", "5433")])).unwrap();
        assert_eq!(c.pg_port, Some(5433));
        c.validate().unwrap();
        let c = ServerConfig::load(None, env(&[("CHRONIK_SQL_HOT_BUFFER_BYTES", "1000")])).unwrap();
        assert_eq!(
            c.validate().unwrap_err().setting,
            "CHRONIK_SQL_HOT_BUFFER_BYTES"
        );
        let c = ServerConfig::load(None, env(&[("CHRONIK_SQL_SEAL_ROWS", "0")])).unwrap();
        assert_eq!(c.validate().unwrap_err().setting, "CHRONIK_SQL_SEAL_ROWS");
        let c = ServerConfig::load(None, env(&[("CHRONIK_SQL_SEAL_ROWS", "5000")])).unwrap();
        assert_eq!(c.sql_seal_rows, 5000);
        c.validate().unwrap();
        let c = ServerConfig::load(None, env(&[("CHRONIK_TRANSACTION_STATE_PARTITIONS", "0")]))
            .unwrap();
        assert_eq!(
            c.validate().unwrap_err().setting,
            "CHRONIK_TRANSACTION_STATE_PARTITIONS"
        );
        let c = ServerConfig::load(None, env(&[("CHRONIK_TRANSACTION_STATE_PARTITIONS", "1")]))
            .unwrap();
        assert_eq!(c.transaction_state_partitions, 1);
        c.validate().unwrap();
    }

    #[test]
    fn peers_are_the_initial_voters() {
        let c = ServerConfig::load(
            None,
            env(&[
                ("CHRONIK_NODE_ID", "2"),
                (
                    "CHRONIK_PEERS",
                    " 1@10.0.0.1:5001, 2@b.local:5002 ,3@[::1]:5003",
                ),
            ]),
        )
        .unwrap();
        c.validate().unwrap();
        let voters = c.initial_voters().unwrap();
        assert_eq!(voters[&1], "10.0.0.1:5001");
        assert_eq!(voters[&2], "b.local:5002");
        assert_eq!(voters[&3], "[::1]:5003");
        // Without peers, a node is a one-voter cluster at its own cluster address.
        let c = ServerConfig::load(None, env(&[("CHRONIK_CLUSTER_PORT", "7001")])).unwrap();
        assert_eq!(
            c.initial_voters().unwrap(),
            BTreeMap::from([(1, "127.0.0.1:7001".to_string())])
        );
        // A node missing from the list is allowed: it waits to be added.
        let c = ServerConfig::load(
            None,
            env(&[("CHRONIK_NODE_ID", "4"), ("CHRONIK_PEERS", "1@a:5001")]),
        )
        .unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn settings_for_absent_capabilities_stop_start_up() {
        for name in ["CHRONIK_SASL_USERS", "CHRONIK_TLS_CERT", "OBJECT_STORE_URL"] {
            let e = ServerConfig::load(None, env(&[(name, "x")])).unwrap_err();
            assert_eq!(e.setting, name);
            assert!(e.reason.contains("not available"), "{e}");
        }
        // Empty means unset, as for every other variable.
        ServerConfig::load(None, env(&[("CHRONIK_SASL_USERS", " ")])).unwrap();
    }

    #[test]
    fn embedding_settings_are_checked() {
        let c = ServerConfig::load(
            None,
            env(&[
                ("CHRONIK_EMBEDDING_MODEL_DIR", "/models/minilm"),
                ("CHRONIK_EMBEDDING_WORKERS", "2"),
            ]),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.embedding_provider, "local");
        assert_eq!(c.model_dir(), PathBuf::from("/models/minilm"));
        assert_eq!(c.embedding_workers, 2);
        for (name, value) in [
            ("CHRONIK_EMBEDDING_PROVIDER", "magic"),
            ("CHRONIK_EMBEDDING_MODEL", "bge-large"),
            ("CHRONIK_EMBEDDING_WORKERS", "0"),
            ("CHRONIK_EMBEDDING_ENDPOINT", "ftp://models"),
            ("CHRONIK_EMBEDDING_TIMEOUT_MS", "0"),
        ] {
            let c = ServerConfig::load(None, env(&[(name, value)])).unwrap();
            assert_eq!(c.validate().unwrap_err().setting, name, "{name}={value}");
        }
        // Any model name goes to a remote endpoint; the key is read from OPENAI_API_KEY.
        let c = ServerConfig::load(
            None,
            env(&[
                ("CHRONIK_EMBEDDING_PROVIDER", "openai"),
                ("CHRONIK_EMBEDDING_MODEL", "bge-large"),
                ("CHRONIK_EMBEDDING_ENDPOINT", "http://127.0.0.1:11434/v1"),
                ("OPENAI_API_KEY", "sk-test"),
            ]),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.embedding_api_key.as_deref(), Some("sk-test"));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "kafka_prot = 1\n").unwrap();
        let e = ServerConfig::load(Some(&file), env(&[])).unwrap_err();
        assert!(e.reason.contains("kafka_prot"), "{e}");
    }
}
