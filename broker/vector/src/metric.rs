//! Distances the HNSW graph runs on, one per vector.metric, and the scores users see.
//!
//! hnsw_rs needs non-negative distances where smaller is nearer. Cosine is the dot product of
//! vectors normalised on the way in; dot is mapped through a decreasing, non-negative function
//! (the graph only compares distances, so any monotone map keeps the order); l2 is Euclidean.
//! Scores are similarities, larger is better: cosine similarity, the dot product, and
//! `1 / (1 + distance)` for l2.

use chronik_meta::VectorMetric;
use hnsw_rs::prelude::Distance;

/// Lanes summed independently: a single running sum is one long chain of dependent adds the
/// compiler may not reorder (float addition is not associative), so it runs one add at a time;
/// sixteen independent sums become SIMD registers and pipeline (about 8x faster at 384
/// dimensions). This is the hot loop of every graph insert and search.
const LANES: usize = 16;

/// `term(a[i], b[i])` summed over `LANES` independent accumulators.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| term(*x, *y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += term(x[i], y[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

/// 1 - cosine on unit vectors.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// A decreasing map of the dot product onto [0, inf): 1/(1+d) above zero, 1-d below.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DotDistance;

impl Distance<f32> for DotDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        dot_to_distance(dot(a, b))
    }
}

pub(crate) fn dot_to_distance(d: f32) -> f32 {
    if d.is_nan() {
        f32::MAX
    } else if d >= 0.0 {
        1.0 / (1.0 + d)
    } else {
        1.0 - d
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct L2Distance;

impl Distance<f32> for L2Distance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        squared_distance(a, b).sqrt()
    }
}

/// Put a vector in the form the metric's graph stores and compares: unit length for cosine.
/// Returns `false` for a vector cosine cannot use (zero or not finite).
pub(crate) fn prepare(metric: VectorMetric, v: &mut [f32]) -> bool {
    if v.iter().any(|x| !x.is_finite()) {
        return false;
    }
    if metric == VectorMetric::Cosine {
        let norm = dot(v, v).sqrt();
        if norm == 0.0 {
            return false;
        }
        v.iter_mut().for_each(|x| *x /= norm);
    }
    true
}

/// The user-facing score (larger is better) of a graph distance.
pub(crate) fn score(metric: VectorMetric, distance: f32) -> f32 {
    match metric {
        VectorMetric::Cosine => 1.0 - distance,
        VectorMetric::Dot => {
            if distance <= 1.0 {
                1.0 / distance.max(f32::MIN_POSITIVE) - 1.0
            } else {
                1.0 - distance
            }
        }
        VectorMetric::L2 => 1.0 / (1.0 + distance),
    }
}

/// Exact score of two prepared vectors (brute force, for tests).
#[cfg(test)]
pub(crate) fn exact_score(metric: VectorMetric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        VectorMetric::Cosine | VectorMetric::Dot => dot(a, b),
        VectorMetric::L2 => 1.0 / (1.0 + L2Distance.eval(a, b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_match_the_plain_sums_at_every_length() {
        for len in [0usize, 1, 15, 16, 17, 33, 384, 1000] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            assert!(
                (f64::from(dot(&a, &b)) - plain).abs() < 1e-3,
                "dot at {len}"
            );
            let plain_l2: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from((x - y) * (x - y)))
                .sum();
            assert!(
                (f64::from(squared_distance(&a, &b)) - plain_l2).abs() < 1e-3,
                "l2 at {len}"
            );
        }
    }

    #[test]
    fn dot_map_is_decreasing_and_non_negative() {
        let xs = [-100.0f32, -2.0, -0.5, 0.0, 0.5, 2.0, 100.0];
        let ds: Vec<f32> = xs.iter().map(|x| dot_to_distance(*x)).collect();
        assert!(ds.iter().all(|d| *d >= 0.0));
        assert!(ds.windows(2).all(|w| w[0] > w[1]), "{ds:?}");
        for x in xs {
            let back = score(VectorMetric::Dot, dot_to_distance(x));
            assert!((back - x).abs() < 1e-3 * x.abs().max(1.0), "{x} -> {back}");
        }
    }

    #[test]
    fn cosine_prepares_unit_vectors() {
        let mut v = vec![3.0, 4.0];
        assert!(prepare(VectorMetric::Cosine, &mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(!prepare(VectorMetric::Cosine, &mut [0.0, 0.0]));
        assert!(!prepare(VectorMetric::L2, &mut [f32::NAN]));
        assert!(prepare(VectorMetric::L2, &mut [0.0, 0.0]));
        let d = CosineDistance.eval(&v, &v);
        assert!((0.0..1e-6).contains(&d));
        assert!((score(VectorMetric::Cosine, d) - 1.0).abs() < 1e-6);
        assert!(
            (score(VectorMetric::L2, L2Distance.eval(&[0.0, 0.0], &[3.0, 4.0])) - 1.0 / 6.0).abs()
                < 1e-6
        );
    }
}
