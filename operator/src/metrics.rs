//! Prometheus metrics of the operator, served on /metrics by the binary.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Counters a person on call looks at first: is it reconciling, is it failing, why.
#[derive(Debug)]
pub struct Metrics {
    pub reconciliations: Counter,
    pub failures: Family<ReasonLabel, Counter>,
    pub reconcile_seconds: Histogram,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            reconciliations: Counter::default(),
            failures: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            leader: Gauge::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "chronik_operator_reconciliations",
            "reconciles started",
            self.reconciliations.clone(),
        );
        registry.register(
            "chronik_operator_reconcile_failures",
            "reconciles that failed, by reason",
            self.failures.clone(),
        );
        registry.register(
            "chronik_operator_reconcile_duration_seconds",
            "time per reconcile",
            self.reconcile_seconds.clone(),
        );
        registry.register(
            "chronik_operator_leader",
            "1 when this replica is the leader",
            self.leader.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_in_the_prometheus_text_format() {
        let m = Metrics::new();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.reconciliations.inc();
        m.failures
            .get_or_create(&ReasonLabel {
                reason: "AdminApiUnavailable".into(),
            })
            .inc();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("chronik_operator_reconciliations_total 1"),
            "{out}"
        );
        assert!(
            out.contains(
                r#"chronik_operator_reconcile_failures_total{reason="AdminApiUnavailable"} 1"#
            ),
            "{out}"
        );
    }
}
