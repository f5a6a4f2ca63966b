//! Cluster metadata: brokers, topics, partitions and their assignments, leader epochs, ISR and
//! per-topic configuration.
//!
//! The heart is [`ClusterState::apply`], a pure and deterministic function of the state and a
//! [`Command`]; everything that needs randomness or the clock (topic ids, replica placement)
//! is decided before a command is built, by the planning functions in [`plan`]. Commands reach
//! the state through a [`MetadataStore`]: [`LocalMetadataStore`] journals them to disk on a
//! single node, and a Raft-replicated store can implement the same trait without its callers
//! changing (chronik-raft's `RaftMetadataStore` does).

mod error;
pub mod plan;
pub mod reassignment;
pub mod replication;
mod state;
mod store;
pub mod topic_config;

pub use error::MetaError;
pub use state::{
    BrokerInfo, ClusterState, Command, PartitionMeta, ProducerIdBlock, TopicMeta, NO_LEADER,
};
pub use store::{LocalMetadataStore, MetadataStore, QuorumMember, QuorumStatus};
pub use topic_config::{
    check_embedding_endpoint, CleanupPolicy, ConfigKind, ConfigSource, EmbeddingProviderKind,
    ResolvedConfig, TopicConfig, VectorField, VectorMetric, VectorSettings,
    MAX_EMBEDDING_DIMENSIONS,
};

pub type Result<T, E = MetaError> = std::result::Result<T, E>;
