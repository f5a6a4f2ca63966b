//! The controller duties of the Raft leader, and what every broker does for them.
//!
//! - Liveness: every broker sends a heartbeat to the Raft leader four times a second (the
//!   leader records its own). The leader, as controller, fences a registered broker silent for
//!   longer than the lease and unfences it when heard from again (`FenceBroker` /
//!   `UnfenceBroker` through Raft; applying them elects new partition leaders from the ISR).
//!   A broker that misses three heartbeats is probed: if its cluster port refuses a connection
//!   the process is gone and it is fenced without waiting out the lease, which is what makes
//!   failover after a crash take about a second. The decision is chronik-meta's pure
//!   `liveness_changes`; this module only keeps the clock, the map and the probe.
//! - Draining: the leader also carries out drains (`DELETE /admin/cluster/nodes/{id}`): it
//!   starts the reassignments chronik-meta's pure `drain_steps` decides, a bounded number at a
//!   time, and once a draining broker holds no replica it removes it from the Raft membership
//!   and unregisters it.
//! - Replication transport: the tonic `ReplicaService` on the cluster port, in front of a
//!   [`ReplicaHandler`] the broker installs once it is built, and [`ReplicaClients`], the
//!   follower's clients to partition leaders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chronik_meta::reassignment::{drain_steps, DrainStep};
use chronik_meta::replication::{liveness_changes, silent_brokers};
use chronik_meta::MetadataStore;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::replica_service_client::ReplicaServiceClient;
use crate::proto::replica_service_server::ReplicaService;
use crate::proto::{
    EpochEndOffsetsRequest, EpochEndOffsetsResponse, HeartbeatRequest, ReplicaFetchRequest,
    ReplicaFetchResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use crate::store::RaftMetadataStore;
use crate::{NodeId, Raft};

/// Reassignments a drain keeps in progress at once: each new replica copies its partition
/// from the leader, so this bounds the extra fetch load a drain puts on the cluster.
const DRAIN_MOVES_AT_ONCE: usize = 16;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Broker liveness settings.
#[derive(Debug, Clone)]
pub struct LivenessConfig {
    pub heartbeat_interval: Duration,
    /// A broker silent for longer than this is fenced and loses its partition leaderships.
    pub lease: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            heartbeat_interval: Duration::from_millis(250),
            lease: Duration::from_secs(3),
        }
    }
}

/// Heartbeats a broker may miss before the controller checks whether its process is gone.
const MISSED_BEFORE_PROBE: u32 = 3;
/// How long the probe waits for a connection: a refusal is immediate, a timeout says nothing.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// The last heartbeat heard from each broker, on whichever node receives them.
#[derive(Debug, Default)]
pub struct Liveness {
    last_seen: Mutex<BTreeMap<i32, i64>>,
}

impl Liveness {
    pub fn record(&self, node_id: i32) {
        self.last_seen.lock().insert(node_id, now_ms());
    }

    fn snapshot(&self) -> BTreeMap<i32, i64> {
        self.last_seen.lock().clone()
    }
}

/// Address of a member's cluster port, from the Raft membership.
pub(crate) fn member_address(raft: &Raft, node_id: NodeId) -> Option<String> {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&node_id)
        .map(|n| n.addr.clone())
}

fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true))
}

