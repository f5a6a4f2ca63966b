//! One partition's vector index: the HNSW graph, what each point is (offset, timestamp, key,
//! the event), the visibility rules applied at query time, and its [`Store`].
//!
//! Points are inserted into the graph as runs arrive (no rebuilds) but are visible only below
//! the published offset. Nothing is removed from the graph: records gone from the log
//! (retention) and records a compacted topic has superseded or deleted are filtered out while
//! searching, so the beam keeps looking until it has `k` visible hits.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use chronik_meta::VectorMetric;
use parking_lot::{Mutex, RwLock};

use crate::hnsw::{Hnsw, HnswParams};
use crate::metric::prepare;
use crate::store::{encode, Checkpoint, Store, StoredRecord};
use crate::VectorError;

/// How a partition's index is built.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSettings {
    pub metric: VectorMetric,
    pub params: HnswParams,
    pub model: String,
    pub dimensions: usize,
    /// cleanup.policy includes compact: a newer record for a key replaces older ones.
    pub compacted: bool,
}

fn metric_name(m: VectorMetric) -> &'static str {
    match m {
        VectorMetric::Cosine => "cosine",
        VectorMetric::L2 => "l2",
        VectorMetric::Dot => "dot",
    }
}

/// A graph point.
#[derive(Debug, Clone)]
struct Point {
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// Query-time restrictions besides the partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive lower bound, epoch milliseconds.
    pub from: Option<i64>,
    /// Inclusive upper bound.
    pub to: Option<i64>,
}

impl TimeRange {
    fn contains(&self, ts: i64) -> bool {
        self.from.is_none_or(|f| ts >= f) && self.to.is_none_or(|t| ts <= t)
    }
}

/// One search hit of a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionHit {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub score: f32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

#[derive(Debug, Default)]
struct State {
    points: Vec<Point>,
    /// Compacted topics: the latest offset of each key (a tombstone's included).
    latest: HashMap<Bytes, i64>,
    /// Next offset to index (everything below is in the graph or skipped).
    indexed: i64,
    /// Points below this offset are visible.
    published: i64,
    forgotten_before: i64,
    skipped: u64,
    /// Next offset of the last checkpoint: what a crash keeps.
    durable: i64,
    /// Encoded records not yet in the store.
    pending: Vec<u8>,
    /// Points the store's graph snapshot covers.
    snapshot_points: usize,
}

/// A graph snapshot is rewritten once the graph has grown by a quarter since the last one (and
/// by at least this many points), so rewriting costs a bounded share of the inserts and a
/// restart inserts at most that share again.
const SNAPSHOT_MIN_GROWTH: usize = 4096;

fn snapshot_due(points: usize, covered: usize) -> bool {
    points > covered && points - covered >= (covered / 4).max(SNAPSHOT_MIN_GROWTH)
}

/// A partition's index.
#[derive(Debug)]
pub struct PartitionIndex {
    pub partition: i32,
    settings: PartitionSettings,
    /// Taken after `state` when both are needed: inserts write it under the state's write
    /// lock, searches read it under the state's read lock.
    graph: RwLock<Hnsw>,
    state: RwLock<State>,
    store: Mutex<Store>,
}

/// A record to add: its vector is `None` for a compacted topic's tombstone.
#[derive(Debug, Clone)]
pub(crate) struct NewRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub vector: Option<Vec<f32>>,
}

impl PartitionIndex {
    /// Open the partition under `dir` and return it with the offset to resume from.
    pub(crate) fn open(
        dir: &Path,
        partition: i32,
        settings: PartitionSettings,
        log_start: i64,
    ) -> Result<(PartitionIndex, i64), VectorError> {
        let metric = metric_name(settings.metric);
        let (store, checkpoint, records) = Store::open(dir, |c| {
            c.model == settings.model && c.dimensions == settings.dimensions && c.metric == metric
        })?;
        let snapshot = store.graph();
        let mut state = State::default();
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(records.len());
        for r in records {
            let vector = track(&mut state, &settings, &r.key, r.offset, r.vector);
            if let Some(v) = vector {
                vectors.push(v);
                state.points.push(Point {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                });
            }
        }
        let restored = snapshot.and_then(|bytes| {
            let restored = Hnsw::restore(settings.metric, settings.params, &vectors, &bytes);
            if restored.is_none() {
                tracing::info!(dir = %dir.display(), "vector graph snapshot does not fit the stored records; rebuilding the graph");
            }
            restored
        });
        let (mut graph, covered) =
            restored.unwrap_or_else(|| (Hnsw::new(settings.metric, settings.params), 0));
        graph.insert_many(&vectors[covered..]);
        state.snapshot_points = covered;
        drop(vectors);
        let resume = match &checkpoint {
            Some(c) => {
                state.forgotten_before = c.forgotten_before;
                state.skipped = c.skipped;
                c.next_offset
            }
            None => log_start,
        };
        state.forgotten_before = state.forgotten_before.max(log_start);
        let resume = resume.max(log_start);
        state.indexed = resume;
        state.published = resume;
        state.durable = resume;
        Ok((
            PartitionIndex {
                partition,
                settings,
                graph: RwLock::new(graph),
                state: RwLock::new(state),
                store: Mutex::new(store),
            },
            resume,
        ))
    }

