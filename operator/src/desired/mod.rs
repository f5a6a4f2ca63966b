//! Desired state: pure functions from a `ChronikCluster` (plus the few facts the reconciler has
//! decided, in [`Inputs`]) to the Kubernetes objects that run it. No I/O happens here, so every
//! object and every spec field that shapes it is unit-tested without an API server.

mod config_map;
mod pdb;
mod services;
mod stateful_set;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::ChronikCluster;

pub use config_map::{config_hash, config_map};
pub use pdb::pod_disruption_budget;
pub use services::{client_service, headless_service};
pub use stateful_set::stateful_set;

/// Kafka wire protocol port (SPEC 2).
pub const KAFKA_PORT: i32 = 9092;
/// Unified HTTP API port: /health, /ready, /admin (SPEC 2).
pub const HTTP_PORT: i32 = 6092;
/// Raft and replication gRPC port (SPEC 2).
pub const CLUSTER_PORT: i32 = 5001;
/// Where each broker's volume is mounted; CHRONIK_DATA_DIR points here.
pub const DATA_DIR: &str = "/var/lib/chronik";
/// Pod template annotation carrying the hash of the broker configuration: a new hash changes
/// the template, which is what makes a config-only change roll the brokers.
pub const CONFIG_HASH_ANNOTATION: &str = "chronik.io/config-hash";
/// Label the StatefulSet controller puts on each pod with its ordinal (Kubernetes 1.28+).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Field manager for server-side apply; owning fields under one name keeps applies idempotent.
pub const FIELD_MANAGER: &str = "chronik-operator";

/// Facts the reconciler decides that are not in the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// StatefulSet replicas to apply now: lags the spec while brokers drain before a shrink.
    pub replicas: i32,
    /// Brokers named in CHRONIK_PEERS: the first cluster's size, fixed so that scaling never
    /// rewrites the pod template.
    pub bootstrap_voters: i32,
}

impl Inputs {
    /// Inputs for a cluster that is exactly as its spec says (first creation).
    pub fn from_spec(cluster: &ChronikCluster) -> Self {
        Inputs {
            replicas: cluster.spec.replicas,
            bootstrap_voters: cluster.spec.replicas,
        }
    }
}

/// Every object the operator applies for one cluster.
#[derive(Clone, Debug)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub client_service: Service,
    pub stateful_set: StatefulSet,
    pub pod_disruption_budget: PodDisruptionBudget,
}

/// Builds every object for `cluster`.
pub fn desired(cluster: &ChronikCluster, inputs: &Inputs) -> Desired {
    let config_map = config_map(cluster);
    let hash = config_hash(&config_map);
    Desired {
        headless_service: headless_service(cluster),
        client_service: client_service(cluster),
        stateful_set: stateful_set(cluster, inputs, &hash),
        pod_disruption_budget: pod_disruption_budget(cluster),
        config_map,
    }
}

/// Names of the objects derived from one cluster name, so builders and reconciler agree.
pub struct Names;

impl Names {
    /// StatefulSet and pod name prefix; also the client Service, so clients use the cluster name.
    pub fn stateful_set(cluster: &ChronikCluster) -> String {
        cluster.name_any()
    }
    pub fn client_service(cluster: &ChronikCluster) -> String {
        cluster.name_any()
    }
    /// Headless Service that gives each broker a stable DNS name for Raft peers.
    pub fn headless_service(cluster: &ChronikCluster) -> String {
        format!("{}-peers", cluster.name_any())
    }
    pub fn config_map(cluster: &ChronikCluster) -> String {
        format!("{}-config", cluster.name_any())
    }
    pub fn pdb(cluster: &ChronikCluster) -> String {
        cluster.name_any()
    }
    /// Pod of broker `id` (ordinals start at 1, so the ordinal is the node id).
    pub fn pod(cluster: &ChronikCluster, id: i32) -> String {
        format!("{}-{id}", cluster.name_any())
    }
    /// Stable DNS name of broker `id`, through the headless Service.
    pub fn pod_host(cluster: &ChronikCluster, id: i32) -> String {
        format!(
            "{}.{}.{}.svc.{}",
            Names::pod(cluster, id),
            Names::headless_service(cluster),
            namespace(cluster),
            cluster.spec.cluster_domain
        )
    }
    /// In-cluster base URL of the HTTP API through the client Service (any broker answers
    /// /admin); https when the brokers serve TLS, whose certificate must then name this host.
    pub fn admin_url(cluster: &ChronikCluster) -> String {
        let tls = cluster
            .spec
            .auth
            .as_ref()
            .is_some_and(|a| a.tls_secret.is_some());
        format!(
            "{}://{}.{}.svc.{}:{HTTP_PORT}",
            if tls { "https" } else { "http" },
            Names::client_service(cluster),
            namespace(cluster),
            cluster.spec.cluster_domain
        )
    }
}

