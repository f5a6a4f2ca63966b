//! [`FileLog`]: the durable partition log, one directory per partition holding Kafka-style
//! segments (`<20-digit base offset>.log`, `.index`, `.timeindex`) and a `log-start-offset`
//! checkpoint.
//!
//! Concurrency: one `parking_lot::RwLock` guards the segment list and the offsets. Appends take it
//! exclusively for a positional write (large appends write their whole blocks with direct I/O,
//! see `direct`; a leader keeps its newest appends in memory, see `recent`); reads take it
//! shared only to find the byte range and either those chunks or the file, then slice them or
//! `pread` outside the lock, so readers never block appends. fsyncs never run under the lock
//! nor on a tokio worker: they run on the blocking pool.
//!
//! Durability under [`FlushPolicy::Group`]: `wait_durable` is a group commit. The first waiter
//! that finds no fsync in flight starts one covering everything appended so far; every waiter,
//! that one included, then waits for the round to finish and re-checks, so N concurrent
//! producers share a handful of fsyncs. The high watermark moves to the durable end after each
//! round. Under `Interval` and `Os` the high watermark follows the log end at append.
//!
//! Submodules: `segment` (one `.log` file with its indexes, recovery and truncation), `index`
//! (the sparse offset and time indexes), `scan` (walking a file's batches a window at a time),
//! `direct` (direct I/O for large writes), `recent` (a leader's newest appends in memory),
//! `checkpoint` (offsets kept beside the segments), `compact` (the file side of compaction),
//! `sync_lane` (one fsync round at a time per process, and the warning when one is slow).

mod checkpoint;
mod compact;
mod direct;
mod index;
mod recent;
mod scan;
mod segment;
mod sync_lane;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::batch;
use crate::decode;
use crate::leader_epoch::{self, LeaderEpochHistory};
use crate::producer_state::{ProducerStates, PRODUCER_ID_EXPIRATION_MS};
use crate::{
    AppendInfo, FlushPolicy, LogConfig, LogError, PartitionLog, ReadResult, Result, TimestampOffset,
};

use scan::{BatchCursor, Step, HEADER_WINDOW};
use segment::Segment;

/// A partition log stored in segment files under one directory.
#[derive(Debug)]
pub struct FileLog {
    shared: Arc<Shared>,
}

/// Everything a background fsync round needs, so it can outlive the `wait_durable` call that
/// started it (a cancelled produce must not leave a round half-accounted).
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// Fixed at open: changing durability under a running log would break its promises.
    flush: FlushPolicy,
    state: RwLock<State>,
    /// High watermark changes, for Fetch long polls.
    hw_tx: watch::Sender<i64>,
    /// Log end changes, for replica fetch long polls.
    leo_tx: watch::Sender<i64>,
    /// Bumped after every fsync round (successful or not) so group-commit waiters re-check.
    flushed_tx: watch::Sender<u64>,
    /// fsync calls on segment files, to verify that group commit shares them.
    fsyncs: AtomicU64,
    /// Bytes written with direct I/O since open.
    direct_bytes: AtomicU64,
    /// Reads answered from the newest appends in memory since open.
    memory_reads: AtomicU64,
    /// Whether durability advances the high watermark; a replication layer turns it off and
    /// drives it with `set_high_watermark`.
    auto_hw: AtomicBool,
    /// The high watermark last written to the `replication-offset` checkpoint (-1: none).
    hw_checkpointed: AtomicI64,
    /// Held by whoever advances the log start (retention, DeleteRecords) across writing the
    /// checkpoint and exposing the new start, so checkpoints are written in order and never go
    /// back, without an fsync under the state lock. Always taken before `state`.
    log_start_lock: Mutex<()>,
}

#[derive(Debug)]
struct State {
    config: LogConfig,
    /// Ascending by base offset; the last one is the active segment. Never empty while open.
    segments: Vec<Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    /// Everything below this offset has been fsynced.
    durable_end: i64,
    /// Rolled segment files whose data the next fsync round must cover.
    unsynced: Vec<Arc<File>>,
    /// A segment file was created or removed since the last directory fsync.
    dir_dirty: bool,
    /// Bumped by `truncate_to`: an fsync round started before a truncation must not declare
    /// re-appended offsets durable.
    truncations: u64,
    flush_in_flight: bool,
    /// A failed fsync leaves the page cache state unknown (the kernel may have dropped the dirty
    /// pages), so it is sticky: durability is never claimed again for this log.
    flush_failed: Option<String>,
    closed: bool,
    compaction: CompactionMark,
    /// Idempotent producers' sequence state, checked and updated under this lock with every
    /// append; snapshotted at each roll and at close, rebuilt at open.
    producers: ProducerStates,
    /// Where each leader epoch starts; checkpointed whenever it changes (rarely: leadership
    /// changes and truncations).
    epochs: LeaderEpochHistory,
}

/// What the last compaction pass covered, so maintenance only compacts when there is work.
#[derive(Debug, Default)]
struct CompactionMark {
    /// Sealed segments ended here at the last pass.
    cleaned_through: i64,
    /// The earliest time a retained tombstone becomes removable.
    next_tombstone_expiry: Option<i64>,
}

impl State {
    fn active(&self) -> Result<&Segment> {
        self.segments.last().ok_or(LogError::Closed)
    }

