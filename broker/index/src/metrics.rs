//! Indexing metrics (Prometheus), one process-wide set like the Kafka listener's: partition
//! tasks update them once per read, never per record.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Debug)]
pub struct IndexMetrics {
    pub registry: Registry,
    /// Records between an index's position and the partition's high watermark.
    pub lag_records: IntGaugeVec,
    /// Records handed to each index.
    pub indexed_records: IntCounterVec,
    /// Indexer calls that failed (the partition is reopened and retried after a pause).
    pub failures: IntCounterVec,
}

static METRICS: LazyLock<IndexMetrics> = LazyLock::new(IndexMetrics::new);

/// The process-wide indexing metrics.
pub fn metrics() -> &'static IndexMetrics {
    &METRICS
}

impl IndexMetrics {
    fn new() -> Self {
        let registry = Registry::new();
        let lag_records = IntGaugeVec::new(
            Opts::new(
                "chronik_index_lag_records",
                "records acknowledged but not yet indexed, per topic, partition and index",
            ),
            &["topic", "partition", "index"],
        )
        .expect("static metric definition");
        let indexed_records = IntCounterVec::new(
            Opts::new(
                "chronik_index_records_total",
                "records handed to an index, per topic and index",
            ),
            &["topic", "index"],
        )
        .expect("static metric definition");
        let failures = IntCounterVec::new(
            Opts::new(
                "chronik_index_failures_total",
                "failed indexer calls, per topic and index",
            ),
            &["topic", "index"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(lag_records.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(indexed_records.clone()),
            Box::new(failures.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        IndexMetrics {
            registry,
            lag_records,
            indexed_records,
            failures,
        }
    }
}
