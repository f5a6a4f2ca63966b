//! Local model throughput: texts embedded per second on this machine, in the batch sizes the
//! indexer uses, for short texts (event-like, ~12 tokens) and long ones (Cranfield abstracts,
//! most cut at 256 tokens).
//!
//! `cargo run --release -p chronik-vector --example embed_throughput -- [model dir] [cranfield
//! docs.jsonl] [texts]` (defaults: $HOME/.cache/chronik-models/all-minilm-l6-v2,
//! ../shared/data/cranfield/docs.jsonl, 2048).

use std::time::Instant;

use chronik_vector::{EmbeddingProvider, LocalProvider};

const BATCH: usize = 256;

fn measure(provider: &LocalProvider, name: &str, texts: &[String]) {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // One warm-up batch: the first call loads the weights.
    provider.embed(&refs[..refs.len().min(8)]).expect("embed");
    let tokens = provider.count_tokens(&refs).unwrap_or(0);
    let t = Instant::now();
    for batch in refs.chunks(BATCH) {
        provider.embed(batch).expect("embed");
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "{name}: {} texts, {:.1} tokens/text: {:.0} texts/s, {:.0} tokens/s ({s:.1} s, batches of {BATCH})",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        texts.len() as f64 / s,
        tokens as f64 / s,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let home = std::env::var("HOME").unwrap_or_default();
    let model = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| format!("{home}/.cache/chronik-models/all-minilm-l6-v2"));
    let docs = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "../shared/data/cranfield/docs.jsonl".into());
    let n: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2048);
    let provider = LocalProvider::load(&model).unwrap_or_else(|e| panic!("{e}"));

    let short: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "order {i} payment declined for customer in region {}",
                i % 17
            )
        })
        .collect();
    measure(&provider, "short", &short);

    let text = std::fs::read_to_string(&docs).unwrap_or_else(|e| panic!("{docs}: {e}"));
    let long: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|d| d.get("text")?.as_str().map(str::to_string))
        .cycle()
        .take(n / 4)
        .collect();
    measure(&provider, "long", &long);
}
