use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a metadata command or lookup failed. Kafka error codes and HTTP statuses for these are
/// decided where responses are built (chronik-kafka, chronik-api), not here.
/// Serializable because a Raft follower receives the leader's verdict on a forwarded command.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaError {
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config {key}: {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("producer ids exhausted: {0}")]
    ProducerIdsExhausted(String),
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
    /// A partition change made against leadership or ISR that has moved on since.
    #[error("stale partition state: {0}")]
    StalePartitionState(String),
    #[error("metadata storage: {0}")]
    Storage(String),
    /// A membership change for a node that is already a member.
    #[error("already a member: {0}")]
    AlreadyMember(String),
    /// A broker cannot be drained (its replicas would have nowhere to go) or forgotten yet.
    #[error("cannot drain: {0}")]
    CannotDrain(String),
    /// Cancelling a reassignment of a partition that is not being reassigned.
    #[error("no reassignment in progress: {0}")]
    NoReassignmentInProgress(String),
    /// The store cannot change its membership (it does not replicate).
    #[error("membership changes are not supported: {0}")]
    MembershipUnsupported(String),
    /// No metadata quorum could commit the command in time (no Raft leader reachable).
    #[error("metadata quorum unavailable: {0}")]
    Unavailable(String),
}

impl From<std::io::Error> for MetaError {
    fn from(e: std::io::Error) -> Self {
        MetaError::Storage(e.to_string())
    }
}
