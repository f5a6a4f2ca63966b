//! Cluster metadata replicated by Raft (openraft).
//!
//! The state machine is chronik-meta's pure [`ClusterState::apply`]; this crate owns
//! everything around it that does I/O:
//! - [`log_store`]: the Raft log, vote and committed pointer, durable under the data directory
//!   (an append-only file of CRC-checked records, fsynced before openraft is told);
//! - [`state_machine`]: the applied state and its snapshots (written atomically);
//! - [`network`]: the tonic gRPC service on the cluster port, both the server side and the
//!   clients openraft uses to reach peers;
//! - [`store`]: [`RaftMetadataStore`], the `chronik_meta::MetadataStore` the broker uses,
//!   which forwards proposals from followers to the leader;
//! - [`node`]: [`RaftNode`], which wires the above together and bootstraps the cluster;
//! - `membership`: adding a voter on the leader (learner first, promoted once caught up);
//! - [`controller`]: broker heartbeats and, on the Raft leader, fencing of silent brokers
//!   (which elects new partition leaders), plus the partition replication service and
//!   clients on the same cluster port;
//! - `sized_codec`: the gRPC codec of every service here (prost, with each message's buffer
//!   reserved at its encoded size).
//!
//! A single broker is a one-voter cluster on exactly the same path.
//!
//! [`ClusterState::apply`]: chronik_meta::ClusterState::apply

pub mod controller;
mod error;
pub mod log_store;
mod membership;
pub mod network;
pub mod node;
mod sized_codec;
pub mod state_machine;
pub mod store;

use std::io::Cursor;

use chronik_meta::{Command, MetaError};

pub use controller::{LivenessConfig, ReplicaClients, ReplicaHandler};
pub use error::RaftError;
pub use node::{RaftNode, RaftNodeConfig, RaftTimings};
pub use store::RaftMetadataStore;

/// Generated from proto/raft.proto.
pub mod proto {
    tonic::include_proto!("chronik.raft.v1");
}

/// What applying one log entry answered: the state machine's verdict on a command.
pub type ApplyResult = Result<(), MetaError>;

openraft::declare_raft_types!(
    /// openraft's type configuration for the metadata quorum.
    pub TypeConfig:
        D = Command,
        R = ApplyResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
