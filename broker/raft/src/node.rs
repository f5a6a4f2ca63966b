//! [`RaftNode`]: opens the durable Raft storage, starts openraft and the cluster-port service,
//! and bootstraps the cluster.
//!
//! Bootstrap: every node listed in the initial voter set (CHRONIK_PEERS, or just itself when
//! no peers are configured) calls openraft's `initialize` with that same set when its Raft
//! storage is empty. Identical initial memberships are safe to submit on several nodes (they
//! write the same first log entry); a node whose storage is not empty skips it. A node that is
//! not in the voter set never initializes: it waits until a leader adds it.
//! All nodes must therefore be given the same CHRONIK_PEERS.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chronik_meta::MetadataStore;
use openraft::{BasicNode, Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::controller::{
    self, Liveness, LivenessConfig, ReplicaClients, ReplicaGrpc, ReplicaHandler,
};
use crate::log_store::LogStore;
use crate::network::{NetworkFactory, RaftGrpc};
use crate::proto::raft_service_server::RaftServiceServer;
use crate::proto::replica_service_server::ReplicaServiceServer;
use crate::state_machine::StateMachine;
use crate::store::RaftMetadataStore;
use crate::{NodeId, Raft, RaftError};

/// Raft timing; the defaults suit a LAN or loopback cluster on a busy machine.
#[derive(Debug, Clone)]
pub struct RaftTimings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Snapshot (and then purge the log) after this many applied entries.
    pub snapshot_every: u64,
    /// How long a metadata proposal may wait for a leader.
    pub propose_timeout: Duration,
    /// Broker heartbeats to the controller and the lease after which it fences a broker.
    pub liveness: LivenessConfig,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat_interval_ms: 150,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1_000,
            snapshot_every: 1_000,
            propose_timeout: Duration::from_secs(15),
            liveness: LivenessConfig::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RaftNodeConfig {
    pub node_id: NodeId,
    /// Where the log, vote and snapshots live (`<data>/raft`).
    pub dir: PathBuf,
    /// Address the cluster-port service listens on.
    pub listen: String,
    /// The initial voters and their cluster-port addresses (this node included when it is
    /// one of them).
    pub initial_voters: BTreeMap<NodeId, String>,
    pub timings: RaftTimings,
}

/// A running Raft member: openraft, its storage, and the cluster-port service.
pub struct RaftNode {
    node_id: NodeId,
    raft: Raft,
    store: Arc<RaftMetadataStore>,
    server: JoinHandle<()>,
    stop_server: watch::Sender<bool>,
    replica_service: ReplicaGrpc,
    liveness: Arc<Liveness>,
    controller: JoinHandle<()>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl RaftNode {
    /// Open storage, bind the cluster port, start Raft and, on a pristine initial voter,
    /// initialize the cluster. Returns without waiting for a leader.
    pub async fn start(config: RaftNodeConfig) -> Result<RaftNode, RaftError> {
        let storage_err = |e: std::io::Error| RaftError::Storage {
            path: config.dir.display().to_string(),
            reason: e.to_string(),
        };
        let log_store = LogStore::open(&config.dir).map_err(storage_err)?;
        let state_machine = StateMachine::open(&config.dir).map_err(storage_err)?;

        let t = &config.timings;
        let raft_config = Config {
            cluster_name: "chronik".into(),
            heartbeat_interval: t.heartbeat_interval_ms,
            election_timeout_min: t.election_timeout_min_ms,
            election_timeout_max: t.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every),
            max_in_snapshot_log_to_keep: t.snapshot_every / 10,
            purge_batch_size: (t.snapshot_every / 10).max(1),
            ..Config::default()
        }
        .validate()
        .map_err(|e| RaftError::Config(e.to_string()))?;

        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| RaftError::Listen {
                    addr: config.listen.clone(),
                    source,
                })?;

        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NetworkFactory,
            log_store,
            state_machine.clone(),
        )
        .await
        .map_err(|e| RaftError::Raft(e.to_string()))?;

        let (stop_server, mut stopped) = watch::channel(false);
        let liveness = Arc::new(Liveness::default());
        let service = RaftServiceServer::new(RaftGrpc::new(raft.clone(), liveness.clone()))
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        let replica_service = ReplicaGrpc::default();
        let replicas = ReplicaServiceServer::new(replica_service.clone())
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .add_service(replicas)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "cluster port service stopped");
            }
        });
        tracing::info!(addr = %config.listen, node_id = config.node_id, "raft listening on the cluster port");

        if config.initial_voters.contains_key(&config.node_id) {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| RaftError::Raft(e.to_string()))?;
            if !initialized {
                let members: BTreeMap<NodeId, BasicNode> = config
                    .initial_voters
                    .iter()
                    .map(|(id, addr)| (*id, BasicNode::new(addr)))
                    .collect();
                tracing::info!(voters = ?config.initial_voters, "initializing the raft cluster");
                if let Err(e) = raft.initialize(members).await {
                    // NotAllowed: another call (or a leader's log) got there first; harmless.
                    tracing::info!(error = %e, "raft already initialized");
                }
            }
        } else {
            tracing::info!(
                node_id = config.node_id,
                "not in the initial voter set; waiting to be added to the cluster"
            );
        }

        let store = Arc::new(RaftMetadataStore::new(
            config.node_id,
            raft.clone(),
            state_machine,
            config.timings.propose_timeout,
            liveness.clone(),
        ));
        let controller = controller::spawn(
            config.node_id,
            raft.clone(),
            store.clone(),
            liveness.clone(),
            config.timings.liveness.clone(),
            Duration::from_millis(config.timings.election_timeout_max_ms),
        );
        Ok(RaftNode {
            node_id: config.node_id,
            raft,
            store,
            server,
            stop_server,
            replica_service,
            liveness,
            controller,
        })
    }

    pub fn store(&self) -> Arc<RaftMetadataStore> {
        self.store.clone()
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Install what serves partition replication on the cluster port (once; later calls are
    /// ignored and answer false).
    pub fn set_replica_handler(&self, handler: Arc<dyn ReplicaHandler>) -> bool {
        self.replica_service.install(handler)
    }

    /// Clients for fetching from partition leaders over their cluster ports.
    pub fn replica_clients(&self) -> ReplicaClients {
        ReplicaClients::new(self.raft.clone(), self.liveness.clone())
    }

    /// Wait until this node is a member that knows a leader and has applied everything that
    /// leader had committed when this node learned of it; logs progress while waiting.
    pub async fn wait_joined(&self) {
        let mut metrics = self.raft.metrics();
        let mut last_note = tokio::time::Instant::now();
        loop {
            {
                let m = metrics.borrow_and_update();
                let member = m
                    .membership_config
                    .membership()
                    .get_node(&self.node_id)
                    .is_some();
                if member && m.current_leader.is_some() {
                    tracing::info!(
                        leader = ?m.current_leader,
                        term = m.current_term,
                        "joined the raft cluster"
                    );
                    return;
                }
                if last_note.elapsed() >= Duration::from_secs(10) {
                    last_note = tokio::time::Instant::now();
                    if member {
                        tracing::info!(term = m.current_term, "waiting for a raft leader");
                    } else {
                        tracing::info!("not a member yet; waiting to be added to the cluster");
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), metrics.changed()).await;
        }
    }

    /// Wait (up to `timeout`) until this node has applied everything the leader has
    /// committed, so start-up decisions see the cluster's current metadata.
    pub async fn catch_up(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            match self.raft.ensure_linearizable().await {
                Ok(Some(log_id)) => {
                    let mut rx = self.store.subscribe();
                    let wait = rx.wait_for(|applied| *applied >= log_id.index);
                    if tokio::time::timeout_at(deadline, wait).await.is_ok() {
                        return true;
                    }
                }
                Ok(None) => return true,
                Err(_) => {
                    // Not the leader: a follower learns the commit index with the next
                    // heartbeat; waiting for its applied index to reach its log end is enough.
                    let m = self.raft.metrics().borrow().clone();
                    if m.last_log_index.is_some()
                        && m.last_applied.map(|l| l.index) >= m.last_log_index
                    {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub async fn shutdown(self) {
        self.controller.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        let _ = self.stop_server.send(true);
        let _ = self.server.await;
    }
}
