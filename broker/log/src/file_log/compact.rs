//! Compaction of a [`FileLog`](super::FileLog)'s sealed segments: the file side of
//! [`crate::compaction`].
//!
//! The heavy work (reading, decoding, re-encoding, writing `<base>.log.cleaned` and fsyncing it)
//! runs without the log lock. The swap takes the lock only to check the segment is still the one
//! that was cleaned, then renames the cleaned file over it atomically; readers holding the old
//! file keep reading the old bytes.
//!
//! Crash safety: a `.cleaned` file that was never renamed is removed at open, and a rename
//! replaces the whole file, so a crash leaves either the old or the cleaned segment. A segment
//! compacted to nothing is removed outright rather than swapped for an empty file, except the
//! first, which stays (emptied) so that its base offset keeps the log start where it was.

use std::fs::{self, File};
use std::io::Write;
use std::sync::Arc;

use crate::compaction::{compact_batch, Compacted, OffsetMap, TombstonePolicy, TxnFilter};
use crate::{LogError, Result};

use super::checkpoint;
use super::scan::{BatchCursor, Step, HEADER_WINDOW};
use super::segment::{file_name, Segment};
use super::Shared;

/// A sealed segment as seen when the pass started.
struct Source {
    base_offset: i64,
    file: Arc<File>,
    size: u64,
}

impl Source {
    /// Every batch of the segment, read whole.
    fn batches(&self) -> Result<Vec<bytes::Bytes>> {
        let mut out = Vec::new();
        let mut cursor = BatchCursor::new(&self.file, 0, self.size, HEADER_WINDOW);
        while let Step::Batch(pos, header) = cursor.next(false)? {
            out.push(Segment::read_batch(&self.file, pos, header.total_len())?);
        }
        Ok(out)
    }
}

impl Shared {
    /// Compact the sealed segments if new ones were sealed or a retained tombstone expired since
    /// the last pass.
    pub(super) fn compact(&self, now_ms: i64) -> Result<()> {
        let (sources, sealed_end, delete_retention_ms, interval, txns) = {
            let st = self.state.read();
            st.check_open()?;
            // Only segments wholly below the last stable offset (Kafka's first uncleanable
            // offset): a record above the high watermark may still be lost (not yet durable) or
            // truncated (replication), and one of an open transaction may still be aborted, so
            // neither may supersede an older value that compaction would remove for good.
            let end = st.last_stable_offset();
            let n = (1..st.segments.len())
                .take_while(|&i| st.segments[i].base_offset <= end)
                .count();
            let sealed_end = st.segments.get(n).ok_or(LogError::Closed)?.base_offset;
            let mark = &st.compaction;
            let expired = mark.next_tombstone_expiry.is_some_and(|t| now_ms >= t);
            if n == 0 || (sealed_end <= mark.cleaned_through && !expired) {
                return Ok(());
            }
            let sources: Vec<Source> = st.segments[..n]
                .iter()
                .map(|s| Source {
                    base_offset: s.base_offset,
                    file: Arc::clone(&s.file),
                    size: s.size,
                })
                .collect();
            let txns = TxnFilter::new(end, &st.producers.aborted_between(i64::MIN, end));
            (
                sources,
                sealed_end,
                st.config.delete_retention_ms,
                st.config.index_interval_bytes,
                txns,
            )
        };

        let mut map = OffsetMap::default();
        for source in &sources {
            for batch in source.batches()? {
                map.add_batch(&batch, &txns)?;
            }
        }
        let mut tombstones = TombstonePolicy {
            now_ms,
            delete_retention_ms,
            next_expiry_ms: None,
        };
        for source in &sources {
            self.clean_segment(source, &map, &mut tombstones, &txns, interval)?;
        }

        let mut st = self.state.write();
        st.compaction.cleaned_through = sealed_end;
        st.compaction.next_tombstone_expiry = tombstones.next_expiry_ms;
        Ok(())
    }

    /// Rewrite one segment if compaction changes it, and swap it in.
    fn clean_segment(
        &self,
        source: &Source,
        map: &OffsetMap,
        tombstones: &mut TombstonePolicy,
        txns: &TxnFilter,
        interval: u32,
    ) -> Result<()> {
        let mut cleaned = Vec::with_capacity(source.size as usize);
        let mut changed = false;
        for batch in source.batches()? {
            match compact_batch(&batch, map, tombstones, txns)? {
                Compacted::Unchanged => cleaned.extend_from_slice(&batch),
                Compacted::Removed => changed = true,
                Compacted::Rewritten(bytes) => {
                    cleaned.extend_from_slice(&bytes);
                    changed = true;
                }
            }
        }
        if !changed {
            return Ok(());
        }
        if cleaned.is_empty() {
            let mut st = self.state.write();
            let Some(i) = sealed_position(&st.segments, source) else {
                return Ok(());
            };
            if i > 0 {
                // Nothing left: the files go directly, with no empty file swapped in first that a
                // crash could leave behind. `.log` first: a crash after it leaves only index
                // files, which recovery removes; before it, the original segment, which the next
                // pass cleans again. The next segment's base bounds the offsets either way.
                let seg = st.segments.remove(i);
                st.dir_dirty = true;
                drop(st);
                seg.remove_files()?;
                return Ok(());
            }
            // The first segment stays, emptied, as Kafka's cleaner keeps segments' base offsets:
            // with no log start checkpoint its base is the log start a restart recovers, and
            // compaction must never move the log start. The swap below empties it atomically.
        }

        let log_path = self.dir.join(file_name(source.base_offset, "log"));
        let cleaned_path = self
            .dir
            .join(format!("{}.cleaned", file_name(source.base_offset, "log")));
        let mut fresh = {
            let mut file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&cleaned_path)?;
            file.write_all(&cleaned)?;
            file.sync_all()?;
            // Indexed before the swap, so the lock is held only for the rename.
            Segment::from_written(&self.dir, source.base_offset, file, interval)?
        };

        let mut st = self.state.write();
        let Some(i) = sealed_position(&st.segments, source) else {
            // Deleted, truncated or reactivated meanwhile: the cleaned copy is stale.
            drop(st);
            fs::remove_file(&cleaned_path)?;
            return Ok(());
        };
        // Stale indexes must not survive next to the new file, even across a crash.
        st.segments[i].remove_index_files()?;
        fs::rename(&cleaned_path, &log_path)?;
        checkpoint::sync_dir(&self.dir)?;
        fresh.created_ms = st.segments[i].created_ms;
        fresh.persist_indexes()?;
        st.segments[i] = fresh;
        Ok(())
    }
}

/// Where the segment a pass read as `source` still is, if it is still that file and sealed
/// (not deleted, truncated or reactivated meanwhile).
fn sealed_position(segments: &[Segment], source: &Source) -> Option<usize> {
    segments
        .iter()
        .position(|s| s.base_offset == source.base_offset && Arc::ptr_eq(&s.file, &source.file))
        .filter(|&i| i + 1 < segments.len())
}