/// Send heartbeats to the Raft leader and, while this node is the leader, act as controller.
pub(crate) fn spawn(
    node_id: NodeId,
    raft: Raft,
    store: Arc<RaftMetadataStore>,
    liveness: Arc<Liveness>,
    config: LivenessConfig,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut clients: HashMap<NodeId, (String, RaftServiceClient<Channel>)> = HashMap::new();
        // When this node last became leader: every broker gets a lease from then.
        let mut leading_since: Option<i64> = None;
        let me = node_id as i32;
        loop {
            tick.tick().await;
            let leader = raft.metrics().borrow().current_leader;
            if leader == Some(node_id) {
                liveness.record(me);
                let since = *leading_since.get_or_insert_with(now_ms);
                let state = store.state();
                let seen = liveness.snapshot();
                let silent_for = config.heartbeat_interval * MISSED_BEFORE_PROBE;
                let refused = refused_brokers(&raft, &state, &seen, since, silent_for).await;
                let changes = liveness_changes(
                    &state,
                    &seen,
                    &refused,
                    since,
                    now_ms(),
                    config.lease.as_millis() as i64,
                    silent_for.as_millis() as i64,
                );
                for command in changes {
                    tracing::warn!(?command, "broker liveness changed");
                    if let Err(e) = store.propose(command).await {
                        tracing::warn!(error = %e, "could not commit a liveness change");
                    }
                }
                drain(&raft, &store).await;
                continue;
            }
            leading_since = None;
            let Some(leader) = leader else {
                continue;
            };
            let Some(addr) = member_address(&raft, leader) else {
                continue;
            };
            let client = match clients.get(&leader) {
                Some((a, c)) if *a == addr => c.clone(),
                _ => match endpoint(&addr) {
                    Ok(e) => {
                        let c = RaftServiceClient::new(e.connect_lazy());
                        clients.insert(leader, (addr, c.clone()));
                        c
                    }
                    Err(_) => continue,
                },
            };
            let mut client = client;
            let sent = tokio::time::timeout(
                config.lease / 2,
                client.heartbeat(HeartbeatRequest { node_id: me }),
            )
            .await;
            if !matches!(sent, Ok(Ok(_))) {
                tracing::debug!(leader, "heartbeat to the controller failed");
            }
        }
    })
}

/// Live brokers silent for longer than `silent_for` (chronik-meta's `silent_brokers`) whose
/// cluster port refuses a TCP connection right now.
async fn refused_brokers(
    raft: &Raft,
    state: &chronik_meta::ClusterState,
    seen: &BTreeMap<i32, i64>,
    since: i64,
    silent_for: Duration,
) -> BTreeSet<i32> {
    let silent: Vec<(i32, String)> =
        silent_brokers(state, seen, since, now_ms(), silent_for.as_millis() as i64)
            .into_iter()
            .filter_map(|b| Some((b, member_address(raft, NodeId::try_from(b).ok()?)?)))
            .collect();
    let probes = silent.into_iter().map(|(b, addr)| async move {
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::warn!(broker = b, %addr, "silent broker's cluster port refuses connections");
                Some(b)
            }
            _ => None,
        }
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One round of the controller's drain duty (see the module docs).
async fn drain(raft: &Raft, store: &RaftMetadataStore) {
    let state = store.state();
    if state.draining.is_empty() {
        return;
    }
    let members: BTreeSet<i32> = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id as i32)
        .collect();
    for step in drain_steps(&state, &members, DRAIN_MOVES_AT_ONCE) {
        match step {
            DrainStep::Propose(command) => {
                tracing::info!(?command, "draining");
                if let Err(e) = store.propose(command).await {
                    tracing::warn!(error = %e, "could not commit a drain step");
                }
            }
            DrainStep::LeaveQuorum(node) => {
                tracing::info!(node, "drained broker leaves the raft membership");
                if let Err(e) = crate::membership::remove_member(raft, node as NodeId).await {
                    tracing::warn!(node, error = %e, "could not remove a drained broker from the membership");
                }
            }
        }
    }
}

/// What serves the `ReplicaService` on this broker: the partition leader side of replication.
#[tonic::async_trait]
pub trait ReplicaHandler: Send + Sync + 'static {
    async fn fetch(&self, request: ReplicaFetchRequest) -> ReplicaFetchResponse;
    async fn epoch_end_offsets(&self, request: EpochEndOffsetsRequest) -> EpochEndOffsetsResponse;
    async fn write_txn_markers(&self, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse;
}

/// The `ReplicaService` on the cluster port. The handler is installed once the broker exists
/// (after Raft started, since the broker needs metadata); until then fetches are refused as
/// unavailable and followers retry.
#[derive(Clone, Default)]
pub struct ReplicaGrpc {
    handler: Arc<OnceLock<Arc<dyn ReplicaHandler>>>,
}

