//! An index over time: checkpoints and replay, retention, compaction, dropping, search.fields.

use super::*;

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
