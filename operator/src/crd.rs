//! The `ChronikCluster` custom resource (SPEC section 7): its spec, status and the checks the
//! schema alone cannot carry.
//!
//! The CRD in crds/ is generated from these types by the crdgen binary; change the types, then run
//! `make generate`, and the drift test keeps the two in step.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// API group of every Chronik custom resource.
pub const GROUP: &str = "chronik.io";

/// Environment variables the operator sets itself; `spec.config` may not override them because
/// the StatefulSet's identity and peer wiring depend on them.
pub const RESERVED_ENV: &[&str] = &[
    "CHRONIK_NODE_ID",
    "CHRONIK_PEERS",
    "CHRONIK_ADVERTISED_ADDR",
    "CHRONIK_BIND_ADDR",
    "CHRONIK_DATA_DIR",
    "CHRONIK_KAFKA_PORT",
    "CHRONIK_UNIFIED_API_PORT",
    "CHRONIK_CLUSTER_PORT",
    "CHRONIK_ADMIN_API_KEY",
    "CHRONIK_SASL_USERS",
    "CHRONIK_TLS_CERT",
    "CHRONIK_TLS_KEY",
    "OPENAI_API_KEY",
];

/// A Chronik cluster: N brokers in one Raft group behind a client Service.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "chronik.io",
    version = "v1alpha1",
    kind = "ChronikCluster",
    plural = "chronikclusters",
    shortname = "ccl",
    namespaced,
    status = "ChronikClusterStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.replicas >= 1").message("replicas must be at least 1"),
    validation = Rule::new("!has(self.replicationFactor) || self.replicationFactor <= self.replicas")
        .message("replicationFactor must not exceed replicas"),
    validation = Rule::new(
        "!has(self.minInsyncReplicas) || self.minInsyncReplicas <= (has(self.replicationFactor) ? self.replicationFactor : (self.replicas < 3 ? self.replicas : 3))"
    )
    .message("minInsyncReplicas must not exceed replicationFactor")
)]
#[serde(rename_all = "camelCase")]
pub struct ChronikClusterSpec {
    /// Number of brokers. Each is one Raft voter; scaling adds or drains voters through the admin API.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,

    /// Broker image (built from the repository Dockerfile).
    #[serde(default = "default_image")]
    pub image: String,

    /// Pull policy for `image`; Kubernetes' default applies when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,

    /// CPU and memory for each broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Persistent volume for each broker's data directory.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Default replication factor for new topics; min(3, replicas) when unset (SPEC 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replication_factor: Option<i32>,

    /// Default min.insync.replicas for new topics; 1 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_insync_replicas: Option<i32>,

    /// How clients reach the cluster.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Tiered storage: sealed segments go to this object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSpec>,

    /// Embedding provider for vector search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingSpec>,

    /// Client authentication, TLS and the admin API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Extra server settings as environment variables (SPEC 2), e.g. `CHRONIK_FLUSH: interval:50`.
    /// A change rolls the brokers one at a time. Keys are checked by the operator (phase Failed,
    /// reason InvalidSpec), not by a CEL rule: a regex over unbounded map keys exceeds the API
    /// server's CEL cost budget.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,

    /// Node labels a broker pod must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Taints the broker pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Scheduling constraints. When unset, brokers prefer distinct nodes (pod anti-affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// DNS suffix of the Kubernetes cluster, used in peer and advertised addresses.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
}

fn default_replicas() -> i32 {
    3
}

fn default_image() -> String {
    "ghcr.io/chronik-io/chronik:latest".to_string()
}

fn default_cluster_domain() -> String {
    "cluster.local".to_string()
}

/// Per-broker persistent storage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each broker's volume, a Kubernetes quantity such as `20Gi`. Fixed at creation:
    /// a StatefulSet's volumeClaimTemplates cannot change, so the API server refuses an edit
    /// rather than leaving the operator failing every apply.
    #[serde(default = "default_storage_size")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.size cannot change after creation"))]
    pub size: Quantity,

    /// StorageClass of the volumes; the cluster default when unset. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.storageClassName cannot change after creation"))]
    pub storage_class_name: Option<String>,

    /// Delete a broker's volume when scaling removes it. Off by default: data outlives pods.
    #[serde(default)]
    pub delete_claims_on_scale_down: bool,

    /// Delete every broker volume when the ChronikCluster is deleted. Off by default.
    #[serde(default)]
    pub delete_claims_on_delete: bool,
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".to_string())
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
            delete_claims_on_scale_down: false,
            delete_claims_on_delete: false,
        }
    }
}

