//! The vector arithmetic the HNSW graph runs on, and the form each vector.metric stores
//! vectors in (cosine compares unit vectors by their dot product).

use chronik_meta::VectorMetric;

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

pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
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
    fn cosine_prepares_unit_vectors() {
        let mut v = vec![3.0, 4.0];
        assert!(prepare(VectorMetric::Cosine, &mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(!prepare(VectorMetric::Cosine, &mut [0.0, 0.0]));
        assert!(!prepare(VectorMetric::L2, &mut [f32::NAN]));
        assert!(prepare(VectorMetric::L2, &mut [0.0, 0.0]));
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
    }
}
