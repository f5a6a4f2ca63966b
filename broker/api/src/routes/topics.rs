//! Topic administration over HTTP: GET/POST /topics, GET/DELETE /topics/{name},
//! PATCH /topics/{name}/config. Every change goes through the same planning and metadata
//! commands as CreateTopics, DeleteTopics and IncrementalAlterConfigs.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chronik_meta::plan::{plan_incremental_configs, ConfigOp, CreateTopic};
use chronik_meta::{topic_config, TopicMeta};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{ApiError, ApiState};

pub(crate) async fn list(State(state): State<ApiState>) -> Json<Value> {
    let meta = state.broker.meta.state();
    Json(Value::Array(meta.topics.values().map(summary).collect()))
}

fn summary(t: &TopicMeta) -> Value {
    json!({
        "name": t.name,
        "id": t.id.to_string(),
        "partitions": t.partitions.len(),
        "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
        "config": t.configs,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTopicBody {
    name: String,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    #[serde(default)]
    config: BTreeMap<String, Value>,
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    body: Result<Json<CreateTopicBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let broker = &state.broker;
    let brokers = broker.meta.state().brokers.len().max(1) as i16;
    let req = CreateTopic {
        name: body.name.clone(),
        partitions: body.partitions.unwrap_or(broker.config.default_partitions),
        replication_factor: body
            .replication_factor
            .unwrap_or(broker.config.default_replication_factor.min(brokers)),
        assignments: None,
        configs: body
            .config
            .iter()
            .map(|(k, v)| Ok((k.clone(), config_value(k, v)?.unwrap_or_default())))
            .collect::<Result<_, ApiError>>()?,
    };
    broker.create_topic(&req, false).await?;
    tracing::info!(topic = %body.name, "created topic over http");
    let meta = broker.meta.state();
    let topic = meta.topic(&body.name)?;
    Ok((StatusCode::CREATED, Json(summary(topic))))
}

pub(crate) async fn describe(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let meta = state.broker.meta.state();
    let topic = meta.topic(&name)?;
    let partitions: Vec<Value> = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut v = json!({
                "partition": i,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
            });
            if let Ok(log) = state.broker.partition_log(topic, i as i32) {
                v["log_start_offset"] = json!(log.log_start_offset());
                v["high_watermark"] = json!(log.high_watermark());
                v["log_end_offset"] = json!(log.log_end_offset());
                v["size_bytes"] = json!(log.size_bytes());
            }
            v
        })
        .collect();
    let config: Map<String, Value> = topic_config::resolve_all(&topic.configs)
        .into_iter()
        .map(|c| {
            let source = match c.source {
                topic_config::ConfigSource::TopicOverride => "topic",
                topic_config::ConfigSource::Default => "default",
            };
            (
                c.name.to_string(),
                json!({"value": c.value, "source": source}),
            )
        })
        .collect();
    let mut out = summary(topic);
    out["partitions"] = Value::Array(partitions);
    out["config"] = Value::Object(config);
    Ok(Json(out))
}

pub(crate) async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.broker.delete_topic(&name).await?;
    tracing::info!(topic = %name, "deleted topic over http");
    Ok(StatusCode::NO_CONTENT)
}

/// A JSON merge patch of the topic's overrides: a value sets the key, `null` returns it to its
/// default.
pub(crate) async fn patch_config(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(patch) = body?;
    let meta = state.broker.meta.state();
    let current = meta.topic(&name)?.configs.clone();
    let ops = patch
        .iter()
        .map(|(k, v)| {
            Ok(match config_value(k, v)? {
                Some(value) => ConfigOp::Set(k.clone(), value),
                None => ConfigOp::Delete(k.clone()),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let next = plan_incremental_configs(&current, &ops)?;
    state.broker.set_topic_configs(&name, next.clone()).await?;
    Ok(Json(json!({"name": name, "config": next})))
}

/// Config values may be given as JSON strings, numbers or booleans; null means "unset".
fn config_value(key: &str, v: &Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(ApiError::BadRequest(format!(
            "config {key}: expected a string, number, boolean or null"
        ))),
    }
}
