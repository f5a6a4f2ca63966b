//! The composition root: opens metadata and logs, registers this broker, recovers every
//! partition it owns, and serves Kafka clients until SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chronik_kafka::{listener, Broker, KafkaConfig};
use chronik_log::LogManager;
use chronik_meta::{BrokerInfo, Command, LocalMetadataStore, MetadataStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::sql::{BrokerLogs, Sql};

pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let flush = config.flush_policy()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;

    let meta: Arc<dyn MetadataStore> = Arc::new(
        LocalMetadataStore::open(config.data_dir.join("meta"))
            .context("cannot open the metadata store")?,
    );
    if meta.state().cluster_id.is_none() {
        meta.propose(Command::InitCluster {
            cluster_id: uuid::Uuid::new_v4().simple().to_string(),
        })
        .await?;
    }
    let me = BrokerInfo {
        node_id: config.node_id,
        host: config.advertised_host(),
        port: i32::from(config.kafka_port),
        rack: None,
    };
    if meta.state().brokers.get(&config.node_id) != Some(&me) {
        meta.propose(Command::RegisterBroker(me)).await?;
    }

    let logs = Arc::new(
        LogManager::open(config.data_dir.join("logs"), flush)
            .context("cannot open the log directory")?,
    );
    recover_partitions(&meta, &logs, config.node_id)?;
    let maintenance = logs.spawn_background(Duration::from_millis(config.log_maintenance_ms));

    let state = meta.state();
    let kafka = KafkaConfig {
        node_id: config.node_id,
        advertised_host: config.advertised_host(),
        advertised_port: i32::from(config.kafka_port),
        auto_create_topics: config.auto_create_topics,
        default_partitions: config.default_partitions,
        default_replication_factor: config
            .default_replication_factor
            .unwrap_or_else(|| state.brokers.len().clamp(1, 3) as i16),
        max_request_bytes: config.max_request_bytes,
        group_initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms as i64,
        group_min_session_timeout_ms: config.group_min_session_timeout_ms,
        group_max_session_timeout_ms: config.group_max_session_timeout_ms,
        offsets_topic_partitions: config.offsets_topic_partitions,
        offsets_retention_ms: (config.offsets_retention_minutes as i64).saturating_mul(60_000),
        ..KafkaConfig::default()
    };
    let broker = Arc::new(Broker::new(kafka, meta.clone(), logs.clone()));
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
    let pipeline = chronik_index::Pipeline::start(
        meta.clone(),
        Arc::new(BrokerLogs(broker.clone())),
        vec![columnar as Arc<dyn chronik_index::Indexer>],
        chronik_index::PipelineConfig {
            node_id: config.node_id,
            ..chronik_index::PipelineConfig::default()
        },
    );

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
    let api = chronik_api::ApiState::new(broker.clone(), config.admin_api_key.clone())
        .with_sql(Arc::new(Sql(sql_engine)));
    tracing::info!(addr = %http_addr, "http api listening");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let http = tokio::spawn(chronik_api::serve(
        http_listener,
        api.clone(),
        shutdown_rx.clone(),
    ));
    let server = tokio::spawn(listener::serve(listener, broker, shutdown_rx));
    // Logs are recovered and both listeners accept: from here on the broker serves traffic.
    api.set_ready(true);
    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    api.set_ready(false);
    let _ = server.await;
    let _ = http.await;
    pipeline.shutdown().await;
    maintenance.abort();
    logs.close_all().context("closing logs")?;
    Ok(())
}

/// Open (and so recover) every partition this broker leads, and delete logs of topics that no
/// longer exist (deleted while the broker was down, or a crash mid-delete).
fn recover_partitions(
    meta: &Arc<dyn MetadataStore>,
    logs: &Arc<LogManager>,
    node_id: i32,
) -> anyhow::Result<()> {
    let state = meta.state();
    for (topic, _) in logs.existing_partitions() {
        if !state.topics.contains_key(&topic) {
            tracing::info!(%topic, "removing logs of a deleted topic");
            logs.remove_topic(&topic)?;
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
    Ok(())
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
