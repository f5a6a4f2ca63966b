//! The partition log: an append-only sequence of Kafka v2 record batches per partition.
//!
//! This crate owns everything that touches a partition's bytes on disk: segment files, the sparse
//! offset and time indexes, group-committed fsync, start-up recovery, retention, compaction and
//! the log start offset. It knows nothing about topics' metadata or the Kafka request layer; the
//! caller hands it a [`LogConfig`] per partition.
//!
//! The seam is the [`PartitionLog`] trait. [`FileLog`] is the durable implementation and
//! [`MemoryLog`] an in-memory one for tests; both pass the shared conformance suite in
//! `tests/conformance.rs`. Replication (a later crate) wraps a `PartitionLog` and drives the high
//! watermark itself, which is why log end offset, high watermark and `truncate_to` are separate.

mod batch;
mod compaction;
mod config;
mod decode;
mod error;
mod file_log;
pub mod leader_epoch;
mod manager;
mod memory_log;
mod producer_state;

pub use batch::{
    control_batch, control_kind, validate_records, BatchHeader, BatchSpan, ControlKind,
    BATCH_HEADER_LEN, LOG_OVERHEAD,
};
pub use config::{CleanupPolicy, FlushPolicy, LogConfig};
pub use error::LogError;
pub use file_log::FileLog;
pub use leader_epoch::{truncation_offset, EpochEntry, LeaderEpochHistory};
pub use manager::LogManager;
pub use memory_log::MemoryLog;
pub use producer_state::{AbortedTxn, PRODUCER_ID_EXPIRATION_MS, RETAINED_BATCHES};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// What an append assigned and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
    /// Largest record timestamp among the appended batches.
    pub max_timestamp: i64,
    /// The log start offset after the append, echoed in Produce responses.
    pub log_start_offset: i64,
}

/// Stored bytes returned by a read, together with the offsets a Fetch response reports.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Whole stored batches, concatenated, exactly as on disk. May be empty.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The first offset of the oldest open transaction, or the high watermark when none is
    /// open (or it lies beyond).
    pub last_stable_offset: i64,
    /// Filled by [`PartitionLog::read_committed`] only: the aborted transactions overlapping
    /// the returned batches, which a read_committed consumer skips.
    pub aborted_transactions: Vec<AbortedTxn>,
}

/// Offset and timestamp answered by a timestamp lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

/// One partition's log.
///
/// To ensure correctness an implementation must:
/// - validate every batch of an append (magic 2, sizes, CRC-32C) before storing any of them, so
///   that a rejected append stores nothing;
/// - assign offsets contiguously from the log end offset and stamp `leader_epoch` into each
///   batch header, rewriting the header's CRC-free fields only (base offset, epoch), so the CRC
///   the producer computed still verifies;
/// - never expose to `read` (with `limit_to_high_watermark`) anything at or above the high
///   watermark;
/// - advance the high watermark only to offsets that are durable under its flush policy;
/// - keep `log_start_offset <= high_watermark <= log_end_offset`;
/// - check every batch carrying a producer id against the partition's producer state inside the
///   same critical section that assigns its offsets (see `producer_state`): a repeat of one of
///   the producer's last [`RETAINED_BATCHES`] batches stores nothing and fails with
///   [`LogError::DuplicateSequence`] carrying the original offsets; a sequence gap is
///   [`LogError::OutOfOrderSequence`]; an older epoch is [`LogError::InvalidProducerEpoch`];
/// - keep that state across restarts (a durable log rebuilds it from batch headers) and after
///   retention removes a producer's batches, until [`PRODUCER_ID_EXPIRATION_MS`] without writes;
/// - track transactions (KIP-98): a transactional batch opens its producer's transaction on the
///   partition, a control batch (marker) closes it; a non-transactional batch of a producer
///   with an open transaction is [`LogError::InvalidTxnState`]. The last stable offset is
///   `min(first offset of the oldest open transaction, high watermark)`; every ABORT marker
///   records an [`AbortedTxn`], kept (across restarts too) until the log start passes its
///   marker, and `read_committed` stops at the last stable offset and lists those overlapping
///   what it returns.
#[async_trait]
pub trait PartitionLog: Send + Sync + std::fmt::Debug {
    /// Validate and append one or more record batches as produced. Does not wait for
    /// durability; call [`PartitionLog::wait_durable`] with `last_offset` for that.
    fn append(&self, records: Bytes, leader_epoch: i32) -> Result<AppendInfo>;

