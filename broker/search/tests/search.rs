//! Index fixtures through the Indexer seam (open → index → publish) and check
//! Elasticsearch-shaped answers with known results.

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

#[tokio::test]
async fn match_answers_in_elasticsearch_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let r = search(&e, json!({"query": {"match": {"title": "running"}}}));
    assert_eq!(total(&r), 4);
    assert_eq!(r["hits"]["total"]["relation"], "eq");
    assert_eq!(r["timed_out"], false);
    assert_eq!(r["_shards"]["total"], 2);
    assert_eq!(id_set(&r), set(&["0-0", "0-2", "1-0", "1-1"]));
    let hit = r["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["_id"] == "1-0")
        .unwrap();
    assert_eq!(hit["_index"], "products");
    assert_eq!(hit["_partition"], 1);
    assert_eq!(hit["_offset"], 0);
    assert_eq!(hit["_timestamp"], 1_700_000_000_000i64);
    assert_eq!(hit["_key"], Value::Null);
    assert_eq!(hit["_source"]["title"], "Running socks");
    assert!(hit["_score"].as_f64().unwrap() > 0.0);
    let max = r["hits"]["max_score"].as_f64().unwrap();
    let scores: Vec<f64> = r["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert_eq!(max, scores[0]);
    // Keys come back as text.
    let r = search(&e, json!({"query": {"term": {"_id": "0-1"}}}));
    assert_eq!(r["hits"]["hits"][0]["_key"], "k1");
}

#[tokio::test]
async fn match_operator_fuzziness_and_minimum_should_match() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let r = search(
        &e,
        json!({"query": {"match": {"title": {"query": "running shoes", "operator": "and"}}}}),
    );
    assert_eq!(id_set(&r), set(&["0-0"]));
    let r = search(
        &e,
        json!({"query": {"match": {"title": {"query": "running shoes"}}}}),
    );
    assert_eq!(total(&r), 5);
    let r = search(
        &e,
        json!({"query": {"match": {"title": {"query": "running shoes red", "minimum_should_match": 2}}}}),
    );
    assert_eq!(id_set(&r), set(&["0-0"]));
    let r = search(
        &e,
        json!({"query": {"match": {"title": {"query": "runnign", "fuzziness": "AUTO"}}}}),
    );
    assert_eq!(
        total(&r),
        0,
        "stemmed 'runnign' is more than 2 edits from 'run'"
    );
    let r = search(
        &e,
        json!({"query": {"match": {"title": {"query": "sockz", "fuzziness": 1}}}}),
    );
    assert_eq!(id_set(&r), set(&["1-0"]));
    // Stop words alone match nothing; non-JSON values are searchable text.
    assert_eq!(
        total(&search(&e, json!({"query": {"match": {"title": "the"}}}))),
        0
    );
    let r = search(&e, json!({"query": {"match": {"value": "log"}}}));
    assert_eq!(id_set(&r), set(&["1-2"]));
    assert_eq!(
        r["hits"]["hits"][0]["_source"],
        "plain text: running log, not json"
    );
}

#[tokio::test]
async fn phrase_with_slop_and_multi_match_boosts() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let r = search(
        &e,
        json!({"query": {"match_phrase": {"title": "running shoes"}}}),
    );
    assert_eq!(id_set(&r), set(&["0-0"]));
    assert_eq!(
        total(&search(
            &e,
            json!({"query": {"match_phrase": {"title": "red shoes"}}})
        )),
        0
    );
    let r = search(
        &e,
        json!({"query": {"match_phrase": {"title": {"query": "red shoes", "slop": 1}}}}),
    );
    assert_eq!(id_set(&r), set(&["0-0"]));
    // "backpack" is in the title of 1-1 and the description of 1-1 only; "shoes" is in
    // titles and descriptions of 0-0 and 0-1.
    let r = search(
        &e,
        json!({"query": {"multi_match": {"query": "hiking", "fields": ["title^3", "desc"]}}}),
    );
    assert_eq!(id_set(&r), set(&["1-1"]));
    let low = search(
        &e,
        json!({"query": {"multi_match": {"query": "backpack", "fields": ["title", "desc"]}}}),
    );
    let high = search(
        &e,
        json!({"query": {"multi_match": {"query": "backpack", "fields": ["title^3", "desc"]}}}),
    );
    let (l, h) = (
        low["hits"]["max_score"].as_f64().unwrap(),
        high["hits"]["max_score"].as_f64().unwrap(),
    );
    assert!(
        h > 2.5 * l && h < 3.5 * l,
        "boost ^3 should triple the best field's score: {l} {h}"
    );
    let most = search(
        &e,
        json!({"query": {"multi_match": {"query": "backpack", "fields": ["title", "desc"], "type": "most_fields"}}}),
    );
    assert!(most["hits"]["max_score"].as_f64().unwrap() > l);
    let cross = search(
        &e,
        json!({"query": {"multi_match": {"query": "trail hiking", "fields": ["title", "desc"], "type": "cross_fields", "operator": "and"}}}),
    );
    assert_eq!(id_set(&cross), set(&["1-1"]));
    let none = search(
        &e,
        json!({"query": {"multi_match": {"query": "red hiking", "fields": ["title", "desc"], "type": "cross_fields", "operator": "and"}}}),
    );
    assert_eq!(total(&none), 0);
    // combined_fields (and cross_fields) score a term once over the fields together.
    let r = search(
        &e,
        json!({"query": {"combined_fields": {"query": "backpack hiking", "fields": ["title", "desc"], "operator": "and"}}}),
    );
    assert_eq!(id_set(&r), set(&["1-1"]));
    let one = search(
        &e,
        json!({"query": {"combined_fields": {"query": "shoes", "fields": ["title", "desc"]}}}),
    );
    assert_eq!(id_set(&one), set(&["0-0", "0-1"]));
    let boosted = search(
        &e,
        json!({"query": {"combined_fields": {"query": "shoes", "fields": ["title^3", "desc"]}}}),
    );
    assert!(
        boosted["hits"]["max_score"].as_f64().unwrap() > one["hits"]["max_score"].as_f64().unwrap()
    );
    // No fields: every text field.
    let r = search(
        &e,
        json!({"query": {"multi_match": {"query": "breathable"}}}),
    );
    assert_eq!(id_set(&r), set(&["0-2"]));
}

