//! Kafka service metrics (Prometheus). One process-wide set, because every connection task
//! records into it and the HTTP API renders it; partition gauges are read from the logs at
//! scrape time instead of being kept up to date on the hot path.

use std::sync::LazyLock;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Counters and histograms of the Kafka listener.
#[derive(Debug)]
pub struct KafkaMetrics {
    pub registry: Registry,
    /// Requests answered, by API.
    pub requests: IntCounterVec,
    /// Time from a request's frame being read to its response being written, by API.
    pub request_seconds: HistogramVec,
    /// Request frame bytes received, by API.
    pub request_bytes: IntCounterVec,
    /// Response frame bytes sent, by API.
    pub response_bytes: IntCounterVec,
    /// Connections open now.
    pub connections: IntGauge,
    /// Connections closed because of a bad frame or request.
    pub rejected_connections: IntCounter,
}

static METRICS: LazyLock<KafkaMetrics> = LazyLock::new(KafkaMetrics::new);

/// The process-wide Kafka metrics.
pub fn metrics() -> &'static KafkaMetrics {
    &METRICS
}

impl KafkaMetrics {
    fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("chronik_kafka_requests_total", "Kafka requests answered"),
            &["api"],
        )
        .expect("static metric definition");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "chronik_kafka_request_duration_seconds",
                "time from request read to response written",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
            &["api"],
        )
        .expect("static metric definition");
        let request_bytes = IntCounterVec::new(
            Opts::new(
                "chronik_kafka_request_bytes_total",
                "request bytes received",
            ),
            &["api"],
        )
        .expect("static metric definition");
        let response_bytes = IntCounterVec::new(
            Opts::new("chronik_kafka_response_bytes_total", "response bytes sent"),
            &["api"],
        )
        .expect("static metric definition");
        let connections =
            IntGauge::new("chronik_kafka_connections", "open Kafka client connections")
                .expect("static metric definition");
        let rejected_connections = IntCounter::new(
            "chronik_kafka_rejected_connections_total",
            "connections closed because of a malformed frame or request",
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(request_bytes.clone()),
            Box::new(response_bytes.clone()),
            Box::new(connections.clone()),
            Box::new(rejected_connections.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        KafkaMetrics {
            registry,
            requests,
            request_seconds,
            request_bytes,
            response_bytes,
            connections,
            rejected_connections,
        }
    }
}
