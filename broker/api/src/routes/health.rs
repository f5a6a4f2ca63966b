//! GET /health (the process is alive) and GET /ready (logs recovered, Kafka listener serving).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::{ApiError, ApiState};

pub(crate) async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn ready(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    if state.ready.load(Ordering::SeqCst) {
        Ok(Json(json!({"status": "ready"})))
    } else {
        Err(ApiError::Unavailable(
            "broker is starting: recovering logs".into(),
        ))
    }
}
