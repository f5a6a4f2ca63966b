//! The composition root: joins the Raft metadata quorum, registers this broker, recovers every
//! partition it owns, and serves Kafka clients until SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chronik_kafka::{listener, Broker, KafkaConfig};
use chronik_log::LogManager;
use chronik_meta::{BrokerInfo, ClusterState, Command, MetadataStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::sql::Sql;

pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let flush = config.flush_policy()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;

    let raft = crate::cluster::start_raft(&config).await?;
    let meta: Arc<dyn MetadataStore> = raft.store();
    let me = BrokerInfo {
        node_id: config.node_id,
        host: config.advertised_host(),
        port: i32::from(config.kafka_port),
        rack: None,
    };
    // Proposed even when unchanged: it returns once applied here at an index after everything
    // the cluster had committed, so the recovery below (which deletes logs of topics missing
    // from metadata) never acts on a state that is merely behind.
    meta.propose(Command::RegisterBroker(me))
        .await
        .context("cannot register this broker through the raft quorum")?;
    if meta.state().cluster_id.is_none() {
        meta.propose(Command::InitCluster {
            cluster_id: uuid::Uuid::new_v4().simple().to_string(),
        })
        .await?;
    }

    let logs = Arc::new(
        LogManager::open(config.data_dir.join("logs"), flush)
            .context("cannot open the log directory")?,
    );
    // Subscribed before recovery reads the state, so the sync task misses no later change.
    let changes = meta.subscribe();
    let recovered = recover_partitions(&meta, &logs, config.node_id)?;
    let maintenance = logs.spawn_background(Duration::from_millis(config.log_maintenance_ms));

    let kafka = KafkaConfig {
        node_id: config.node_id,
        advertised_host: config.advertised_host(),
        advertised_port: i32::from(config.kafka_port),
        auto_create_topics: config.auto_create_topics,
        default_partitions: config.default_partitions,
        // SPEC: min(3, brokers); topic creation caps it at the live brokers.
        default_replication_factor: config.default_replication_factor.unwrap_or(3),
        default_min_insync_replicas: config.min_insync_replicas,
        replication: chronik_kafka::replication::ReplicationConfig {
            replica_lag_time_max_ms: config.replica_lag_time_max_ms as i64,
            ..Default::default()
        },
        max_request_bytes: config.max_request_bytes,
        group_initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms as i64,
        group_min_session_timeout_ms: config.group_min_session_timeout_ms,
        group_max_session_timeout_ms: config.group_max_session_timeout_ms,
        group_consumer_session_timeout_ms: config.group_consumer_session_timeout_ms as i64,
        group_consumer_heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
        offsets_topic_partitions: config.offsets_topic_partitions,
        transaction_state_partitions: config.transaction_state_partitions,
        offsets_retention_ms: (config.offsets_retention_minutes as i64).saturating_mul(60_000),
        transactional_id_expiration_ms: config.transactional_id_expiration_ms as i64,
        ..KafkaConfig::default()
    };
    let broker = Arc::new(Broker::new(kafka, meta.clone(), logs.clone()));
    // Partition replication on the cluster port: serve followers, fetch as a follower.
    raft.set_replica_handler(Arc::new(crate::replication::ReplicaBridge(broker.clone())));
    let replication = broker.start_replication(Arc::new(crate::replication::GrpcLeaderLink(
        raft.replica_clients(),
    )));
    let partition_sync = broker.spawn_partition_sync(changes, recovered);
    // __consumer_offsets is placed over the brokers registered when it is created: give the
    // initial voters a moment to register so its partitions (and groups) spread over them.
    crate::cluster::wait_for_brokers(&config, &meta, Duration::from_secs(30)).await;
    // Create and replay __consumer_offsets before serving, so the first group request does
    // not pay for it and a damaged topic stops start-up with a clear message.
    broker
        .start_group_coordinator()
        .await
        .context("cannot load consumer groups from __consumer_offsets")?;

    // Indexes tail the logs from here on; a columnar topic's hot buffer is rebuilt from its log.
    let sql_config = chronik_sql::SqlConfig {
        seal_rows: config.sql_seal_rows,
        seal_bytes: config.sql_seal_bytes,
        seal_age: Duration::from_millis(config.sql_seal_age_ms),
        hot_buffer_bytes: config.sql_hot_buffer_bytes,
        row_group_rows: config.sql_row_group_rows,
        ..chronik_sql::SqlConfig::new(config.data_dir.join("columnar"))
    };
    let (_, columnar, sql_engine) = chronik_sql::open(sql_config);
    sql_engine.set_placement(Arc::new(crate::sql::MetadataPlacement {
        meta: meta.clone(),
        node_id: config.node_id,
    }));

    let addr = format!("{}:{}", config.bind_addr, config.kafka_port);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen for Kafka clients on {addr}"))?;
    tracing::info!(
        %addr,
        node_id = config.node_id,
        cluster_id = %broker.cluster_id(),
        data_dir = %config.data_dir.display(),
        flush = %config.flush,
        "chronik broker ready"
    );

    let http_addr = format!("{}:{}", config.bind_addr, config.unified_api_port);
    let http_listener = TcpListener::bind(&http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;
    let search_indexer = Arc::new(chronik_search::SearchIndexer::new(
        config.data_dir.join("index").join("search"),
    ));
    let vector_indexer = Arc::new(chronik_vector::VectorIndexer::new(
        config.data_dir.join("index").join("vector"),
        crate::vector::embedders(&config),
    ));
    let api = chronik_api::ApiState::new(broker.clone(), config.admin_api_key.clone())
        .with_search(Arc::new(crate::search::SearchApi::new(
            search_indexer.clone(),
        )))
        .with_vector(Arc::new(crate::vector::VectorApi::new(
            vector_indexer.clone(),
        )))
        .with_sql(Arc::new(Sql(sql_engine.clone())));
    // Indexes tail the logs after the write; the produce path never waits for them.
    let indexers: Vec<Arc<dyn chronik_index::Indexer>> =
        vec![search_indexer, vector_indexer, columnar];
    let pipeline = chronik_index::Pipeline::start(
        meta.clone(),
        Arc::new(crate::indexing::BrokerLogs(broker.clone())),
        indexers,
        chronik_index::PipelineConfig {
            node_id: config.node_id,
            ..chronik_index::PipelineConfig::default()
        },
    );
    tracing::info!(addr = %http_addr, "http api listening");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let http = tokio::spawn(chronik_api::serve(
        http_listener,
        api.clone(),
        shutdown_rx.clone(),
    ));
    let pg = match config.pg_port {
        Some(port) => {
            let pg_addr = format!("{}:{}", config.bind_addr, port);
            let pg_listener = TcpListener::bind(&pg_addr)
                .await
                .with_context(|| format!("cannot listen for PostgreSQL clients on {pg_addr}"))?;
            tracing::info!(addr = %pg_addr, "postgres wire protocol listening");
            Some(tokio::spawn(chronik_sql::pg::serve(
                pg_listener,
                sql_engine,
                chronik_sql::pg::PgConfig::default(),
                shutdown_rx.clone(),
            )))
        }
        None => None,
    };
    let server = tokio::spawn(listener::serve(listener, broker, shutdown_rx));
    // Logs are recovered and both listeners accept: from here on the broker serves traffic.
    api.set_ready(true);
    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    api.set_ready(false);
    let _ = server.await;
    let _ = http.await;
    if let Some(pg) = pg {
        let _ = pg.await;
    }
    // Every index persists its checkpoint before the logs close.
    pipeline.shutdown().await;
    maintenance.abort();
    partition_sync.abort();
    replication.abort();
    raft.shutdown().await;
    logs.close_all().context("closing logs")?;
    Ok(())
}

/// Open (and so recover) every partition this broker leads, and delete logs of topics that no
/// longer exist (deleted while the broker was down, or a crash mid-delete) and of replicas
/// moved to other brokers meanwhile. Returns the state it acted on.
fn recover_partitions(
    meta: &Arc<dyn MetadataStore>,
    logs: &Arc<LogManager>,
    node_id: i32,
) -> anyhow::Result<Arc<ClusterState>> {
    let state = meta.state();
    for (topic, partition) in logs.existing_partitions() {
        if !state.topics.contains_key(&topic) {
            tracing::info!(%topic, "removing logs of a deleted topic");
            logs.remove_topic(&topic)?;
            continue;
        }
        let moved = state
            .partition(&topic, partition)
            .is_some_and(|p| !p.replicas.contains(&node_id));
        if moved {
            tracing::info!(%topic, partition, "removing the log of a replica moved to another broker");
            logs.remove_partition(&topic, partition)?;
        }
    }
    let mut opened = 0usize;
    for topic in state.topics.values() {
        let config =
            chronik_kafka::log_config_for(&topic.config(), chronik_log::FlushPolicy::Group);
        for (index, partition) in topic.partitions.iter().enumerate() {
            if partition.leader == node_id {
                logs.get_or_create(&topic.name, index as i32, config.clone())
                    .with_context(|| format!("cannot recover {}-{index}", topic.name))?;
                opened += 1;
            }
        }
    }
    tracing::info!(partitions = opened, "partition logs recovered");
    Ok(state)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
