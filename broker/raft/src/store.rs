//! [`RaftMetadataStore`]: the broker's `MetadataStore` over the Raft quorum.
//!
//! `propose` returns once the command is committed and applied on this node, so a read right
//! after a write sees it (Kafka clients call Metadata right after CreateTopics). On the leader
//! that is openraft's `client_write`; a follower forwards the command to the leader over the
//! cluster port and then waits until its own state machine has applied the leader's index.
//! While there is no leader, or it changes, the proposal is retried until a deadline.
//!
//! A proposal is only re-sent when it certainly was not accepted (the receiver said it is not
//! the leader, or the connection could not be made); a reply lost after the leader accepted it
//! is reported as unavailable rather than risking a second application.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chronik_meta::{ClusterState, Command, MetaError, MetadataStore, QuorumMember, QuorumStatus};
use openraft::error::{ClientWriteError, RaftError as OpenraftError};
use openraft::ServerState;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::controller::Liveness;

use crate::membership::{self, AddVoter};
use crate::network;
use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::{membership_reply, propose_reply, AddVoterRequest, ProposeRequest};
use crate::state_machine::StateMachine;
use crate::{NodeId, Raft};

/// Pause between attempts while no leader is known or the leader changes.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Metadata replicated through Raft.
pub struct RaftMetadataStore {
    node_id: NodeId,
    raft: Raft,
    state_machine: StateMachine,
    /// How long a proposal may wait for a leader before failing as unavailable.
    propose_timeout: Duration,
    leaders: Mutex<HashMap<String, RaftServiceClient<tonic::transport::Channel>>>,
    liveness: Arc<Liveness>,
}

impl std::fmt::Debug for RaftMetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftMetadataStore")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// What one attempt at a proposal came to.
enum Attempt {
    Done(Result<(), MetaError>),
    /// Applied (or refused) by the leader at this index with this result; wait for the local
    /// state machine to get there too, so what follows reads a state that includes it.
    AppliedAt(u64, Result<(), MetaError>),
    /// Not accepted; try again after a pause.
    Retry(String),
}

impl RaftMetadataStore {
    pub(crate) fn new(
        node_id: NodeId,
        raft: Raft,
        state_machine: StateMachine,
        propose_timeout: Duration,
        liveness: Arc<Liveness>,
    ) -> Self {
        RaftMetadataStore {
            node_id,
            raft,
            state_machine,
            propose_timeout,
            leaders: Mutex::new(HashMap::new()),
            liveness,
        }
    }

