//! One segment: a `.log` file of whole batches named by its base offset, with its in-memory
//! sparse indexes and the summary (next offset, largest timestamp) the log needs without
//! reading it. Owns opening, recovery scans, index persistence and truncation of that file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::BatchHeader;

use bytes::Bytes;

use super::direct::{self, DirectFile};
use super::index::{OffsetIndex, TimeIndex};
use super::recent::RecentBatches;
use super::scan::{BatchCursor, Step, HEADER_WINDOW, VERIFY_WINDOW};

/// Kafka's file name for a segment: the base offset as 20 digits.
pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// Bytes at the end of a segment that failed validation and were cut off.
#[derive(Debug)]
pub struct Torn {
    pub position: u64,
    pub reason: String,
    pub bytes_removed: u64,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    dir: PathBuf,
    /// Shared with readers, which keep reading a segment even after it was deleted or replaced.
    pub file: Arc<File>,
    /// Bytes of whole batches in the file; readers never look past it.
    pub size: u64,
    /// Offset after the last batch (compaction may leave it below the next segment's base).
    pub next_offset: i64,
    /// Largest batch max timestamp and the base offset of the first batch carrying it.
    pub max_timestamp: Option<(i64, i64)>,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    index_interval: u64,
    /// Wall clock of the first append, for `segment.ms` rolls.
    pub created_ms: Option<i64>,
    /// Direct I/O handle for large appends, opened on first use.
    direct: DirectFile,
    /// The newest appends, while this is a leader's active segment.
    recent: RecentBatches,
}

