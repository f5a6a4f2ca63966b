//! The controller duties of the Raft leader, and what every broker does for them.
//!
//! - Liveness: every broker sends a heartbeat to the Raft leader four times a second (the
//!   leader records its own). The leader, as controller, fences a registered broker silent for
//!   longer than the lease and unfences it when heard from again (`FenceBroker` /
//!   `UnfenceBroker` through Raft; applying them elects new partition leaders from the ISR).
//!   A broker that misses three heartbeats is probed: if its cluster port refuses a connection
//!   the process is gone and it is fenced without waiting out the lease. Sooner still, a
//!   follower whose replica fetch fails checks whether the leader's port refuses connections
//!   and, if so, names it in an immediate heartbeat; the controller probes it at once. A
//!   crashed partition leader is fenced within a few tens of milliseconds that way. The
//!   decisions are chronik-meta's pure `brokers_to_probe` and `liveness_changes`; this module
//!   only keeps the clock, the maps and the probe.
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
use chronik_meta::replication::{brokers_to_probe, liveness_changes};
use chronik_meta::MetadataStore;
use futures::stream::{BoxStream, StreamExt};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::replica_service_client::ReplicaServiceClient;
use crate::proto::replica_service_server::ReplicaService;
use crate::proto::{
    EpochEndOffsetsRequest, EpochEndOffsetsResponse, FollowerMessage, HeartbeatRequest,
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
/// How long a suspicion (a refused replica fetch) stands: reported in heartbeats, probed by
/// the controller and hinted to clients for this long after the last refusal.
const SUSPICION_WINDOW: Duration = Duration::from_millis(750);

/// What this node knows of other brokers' liveness: the last heartbeat heard from each (the
/// controller's input) and the brokers suspected of having crashed, because their cluster
/// port refused a replica fetch from here or from a broker whose heartbeat said so.
#[derive(Debug, Default)]
pub struct Liveness {
    last_seen: Mutex<BTreeMap<i32, i64>>,
    /// Broker -> when last suspected (ms).
    suspects: Mutex<BTreeMap<i32, i64>>,
    /// Wakes the heartbeat/controller loop when a suspicion arrives, so it is acted on (sent
    /// to the controller, or probed by it) without waiting for the next tick.
    wake: tokio::sync::Notify,
}

impl Liveness {
    pub fn record(&self, node_id: i32) {
        self.last_seen.lock().insert(node_id, now_ms());
        self.answered(node_id);
    }

    fn snapshot(&self) -> BTreeMap<i32, i64> {
        self.last_seen.lock().clone()
    }

    /// `node_id` refused a connection to its cluster port. A new suspicion wakes the loop; a
    /// repeated one (every retry of a failing fetch) only refreshes it.
    pub fn suspect(&self, node_id: i32) {
        let now = now_ms();
        let previous = self.suspects.lock().insert(node_id, now);
        let fresh = previous.is_some_and(|at| now - at <= SUSPICION_WINDOW.as_millis() as i64);
        if !fresh {
            self.wake.notify_one();
        }
    }

    /// `node_id` answered a call: whatever was suspected of it is over.
    fn answered(&self, node_id: i32) {
        self.suspects.lock().remove(&node_id);
    }

    /// Suspects (broker -> when last suspected) within [`SUSPICION_WINDOW`], not heard from
    /// since; older suspicions are dropped.
    fn recent_suspects(&self) -> BTreeMap<i32, i64> {
        let oldest = now_ms() - SUSPICION_WINDOW.as_millis() as i64;
        let mut suspects = self.suspects.lock();
        suspects.retain(|_, at| *at >= oldest);
        suspects.clone()
    }

    /// The brokers of [`Self::recent_suspects`] (see `MetadataStore::unreachable_brokers`).
    pub(crate) fn unreachable(&self) -> BTreeSet<i32> {
        self.recent_suspects().into_keys().collect()
    }
}

/// Whether a TCP connection to `addr` is refused right now: nothing listens there, so the
/// process is gone. A timeout (a frozen process, a partitioned network) says nothing.
async fn refuses_connections(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
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

/// Whether this follower should start a Raft election now because the leader's process is
/// gone (its cluster port has refused connections since `gone_since`, ms). openraft's own
/// timer waits for the leader lease plus a random election timeout (and longer on a node
/// that saw a bigger log); calling the election as soon as the voters' lease (`lease_ms`,
/// counted from their last contact with the leader, which was before `gone_since`) has run
/// out saves about a second of metadata downtime. Only the lowest-numbered other voter calls
/// it, so two followers do not split the vote.
fn should_call_election(
    me: NodeId,
    leader: NodeId,
    voters: &BTreeSet<NodeId>,
    gone_since: i64,
    now: i64,
    lease_ms: i64,
) -> bool {
    now - gone_since > lease_ms && voters.iter().copied().filter(|v| *v != leader).min() == Some(me)
}

/// Send heartbeats to the Raft leader and, while this node is the leader, act as controller.
/// `raft_lease` is openraft's leader lease (its maximum election timeout).
pub(crate) fn spawn(
    node_id: NodeId,
    raft: Raft,
    store: Arc<RaftMetadataStore>,
    liveness: Arc<Liveness>,
    config: LivenessConfig,
    raft_lease: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut clients: HashMap<NodeId, (String, RaftServiceClient<Channel>)> = HashMap::new();
        // When this node last became leader: every broker gets a lease from then.
        let mut leading_since: Option<i64> = None;
        let me = node_id as i32;
        let silent_for = config.heartbeat_interval * MISSED_BEFORE_PROBE;
        // When this controller's probe last found each broker's port refusing connections.
        let mut refused_at: BTreeMap<i32, i64> = BTreeMap::new();
        // The Raft leader this follower found gone, since when, and when it last called an
        // election because of that.
        let mut leader_gone: Option<(NodeId, i64, Option<i64>)> = None;
        // Set to go round again without waiting for the tick.
        let mut run_now = false;
        loop {
            if !std::mem::take(&mut run_now) {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = liveness.wake.notified() => {}
                }
            }
            let leader = raft.metrics().borrow().current_leader;
            if leader == Some(node_id) {
                liveness.record(me);
                let since = *leading_since.get_or_insert_with(now_ms);
                let state = store.state();
                let seen = liveness.snapshot();
                let suspects = liveness.recent_suspects();
                let refused =
                    refused_brokers(&raft, &state, &seen, &suspects, since, silent_for).await;
                let now = now_ms();
                refused_at.extend(refused.into_iter().map(|b| (b, now)));
                refused_at.retain(|_, at| now - *at <= config.lease.as_millis() as i64);
                let changes = liveness_changes(
                    &state,
                    &seen,
                    &refused_at,
                    since,
                    now,
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
            refused_at.clear();
            let Some(leader) = leader else {
                continue;
            };
            let Some(addr) = member_address(&raft, leader) else {
                continue;
            };
            let suspected = liveness.unreachable().contains(&(leader as i32));
            leader_gone = match leader_gone {
                Some(gone) if suspected && gone.0 == leader => Some(gone),
                _ if suspected => Some((leader, now_ms(), None)),
                _ => None,
            };
            if let Some((_, since, called)) = &mut leader_gone {
                let now = now_ms();
                let voters: BTreeSet<NodeId> = raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .collect();
                let lease = raft_lease.as_millis() as i64;
                let due = called.is_none_or(|at| now - at > lease);
                if due
                    && should_call_election(node_id, leader, &voters, *since, now, lease)
                    && refuses_connections(&addr).await
                {
                    tracing::warn!(
                        leader,
                        "the raft leader's cluster port refuses connections; calling an election"
                    );
                    *called = Some(now);
                    if let Err(e) = raft.trigger().elect().await {
                        tracing::warn!(error = %e, "could not call an election");
                    }
                    // Act as controller as soon as the election is won (fence the old
                    // leader) rather than at the next tick.
                    let _ = raft
                        .wait(Some(config.heartbeat_interval))
                        .metrics(|m| m.current_leader == Some(node_id), "elected")
                        .await;
                    run_now = true;
                    continue;
                }
            }
            let client = match clients.get(&leader) {
                Some((a, c)) if *a == addr => c.clone(),
                _ => match endpoint(&addr) {
                    Ok(e) => {
                        let c = RaftServiceClient::new(e.connect_lazy());
                        clients.insert(leader, (addr.clone(), c.clone()));
                        c
                    }
                    Err(_) => continue,
                },
            };
            let mut client = client;
            let unreachable = liveness.unreachable().into_iter().collect();
            let sent = tokio::time::timeout(
                config.lease / 2,
                client.heartbeat(HeartbeatRequest {
                    node_id: me,
                    unreachable,
                }),
            )
            .await;
            if !matches!(sent, Ok(Ok(_))) {
                tracing::debug!(leader, "heartbeat to the controller failed");
                // Covers a Raft leader this broker fetches nothing from.
                if refuses_connections(&addr).await {
                    liveness.suspect(leader as i32);
                }
            }
        }
    })
}

/// Live brokers silent for longer than `silent_for` or recently suspected (chronik-meta's
/// `brokers_to_probe`) whose cluster port refuses a TCP connection right now.
async fn refused_brokers(
    raft: &Raft,
    state: &chronik_meta::ClusterState,
    seen: &BTreeMap<i32, i64>,
    suspects: &BTreeMap<i32, i64>,
    since: i64,
    silent_for: Duration,
) -> BTreeSet<i32> {
    let to_probe: Vec<(i32, String)> = brokers_to_probe(
        state,
        seen,
        suspects,
        since,
        now_ms(),
        silent_for.as_millis() as i64,
    )
    .into_iter()
    .filter_map(|b| Some((b, member_address(raft, NodeId::try_from(b).ok()?)?)))
    .collect();
    let probes = to_probe.into_iter().map(|(b, addr)| async move {
        if refuses_connections(&addr).await {
            tracing::warn!(broker = b, %addr, "broker's cluster port refuses connections");
            Some(b)
        } else {
            None
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
    /// A follower's replication session: its messages in, the answers to its fetches out.
    fn replicate(
        &self,
        messages: BoxStream<'static, FollowerMessage>,
    ) -> BoxStream<'static, ReplicaFetchResponse>;
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
    type ReplicateStream = BoxStream<'static, Result<ReplicaFetchResponse, Status>>;

    async fn replicate(
        &self,
        request: Request<Streaming<FollowerMessage>>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        let handler = self.handler()?;
        // A broken or finished request stream ends the session.
        let messages = request
            .into_inner()
            .take_while(|m| std::future::ready(m.is_ok()))
            .filter_map(|m| std::future::ready(m.ok()))
            .boxed();
        Ok(Response::new(handler.replicate(messages).map(Ok).boxed()))
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

/// The answers of a replication session, in order; an error ends it.
pub type ReplicaAnswers = BoxStream<'static, Result<ReplicaFetchResponse, String>>;

/// A follower's clients of partition leaders, addressed by broker id through the Raft
/// membership (every broker is a Raft member at its cluster address).
#[derive(Clone)]
pub struct ReplicaClients {
    raft: Raft,
    liveness: Arc<Liveness>,
    /// Per broker: the address the client was made for, and the client.
    clients: Arc<Mutex<HashMap<NodeId, AddressedClient>>>,
}

impl std::fmt::Debug for ReplicaClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaClients").finish_non_exhaustive()
    }
}

impl ReplicaClients {
    pub(crate) fn new(raft: Raft, liveness: Arc<Liveness>) -> Self {
        ReplicaClients {
            raft,
            liveness,
            clients: Arc::default(),
        }
    }

    /// After a failed call to `node_id`: if its cluster port now refuses connections, tell the
    /// controller (see [`Liveness::suspect`]), which checks for itself before fencing.
    async fn check_refused(&self, node_id: i32) {
        let Some(addr) = NodeId::try_from(node_id)
            .ok()
            .and_then(|id| member_address(&self.raft, id))
        else {
            return;
        };
        if refuses_connections(&addr).await {
            tracing::debug!(broker = node_id, %addr, "partition leader refuses connections");
            self.liveness.suspect(node_id);
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

    /// Open a replication session with `leader`. Every answer counts as a sign of life; a
    /// failure checks whether the leader's port still accepts connections.
    /// (A concrete stream type: tonic's streaming call on a boxed `dyn Stream` is a future
    /// the compiler cannot prove `Send`.)
    pub async fn replicate<S>(&self, leader: i32, messages: S) -> Result<ReplicaAnswers, String>
    where
        S: futures::Stream<Item = FollowerMessage> + Send + 'static,
    {
        let mut client = self.client(leader)?;
        let answers = match client.replicate(messages).await {
            Ok(response) => response.into_inner(),
            Err(s) => {
                let why = format!("replicating from broker {leader}: {}", s.message());
                self.check_refused(leader).await;
                return Err(why);
            }
        };
        let clients = self.clone();
        Ok(answers
            .then(move |answer| clients.clone().on_answer(leader, answer))
            .boxed())
    }

    async fn on_answer(
        self,
        leader: i32,
        answer: Result<ReplicaFetchResponse, Status>,
    ) -> Result<ReplicaFetchResponse, String> {
        match answer {
            Ok(answer) => {
                self.liveness.answered(leader);
                Ok(answer)
            }
            Err(s) => {
                let why = format!("replicating from broker {leader}: {}", s.message());
                self.check_refused(leader).await;
                Err(why)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_lowest_other_voter_calls_an_election_once_the_lease_is_over() {
        let voters = BTreeSet::from([1, 2, 3]);
        // Leader 1 gone since t=1000, lease 1000 ms.
        assert!(!should_call_election(2, 1, &voters, 1_000, 1_900, 1_000));
        assert!(!should_call_election(2, 1, &voters, 1_000, 2_000, 1_000));
        assert!(should_call_election(2, 1, &voters, 1_000, 2_001, 1_000));
        assert!(!should_call_election(3, 1, &voters, 1_000, 2_001, 1_000));
        // Leader 2 gone: node 1 calls it.
        assert!(should_call_election(1, 2, &voters, 0, 5_000, 1_000));
        assert!(!should_call_election(3, 2, &voters, 0, 5_000, 1_000));
        // A learner (not a voter) never does.
        assert!(!should_call_election(4, 1, &voters, 0, 5_000, 1_000));
    }
}