#[tokio::test]
async fn term_terms_range_exists_prefix_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let q = |q: Value| id_set(&search(&e, json!({"query": q, "size": 100})));
    assert_eq!(
        q(json!({"term": {"title.keyword": "Running socks"}})),
        set(&["1-0"])
    );
    assert_eq!(
        q(json!({"term": {"title.keyword": "running socks"}})),
        set(&[])
    );
    assert_eq!(q(json!({"term": {"price": 50}})), set(&["0-0"]));
    assert_eq!(q(json!({"term": {"price": 35.5}})), set(&["0-2"]));
    assert_eq!(q(json!({"term": {"stock": true}})), set(&["0-0", "1-0"]));
    assert_eq!(
        q(json!({"term": {"tags": "sport"}})),
        set(&["0-0", "0-2", "1-0"])
    );
    assert_eq!(
        q(json!({"term": {"brand.country": {"value": "US"}}})),
        set(&["1-1"])
    );
    assert_eq!(
        q(json!({"terms": {"tags.keyword": ["socks", "outdoor"]}})),
        set(&["1-0", "1-1"])
    );
    // Exclusive and inclusive bounds are honoured exactly.
    assert_eq!(
        q(json!({"range": {"price": {"gt": 50}}})),
        set(&["0-1", "1-1"])
    );
    assert_eq!(
        q(json!({"range": {"price": {"gte": 50}}})),
        set(&["0-0", "0-1", "1-1"])
    );
    assert_eq!(q(json!({"range": {"price": {"lt": 35.5}}})), set(&["1-0"]));
    assert_eq!(
        q(json!({"range": {"price": {"lte": 35.5}}})),
        set(&["1-0", "0-2"])
    );
    assert_eq!(
        q(json!({"range": {"price": {"gt": 10, "lt": 80}}})),
        set(&["0-0", "0-2"])
    );
    assert_eq!(
        q(json!({"range": {"created": {"gte": "2024-02-01", "lt": "2024-03-01"}}})),
        set(&["0-1", "1-1"])
    );
    assert_eq!(
        q(json!({"range": {"created": {"gt": "2024-02-01"}}})),
        set(&["0-1", "0-2"])
    );
    assert_eq!(
        q(json!({"range": {"_offset": {"gte": 2}}})),
        set(&["0-2", "1-2"])
    );
    assert_eq!(
        q(json!({"range": {"_timestamp": {"gte": 1_700_000_001_000i64}}})),
        set(&["0-1", "0-2", "1-1", "1-2"])
    );
    assert_eq!(
        q(json!({"exists": {"field": "desc"}})),
        set(&["0-0", "0-1", "0-2", "1-1"])
    );
    assert_eq!(
        q(json!({"exists": {"field": "stock"}})),
        set(&["0-0", "0-1", "1-0"])
    );
    assert_eq!(q(json!({"exists": {"field": "brand.name"}})), set(&["1-1"]));
    assert_eq!(
        q(json!({"prefix": {"title": "sho"}})),
        set(&["0-0", "0-1", "0-2"])
    );
    assert_eq!(
        q(json!({"prefix": {"title": "shoe"}})),
        set(&["0-0", "0-1"])
    );
    assert_eq!(
        q(json!({"prefix": {"title.keyword": "Trail"}})),
        set(&["1-1"])
    );
    assert_eq!(q(json!({"prefix": {"title.keyword": "trail"}})), set(&[]));
    assert_eq!(q(json!({"wildcard": {"title": "sh*rt"}})), set(&["0-2"]));
    assert_eq!(
        q(json!({"wildcard": {"title.keyword": "*running*"}})),
        set(&["0-0", "0-2", "1-1"])
    );
    assert_eq!(
        q(json!({"wildcard": {"tags.keyword": "s?cks"}})),
        set(&["1-0"])
    );
    assert_eq!(
        q(json!({"ids": {"values": ["0-1", "1-2", "7-7"]}})),
        set(&["0-1", "1-2"])
    );
    assert_eq!(q(json!({"match_all": {}})).len(), 6);
}

