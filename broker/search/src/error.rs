use thiserror::Error;

/// Failures of full-text indexing and search.
#[derive(Debug, Error)]
pub enum SearchError {
    /// The request is malformed or asks for something the DSL does not have; the message says
    /// what and where.
    #[error("{0}")]
    BadRequest(String),
    /// A named topic is not a searchable index on this broker.
    #[error("no such index [{0}]")]
    IndexNotFound(String),
    #[error("search index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index i/o error in {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("search task failed: {0}")]
    Task(String),
}

impl SearchError {
    pub(crate) fn bad(reason: impl Into<String>) -> Self {
        SearchError::BadRequest(reason.into())
    }
}

impl From<tantivy::directory::error::OpenDirectoryError> for SearchError {
    fn from(e: tantivy::directory::error::OpenDirectoryError) -> Self {
        SearchError::Tantivy(e.into())
    }
}

impl From<tantivy::query::QueryParserError> for SearchError {
    fn from(e: tantivy::query::QueryParserError) -> Self {
        SearchError::BadRequest(e.to_string())
    }
}
