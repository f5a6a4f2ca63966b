//! The broker StatefulSet.
//!
//! Choices that matter:
//! - `ordinals.start = 1`, so pod `<name>-N` carries pod-index N and CHRONIK_NODE_ID = N with no
//!   arithmetic: node ids start at 1 like the server's default, and scaling 3 -> 5 adds nodes 4, 5.
//! - `podManagementPolicy: Parallel`: every broker starts at once so Raft can elect a leader;
//!   ordering is the operator's job, not the StatefulSet controller's.
//! - `updateStrategy: OnDelete`: the operator deletes one pod at a time, and only when the
//!   cluster reports every partition in sync (the StatefulSet controller cannot see that).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretEnvSource,
    SecretKeySelector, SecretVolumeSource, SecurityContext, SleepAction, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    labels, namespace, object_meta, selector_labels, Inputs, Names, CLUSTER_PORT,
    CONFIG_HASH_ANNOTATION, DATA_DIR, HTTP_PORT, KAFKA_PORT, POD_INDEX_LABEL,
};
use crate::crd::{ChronikCluster, SecretKeyRef};

/// Where a `tlsSecret` is mounted.
const TLS_DIR: &str = "/etc/chronik/tls";
/// Non-root user of the broker image (see the Dockerfile).
const BROKER_UID: i64 = 10001;

