//! [`CommittedLog`]: the view of a replicated partition led here that the coordinators write
//! through, so that `__consumer_offsets` replicates like any partition without the
//! coordinators knowing: appends carry the partition's leader epoch, and `wait_durable`
//! returns only once the write is durable here and below the high watermark (on the in-sync
//! replicas), as acks=all does. Everything else is the log itself.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chronik_log::{
    AppendInfo, LeaderEpochHistory, LogConfig, LogError, PartitionLog, ReadResult, Result,
    TimestampOffset,
};
use chronik_meta::MetadataStore;
use tokio::sync::watch;

use super::LeaderPartition;

/// Kafka's offsets.commit.timeout.ms.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct CommittedLog {
    pub(super) leader: Arc<LeaderPartition>,
    pub(super) node_id: i32,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) meta: Arc<dyn MetadataStore>,
}

impl CommittedLog {
    fn log(&self) -> &dyn PartitionLog {
        &*self.leader.log
    }

    async fn wait_high_watermark(&self, offset: i64) -> Result<()> {
        let mut resigned = self.leader.resigned.subscribe();
        let mut hw = self.leader.log.subscribe();
        if let Some(p) = self.meta.state().partition(&self.topic, self.partition) {
            self.leader.advance_high_watermark(self.node_id, &p.isr);
        }
        let wait = async {
            loop {
                if *resigned.borrow_and_update() {
                    return Err(not_replicated(
                        "leadership moved before the write was replicated",
                    ));
                }
                if *hw.borrow_and_update() > offset {
                    return Ok(());
                }
                tokio::select! {
                    r = hw.changed() => if r.is_err() { return Err(LogError::Closed) },
                    r = resigned.changed() => if r.is_err() { return Err(LogError::Closed) },
                }
            }
        };
        tokio::time::timeout(COMMIT_TIMEOUT, wait)
            .await
            .map_err(|_| not_replicated("timed out waiting for the in-sync replicas"))?
    }
}

fn not_replicated(reason: &str) -> LogError {
    LogError::Io(io::Error::new(io::ErrorKind::TimedOut, reason.to_string()))
}

#[async_trait]
impl PartitionLog for CommittedLog {
    fn append(&self, records: Bytes, _leader_epoch: i32) -> Result<AppendInfo> {
        self.log().append(records, self.leader.leader_epoch)
    }

    async fn wait_durable(&self, offset: i64) -> Result<()> {
        self.log().wait_durable(offset).await?;
        self.wait_high_watermark(offset).await
    }

    fn read(&self, offset: i64, max_bytes: usize, limit: bool) -> Result<ReadResult> {
        self.log().read(offset, max_bytes, limit)
    }

    fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        self.log().read_committed(offset, max_bytes)
    }

    fn append_replicated(&self, records: Bytes) -> Result<AppendInfo> {
        self.log().append_replicated(records)
    }

    fn leader_epochs(&self) -> LeaderEpochHistory {
        self.log().leader_epochs()
    }

    fn assign_leader_epoch(&self, epoch: i32) -> Result<()> {
        self.log().assign_leader_epoch(epoch)
    }

    fn set_auto_high_watermark(&self, enabled: bool) {
        self.log().set_auto_high_watermark(enabled)
    }

    fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log().subscribe_log_end()
    }

    fn log_start_offset(&self) -> i64 {
        self.log().log_start_offset()
    }

    fn log_end_offset(&self) -> i64 {
        self.log().log_end_offset()
    }

    fn high_watermark(&self) -> i64 {
        self.log().high_watermark()
    }

    fn last_stable_offset(&self) -> i64 {
        self.log().last_stable_offset()
    }

    fn set_high_watermark(&self, offset: i64) -> Result<()> {
        self.log().set_high_watermark(offset)
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.log().subscribe()
    }

    fn truncate_to(&self, offset: i64) -> Result<()> {
        self.log().truncate_to(offset)
    }

    fn delete_records_before(&self, offset: i64) -> Result<i64> {
        self.log().delete_records_before(offset)
    }

    fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        self.log().offset_for_timestamp(timestamp)
    }

    fn max_timestamp(&self) -> Result<Option<TimestampOffset>> {
        self.log().max_timestamp()
    }

    fn size_bytes(&self) -> u64 {
        self.log().size_bytes()
    }

    fn update_config(&self, config: LogConfig) {
        self.log().update_config(config)
    }

    fn run_maintenance(&self, now_ms: i64) -> Result<()> {
        self.log().run_maintenance(now_ms)
    }

    fn close(&self) -> Result<()> {
        self.log().close()
    }
}