    async fn attempt(&self, command: &Command) -> Attempt {
        match self.raft.client_write(command.clone()).await {
            Ok(written) => Attempt::Done(written.data),
            Err(OpenraftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) if id != self.node_id => {
                        self.forward(id, &node.addr, command).await
                    }
                    _ => Attempt::Retry("no raft leader elected yet".into()),
                }
            }
            Err(OpenraftError::APIError(e)) => {
                Attempt::Done(Err(MetaError::Unavailable(e.to_string())))
            }
            Err(OpenraftError::Fatal(e)) => {
                Attempt::Done(Err(MetaError::Unavailable(format!("raft stopped: {e}"))))
            }
        }
    }

    fn leader_client(
        &self,
        addr: &str,
    ) -> Result<RaftServiceClient<tonic::transport::Channel>, String> {
        let mut leaders = self.leaders.lock();
        match leaders.get(addr) {
            Some(c) => Ok(c.clone()),
            None => match network::client(addr) {
                Ok(c) => Ok(leaders.entry(addr.to_string()).or_insert(c).clone()),
                Err(e) => Err(format!("bad leader address {addr}: {e}")),
            },
        }
    }

    /// One attempt at adding a voter: on the leader, or forwarded to it.
    async fn attempt_add_voter(&self, node_id: NodeId, address: &str) -> Attempt {
        let leader =
            match membership::add_voter(&self.raft, node_id, address, network::CATCH_UP_TIMEOUT)
                .await
            {
                AddVoter::Added => return Attempt::Done(Ok(())),
                AddVoter::Refused(e) => return Attempt::Done(Err(e)),
                AddVoter::NotLeader(leader) => leader,
            };
        let Some((leader, addr)) = leader.filter(|(id, _)| *id != self.node_id) else {
            return Attempt::Retry("no raft leader elected yet".into());
        };
        let mut client = match self.leader_client(&addr) {
            Ok(c) => c,
            Err(e) => return Attempt::Retry(e),
        };
        let mut request = tonic::Request::new(AddVoterRequest {
            node_id,
            address: address.to_string(),
        });
        request.set_timeout(network::CATCH_UP_TIMEOUT + self.propose_timeout);
        match client.add_voter(request).await {
            Ok(reply) => match reply.into_inner().result {
                Some(membership_reply::Result::Done(_)) => Attempt::Done(Ok(())),
                Some(membership_reply::Result::Refused(bytes)) => {
                    Attempt::Done(Err(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                        MetaError::Storage(format!("undecodable refusal from the leader: {e}"))
                    })))
                }
                Some(membership_reply::Result::NotLeader(_)) => {
                    Attempt::Retry(format!("node {leader} is no longer the raft leader"))
                }
                None => Attempt::Done(Err(MetaError::Unavailable(format!(
                    "empty reply from raft leader {leader}"
                )))),
            },
            Err(status) if status.code() == tonic::Code::Unavailable => Attempt::Retry(format!(
                "raft leader {leader} at {addr} unreachable: {}",
                status.message()
            )),
            Err(status) => Attempt::Done(Err(MetaError::Unavailable(format!(
                "adding node {node_id} through raft leader {leader}: {}",
                status.message()
            )))),
        }
    }

    async fn forward(&self, leader: NodeId, addr: &str, command: &Command) -> Attempt {
        let client = {
            let mut leaders = self.leaders.lock();
            match leaders.get(addr) {
                Some(c) => c.clone(),
                None => match network::client(addr) {
                    Ok(c) => leaders.entry(addr.to_string()).or_insert(c).clone(),
                    Err(e) => return Attempt::Retry(format!("bad leader address {addr}: {e}")),
                },
            }
        };
        let body = match serde_json::to_vec(command) {
            Ok(b) => b,
            Err(e) => return Attempt::Done(Err(MetaError::Storage(e.to_string()))),
        };
        let mut request = tonic::Request::new(ProposeRequest { command: body });
        request.set_timeout(self.propose_timeout);
        let mut client = client;
        match client.propose(request).await {
            Ok(reply) => match reply.into_inner().result {
                Some(propose_reply::Result::AppliedIndex(index)) => {
                    Attempt::AppliedAt(index, Ok(()))
                }
                Some(propose_reply::Result::Refused(refused)) => Attempt::AppliedAt(
                    refused.index,
                    Err(serde_json::from_slice(&refused.error).unwrap_or_else(|e| {
                        MetaError::Storage(format!("undecodable refusal from the leader: {e}"))
                    })),
                ),
                Some(propose_reply::Result::NotLeader(_)) => {
                    Attempt::Retry(format!("node {leader} is no longer the raft leader"))
                }
                None => Attempt::Done(Err(MetaError::Unavailable(format!(
                    "empty reply from raft leader {leader}"
                )))),
            },
            // Connection refused or reset before the call: certainly not accepted.
            Err(status) if status.code() == tonic::Code::Unavailable => Attempt::Retry(format!(
                "raft leader {leader} at {addr} unreachable: {}",
                status.message()
            )),
            Err(status) => Attempt::Done(Err(MetaError::Unavailable(format!(
                "forwarding to raft leader {leader} at {addr}: {}",
                status.message()
            )))),
        }
    }

    /// Wait until this node has applied `index`.
    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), MetaError> {
        let mut rx = self.state_machine.subscribe();
        let waited =
            tokio::time::timeout_at(deadline, rx.wait_for(|applied| *applied >= index)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(MetaError::Unavailable("raft state machine stopped".into())),
            Err(_) => Err(MetaError::Unavailable(format!(
                "committed at index {index} but not applied on node {} in time",
                self.node_id
            ))),
        }
    }
}

#[async_trait]
impl MetadataStore for RaftMetadataStore {
    async fn propose(&self, command: Command) -> Result<(), MetaError> {
        let deadline = Instant::now() + self.propose_timeout;
        loop {
            let why = match self.attempt(&command).await {
                Attempt::Done(result) => return result,
                Attempt::AppliedAt(index, result) => {
                    self.wait_applied(index, deadline).await?;
                    return result;
                }
                Attempt::Retry(why) => why,
            };
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(MetaError::Unavailable(format!(
                    "no raft leader accepted the command within {:?}: {why}",
                    self.propose_timeout
                )));
            }
            tracing::debug!(reason = %why, "retrying metadata proposal");
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn add_voter(&self, node_id: i32, address: String) -> Result<(), MetaError> {
        let id = u64::try_from(node_id).map_err(|_| {
            MetaError::InvalidReplicaAssignment(format!("node id {node_id} must not be negative"))
        })?;
        let deadline = Instant::now() + self.propose_timeout;
        loop {
            let why = match self.attempt_add_voter(id, &address).await {
                Attempt::Done(result) => return result,
                Attempt::AppliedAt(_, result) => return result,
                Attempt::Retry(why) => why,
            };
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(MetaError::Unavailable(format!(
                    "no raft leader took the membership change within {:?}: {why}",
                    self.propose_timeout
                )));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    fn state(&self) -> Arc<ClusterState> {
        self.state_machine.state()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.state_machine.subscribe()
    }

    fn unreachable_brokers(&self) -> std::collections::BTreeSet<i32> {
        self.liveness.unreachable()
    }

    fn quorum(&self) -> Option<QuorumStatus> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let leader_last = m.last_log_index;
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = match &m.replication {
                    // The leader holds its own log; openraft may not list itself.
                    Some(_) if *id == self.node_id => Some(leader_last.unwrap_or(0)),
                    Some(r) => r.get(id).map(|l| l.map_or(0, |l| l.index)),
                    None => None,
                };
                QuorumMember {
                    node_id: *id as i32,
                    address: node.addr.clone(),
                    voter: voters.contains(id),
                    matched_index: matched,
                    lag: matched.map(|mi| leader_last.unwrap_or(0).saturating_sub(mi)),
                }
            })
            .collect();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        Some(QuorumStatus {
            node_id: self.node_id as i32,
            leader_id: m.current_leader.map(|l| l as i32),
            role: role.into(),
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            members,
        })
    }
}
