//! HNSW recall@10 against exact search, build rate, memory and query latency.
//!
//! Random vectors: `cargo run --release -p chronik-vector --example hnsw_recall -- [points]
//! [dims] [queries] [ef]` (defaults: 100000 384 200 64, the topic defaults m=16,
//! ef_construction=200, cosine).
//!
//! Given vectors: `hnsw_recall --files <data.f32> <queries.f32> <truth.u32> <dims> <ef,ef,...>`
//! reads little-endian f32 rows, the exact top-10 ids of each query (u32), and prints one JSON
//! line per ef (broker/bench/vector_compare.py feeds hnswlib the same files).

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

/// Resident memory of this process, bytes (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn read_f32(path: &str, dims: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect::<Vec<f32>>()
        .chunks_exact(dims)
        .map(<[f32]>::to_vec)
        .collect()
}

fn exact_top10(data: &[Vec<f32>], q: &[f32]) -> Vec<usize> {
    let mut exact: Vec<(usize, f32)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum()))
        .collect();
    exact.select_nth_unstable_by(10, |a, b| b.1.total_cmp(&a.1));
    exact[..10].iter().map(|(i, _)| *i).collect()
}

struct Measured {
    recall: f64,
    p50_ms: f64,
    p99_ms: f64,
    qps: f64,
}

/// Queries one at a time on one thread, as one request would run.
fn measure(graph: &HnswGraph, qs: &[Vec<f32>], truth: &[Vec<usize>], ef: usize) -> Measured {
    let mut recall = 0.0;
    let mut latencies = Vec::with_capacity(qs.len());
    let all = Instant::now();
    for (q, truth) in qs.iter().zip(truth) {
        let t = Instant::now();
        let found = graph.search(q, 10, ef);
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        recall += found.iter().filter(|(id, _)| truth.contains(id)).count() as f64 / 10.0;
    }
    let total = all.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    Measured {
        recall: recall / qs.len() as f64,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        qps: qs.len() as f64 / total,
    }
}

fn from_files(args: &[String]) {
    let [data, queries, truth, dims, efs] = args else {
        panic!("--files <data.f32> <queries.f32> <truth.u32> <dims> <ef,ef,...>")
    };
    let dims: usize = dims.parse().expect("dims");
    let data = read_f32(data, dims);
    let qs = read_f32(queries, dims);
    let truth: Vec<Vec<usize>> = std::fs::read(truth)
        .expect("truth file")
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect::<Vec<usize>>()
        .chunks_exact(10)
        .map(<[usize]>::to_vec)
        .collect();
    assert_eq!(truth.len(), qs.len(), "one truth row per query");
    let params = HnswParams::default();
    let before = rss_bytes();
    let mut graph = HnswGraph::new(VectorMetric::Cosine, params);
    let t = Instant::now();
    graph.insert_many(&data).expect("finite vectors");
    let build_s = t.elapsed().as_secs_f64();
    let memory = rss_bytes().saturating_sub(before);
    for ef in efs.split(',').map(|e| e.parse::<usize>().expect("ef")) {
        let m = measure(&graph, &qs, &truth, ef);
        println!(
            "{{\"index\":\"chronik\",\"points\":{},\"build_s\":{build_s:.3},\"memory_bytes\":{memory},\"ef\":{ef},\"recall\":{:.4},\"p50_ms\":{:.4},\"p99_ms\":{:.4},\"qps\":{:.1}}}",
            data.len(),
            m.recall,
            m.p50_ms,
            m.p99_ms,
            m.qps
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--files") {
        return from_files(&args[2..]);
    }
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
    let truth: Vec<Vec<usize>> = qs.iter().map(|q| exact_top10(&data, q)).collect();
    let params = HnswParams::default();
    let mut graph = HnswGraph::new(VectorMetric::Cosine, params);
    let t = Instant::now();
    graph.insert_many(&data).expect("finite vectors");
    let build = t.elapsed();
    let m = measure(&graph, &qs, &truth, ef);
    println!(
        "points {n} dims {dim} m {} ef_construction {} ef {ef}: build {:.1}s ({:.0} inserts/s), recall@10 {:.4}, query p50 {:.2} ms p99 {:.2} ms",
        params.m,
        params.ef_construction,
        build.as_secs_f64(),
        n as f64 / build.as_secs_f64(),
        m.recall,
        m.p50_ms,
        m.p99_ms,
    );
}
