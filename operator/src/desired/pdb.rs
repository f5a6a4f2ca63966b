//! The PodDisruptionBudget: voluntary disruptions (node drains) take one broker at a time, the
//! same pace the operator's own rolling update keeps, so Raft keeps its quorum.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{object_meta, selector_labels, Names};
use crate::crd::ChronikCluster;

pub fn pod_disruption_budget(cluster: &ChronikCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: object_meta(cluster, Names::pdb(cluster)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_cluster::cluster;

    #[test]
    fn pdb_allows_one_broker_down_and_selects_the_clusters_pods() {
        let c = cluster("{}");
        let p = pod_disruption_budget(&c);
        assert_eq!(p.metadata.name.as_deref(), Some("demo"));
        let spec = p.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap(),
            selector_labels(&c)
        );
    }
}
