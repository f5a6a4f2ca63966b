//! SQL metrics (Prometheus), one process-wide set rendered by the HTTP API's /metrics.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Debug)]
pub struct SqlMetrics {
    pub registry: Registry,
    /// Queries answered, by outcome (ok, bad_query, timeout, error).
    pub queries: IntCounterVec,
    pub query_seconds: Histogram,
    /// Bytes held by the hot buffers of this node.
    pub hot_bytes: IntGauge,
    /// Hot buffers sealed into Parquet files.
    pub seals: prometheus::IntCounter,
}

static METRICS: LazyLock<SqlMetrics> = LazyLock::new(SqlMetrics::new);

pub fn metrics() -> &'static SqlMetrics {
    &METRICS
}

impl SqlMetrics {
    fn new() -> Self {
        let registry = Registry::new();
        let queries = IntCounterVec::new(
            Opts::new(
                "chronik_sql_queries_total",
                "SQL queries answered, by outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let query_seconds = Histogram::with_opts(
            HistogramOpts::new("chronik_sql_query_duration_seconds", "SQL query latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ],
            ),
        )
        .expect("static metric definition");
        let hot_bytes = IntGauge::new(
            "chronik_sql_hot_buffer_bytes",
            "bytes held by the in-memory hot buffers of columnar topics",
        )
        .expect("static metric definition");
        let seals = prometheus::IntCounter::new(
            "chronik_sql_seals_total",
            "hot buffers sealed into Parquet files",
        )
        .expect("static metric definition");
        for c in [
            Box::new(queries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(query_seconds.clone()),
            Box::new(hot_bytes.clone()),
            Box::new(seals.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        SqlMetrics {
            registry,
            queries,
            query_seconds,
            hot_bytes,
            seals,
        }
    }
}
