//! Recall against exact search, filters, scores, snapshots and level draws.

use super::*;
use rand::{Rng, SeedableRng};

fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
        .collect()
}

fn prepared(metric: VectorMetric, n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut data = random_vectors(n, dim, seed);
    for v in &mut data {
        assert!(prepare(metric, v));
    }
    data
}

/// Exact (id, distance) of every point, nearest first.
fn exact(graph: &Hnsw, data: &[Vec<f32>], q: &[f32]) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u32, graph.distance(q, v)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    all
}

/// Mean recall@10 against exact search over `queries`.
fn recall(graph: &Hnsw, data: &[Vec<f32>], queries: &[Vec<f32>]) -> f64 {
    let mut total = 0.0;
    for q in queries {
        let truth = exact(graph, data, q);
        let found = graph.search(q, 10, HnswParams::default().ef_search, &|_| true);
        assert_eq!(found.len(), 10);
        assert!(found.windows(2).all(|w| w[0].1 <= w[1].1), "nearest first");
        for (id, d) in &found {
            let want = graph.distance(q, &data[*id as usize]);
            assert!((d - want).abs() < 1e-4, "reported distance is the real one");
        }
        let hits = found
            .iter()
            .filter(|(id, _)| truth[..10].iter().any(|(t, _)| t == id))
            .count();
        total += hits as f64 / 10.0;
    }
    total / queries.len() as f64
}

#[test]
fn recall_at_10_on_random_vectors_for_every_metric() {
    // One insert at a time: the graph, and so the figure, is the same on every run.
    for metric in [VectorMetric::Cosine, VectorMetric::Dot, VectorMetric::L2] {
        let data = prepared(metric, 10_000, 32, 7);
        let queries = prepared(metric, 100, 32, 99);
        let mut graph = Hnsw::new(metric, HnswParams::default());
        for v in &data {
            graph.insert(v);
        }
        assert_eq!(graph.len(), data.len());
        let r = recall(&graph, &data, &queries);
        println!("{metric:?}: recall@10 {r:.4}");
        assert!(r >= 0.97, "{metric:?}: recall@10 {r}");
    }
}

#[test]
fn a_build_on_every_core_is_about_as_good() {
    // Threads interleave differently on every run, so the graph differs a little each time.
    let data = prepared(VectorMetric::Cosine, 10_000, 32, 7);
    let queries = prepared(VectorMetric::Cosine, 100, 32, 99);
    let mut graph = Hnsw::new(VectorMetric::Cosine, HnswParams::default());
    graph.insert_many(&data);
    assert_eq!(graph.len(), data.len());
    let r = recall(&graph, &data, &queries);
    assert!(r >= 0.95, "recall@10 {r}");
}

#[test]
fn a_filter_restricts_hits_and_still_finds_k() {
    let data = prepared(VectorMetric::L2, 2000, 8, 3);
    let mut graph = Hnsw::new(VectorMetric::L2, HnswParams::default());
    graph.insert_many(&data);
    let found = graph.search(&data[0], 10, 16, &|id| id % 7 == 0);
    assert_eq!(found.len(), 10);
    assert!(found.iter().all(|(id, _)| id % 7 == 0));
    assert_eq!(found[0].0, 0, "the query point itself is nearest");
    // Fewer passing points than k: all of them, nothing else.
    let few = graph.search(&data[0], 10, 16, &|id| id == 5 || id == 1999);
    let mut ids: Vec<u32> = few.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![5, 1999]);
    assert!(graph.search(&data[0], 10, 16, &|_| false).is_empty());
}

#[test]
fn scores_are_similarities_larger_is_better() {
    let v = [0.6f32, 0.8];
    let w = [0.8f32, 0.6];
    let cosine = Hnsw::new(VectorMetric::Cosine, HnswParams::default());
    assert!((cosine.score(cosine.distance(&v, &w)) - 0.96).abs() < 1e-6);
    let dot = Hnsw::new(VectorMetric::Dot, HnswParams::default());
    assert!((dot.score(dot.distance(&[2.0, 0.0], &[3.0, 1.0])) - 6.0).abs() < 1e-6);
    let l2 = Hnsw::new(VectorMetric::L2, HnswParams::default());
    let s = l2.score(l2.distance(&[0.0, 0.0], &[3.0, 4.0]));
    assert!((s - 1.0 / 6.0).abs() < 1e-6);
}

