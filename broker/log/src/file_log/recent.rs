//! The newest appends of a leader's active segment, kept in memory exactly as written.
//!
//! Followers fetch what a leader appended within milliseconds and tailing consumers soon after,
//! so those reads are answered from these chunks (a slice of one, usually: no copy, no `pread`)
//! and the appends they cover can skip the page cache with direct I/O (see `direct`), which on
//! VMs that return free memory to the host costs far less CPU than filling fresh page-cache
//! pages. Reads of anything older go to the file, which holds the same bytes.
//!
//! The chunks always cover one contiguous tail `[start, size)` of the segment; an append that
//! is not kept (too large, or over the process-wide budget) empties them, as do truncation and
//! sealing. Memory is bounded per partition and for the whole process.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

use crate::batch::BatchHeader;

/// Most bytes kept per partition: a few fetches' worth at the replica fetch size (1 MiB).
const PARTITION_MAX: u64 = 8 << 20;

/// Most bytes kept by every partition of the process together.
const PROCESS_MAX: u64 = 256 << 20;

/// Bytes held by every partition's chunks.
static PROCESS_BYTES: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Default)]
pub struct RecentBatches {
    /// (position in the segment file, the bytes written there), ascending and adjacent.
    chunks: VecDeque<(u64, Bytes)>,
    bytes: u64,
}

impl RecentBatches {
    /// Keep `data`, about to be written at `position`, evicting the oldest chunks past the
    /// partition's share (all of them when `position` does not follow the last). Returns false,
    /// keeping nothing, when it cannot be kept.
    pub fn push(&mut self, position: u64, data: Bytes) -> bool {
        let len = data.len() as u64;
        let adjacent = self
            .chunks
            .back()
            .is_none_or(|(p, b)| p + b.len() as u64 == position);
        if !adjacent {
            self.clear();
        }
        if len > PARTITION_MAX {
            self.clear();
            return false;
        }
        while self.bytes + len > PARTITION_MAX {
            self.evict_oldest();
        }
        let before = PROCESS_BYTES.fetch_add(len, Ordering::Relaxed);
        if before + len > PROCESS_MAX {
            PROCESS_BYTES.fetch_sub(len, Ordering::Relaxed);
            self.clear();
            return false;
        }
        self.chunks.push_back((position, data));
        self.bytes += len;
        true
    }

    fn evict_oldest(&mut self) {
        if let Some((_, b)) = self.chunks.pop_front() {
            self.bytes -= b.len() as u64;
            PROCESS_BYTES.fetch_sub(b.len() as u64, Ordering::Relaxed);
        }
    }

    pub fn clear(&mut self) {
        PROCESS_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
        self.chunks.clear();
        self.bytes = 0;
    }

    /// Where to start reading for `offset` and the chunks from there on, when a read that a
    /// sparse index entry would start at `position` can be answered from memory: the chunks
    /// reach back to `position`, or start with a batch at or below `offset` (everything before
    /// them then ends below it). `size` is the segment's: chunks that do not reach it (a write
    /// that bypassed them) answer nothing.
    pub fn covering(
        &self,
        position: u64,
        offset: i64,
        size: u64,
    ) -> Option<(u64, Vec<(u64, Bytes)>)> {
        let (last, last_bytes) = self.chunks.back()?;
        if last + last_bytes.len() as u64 != size {
            return None;
        }
        let (first, bytes) = self.chunks.front()?;
        let start = if position >= *first {
            position
        } else if BatchHeader::parse(bytes).is_ok_and(|h| h.base_offset <= offset) {
            *first
        } else {
            return None;
        };
        let chunks = self
            .chunks
            .iter()
            .filter(|(p, b)| p + b.len() as u64 > start)
            .cloned()
            .collect();
        Some((start, chunks))
    }
}

impl Drop for RecentBatches {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The read `read_batches` makes from the file, made from chunks that cover `position`
/// onwards: whole batches from the one holding `offset`, below `limit`, at most `max_bytes`
/// (but always the first), ending at `end` (the segment size when the read was planned).
pub fn read(
    chunks: &[(u64, Bytes)],
    position: u64,
    end: u64,
    offset: i64,
    limit: i64,
    max_bytes: usize,
) -> Bytes {
    let mut range: Option<(u64, u64)> = None;
    'chunks: for (at, bytes) in chunks {
        let mut local = position.saturating_sub(*at) as usize;
        while local < bytes.len() {
            let pos = at + local as u64;
            if pos >= end {
                break 'chunks;
            }
            // Chunks hold whole batches that passed validation on append.
            let Ok(header) = BatchHeader::parse(&bytes[local..]) else {
                break 'chunks;
            };
            let total = header.total_len();
            local += total;
            if header.last_offset() < offset {
                continue;
            }
            if header.last_offset() >= limit {
                break 'chunks;
            }
            let batch_end = pos + total as u64;
            match range {
                None => range = Some((pos, batch_end)),
                Some((start, _)) if (batch_end - start) as usize > max_bytes => break 'chunks,
                Some((start, _)) => range = Some((start, batch_end)),
            }
        }
    }
    let Some((start, stop)) = range else {
        return Bytes::new();
    };
    let mut pieces = chunks.iter().filter_map(|(at, bytes)| {
        let chunk_end = at + bytes.len() as u64;
        (chunk_end > start && *at < stop).then(|| {
            let from = start.max(*at) - at;
            let to = stop.min(chunk_end) - at;
            bytes.slice(from as usize..to as usize)
        })
    });
    let Some(first) = pieces.next() else {
        return Bytes::new();
    };
    if first.len() as u64 == stop - start {
        return first;
    }
    let mut out = BytesMut::with_capacity((stop - start) as usize);
    out.extend_from_slice(&first);
    for piece in pieces {
        out.extend_from_slice(&piece);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    #[test]
    fn chunks_stay_one_adjacent_tail_within_the_partition_share() {
        let mut recent = RecentBatches::default();
        assert!(recent.push(100, chunk(10)));
        assert!(recent.push(110, chunk(20)));
        // Not batches: only a position inside the chunks is covered.
        assert!(recent.covering(99, i64::MAX, 130).is_none());
        // Chunks short of the segment's end (a write that bypassed them) answer nothing.
        assert!(recent.covering(115, 0, 131).is_none());
        let (start, from) = recent.covering(115, 0, 130).expect("covered");
        assert_eq!(start, 115);
        assert_eq!(from.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![110]);
        // A gap empties them: what is kept must be exactly the file's tail.
        assert!(recent.push(500, chunk(5)));
        assert!(recent.covering(110, 0, 505).is_none());
        assert_eq!(recent.bytes, 5);
        // Past the partition's share the oldest go first.
        let big = (PARTITION_MAX / 2) as usize;
        assert!(recent.push(505, chunk(big)));
        assert!(recent.push(505 + big as u64, chunk(big)));
        assert_eq!(
            recent
                .covering(505, 0, 505 + 2 * big as u64)
                .map(|(_, c)| c.len()),
            Some(2)
        );
        assert!(recent.covering(500, 0, 505 + 2 * big as u64).is_none());
        assert_eq!(recent.bytes, 2 * big as u64);
        assert!(!recent.push(505 + 2 * big as u64, chunk(PARTITION_MAX as usize + 1)));
        assert_eq!(recent.bytes, 0);
    }
}