    /// Wait until every offset up to and including `offset` is durable per the flush policy
    /// (group commit: concurrent waiters share one fsync). On a single node the high watermark
    /// has passed `offset` when this returns.
    async fn wait_durable(&self, offset: i64) -> Result<()>;

    /// Read whole batches starting with the one containing `offset`, up to about `max_bytes`
    /// (the first batch is returned whole even when larger, as Kafka does, so a consumer always
    /// makes progress). With `limit_to_high_watermark` nothing at or past the high watermark is
    /// returned. `offset` outside [log start, log end] is [`LogError::OffsetOutOfRange`].
    fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        limit_to_high_watermark: bool,
    ) -> Result<ReadResult>;

    /// Read as a read_committed consumer: like `read` limited to the high watermark, but
    /// nothing at or past the last stable offset, and with `aborted_transactions` filled.
    fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<ReadResult>;

    /// Append batches exactly as the partition leader stored them (a follower's fetch):
    /// offsets and leader epochs are the leader's, nothing is re-encoded or re-stamped. The
    /// first batch may not start below the log end (gaps left by the leader's compaction or
    /// retention are kept). Producer state and the leader-epoch history follow the batches.
    fn append_replicated(&self, records: Bytes) -> Result<AppendInfo>;

    /// Where each leader epoch starts in this log (survives restarts and truncations).
    fn leader_epochs(&self) -> LeaderEpochHistory;

    /// Record that `epoch` starts at the current log end (this replica became leader), unless
    /// it is not newer than the latest epoch.
    fn assign_leader_epoch(&self, epoch: i32) -> Result<()>;

    /// Whether durability advances the high watermark (the default, a single replica). A
    /// replicated partition turns it off and drives it with `set_high_watermark`; turning it
    /// back on (the partition is down to this one replica) moves the high watermark up to the
    /// durable end at once.
    fn set_auto_high_watermark(&self, enabled: bool);

    /// Changes to the log end offset, for replica fetch long polls.
    fn subscribe_log_end(&self) -> watch::Receiver<i64>;

    fn log_start_offset(&self) -> i64;
    fn log_end_offset(&self) -> i64;
    fn high_watermark(&self) -> i64;

    /// `min(first offset of the oldest open transaction, high watermark)`.
    fn last_stable_offset(&self) -> i64;

    /// Set by a replication layer; a single-node log advances it itself after durability.
    fn set_high_watermark(&self, offset: i64) -> Result<()>;

    /// Changes to the high watermark, for Fetch long polls.
    fn subscribe(&self) -> watch::Receiver<i64>;

    /// Remove every batch at or above `offset` (replica divergence); the log end offset
    /// becomes the base offset of the first removed batch.
    fn truncate_to(&self, offset: i64) -> Result<()>;

    /// Advance the log start offset (DeleteRecords). Returns the new log start offset.
    fn delete_records_before(&self, offset: i64) -> Result<i64>;

    /// First offset whose batch max timestamp is >= `timestamp`, for ListOffsets.
    fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>>;

    /// Offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    fn max_timestamp(&self) -> Result<Option<TimestampOffset>>;

    /// Bytes currently stored.
    fn size_bytes(&self) -> u64;

    /// Replace the partition's configuration (retention, segment sizes, cleanup policy).
    fn update_config(&self, config: LogConfig);

    /// Apply retention (time and bytes), roll aged segments, and compact if the policy says so.
    /// Called periodically by the manager's background task; `now_ms` is wall-clock millis.
    fn run_maintenance(&self, now_ms: i64) -> Result<()>;

    /// Flush everything and release file handles.
    fn close(&self) -> Result<()>;
}
