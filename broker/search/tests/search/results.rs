//! The response: paging, sorting, _source and highlight, aggregations, errors, several topics.

use super::*;

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
