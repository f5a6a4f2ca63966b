//! HNSW recall@10 against exact search, build rate and query latency on random vectors.
//!
//! `cargo run --release -p chronik-vector --example hnsw_recall -- [points] [dims] [queries] [ef]`
//! (defaults: 100000 384 200 64, the topic defaults m=16, ef_construction=200, cosine).

use std::time::Instant;

use chronik_meta::VectorMetric;
use chronik_vector::{HnswGraph, HnswParams};
use rand::{Rng, SeedableRng};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

fn main() {
    let (n, dim, queries, ef) = (arg(1, 100_000), arg(2, 384), arg(3, 200), arg(4, 64));
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut gen = |count: usize| -> Vec<Vec<f32>> {
        (0..count)
            .map(|_| {
                let mut v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                unit(&mut v);
                v
            })
            .collect()
    };
    let data = gen(n);
    let qs = gen(queries);
    let params = HnswParams::default();
    let graph = HnswGraph::new(VectorMetric::Cosine, params, n);
    let t = Instant::now();
    graph.insert_many(&data).expect("finite vectors");
    let build = t.elapsed();
    let mut recall = 0.0;
    let mut latencies = Vec::with_capacity(queries);
    for q in &qs {
        let mut exact: Vec<(usize, f32)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum()))
            .collect();
        exact.select_nth_unstable_by(10, |a, b| b.1.total_cmp(&a.1));
        let truth: Vec<usize> = exact[..10].iter().map(|(i, _)| *i).collect();
        let t = Instant::now();
        let found = graph.search(q, 10, ef);
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        recall += found.iter().filter(|(id, _)| truth.contains(id)).count() as f64 / 10.0;
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "points {n} dims {dim} m {} ef_construction {} ef {ef}: build {:.1}s ({:.0} inserts/s), recall@10 {:.4}, query p50 {:.2} ms p99 {:.2} ms",
        params.m,
        params.ef_construction,
        build.as_secs_f64(),
        n as f64 / build.as_secs_f64(),
        recall / queries as f64,
        pct(0.5),
        pct(0.99),
    );
}