#[tokio::test]
async fn bool_filter_does_not_score() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let only_filter = search(
        &e,
        json!({"query": {"bool": {"filter": [{"term": {"tags": "sport"}}]}}}),
    );
    assert_eq!(total(&only_filter), 3);
    for h in only_filter["hits"]["hits"].as_array().unwrap() {
        assert_eq!(h["_score"].as_f64().unwrap(), 0.0);
    }
    let must = search(
        &e,
        json!({"query": {"bool": {"must": [{"match": {"title": "running"}}]}}}),
    );
    let must_filter = search(
        &e,
        json!({"query": {"bool": {"must": [{"match": {"title": "running"}}], "filter": {"range": {"price": {"lt": 100}}}}}}),
    );
    assert_eq!(id_set(&must_filter), set(&["0-0", "0-2", "1-0"]));
    for h in must_filter["hits"]["hits"].as_array().unwrap() {
        let same = must["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["_id"] == h["_id"])
            .unwrap();
        assert_eq!(
            h["_score"], same["_score"],
            "a filter must not change scores"
        );
    }
    let r = search(
        &e,
        json!({"query": {"bool": {"must_not": {"match": {"title": "running"}}}}}),
    );
    assert_eq!(id_set(&r), set(&["0-1", "1-2"]));
    let r = search(
        &e,
        json!({"query": {"bool": {"should": [{"term": {"tags": "sport"}}, {"term": {"stock": true}}, {"range": {"price": {"lt": 40}}}], "minimum_should_match": 3}}}),
    );
    assert_eq!(id_set(&r), set(&["1-0"]));
    let r = search(
        &e,
        json!({"query": {"bool": {"must": {"match": {"title": "running"}}, "should": {"match": {"title": "socks"}}}}}),
    );
    assert_eq!(total(&r), 4);
    assert_eq!(
        ids(&r)[0],
        "1-0",
        "should raises the score of what it matches"
    );
    let boosted = search(
        &e,
        json!({"query": {"match": {"title": {"query": "socks", "boost": 2.0}}}}),
    );
    let plain = search(&e, json!({"query": {"match": {"title": "socks"}}}));
    let (b, p) = (
        boosted["hits"]["max_score"].as_f64().unwrap(),
        plain["hits"]["max_score"].as_f64().unwrap(),
    );
    assert!((b - 2.0 * p).abs() < 1e-4, "{b} {p}");
}

#[tokio::test]
async fn query_strings() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let q = |q: Value| id_set(&search(&e, json!({"query": q, "size": 100})));
    assert_eq!(
        q(json!({"query_string": {"query": "title:running AND -shoes"}})),
        set(&["0-2", "1-0", "1-1"])
    );
    assert_eq!(
        q(json!({"query_string": {"query": "socks OR backpack"}})),
        set(&["1-0", "1-1"])
    );
    assert_eq!(
        q(json!({"query_string": {"query": "\"running shoes\""}})),
        set(&["0-0"])
    );
    assert_eq!(
        q(json!({"query_string": {"query": "back*", "default_field": "title"}})),
        set(&["1-1"])
    );
    assert_eq!(
        q(json!({"query_string": {"query": "running shoes", "default_operator": "AND"}})),
        set(&["0-0"])
    );
    assert_eq!(
        q(json!({"simple_query_string": {"query": "running + -shoes", "fields": ["title"]}})),
        set(&["0-2", "1-0", "1-1"])
    );
    assert_eq!(
        q(json!({"simple_query_string": {"query": "socks | backpack"}})),
        set(&["1-0", "1-1"])
    );
    let m = bad(
        &e,
        json!({"query": {"query_string": {"query": "(running"}}}),
    );
    assert!(m.contains("parenthesis"), "{m}");
}

#[tokio::test]
async fn paging_across_partitions_never_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    for sort in [json!(null), json!([{"price": "desc"}])] {
        let mut seen = Vec::new();
        for from in (0..8).step_by(2) {
            let mut body = json!({"query": {"match_all": {}}, "from": from, "size": 2});
            if !sort.is_null() {
                body["sort"] = sort.clone();
            }
            let r = search(&e, body);
            assert_eq!(total(&r), 6);
            seen.extend(ids(&r));
        }
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 6, "{seen:?}");
    }
}

