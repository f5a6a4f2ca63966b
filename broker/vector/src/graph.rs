//! The HNSW graph of one partition, over the distance of its topic's metric.

use chronik_meta::VectorMetric;
use hnsw_rs::prelude::{FilterT, Hnsw, Neighbour};

use crate::metric::{CosineDistance, DotDistance, L2Distance};

/// hnsw_rs's cap on layers; the graph uses fewer in practice (log base m of the points).
const MAX_LAYERS: usize = 16;

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

pub(crate) enum Graph {
    Cosine(Hnsw<'static, f32, CosineDistance>),
    Dot(Hnsw<'static, f32, DotDistance>),
    L2(Hnsw<'static, f32, L2Distance>),
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Graph({} points)", self.len())
    }
}

impl Graph {
    /// An empty graph sized for about `expected` points.
    pub(crate) fn new(metric: VectorMetric, params: HnswParams, expected: usize) -> Graph {
        let (m, efc, cap) = (params.m, params.ef_construction, expected.max(1024));
        match metric {
            VectorMetric::Cosine => {
                Graph::Cosine(Hnsw::new(m, cap, MAX_LAYERS, efc, CosineDistance))
            }
            VectorMetric::Dot => Graph::Dot(Hnsw::new(m, cap, MAX_LAYERS, efc, DotDistance)),
            VectorMetric::L2 => Graph::L2(Hnsw::new(m, cap, MAX_LAYERS, efc, L2Distance)),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Graph::Cosine(h) => h.get_nb_point(),
            Graph::Dot(h) => h.get_nb_point(),
            Graph::L2(h) => h.get_nb_point(),
        }
    }

    pub(crate) fn insert(&self, v: &[f32], id: usize) {
        match self {
            Graph::Cosine(h) => h.insert_slice((v, id)),
            Graph::Dot(h) => h.insert_slice((v, id)),
            Graph::L2(h) => h.insert_slice((v, id)),
        }
    }

    /// Insert many points using every core (reload after a restart).
    pub(crate) fn insert_many(&self, points: &[(&[f32], usize)]) {
        let points = points.to_vec();
        match self {
            Graph::Cosine(h) => h.parallel_insert_slice(&points),
            Graph::Dot(h) => h.parallel_insert_slice(&points),
            Graph::L2(h) => h.parallel_insert_slice(&points),
        }
    }

    /// The `k` nearest points that pass `filter`, nearest first.
    pub(crate) fn search(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: &dyn Fn(&usize) -> bool,
    ) -> Vec<Neighbour> {
        let filter: &dyn FilterT = &filter;
        match self {
            Graph::Cosine(h) => h.search_filter(q, k, ef, Some(filter)),
            Graph::Dot(h) => h.search_filter(q, k, ef, Some(filter)),
            Graph::L2(h) => h.search_filter(q, k, ef, Some(filter)),
        }
    }
}

/// A standalone HNSW graph over one metric, ids being insertion positions: what a partition
/// index runs on, for benchmarks and tools.
#[derive(Debug)]
pub struct HnswGraph {
    graph: Graph,
    metric: VectorMetric,
}

impl HnswGraph {
    pub fn new(metric: VectorMetric, params: HnswParams, expected: usize) -> HnswGraph {
        HnswGraph {
            graph: Graph::new(metric, params, expected),
            metric,
        }
    }

    /// Insert `vectors` (ids continue from the current size) using every core. Vectors the
    /// metric cannot use (zero for cosine, not finite) are refused with their position.
    pub fn insert_many(&self, vectors: &[Vec<f32>]) -> Result<(), usize> {
        let first = self.graph.len();
        let mut prepared = vectors.to_vec();
        for (i, v) in prepared.iter_mut().enumerate() {
            if !crate::metric::prepare(self.metric, v) {
                return Err(i);
            }
        }
        let points: Vec<(&[f32], usize)> = prepared
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_slice(), first + i))
            .collect();
        self.graph.insert_many(&points);
        Ok(())
    }

    /// The `k` nearest ids with their scores (larger is better), best first.
    pub fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
        let mut q = q.to_vec();
        if !crate::metric::prepare(self.metric, &mut q) {
            return Vec::new();
        }
        self.graph
            .search(&q, k, ef.max(k), &|_| true)
            .into_iter()
            .map(|n| (n.d_id, crate::metric::score(self.metric, n.distance)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.graph.len()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{exact_score, prepare, score};
    use rand::{Rng, SeedableRng};

    fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
            .collect()
    }

    /// Mean recall@10 of the graph against exact search over `queries`.
    fn recall(metric: VectorMetric, n: usize, dim: usize, queries: usize) -> f64 {
        let mut data = random_vectors(n, dim, 7);
        for v in &mut data {
            assert!(prepare(metric, v));
        }
        let graph = Graph::new(metric, HnswParams::default(), n);
        let points: Vec<(&[f32], usize)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_slice(), i))
            .collect();
        graph.insert_many(&points);
        assert_eq!(graph.len(), n);
        let mut qs = random_vectors(queries, dim, 99);
        let mut total = 0.0;
        for q in &mut qs {
            assert!(prepare(metric, q));
            let mut exact: Vec<(usize, f32)> = data
                .iter()
                .enumerate()
                .map(|(i, v)| (i, exact_score(metric, q, v)))
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let truth: Vec<usize> = exact[..10].iter().map(|(i, _)| *i).collect();
            let found = graph.search(q, 10, HnswParams::default().ef_search, &|_| true);
            // Scores are similarities, best first, and agree with the exact ones.
            for w in found.windows(2) {
                assert!(score(metric, w[0].distance) >= score(metric, w[1].distance) - 1e-5);
            }
            for n in &found {
                let exact = exact_score(metric, q, &data[n.d_id]);
                assert!(
                    (score(metric, n.distance) - exact).abs() < 1e-3,
                    "{metric:?}"
                );
            }
            let hit = found.iter().filter(|n| truth.contains(&n.d_id)).count();
            total += hit as f64 / 10.0;
        }
        total / queries as f64
    }

    #[test]
    fn recall_at_10_on_random_vectors() {
        for metric in [VectorMetric::Cosine, VectorMetric::Dot, VectorMetric::L2] {
            let r = recall(metric, 10_000, 32, 100);
            println!("{metric:?}: recall@10 {r:.4}");
            assert!(r >= 0.97, "{metric:?}: recall@10 {r}");
        }
    }

    #[test]
    fn filters_restrict_hits() {
        let data = random_vectors(2000, 8, 3);
        let graph = Graph::new(VectorMetric::L2, HnswParams::default(), 0);
        for (i, v) in data.iter().enumerate() {
            graph.insert(v, i);
        }
        let found = graph.search(&data[0], 10, 64, &|id| id % 7 == 0);
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|n| n.d_id % 7 == 0));
        assert_eq!(found[0].d_id, 0);
    }
}
