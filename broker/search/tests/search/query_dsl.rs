//! The query DSL clauses, each against fixtures with known answers.

use super::*;

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

/// Keyword values longer than the whole-term limit are indexed by head and hash; every
/// keyword query must still see the whole value.
#[tokio::test]
async fn long_keyword_values_are_found_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ix = Arc::new(SearchIndexer::new(dir.path()));
    let cfg = config(&[("searchable.enabled", "true")]);
    ix.open_partition("logs", 0, &cfg, 0).await.unwrap();
    let a = "connection reset by peer while reading response header from upstream 10.0.0.1";
    let b = "connection reset by peer while reading response header from upstream 10.0.0.2";
    let values = [
        json!({"msg": a}),
        json!({"msg": b}),
        json!({"msg": "short one"}),
        json!({"msg": "a\u{0}b"}),
        json!({"msg": "x".repeat(300)}),
    ];
    let records: Vec<IndexRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| rec(i as i64, None, Some(&v.to_string())))
        .collect();
    feed(&ix, "logs", 0, &records).await;
    let e = SearchEngine::new(ix.clone());
    let run = |body: Value| {
        e.search(&["logs".to_string()], &body)
            .unwrap_or_else(|err| panic!("{body}: {err}"))
    };
    let q = |query: Value| id_set(&run(json!({"query": query, "size": 10})));

    assert_eq!(q(json!({"term": {"msg.keyword": a}})), set(&["0-0"]));
    assert_eq!(q(json!({"term": {"msg.keyword": b}})), set(&["0-1"]));
    assert_eq!(q(json!({"match": {"msg.keyword": b}})), set(&["0-1"]));
    assert_eq!(
        q(json!({"terms": {"msg.keyword": [a, "short one"]}})),
        set(&["0-0", "0-2"])
    );
    assert_eq!(
        q(json!({"term": {"msg.keyword": "a\u{0}b"}})),
        set(&["0-3"])
    );
    // Prefixes inside the head, past it, and past it with a different tail.
    assert_eq!(
        q(json!({"prefix": {"msg.keyword": "connection reset"}})),
        set(&["0-0", "0-1"])
    );
    assert_eq!(
        q(json!({"prefix": {"msg.keyword": &a[..60]}})),
        set(&["0-0", "0-1"])
    );
    assert_eq!(q(json!({"prefix": {"msg.keyword": a}})), set(&["0-0"]));
    assert_eq!(
        q(json!({"prefix": {"msg.keyword": format!("{}X", &a[..60])}})),
        set(&[])
    );
    assert_eq!(
        q(json!({"prefix": {"msg.keyword": "a\u{0}"}})),
        set(&["0-3"])
    );
    // Wildcards that only the tail can decide, and one that the hash must not satisfy.
    assert_eq!(
        q(json!({"wildcard": {"msg.keyword": "*10.0.0.2"}})),
        set(&["0-1"])
    );
    assert_eq!(
        q(json!({"wildcard": {"msg.keyword": "connection*0.0.1"}})),
        set(&["0-0"])
    );
    assert_eq!(
        q(
            json!({"wildcard": {"msg.keyword": {"value": "CONNECTION*10.0.0.2", "case_insensitive": true}}})
        ),
        set(&["0-1"])
    );
    assert_eq!(
        q(json!({"wildcard": {"msg.keyword": "*"}})),
        set(&["0-0", "0-1", "0-2", "0-3"])
    );
    assert_eq!(
        q(json!({"wildcard": {"msg.keyword": "*0*0*0*0*0*0*"}})),
        set(&[])
    );
    // Range, sort and aggregations read the raw value from the fast column.
    assert_eq!(
        q(json!({"range": {"msg.keyword": {"gt": a, "lte": b}}})),
        set(&["0-1"])
    );
    let sorted = run(
        json!({"query": {"exists": {"field": "msg.keyword"}}, "sort": [{"msg.keyword": "asc"}]}),
    );
    assert_eq!(ids(&sorted)[..4], ["0-3", "0-0", "0-1", "0-2"]);
    let aggs = run(json!({"size": 0, "aggs": {"m": {"terms": {"field": "msg.keyword"}}}}));
    let keys: HashSet<String> = aggs["aggregations"]["m"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["key"].as_str().unwrap().to_string())
        .collect();
    assert!(keys.contains(a) && keys.contains(b), "{aggs}");
}