/// The client Service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type for Kafka (9092) and HTTP (6092).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Annotations for the client Service, e.g. a cloud load balancer's options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// How the client Service is exposed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Tiered storage settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.deleteDataOnDelete) || !self.deleteDataOnDelete || !self.url.startsWith('file://')")
        .message("deleteDataOnDelete needs an s3://, gs:// or az:// url: file:// paths are on the brokers' disks, out of the operator's reach"),
)]
pub struct ObjectStoreSpec {
    /// `s3://bucket/prefix`, `gs://…`, `az://…` or `file:///path` (SPEC 2 OBJECT_STORE_URL).
    #[x_kube(validation = Rule::new("self.matches('^(s3|gs|az|file)://.+')")
        .message("url must start with s3://, gs://, az:// or file://"))]
    // Bounds the regex's cost for the API server's CEL budget.
    #[schemars(length(max = 2048))]
    pub url: String,

    /// Secret whose keys become environment variables (AWS_*, GOOGLE_*, AZURE_*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,

    /// How long sealed segments stay on local disk once tiered, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -2))]
    pub local_retention_ms: Option<i64>,

    /// Delete every object under `url` when the ChronikCluster is deleted; the cluster object
    /// stays until that is done. Off by default: tiered data outlives the cluster, as volumes do.
    #[serde(default)]
    pub delete_data_on_delete: bool,
}

/// Embedding provider for vector search.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingSpec {
    /// `local` (in-process model, the default), `openai` (any compatible endpoint) or `none`.
    #[serde(default)]
    pub provider: EmbeddingProvider,

    /// Model name for the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,

    /// Base URL of an OpenAI-compatible /v1/embeddings endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Secret key holding the API key, given to brokers as OPENAI_API_KEY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<SecretKeyRef>,
}

/// Which embedding provider brokers use.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingProvider {
    #[default]
    Local,
    Openai,
    None,
}

impl EmbeddingProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            EmbeddingProvider::Local => "local",
            EmbeddingProvider::Openai => "openai",
            EmbeddingProvider::None => "none",
        }
    }
}

/// One key of one Secret in the cluster's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// Authentication and transport security.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key with `user:password,…` (CHRONIK_SASL_USERS); clients must then authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_users_secret: Option<SecretKeyRef>,

    /// A `kubernetes.io/tls` Secret (tls.crt, tls.key) for TLS on the Kafka and HTTP ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,

    /// Secret key with the admin API key (CHRONIK_ADMIN_API_KEY); the operator sends it as
    /// X-API-Key when it scales and rolls the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_api_key_secret: Option<SecretKeyRef>,
}

/// Lifecycle phase shown by `kubectl get ccl`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Broker pods cannot be scheduled yet (e.g. no volume).
    Pending,
    /// A new cluster is forming: not every broker has been ready yet.
    Bootstrapping,
    /// Every broker ready, every voter in place, every partition in sync.
    Running,
    /// A broker or the admin API is unhealthy; the operator retries with backoff.
    Degraded,
    /// Brokers are being added as voters or drained before removal.
    Scaling,
    /// A new image or configuration is being rolled, one broker at a time.
    Upgrading,
    /// The spec is invalid; nothing is changed until it is fixed.
    Failed,
}

/// What the operator observed and did.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChronikClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Brokers whose pod is ready.
    #[serde(default)]
    pub ready_replicas: i32,

    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Progressing and Degraded, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Size of the first cluster: the brokers in CHRONIK_PEERS. Kept so later scaling does not
    /// change the pod template (which would restart every broker); later voters join through
    /// the admin API instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_voters: Option<i32>,

    /// One entry per broker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeState>,
}

/// One broker as the operator sees it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    /// CHRONIK_NODE_ID, equal to the pod's ordinal.
    pub id: i32,
    /// Pod name.
    pub pod: String,
    /// Pod Ready condition.
    pub ready: bool,
    /// Raft voter according to the admin API.
    pub voter: bool,
    /// Running the StatefulSet's current revision (image and configuration).
    pub up_to_date: bool,
    /// `Joining`, `Active`, `Draining`, `Updating` or `Failed`.
    pub state: String,
}

/// The CRD as YAML, exactly as committed in crds/ (the drift test compares the two).
pub fn crd_yaml() -> Result<String> {
    use kube::CustomResourceExt;
    let body = serde_yaml::to_string(&ChronikCluster::crd())?;
    Ok(format!(
        "# Generated from operator/src/crd.rs by operator/generate.sh (make generate). Do not edit.\n{body}"
    ))
}

impl ChronikClusterSpec {
    /// Replication factor the brokers apply to new topics: the spec's, or min(3, replicas).
    pub fn effective_replication_factor(&self) -> i32 {
        self.replication_factor.unwrap_or(self.replicas.min(3))
    }

