//! A broker refuses SQL over topics it hosts only some partitions of, instead of answering
//! from part of the data, and answers everything else as before.

use std::sync::Arc;

use chronik_sql::{Placement, SqlConfig, SqlError};

/// Broker 2 of a cluster where `orders` partitions 1 and 2 live elsewhere.
#[derive(Debug)]
struct Broker2;

impl Placement for Broker2 {
    fn node_id(&self) -> i32 {
        2
    }

    fn unhosted(&self) -> Vec<(String, Vec<(i32, i32)>)> {
        vec![("orders.v1".into(), vec![(1, 3), (2, 1), (4, 3)])]
    }
}

#[tokio::test]
async fn queries_over_partly_hosted_topics_are_refused_with_the_missing_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, engine) = chronik_sql::open(SqlConfig::new(dir.path().to_path_buf()));
    engine.set_placement(Arc::new(Broker2));
    for sql in [
        "SELECT COUNT(*) FROM orders_v1",
        "SELECT * FROM orders_v1_hot",
        "select city from orders_v1_latest",
        "SELECT a.x FROM (SELECT 1 AS x) a JOIN orders_v1_cold b ON a.x = b._partition",
    ] {
        match engine.execute(sql, None, None).await {
            Err(SqlError::NotHosted(m)) => {
                assert!(m.contains("'orders.v1'"), "{m}");
                assert!(m.contains("(1, 2, 4)"), "{m}");
                assert!(m.contains("broker 2"), "{m}");
                assert!(m.contains("brokers 1, 3"), "{m}");
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    // Queries that read no such topic run as before.
    let r = engine
        .execute("SELECT 1 + 1 AS two", None, None)
        .await
        .unwrap();
    assert_eq!(r.rows, 1);
    assert!(matches!(
        engine.execute("SELECT * FROM other", None, None).await,
        Err(SqlError::UnknownTable(t)) if t == "other"
    ));
    assert!(matches!(
        engine.execute("SELEC nonsense", None, None).await,
        Err(SqlError::BadQuery(_))
    ));
}
