//! The cluster port: the tonic service peers call ([`RaftGrpc`]) and the clients openraft uses
//! to call them ([`NetworkFactory`]). Raft messages are openraft's serde encoding in an opaque
//! protobuf field (see proto/raft.proto for why).

use std::sync::Arc;
use std::time::Duration;

use chronik_meta::Command;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError as OpenraftError,
    RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::controller::Liveness;
use crate::membership::{self, AddVoter};
use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::raft_service_server::RaftService;
use crate::proto::{
    membership_reply, propose_reply, AddVoterRequest, HeartbeatReply, HeartbeatRequest,
    MembershipReply, NotLeader, ProposeReply, ProposeRequest, RaftMessage, Refused,
};
use crate::{NodeId, Raft, TypeConfig};

/// How long a new voter may take to catch up as a learner before it is promoted.
pub(crate) const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for a TCP connection to a peer before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A lazily connecting client of a peer's cluster port.
pub fn client(addr: &str) -> Result<RaftServiceClient<Channel>, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    Ok(RaftServiceClient::new(endpoint.connect_lazy()))
}

fn encode<T: Serialize>(value: &T) -> Result<RaftMessage, Status> {
    serde_json::to_vec(value)
        .map(|json| RaftMessage { json })
        .map_err(|e| Status::internal(format!("cannot encode raft message: {e}")))
}

fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&message.json)
        .map_err(|e| Status::invalid_argument(format!("cannot decode raft message: {e}")))
}

// ---- server side ---------------------------------------------------------------------------

/// The gRPC service on the cluster port, in front of the local Raft node.
#[derive(Clone)]
pub struct RaftGrpc {
    raft: Raft,
    liveness: Arc<Liveness>,
}

impl RaftGrpc {
    pub fn new(raft: Raft, liveness: Arc<Liveness>) -> Self {
        RaftGrpc { raft, liveness }
    }
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        let result = self.raft.append_entries(rpc).await;
        encode(&result).map(Response::new)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = decode(request.get_ref())?;
        let result = self.raft.vote(rpc).await;
        encode(&result).map(Response::new)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request.get_ref())?;
        let result = self.raft.install_snapshot(rpc).await;
        encode(&result).map(Response::new)
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let command: Command = serde_json::from_slice(&request.get_ref().command)
            .map_err(|e| Status::invalid_argument(format!("cannot decode command: {e}")))?;
        let result = match self.raft.client_write(command).await {
            Ok(written) => match written.data {
                Ok(()) => propose_reply::Result::AppliedIndex(written.log_id.index),
                Err(refused) => propose_reply::Result::Refused(Refused {
                    error: serde_json::to_vec(&refused)
                        .map_err(|e| Status::internal(e.to_string()))?,
                    index: written.log_id.index,
                }),
            },
            Err(OpenraftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                propose_reply::Result::NotLeader(NotLeader {
                    leader_id: f.leader_id,
                })
            }
            Err(e) => return Err(Status::unavailable(e.to_string())),
        };
        Ok(Response::new(ProposeReply {
            result: Some(result),
        }))
    }

    async fn add_voter(
        &self,
        request: Request<AddVoterRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let r = request.into_inner();
        let result = match membership::add_voter(
            &self.raft,
            r.node_id,
            &r.address,
            CATCH_UP_TIMEOUT,
        )
        .await
        {
            AddVoter::Added => membership_reply::Result::Done(true),
            AddVoter::NotLeader(leader) => membership_reply::Result::NotLeader(NotLeader {
                leader_id: leader.map(|(id, _)| id),
            }),
            AddVoter::Refused(e) => membership_reply::Result::Refused(
                serde_json::to_vec(&e).map_err(|e| Status::internal(e.to_string()))?,
            ),
        };
        Ok(Response::new(MembershipReply {
            result: Some(result),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        // Recorded wherever it lands; only the leader's controller acts on it.
        let request = request.into_inner();
        self.liveness.record(request.node_id);
        for broker in request.unreachable {
            self.liveness.suspect(broker);
        }
        Ok(Response::new(HeartbeatReply {}))
    }
}

// ---- client side ---------------------------------------------------------------------------

/// Makes [`PeerClient`]s for openraft's replication and election tasks.
#[derive(Debug, Clone, Default)]
pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            client: None,
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    client: Option<RaftServiceClient<Channel>>,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, OpenraftError<NodeId, E>>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Some(c) => c,
            None => {
                let c =
                    client(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
                self.client.insert(c)
            }
        };
        let message = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = Request::new(message);
        request.set_timeout(option.hard_ttl());
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| match status.code() {
            // Refused or dropped connections: back off before trying this peer again.
            tonic::Code::Unavailable | tonic::Code::Unknown => {
                RPCError::Unreachable(Unreachable::new(&status))
            }
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let result: Result<Resp, OpenraftError<NodeId, E>> =
            serde_json::from_slice(&reply.get_ref().json)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