    fn active_mut(&mut self) -> Result<&mut Segment> {
        self.segments.last_mut().ok_or(LogError::Closed)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(LogError::Closed)
        } else {
            Ok(())
        }
    }

    fn out_of_range(&self, offset: i64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            start: self.log_start_offset,
            end: self.log_end_offset,
        }
    }

    fn last_stable_offset(&self) -> i64 {
        self.producers
            .first_unstable_offset()
            .map_or(self.high_watermark, |f| f.min(self.high_watermark))
    }

    /// The first segment holding a batch at or after `offset`.
    ///
    /// Neither "the segment whose base is at or below `offset`" nor "the next base is the
    /// previous last offset + 1" holds once compaction has run: a segment may end below the
    /// next one's base, or hold nothing at all (an empty segment's `next_offset` is its base,
    /// which can still be above `offset`). So the test is "non-empty and ends after `offset`":
    /// a non-empty segment's last batch ends at `next_offset`, so it holds a batch at or after
    /// `offset` exactly when `next_offset > offset`.
    fn locate(&self, offset: i64) -> Option<&Segment> {
        let i = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        self.segments[i..]
            .iter()
            .find(|s| s.size > 0 && s.next_offset > offset)
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Run `f` on tokio's blocking pool when inside a runtime, inline otherwise.
fn run_blocking(f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => drop(handle.spawn_blocking(f)),
        Err(_) => f(),
    }
}

impl FileLog {
    /// Open (creating if needed) the log in `dir` and recover it: the active segment is fully
    /// validated and a torn or corrupt tail is truncated; sealed segments are trusted when their
    /// indexes check out, and rebuilt by a validating scan otherwise.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<FileLog> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let interval = config.index_interval_bytes;
        let checkpoint = checkpoint::read(&dir, checkpoint::LOG_START);
        let hw_checkpoint = checkpoint::read(&dir, checkpoint::HIGH_WATERMARK);
        let bases = list_segments(&dir)?;

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut torn = None;
        let mut dropped_segments = 0usize;
        let mut dropped_empty = 0usize;
        for (i, &base) in bases.iter().enumerate() {
            if torn.is_some() {
                // Everything after a corrupt batch goes with it: offsets must stay contiguous.
                remove_segment_files(&dir, base)?;
                dropped_segments += 1;
                continue;
            }
            let (seg, seg_torn) = if i + 1 == bases.len() {
                Segment::recover(&dir, base, interval)?
            } else {
                Segment::open_sealed(&dir, base, interval)?
            };
            if let Some(t) = seg_torn {
                seg.remove_index_files()?;
                torn = Some((base, t));
            } else if seg.size == 0 && i > 0 && i + 1 < bases.len() {
                // An empty sealed segment between two others (a crash while compaction removed a
                // wholly superseded segment leaves one) owns no offsets: the next segment's base
                // bounds its range either way. Not the first one, whose base may be the log
                // start, nor the last, the active segment, whose base may be the log end.
                seg.remove_files()?;
                dropped_empty += 1;
                continue;
            }
            segments.push(seg);
        }
        if let Some((base, t)) = &torn {
            tracing::warn!(
                dir = %dir.display(),
                segment = base,
                position = t.position,
                bytes = t.bytes_removed,
                later_segments = dropped_segments,
                reason = %t.reason,
                "truncated torn or corrupt log tail"
            );
        }
        if segments.is_empty() {
            segments.push(Segment::create(&dir, checkpoint.unwrap_or(0), interval)?);
            checkpoint::sync_dir(&dir)?;
        }

        let active = segments.last_mut().ok_or(LogError::Closed)?;
        let log_end_offset = active.next_offset;
        if active.size > 0 {
            active.created_ms = Some(now_ms());
        }
        // Whatever survived a process crash sits in the page cache; make it durable before it
        // counts as below the high watermark.
        active.file.sync_data()?;
        let first_base = segments[0].base_offset;
        let mut log_start_offset = checkpoint.unwrap_or(first_base).max(first_base);
        if log_start_offset > log_end_offset {
            tracing::warn!(
                dir = %dir.display(),
                checkpoint = log_start_offset,
                log_end_offset,
                "log start offset checkpoint is past the recovered log end"
            );
            log_start_offset = log_end_offset;
        }
        // Segments wholly below the log start are what a crash between persisting a new log
        // start and removing the files leaves (retention, DeleteRecords): finish the removal.
        let below = (1..segments.len())
            .take_while(|&i| segments[i].base_offset <= log_start_offset)
            .count();
        for seg in segments.drain(..below) {
            seg.remove_files()?;
        }
        if dropped_empty > 0 || below > 0 {
            tracing::info!(
                dir = %dir.display(),
                empty = dropped_empty,
                below_log_start = below,
                "removed leftover segments"
            );
        }

        let producers = recover_producers(&dir, &segments, log_end_offset)?;
        let mut epochs = leader_epoch::read_checkpoint(&dir).unwrap_or_default();
        if epochs.truncate_from_end(log_end_offset) {
            leader_epoch::write_checkpoint(&dir, &epochs)?;
        }

