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
    /// Some records of a batch are not acceptable (e.g. null keys on a compacted topic);
    /// `indexes` are their positions within the batch, which Produce reports per record.
    #[error("invalid records at {indexes:?}: {reason}")]
    InvalidRecords { reason: String, indexes: Vec<i32> },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    /// The batch repeats one of its producer's last five batches: nothing was stored, and these
    /// are the offsets the original was stored at (the produce is answered with them).
    #[error("duplicate batch of producer {producer_id}: already stored at offsets {base_offset}..={last_offset}")]
    DuplicateSequence {
        producer_id: i64,
        base_offset: i64,
        last_offset: i64,
    },
    /// The batch's sequence does not continue its producer's sequence (a gap, or a new epoch not
    /// starting at 0).
    #[error("out of order sequence for producer {producer_id}: {reason}")]
    OutOfOrderSequence { producer_id: i64, reason: String },
    /// The batch carries an epoch older than its producer's current one: a fenced zombie.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// The batch does not fit its producer's transaction on this partition (e.g. a
    /// non-transactional batch while the producer's transaction is open).
    #[error("invalid transaction state of producer {producer_id}: {reason}")]
    InvalidTxnState { producer_id: i64, reason: String },
    #[error("log is closed")]
    Closed,
    #[error("log i/o: {0}")]
    Io(#[from] std::io::Error),
}
