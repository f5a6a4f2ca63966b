//! Route table. One file per endpoint family.

mod admin;
mod health;
mod metrics;
mod query;
pub(crate) mod search;
pub(crate) mod sql;
mod topics;
pub(crate) mod vector;

use axum::routing::{delete, get, patch, post};
use axum::Router;

use crate::{ApiError, ApiState};

pub(crate) fn router() -> Router<ApiState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/topics", get(topics::list).post(topics::create))
        .route(
            "/topics/{name}",
            get(topics::describe).delete(topics::remove),
        )
        .route("/topics/{name}/config", patch(topics::patch_config))
        .route("/_sql", post(sql::query))
        .route("/_sql/tables", get(sql::tables))
        .route("/_sql/tables/{table}", get(sql::table))
        .route("/admin/cluster", get(admin::status))
        .route("/admin/cluster/nodes", post(admin::add_node))
        .route("/admin/cluster/nodes/{id}", delete(admin::remove_node))
        .route("/_search", get(search::search_all).post(search::search_all))
        .route("/_cat/indices", get(search::cat_indices))
        .route(
            "/{topics}/_search",
            get(search::search_topics).post(search::search_topics),
        )
        .route("/{topics}/_count", get(search::count).post(search::count))
        .route("/{topics}/_mapping", get(search::mapping))
        .route("/_vector/{topic}/search", post(vector::search))
        .route("/_vector/{topic}/hybrid", post(vector::hybrid))
        .route("/_vector/{topic}/stats", get(vector::stats))
        .route("/v1/embeddings", post(vector::embeddings))
        .route("/_query", post(query::query))
        .fallback(not_found)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
