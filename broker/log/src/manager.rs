//! [`LogManager`]: every partition log of a broker under one root directory
//! (`<root>/<topic>-<partition>/`), plus the background task that applies retention, compaction
//! and interval flushing to them.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::file_log::now_ms;
use crate::{FileLog, FlushPolicy, LogConfig, LogError, PartitionLog, Result};

/// How often replicated partitions' high watermarks are checkpointed (Kafka's
/// replica.high.watermark.checkpoint.interval.ms).
pub const HW_CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// Owns the partition logs of one broker.
#[derive(Debug)]
pub struct LogManager {
    root: PathBuf,
    /// The server-wide flush policy (CHRONIK_FLUSH); it overrides `LogConfig::flush`.
    flush: FlushPolicy,
    logs: RwLock<HashMap<(String, i32), Arc<FileLog>>>,
}

/// Kafka's legal topic characters; anything else could escape the root directory.
fn check_topic(topic: &str) -> Result<()> {
    let legal = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if legal {
        Ok(())
    } else {
        Err(LogError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("illegal topic name {topic:?}"),
        )))
    }
}

/// `<topic>-<partition>` back into its parts.
fn parse_dir_name(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    let partition = partition.parse::<i32>().ok().filter(|p| *p >= 0)?;
    check_topic(topic).ok()?;
    Some((topic.to_string(), partition))
}

