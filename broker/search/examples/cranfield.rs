//! Search quality on the Cranfield collection, in process: index the documents through the
//! Indexer seam, run every query as a multi_match over title and text, print NDCG@10.
//!
//! `cargo run -p chronik-search --example cranfield -- <cranfield dir> [multi_match type, default cross_fields] [title boost, default 3]`
//! (`make eval-search` measures the same thing end to end, through Kafka and HTTP.)

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use chronik_index::{IndexRecord, Indexer, RecordRun};
use chronik_meta::TopicConfig;
use chronik_search::{SearchEngine, SearchIndexer};
use serde_json::{json, Value};

const REFERENCE_BM25: f64 = 0.3705;

fn ndcg_at_10(ranked: &[i64], gains: &HashMap<i64, f64>) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, d)| gains.get(d).copied().unwrap_or(0.0) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<f64> = gains.values().copied().collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, g)| g / ((i + 2) as f64).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("../shared/data/cranfield", |s| s));
    let kind = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "cross_fields".into());
    let title_boost = args.get(3).cloned().unwrap_or_else(|| "3".into());
    let fields: Vec<String> = match args.get(4) {
        Some(list) => list.split(',').map(str::to_string).collect(),
        None => vec![format!("title^{title_boost}"), "text".to_string()],
    };

    let tmp = tempfile::tempdir()?;
    let ix = Arc::new(SearchIndexer::new(tmp.path()));
    let mut overrides = std::collections::BTreeMap::new();
    overrides.insert("searchable.enabled".to_string(), "true".to_string());
    let cfg = TopicConfig::from_overrides(&overrides);
    ix.open_partition("cranfield", 0, &cfg, 0).await?;
    let docs = std::fs::read_to_string(dir.join("docs.jsonl"))?;
    let records: Vec<IndexRecord> = docs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let v: Value = serde_json::from_str(line).expect("a JSON document");
            IndexRecord {
                offset: i as i64,
                timestamp: 0,
                key: Some(Bytes::from(v["doc_id"].to_string())),
                value: Some(Bytes::from(line.to_string())),
                headers: Vec::new(),
                batch: None,
            }
        })
        .collect();
    ix.index(RecordRun {
        topic: "cranfield",
        partition: 0,
        records: &records,
        next_offset: records.len() as i64,
    })
    .await?;
    ix.publish("cranfield", 0).await?;

    let mut qrels: HashMap<i64, HashMap<i64, f64>> = HashMap::new();
    for line in std::fs::read_to_string(dir.join("qrels.tsv"))?
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() == 3 {
            qrels
                .entry(f[0].parse()?)
                .or_default()
                .insert(f[1].parse()?, f[2].parse()?);
        }
    }
    let engine = SearchEngine::new(ix.clone());
    let topics = vec!["cranfield".to_string()];
    let (mut sum, mut n) = (0.0, 0usize);
    for line in std::fs::read_to_string(dir.join("queries.jsonl"))?.lines() {
        let q: Value = serde_json::from_str(line)?;
        let id = q["query_id"].as_i64().unwrap_or_default();
        let Some(gains) = qrels.get(&id) else {
            continue;
        };
        let body = json!({
            "size": 10,
            "_source": ["doc_id"],
            "query": {"multi_match": {
                "query": q["text"],
                "fields": fields,
                "type": kind,
            }}
        });
        let r = engine.search(&topics, &body)?;
        let ranked: Vec<i64> = r["hits"]["hits"]
            .as_array()
            .map(|hits| {
                hits.iter()
                    .filter_map(|h| h["_source"]["doc_id"].as_i64())
                    .collect()
            })
            .unwrap_or_default();
        sum += ndcg_at_10(&ranked, gains);
        n += 1;
    }
    println!(
        "Cranfield NDCG@10 = {:.4} over {n} queries (multi_match {kind} over {fields:?}); reference BM25 = {REFERENCE_BM25}",
        sum / n as f64
    );
    Ok(())
}
