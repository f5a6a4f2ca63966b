//! Scoring and collection: per-field lengths, pruned tops against full rankings, conjunctions.

use super::*;

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
