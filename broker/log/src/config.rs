//! Per-partition log settings. Parsing and validation of the user-facing topic config keys live
//! in chronik-meta; this is the typed form the log runs on.

use std::time::Duration;

/// What happens to old data (Kafka's `cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// When appended bytes are fsynced (CHRONIK_FLUSH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync before acknowledging; concurrent appends share one fsync.
    Group,
    /// fsync in the background at this interval; acknowledged data may be lost on power loss.
    Interval(Duration),
    /// Leave it to the OS page cache.
    Os,
}

impl std::str::FromStr for FlushPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "group" => Ok(FlushPolicy::Group),
            "os" => Ok(FlushPolicy::Os),
            other => match other.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FlushPolicy::Interval(Duration::from_millis(ms))),
                _ => Err(format!(
                    "invalid flush policy {other:?}: expected group, os or interval:<ms>"
                )),
            },
        }
    }
}

/// Settings a partition log runs with. Defaults follow Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll the active segment when it reaches this size.
    pub segment_bytes: u64,
    /// Roll the active segment when its first batch is older than this.
    pub segment_ms: i64,
    /// Delete sealed segments whose newest record is older than this; -1 keeps forever.
    pub retention_ms: i64,
    /// Delete oldest sealed segments while the log is larger than this; -1 is unbounded.
    pub retention_bytes: i64,
    /// Largest batch accepted by append.
    pub max_message_bytes: usize,
    pub cleanup_policy: CleanupPolicy,
    /// How long compaction keeps a tombstone visible before removing it.
    pub delete_retention_ms: i64,
    /// Bytes between two entries of the sparse offset and time indexes.
    pub index_interval_bytes: u32,
    pub flush: FlushPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1 << 20,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            flush: FlushPolicy::Group,
        }
    }
}
