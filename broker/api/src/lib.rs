//! The HTTP API on the unified port (6092): liveness and readiness, Prometheus metrics, topic
//! administration and cluster status, full-text and vector search and their fusion. Each endpoint family lives in its own file under
//! `routes/`; errors of every family become HTTP statuses in one place, [`ApiError`].
//!
//! Topic changes go through the same metadata commands as the Kafka admin APIs (via
//! chronik-kafka's [`Broker`]), so both doors always agree.

mod coverage;
mod error;
pub mod fusion;
mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::Router;
use chronik_kafka::Broker;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::ApiError;
pub use routes::search::{SearchBackend, SearchFailure, SearchIndexStats};
pub use routes::sql::{
    SqlAnswer, SqlColumn, SqlFailure, SqlFormat, SqlRequest, SqlService, SqlTable,
};
pub use routes::vector::{Embeddings, VectorBackend, VectorFailure, VectorHit, VectorSearch};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub broker: Arc<Broker>,
    /// Set once logs are recovered and the Kafka listener is accepting.
    pub ready: Arc<AtomicBool>,
    /// CHRONIK_ADMIN_API_KEY: required by /admin; without it /admin answers only on loopback.
    pub admin_api_key: Option<String>,
    /// Full-text search; `None` answers the search routes with 501.
    pub search: Option<Arc<dyn SearchBackend>>,
    /// Vector search and embeddings; `None` answers the vector routes with 501.
    pub vector: Option<Arc<dyn VectorBackend>>,
    /// The SQL engine behind /_sql; without one those routes answer 501.
    pub sql: Option<Arc<dyn SqlService>>,
}

impl ApiState {
    pub fn new(broker: Arc<Broker>, admin_api_key: Option<String>) -> Self {
        ApiState {
            broker,
            ready: Arc::new(AtomicBool::new(false)),
            admin_api_key,
            search: None,
            vector: None,
            sql: None,
        }
    }

    /// Serve the search routes from `backend`.
    pub fn with_search(mut self, backend: Arc<dyn SearchBackend>) -> Self {
        self.search = Some(backend);
        self
    }

    /// Serve the vector routes from `backend`.
    pub fn with_vector(mut self, backend: Arc<dyn VectorBackend>) -> Self {
        self.vector = Some(backend);
        self
    }

    /// Serve /_sql from `sql`.
    pub fn with_sql(mut self, sql: Arc<dyn SqlService>) -> Self {
        self.sql = Some(sql);
        self
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

pub fn router(state: ApiState) -> Router {
    routes::router().with_state(state)
}

/// Serve the API on `listener` until `shutdown` becomes true.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}
