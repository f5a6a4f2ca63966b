//! The HNSW graph a partition's vectors live in (Malkov & Yashunin, "Efficient and robust
//! approximate nearest neighbor search using Hierarchical Navigable Small World graphs").
//!
//! Laid out flat, as hnswlib does, because search speed is decided by memory traffic: every
//! vector sits in one `Vec<f32>` at `id * dim`, every layer-0 neighbour list in one array of
//! `2m + 1` words (count, then ids), and a visit is marked by stamping a reusable array with
//! the query's generation instead of hashing ids. Only the few nodes above layer 0 (about one
//! in `m`) own a separate allocation for their upper lists.
//!
//! Ids are insertion positions. Lists are atomics so that a bulk build can link nodes from
//! several threads at once (each node's lists are rewritten under that node's one-byte lock;
//! a reader racing a rewrite sees valid ids, at worst a neighbour short). Outside a bulk build
//! the owner serialises inserts behind `&mut self` and searches run concurrently on `&self`.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use chronik_meta::VectorMetric;
use parking_lot::Mutex;

use crate::metric::{dot, prepare, squared_distance};

mod snapshot;

/// Graph shape (vector.hnsw.*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

/// Highest layer a node may get: level l is drawn with probability m^-l, so the cap only
/// bounds improbable draws.
const MAX_LEVEL: u8 = 16;

/// Seed of the level draws: a fixed seed makes a rebuild from the same vectors the same graph.
const LEVEL_SEED: u64 = 0x5eed_c4a0_11c0_ffee;

/// A point at a distance from a query; smaller is nearer.
#[derive(Debug, Clone, Copy)]
struct Near {
    distance: f32,
    id: u32,
}

