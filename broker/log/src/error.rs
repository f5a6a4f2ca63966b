use thiserror::Error;

/// Everything the partition log can refuse or fail with. The Kafka error code of each variant is
/// decided in chronik-kafka's error mapping, not here.
#[derive(Debug, Error)]
pub enum LogError {
    /// A batch failed validation (CRC, magic, sizes); nothing of the append was stored.
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A batch is larger than the partition's max.message.bytes.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// A batch is well formed but not acceptable (e.g. empty, or a control batch from a client).
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("log is closed")]
    Closed,
    #[error("log i/o: {0}")]
    Io(#[from] std::io::Error),
}
