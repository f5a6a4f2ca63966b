//! The sparse offset and time indexes of one segment, held in memory and persisted in Kafka's
//! on-disk formats: `.index` entries are (relative offset u32, position u32) and `.timeindex`
//! entries are (timestamp i64, relative offset u32), all big-endian.
//!
//! An entry is added every `index_interval_bytes` of appended batches. Offset entries point at the
//! start of a batch; a time entry holds the largest timestamp seen so far in the segment and the
//! base offset of the batch that carried it (Kafka's semantics), so every batch before that
//! offset has a max timestamp no larger than the entry's.

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

/// Relative offset -> byte position of a batch start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        self.entries.push((relative_offset, position));
    }

    /// Position of the last indexed batch starting at or before `relative_offset` (0 if none).
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Decode a persisted index; `None` when it is torn or not strictly increasing, or points past
    /// `file_size`.
    pub fn decode(bytes: &[u8], file_size: u64) -> Option<OffsetIndex> {
        if !bytes.chunks_exact(OFFSET_ENTRY).remainder().is_empty() {
            return None;
        }
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(bytes.len() / OFFSET_ENTRY);
        for e in bytes.chunks_exact(OFFSET_ENTRY) {
            let o = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let p = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            if u64::from(p) >= file_size {
                return None;
            }
            if let Some(&(lo, lp)) = entries.last() {
                if o <= lo || p <= lp {
                    return None;
                }
            }
            entries.push((o, p));
        }
        Some(OffsetIndex { entries })
    }
}

/// Largest timestamp so far -> relative offset of the batch that carried it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Append an entry if it raises the indexed maximum (entries are strictly increasing).
    pub fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(t, _)| timestamp > t) {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// Relative offset of a batch such that every earlier batch has max timestamp < `timestamp`
    /// (0 when no entry proves that).
    pub fn lookup_before(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    /// Decode a persisted time index; `None` when torn or not strictly increasing in time.
    pub fn decode(bytes: &[u8]) -> Option<TimeIndex> {
        if !bytes.chunks_exact(TIME_ENTRY).remainder().is_empty() {
            return None;
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / TIME_ENTRY);
        for e in bytes.chunks_exact(TIME_ENTRY) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&e[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            if entries.last().is_some_and(|&(lt, _)| t <= lt) {
                return None;
            }
            entries.push((t, o));
        }
        Some(TimeIndex { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_the_floor_entry() {
        let mut idx = OffsetIndex::default();
        idx.push(10, 4096);
        idx.push(20, 8192);
        assert_eq!(idx.lookup(5), 0);
        assert_eq!(idx.lookup(10), 4096);
        assert_eq!(idx.lookup(19), 4096);
        assert_eq!(idx.lookup(1000), 8192);
        let round = OffsetIndex::decode(&idx.encode(), 10_000).unwrap();
        assert_eq!(round, idx);
        assert!(OffsetIndex::decode(&idx.encode(), 8000).is_none());
        assert!(OffsetIndex::decode(&idx.encode()[..12], 10_000).is_none());
    }

    #[test]
    fn time_lookup_returns_an_entry_strictly_before_the_target() {
        let mut idx = TimeIndex::default();
        idx.maybe_push(100, 0);
        idx.maybe_push(100, 5);
        idx.maybe_push(200, 9);
        assert_eq!(idx.last(), Some((200, 9)));
        assert_eq!(idx.lookup_before(100), 0);
        assert_eq!(idx.lookup_before(150), 0);
        assert_eq!(idx.lookup_before(201), 9);
        assert_eq!(TimeIndex::decode(&idx.encode()).unwrap(), idx);
    }
}