#[test]
fn empty_graphs_and_wrong_lengths_find_nothing() {
    let mut graph = Hnsw::new(VectorMetric::Cosine, HnswParams::default());
    assert!(graph.search(&[1.0, 0.0], 5, 16, &|_| true).is_empty());
    graph.insert(&[1.0, 0.0]);
    assert_eq!(graph.search(&[0.0, 1.0], 5, 16, &|_| true).len(), 1);
    assert!(graph.search(&[1.0, 0.0, 0.0], 5, 16, &|_| true).is_empty());
    assert!(graph.search(&[1.0, 0.0], 0, 16, &|_| true).is_empty());
}

#[test]
fn a_restored_snapshot_answers_as_the_graph_did_and_takes_more_points() {
    let data = prepared(VectorMetric::Cosine, 3000, 16, 11);
    let queries = prepared(VectorMetric::Cosine, 50, 16, 12);
    let mut graph = Hnsw::new(VectorMetric::Cosine, HnswParams::default());
    graph.insert_many(&data[..2000]);
    let snapshot = graph.snapshot();
    let (mut restored, covered) = Hnsw::restore(
        VectorMetric::Cosine,
        HnswParams::default(),
        &data,
        &snapshot,
    )
    .expect("a snapshot of this graph restores");
    assert_eq!((covered, restored.len()), (2000, 2000));
    for q in &queries {
        assert_eq!(
            graph.search(q, 10, 64, &|_| true),
            restored.search(q, 10, 64, &|_| true)
        );
    }
    restored.insert_many(&data[2000..]);
    let r = recall(&restored, &data, &queries);
    assert!(
        r >= 0.97,
        "recall@10 {r} after inserting onto a restored graph"
    );
}

#[test]
fn snapshots_of_another_shape_or_damaged_ones_are_refused() {
    let data = prepared(VectorMetric::L2, 500, 8, 13);
    let mut graph = Hnsw::new(VectorMetric::L2, HnswParams::default());
    graph.insert_many(&data);
    let snapshot = graph.snapshot();
    let params = HnswParams::default();
    let restore = |metric, params, vectors: &[Vec<f32>], bytes: &[u8]| {
        Hnsw::restore(metric, params, vectors, bytes).map(|(_, n)| n)
    };
    assert_eq!(
        restore(VectorMetric::L2, params, &data, &snapshot),
        Some(500)
    );
    assert_eq!(
        restore(VectorMetric::Cosine, params, &data, &snapshot),
        None
    );
    let other_m = HnswParams { m: 8, ..params };
    assert_eq!(restore(VectorMetric::L2, other_m, &data, &snapshot), None);
    assert_eq!(
        restore(VectorMetric::L2, params, &data[..499], &snapshot),
        None
    );
    let longer = prepared(VectorMetric::L2, 500, 9, 13);
    assert_eq!(restore(VectorMetric::L2, params, &longer, &snapshot), None);
    assert_eq!(
        restore(
            VectorMetric::L2,
            params,
            &data,
            &snapshot[..snapshot.len() - 1]
        ),
        None
    );
    // A neighbour id past the points (the first link of the first node).
    let mut bad = snapshot.clone();
    let first_link = 8 + 4 + 4 + 1 + 8 + 1 + 4 + 1 + 500 + 4;
    bad[first_link..first_link + 4].copy_from_slice(&600u32.to_le_bytes());
    assert_eq!(restore(VectorMetric::L2, params, &data, &bad), None);
    let empty = Hnsw::new(VectorMetric::L2, params).snapshot();
    assert_eq!(restore(VectorMetric::L2, params, &data, &empty), Some(0));
}

#[test]
fn levels_are_geometric_and_deterministic() {
    let graph = Hnsw::new(VectorMetric::L2, HnswParams::default());
    let levels: Vec<u8> = (0..100_000).map(|i| graph.draw_level(i)).collect();
    let above = levels.iter().filter(|l| **l >= 1).count() as f64 / levels.len() as f64;
    // P(level >= 1) = 1/m = 1/16.
    assert!((above - 1.0 / 16.0).abs() < 0.005, "{above}");
    assert_eq!(graph.draw_level(12345), levels[12345]);
}
