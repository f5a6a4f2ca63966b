use thiserror::Error;

/// Failures of an indexer or of the pipeline that feeds it.
#[derive(Debug, Error)]
pub enum IndexError {
    #[error("i/o error in {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stored batch at offset {offset} cannot be decoded: {reason}")]
    Decode { offset: i64, reason: String },
    #[error("{kind} index of {topic}-{partition} is not open")]
    NotOpen {
        kind: &'static str,
        topic: String,
        partition: i32,
    },
    #[error("{kind} indexer failed: {reason}")]
    Indexer { kind: &'static str, reason: String },
    /// The index cannot take records now (a remote service it needs is down) but is intact:
    /// it holds everything below `resume` and nothing after. The pipeline keeps it open and
    /// offers the rest again after a pause.
    #[error("{kind} index cannot take records now: {reason}")]
    Deferred {
        kind: &'static str,
        reason: String,
        resume: i64,
    },
}