/// The cluster's namespace; a namespaced resource always has one once stored.
pub fn namespace(cluster: &ChronikCluster) -> String {
    cluster.namespace().unwrap_or_else(|| "default".to_string())
}

/// Labels that select this cluster's broker pods. Kept small and immutable: a StatefulSet's
/// selector can never change.
pub fn selector_labels(cluster: &ChronikCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "chronik".to_string()),
        ("app.kubernetes.io/instance".to_string(), cluster.name_any()),
    ])
}

/// Selector labels plus the descriptive ones every object carries.
pub fn labels(cluster: &ChronikCluster) -> BTreeMap<String, String> {
    let mut l = selector_labels(cluster);
    l.insert(
        "app.kubernetes.io/component".to_string(),
        "broker".to_string(),
    );
    l.insert(
        "app.kubernetes.io/managed-by".to_string(),
        FIELD_MANAGER.to_string(),
    );
    l
}

/// The label selector string for list calls.
pub fn selector_string(cluster: &ChronikCluster) -> String {
    selector_labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Owner reference that makes Kubernetes garbage-collect the object with its cluster.
pub fn owner_reference(cluster: &ChronikCluster) -> OwnerReference {
    // A stored object always has uid and name; a builder given an unstored one still yields a
    // reference (with empty uid) rather than panicking, which keeps builders total.
    cluster
        .controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: ChronikCluster::api_version(&()).to_string(),
            kind: ChronikCluster::kind(&()).to_string(),
            name: cluster.name_any(),
            uid: String::new(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
}

/// Metadata shared by every owned object.
pub fn object_meta(cluster: &ChronikCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(cluster)),
        labels: Some(labels(cluster)),
        owner_references: Some(vec![owner_reference(cluster)]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod test_cluster {
    use super::*;
    use crate::crd::ChronikClusterSpec;

    /// A stored-looking cluster named `demo` in namespace `data`, with `spec_yaml` as its spec.
    pub fn cluster(spec_yaml: &str) -> ChronikCluster {
        let spec: ChronikClusterSpec = serde_yaml::from_str(spec_yaml).expect("spec parses");
        let mut c = ChronikCluster::new("demo", spec);
        c.metadata.namespace = Some("data".to_string());
        c.metadata.uid = Some("uid-1".to_string());
        c.metadata.generation = Some(1);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::test_cluster::cluster;
    use super::*;

    #[test]
    fn every_object_is_owned_by_the_cluster_and_lives_in_its_namespace() {
        let c = cluster("{}");
        let d = desired(&c, &Inputs::from_spec(&c));
        let metas = [
            &d.config_map.metadata,
            &d.headless_service.metadata,
            &d.client_service.metadata,
            &d.stateful_set.metadata,
            &d.pod_disruption_budget.metadata,
        ];
        for m in metas {
            let owners = m.owner_references.as_ref().expect("owner references");
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].kind, "ChronikCluster");
            assert_eq!(owners[0].name, "demo");
            assert_eq!(owners[0].uid, "uid-1");
            assert_eq!(owners[0].controller, Some(true));
            assert_eq!(m.namespace.as_deref(), Some("data"));
            assert_eq!(
                m.labels.as_ref().unwrap()["app.kubernetes.io/instance"],
                "demo"
            );
        }
    }

    #[test]
    fn pod_host_is_the_stable_dns_name_through_the_headless_service() {
        let c = cluster("{}");
        assert_eq!(
            Names::pod_host(&c, 2),
            "demo-2.demo-peers.data.svc.cluster.local"
        );
        let c = cluster("clusterDomain: corp.internal");
        assert_eq!(
            Names::pod_host(&c, 1),
            "demo-1.demo-peers.data.svc.corp.internal"
        );
    }

    #[test]
    fn admin_url_goes_through_the_client_service_and_follows_tls() {
        assert_eq!(
            Names::admin_url(&cluster("{}")),
            "http://demo.data.svc.cluster.local:6092"
        );
        let c = cluster("auth: {tlsSecret: certs}");
        assert_eq!(
            Names::admin_url(&c),
            "https://demo.data.svc.cluster.local:6092"
        );
    }
}
