use thiserror::Error;

/// Why the Raft node could not start or serve.
#[derive(Debug, Error)]
pub enum RaftError {
    #[error("raft storage at {path}: {reason}")]
    Storage { path: String, reason: String },
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot listen on the cluster port {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid raft configuration: {0}")]
    Config(String),
}
