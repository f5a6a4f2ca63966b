//! GET /metrics: Prometheus text format. Kafka request metrics come from chronik-kafka's
//! registry; partition sizes and offsets are read from the logs at scrape time so the produce
//! path never updates a gauge.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::{ApiError, ApiState};

pub(crate) async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let partitions = partition_registry(&state).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut families = chronik_kafka::metrics().registry.gather();
    families.extend(chronik_index::metrics().registry.gather());
    if let Some(sql) = &state.sql {
        families.extend(sql.metric_families());
    }
    families.extend(partitions.gather());
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(CONTENT_TYPE, TextEncoder::new().format_type().to_string())],
        out,
    )
        .into_response())
}

fn partition_registry(state: &ApiState) -> prometheus::Result<Registry> {
    let registry = Registry::new();
    let labels = &["topic", "partition"];
    let gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let end = gauge(
        "chronik_partition_log_end_offset",
        "next offset to be written",
    )?;
    let hw = gauge(
        "chronik_partition_high_watermark",
        "offset consumers can read up to",
    )?;
    let start = gauge(
        "chronik_partition_log_start_offset",
        "first offset still stored",
    )?;
    let size = gauge("chronik_partition_size_bytes", "bytes stored on local disk")?;
    let meta = state.broker.meta.state();
    for topic in meta.topics.values() {
        for p in 0..topic.partitions.len() as i32 {
            let Some(log) = state.broker.logs.get(&topic.name, p) else {
                continue;
            };
            let partition = p.to_string();
            let l = [topic.name.as_str(), partition.as_str()];
            end.with_label_values(&l).set(log.log_end_offset());
            hw.with_label_values(&l).set(log.high_watermark());
            start.with_label_values(&l).set(log.log_start_offset());
            size.with_label_values(&l)
                .set(i64::try_from(log.size_bytes()).unwrap_or(i64::MAX));
        }
    }
    Ok(registry)
}
