//! Index fixtures through the Indexer seam (open → index → publish) and check
//! Elasticsearch-shaped answers with known results. Shared fixtures and helpers live here;
//! the tests are grouped by what they exercise.

mod lifecycle;
mod query_dsl;
mod ranking;
mod results;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use chronik_index::{IndexRecord, Indexer, RecordRun};
use chronik_meta::TopicConfig;
use chronik_search::{SearchEngine, SearchError, SearchIndexer};
use serde_json::{json, Value};

fn config(pairs: &[(&str, &str)]) -> TopicConfig {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TopicConfig::from_overrides(&map)
}

fn rec(offset: i64, key: Option<&str>, value: Option<&str>) -> IndexRecord {
    IndexRecord {
        offset,
        timestamp: 1_700_000_000_000 + offset * 1000,
        key: key.map(|k| Bytes::from(k.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers: Vec::new(),
        batch: None,
    }
}

async fn feed(ix: &SearchIndexer, topic: &str, partition: i32, records: &[IndexRecord]) {
    let next = records.last().map_or(0, |r| r.offset + 1);
    ix.index(RecordRun {
        topic,
        partition,
        records,
        next_offset: next,
    })
    .await
    .unwrap();
    ix.publish(topic, partition).await.unwrap();
}

/// Two partitions of products; partition 1 also holds a value that is not JSON.
async fn products(dir: &std::path::Path) -> (Arc<SearchIndexer>, SearchEngine) {
    let ix = Arc::new(SearchIndexer::new(dir));
    let cfg = config(&[("searchable.enabled", "true")]);
    for p in 0..2 {
        assert_eq!(ix.open_partition("products", p, &cfg, 0).await.unwrap(), 0);
    }
    let p0 = [
        json!({"title": "Red running shoes", "price": 50, "tags": ["sport", "shoes"], "created": "2024-01-10", "stock": true, "desc": "Lightweight shoes for running on roads"}),
        json!({"title": "Blue walking shoes", "price": 80, "tags": ["shoes"], "created": "2024-02-15", "stock": false, "desc": "Comfortable shoes for long walks"}),
        json!({"title": "Green running shorts", "price": 35.5, "tags": ["sport"], "created": "2024-03-01T12:00:00Z", "desc": "Breathable shorts"}),
    ];
    let p1 = [
        json!({"title": "Running socks", "price": 10, "tags": ["sport", "socks"], "created": "2024-01-20", "stock": true}),
        json!({"title": "Trail running backpack", "price": 120, "tags": ["outdoor"], "created": "2024-02-01", "desc": "A backpack for trail running and hiking", "brand": {"name": "Acme", "country": "US"}}),
    ];
    let r0: Vec<IndexRecord> = p0
        .iter()
        .enumerate()
        .map(|(i, v)| rec(i as i64, Some(&format!("k{i}")), Some(&v.to_string())))
        .collect();
    let mut r1: Vec<IndexRecord> = p1
        .iter()
        .enumerate()
        .map(|(i, v)| rec(i as i64, None, Some(&v.to_string())))
        .collect();
    r1.push(rec(2, None, Some("plain text: running log, not json")));
    feed(&ix, "products", 0, &r0).await;
    feed(&ix, "products", 1, &r1).await;
    let engine = SearchEngine::new(ix.clone());
    (ix, engine)
}

fn search(e: &SearchEngine, body: Value) -> Value {
    e.search(&["products".to_string()], &body)
        .unwrap_or_else(|err| panic!("{body}: {err}"))
}

fn ids(r: &Value) -> Vec<String> {
    r["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_id"].as_str().unwrap().to_string())
        .collect()
}

fn id_set(r: &Value) -> HashSet<String> {
    ids(r).into_iter().collect()
}

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn total(r: &Value) -> u64 {
    r["hits"]["total"]["value"].as_u64().unwrap()
}

fn bad(e: &SearchEngine, body: Value) -> String {
    match e.search(&["products".to_string()], &body) {
        Err(SearchError::BadRequest(m)) => m,
        other => panic!("{body}: expected a bad request, got {other:?}"),
    }
}