impl ReplicaGrpc {
    pub(crate) fn install(&self, handler: Arc<dyn ReplicaHandler>) -> bool {
        self.handler.set(handler).is_ok()
    }

    fn handler(&self) -> Result<&Arc<dyn ReplicaHandler>, Status> {
        self.handler
            .get()
            .ok_or_else(|| Status::unavailable("this broker is still starting"))
    }
}

#[tonic::async_trait]
impl ReplicaService for ReplicaGrpc {
    async fn fetch(
        &self,
        request: Request<ReplicaFetchRequest>,
    ) -> Result<Response<ReplicaFetchResponse>, Status> {
        let handler = self.handler()?;
        Ok(Response::new(handler.fetch(request.into_inner()).await))
    }

    async fn epoch_end_offsets(
        &self,
        request: Request<EpochEndOffsetsRequest>,
    ) -> Result<Response<EpochEndOffsetsResponse>, Status> {
        let handler = self.handler()?;
        Ok(Response::new(
            handler.epoch_end_offsets(request.into_inner()).await,
        ))
    }

    async fn write_txn_markers(
        &self,
        request: Request<WriteTxnMarkersRequest>,
    ) -> Result<Response<WriteTxnMarkersResponse>, Status> {
        let handler = self.handler()?;
        Ok(Response::new(
            handler.write_txn_markers(request.into_inner()).await,
        ))
    }
}

type AddressedClient = (String, ReplicaServiceClient<Channel>);

/// A follower's clients of partition leaders, addressed by broker id through the Raft
/// membership (every broker is a Raft member at its cluster address).
#[derive(Clone)]
pub struct ReplicaClients {
    raft: Raft,
    /// Per broker: the address the client was made for, and the client.
    clients: Arc<Mutex<HashMap<NodeId, AddressedClient>>>,
}

impl std::fmt::Debug for ReplicaClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaClients").finish_non_exhaustive()
    }
}

impl ReplicaClients {
    pub(crate) fn new(raft: Raft) -> Self {
        ReplicaClients {
            raft,
            clients: Arc::default(),
        }
    }

    fn client(&self, node_id: i32) -> Result<ReplicaServiceClient<Channel>, String> {
        let id = NodeId::try_from(node_id).map_err(|_| format!("bad broker id {node_id}"))?;
        let addr = member_address(&self.raft, id)
            .ok_or_else(|| format!("broker {node_id} is not a cluster member"))?;
        let mut clients = self.clients.lock();
        if let Some((a, c)) = clients.get(&id) {
            if *a == addr {
                return Ok(c.clone());
            }
        }
        let c =
            ReplicaServiceClient::new(endpoint(&addr).map_err(|e| e.to_string())?.connect_lazy())
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20);
        clients.insert(id, (addr, c.clone()));
        Ok(c)
    }

    pub async fn fetch(
        &self,
        leader: i32,
        request: ReplicaFetchRequest,
    ) -> Result<ReplicaFetchResponse, String> {
        let mut client = self.client(leader)?;
        client
            .fetch(request)
            .await
            .map(Response::into_inner)
            .map_err(|s| format!("fetch from broker {leader}: {}", s.message()))
    }

    pub async fn epoch_end_offsets(
        &self,
        leader: i32,
        request: EpochEndOffsetsRequest,
    ) -> Result<EpochEndOffsetsResponse, String> {
        let mut client = self.client(leader)?;
        client
            .epoch_end_offsets(request)
            .await
            .map(Response::into_inner)
            .map_err(|s| format!("epoch end offsets from broker {leader}: {}", s.message()))
    }

    pub async fn write_txn_markers(
        &self,
        leader: i32,
        request: WriteTxnMarkersRequest,
    ) -> Result<WriteTxnMarkersResponse, String> {
        let mut client = self.client(leader)?;
        client
            .write_txn_markers(request)
            .await
            .map(Response::into_inner)
            .map_err(|s| format!("transaction markers on broker {leader}: {}", s.message()))
    }
}
