use std::path::PathBuf;

use thiserror::Error;

/// Failures of embedding and vector search.
#[derive(Debug, Error)]
pub enum VectorError {
    /// The request is malformed (wrong dimension, bad k, bad filter); the message says what.
    #[error("{0}")]
    BadRequest(String),
    /// The topic does not exist here or has no vector index.
    #[error("{0}")]
    NotFound(String),
    /// The local model's files are not where the server was told to find them.
    #[error(
        "local embedding model not found: {path} is missing (run `make model`, or point \
         CHRONIK_EMBEDDING_MODEL_DIR at a directory holding model.safetensors, tokenizer.json \
         and config.json)"
    )]
    ModelMissing { dir: PathBuf, path: PathBuf },
    /// The model files exist but cannot be loaded.
    #[error("cannot load the embedding model from {dir}: {reason}")]
    ModelInvalid { dir: PathBuf, reason: String },
    /// The topic asks for an embedding setup this server cannot provide.
    #[error("{0}")]
    Unsupported(String),
    /// The topic's index cannot answer now (it failed to open); the message says why.
    #[error("{0}")]
    Unavailable(String),
    /// Embedding is not possible right now (provider down, model missing); retried later.
    #[error("embedding failed: {0}")]
    Embedding(String),
    #[error("vector index i/o error in {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("vector index file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("vector task failed: {0}")]
    Task(String),
}

impl VectorError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        VectorError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn bad(reason: impl Into<String>) -> Self {
        VectorError::BadRequest(reason.into())
    }
}