#[tokio::test]
async fn sort_by_fields_and_search_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let r = search(&e, json!({"sort": [{"price": "asc"}], "size": 10}));
    assert_eq!(
        ids(&r),
        vec!["1-0", "0-2", "0-0", "0-1", "1-1", "1-2"],
        "missing values last"
    );
    assert_eq!(r["hits"]["hits"][1]["sort"], json!([35.5]));
    assert_eq!(r["hits"]["hits"][0]["_score"], Value::Null);
    let r = search(
        &e,
        json!({"sort": [{"price": {"order": "desc", "missing": "_first"}}]}),
    );
    assert_eq!(ids(&r), vec!["1-2", "1-1", "0-1", "0-0", "0-2", "1-0"]);
    let r = search(
        &e,
        json!({"sort": ["title.keyword"], "query": {"exists": {"field": "title"}}}),
    );
    assert_eq!(ids(&r), vec!["0-1", "0-2", "0-0", "1-0", "1-1"]);
    let r = search(&e, json!({"sort": [{"created": "desc"}], "size": 2}));
    assert_eq!(ids(&r), vec!["0-2", "0-1"]);
    let r = search(
        &e,
        json!({"sort": [{"_timestamp": "desc"}, {"_partition": "asc"}], "size": 3}),
    );
    assert_eq!(ids(&r), vec!["0-2", "1-2", "0-1"]);
    // search_after continues exactly where the last page ended.
    let first = search(
        &e,
        json!({"sort": [{"price": "asc"}, {"_partition": "asc"}, {"_offset": "asc"}], "size": 3}),
    );
    let last = first["hits"]["hits"][2]["sort"].clone();
    let next = search(
        &e,
        json!({"sort": [{"price": "asc"}, {"_partition": "asc"}, {"_offset": "asc"}], "size": 3, "search_after": last}),
    );
    assert_eq!(ids(&next), vec!["0-1", "1-1", "1-2"]);
    assert_eq!(
        total(&next),
        6,
        "the total counts every match, not only the page"
    );
}

#[tokio::test]
async fn source_filtering_highlight_and_total_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let r = search(
        &e,
        json!({"query": {"term": {"_id": "1-1"}}, "_source": ["title", "brand.name"]}),
    );
    assert_eq!(
        r["hits"]["hits"][0]["_source"],
        json!({"title": "Trail running backpack", "brand": {"name": "Acme"}})
    );
    let r = search(
        &e,
        json!({"query": {"term": {"_id": "1-1"}}, "_source": {"excludes": ["desc", "brand.*"]}}),
    );
    assert_eq!(
        r["hits"]["hits"][0]["_source"],
        json!({"title": "Trail running backpack", "price": 120, "tags": ["outdoor"], "created": "2024-02-01", "brand": {}})
    );
    let r = search(
        &e,
        json!({"query": {"term": {"_id": "1-1"}}, "_source": false}),
    );
    assert!(r["hits"]["hits"][0].get("_source").is_none());
    let r = search(
        &e,
        json!({"query": {"match": {"desc": "trail runs"}}, "highlight": {"fields": {"desc": {}, "title": {}}}}),
    );
    assert_eq!(
        r["hits"]["hits"][0]["highlight"]["desc"],
        json!(["A backpack for <em>trail</em> <em>running</em> and hiking"])
    );
    assert!(
        r["hits"]["hits"][0]["highlight"].get("title").is_none(),
        "only the queried field is highlighted"
    );
    let r = search(
        &e,
        json!({"query": {"match": {"_all": "running"}}, "highlight": {"fields": {"title": {}}, "pre_tags": ["<b>"], "post_tags": ["</b>"]}}),
    );
    assert!(r["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["highlight"]["title"] == json!(["Trail <b>running</b> backpack"])));
    let r = search(&e, json!({"track_total_hits": 2, "size": 1}));
    assert_eq!(r["hits"]["total"], json!({"value": 2, "relation": "gte"}));
    let r = search(&e, json!({"track_total_hits": false}));
    assert!(r["hits"].get("total").is_none());
    let r = search(&e, json!({"size": 0}));
    assert_eq!(total(&r), 6);
    assert_eq!(r["hits"]["hits"], json!([]));
}

#[tokio::test]
async fn aggregations_over_all_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let r = search(
        &e,
        json!({"size": 0, "aggs": {
            "tags": {"terms": {"field": "tags.keyword"}, "aggs": {"avg_price": {"avg": {"field": "price"}}}},
            "avg": {"avg": {"field": "price"}},
            "sum": {"sum": {"field": "price"}},
            "min": {"min": {"field": "price"}},
            "max": {"max": {"field": "price"}},
            "n": {"value_count": {"field": "price"}},
            "distinct": {"cardinality": {"field": "tags.keyword"}},
            "cheap": {"range": {"field": "price", "ranges": [{"to": 50}, {"from": 50}]}},
            "hist": {"histogram": {"field": "price", "interval": 50}},
            "months": {"date_histogram": {"field": "created", "fixed_interval": "30d"}},
            "per_partition": {"terms": {"field": "_partition"}}
        }}),
    );
    let a = &r["aggregations"];
    let buckets = a["tags"]["buckets"].as_array().unwrap();
    let sport = buckets.iter().find(|b| b["key"] == "sport").unwrap();
    assert_eq!(sport["doc_count"], 3);
    assert!(
        (sport["avg_price"]["value"].as_f64().unwrap() - (50.0 + 35.5 + 10.0) / 3.0).abs() < 1e-9
    );
    assert_eq!(buckets[0]["key"], "sport", "largest bucket first");
    assert!((a["avg"]["value"].as_f64().unwrap() - 295.5 / 5.0).abs() < 1e-9);
    assert_eq!(a["sum"]["value"].as_f64().unwrap(), 295.5);
    assert_eq!(a["min"]["value"].as_f64().unwrap(), 10.0);
    assert_eq!(a["max"]["value"].as_f64().unwrap(), 120.0);
    assert_eq!(a["n"]["value"].as_f64().unwrap(), 5.0);
    assert_eq!(a["distinct"]["value"].as_f64().unwrap(), 4.0);
    let ranges = a["cheap"]["buckets"].as_array().unwrap();
    assert_eq!(
        ranges
            .iter()
            .map(|b| b["doc_count"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    let hist: Vec<(f64, u64)> = a["hist"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["key"].as_f64().unwrap(), b["doc_count"].as_u64().unwrap()))
        .collect();
    assert_eq!(hist, vec![(0.0, 2), (50.0, 2), (100.0, 1)]);
    let months: u64 = a["months"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["doc_count"].as_u64().unwrap())
        .sum();
    assert_eq!(months, 5);
    let parts: Vec<u64> = a["per_partition"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["doc_count"].as_u64().unwrap())
        .collect();
    assert_eq!(parts, vec![3, 3]);
    let r = search(
        &e,
        json!({"size": 0, "aggs": {"days": {"date_histogram": {"field": "_timestamp", "calendar_interval": "day"}}}}),
    );
    let days = r["aggregations"]["days"]["buckets"].as_array().unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0]["doc_count"], 6);
    let m = bad(
        &e,
        json!({"size": 0, "aggs": {"m": {"date_histogram": {"field": "created", "calendar_interval": "month"}}}}),
    );
    assert!(m.contains("calendar_interval"), "{m}");
    // Aggregations see the query's matches only.
    let r = search(
        &e,
        json!({"size": 0, "query": {"match": {"title": "shoes"}}, "aggs": {"max": {"max": {"field": "price"}}}}),
    );
    assert_eq!(r["aggregations"]["max"]["value"].as_f64().unwrap(), 80.0);
}