    /// The admission-time checks, run before anything is applied. They repeat the CEL rules
    /// (an API server older than the CRD, or a spec edited with validation off, must not reach
    /// the StatefulSet) and add the ones CEL cannot express.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::InvalidSpec(m));
        if self.replicas < 1 {
            return fail(format!(
                "replicas must be at least 1, got {}",
                self.replicas
            ));
        }
        let rf = self.effective_replication_factor();
        if rf < 1 || rf > self.replicas {
            return fail(format!(
                "replicationFactor {rf} must be between 1 and replicas {}",
                self.replicas
            ));
        }
        if let Some(min_isr) = self.min_insync_replicas {
            if min_isr < 1 || min_isr > rf {
                return fail(format!(
                    "minInsyncReplicas {min_isr} must be between 1 and replicationFactor {rf}"
                ));
            }
        }
        if self.image.trim().is_empty() {
            return fail("image must not be empty".to_string());
        }
        if !is_quantity(&self.storage.size.0) {
            return fail(format!(
                "storage.size {:?} is not a quantity",
                self.storage.size.0
            ));
        }
        for key in self.config.keys() {
            let env_like = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !env_like {
                return fail(format!(
                    "config key {key:?} is not an environment variable name"
                ));
            }
            if RESERVED_ENV.contains(&key.as_str()) {
                return fail(format!("config key {key} is set by the operator"));
            }
        }
        if let Some(os) = &self.object_store {
            let known = ["s3://", "gs://", "az://", "file://"];
            if !known
                .iter()
                .any(|p| os.url.starts_with(p) && os.url.len() > p.len())
            {
                return fail(format!(
                    "objectStore.url {:?} has an unknown scheme",
                    os.url
                ));
            }
            if os.delete_data_on_delete && os.url.starts_with("file://") {
                return fail(
                    "objectStore.deleteDataOnDelete needs an s3://, gs:// or az:// url".to_string(),
                );
            }
        }
        if let Some(e) = &self.embedding {
            if e.provider == EmbeddingProvider::Openai && e.endpoint.is_none() {
                return fail("embedding.endpoint is required for the openai provider".to_string());
            }
        }
        Ok(())
    }
}

/// Accepts the Kubernetes quantity grammar: a decimal number, then an optional binary (Ki…Ei),
/// decimal (n, u, m, k, M…E) or exponent suffix.
fn is_quantity(s: &str) -> bool {
    let num_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == '+' || *c == '-'))
        .map_or(s.len(), |(i, _)| i);
    let (num, suffix) = s.split_at(num_end);
    let digits = num.trim_start_matches(['+', '-']);
    let number_ok = !digits.is_empty()
        && digits.chars().filter(|c| *c == '.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit())
        && !digits[..].contains(['+', '-']);
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || (suffix.starts_with(['e', 'E'])
        && suffix[1..]
            .trim_start_matches(['+', '-'])
            .chars()
            .all(|c| c.is_ascii_digit())
        && suffix.len() > 1);
    number_ok && suffix_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ChronikClusterSpec {
        serde_yaml::from_str(yaml).expect("spec parses")
    }

    #[test]
    fn an_empty_spec_takes_the_documented_defaults() {
        let s = spec("{}");
        assert_eq!(s.replicas, 3);
        assert_eq!(s.storage.size.0, "10Gi");
        assert_eq!(s.service.type_, ServiceType::ClusterIP);
        assert_eq!(s.effective_replication_factor(), 3);
        assert_eq!(s.cluster_domain, "cluster.local");
        s.validate().expect("defaults are valid");
    }

    #[test]
    fn replication_factor_defaults_to_min_of_three_and_replicas() {
        assert_eq!(spec("replicas: 1").effective_replication_factor(), 1);
        assert_eq!(spec("replicas: 5").effective_replication_factor(), 3);
    }

    #[test]
    fn validate_rejects_zero_replicas() {
        let err = spec("replicas: 0").validate().unwrap_err();
        assert!(
            err.to_string().contains("replicas must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn validate_rejects_min_insync_above_replication_factor() {
        let err = spec("{replicas: 3, replicationFactor: 2, minInsyncReplicas: 3}")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("minInsyncReplicas 3"), "{err}");
    }

    #[test]
    fn validate_rejects_replication_factor_above_replicas() {
        assert!(spec("{replicas: 1, replicationFactor: 3}")
            .validate()
            .is_err());
    }

    #[test]
    fn validate_rejects_a_storage_size_that_is_not_a_quantity() {
        assert!(spec("storage: {size: lots}").validate().is_err());
        assert!(spec("storage: {size: 1.5Gi}").validate().is_ok());
        assert!(spec("storage: {size: 1e9}").validate().is_ok());
    }

    #[test]
    fn validate_rejects_config_keys_the_operator_owns_or_that_are_not_env_names() {
        assert!(spec("config: {CHRONIK_NODE_ID: '7'}").validate().is_err());
        assert!(spec("config: {flush: group}").validate().is_err());
        assert!(spec("config: {CHRONIK_FLUSH: group}").validate().is_ok());
    }

    #[test]
    fn validate_rejects_unknown_object_store_schemes_and_openai_without_endpoint() {
        assert!(spec("objectStore: {url: 'ftp://x'}").validate().is_err());
        assert!(spec("objectStore: {url: 's3://bucket/p'}")
            .validate()
            .is_ok());
        assert!(spec("embedding: {provider: openai}").validate().is_err());
    }
}