    pub fn settings(&self) -> &PartitionSettings {
        &self.settings
    }

    /// Next offset to index.
    pub fn indexed(&self) -> i64 {
        self.state.read().indexed
    }

    /// Add records (vectors already embedded, `dimensions` long) up to `next_offset`, and count
    /// `skipped` events that had nothing to embed. Records at offsets already indexed are
    /// ignored (a replay).
    pub(crate) fn add(
        &self,
        records: Vec<NewRecord>,
        skipped: u64,
        next_offset: i64,
    ) -> Result<(), VectorError> {
        let mut st = self.state.write();
        let mut graph = self.graph.write();
        let from = st.indexed;
        for mut r in records.into_iter().filter(|r| r.offset >= from) {
            if let Some(v) = &mut r.vector {
                if v.len() != self.settings.dimensions {
                    return Err(VectorError::Embedding(format!(
                        "a vector of {} dimensions for an index of {}",
                        v.len(),
                        self.settings.dimensions
                    )));
                }
                if !prepare(self.settings.metric, v) {
                    st.skipped += 1;
                    continue;
                }
            }
            let stored = StoredRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                vector: r.vector,
            };
            encode(&stored, &mut st.pending);
            let vector = track(
                &mut st,
                &self.settings,
                &stored.key,
                stored.offset,
                stored.vector,
            );
            if let Some(v) = vector {
                st.points.push(Point {
                    offset: stored.offset,
                    timestamp: stored.timestamp,
                    key: stored.key,
                    value: stored.value,
                });
                graph.insert(&v);
            }
        }
        st.skipped += skipped;
        st.indexed = st.indexed.max(next_offset);
        Ok(())
    }

    /// Make everything added so far visible.
    pub fn publish(&self) {
        let mut st = self.state.write();
        st.published = st.indexed;
    }

    /// Write what was added, with its checkpoint, and the graph's links when enough points
    /// were added since they were last written; returns the checkpoint offset.
    pub fn persist(&self) -> Result<i64, VectorError> {
        let mut store = self.store.lock();
        let (pending, checkpoint, snapshot) = {
            let mut st = self.state.write();
            let cp = Checkpoint {
                next_offset: st.indexed,
                length: 0,
                forgotten_before: st.forgotten_before,
                skipped: st.skipped,
                model: self.settings.model.clone(),
                dimensions: self.settings.dimensions,
                metric: metric_name(self.settings.metric).to_string(),
            };
            // Taken under the state lock, so it holds exactly the points whose records this
            // commit makes durable (inserts need the state's write lock).
            let graph = self.graph.read();
            let snapshot = snapshot_due(graph.len(), st.snapshot_points)
                .then(|| (graph.len(), graph.snapshot()));
            (std::mem::take(&mut st.pending), cp, snapshot)
        };
        let next = checkpoint.next_offset;
        if let Err(e) = store.commit(&pending, checkpoint) {
            // Keep the records for the next attempt (the caller drops the index on error, so
            // this only matters to a caller that retries).
            let mut st = self.state.write();
            let mut back = pending;
            back.extend_from_slice(&st.pending);
            st.pending = back;
            return Err(e);
        }
        if let Some((points, bytes)) = snapshot {
            // Without it a restart rebuilds more of the graph; nothing is lost.
            match store.write_graph(&bytes) {
                Ok(()) => self.state.write().snapshot_points = points,
                Err(e) => {
                    tracing::warn!(partition = self.partition, error = %e, "cannot write the vector graph snapshot")
                }
            }
        }
        let mut st = self.state.write();
        st.durable = st.durable.max(next);
        Ok(next)
    }

    pub fn forget_before(&self, offset: i64) {
        let mut st = self.state.write();
        st.forgotten_before = st.forgotten_before.max(offset);
    }

    /// Visible points (published, not forgotten, not superseded); counts the graph otherwise.
    pub fn stats(&self) -> PartitionStats {
        // The store first: persist() takes it before the state.
        let disk_bytes = self.store.lock().size();
        let st = self.state.read();
        let graph = self.graph.read();
        let visible = st
            .points
            .iter()
            .filter(|p| visible(&st, self.settings.compacted, p))
            .count() as u64;
        PartitionStats {
            partition: self.partition,
            vectors: visible,
            graph_points: graph.len() as u64,
            skipped: st.skipped,
            indexed_offset: st.indexed,
            published_offset: st.published,
            durable_offset: st.durable,
            disk_bytes,
            memory_bytes: graph.memory_bytes() as u64
                + st.points
                    .iter()
                    .map(|p| {
                        p.key.as_ref().map_or(0, Bytes::len)
                            + p.value.as_ref().map_or(0, Bytes::len)
                            + 48
                    })
                    .sum::<usize>() as u64,
        }
    }

    /// The `k` best visible points for the prepared query `q` within `time`, best first.
    /// Hidden points are walked through but never returned, so fewer than `k` hits means
    /// fewer than `k` visible points are reachable.
    pub fn search(&self, q: &[f32], k: usize, ef: usize, time: TimeRange) -> Vec<PartitionHit> {
        let st = self.state.read();
        let graph = self.graph.read();
        let compacted = self.settings.compacted;
        let keep = |id: u32| {
            st.points
                .get(id as usize)
                .is_some_and(|p| visible(&st, compacted, p) && time.contains(p.timestamp))
        };
        graph
            .search(q, k, ef, &keep)
            .into_iter()
            .filter_map(|(id, distance)| {
                let p = st.points.get(id as usize)?;
                Some(PartitionHit {
                    partition: self.partition,
                    offset: p.offset,
                    timestamp: p.timestamp,
                    score: graph.score(distance),
                    key: p.key.clone(),
                    value: p.value.clone(),
                })
            })
            .collect()
    }

    /// Offsets visible now, ascending (tests).
    pub fn visible_offsets(&self) -> Vec<i64> {
        let st = self.state.read();
        let mut out: Vec<i64> = st
            .points
            .iter()
            .filter(|p| visible(&st, self.settings.compacted, p))
            .map(|p| p.offset)
            .collect();
        out.sort_unstable();
        out
    }
}

