//! The two Services: headless (peer DNS for Raft) and client (Kafka and HTTP).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{object_meta, selector_labels, Names, CLUSTER_PORT, HTTP_PORT, KAFKA_PORT};
use crate::crd::ChronikCluster;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// Gives every broker the DNS name `<pod>.<name>-peers.<ns>.svc.<domain>`. Not-ready pods are
/// published because brokers must find each other to form Raft before any of them is ready.
pub fn headless_service(cluster: &ChronikCluster) -> Service {
    Service {
        metadata: object_meta(cluster, Names::headless_service(cluster)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cluster)),
            ports: Some(vec![
                port("kafka", KAFKA_PORT),
                port("http", HTTP_PORT),
                port("cluster", CLUSTER_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// What clients connect to: Kafka on 9092 and the HTTP API on 6092, of the type the spec asks.
pub fn client_service(cluster: &ChronikCluster) -> Service {
    let mut metadata = object_meta(cluster, Names::client_service(cluster));
    let svc = &cluster.spec.service;
    if !svc.annotations.is_empty() {
        metadata.annotations = Some(
            svc.annotations
                .clone()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
        );
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(svc.type_.as_str().to_string()),
            selector: Some(selector_labels(cluster)),
            ports: Some(vec![port("kafka", KAFKA_PORT), port("http", HTTP_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_cluster::cluster;

    fn ports(s: &Service) -> Vec<(String, i32)> {
        s.spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect()
    }

    #[test]
    fn headless_service_publishes_not_ready_peers_on_all_three_ports() {
        let s = headless_service(&cluster("{}"));
        assert_eq!(s.metadata.name.as_deref(), Some("demo-peers"));
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(
            ports(&s),
            vec![
                ("kafka".into(), 9092),
                ("http".into(), 6092),
                ("cluster".into(), 5001)
            ]
        );
    }

    #[test]
    fn client_service_exposes_named_kafka_and_http_ports() {
        let s = client_service(&cluster("{}"));
        assert_eq!(s.metadata.name.as_deref(), Some("demo"));
        assert_eq!(
            ports(&s),
            vec![("kafka".into(), 9092), ("http".into(), 6092)]
        );
        assert_eq!(s.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    }

    #[test]
    fn client_service_type_and_annotations_follow_the_spec() {
        let s = client_service(&cluster(
            "service: {type: LoadBalancer, annotations: {lb.example/internal: 'true'}}",
        ));
        assert_eq!(
            s.spec.as_ref().unwrap().type_.as_deref(),
            Some("LoadBalancer")
        );
        assert_eq!(
            s.metadata.annotations.unwrap()["lb.example/internal"],
            "true"
        );
        let s = client_service(&cluster("service: {type: NodePort}"));
        assert_eq!(s.spec.unwrap().type_.as_deref(), Some("NodePort"));
    }

    #[test]
    fn both_services_select_only_this_clusters_brokers() {
        let c = cluster("{}");
        for s in [headless_service(&c), client_service(&c)] {
            assert_eq!(s.spec.unwrap().selector.unwrap(), selector_labels(&c));
        }
    }
}
