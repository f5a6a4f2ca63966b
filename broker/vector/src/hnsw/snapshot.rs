//! Graph snapshots: the links of every point (the vectors are stored by the caller), written
//! beside a partition's records so a restart restores the graph instead of rebuilding it.

use std::sync::atomic::{AtomicU32, Ordering};

use chronik_meta::VectorMetric;
use parking_lot::Mutex;

use super::{Hnsw, HnswParams, MAX_LEVEL};
use crate::le_reader::LeReader;

/// First bytes of a graph snapshot (format version 1).
const SNAPSHOT_MAGIC: &[u8; 8] = b"CKHNSW01";

fn metric_code(metric: VectorMetric) -> u8 {
    match metric {
        VectorMetric::Cosine => 0,
        VectorMetric::Dot => 1,
        VectorMetric::L2 => 2,
    }
}

/// `len` link words from `c`: a count no larger than `len - 1`, then ids below `n`.
fn read_links(c: &mut LeReader<'_>, len: usize, n: usize) -> Option<Vec<AtomicU32>> {
    let raw = c.take(len.checked_mul(4)?)?;
    let words: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let count = words[0] as usize;
    if count >= len || words[1..=count].iter().any(|id| *id as usize >= n) {
        return None;
    }
    Some(words.into_iter().map(AtomicU32::new).collect())
}

impl Hnsw {
    /// The links of every point (not the vectors, which the caller stores), for
    /// [`Hnsw::restore`].
    pub fn snapshot(&self) -> Vec<u8> {
        let upper: usize = self.upper.iter().map(|u| u.len()).sum();
        let mut out = Vec::with_capacity(40 + self.len() + (self.base.len() + upper) * 4);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(self.params.m as u32).to_le_bytes());
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.push(metric_code(self.metric));
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        let entry = *self.entry.lock();
        out.push(u8::from(entry.is_some()));
        let (id, level) = entry.unwrap_or((0, 0));
        out.extend_from_slice(&id.to_le_bytes());
        out.push(level);
        out.extend_from_slice(&self.levels);
        for word in self
            .base
            .iter()
            .chain(self.upper.iter().flat_map(|u| u.iter()))
        {
            out.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        out
    }

    /// A graph over the first points of `vectors` linked as `snapshot` recorded them; returns
    /// it with the number of points it covers (insert the rest). `None` when the snapshot is
    /// not one of this shape (another m, dimension or metric, more points than `vectors`) or
    /// does not decode.
    pub fn restore<V: AsRef<[f32]>>(
        metric: VectorMetric,
        params: HnswParams,
        vectors: &[V],
        snapshot: &[u8],
    ) -> Option<(Hnsw, usize)> {
        let mut graph = Hnsw::new(metric, params);
        let mut c = LeReader::new(snapshot);
        if c.take(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC || c.u32()? as usize != graph.params.m {
            return None;
        }
        let dim = c.u32()? as usize;
        let same_metric = c.u8()? == metric_code(metric);
        let n = usize::try_from(c.u64()?).ok()?;
        // Ids are u32; the dimension must be what the stored vectors have.
        if !same_metric
            || n > vectors.len()
            || n > u32::MAX as usize
            || vectors[..n].iter().any(|v| v.as_ref().len() != dim)
        {
            return None;
        }
        let has_entry = c.u8()? == 1;
        let (entry, top) = (c.u32()?, c.u8()?);
        let levels = c.take(n)?.to_vec();
        if levels.iter().any(|l| *l > MAX_LEVEL) || has_entry != (n > 0) {
            return None;
        }
        if has_entry && (entry as usize >= n || levels[entry as usize] != top) {
            return None;
        }
        graph.dim = if n > 0 { dim } else { 0 };
        let base_stride = graph.base_stride();
        let upper_stride = graph.upper_stride();
        let mut base = Vec::with_capacity(n * base_stride);
        for _ in 0..n {
            base.extend(read_links(&mut c, base_stride, n)?);
        }
        let mut upper = Vec::with_capacity(n);
        for level in &levels {
            let mut lists = Vec::with_capacity(*level as usize * upper_stride);
            for _ in 0..*level {
                lists.extend(read_links(&mut c, upper_stride, n)?);
            }
            upper.push(lists.into_boxed_slice());
        }
        if !c.is_done() {
            return None;
        }
        graph.vectors.reserve(vectors.len() * dim);
        for v in &vectors[..n] {
            graph.vectors.extend_from_slice(v.as_ref());
        }
        graph.levels = levels;
        graph.base = base;
        graph.upper = upper;
        graph.locks = (0..n).map(|_| Mutex::new(())).collect();
        *graph.entry.get_mut() = has_entry.then_some((entry, top));
        Some((graph, n))
    }
}
