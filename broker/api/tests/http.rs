//! The HTTP API as a client sees it: status codes, error shapes and effects on metadata.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use chronik_api::{router, ApiState};
use chronik_kafka::{Broker, KafkaConfig};
use chronik_log::{FlushPolicy, LogManager};
use chronik_meta::{BrokerInfo, Command, LocalMetadataStore, MetadataStore};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Api {
    state: ApiState,
    _dir: tempfile::TempDir,
}

async fn api(admin_key: Option<&str>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetadataStore> =
        Arc::new(LocalMetadataStore::open(dir.path().join("meta")).unwrap());
    meta.propose(Command::RegisterBroker(BrokerInfo {
        node_id: 1,
        host: "127.0.0.1".into(),
        port: 9092,
        rack: None,
    }))
    .await
    .unwrap();
    let logs = Arc::new(LogManager::open(dir.path().join("logs"), FlushPolicy::Os).unwrap());
    let broker = Arc::new(Broker::new(KafkaConfig::default(), meta, logs));
    Api {
        state: ApiState::new(broker, admin_key.map(String::from)),
        _dir: dir,
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<&str>,
        peer: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.unwrap_or("").to_string()))
            .unwrap();
        let peer: SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn local(&self, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.call(method, uri, body, "127.0.0.1:5000").await
    }
}

#[tokio::test]
async fn ready_only_after_start_up_completes() {
    let a = api(None).await;
    assert_eq!(
        a.local(Method::GET, "/health", None).await.0,
        StatusCode::OK
    );
    let (status, body) = a.local(Method::GET, "/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["type"], "unavailable");
    a.state.set_ready(true);
    assert_eq!(a.local(Method::GET, "/ready", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn topics_are_created_described_patched_and_deleted() {
    let a = api(None).await;
    let (status, body) = a
        .local(
            Method::POST,
            "/topics",
            Some(r#"{"name":"orders","partitions":3,"config":{"retention.ms":60000}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["partitions"], 3);
    let (status, body) = a.local(Method::GET, "/topics/orders", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(body["partitions"][0]["high_watermark"], 0);
    assert_eq!(
        body["config"]["retention.ms"],
        json!({"value": "60000", "source": "topic"})
    );
    let (status, body) = a
        .local(
            Method::PATCH,
            "/topics/orders/config",
            Some(r#"{"retention.ms":null,"cleanup.policy":"compact"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["config"], json!({"cleanup.policy": "compact"}));
    let state = a.state.broker.meta.state();
    assert_eq!(state.topic("orders").unwrap().configs.len(), 1);
    assert_eq!(
        a.local(Method::DELETE, "/topics/orders", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        a.local(Method::GET, "/topics/orders", None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_input_is_a_400_that_names_the_problem() {
    let a = api(None).await;
    let cases = [
        (Method::POST, "/topics", "{bad json", "JSON"),
        (Method::POST, "/topics", r#"{"nam":"x"}"#, "nam"),
        (
            Method::POST,
            "/topics",
            r#"{"name":"x","partitions":"three"}"#,
            "partitions",
        ),
        (Method::POST, "/topics", r#"{"name":"a b"}"#, "a b"),
        (
            Method::POST,
            "/topics",
            r#"{"name":"t","config":{"retention.mss":"1"}}"#,
            "retention.mss",
        ),
    ];
    for (method, uri, body, needle) in cases {
        let (status, resp) = a.local(method, uri, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {resp}");
        let reason = resp["error"]["reason"].as_str().unwrap();
        assert!(
            reason.contains(needle),
            "{reason:?} does not mention {needle:?}"
        );
    }
    a.local(Method::POST, "/topics", Some(r#"{"name":"t"}"#))
        .await;
    let (status, _) = a
        .local(Method::POST, "/topics", Some(r#"{"name":"t"}"#))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, resp) = a
        .local(
            Method::PATCH,
            "/topics/t/config",
            Some(r#"{"segment.bytes":"tiny"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(resp["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("segment.bytes"));
}

#[tokio::test]
async fn admin_is_loopback_only_without_a_key_and_key_guarded_with_one() {
    let open = api(None).await;
    assert_eq!(
        open.local(Method::GET, "/admin/cluster", None).await.0,
        StatusCode::OK
    );
    let (status, _) = open
        .call(Method::GET, "/admin/cluster", None, "10.1.2.3:4000")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let guarded = api(Some("s3cret")).await;
    assert_eq!(
        guarded.local(Method::GET, "/admin/cluster", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let mut req = Request::builder()
        .uri("/admin/cluster")
        .header("x-api-key", "s3cret")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("10.1.2.3:4000".parse::<SocketAddr>().unwrap()));
    let resp = router(guarded.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A store that does not replicate cannot add members; a body without the fields is a 400.
    let (status, body) = open
        .local(
            Method::POST,
            "/admin/cluster/nodes",
            Some(r#"{"node_id": 2, "address": "b:5001"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    let (status, body) = open
        .local(Method::POST, "/admin/cluster/nodes", Some("{}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_partition_gauges() {
    let a = api(None).await;
    a.local(
        Method::POST,
        "/topics",
        Some(r#"{"name":"m","partitions":2}"#),
    )
    .await;
    let state = a.state.broker.meta.state();
    a.state
        .broker
        .partition_log(state.topic("m").unwrap(), 1)
        .unwrap();
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let resp = router(a.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains(r#"chronik_partition_log_end_offset{partition="1",topic="m"} 0"#),
        "{text}"
    );
    assert!(text.contains("chronik_kafka_connections"), "{text}");
}