pub fn stateful_set(cluster: &ChronikCluster, inputs: &Inputs, config_hash: &str) -> StatefulSet {
    let spec = &cluster.spec;
    let retention = |delete: bool| if delete { "Delete" } else { "Retain" }.to_string();
    StatefulSet {
        metadata: object_meta(cluster, Names::stateful_set(cluster)),
        spec: Some(StatefulSetSpec {
            replicas: Some(inputs.replicas),
            service_name: Some(Names::headless_service(cluster)),
            pod_management_policy: Some("Parallel".to_string()),
            ordinals: Some(StatefulSetOrdinals { start: Some(1) }),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_string()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some(retention(spec.storage.delete_claims_on_scale_down)),
                    when_deleted: Some(retention(spec.storage.delete_claims_on_delete)),
                },
            ),
            volume_claim_templates: Some(vec![volume_claim_template(cluster)]),
            template: pod_template(cluster, inputs, config_hash),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn volume_claim_template(cluster: &ChronikCluster) -> PersistentVolumeClaim {
    let storage = &cluster.spec.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_string()),
            labels: Some(selector_labels(cluster)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn pod_template(cluster: &ChronikCluster, inputs: &Inputs, config_hash: &str) -> PodTemplateSpec {
    let spec = &cluster.spec;
    let mut volumes = vec![];
    let mut mounts = vec![VolumeMount {
        name: "data".into(),
        mount_path: DATA_DIR.into(),
        ..VolumeMount::default()
    }];
    if let Some(tls) = spec.auth.as_ref().and_then(|a| a.tls_secret.as_ref()) {
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "tls".into(),
            mount_path: TLS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(cluster)),
            annotations: Some(BTreeMap::from([(
                CONFIG_HASH_ANNOTATION.to_string(),
                config_hash.to_string(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![broker_container(cluster, inputs, mounts)],
            volumes: (!volumes.is_empty()).then_some(volumes),
            node_selector: spec.node_selector.clone(),
            tolerations: spec.tolerations.clone(),
            affinity: Some(
                spec.affinity
                    .clone()
                    .unwrap_or_else(|| default_affinity(cluster)),
            ),
            // Long enough for a broker to hand off partition leadership and flush on SIGTERM.
            termination_grace_period_seconds: Some(60),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(BROKER_UID),
                run_as_group: Some(BROKER_UID),
                fs_group: Some(BROKER_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        }),
    }
}

/// Brokers prefer distinct nodes, so one node failure costs at most one Raft voter. Preferred
/// rather than required so a small dev cluster (one node) still schedules; a spec that sets
/// `affinity` replaces this entirely.
fn default_affinity(cluster: &ChronikCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(cluster)),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env_secret(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// CHRONIK_PEERS for the bootstrap voters: `1@host:5001,2@host:5001,…`.
pub fn peers(cluster: &ChronikCluster, voters: i32) -> String {
    (1..=voters)
        .map(|id| format!("{id}@{}:{CLUSTER_PORT}", Names::pod_host(cluster, id)))
        .collect::<Vec<_>>()
        .join(",")
}

fn broker_env(cluster: &ChronikCluster, inputs: &Inputs) -> Vec<EnvVar> {
    let spec = &cluster.spec;
    let mut env_vars = vec![
        env_field("POD_NAME", "metadata.name"),
        env_field(
            "CHRONIK_NODE_ID",
            &format!("metadata.labels['{POD_INDEX_LABEL}']"),
        ),
        // $(POD_NAME) is expanded by the kubelet from the variable above.
        env(
            "CHRONIK_ADVERTISED_ADDR",
            format!(
                "$(POD_NAME).{}.{}.svc.{}",
                Names::headless_service(cluster),
                namespace(cluster),
                spec.cluster_domain
            ),
        ),
        env("CHRONIK_BIND_ADDR", "0.0.0.0"),
        env("CHRONIK_DATA_DIR", DATA_DIR),
        env("CHRONIK_KAFKA_PORT", KAFKA_PORT.to_string()),
        env("CHRONIK_UNIFIED_API_PORT", HTTP_PORT.to_string()),
        env("CHRONIK_CLUSTER_PORT", CLUSTER_PORT.to_string()),
        env("CHRONIK_PEERS", peers(cluster, inputs.bootstrap_voters)),
    ];
    if let Some(r) = spec
        .embedding
        .as_ref()
        .and_then(|e| e.api_key_secret.as_ref())
    {
        env_vars.push(env_secret("OPENAI_API_KEY", r));
    }
    if let Some(auth) = &spec.auth {
        if let Some(r) = &auth.sasl_users_secret {
            env_vars.push(env_secret("CHRONIK_SASL_USERS", r));
        }
        if auth.tls_secret.is_some() {
            env_vars.push(env("CHRONIK_TLS_CERT", format!("{TLS_DIR}/tls.crt")));
            env_vars.push(env("CHRONIK_TLS_KEY", format!("{TLS_DIR}/tls.key")));
        }
        if let Some(r) = &auth.admin_api_key_secret {
            env_vars.push(env_secret("CHRONIK_ADMIN_API_KEY", r));
        }
    }
    env_vars
}

fn http_probe(path: &str, scheme: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: Some(scheme.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

fn broker_container(
    cluster: &ChronikCluster,
    inputs: &Inputs,
    mounts: Vec<VolumeMount>,
) -> Container {
    let spec = &cluster.spec;
    let tls = spec.auth.as_ref().is_some_and(|a| a.tls_secret.is_some());
    let scheme = if tls { "HTTPS" } else { "HTTP" };
    let mut env_from = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: Names::config_map(cluster),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }];
    if let Some(secret) = spec
        .object_store
        .as_ref()
        .and_then(|o| o.credentials_secret.as_ref())
    {
        env_from.push(EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: secret.clone(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        });
    }
    let cport = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    Container {
        name: "chronik".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        args: Some(vec!["start".into()]),
        ports: Some(vec![
            cport("kafka", KAFKA_PORT),
            cport("http", HTTP_PORT),
            cport("cluster", CLUSTER_PORT),
        ]),
        env: Some(broker_env(cluster, inputs)),
        env_from: Some(env_from),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        // Log recovery after a crash can take minutes on a large disk; the startup probe gives it
        // up to 10 minutes before liveness may restart the pod.
        startup_probe: Some(http_probe("/health", scheme, 5, 120)),
        liveness_probe: Some(http_probe("/health", scheme, 10, 6)),
        readiness_probe: Some(http_probe("/ready", scheme, 5, 3)),
        lifecycle: Some(Lifecycle {
            // Gives Services time to drop the pod from endpoints before SIGTERM, so clients see
            // a metadata change instead of refused connections.
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 10 }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_cluster::cluster;

    fn build(spec: &str) -> StatefulSet {
        let c = cluster(spec);
        stateful_set(&c, &Inputs::from_spec(&c), "hash-1")
    }

    fn sts_spec(s: &StatefulSet) -> &StatefulSetSpec {
        s.spec.as_ref().unwrap()
    }

    fn pod(s: &StatefulSet) -> &PodSpec {
        sts_spec(s).template.spec.as_ref().unwrap()
    }

    fn container(s: &StatefulSet) -> &Container {
        &pod(s).containers[0]
    }

    fn env_of<'a>(s: &'a StatefulSet, name: &str) -> Option<&'a EnvVar> {
        container(s)
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
    }

    fn env_value(s: &StatefulSet, name: &str) -> String {
        env_of(s, name)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("{name} unset"))
    }

    #[test]
    fn replicas_come_from_inputs_not_the_spec() {
        let c = cluster("replicas: 3");
        let inputs = Inputs {
            replicas: 5,
            bootstrap_voters: 3,
        };
        let s = stateful_set(&c, &inputs, "h");
        assert_eq!(sts_spec(&s).replicas, Some(5));
    }

    #[test]
    fn ordinals_start_at_one_with_parallel_pods_and_on_delete_updates() {
        let s = build("{}");
        let spec = sts_spec(&s);
        assert_eq!(spec.ordinals.as_ref().unwrap().start, Some(1));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            spec.update_strategy.as_ref().unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        assert_eq!(spec.service_name.as_deref(), Some("demo-peers"));
    }

    #[test]
    fn volume_claim_template_follows_storage_size_and_class() {
        let s = build("storage: {size: 50Gi, storageClassName: fast}");
        let pvc = &sts_spec(&s).volume_claim_templates.as_ref().unwrap()[0];
        let pvc_spec = pvc.spec.as_ref().unwrap();
        assert_eq!(pvc.metadata.name.as_deref(), Some("data"));
        assert_eq!(pvc_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            pvc_spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "50Gi"
        );
        let default = build("{}");
        let pvc = &sts_spec(&default).volume_claim_templates.as_ref().unwrap()[0];
        assert_eq!(pvc.spec.as_ref().unwrap().storage_class_name, None);
    }

    #[test]
    fn claims_are_retained_unless_the_spec_asks_to_delete_them() {
        let policy = |s: &StatefulSet| {
            let p = sts_spec(s)
                .persistent_volume_claim_retention_policy
                .clone()
                .unwrap();
            (p.when_scaled.unwrap(), p.when_deleted.unwrap())
        };
        assert_eq!(policy(&build("{}")), ("Retain".into(), "Retain".into()));
        assert_eq!(
            policy(&build(
                "storage: {deleteClaimsOnScaleDown: true, deleteClaimsOnDelete: true}"
            )),
            ("Delete".into(), "Delete".into())
        );
    }

    #[test]
    fn node_id_comes_from_the_pod_index_label() {
        let s = build("{}");
        let e = env_of(&s, "CHRONIK_NODE_ID").unwrap();
        let field = e.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(
            field.field_path,
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
    }

    #[test]
    fn advertised_addr_is_the_pods_stable_dns_name() {
        assert_eq!(
            env_value(&build("{}"), "CHRONIK_ADVERTISED_ADDR"),
            "$(POD_NAME).demo-peers.data.svc.cluster.local"
        );
        let names: Vec<_> = container(&build("{}"))
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        let pod_name = names.iter().position(|n| n == "POD_NAME").unwrap();
        let advertised = names
            .iter()
            .position(|n| n == "CHRONIK_ADVERTISED_ADDR")
            .unwrap();
        assert!(
            pod_name < advertised,
            "POD_NAME must precede its use for $(POD_NAME) expansion"
        );
    }

    #[test]
    fn peers_list_the_bootstrap_voters_on_the_cluster_port() {
        let c = cluster("replicas: 3");
        let s = stateful_set(
            &c,
            &Inputs {
                replicas: 5,
                bootstrap_voters: 3,
            },
            "h",
        );
        assert_eq!(
            env_value(&s, "CHRONIK_PEERS"),
            "1@demo-1.demo-peers.data.svc.cluster.local:5001,\
             2@demo-2.demo-peers.data.svc.cluster.local:5001,\
             3@demo-3.demo-peers.data.svc.cluster.local:5001"
        );
    }

    #[test]
    fn scaling_does_not_change_the_pod_template() {
        let c = cluster("replicas: 3");
        let a = stateful_set(
            &c,
            &Inputs {
                replicas: 3,
                bootstrap_voters: 3,
            },
            "h",
        );
        let b = stateful_set(
            &c,
            &Inputs {
                replicas: 5,
                bootstrap_voters: 3,
            },
            "h",
        );
        assert_eq!(sts_spec(&a).template, sts_spec(&b).template);
    }

    #[test]
    fn brokers_bind_all_interfaces_and_use_the_volume_as_data_dir() {
        let s = build("{}");
        assert_eq!(env_value(&s, "CHRONIK_BIND_ADDR"), "0.0.0.0");
        assert_eq!(env_value(&s, "CHRONIK_DATA_DIR"), DATA_DIR);
        let mounts = container(&s).volume_mounts.as_ref().unwrap();
        assert!(mounts
            .iter()
            .any(|m| m.name == "data" && m.mount_path == DATA_DIR));
    }

    #[test]
    fn settings_come_from_the_config_map() {
        let s = build("{}");
        let from = container(&s).env_from.as_ref().unwrap();
        assert_eq!(from[0].config_map_ref.as_ref().unwrap().name, "demo-config");
    }

    #[test]
    fn object_store_credentials_come_from_the_referenced_secret() {
        let s = build("objectStore: {url: 's3://b', credentialsSecret: s3-creds}");
        let from = container(&s).env_from.as_ref().unwrap();
        assert_eq!(from[1].secret_ref.as_ref().unwrap().name, "s3-creds");
        assert_eq!(container(&build("{}")).env_from.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn embedding_api_key_comes_from_a_secret() {
        let s = build(
            "embedding: {provider: openai, endpoint: 'http://e', apiKeySecret: {name: oa, key: k}}",
        );
        let sel = env_of(&s, "OPENAI_API_KEY")
            .unwrap()
            .value_from
            .clone()
            .unwrap()
            .secret_key_ref
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("oa", "k"));
        assert!(env_of(&build("{}"), "OPENAI_API_KEY").is_none());
    }

    #[test]
    fn auth_secrets_become_env_and_tls_is_mounted() {
        let s = build(
            "auth: {saslUsersSecret: {name: users, key: list}, tlsSecret: certs, \
             adminApiKeySecret: {name: admin, key: api-key}}",
        );
        let secret = |n: &str| {
            env_of(&s, n)
                .unwrap()
                .value_from
                .clone()
                .unwrap()
                .secret_key_ref
                .unwrap()
                .name
        };
        assert_eq!(secret("CHRONIK_SASL_USERS"), "users");
        assert_eq!(secret("CHRONIK_ADMIN_API_KEY"), "admin");
        assert_eq!(
            env_value(&s, "CHRONIK_TLS_CERT"),
            "/etc/chronik/tls/tls.crt"
        );
        assert_eq!(env_value(&s, "CHRONIK_TLS_KEY"), "/etc/chronik/tls/tls.key");
        let vols = pod(&s).volumes.as_ref().unwrap();
        assert_eq!(
            vols[0].secret.as_ref().unwrap().secret_name.as_deref(),
            Some("certs")
        );
        let probe = container(&s)
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(
            probe.scheme.as_deref(),
            Some("HTTPS"),
            "probes follow TLS on the HTTP port"
        );
    }

    #[test]
    fn probes_check_ready_and_health_on_the_http_port() {
        let s = build("{}");
        let c = container(&s);
        let get = |p: &Option<Probe>| p.as_ref().unwrap().http_get.clone().unwrap();
        let ready = get(&c.readiness_probe);
        assert_eq!(ready.path.as_deref(), Some("/ready"));
        assert_eq!(ready.port, IntOrString::String("http".into()));
        assert_eq!(ready.scheme.as_deref(), Some("HTTP"));
        assert_eq!(get(&c.liveness_probe).path.as_deref(), Some("/health"));
        assert_eq!(get(&c.startup_probe).path.as_deref(), Some("/health"));
        let ports: Vec<_> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.container_port)
            .collect();
        assert_eq!(ports, vec![9092, 6092, 5001]);
    }

    #[test]
    fn image_pull_policy_and_resources_follow_the_spec() {
        let s = build(
            "image: reg/chronik:1.2\nimagePullPolicy: Always\n\
             resources: {requests: {cpu: '2', memory: 4Gi}, limits: {memory: 4Gi}}",
        );
        let c = container(&s);
        assert_eq!(c.image.as_deref(), Some("reg/chronik:1.2"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0,
            "2"
        );
    }

    #[test]
    fn scheduling_fields_are_passed_through() {
        let s = build(
            "nodeSelector: {disk: nvme}\n\
             tolerations: [{key: dedicated, operator: Equal, value: chronik, effect: NoSchedule}]",
        );
        let p = pod(&s);
        assert_eq!(p.node_selector.as_ref().unwrap()["disk"], "nvme");
        assert_eq!(
            p.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
    }

    #[test]
    fn anti_affinity_is_preferred_by_default_and_replaced_by_the_specs() {
        let s = build("{}");
        let anti = pod(&s).affinity.clone().unwrap().pod_anti_affinity.unwrap();
        let term = &anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap()[0];
        assert_eq!(
            term.pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
        let s = build(
            "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: \
             {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}",
        );
        let a = pod(&s).affinity.clone().unwrap();
        assert!(a.pod_anti_affinity.is_none());
        assert!(a.node_affinity.is_some());
    }

    #[test]
    fn a_pre_stop_hook_delays_termination() {
        let s = build("{}");
        let pre_stop = container(&s).lifecycle.clone().unwrap().pre_stop.unwrap();
        assert_eq!(pre_stop.sleep.unwrap().seconds, 10);
        assert_eq!(pod(&s).termination_grace_period_seconds, Some(60));
    }

    #[test]
    fn config_hash_is_a_pod_template_annotation() {
        let s = build("{}");
        let meta = sts_spec(&s).template.metadata.as_ref().unwrap();
        assert_eq!(
            meta.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION],
            "hash-1"
        );
    }

    #[test]
    fn brokers_run_as_non_root_without_privileges() {
        let s = build("{}");
        assert_eq!(
            pod(&s).security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        let sc = container(&s).security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.unwrap().drop.unwrap(),
            vec!["ALL".to_string()]
        );
    }
}