impl PartialEq for Near {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Near {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

/// The farther of two as the greater: a max-heap of these pops the nearest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Nearest(Near);

impl PartialOrd for Nearest {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Nearest {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.0.cmp(&self.0)
    }
}

/// Marks of the nodes one search has visited: a node is visited when its stamp equals the
/// current generation, so starting a search is one increment, not a clear.
#[derive(Debug, Default)]
struct Visited {
    stamps: Vec<u32>,
    generation: u32,
}

impl Visited {
    fn reset(&mut self, len: usize) {
        if self.stamps.len() < len {
            self.stamps.resize(len, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
    }

    /// Mark `id`; `false` when it already was.
    #[inline]
    fn insert(&mut self, id: u32) -> bool {
        let stamp = &mut self.stamps[id as usize];
        if *stamp == self.generation {
            false
        } else {
            *stamp = self.generation;
            true
        }
    }
}

/// An HNSW graph over one metric. Vectors must already be in the metric's form
/// (`metric::prepare`: unit length for cosine).
#[derive(Debug)]
pub struct Hnsw {
    metric: VectorMetric,
    params: HnswParams,
    /// Vector length, fixed by the first insert.
    dim: usize,
    vectors: Vec<f32>,
    levels: Vec<u8>,
    /// Layer 0: per node `[count, id; 2m]`.
    base: Vec<AtomicU32>,
    /// Layers 1..=level of each node: per layer `[count, id; m]`, empty for layer-0 nodes.
    upper: Vec<Box<[AtomicU32]>>,
    /// Serialises rewrites of one node's lists during a bulk build.
    locks: Vec<Mutex<()>>,
    /// (entry node, its level); `None` while empty.
    entry: Mutex<Option<(u32, u8)>>,
    visited: Mutex<Vec<Visited>>,
}

impl Hnsw {
    pub fn new(metric: VectorMetric, params: HnswParams) -> Hnsw {
        Hnsw {
            metric,
            params: HnswParams {
                m: params.m.max(2),
                ef_construction: params.ef_construction.max(1),
                ef_search: params.ef_search.max(1),
            },
            dim: 0,
            vectors: Vec::new(),
            levels: Vec::new(),
            base: Vec::new(),
            upper: Vec::new(),
            locks: Vec::new(),
            entry: Mutex::new(None),
            visited: Mutex::new(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Bytes held by vectors and links (what grows with the points).
    pub fn memory_bytes(&self) -> usize {
        let upper: usize = self.upper.iter().map(|u| u.len() * 4).sum();
        self.vectors.len() * 4
            + self.base.len() * 4
            + upper
            + self.len() * (std::mem::size_of::<Box<[AtomicU32]>>() + 2)
    }

    fn base_stride(&self) -> usize {
        2 * self.params.m + 1
    }

    fn upper_stride(&self) -> usize {
        self.params.m + 1
    }

    /// Most neighbours a node keeps on `level`.
    fn cap(&self, level: u8) -> usize {
        if level == 0 {
            2 * self.params.m
        } else {
            self.params.m
        }
    }

    #[inline]
    fn vector(&self, id: u32) -> &[f32] {
        let start = id as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// Smaller is nearer: 1 - cosine, minus the dot product, squared Euclidean distance.
    #[inline]
    fn distance(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.metric {
            VectorMetric::Cosine => 1.0 - dot(a, b),
            VectorMetric::Dot => -dot(a, b),
            VectorMetric::L2 => squared_distance(a, b),
        }
    }

    /// The user-facing score of a distance, larger is better: cosine similarity, the dot
    /// product, `1 / (1 + euclidean distance)`.
    pub fn score(&self, distance: f32) -> f32 {
        match self.metric {
            VectorMetric::Cosine => 1.0 - distance,
            VectorMetric::Dot => -distance,
            VectorMetric::L2 => 1.0 / (1.0 + distance.max(0.0).sqrt()),
        }
    }

    #[inline]
    fn list(&self, id: u32, level: u8) -> &[AtomicU32] {
        if level == 0 {
            let stride = self.base_stride();
            let start = id as usize * stride;
            &self.base[start..start + stride]
        } else {
            let stride = self.upper_stride();
            let start = (level as usize - 1) * stride;
            &self.upper[id as usize][start..start + stride]
        }
    }

    /// Calls `f` with each neighbour of `id` on `level`.
    #[inline]
    fn for_each_neighbour(&self, id: u32, level: u8, mut f: impl FnMut(u32)) {
        let list = self.list(id, level);
        let count = (list[0].load(Ordering::Acquire) as usize).min(list.len() - 1);
        for slot in &list[1..=count] {
            f(slot.load(Ordering::Relaxed));
        }
    }

    fn set_list(&self, id: u32, level: u8, ids: impl ExactSizeIterator<Item = u32>) {
        let list = self.list(id, level);
        let count = ids.len().min(list.len() - 1);
        for (slot, n) in list[1..].iter().zip(ids) {
            slot.store(n, Ordering::Relaxed);
        }
        list[0].store(count as u32, Ordering::Release);
    }

    /// Level of the `id`th point: geometric with ratio 1/m, drawn from a hash of the id.
    fn draw_level(&self, id: usize) -> u8 {
        let mut z = LEVEL_SEED ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Uniform in (0, 1]: never ln(0).
        let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let ml = 1.0 / (self.params.m as f64).ln();
        (-u.ln() * ml).floor().min(f64::from(MAX_LEVEL)) as u8
    }

    /// Make room for `vectors` (all `dim` long) as the next ids, unlinked, passing each copy
    /// through `fix`.
    fn append<V: AsRef<[f32]>>(&mut self, vectors: &[V], fix: impl Fn(&mut [f32])) {
        if self.dim == 0 {
            self.dim = vectors.first().map_or(0, |v| v.as_ref().len());
        }
        let first = self.len();
        self.vectors.reserve(vectors.len() * self.dim);
        for v in vectors {
            let v = v.as_ref();
            assert_eq!(v.len(), self.dim, "every vector of a graph has its length");
            let start = self.vectors.len();
            self.vectors.extend_from_slice(v);
            fix(&mut self.vectors[start..]);
        }
        let (base_stride, upper_stride) = (self.base_stride(), self.upper_stride());
        for i in 0..vectors.len() {
            let level = self.draw_level(first + i);
            self.levels.push(level);
            self.base
                .extend((0..base_stride).map(|_| AtomicU32::new(0)));
            self.upper.push(
                (0..level as usize * upper_stride)
                    .map(|_| AtomicU32::new(0))
                    .collect(),
            );
            self.locks.push(Mutex::new(()));
        }
    }

    /// Add one point; its id is the previous length.
    pub fn insert(&mut self, v: &[f32]) {
        let id = self.len() as u32;
        self.append(&[v], |_| ());
        let mut visited = self.visited.lock().pop().unwrap_or_default();
        self.link(id, &mut visited);
        self.visited.lock().push(visited);
    }

    /// Add many points (ids continue from the current length), linking them on every core.
    pub fn insert_many<V: AsRef<[f32]>>(&mut self, vectors: &[V]) {
        self.insert_many_with(vectors, |_| ());
    }

    /// [`Hnsw::insert_many`], passing each stored copy through `fix` first (so raw vectors
    /// are prepared without a second copy of them all).
    fn insert_many_with<V: AsRef<[f32]>>(&mut self, vectors: &[V], fix: impl Fn(&mut [f32])) {
        let first = self.len();
        self.append(vectors, fix);
        let end = self.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(vectors.len().div_ceil(1000))
            .max(1);
        let next = AtomicUsize::new(first);
        let graph = &*self;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut visited = Visited::default();
                    loop {
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        if id >= end {
                            break;
                        }
                        graph.link(id as u32, &mut visited);
                    }
                });
            }
        });
    }

    /// Connect the appended point `id` into every layer up to its level.
    fn link(&self, id: u32, visited: &mut Visited) {
        let level = self.levels[id as usize];
        let (mut entry, top) = {
            let mut e = self.entry.lock();
            match *e {
                Some(current) => current,
                None => {
                    *e = Some((id, level));
                    return;
                }
            }
        };
        let q = self.vector(id);
        let mut entry_distance = self.distance(q, self.vector(entry));
        for l in (level.saturating_add(1)..=top).rev() {
            (entry, entry_distance) = self.greedy(q, entry, entry_distance, l);
        }
        let mut entries = vec![Near {
            distance: entry_distance,
            id: entry,
        }];
        for l in (0..=level.min(top)).rev() {
            let found = self.search_layer(
                q,
                &entries,
                self.params.ef_construction,
                l,
                visited,
                &|_| true,
            );
            // Layer 0 links a new node to up to 2m neighbours, as faiss does (hnswlib takes
            // m): the denser bottom layer reaches recall@10 0.97 at ef 64 where m links
            // alone need about twice the beam.
            let neighbours = self.select(found.clone(), self.cap(l));
            {
                let _own = self.locks[id as usize].lock();
                self.set_list(id, l, neighbours.iter().map(|n| n.id));
            }
            for n in &neighbours {
                self.add_link(n.id, id, n.distance, l);
            }
            entries = found;
        }
        if level > top {
            let mut e = self.entry.lock();
            if e.is_none_or(|(_, t)| level > t) {
                *e = Some((id, level));
            }
        }
    }

    /// Add `new` (at `distance`) to `node`'s list on `level`, pruning by the heuristic when full.
    fn add_link(&self, node: u32, new: u32, distance: f32, level: u8) {
        let _guard = self.locks[node as usize].lock();
        let cap = self.cap(level);
        let list = self.list(node, level);
        let count = list[0].load(Ordering::Acquire) as usize;
        if count < cap {
            list[count + 1].store(new, Ordering::Relaxed);
            list[0].store(count as u32 + 1, Ordering::Release);
            return;
        }
        let v = self.vector(node);
        let mut candidates: Vec<Near> = list[1..=count]
            .iter()
            .map(|slot| {
                let id = slot.load(Ordering::Relaxed);
                Near {
                    distance: self.distance(v, self.vector(id)),
                    id,
                }
            })
            .collect();
        candidates.push(Near { distance, id: new });
        let kept = self.select(candidates, cap);
        self.set_list(node, level, kept.iter().map(|n| n.id));
    }

    /// The paper's neighbour heuristic: nearest first, keep a candidate only if it is nearer
    /// to the base point than to every neighbour already kept, so links spread over
    /// directions instead of piling into one cluster.
    fn select(&self, mut candidates: Vec<Near>, m: usize) -> Vec<Near> {
        candidates.sort_unstable();
        if candidates.len() <= m {
            return candidates;
        }
        let mut kept: Vec<Near> = Vec::with_capacity(m);
        for c in candidates {
            if kept.len() == m {
                break;
            }
            let cv = self.vector(c.id);
            if kept
                .iter()
                .all(|k| self.distance(cv, self.vector(k.id)) >= c.distance)
            {
                kept.push(c);
            }
        }
        kept
    }

    /// Walk `level` from `entry` to the nearest node reachable by always improving.
    fn greedy(&self, q: &[f32], mut entry: u32, mut distance: f32, level: u8) -> (u32, f32) {
        loop {
            let mut moved = false;
            self.for_each_neighbour(entry, level, |n| {
                let d = self.distance(q, self.vector(n));
                if d < distance {
                    (entry, distance, moved) = (n, d, true);
                }
            });
            if !moved {
                return (entry, distance);
            }
        }
    }

    /// The beam search of one layer: up to `ef` nearest nodes passing `keep`, nearest first.
    /// Nodes that fail `keep` are still walked through; the search stops once the beam holds
    /// `ef` kept nodes and no candidate is nearer than the farthest of them, so a selective
    /// filter explores more of the graph instead of returning fewer hits.
    fn search_layer(
        &self,
        q: &[f32],
        entries: &[Near],
        ef: usize,
        level: u8,
        visited: &mut Visited,
        keep: &dyn Fn(u32) -> bool,
    ) -> Vec<Near> {
        visited.reset(self.len());
        let mut candidates: BinaryHeap<Nearest> = BinaryHeap::with_capacity(ef * 2);
        let mut beam: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
        for e in entries {
            if visited.insert(e.id) {
                candidates.push(Nearest(*e));
                if keep(e.id) {
                    beam.push(*e);
                }
            }
        }
        while beam.len() > ef {
            beam.pop();
        }
        while let Some(Nearest(c)) = candidates.pop() {
            let bound = beam.peek().map_or(f32::INFINITY, |f| f.distance);
            if c.distance > bound && beam.len() >= ef {
                break;
            }
            self.for_each_neighbour(c.id, level, |n| {
                if !visited.insert(n) {
                    return;
                }
                let d = self.distance(q, self.vector(n));
                let bound = beam.peek().map_or(f32::INFINITY, |f| f.distance);
                if beam.len() < ef || d < bound {
                    candidates.push(Nearest(Near { distance: d, id: n }));
                    if keep(n) {
                        beam.push(Near { distance: d, id: n });
                        if beam.len() > ef {
                            beam.pop();
                        }
                    }
                }
            });
        }
        beam.into_sorted_vec()
    }

    /// The `k` nearest points passing `keep` as (id, distance), nearest first; the beam holds
    /// `max(ef, k)` candidates.
    pub fn search(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let current = *self.entry.lock();
        let Some((mut entry, top)) = current else {
            return Vec::new();
        };
        if k == 0 || q.len() != self.dim {
            return Vec::new();
        }
        let mut distance = self.distance(q, self.vector(entry));
        for l in (1..=top).rev() {
            (entry, distance) = self.greedy(q, entry, distance, l);
        }
        let mut visited = self.visited.lock().pop().unwrap_or_default();
        let found = self.search_layer(
            q,
            &[Near {
                distance,
                id: entry,
            }],
            ef.max(k),
            0,
            &mut visited,
            keep,
        );
        self.visited.lock().push(visited);
        found
            .into_iter()
            .take(k)
            .map(|n| (n.id, n.distance))
            .collect()
    }
}

/// A standalone graph over one metric taking raw vectors (prepared on the way in) and
/// answering scores: what a partition index runs on, for benchmarks and tools.
#[derive(Debug)]
pub struct HnswGraph {
    graph: Hnsw,
    metric: VectorMetric,
}

impl HnswGraph {
    pub fn new(metric: VectorMetric, params: HnswParams) -> HnswGraph {
        HnswGraph {
            graph: Hnsw::new(metric, params),
            metric,
        }
    }

    /// Insert `vectors` (ids continue from the current size) using every core. Vectors the
    /// metric cannot use (zero for cosine, not finite) are refused with their position.
    pub fn insert_many(&mut self, vectors: &[Vec<f32>]) -> Result<(), usize> {
        let mut scratch = Vec::new();
        for (i, v) in vectors.iter().enumerate() {
            scratch.clear();
            scratch.extend_from_slice(v);
            if !prepare(self.metric, &mut scratch) {
                return Err(i);
            }
        }
        let metric = self.metric;
        self.graph.insert_many_with(vectors, |v| {
            prepare(metric, v);
        });
        Ok(())
    }

    /// The `k` nearest ids with their scores (larger is better), best first.
    pub fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
        let mut q = q.to_vec();
        if !prepare(self.metric, &mut q) {
            return Vec::new();
        }
        self.graph
            .search(&q, k, ef, &|_| true)
            .into_iter()
            .map(|(id, d)| (id as usize, self.graph.score(d)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.graph.len()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.is_empty()
    }

    /// Bytes held by vectors and links.
    pub fn memory_bytes(&self) -> usize {
        self.graph.memory_bytes()
    }
}

#[cfg(test)]
mod tests;