#[tokio::test]
async fn bad_requests_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let m = bad(&e, json!({"query": {"fuzzy_like_this": {"x": 1}}}));
    assert!(m.contains("fuzzy_like_this"), "{m}");
    let m = bad(
        &e,
        json!({"query": {"match": {"title": {"query": "x", "operatr": "and"}}}}),
    );
    assert!(m.contains("operatr"), "{m}");
    let m = bad(
        &e,
        json!({"query": {"match": {"title": {"query": "x", "operator": "xor"}}}}),
    );
    assert!(m.contains("operator"), "{m}");
    let m = bad(&e, json!({"query": {"range": {"price": {"gt": [1]}}}}));
    assert!(m.contains("range"), "{m}");
    let m = bad(&e, json!({"query": {"terms": {"tags": "sport"}}}));
    assert!(m.contains("array"), "{m}");
    let m = bad(&e, json!({"size": 1_000_000}));
    assert!(m.contains("Result window is too large"), "{m}");
    let m = bad(
        &e,
        json!({"query": {"match": {"title": "a"}, "term": {"b": "c"}}}),
    );
    assert!(m.contains("exactly one"), "{m}");
    let m = bad(
        &e,
        json!({"aggs": {"x": {"geo_centroid": {"field": "loc"}}}}),
    );
    assert!(m.contains("geo_centroid"), "{m}");
    let m = bad(&e, json!({"query": "running"}));
    assert!(m.contains("object"), "{m}");
    let m = bad(&e, json!({"sort": [{"price": {"order": "sideways"}}]}));
    assert!(m.contains("asc or desc"), "{m}");
}

#[tokio::test]
async fn count_mapping_and_indices() {
    let dir = tempfile::tempdir().unwrap();
    let (_ix, e) = products(dir.path()).await;
    let c = e
        .count(
            &["products".to_string()],
            &json!({"query": {"match": {"title": "shoes"}}}),
        )
        .unwrap();
    assert_eq!(c["count"], 2);
    assert_eq!(
        e.count(&["products".to_string()], &Value::Null).unwrap()["count"],
        6
    );
    let m = e.mapping("products").unwrap();
    let props = &m["products"]["mappings"]["properties"];
    assert_eq!(props["title"]["type"], "text");
    assert_eq!(props["title"]["fields"]["keyword"]["type"], "keyword");
    assert_eq!(props["price"]["type"], "double");
    assert_eq!(props["created"]["type"], "date");
    assert_eq!(props["stock"]["type"], "boolean");
    assert_eq!(props["brand"]["properties"]["name"]["type"], "text");
    assert_eq!(props["_timestamp"]["type"], "date");
    let idx = e.indices();
    assert_eq!(idx.len(), 1);
    assert_eq!(
        (idx[0].topic.as_str(), idx[0].partitions, idx[0].docs),
        ("products", 2, 6)
    );
    assert!(idx[0].size_bytes > 0);
}