        // A replicated partition's log (it has a high watermark checkpoint) starts from the
        // committed offset it last knew, in replicated mode; a single replica's durable data
        // is all committed.
        let high_watermark = hw_checkpoint.map_or(log_end_offset, |hw| {
            hw.clamp(log_start_offset, log_end_offset)
        });
        let flush = config.flush;
        let state = State {
            config,
            segments,
            log_start_offset,
            log_end_offset,
            high_watermark,
            durable_end: log_end_offset,
            unsynced: Vec::new(),
            // Removals at recovery reach the disk with the first fsync round.
            dir_dirty: dropped_empty > 0 || below > 0,
            truncations: 0,
            flush_in_flight: false,
            flush_failed: None,
            closed: false,
            compaction: CompactionMark::default(),
            producers,
            epochs,
        };
        Ok(FileLog {
            shared: Arc::new(Shared {
                dir,
                flush,
                state: RwLock::new(state),
                hw_tx: watch::Sender::new(high_watermark),
                leo_tx: watch::Sender::new(log_end_offset),
                flushed_tx: watch::Sender::new(0),
                fsyncs: AtomicU64::new(1),
                direct_bytes: AtomicU64::new(0),
                memory_reads: AtomicU64::new(0),
                auto_hw: AtomicBool::new(hw_checkpoint.is_none()),
                hw_checkpointed: AtomicI64::new(hw_checkpoint.unwrap_or(-1)),
                log_start_lock: Mutex::new(()),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Number of fsync calls made on segment files since open (the open itself makes one).
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Bytes written with direct I/O since open (none where the filesystem refuses `O_DIRECT`).
    pub fn direct_write_bytes(&self) -> u64 {
        self.shared.direct_bytes.load(Ordering::Relaxed)
    }

    /// Reads answered from the newest appends kept in memory since open.
    pub fn memory_read_count(&self) -> u64 {
        self.shared.memory_reads.load(Ordering::Relaxed)
    }

    /// Write the high watermark to the `replication-offset` checkpoint if the partition is
    /// replicated (the replication layer drives its high watermark) and it moved since the last
    /// write. The log manager calls this every few seconds; a lower checkpoint than the truth
    /// only hides records until the leader's next answer. Blocking.
    pub fn checkpoint_high_watermark(&self) -> Result<()> {
        let shared = &self.shared;
        if shared.auto_hw() {
            return Ok(());
        }
        let hw = {
            let st = shared.state.read();
            st.check_open()?;
            st.high_watermark
        };
        if shared.hw_checkpointed.swap(hw, Ordering::Relaxed) != hw {
            if let Err(e) = checkpoint::write(&shared.dir, checkpoint::HIGH_WATERMARK, hw) {
                // Written next time, whether or not the high watermark moves meanwhile.
                shared.hw_checkpointed.store(-1, Ordering::Relaxed);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// fsync everything appended so far (the `Interval` flusher calls this). Blocking.
    pub fn flush(&self) -> Result<()> {
        self.shared.fsync_round()
    }

    /// Seal the active segment and start a new one, if the active one holds anything.
    pub fn roll(&self) -> Result<()> {
        let mut st = self.shared.state.write();
        st.check_open()?;
        self.shared.roll(&mut st)
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        let st = self.shared.state.read();
        st.segments.iter().map(|s| s.base_offset).collect()
    }
}

/// How far a read may go.
#[derive(Debug, Clone, Copy)]
enum ReadLimit {
    LogEnd,
    HighWatermark,
    LastStable,
}

impl Shared {
    fn read(&self, offset: i64, max_bytes: usize, limit: ReadLimit) -> Result<ReadResult> {
        let (mut result, plan) = {
            let st = self.state.read();
            st.check_open()?;
            if offset < st.log_start_offset || offset > st.log_end_offset {
                return Err(st.out_of_range(offset));
            }
            let last_stable_offset = st.last_stable_offset();
            let result = ReadResult {
                records: Bytes::new(),
                high_watermark: st.high_watermark,
                log_start_offset: st.log_start_offset,
                log_end_offset: st.log_end_offset,
                last_stable_offset,
                aborted_transactions: Vec::new(),
            };
            let limit = match limit {
                ReadLimit::LogEnd => st.log_end_offset,
                ReadLimit::HighWatermark => st.high_watermark,
                ReadLimit::LastStable => last_stable_offset,
            };
            let plan = (offset < limit)
                .then(|| st.locate(offset))
                .flatten()
                .map(|s| {
                    let position = s.position_for(offset);
                    let recent = s.recent_from(position, offset);
                    (Arc::clone(&s.file), recent, position, s.size, limit)
                });
            (result, plan)
        };
        if let Some((file, recent, position, end, limit)) = plan {
            if let Some((start, chunks)) = recent {
                result.records = recent::read(&chunks, start, end, offset, limit, max_bytes);
                self.memory_reads.fetch_add(1, Ordering::Relaxed);
                return Ok(result);
            }
            match Shared::read_batches(&file, position, end, offset, limit, max_bytes) {
                Ok(records) => result.records = records,
                // A concurrent truncation shrank the file under us: nothing to return.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(result)
    }

    fn publish_hw(&self, high_watermark: i64) {
        self.hw_tx.send_if_modified(|v| {
            let changed = *v != high_watermark;
            *v = high_watermark;
            changed
        });
    }

    fn auto_hw(&self) -> bool {
        self.auto_hw.load(Ordering::Relaxed)
    }

    /// One fsync round: sync every file holding data below the current log end, then record the
    /// new durable end (and, under group commit, the high watermark).
    fn fsync_round(&self) -> Result<()> {
        let (files, target, truncations, dir_dirty) = {
            let mut st = self.state.write();
            st.check_open()?;
            if let Some(e) = &st.flush_failed {
                return Err(io::Error::other(format!("earlier fsync failed: {e}")).into());
            }
            let mut files = std::mem::take(&mut st.unsynced);
            files.push(Arc::clone(&st.active()?.file));
            let dir_dirty = std::mem::take(&mut st.dir_dirty);
            (files, st.log_end_offset, st.truncations, dir_dirty)
        };
        let synced = sync_lane::run(&self.dir, files.len(), || {
            files
                .iter()
                .try_for_each(|f| {
                    f.sync_data()?;
                    self.fsyncs.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })
                .and_then(|()| {
                    if dir_dirty {
                        checkpoint::sync_dir(&self.dir)
                    } else {
                        Ok(())
                    }
                })
        });
        let mut st = self.state.write();
        match synced {
            Ok(()) => {
                if st.truncations == truncations {
                    st.durable_end = st.durable_end.max(target.min(st.log_end_offset));
                    if self.flush == FlushPolicy::Group
                        && self.auto_hw()
                        && st.durable_end > st.high_watermark
                    {
                        st.high_watermark = st.durable_end;
                        self.publish_hw(st.high_watermark);
                    }
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "fsync failed, log no longer acknowledges durability");
                st.flush_failed = Some(e.to_string());
                Err(e.into())
            }
        }
    }

    /// The group-commit round started by a `wait_durable` caller, run on the blocking pool.
    fn group_commit(self: Arc<Self>) {
        if let Err(e) = self.fsync_round() {
            tracing::debug!(error = %e, "group commit round failed");
        }
        self.state.write().flush_in_flight = false;
        self.flushed_tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Seal the active segment (final time index entry, index files written) and open a new one
    /// at the log end. The sealed file is fsynced in the background; under group commit it is
    /// also handed to the next round so no acknowledgement races that background sync.
    fn roll(&self, st: &mut State) -> Result<()> {
        let new_base = st.log_end_offset;
        let active = st.active_mut()?;
        if active.size == 0 {
            return Ok(());
        }
        active.seal_indexes();
        active.forget_recent();
        if let Err(e) = active.persist_indexes() {
            // The log file is intact; missing indexes are rebuilt on the next open.
            tracing::warn!(segment = active.base_offset, error = %e, "cannot write segment indexes");
        }
        let (old_file, old_base) = (Arc::clone(&active.file), active.base_offset);
        let interval = st.config.index_interval_bytes;
        let fresh = Segment::create(&self.dir, new_base, interval)?;
        // The state as of the new segment's base, so recovery replays only the active segment.
        let snapshot = match st.producers.write_snapshot(&self.dir, new_base) {
            Ok(path) => Some(path),
            Err(e) => {
                tracing::warn!(offset = new_base, error = %e, "cannot write producer state snapshot");
                None
            }
        };
        if self.flush != FlushPolicy::Os {
            st.unsynced.push(Arc::clone(&old_file));
        }
        st.dir_dirty = true;
        st.segments.push(fresh);
        let dir = self.dir.clone();
        run_blocking(move || {
            if let Err(e) = Segment::sync_all(&old_file, &dir, old_base) {
                tracing::warn!(segment = old_base, error = %e, "cannot fsync sealed segment");
            }
            if let Some(path) = snapshot {
                match File::open(&path).and_then(|f| f.sync_all()) {
                    // Rolls in quick succession prune older snapshots before this runs; a newer
                    // snapshot (or a replay from the log) supersedes the missing one.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        tracing::debug!(path = %path.display(), "producer state snapshot already superseded");
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot fsync producer state snapshot");
                    }
                    Ok(()) => {}
                }
            }
        });
        Ok(())
    }

    fn maybe_roll(&self, st: &mut State, len: usize, offsets: i64, now: i64) -> Result<()> {
        let active = st.active()?;
        if active.size == 0 {
            return Ok(());
        }
        let new_size = active.size + len as u64;
        // Index entries hold 32-bit positions and relative offsets.
        let too_big = new_size > st.config.segment_bytes || new_size > u64::from(u32::MAX);
        let too_old = active
            .created_ms
            .is_some_and(|c| now.saturating_sub(c) >= st.config.segment_ms);
        let offsets_overflow =
            st.log_end_offset + offsets - active.base_offset > i64::from(u32::MAX);
        if too_big || too_old || offsets_overflow {
            self.roll(st)?;
        }
        Ok(())
    }

    /// The log start retention (time and size) asks for: the base of the first segment to keep,
    /// or `None` when nothing is due. Never removes the active segment nor data at or above the
    /// high watermark. Nothing changes here; [`Shared::advance_log_start`] applies it durably.
    fn retention_start(st: &State, now: i64) -> Option<i64> {
        let cfg = &st.config;
        let mut total: i64 = st.segments.iter().map(|s| s.size as i64).sum();
        let mut n = 0;
        while n + 1 < st.segments.len() {
            let seg = &st.segments[n];
            if st.segments[n + 1].base_offset > st.high_watermark {
                break;
            }
            let expired = cfg.retention_ms >= 0
                && seg
                    .max_timestamp
                    .is_none_or(|(t, _)| t < now.saturating_sub(cfg.retention_ms));
            // Kafka's rule: delete a segment only if the log stays at or above retention.bytes.
            let oversize =
                cfg.retention_bytes >= 0 && total - seg.size as i64 >= cfg.retention_bytes;
            if !(expired || oversize) {
                break;
            }
            total -= seg.size as i64;
            n += 1;
        }
        let start = st.segments[n].base_offset;
        (n > 0 && start > st.log_start_offset).then_some(start)
    }

    /// Move the log start to `offset` and remove the segments wholly below it. The caller holds
    /// `log_start_lock` and has checked `log_start_offset < offset <= high_watermark`.
    ///
    /// The checkpoint is persisted before the new start is visible or any file goes: a restart
    /// then neither moves the log start back nor resurrects removed records, whatever point a
    /// crash lands at (recovery removes segments left below the checkpointed start).
    fn advance_log_start(&self, offset: i64) -> Result<i64> {
        checkpoint::write(&self.dir, checkpoint::LOG_START, offset)?;
        let (start, removed) = {
            let mut st = self.state.write();
            st.check_open()?;
            // Only a truncation racing this call (replication) can have lowered the high
            // watermark since the caller checked; the start must not pass it.
            st.log_start_offset = st.log_start_offset.max(offset.min(st.high_watermark));
            let start = st.log_start_offset;
            let n = (1..st.segments.len())
                .take_while(|&i| st.segments[i].base_offset <= start)
                .count();
            let removed: Vec<Segment> = st.segments.drain(..n).collect();
            if !removed.is_empty() {
                st.dir_dirty = true;
            }
            (start, removed)
        };
        self.remove_segments(removed)?;
        Ok(start)
    }

    fn remove_segments(&self, removed: Vec<Segment>) -> Result<()> {
        for seg in &removed {
            seg.remove_files()?;
        }
        Ok(())
    }

    /// Bytes for a read starting at `offset`, from one segment (as Kafka does).
    fn read_batches(
        file: &File,
        position: u64,
        end: u64,
        offset: i64,
        limit: i64,
        max_bytes: usize,
    ) -> io::Result<Bytes> {
        let mut cursor = BatchCursor::new(file, position, end, HEADER_WINDOW);
        let mut range: Option<(u64, u64)> = None;
        loop {
            match cursor.next(false)? {
                Step::End => break,
                Step::Invalid(pos, reason) => {
                    tracing::debug!(position = pos, reason = %reason, "read stopped at invalid batch");
                    break;
                }
                Step::Batch(pos, header) => {
                    if header.last_offset() < offset {
                        continue;
                    }
                    if header.last_offset() >= limit {
                        break;
                    }
                    let batch_end = pos + header.total_len() as u64;
                    match range {
                        None => range = Some((pos, batch_end)),
                        Some((start, _)) if (batch_end - start) as usize > max_bytes => break,
                        Some((start, _)) => range = Some((start, batch_end)),
                    }
                }
            }
        }
        let Some((start, stop)) = range else {
            return Ok(Bytes::new());
        };
        let mut buf = vec![0u8; (stop - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        Ok(buf.into())
    }
}

/// Base offsets of the segment files in `dir`, ascending. Leftovers of interrupted work (a
/// `.cleaned` file from compaction that was never swapped in, a `.deleted` file whose removal
/// was under way, index files without a log) are removed.
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let mut logs = Vec::new();
    let mut others = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".cleaned") || name.ends_with(".deleted") {
            fs::remove_file(&path)?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        match ext {
            "log" => logs.push(base),
            "index" | "timeindex" => others.push((base, path)),
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in others {
        if logs.binary_search(&base).is_err() {
            fs::remove_file(path)?;
        }
    }
    Ok(logs)
}

/// The producer state as of `end`: the newest readable snapshot at or below it (newer ones are
/// removed), then the headers of every batch from there up to `end`. Without a snapshot the
/// whole log is replayed once, and a snapshot is left at `end` so the next start is short.
fn recover_producers(dir: &Path, segments: &[Segment], end: i64) -> Result<ProducerStates> {
    let loaded = ProducerStates::load_snapshot(dir, end)?;
    let had_snapshot = loaded.is_some();
    let (from, mut producers) = loaded.unwrap_or((i64::MIN, ProducerStates::default()));
    let mut replayed = 0usize;
    for seg in segments.iter().filter(|s| s.next_offset > from) {
        let position = if seg.base_offset < from {
            seg.position_for(from)
        } else {
            0
        };
        let mut cursor = BatchCursor::new(&seg.file, position, seg.size, HEADER_WINDOW);
        while let Step::Batch(pos, header) = cursor.next(false)? {
            if header.base_offset >= end {
                break;
            }
            if header.base_offset >= from {
                // Markers are rare; only they need more than the header.
                let control = if header.is_control() {
                    let bytes = Segment::read_batch(&seg.file, pos, header.total_len())?;
                    batch::control_kind(&bytes)
                } else {
                    None
                };
                producers.replay(&header, control);
                replayed += 1;
            }
        }
    }
    if replayed > 0 && (!had_snapshot || !producers.is_empty()) {
        if let Err(e) = producers.write_snapshot(dir, end) {
            tracing::warn!(offset = end, error = %e, "cannot write producer state snapshot");
        }
    }
    Ok(producers)
}

/// Replicated batches keep the leader's offsets: ascending, none below the log end (gaps are
/// what compaction or retention on the leader leave).
pub(crate) fn check_replicated_offsets(spans: &[batch::BatchSpan], log_end: i64) -> Result<()> {
    let mut next = log_end;
    for span in spans {
        if span.header.base_offset < next {
            return Err(LogError::InvalidBatch(format!(
                "replicated batch at offset {} overlaps the log, which ends at {next}",
                span.header.base_offset
            )));
        }
        next = span.header.next_offset();
    }
    Ok(())
}

fn remove_segment_files(dir: &Path, base: i64) -> io::Result<()> {
    for suffix in ["log", "index", "timeindex"] {
        match fs::remove_file(dir.join(segment::file_name(base, suffix))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[async_trait]
impl PartitionLog for FileLog {
    fn append(&self, records: Bytes, leader_epoch: i32) -> Result<AppendInfo> {
        let shared = &self.shared;
        let (max_bytes, compacts) = {
            let st = shared.state.read();
            st.check_open()?;
            (
                st.config.max_message_bytes,
                st.config.cleanup_policy.compacts(),
            )
        };
        // Validation (CRC over every byte) runs before the lock is taken.
        let spans = batch::validate_records(&records, max_bytes)?;
        if compacts {
            for span in &spans {
                decode::ensure_keys(&records.slice(span.position..span.end()))?;
            }
        }
        let offsets: i64 = spans
            .iter()
            .map(|s| i64::from(s.header.last_offset_delta) + 1)
            .sum();
        let now = now_ms();

        let mut st = shared.state.write();
        st.check_open()?;
        shared.maybe_roll(&mut st, records.len(), offsets, now)?;
        let position = st.active()?.size;
        // The one copy of the batches (the request's buffer is shared with the decoded request),
        // made where it can be written directly without another.
        let mut buf = direct::copy_aligned_for(&records, position);
        let base_offset = st.log_end_offset;
        let mut headers = Vec::with_capacity(spans.len());
        let mut next = base_offset;
        for span in &spans {
            batch::stamp(&mut buf[span.position..], next, leader_epoch);
            let mut header = span.header;
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            next = header.next_offset();
            headers.push((span.position as u64, header));
        }
        // Sequence checks in the same critical section that assigns offsets: two retries of one
        // batch racing on different connections cannot both be stored.
        let controls = spans.iter().map(|span| {
            span.header
                .is_control()
                .then(|| batch::control_kind(&buf[span.position..span.end()]))
                .flatten()
        });
        let staged = st
            .producers
            .check(headers.iter().map(|(_, h)| h).zip(controls))?;
        let active = st.active_mut()?;
        match active.write_appended(buf.freeze(), position) {
            Ok(direct) => {
                shared.direct_bytes.fetch_add(direct, Ordering::Relaxed);
            }
            Err(e) => {
                // Leave no partial batch behind for readers or recovery to trip over.
                let _ = active.file.set_len(position);
                return Err(e.into());
            }
        }
        let mut max_timestamp = i64::MIN;
        for (at, header) in &headers {
            active.index_batch(position + at, header);
            max_timestamp = max_timestamp.max(header.max_timestamp);
        }
        active.created_ms.get_or_insert(now);
        st.producers.commit(staged);
        st.log_end_offset = next;
        if st.epochs.assign(leader_epoch, base_offset) {
            leader_epoch::write_checkpoint(&shared.dir, &st.epochs)?;
        }
        shared.leo_tx.send_replace(next);
        if shared.flush != FlushPolicy::Group && shared.auto_hw() {
            st.high_watermark = next;
            shared.publish_hw(next);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            max_timestamp,
            log_start_offset: st.log_start_offset,
        })
    }

    async fn wait_durable(&self, offset: i64) -> Result<()> {
        let shared = &self.shared;
        if shared.flush != FlushPolicy::Group {
            return shared.state.read().check_open();
        }
        loop {
            // Subscribe before checking, so a round finishing in between is not missed.
            let mut rounds = shared.flushed_tx.subscribe();
            let lead = {
                let mut st = shared.state.write();
                st.check_open()?;
                if let Some(e) = &st.flush_failed {
                    return Err(io::Error::other(format!("earlier fsync failed: {e}")).into());
                }
                if offset < st.durable_end {
                    return Ok(());
                }
                if offset >= st.log_end_offset {
                    return Err(st.out_of_range(offset));
                }
                !std::mem::replace(&mut st.flush_in_flight, true)
            };
            if lead {
                // Started outside the lock: the round takes it, and may run inline.
                let leader = Arc::clone(shared);
                run_blocking(move || leader.group_commit());
            }
            rounds.changed().await.map_err(|_| LogError::Closed)?;
        }
    }

    fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        limit_to_high_watermark: bool,
    ) -> Result<ReadResult> {
        let limit = if limit_to_high_watermark {
            ReadLimit::HighWatermark
        } else {
            ReadLimit::LogEnd
        };
        self.shared.read(offset, max_bytes, limit)
    }

    fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let mut result = self.shared.read(offset, max_bytes, ReadLimit::LastStable)?;
        if let Some(end) = batch::end_offset(&result.records) {
            result.aborted_transactions = self
                .shared
                .state
                .read()
                .producers
                .aborted_between(offset, end);
        }
        Ok(result)
    }

    fn append_replicated(&self, records: Bytes) -> Result<AppendInfo> {
        let shared = &self.shared;
        // The leader validated these already; the CRC check here guards the wire and costs
        // the same scan that finds batch boundaries. No size limit: the leader's config rules.
        let spans = batch::validate_records(&records, usize::MAX)?;
        let now = now_ms();
        let mut st = shared.state.write();
        st.check_open()?;
        let first = spans.first().map(|s| s.header.base_offset).unwrap_or(0);
        check_replicated_offsets(&spans, st.log_end_offset)?;
        let offsets = spans.last().map_or(0, |s| s.header.next_offset()) - st.log_end_offset;
        shared.maybe_roll(&mut st, records.len(), offsets, now)?;
        let active = st.active_mut()?;
        let position = active.size;
        match active.write_replicated(&records, position) {
            Ok(direct) => {
                shared.direct_bytes.fetch_add(direct, Ordering::Relaxed);
            }
            Err(e) => {
                let _ = active.file.set_len(position);
                return Err(e.into());
            }
        }
        let mut max_timestamp = i64::MIN;
        for span in &spans {
            active.index_batch(position + span.position as u64, &span.header);
            max_timestamp = max_timestamp.max(span.header.max_timestamp);
        }
        active.created_ms.get_or_insert(now);
        let mut epochs_changed = false;
        for span in &spans {
            let control = span
                .header
                .is_control()
                .then(|| batch::control_kind(&records[span.position..span.end()]))
                .flatten();
            st.producers.replay(&span.header, control);
            epochs_changed |= st
                .epochs
                .assign(span.header.partition_leader_epoch, span.header.base_offset);
        }
        let next = spans
            .last()
            .map_or(st.log_end_offset, |s| s.header.next_offset());
        st.log_end_offset = next;
        if epochs_changed {
            leader_epoch::write_checkpoint(&shared.dir, &st.epochs)?;
        }
        shared.leo_tx.send_replace(next);
        if shared.flush != FlushPolicy::Group && shared.auto_hw() {
            st.high_watermark = next;
            shared.publish_hw(next);
        }
        Ok(AppendInfo {
            base_offset: first,
            last_offset: next - 1,
            max_timestamp,
            log_start_offset: st.log_start_offset,
        })
    }

    fn leader_epochs(&self) -> LeaderEpochHistory {
        self.shared.state.read().epochs.clone()
    }

    fn assign_leader_epoch(&self, epoch: i32) -> Result<()> {
        let mut st = self.shared.state.write();
        st.check_open()?;
        let end = st.log_end_offset;
        if st.epochs.assign(epoch, end) {
            leader_epoch::write_checkpoint(&self.shared.dir, &st.epochs)?;
        }
        Ok(())
    }

    fn set_auto_high_watermark(&self, enabled: bool) {
        let shared = &self.shared;
        if enabled == shared.auto_hw() {
            // Cheap when nothing changes: the broker restates this on every metadata change.
            return;
        }
        if !enabled {
            // Replicated from now on: checkpoint at once, so a crash before the periodic
            // checkpoint does not reopen the log with its whole tail counted as committed.
            shared.auto_hw.store(false, Ordering::Relaxed);
            if let Err(e) = self.checkpoint_high_watermark() {
                tracing::warn!(dir = %shared.dir.display(), error = %e, "cannot checkpoint the high watermark");
            }
            return;
        }
        if let Err(e) = checkpoint::remove(&shared.dir, checkpoint::HIGH_WATERMARK) {
            tracing::warn!(dir = %shared.dir.display(), error = %e, "cannot remove the high watermark checkpoint");
        }
        shared.hw_checkpointed.store(-1, Ordering::Relaxed);
        let mut st = shared.state.write();
        if !shared.auto_hw.swap(true, Ordering::Relaxed) {
            // The replicas around it are gone (it is the only one now): what is durable here
            // is committed, as after any durable write of a single replica.
            let end = if shared.flush == FlushPolicy::Group {
                st.durable_end
            } else {
                st.log_end_offset
            };
            if end > st.high_watermark {
                st.high_watermark = end;
                shared.publish_hw(end);
            }
        }
    }

    fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.shared.leo_tx.subscribe()
    }

    fn log_start_offset(&self) -> i64 {
        self.shared.state.read().log_start_offset
    }

    fn log_end_offset(&self) -> i64 {
        self.shared.state.read().log_end_offset
    }

    fn high_watermark(&self) -> i64 {
        self.shared.state.read().high_watermark
    }

    fn last_stable_offset(&self) -> i64 {
        self.shared.state.read().last_stable_offset()
    }

    fn set_high_watermark(&self, offset: i64) -> Result<()> {
        let mut st = self.shared.state.write();
        st.check_open()?;
        if offset < st.log_start_offset || offset > st.log_end_offset {
            return Err(st.out_of_range(offset));
        }
        st.high_watermark = offset;
        self.shared.publish_hw(offset);
        Ok(())
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.shared.hw_tx.subscribe()
    }

    /// Removes every batch whose last offset is >= `offset` (so a batch straddling `offset` goes
    /// whole, as Kafka truncates at batch boundaries). The new log end is the smaller of `offset`
    /// and the first removed batch's base offset. A sealed segment that ends up last becomes the
    /// active segment again.
    fn truncate_to(&self, offset: i64) -> Result<()> {
        let shared = &self.shared;
        let mut st = shared.state.write();
        st.check_open()?;
        if offset >= st.log_end_offset {
            return Ok(());
        }
        if offset < st.log_start_offset {
            return Err(st.out_of_range(offset));
        }
        let keep = st.segments.partition_point(|s| s.base_offset < offset);
        let removed: Vec<Segment> = st.segments.drain(keep..).collect();
        let mut new_end = removed
            .first()
            .map_or(offset, |s| s.base_offset.min(offset));
        for seg in &removed {
            seg.remove_files()?;
        }
        if !removed.is_empty() {
            st.dir_dirty = true;
        }
        if st.segments.is_empty() {
            let interval = st.config.index_interval_bytes;
            st.segments
                .push(Segment::create(&shared.dir, offset, interval)?);
        } else {
            let reactivated = !removed.is_empty();
            let active = st.active_mut()?;
            if let Some(first_removed) = active.truncate_to(offset)? {
                new_end = new_end.min(first_removed);
            }
            if reactivated {
                active.remove_index_files()?;
                active.created_ms = Some(now_ms());
            }
        }
        st.log_end_offset = new_end;
        // Producer state must forget the removed batches: reload it as of the new end.
        st.producers = recover_producers(&shared.dir, &st.segments, new_end)?;
        st.high_watermark = st.high_watermark.min(new_end);
        st.durable_end = st.durable_end.min(new_end);
        st.truncations += 1;
        if st.epochs.truncate_from_end(new_end) {
            leader_epoch::write_checkpoint(&shared.dir, &st.epochs)?;
        }
        shared.leo_tx.send_replace(new_end);
        shared.publish_hw(st.high_watermark);
        Ok(())
    }

    fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let shared = &self.shared;
        // Held until the new start is visible: the start checked here cannot move meanwhile.
        let _advancing = shared.log_start_lock.lock();
        {
            let st = shared.state.read();
            st.check_open()?;
            if offset > st.high_watermark || offset < 0 {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: st.log_start_offset,
                    end: st.high_watermark,
                });
            }
            if offset <= st.log_start_offset {
                return Ok(st.log_start_offset);
            }
        }
        shared.advance_log_start(offset)
    }

    fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        // Segments already searched without a match (their matching batches were all below
        // the log start or compacted away).
        let mut after_base = i64::MIN;
        loop {
            let plan = {
                let st = self.shared.state.read();
                st.check_open()?;
                let start = st.log_start_offset;
                st.segments
                    .iter()
                    .filter(|s| s.base_offset > after_base && s.next_offset > start)
                    .find(|s| s.max_timestamp.is_some_and(|(t, _)| t >= timestamp))
                    .map(|s| {
                        let mut position = s.position_for_timestamp(timestamp);
                        if s.base_offset <= start {
                            position = position.max(s.position_for(start));
                        }
                        (s.base_offset, Arc::clone(&s.file), position, s.size, start)
                    })
            };
            let Some((base, file, position, end, start)) = plan else {
                return Ok(None);
            };
            let mut cursor = BatchCursor::new(&file, position, end, HEADER_WINDOW);
            while let Step::Batch(pos, header) = cursor.next(false)? {
                if header.last_offset() < start || header.max_timestamp < timestamp {
                    continue;
                }
                let bytes = Segment::read_batch(&file, pos, header.total_len())?;
                if let Some(found) = decode::first_record_at_or_after(&bytes, timestamp, start)? {
                    return Ok(Some(found));
                }
            }
            after_base = base;
        }
    }

    fn max_timestamp(&self) -> Result<Option<TimestampOffset>> {
        let plan = {
            let st = self.shared.state.read();
            st.check_open()?;
            let mut best: Option<(&Segment, i64, i64)> = None;
            for s in &st.segments {
                if let Some((t, o)) = s.max_timestamp {
                    if best.is_none_or(|(_, bt, _)| t > bt) {
                        best = Some((s, t, o));
                    }
                }
            }
            best.map(|(s, t, o)| (Arc::clone(&s.file), s.position_for(o), s.size, t, o))
        };
        let Some((file, position, end, timestamp, batch_offset)) = plan else {
            return Ok(None);
        };
        let fallback = TimestampOffset {
            timestamp,
            offset: batch_offset,
        };
        let mut cursor = BatchCursor::new(&file, position, end, HEADER_WINDOW);
        while let Step::Batch(pos, header) = cursor.next(false)? {
            if header.last_offset() < batch_offset {
                continue;
            }
            let bytes = Segment::read_batch(&file, pos, header.total_len())?;
            return Ok(Some(
                decode::record_with_max_timestamp(&bytes)?.unwrap_or(fallback),
            ));
        }
        Ok(Some(fallback))
    }

    fn size_bytes(&self) -> u64 {
        let st = self.shared.state.read();
        st.segments.iter().map(|s| s.size).sum()
    }

    /// The flush policy is fixed at open; `config.flush` is ignored here.
    fn update_config(&self, mut config: LogConfig) {
        let mut st = self.shared.state.write();
        config.flush = self.shared.flush;
        st.config = config;
    }

    fn run_maintenance(&self, now_ms: i64) -> Result<()> {
        let shared = &self.shared;
        // Taken before the state lock (the order DeleteRecords uses) and held until retention's
        // new start is applied.
        let advancing = shared.log_start_lock.lock();
        let (retention_start, compacts) = {
            let mut st = shared.state.write();
            if st.closed {
                return Ok(());
            }
            let aged = st
                .active()?
                .created_ms
                .is_some_and(|c| now_ms.saturating_sub(c) >= st.config.segment_ms);
            if aged {
                shared.roll(&mut st)?;
            }
            st.producers
                .remove_expired(now_ms, PRODUCER_ID_EXPIRATION_MS);
            let log_start_offset = st.log_start_offset;
            st.producers.prune_aborted(log_start_offset);
            let retention_start = if st.config.cleanup_policy.deletes() {
                Shared::retention_start(&st, now_ms)
            } else {
                None
            };
            (retention_start, st.config.cleanup_policy.compacts())
        };
        if let Some(start) = retention_start {
            shared.advance_log_start(start)?;
        }
        drop(advancing);
        if compacts {
            shared.compact(now_ms)?;
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        let shared = &self.shared;
        if shared.state.read().closed {
            return Ok(());
        }
        let flushed = shared.fsync_round();
        if let Err(e) = self.checkpoint_high_watermark() {
            tracing::warn!(dir = %shared.dir.display(), error = %e, "cannot checkpoint the high watermark");
        }
        {
            let mut st = shared.state.write();
            // A clean restart then replays nothing.
            let end = st.log_end_offset;
            if let Err(e) = st
                .producers
                .write_snapshot(&shared.dir, end)
                .and_then(|path| File::open(path)?.sync_all())
            {
                tracing::warn!(offset = end, error = %e, "cannot write producer state snapshot");
            }
            st.closed = true;
            st.segments.clear();
            st.unsynced.clear();
        }
        // Wake group-commit waiters so they observe the close.
        shared.flushed_tx.send_modify(|g| *g = g.wrapping_add(1));
        flushed
    }
}