/// Record a key's latest offset; returns the vector when the record becomes a graph point.
fn track(
    st: &mut State,
    settings: &PartitionSettings,
    key: &Option<Bytes>,
    offset: i64,
    vector: Option<Vec<f32>>,
) -> Option<Vec<f32>> {
    if settings.compacted {
        if let Some(k) = key {
            st.latest.insert(k.clone(), offset);
        }
    }
    vector
}

fn visible(st: &State, compacted: bool, p: &Point) -> bool {
    p.offset < st.published
        && p.offset >= st.forgotten_before
        && (!compacted
            || p.key
                .as_ref()
                .is_none_or(|k| st.latest.get(k).is_none_or(|l| *l == p.offset)))
}

/// Counters of one partition's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    pub partition: i32,
    /// Vectors a query can find.
    pub vectors: u64,
    /// Points in the graph, hidden ones included.
    pub graph_points: u64,
    pub skipped: u64,
    pub indexed_offset: i64,
    pub published_offset: i64,
    /// Records below it survive a crash (the last checkpoint).
    pub durable_offset: i64,
    pub disk_bytes: u64,
    /// Estimate: vectors, graph links and stored events.
    pub memory_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn settings() -> PartitionSettings {
        PartitionSettings {
            metric: VectorMetric::Cosine,
            params: HnswParams::default(),
            model: "test-model".into(),
            dimensions: 16,
            compacted: false,
        }
    }

    fn records(from: i64, n: usize, seed: u64) -> Vec<NewRecord> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| NewRecord {
                offset: from + i as i64,
                timestamp: 1_000 + i as i64,
                key: None,
                value: Some(Bytes::from(format!("{{\"n\":{i}}}"))),
                vector: Some((0..16).map(|_| rng.gen_range(-1.0f32..1.0)).collect()),
            })
            .collect()
    }

    fn offsets(index: &PartitionIndex, q: &[f32]) -> Vec<i64> {
        index
            .search(q, 10, 64, TimeRange::default())
            .iter()
            .map(|h| h.offset)
            .collect()
    }

    #[test]
    fn snapshots_follow_growth_by_a_quarter() {
        assert!(!snapshot_due(4095, 0));
        assert!(snapshot_due(4096, 0));
        assert!(!snapshot_due(20_000 + 4999, 20_000));
        assert!(snapshot_due(25_000, 20_000));
        assert!(!snapshot_due(100, 200));
    }

    #[test]
    fn a_reopened_partition_restores_its_graph_and_answers_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = vec![0.5f32; 16];
        assert!(prepare(VectorMetric::Cosine, &mut q));
        let (index, resume) = PartitionIndex::open(dir.path(), 0, settings(), 0).unwrap();
        assert_eq!(resume, 0);
        index.add(records(0, 5000, 1), 0, 5000).unwrap();
        index.publish();
        assert_eq!(index.persist().unwrap(), 5000);
        assert!(
            dir.path().join("graph.bin").exists(),
            "5,000 points are worth a snapshot"
        );
        // Added after the snapshot: stored, but not covered by it.
        index.add(records(5000, 300, 2), 0, 5300).unwrap();
        index.publish();
        index.persist().unwrap();
        let before = offsets(&index, &q);
        assert_eq!(before.len(), 10);
        drop(index);

        let (index, resume) = PartitionIndex::open(dir.path(), 0, settings(), 0).unwrap();
        assert_eq!(resume, 5300);
        assert_eq!(index.state.read().snapshot_points, 5000);
        assert_eq!(index.stats().graph_points, 5300);
        index.publish();
        assert_eq!(offsets(&index, &q), before);

        // Another metric: the stored records and graph are dropped and indexing starts over.
        let other = PartitionSettings {
            metric: VectorMetric::L2,
            ..settings()
        };
        let (index, resume) = PartitionIndex::open(dir.path(), 0, other, 0).unwrap();
        assert_eq!((resume, index.stats().graph_points), (0, 0));
        assert!(!dir.path().join("graph.bin").exists());
    }
}
