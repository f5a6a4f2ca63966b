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
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
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
