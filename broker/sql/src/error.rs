use thiserror::Error;

/// Failures of SQL queries and of the columnar store.
#[derive(Debug, Error)]
pub enum SqlError {
    /// The query does not parse, plan or run (the message is DataFusion's).
    #[error("{0}")]
    BadQuery(String),
    #[error("table '{0}' not found")]
    UnknownTable(String),
    /// The query reads a topic with partitions this broker holds no replica of; queries do
    /// not fan out across brokers yet, and a partial answer would pass as whole.
    #[error("{0}")]
    NotHosted(String),
    #[error("query exceeded its timeout of {0} ms and was cancelled")]
    Timeout(u64),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parquet error on {path}: {reason}")]
    Parquet { path: String, reason: String },
    #[error("{0}")]
    Internal(String),
}

impl SqlError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SqlError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<SqlError> for chronik_index::IndexError {
    fn from(e: SqlError) -> Self {
        chronik_index::IndexError::Indexer {
            kind: crate::KIND,
            reason: e.to_string(),
        }
    }
}
