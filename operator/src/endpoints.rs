//! The operator's own HTTP endpoints: /metrics for Prometheus, /healthz for liveness, /readyz
//! for readiness. Kept in the library so tests can serve them on 127.0.0.1:0.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Routes over `registry`; `/readyz` answers 200 once `ready` holds true.
pub fn router(registry: Arc<Registry>, ready: watch::Receiver<bool>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut out = String::new();
                    match prometheus_client::encoding::text::encode(&mut out, &registry) {
                        Ok(()) => (StatusCode::OK, out),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        // A standby replica (not leading) is ready too: it is healthy, and a Deployment rollout
        // must not wait on the election.
        .route(
            "/readyz",
            get(move || {
                let ready = *ready.borrow();
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    async fn get_path(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out[9..12].parse().unwrap();
        (code, out)
    }

    #[tokio::test]
    async fn endpoints_serve_metrics_health_and_readiness() {
        let metrics = Metrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.reconciliations.inc();
        let (tx, rx) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router(Arc::new(registry), rx))
                .await
                .unwrap();
        });

        assert_eq!(get_path(addr, "/healthz").await.0, 200);
        assert_eq!(
            get_path(addr, "/readyz").await.0,
            503,
            "not ready before start-up"
        );
        tx.send_replace(true);
        assert_eq!(get_path(addr, "/readyz").await.0, 200);
        let (code, body) = get_path(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            body.contains("chronik_operator_reconciliations_total 1"),
            "{body}"
        );
    }
}
