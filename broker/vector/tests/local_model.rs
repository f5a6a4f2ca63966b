//! The local provider against vectors computed by Python sentence-transformers (shared data,
//! ../shared/data/minilm beside the repository), and its tokenizer edge cases.
//!
//! Needs the model files: `make model` fetches them (`make test` does it first).

use std::path::PathBuf;

use chronik_vector::{EmbeddingProvider, LocalProvider, VectorError, LOCAL_MODEL_DIMENSIONS};
use serde::Deserialize;

fn model_dir() -> PathBuf {
    match std::env::var_os("CHRONIK_EMBEDDING_MODEL_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME"))
            .join(".cache/chronik-models/all-minilm-l6-v2"),
    }
}

fn provider() -> LocalProvider {
    LocalProvider::load(model_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// shared/ sits beside the repository (as for `make eval-search`); CHRONIK_SHARED_DIR overrides.
fn shared_dir() -> PathBuf {
    match std::env::var_os("CHRONIK_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        // Run-time value first: a reused test binary may have been built in another checkout.
        None => std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
            .join("../../../shared"),
    }
}

#[derive(Deserialize)]
struct Reference {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    max_seq_length: usize,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_sentence_transformers() {
    let path = shared_dir().join("data/minilm/reference_vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let reference: Reference = serde_json::from_str(&text).expect("reference json");
    assert_eq!(reference.max_seq_length, chronik_vector::MAX_TOKENS);
    assert!(
        reference.texts.iter().any(String::is_empty),
        "reference lacks the empty text"
    );
    assert!(
        reference.texts.iter().any(|t| !t.is_ascii()),
        "reference lacks non-ASCII text"
    );
    assert!(
        reference
            .texts
            .iter()
            .any(|t| t.split_whitespace().count() > 300),
        "reference lacks a long text"
    );

    let p = provider();
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    // As one padded batch, and one text at a time: padding must not change a vector.
    let batch = p.embed(&texts).expect("embed batch");
    for (i, t) in texts.iter().enumerate() {
        let single = p.embed(&[t]).expect("embed one");
        for (how, got) in [("batch", &batch[i]), ("single", &single[0])] {
            assert_eq!(got.len(), LOCAL_MODEL_DIMENSIONS);
            let c = cosine(got, &reference.vectors[i]);
            assert!(
                c >= 0.999,
                "{how} text {i} {:?}: cosine {c}",
                &t[..t.len().min(40)]
            );
            let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
        }
    }
}

#[test]
fn long_texts_are_truncated_at_256_tokens() {
    let p = provider();
    let words: Vec<String> = (0..2000).map(|i| format!("word{}", i % 50)).collect();
    let long = words.join(" ");
    let longer = format!("{long} and then a different ending entirely");
    let v = p.embed(&[&long, &longer]).expect("embed");
    // Everything past the first 256 tokens is ignored, so both texts embed alike.
    assert!(cosine(&v[0], &v[1]) > 0.99999, "{}", cosine(&v[0], &v[1]));
    let short = p.embed(&["word0 word1"]).expect("embed");
    assert!(cosine(&v[0], &short[0]) < 0.999);
}

#[test]
fn empty_and_non_ascii_texts_embed() {
    let p = provider();
    let v = p
        .embed(&[
            "",
            "東京 の天気",
            "Ünïcödé naïve café",
            "\u{0}\u{7}",
            "🙂🙂🙂",
        ])
        .expect("embed");
    assert_eq!(v.len(), 5);
    for x in &v {
        assert_eq!(x.len(), LOCAL_MODEL_DIMENSIONS);
        assert!(x.iter().all(|f| f.is_finite()));
    }
    assert!(p.embed(&[]).expect("empty batch").is_empty());
}

#[test]
fn similar_meaning_scores_higher() {
    let p = provider();
    let v = p
        .embed(&[
            "database connection pool exhausted",
            "postgres refused new connections",
            "credit card charge was declined",
        ])
        .expect("embed");
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.1);
}

#[test]
fn missing_model_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let (p, loaded) = LocalProvider::open(&missing);
    let err = loaded.unwrap_err();
    assert!(matches!(err, VectorError::ModelMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    // The provider stays usable and keeps answering with the same clear error.
    let again = p.embed(&["x"]).unwrap_err();
    assert!(
        again.to_string().contains(&missing.display().to_string()),
        "{again}"
    );
}

#[test]
fn lazy_provider_checks_files_and_loads_on_first_use() {
    let (p, present) = LocalProvider::lazy(model_dir());
    present.expect("model files present");
    assert_eq!(
        p.embed(&["hello"]).expect("embed")[0].len(),
        LOCAL_MODEL_DIMENSIONS
    );
    let dir = tempfile::tempdir().unwrap();
    let (_, present) = LocalProvider::lazy(dir.path());
    assert!(matches!(present, Err(VectorError::ModelMissing { .. })));
}

/// HNSW recall@10 against exact search on real embeddings: half the Cranfield titles (shared
/// data, kept small so the embedding stays quick), embedded by the local model, queried with
/// the Cranfield queries.
#[test]
fn hnsw_recall_on_real_embeddings() {
    use chronik_meta::VectorMetric;
    use chronik_vector::{HnswGraph, HnswParams};

    let dir = shared_dir().join("data/cranfield");
    let read = |f: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(f).display()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    let titles: Vec<String> = read("docs.jsonl")
        .iter()
        .map(|d| d["title"].as_str().unwrap_or_default().to_string())
        .take(700)
        .collect();
    let queries: Vec<String> = read("queries.jsonl")
        .iter()
        .map(|q| q["text"].as_str().unwrap_or_default().to_string())
        .collect();
    let p = provider();
    let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
    let data = p.embed(&refs).expect("embed titles");
    let qrefs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let qs = p.embed(&qrefs).expect("embed queries");
    let mut graph = HnswGraph::new(VectorMetric::Cosine, HnswParams::default());
    graph.insert_many(&data).expect("finite vectors");
    assert_eq!(graph.len(), data.len());
    let mut recall = 0.0;
    for q in &qs {
        let mut exact: Vec<(usize, f32)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (i, cosine(q, v)))
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let found = graph.search(q, 10, HnswParams::default().ef_search);
        assert!((found[0].1 - exact[0].1).abs() < 1e-4 || found[0].1 <= exact[0].1);
        recall += found
            .iter()
            .filter(|(id, _)| exact[..10].iter().any(|(e, _)| e == id))
            .count() as f64
            / 10.0;
    }
    let recall = recall / qs.len() as f64;
    assert!(recall >= 0.97, "recall@10 {recall}");
}