#[tokio::test]
async fn several_topics_merge_by_score() {
    let dir = tempfile::tempdir().unwrap();
    let (ix, e) = products(dir.path()).await;
    let cfg = config(&[("searchable.enabled", "true")]);
    ix.open_partition("reviews", 0, &cfg, 0).await.unwrap();
    feed(
        &ix,
        "reviews",
        0,
        &[rec(
            0,
            None,
            Some(r#"{"title": "running running running socks review"}"#),
        )],
    )
    .await;
    let r = e
        .search(
            &["products".to_string(), "reviews".to_string()],
            &json!({"query": {"match": {"title": "socks"}}}),
        )
        .unwrap();
    assert_eq!(total(&r), 2);
    let indexes: HashSet<&str> = r["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_index"].as_str().unwrap())
        .collect();
    assert_eq!(indexes, ["products", "reviews"].into_iter().collect());
    assert_eq!(r["_shards"]["total"], 3);
}

#[tokio::test]
async fn checkpoint_survives_reopen_and_replay_adds_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[("searchable.enabled", "true")]);
    {
        let ix = SearchIndexer::new(dir.path());
        assert_eq!(ix.open_partition("t", 0, &cfg, 0).await.unwrap(), 0);
        feed(
            &ix,
            "t",
            0,
            &[
                rec(0, None, Some(r#"{"m": "alpha"}"#)),
                rec(1, None, Some(r#"{"m": "beta"}"#)),
            ],
        )
        .await;
        assert_eq!(ix.persist("t", 0).await.unwrap(), 2);
        // Indexed but never published or persisted: lost in a crash, replayed from the log.
        ix.index(RecordRun {
            topic: "t",
            partition: 0,
            records: &[rec(2, None, Some(r#"{"m": "gamma"}"#))],
            next_offset: 3,
        })
        .await
        .unwrap();
    }
    let ix = Arc::new(SearchIndexer::new(dir.path()));
    assert_eq!(ix.open_partition("t", 0, &cfg, 0).await.unwrap(), 2);
    // The pipeline replays from 1 (overlapping what is stored): offset 1 must not be added twice.
    feed(
        &ix,
        "t",
        0,
        &[
            rec(1, None, Some(r#"{"m": "beta"}"#)),
            rec(2, None, Some(r#"{"m": "gamma"}"#)),
        ],
    )
    .await;
    let e = SearchEngine::new(ix.clone());
    let r = e.search(&["t".to_string()], &json!({})).unwrap();
    assert_eq!(total(&r), 3);
    assert_eq!(ix.persist("t", 0).await.unwrap(), 3);
}

#[tokio::test]
async fn retention_compaction_and_drop_remove_documents() {
    let dir = tempfile::tempdir().unwrap();
    let ix = Arc::new(SearchIndexer::new(dir.path()));
    let e = SearchEngine::new(ix.clone());
    let compacted = config(&[
        ("searchable.enabled", "true"),
        ("cleanup.policy", "compact"),
    ]);
    ix.open_partition("users", 0, &compacted, 0).await.unwrap();
    feed(
        &ix,
        "users",
        0,
        &[
            rec(0, Some("u1"), Some(r#"{"name": "old alice"}"#)),
            rec(1, Some("u2"), Some(r#"{"name": "bob"}"#)),
            rec(2, Some("u1"), Some(r#"{"name": "new alice"}"#)),
        ],
    )
    .await;
    let r = e
        .search(
            &["users".to_string()],
            &json!({"query": {"match": {"name": "alice"}}}),
        )
        .unwrap();
    assert_eq!(
        id_set(&r),
        set(&["0-2"]),
        "a newer value for a key supersedes the older"
    );
    feed(&ix, "users", 0, &[rec(3, Some("u2"), None)]).await;
    let r = e.search(&["users".to_string()], &json!({})).unwrap();
    assert_eq!(id_set(&r), set(&["0-2"]), "a tombstone deletes");
    // Counting without hits skips scoring, not the deletions.
    for query in [
        json!({"match_all": {}}),
        json!({"exists": {"field": "name"}}),
        json!({"match": {"name": "alice"}}),
    ] {
        let counted = e
            .count(&["users".to_string()], &json!({"query": query}))
            .unwrap();
        assert_eq!(counted["count"], 1, "{query}");
    }

    let plain = config(&[("searchable.enabled", "true")]);
    ix.open_partition("logs", 0, &plain, 0).await.unwrap();
    let recs: Vec<IndexRecord> = (0..5)
        .map(|i| rec(i, Some("same"), Some(&format!(r#"{{"n": {i}}}"#))))
        .collect();
    feed(&ix, "logs", 0, &recs).await;
    assert_eq!(
        total(&e.search(&["logs".to_string()], &json!({})).unwrap()),
        5,
        "keys do not supersede without compaction"
    );
    ix.forget_before("logs", 0, 3).await.unwrap();
    ix.publish("logs", 0).await.unwrap();
    assert_eq!(
        id_set(&e.search(&["logs".to_string()], &json!({})).unwrap()),
        set(&["0-3", "0-4"])
    );
    let counted = e
        .search(
            &["logs".to_string()],
            &json!({"size": 0, "query": {"range": {"n": {"gte": 1}}}}),
        )
        .unwrap();
    assert_eq!(total(&counted), 2, "size 0 counts live documents only");
    // Reopening with a log start past the checkpoint drops what the log no longer has.
    ix.close_partition("logs", 0).await.unwrap();
    assert_eq!(ix.open_partition("logs", 0, &plain, 4).await.unwrap(), 5);
    assert_eq!(
        id_set(&e.search(&["logs".to_string()], &json!({})).unwrap()),
        set(&["0-4"])
    );

    ix.drop_topic("logs").await.unwrap();
    assert!(!dir.path().join("logs").exists());
    assert_eq!(
        total(&e.search(&["logs".to_string()], &json!({})).unwrap()),
        0
    );
}

#[tokio::test]
async fn search_fields_restrict_text_indexing() {
    let dir = tempfile::tempdir().unwrap();
    let ix = Arc::new(SearchIndexer::new(dir.path()));
    let e = SearchEngine::new(ix.clone());
    let cfg = config(&[("searchable.enabled", "true"), ("search.fields", "title")]);
    ix.open_partition("t", 0, &cfg, 0).await.unwrap();
    feed(
        &ix,
        "t",
        0,
        &[rec(
            0,
            None,
            Some(r#"{"title": "wing flutter", "notes": "secret wing"}"#),
        )],
    )
    .await;
    let q = |q: Value| {
        total(
            &e.search(&["t".to_string()], &json!({ "query": q }))
                .unwrap(),
        )
    };
    assert_eq!(q(json!({"match": {"title": "wing"}})), 1);
    assert_eq!(q(json!({"match": {"notes": "secret"}})), 0);
    assert_eq!(q(json!({"match": {"_all": "secret"}})), 0);
    // Exact values are still there for filters.
    assert_eq!(q(json!({"term": {"notes.keyword": "secret wing"}})), 1);
}

#[tokio::test]
async fn match_normalises_by_the_fields_own_length() {
    let dir = tempfile::tempdir().unwrap();
    let ix = Arc::new(SearchIndexer::new(dir.path()));
    let e = SearchEngine::new(ix.clone());
    let cfg = config(&[("searchable.enabled", "true")]);
    ix.open_partition("t", 0, &cfg, 0).await.unwrap();
    // Same title term frequency; 0-0 has a short title but a long body, 0-1 a long title and
    // no body. Elasticsearch normalises by the title's length, so the short title wins.
    let long_body = "unrelated words ".repeat(200);
    feed(
        &ix,
        "t",
        0,
        &[
            rec(
                0,
                None,
                Some(&json!({"title": "wing", "body": long_body}).to_string()),
            ),
            rec(
                1,
                None,
                Some(&json!({"title": "wing tip vortex drag reduction study"}).to_string()),
            ),
        ],
    )
    .await;
    let r = e
        .search(
            &["t".to_string()],
            &json!({"query": {"match": {"title": "wing"}}}),
        )
        .unwrap();
    assert_eq!(ids(&r), vec!["0-0", "0-1"]);
    let s: Vec<f64> = r["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_score"].as_f64().unwrap())
        .collect();
    assert!(s[0] > s[1], "{s:?}");
}

#[tokio::test]
async fn a_small_top_of_many_matches_is_the_head_of_the_full_ranking() {
    // Enough matches that the collector trims many times (and skips documents scoring below
    // what it keeps), with scores that vary and tie: the top `size` must be exactly the head
    // of the complete ranking, ties broken by partition and offset, and every match counted.
    let dir = tempfile::tempdir().unwrap();
    let ix = Arc::new(SearchIndexer::new(dir.path()));
    let cfg = config(&[("searchable.enabled", "true")]);
    for p in 0..2 {
        ix.open_partition("many", p, &cfg, 0).await.unwrap();
        let records: Vec<IndexRecord> = (0..700)
            .map(|i| {
                // 13 × 17 mixes of term frequency and field length: the best ones first
                // appear after the collector's first trims.
                let hits = "parcel ".repeat(1 + (i * 7 + p as usize * 3) % 13);
                let filler = "window ".repeat((i * 5) % 17);
                let text = json!({"text": format!("{hits}{filler}")}).to_string();
                rec(i as i64, None, Some(&text))
            })
            .collect();
        feed(&ix, "many", p, &records).await;
    }
    let e = SearchEngine::new(ix);
    let run = |body: Value| {
        e.search(&["many".to_string()], &body)
            .unwrap_or_else(|err| panic!("{body}: {err}"))
    };
    // One term, and two (whose frequencies and lengths both vary): the pruning bound has to
    // hold for a sum over groups as well.
    for query in [
        json!({"match": {"text": "parcel"}}),
        json!({"match": {"text": "parcel window"}}),
    ] {
        top_is_head_of_ranking(&run, &query);
    }
}

fn top_is_head_of_ranking(run: &dyn Fn(Value) -> Value, query: &Value) {
    let full = run(json!({"query": query, "size": 1400}));
    assert_eq!(total(&full), 1400);
    let ranking = ids(&full);
    // min_score turns pruning off: every match is scored, the reference order.
    let exhaustive = run(json!({"query": query, "size": 1400, "min_score": 0.0}));
    assert_eq!(ids(&exhaustive), ranking, "{query}");
    for sort in [json!(null), json!([{"_score": "desc"}])] {
        for (from, size) in [(0, 10), (0, 1), (10, 10), (37, 25)] {
            let mut body = json!({"query": query, "from": from, "size": size});
            if !sort.is_null() {
                body["sort"] = sort.clone();
            }
            let r = run(body.clone());
            assert_eq!(total(&r), 1400);
            let head = ranking[from..from + size].to_vec();
            assert_eq!(ids(&r), head, "{query} from {from} size {size} sort {sort}");
            // Without totals whole blocks are skipped (block-max WAND): the same hits.
            body["track_total_hits"] = json!(false);
            let r = run(body);
            assert!(r["hits"].get("total").is_none(), "{r}");
            assert_eq!(
                ids(&r),
                head,
                "{query} no totals, from {from} size {size} sort {sort}"
            );
        }
    }
}

#[tokio::test]
async fn conjunctions_skip_ahead_and_match_exactly() {
    // A rare clause drives an intersection and the common one is sought to its documents
    // through skip data: the matches must be exactly those holding both (and, for a
    // minimum_should_match, enough) words, over posting lists longer than one block.
    let dir = tempfile::tempdir().unwrap();
    let ix = Arc::new(SearchIndexer::new(dir.path()));
    let cfg = config(&[("searchable.enabled", "true")]);
    let words = ["amber", "basalt", "cobalt", "dune"];
    // Word w is in document i when i is a multiple of the w-th of these (amber in every
    // second, dune in every 97th).
    let every = [2usize, 3, 11, 97];
    let has = |i: usize, w: usize| i.is_multiple_of(every[w]);
    let mut expected: BTreeMap<&str, HashSet<String>> = BTreeMap::new();
    for p in 0..2 {
        ix.open_partition("conj", p, &cfg, 0).await.unwrap();
        let records: Vec<IndexRecord> = (0..3000usize)
            .map(|i| {
                let present: Vec<&str> = (0..4).filter(|&w| has(i, w)).map(|w| words[w]).collect();
                let id = format!("{p}-{i}");
                let n = present.len();
                if present.contains(&"dune") && present.contains(&"amber") {
                    expected.entry("dune+amber").or_default().insert(id.clone());
                }
                if present.contains(&"cobalt") && present.contains(&"basalt") {
                    expected
                        .entry("cobalt+basalt")
                        .or_default()
                        .insert(id.clone());
                }
                if n >= 3 {
                    expected
                        .entry("three of four")
                        .or_default()
                        .insert(id.clone());
                }
                let text = json!({"text": format!("filler {}", present.join(" "))}).to_string();
                rec(i as i64, None, Some(&text))
            })
            .collect();
        feed(&ix, "conj", p, &records).await;
    }
    let e = SearchEngine::new(ix);
    let run = |query: Value| {
        let body = json!({"query": query, "size": 10000});
        e.search(&["conj".to_string()], &body)
            .unwrap_or_else(|err| panic!("{body}: {err}"))
    };
    let cases = [
        (
            "dune+amber",
            json!({"bool": {"must": [{"match": {"text": "amber"}}, {"match": {"text": "dune"}}]}}),
        ),
        (
            "cobalt+basalt",
            json!({"match": {"text": {"query": "basalt cobalt", "operator": "and"}}}),
        ),
        (
            "three of four",
            json!({"match": {"text": {"query": "amber basalt cobalt dune", "minimum_should_match": 3}}}),
        ),
    ];
    for (name, query) in cases {
        let want = &expected[name];
        let r = run(query);
        assert_eq!(total(&r), want.len() as u64, "{name}");
        assert_eq!(&id_set(&r), want, "{name}");
    }
}