impl LogManager {
    /// Use `root` (created if missing) for all partition logs. Nothing is opened yet: the server
    /// reconciles [`LogManager::existing_partitions`] with metadata and opens what it owns.
    pub fn open(root: PathBuf, flush: FlushPolicy) -> Result<Self> {
        fs::create_dir_all(&root)?;
        Ok(LogManager {
            root,
            flush,
            logs: RwLock::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.root.join(format!("{topic}-{partition}"))
    }

    /// The open log of a partition, opening (and recovering) or creating it on first use.
    pub fn get_or_create(
        &self,
        topic: &str,
        partition: i32,
        mut config: LogConfig,
    ) -> Result<Arc<dyn PartitionLog>> {
        if let Some(log) = self.get(topic, partition) {
            return Ok(log);
        }
        check_topic(topic)?;
        if partition < 0 {
            return Err(LogError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("negative partition {partition}"),
            )));
        }
        let mut logs = self.logs.write();
        let key = (topic.to_string(), partition);
        if let Some(log) = logs.get(&key) {
            return Ok(Arc::clone(log) as Arc<dyn PartitionLog>);
        }
        config.flush = self.flush;
        let log = Arc::new(FileLog::open(self.partition_dir(topic, partition), config)?);
        logs.insert(key, Arc::clone(&log));
        Ok(log)
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<dyn PartitionLog>> {
        let logs = self.logs.read();
        logs.get(&(topic.to_string(), partition))
            .map(|log| Arc::clone(log) as Arc<dyn PartitionLog>)
    }

    /// The concrete log, for callers that need [`FileLog`]-only operations (stats, roll).
    pub fn get_file_log(&self, topic: &str, partition: i32) -> Option<Arc<FileLog>> {
        self.logs
            .read()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Close every partition of `topic` and delete their directories, including ones on disk
    /// that were never opened.
    pub fn remove_topic(&self, topic: &str) -> Result<()> {
        check_topic(topic)?;
        let removed: Vec<Arc<FileLog>> = {
            let mut logs = self.logs.write();
            let keys: Vec<_> = logs.keys().filter(|(t, _)| t == topic).cloned().collect();
            keys.iter().filter_map(|k| logs.remove(k)).collect()
        };
        for log in &removed {
            if let Err(e) = log.close() {
                tracing::warn!(topic, error = %e, "closing a deleted partition failed");
            }
        }
        for (t, partition) in self.existing_partitions() {
            if t == topic {
                fs::remove_dir_all(self.partition_dir(&t, partition))?;
            }
        }
        Ok(())
    }

    /// Close one partition's log and delete its directory (a replica moved to another broker).
    pub fn remove_partition(&self, topic: &str, partition: i32) -> Result<()> {
        check_topic(topic)?;
        let removed = self.logs.write().remove(&(topic.to_string(), partition));
        if let Some(log) = removed {
            if let Err(e) = log.close() {
                tracing::warn!(topic, partition, error = %e, "closing a moved partition failed");
            }
        }
        let dir = self.partition_dir(topic, partition);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Partitions with a directory under the root, whether open or not.
    pub fn existing_partitions(&self) -> Vec<(String, i32)> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut found: Vec<(String, i32)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| parse_dir_name(e.file_name().to_str()?))
            .collect();
        found.sort();
        found
    }

    fn open_logs(&self) -> Vec<Arc<FileLog>> {
        self.logs.read().values().cloned().collect()
    }

    /// Start the background task: every `maintenance_every` it runs retention, segment.ms rolls
    /// and compaction on every open log; every [`HW_CHECKPOINT_EVERY`] it checkpoints the high
    /// watermarks of replicated partitions; under `FlushPolicy::Interval(d)` it also fsyncs
    /// every log each `d`. The work runs on the blocking pool. The task ends when the manager
    /// is dropped.
    pub fn spawn_background(
        self: &Arc<Self>,
        maintenance_every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let manager = Arc::downgrade(self);
        let flush_every = match self.flush {
            FlushPolicy::Interval(d) => Some(d),
            FlushPolicy::Group | FlushPolicy::Os => None,
        };
        let tick = flush_every
            .map_or(maintenance_every, |d| d.min(maintenance_every))
            .min(HW_CHECKPOINT_EVERY);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_maintenance = Instant::now();
            let mut last_checkpoint = Instant::now();
            loop {
                ticker.tick().await;
                let Some(logs) = manager.upgrade().map(|m| m.open_logs()) else {
                    break;
                };
                let maintain = last_maintenance.elapsed() >= maintenance_every;
                if maintain {
                    last_maintenance = Instant::now();
                }
                let checkpoint = last_checkpoint.elapsed() >= HW_CHECKPOINT_EVERY;
                if checkpoint {
                    last_checkpoint = Instant::now();
                }
                let flush = flush_every.is_some();
                let work = tokio::task::spawn_blocking(move || {
                    for log in logs {
                        if flush {
                            report(&log, "interval flush", log.flush());
                        }
                        if checkpoint {
                            report(
                                &log,
                                "high watermark checkpoint",
                                log.checkpoint_high_watermark(),
                            );
                        }
                        if maintain {
                            report(&log, "maintenance", log.run_maintenance(now_ms()));
                        }
                    }
                });
                if let Err(e) = work.await {
                    tracing::error!(error = %e, "log background work panicked");
                }
            }
        })
    }

    /// Flush and close every open log.
    pub fn close_all(&self) -> Result<()> {
        let logs: Vec<Arc<FileLog>> = self.logs.write().drain().map(|(_, l)| l).collect();
        let mut first_error = None;
        for log in logs {
            if let Err(e) = log.close() {
                tracing::warn!(dir = %log.dir().display(), error = %e, "closing log failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn report(log: &FileLog, what: &str, result: Result<()>) {
    match result {
        Ok(()) | Err(LogError::Closed) => {}
        Err(e) => tracing::warn!(dir = %log.dir().display(), error = %e, "{what} failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_partition_dirs_with_dashes_in_topic_names() {
        assert_eq!(parse_dir_name("my-topic-3"), Some(("my-topic".into(), 3)));
        assert_eq!(parse_dir_name("orders-0"), Some(("orders".into(), 0)));
        assert_eq!(parse_dir_name("orders"), None);
        assert_eq!(parse_dir_name("orders-x"), None);
        assert!(check_topic("../etc").is_err());
    }
}
