//! Fusion of ranked lists from different engines (hybrid search, /_query): pure functions.
//!
//! Reciprocal Rank Fusion scores a document `sum_i w_i / (k + rank_i)` over the lists it is in
//! (ranks from 1), so only positions matter and no engine's score scale dominates. Linear
//! fusion min-max normalises each list's scores to [0, 1] and adds them with the weights;
//! a document missing from a list gets 0 from it.

use std::collections::HashMap;
use std::hash::Hash;

/// How lists are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    Rrf { k: f64 },
    Linear,
}

/// One input list: document ids with their engine scores, best first, and the list's weight.
#[derive(Debug, Clone)]
pub struct Ranked<Id> {
    pub weight: f64,
    pub hits: Vec<(Id, f64)>,
}

/// A fused document: its fused score and its 1-based rank in each input list (if present).
#[derive(Debug, Clone, PartialEq)]
pub struct Fused<Id> {
    pub id: Id,
    pub score: f64,
    pub ranks: Vec<Option<usize>>,
}

/// Fuse `lists`; best first, ties broken by the best rank in any list, then by first list order.
pub fn fuse<Id: Clone + Eq + Hash>(lists: &[Ranked<Id>], how: Fusion) -> Vec<Fused<Id>> {
    let mut out: Vec<Fused<Id>> = Vec::new();
    let mut at: HashMap<Id, usize> = HashMap::new();
    for (li, list) in lists.iter().enumerate() {
        let (min, max) = list
            .hits
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, s)| {
                (lo.min(*s), hi.max(*s))
            });
        for (rank0, (id, s)) in list.hits.iter().enumerate() {
            let i = *at.entry(id.clone()).or_insert_with(|| {
                out.push(Fused {
                    id: id.clone(),
                    score: 0.0,
                    ranks: vec![None; lists.len()],
                });
                out.len() - 1
            });
            let f = &mut out[i];
            if f.ranks[li].is_some() {
                continue; // a list naming a document twice counts it once, at its best rank
            }
            f.ranks[li] = Some(rank0 + 1);
            f.score += list.weight
                * match how {
                    Fusion::Rrf { k } => 1.0 / (k + (rank0 + 1) as f64),
                    Fusion::Linear => {
                        if max > min {
                            (s - min) / (max - min)
                        } else {
                            1.0
                        }
                    }
                };
        }
    }
    let best_rank = |f: &Fused<Id>| {
        f.ranks
            .iter()
            .flatten()
            .min()
            .copied()
            .unwrap_or(usize::MAX)
    };
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|a, b| {
        out[*b]
            .score
            .total_cmp(&out[*a].score)
            .then(best_rank(&out[*a]).cmp(&best_rank(&out[*b])))
            .then(a.cmp(b))
    });
    let mut slots: Vec<Option<Fused<Id>>> = out.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(weight: f64, hits: &[(&'static str, f64)]) -> Ranked<&'static str> {
        Ranked {
            weight,
            hits: hits.to_vec(),
        }
    }

    #[test]
    fn rrf_rewards_agreement_and_uses_ranks_only() {
        let a = list(1.0, &[("x", 100.0), ("y", 50.0), ("z", 1.0)]);
        let b = list(1.0, &[("y", 0.9), ("w", 0.8), ("x", 0.1)]);
        let f = fuse(&[a, b], Fusion::Rrf { k: 60.0 });
        let ids: Vec<&str> = f.iter().map(|h| h.id).collect();
        // y: 1/62 + 1/61, x: 1/61 + 1/63: y first; then x; then w (rank 2) before z (rank 3).
        assert_eq!(ids, vec!["y", "x", "w", "z"]);
        assert!((f[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert_eq!(f[0].ranks, vec![Some(2), Some(1)]);
        assert_eq!(f[2].ranks, vec![None, Some(2)]);
    }

    #[test]
    fn weights_tilt_the_result() {
        let a = list(0.9, &[("a", 1.0), ("b", 0.5)]);
        let b = list(0.1, &[("b", 1.0), ("a", 0.5)]);
        let f = fuse(&[a.clone(), b.clone()], Fusion::Rrf { k: 1.0 });
        assert_eq!(f[0].id, "a");
        let f = fuse(
            &[Ranked { weight: 0.1, ..a }, Ranked { weight: 0.9, ..b }],
            Fusion::Rrf { k: 1.0 },
        );
        assert_eq!(f[0].id, "b");
    }

    #[test]
    fn linear_normalises_each_list() {
        // Scales differ by 1000x; after min-max both lists count equally.
        let a = list(0.5, &[("a", 3000.0), ("b", 2000.0), ("c", 1000.0)]);
        let b = list(0.5, &[("c", 0.9), ("b", 0.85), ("a", 0.1)]);
        let f = fuse(&[a, b], Fusion::Linear);
        let by_id = |id| f.iter().find(|h| h.id == id).unwrap().score;
        assert!((by_id("a") - 0.5).abs() < 1e-9);
        assert!((by_id("b") - (0.25 + 0.5 * 0.9375)).abs() < 1e-9);
        assert!((by_id("c") - 0.5).abs() < 1e-9);
        assert_eq!(f[0].id, "b");
        // One-element lists normalise to 1.
        let f = fuse(&[list(1.0, &[("only", 0.3)])], Fusion::Linear);
        assert_eq!(f[0].score, 1.0);
        assert!(fuse::<&str>(&[], Fusion::Linear).is_empty());
    }
}