impl Segment {
    fn new(dir: &Path, base_offset: i64, file: File, index_interval: u32) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: None,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            index_interval: u64::from(index_interval),
            created_ms: None,
            direct: DirectFile::default(),
            recent: RecentBatches::default(),
        }
    }

    /// Write a leader's append at `position`. Kept in memory for the reads that follow, it may
    /// skip the page cache for its whole blocks; otherwise it goes through it. Returns the bytes
    /// written directly.
    pub fn write_appended(&mut self, data: Bytes, position: u64) -> io::Result<u64> {
        let written = if self.recent.push(position, data.clone()) {
            let path = self.path("log");
            direct::write_at(&self.file, &mut self.direct, &path, &data, position)
        } else {
            self.file.write_all_at(&data, position).map(|()| 0)
        };
        if written.is_err() {
            self.recent.clear();
        }
        written
    }

    /// Where a read of `offset`, which the index starts at `position`, starts and the in-memory
    /// chunks from there, when they hold it (see [`RecentBatches::covering`]).
    pub fn recent_from(&self, position: u64, offset: i64) -> Option<(u64, Vec<(u64, Bytes)>)> {
        self.recent.covering(position, offset, self.size)
    }

    /// Drop the in-memory chunks (the segment is sealed: reads go to the file).
    pub fn forget_recent(&mut self) {
        self.recent.clear();
    }

    /// Write replicated batches at `position`, their whole blocks with direct I/O when the write
    /// is large (see [`super::direct`]). Returns the bytes written directly.
    pub fn write_replicated(&mut self, data: &[u8], position: u64) -> io::Result<u64> {
        // A former leader's chunks no longer reach the end of the file.
        self.recent.clear();
        let path = self.path("log");
        direct::write_at(&self.file, &mut self.direct, &path, data, position)
    }

    fn open_file(path: &Path, create: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(create)
            .open(path)
    }

    /// A new, empty segment file (replacing any stale file of that name).
    pub fn create(dir: &Path, base_offset: i64, index_interval: u32) -> io::Result<Segment> {
        let file = Self::open_file(&dir.join(file_name(base_offset, "log")), true)?;
        Ok(Segment::new(dir, base_offset, file, index_interval))
    }

    /// A sealed segment over an already open file holding freshly written, trusted batches (a
    /// compaction output that is about to be renamed into place), indexed by a header scan.
    pub fn from_written(
        dir: &Path,
        base_offset: i64,
        file: File,
        index_interval: u32,
    ) -> io::Result<Segment> {
        let mut seg = Segment::new(dir, base_offset, file, index_interval);
        if let Some((position, reason)) = seg.scan_from(0, false)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("written segment invalid at {position}: {reason}"),
            ));
        }
        seg.seal_indexes();
        Ok(seg)
    }

    /// Open the active (last) segment: every batch is validated, indexes are rebuilt, and a torn
    /// or corrupt tail is cut off.
    pub fn recover(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
    ) -> io::Result<(Segment, Option<Torn>)> {
        let file = Self::open_file(&dir.join(file_name(base_offset, "log")), false)?;
        let mut seg = Segment::new(dir, base_offset, file, index_interval);
        let torn = seg.scan_from(0, true)?;
        let torn = seg_truncate_torn(&seg, torn)?;
        Ok((seg, torn))
    }

    /// Open a sealed segment. Its persisted indexes are trusted when they check out against the
    /// file; otherwise they are rebuilt by a validating scan. Either way the batches after the
    /// last index entry are validated, which catches a tail torn before its fsync.
    pub fn open_sealed(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
    ) -> io::Result<(Segment, Option<Torn>)> {
        let file = Self::open_file(&dir.join(file_name(base_offset, "log")), false)?;
        let mut seg = Segment::new(dir, base_offset, file, index_interval);
        let file_size = seg.file.metadata()?.len();
        let start = match seg.load_indexes(file_size)? {
            Some(start) => start,
            None => {
                seg.offset_index = OffsetIndex::default();
                seg.time_index = TimeIndex::default();
                0
            }
        };
        let rebuilt = start == 0;
        let torn = seg.scan_from(start, true)?;
        let torn = seg_truncate_torn(&seg, torn)?;
        if rebuilt || torn.is_some() {
            seg.seal_indexes();
            if let Err(e) = seg.persist_indexes() {
                tracing::warn!(segment = seg.base_offset, error = %e, "cannot persist rebuilt indexes");
            }
        }
        Ok((seg, torn))
    }

    /// Load persisted indexes; returns the position to resume scanning from (the last indexed
    /// batch), or `None` when the indexes are missing or do not match the file.
    fn load_indexes(&mut self, file_size: u64) -> io::Result<Option<u64>> {
        let offsets = fs::read(self.path("index")).ok();
        let times = fs::read(self.path("timeindex")).ok();
        let (Some(offsets), Some(times)) = (offsets, times) else {
            return Ok(None);
        };
        let (Some(offsets), Some(times)) = (
            OffsetIndex::decode(&offsets, file_size),
            TimeIndex::decode(&times),
        ) else {
            return Ok(None);
        };
        // A sealed segment's time index ends with its largest timestamp, so it is empty exactly
        // when the file is. An index left behind by a file that lost its bytes (or that
        // compaction emptied) would otherwise leave a stale largest timestamp on an empty segment.
        if (file_size == 0) != times.last().is_none() {
            return Ok(None);
        }
        let start = match offsets.last() {
            None => 0,
            Some((rel, pos)) => {
                let mut head = [0u8; crate::batch::BATCH_HEADER_LEN];
                if u64::from(pos) + head.len() as u64 > file_size {
                    return Ok(None);
                }
                self.file.read_exact_at(&mut head, u64::from(pos))?;
                match BatchHeader::parse(&head) {
                    Ok(h) if h.base_offset == self.base_offset + i64::from(rel) => {
                        self.next_offset = h.base_offset;
                        u64::from(pos)
                    }
                    _ => return Ok(None),
                }
            }
        };
        self.max_timestamp = times
            .last()
            .map(|(t, rel)| (t, self.base_offset + i64::from(rel)));
        self.offset_index = offsets;
        self.time_index = times;
        self.size = start;
        Ok(Some(start))
    }

    /// Scan batches from `position` to the end of the file, indexing them. Stops at the first
    /// batch that is not whole and valid and reports it.
    fn scan_from(&mut self, position: u64, verify: bool) -> io::Result<Option<(u64, String)>> {
        let end = self.file.metadata()?.len();
        let file = Arc::clone(&self.file);
        let window = if verify { VERIFY_WINDOW } else { HEADER_WINDOW };
        let mut cursor = BatchCursor::new(&file, position, end, window);
        loop {
            match cursor.next(verify)? {
                Step::End => return Ok(None),
                Step::Invalid(pos, reason) => return Ok(Some((pos, reason))),
                Step::Batch(pos, header) => {
                    if header.base_offset < self.next_offset
                        || header.last_offset() - self.base_offset > i64::from(u32::MAX)
                    {
                        return Ok(Some((
                            pos,
                            format!(
                                "batch base offset {} out of order after {}",
                                header.base_offset, self.next_offset
                            ),
                        )));
                    }
                    self.index_batch(pos, &header);
                }
            }
        }
    }

    /// Account for one batch written at `position`: sparse index entries, size, next offset and
    /// largest timestamp. The caller has checked the offset fits the segment.
    pub fn index_batch(&mut self, position: u64, header: &BatchHeader) {
        if self
            .max_timestamp
            .is_none_or(|(t, _)| header.max_timestamp > t)
        {
            self.max_timestamp = Some((header.max_timestamp, header.base_offset));
        }
        if self.bytes_since_index >= self.index_interval && position > 0 {
            self.offset_index
                .push(self.relative(header.base_offset), position as u32);
            if let Some((t, o)) = self.max_timestamp {
                self.time_index.maybe_push(t, self.relative(o));
            }
            self.bytes_since_index = 0;
        }
        let len = header.total_len() as u64;
        self.bytes_since_index += len;
        self.size = position + len;
        self.next_offset = header.next_offset();
    }

    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Position to start scanning from for `offset`: the last indexed batch at or before it.
    pub fn position_for(&self, offset: i64) -> u64 {
        u64::from(self.offset_index.lookup(self.relative(offset)))
    }

    /// Position to start scanning from for the first batch with max timestamp >= `timestamp`.
    pub fn position_for_timestamp(&self, timestamp: i64) -> u64 {
        let rel = self.time_index.lookup_before(timestamp);
        u64::from(self.offset_index.lookup(rel))
    }

    /// Make the time index end with the segment's largest timestamp, as Kafka does when a
    /// segment is sealed, so the index alone answers "newest record" after a restart.
    pub fn seal_indexes(&mut self) {
        if let Some((t, o)) = self.max_timestamp {
            let rel = self.relative(o);
            self.time_index.maybe_push(t, rel);
        }
    }

    pub fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(file_name(self.base_offset, suffix))
    }

    /// Write the `.index` and `.timeindex` files (page cache only; [`Segment::sync_all`] makes
    /// them durable). A torn index is detected and rebuilt on open.
    pub fn persist_indexes(&self) -> io::Result<()> {
        fs::write(self.path("index"), self.offset_index.encode())?;
        fs::write(self.path("timeindex"), self.time_index.encode())
    }

    /// fsync the log file and its index files.
    pub fn sync_all(file: &File, dir: &Path, base_offset: i64) -> io::Result<()> {
        file.sync_data()?;
        for suffix in ["index", "timeindex"] {
            match File::open(dir.join(file_name(base_offset, suffix))) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Remove the persisted index files (the segment became active again, or is being replaced).
    pub fn remove_index_files(&self) -> io::Result<()> {
        for suffix in ["index", "timeindex"] {
            remove_if_exists(&self.path(suffix))?;
        }
        Ok(())
    }

    /// Remove every file of this segment.
    pub fn remove_files(&self) -> io::Result<()> {
        remove_if_exists(&self.path("log"))?;
        self.remove_index_files()
    }

    /// Remove every batch whose last offset is >= `offset`. Returns the base offset of the first
    /// removed batch, if any was removed.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<Option<i64>> {
        let file = Arc::clone(&self.file);
        let mut cursor =
            BatchCursor::new(&file, self.position_for(offset), self.size, HEADER_WINDOW);
        let cut = loop {
            match cursor.next(false)? {
                Step::End | Step::Invalid(..) => return Ok(None),
                Step::Batch(pos, header) if header.last_offset() >= offset => {
                    break (pos, header.base_offset)
                }
                Step::Batch(..) => {}
            }
        };
        self.file.set_len(cut.0)?;
        self.file.sync_all()?;
        self.reset();
        self.scan_from(0, false)?;
        Ok(Some(cut.1))
    }

    fn reset(&mut self) {
        self.recent.clear();
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = None;
        self.offset_index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.bytes_since_index = 0;
    }

    /// The batch starting at `position`, read whole.
    pub fn read_batch(file: &File, position: u64, len: usize) -> io::Result<bytes::Bytes> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, position)?;
        Ok(buf.into())
    }
}

/// Cut the file at a torn position found by a scan.
fn seg_truncate_torn(seg: &Segment, torn: Option<(u64, String)>) -> io::Result<Option<Torn>> {
    let Some((position, reason)) = torn else {
        return Ok(None);
    };
    let len = seg.file.metadata()?.len();
    seg.file.set_len(position)?;
    seg.file.sync_all()?;
    Ok(Some(Torn {
        position,
        reason,
        bytes_removed: len - position,
    }))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
